//! Membership changes and what happens when entries commit.
//!
//! braid changes membership **one server at a time** (Raft thesis §4.1), not by
//! joint consensus. Every operator flow etcd supports (add a member, remove a
//! member, add a learner, promote it) is a single-server change, and a single
//! change always leaves the old and new majorities overlapping, so the simpler
//! scheme is enough. Two rules make it safe:
//!
//! 1. At most one change is in flight: a leader refuses a new change until the
//!    previous one has committed (`pending_conf_index <= committed`).
//! 2. A leader proposes a change only after it has committed an entry of its own
//!    term (its no-op). This closes the hole Ongaro described in 2015 where
//!    changes made by leaders of different terms could leave two disjoint
//!    majorities.
//!
//! A change takes effect on each node when the node learns it is committed
//! (not when appended, as the thesis suggests, and not when applied by the
//! state machine as etcd does). Deciding at commit keeps the configuration a
//! pure function of (snapshot, log, commit index), which the core recomputes on
//! restart with `conf_state_at`. Because of rule 1 no two changes are ever
//! uncommitted at once, so every node agrees on the configuration used for each
//! commit decision.
//!
//! A removed node keeps running until the server shuts it down; it cannot
//! disrupt the cluster because it never campaigns (it is not promotable) and,
//! with check-quorum, members ignore vote requests while they hear from a leader.

use super::node::Raft;
use super::types::{ConfChange, Entry, EntryKind, Index, NodeId, RaftError, Role};

impl Raft {
    /// Rejects a membership change the leader must not append now.
    pub(super) fn check_conf_change(&self, entry: &Entry, batch_len: usize) -> Result<(), RaftError> {
        let change = ConfChange::decode(&entry.data).ok_or(RaftError::InvalidConfChange("malformed change"))?;
        if batch_len != 1 || self.pending_conf_index > self.log.committed {
            return Err(RaftError::ConfChangeInProgress);
        }
        if self.log.term(self.log.committed) != Some(self.term) {
            return Err(RaftError::ConfChangeInProgress);
        }
        let mut conf = self.tracker.conf.clone();
        conf.apply(&change).map_err(RaftError::InvalidConfChange)
    }

    /// Moves the commit index to `index` and puts into effect every membership
    /// change in between.
    pub(super) fn commit_to(&mut self, index: Index) {
        let old = self.log.committed;
        if !self.log.commit_to(index) {
            return;
        }
        let changes: Vec<ConfChange> = self
            .log
            .entries_between(old, index)
            .filter(|entry| entry.kind == EntryKind::ConfChange)
            .filter_map(|entry| ConfChange::decode(&entry.data))
            .collect();
        if !changes.is_empty() {
            let mut conf = self.tracker.conf.clone();
            for change in &changes {
                // Invalid changes are skipped identically on every node.
                let _ = conf.apply(change);
            }
            self.apply_conf(conf);
        }
        if self.role == Role::Leader && self.log.term(self.log.committed) == Some(self.term) {
            self.release_reads_before_commit();
        }
    }

    fn apply_conf(&mut self, conf: super::types::ConfState) {
        let next = self.log.last_index().next();
        self.tracker.set_conf(conf, next);
        if self.role != Role::Leader {
            return;
        }
        if !self.tracker.conf.is_voter(self.id) {
            // This leader was removed (or demoted): stop leading. The others
            // elect a new leader after an election timeout.
            let term = self.term;
            self.become_follower(term, NodeId::NONE);
            return;
        }
        if let Some(transferee) = self.transferee {
            if !self.tracker.conf.is_voter(transferee) {
                self.transferee = None;
            }
        }
        if let Some(own) = self.tracker.progress.get_mut(&self.id) {
            own.recent_active = true;
        }
        // A smaller quorum may commit more now; new members need their first append.
        self.maybe_commit();
        self.needs_broadcast = true;
    }
}
