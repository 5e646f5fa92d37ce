//! Invariants checked while the cluster runs, from what every member reports
//! through `NodeObserver` (DESIGN.md's safety invariants):
//! - at most one leader per term;
//! - every member applies the same entry (term and bytes) at each index, with
//!   the same resulting revision;
//! - a member applies entries in index order, never one twice, and its
//!   applied index never goes back, not even across a crash (applied state is
//!   durable when reported);
//! - within one run of a member, term, commit index and revision never
//!   decrease; a restart's incarnation number is higher than the last.
//!
//! A violation is recorded with the values involved and fails the seed.

use std::collections::BTreeMap;
use std::sync::Mutex;

use braid::raft::NodeId;
use braid::server::hooks::{AppliedEntry, NodeObserver, Progress};

/// Violations kept in full; later ones are only counted.
const VIOLATIONS_KEPT: usize = 8;

#[derive(Default)]
struct MemberView {
    incarnation: u64,
    /// Highest applied index reported since the member last started.
    applied: u64,
    /// Highest durable applied index ever reported: a restart must not come
    /// back below it (entries after it are applied again from the WAL).
    durable: u64,
    /// Progress within the current incarnation.
    progress: Option<Progress>,
}

#[derive(Default)]
struct State {
    leaders: BTreeMap<u64, NodeId>,
    /// The first report of each applied index: (member, entry).
    entries: BTreeMap<u64, (NodeId, AppliedEntry)>,
    members: BTreeMap<NodeId, MemberView>,
    violations: Vec<String>,
    violation_count: usize,
    evaluations: u64,
    snapshots_installed: u64,
}

impl State {
    fn violate(&mut self, message: String) {
        self.violation_count += 1;
        if self.violations.len() < VIOLATIONS_KEPT {
            self.violations.push(message);
        }
    }
}

/// One per cluster, shared by every member.
#[derive(Default)]
pub struct Invariants {
    state: Mutex<State>,
}

impl Invariants {
    /// The violations found so far (the first few, and how many in all).
    pub fn violations(&self) -> (Vec<String>, usize) {
        let state = self.state.lock().unwrap();
        (state.violations.clone(), state.violation_count)
    }

    /// How many invariant evaluations ran.
    pub fn evaluations(&self) -> u64 {
        self.state.lock().unwrap().evaluations
    }

    /// How many snapshots members installed from their leader.
    pub fn snapshots_installed(&self) -> u64 {
        self.state.lock().unwrap().snapshots_installed
    }
}

impl NodeObserver for Invariants {
    fn started(&self, member: NodeId, incarnation: u64) {
        let mut state = self.state.lock().unwrap();
        state.evaluations += 1;
        let view = state.members.entry(member).or_default();
        let previous = view.incarnation;
        view.incarnation = incarnation;
        view.progress = None;
        // The state file is back at its last durable commit (or later).
        view.applied = view.durable;
        if incarnation <= previous {
            state.violate(format!(
                "member {} restarted as incarnation {incarnation}, not above its previous {previous}",
                member.0
            ));
        }
    }

    fn became_leader(&self, member: NodeId, term: u64) {
        let mut state = self.state.lock().unwrap();
        state.evaluations += 1;
        let leader = *state.leaders.entry(term).or_insert(member);
        if leader != member {
            state.violate(format!(
                "two leaders in term {term}: member {} and member {}",
                leader.0, member.0
            ));
        }
    }

    fn applied(&self, member: NodeId, entry: AppliedEntry) {
        let mut state = self.state.lock().unwrap();
        state.evaluations += 1;
        let view = state.members.entry(member).or_default();
        let last = view.applied;
        view.applied = view.applied.max(entry.index);
        if entry.index <= last {
            state.violate(format!(
                "member {} applied entry {} again after applying up to {last} (double apply)",
                member.0, entry.index
            ));
        } else if entry.index != last + 1 {
            state.violate(format!(
                "member {} applied entry {} right after {last}: entries were skipped",
                member.0, entry.index
            ));
        }
        match state.entries.get(&entry.index).copied() {
            None => {
                state.entries.insert(entry.index, (member, entry));
            }
            Some((first, seen)) => {
                if (seen.term, seen.digest) != (entry.term, entry.digest) {
                    state.violate(format!(
                        "entry {} differs between members: member {} applied term {} digest {:x}, member {} term {} digest {:x}",
                        entry.index, first.0, seen.term, seen.digest, member.0, entry.term, entry.digest
                    ));
                } else if let (Some(before), Some(now)) = (seen.revision, entry.revision) {
                    if before != now {
                        state.violate(format!(
                            "entry {} produced revision {before} on member {} but {now} on member {}",
                            entry.index, first.0, member.0
                        ));
                    }
                }
            }
        }
    }

    fn installed_snapshot(&self, member: NodeId, applied: u64) {
        let mut state = self.state.lock().unwrap();
        state.evaluations += 1;
        state.snapshots_installed += 1;
        let view = state.members.entry(member).or_default();
        let before = view.applied;
        view.applied = before.max(applied);
        if applied < before {
            state.violate(format!(
                "member {} installed a snapshot applied through {applied} after having applied {before}",
                member.0
            ));
        }
    }

    fn progress(&self, member: NodeId, progress: Progress) {
        let mut state = self.state.lock().unwrap();
        state.evaluations += 1;
        let view = state.members.entry(member).or_default();
        let previous = view.progress.replace(progress);
        let durable_before = view.durable;
        view.durable = view.durable.max(progress.durable_applied);
        if progress.durable_applied > progress.applied {
            state.violate(format!(
                "member {} reports durable applied index {} above its applied index {}",
                member.0, progress.durable_applied, progress.applied
            ));
        }
        let Some(previous) = previous else {
            // The first report of a run: what it made durable before is on its disk.
            let view = state.members.entry(member).or_default();
            view.applied = view.applied.max(progress.applied);
            if progress.applied < durable_before {
                state.violate(format!(
                    "member {} restarted with applied index {} after having made {durable_before} durable:                      applied state was lost",
                    member.0, progress.applied
                ));
            }
            return;
        };
        let checks = [
            ("term", previous.term as i64, progress.term as i64),
            ("commit index", previous.commit as i64, progress.commit as i64),
            ("applied index", previous.applied as i64, progress.applied as i64),
            (
                "durable applied index",
                previous.durable_applied as i64,
                progress.durable_applied as i64,
            ),
            ("revision", previous.revision, progress.revision),
        ];
        for (name, before, now) in checks {
            if now < before {
                state.violate(format!("member {}: {name} went back from {before} to {now}", member.0));
            }
        }
    }
}
