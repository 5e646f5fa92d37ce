//! The in-memory copy of the replicated log kept by the core.
//!
//! The core never reads storage: the caller hands it the persisted log when it
//! starts ([`super::Persisted`]) and persists whatever `Ready` tells it to. The
//! log is everything after the latest snapshot; `compact` drops the prefix.

use std::collections::VecDeque;

use super::types::{Entry, Index, Snapshot, Term};

#[derive(Debug)]
pub(crate) struct RaftLog {
    /// The latest snapshot (its `meta.index`/`meta.term` anchor the log).
    pub snapshot: Snapshot,
    /// Entries `snapshot.meta.index + 1 ..= last_index()`.
    // Invariant: entries[i].index == snapshot.meta.index + 1 + i, and terms never decrease.
    entries: VecDeque<Entry>,
    /// Highest index known to be committed.
    // Invariant: snapshot.meta.index <= committed <= last_index().
    pub committed: Index,
    /// Highest index the caller has made durable (reported through `advance`).
    // Invariant: persisted <= last_index(); entries above it are not yet durable.
    pub persisted: Index,
    /// First index not yet handed to the caller for persisting.
    // Invariant: persisted < unstable_from <= last_index() + 1.
    pub unstable_from: Index,
    /// Highest index handed to the caller as committed (to be applied).
    // Invariant: applied_out <= min(committed, persisted) except right after a
    // snapshot restore, where it equals the snapshot index.
    pub applied_out: Index,
}

impl RaftLog {
    pub fn new(snapshot: Snapshot, entries: Vec<Entry>, committed: Index, applied: Index) -> RaftLog {
        let first = snapshot.meta.index.next();
        for (offset, entry) in entries.iter().enumerate() {
            assert_eq!(
                entry.index,
                first.plus(offset),
                "restored entries must follow the snapshot without gaps"
            );
        }
        let last = snapshot.meta.index.plus(entries.len());
        let snapshot_index = snapshot.meta.index;
        // The persisted commit may lag what was applied; never the other way round
        // for entries we hold: clamp to the log we actually have.
        let committed = committed.max(snapshot_index).min(last);
        let applied = applied.max(snapshot_index).min(committed);
        RaftLog {
            snapshot,
            entries: entries.into(),
            committed,
            persisted: last,
            unstable_from: last.next(),
            applied_out: applied,
        }
    }

    pub fn first_index(&self) -> Index {
        self.snapshot.meta.index.next()
    }

    pub fn last_index(&self) -> Index {
        self.snapshot.meta.index.plus(self.entries.len())
    }

    pub fn last_term(&self) -> Term {
        self.entries.back().map_or(self.snapshot.meta.term, |entry| entry.term)
    }

    /// The term of the entry at `index`, if this log still knows it
    /// (the snapshot's own index counts; anything before it does not).
    pub fn term(&self, index: Index) -> Option<Term> {
        if index == self.snapshot.meta.index {
            return Some(self.snapshot.meta.term);
        }
        self.entry(index).map(|entry| entry.term)
    }

    pub fn entry(&self, index: Index) -> Option<&Entry> {
        if index < self.first_index() || index > self.last_index() {
            return None;
        }
        self.entries.get((index.0 - self.first_index().0) as usize)
    }

    pub fn matches(&self, index: Index, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// Raft §5.4.1: is a log ending at (`last_index`, `last_term`) at least as
    /// up to date as ours?
    pub fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        last_term > self.last_term() || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Entries in `from..=to`, cut after `max_bytes` (at least one entry is returned
    /// when the range is not empty). `from` must be >= `first_index()`.
    pub fn slice(&self, from: Index, to: Index, max_bytes: usize) -> Vec<Entry> {
        assert!(
            from >= self.first_index(),
            "slice from {from} below first index {}",
            self.first_index()
        );
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut index = from;
        while index <= to {
            let Some(entry) = self.entry(index) else { break };
            bytes += entry.size_bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(entry.clone());
            index = index.next();
        }
        out
    }

    /// Appends entries that directly follow the last one (leader path).
    pub fn append(&mut self, entries: impl IntoIterator<Item = Entry>) {
        for entry in entries {
            assert_eq!(entry.index, self.last_index().next(), "append must be contiguous");
            assert!(entry.term >= self.last_term(), "terms in a log never decrease");
            self.entries.push_back(entry);
        }
    }

    /// Follower path: entries from a leader that follow (`prev_index`, prev term
    /// already checked). Existing entries that agree are kept; the first
    /// conflicting one and everything after it are replaced. Returns the index
    /// of the last entry the message covers.
    pub fn merge(&mut self, prev_index: Index, entries: &[Entry]) -> Index {
        let last_new = prev_index.plus(entries.len());
        let conflict = entries.iter().find(|entry| !self.matches(entry.index, entry.term));
        if let Some(first_conflict) = conflict {
            let at = first_conflict.index;
            assert!(
                at > self.committed,
                "a leader tried to overwrite committed entry {at} (committed {})",
                self.committed
            );
            self.truncate_from(at);
            let skip = (at.0 - entries[0].index.0) as usize;
            self.append(entries[skip..].iter().cloned());
        }
        last_new
    }

    /// Drops `index` and everything after it.
    fn truncate_from(&mut self, index: Index) {
        assert!(index > self.snapshot.meta.index, "cannot truncate into the snapshot");
        let keep = (index.0 - self.first_index().0) as usize;
        self.entries.truncate(keep);
        if self.persisted >= index {
            self.persisted = index.prev();
        }
        if self.unstable_from > index {
            self.unstable_from = index;
        }
    }

    pub fn commit_to(&mut self, index: Index) -> bool {
        if index > self.committed {
            assert!(
                index <= self.last_index(),
                "commit {index} beyond last index {}",
                self.last_index()
            );
            self.committed = index;
            true
        } else {
            false
        }
    }

    /// Entries the caller has not yet been asked to persist.
    pub fn unstable_entries(&self) -> Vec<Entry> {
        if self.unstable_from > self.last_index() {
            return Vec::new();
        }
        self.slice(self.unstable_from, self.last_index(), usize::MAX)
    }

    /// The caller has been given everything up to the last index for persisting.
    pub fn mark_handed_out(&mut self) {
        self.unstable_from = self.last_index().next();
    }

    /// The caller reports that entries up to (`index`, `term`) are durable. If the
    /// log was rewritten meanwhile (the term no longer matches) the report is
    /// stale and ignored; by log matching a matching term vouches for the prefix.
    pub fn persisted_to(&mut self, index: Index, term: Term) {
        if index > self.persisted && self.matches(index, term) && index < self.unstable_from {
            self.persisted = index;
        }
    }

    /// Committed entries that are durable here and not yet handed out for applying.
    pub fn next_committed(&self, max_bytes: usize) -> Vec<Entry> {
        let high = self.committed.min(self.persisted);
        if high <= self.applied_out {
            return Vec::new();
        }
        self.slice(self.applied_out.next(), high, max_bytes)
    }

    pub fn has_next_committed(&self) -> bool {
        self.committed.min(self.persisted) > self.applied_out
    }

    /// Replaces the whole log with a snapshot received from the leader.
    pub fn restore(&mut self, snapshot: Snapshot) {
        let index = snapshot.meta.index;
        self.entries.clear();
        self.snapshot = snapshot;
        self.committed = index;
        self.persisted = index;
        self.unstable_from = index.next();
        self.applied_out = index;
    }

    /// Drops every entry up to and including `snapshot.meta.index`, which the
    /// caller has applied and captured in `snapshot`.
    pub fn compact(&mut self, snapshot: Snapshot) {
        let index = snapshot.meta.index;
        assert!(index > self.snapshot.meta.index && index <= self.applied_out);
        let drop = (index.0 - self.snapshot.meta.index.0) as usize;
        self.entries.drain(..drop);
        self.snapshot = snapshot;
    }

    /// Entries in `(after, through]` that this log still holds.
    pub fn entries_between(&self, after: Index, through: Index) -> impl Iterator<Item = &Entry> {
        let first = self.first_index().0;
        let start = after.0.max(first - 1) + 1 - first;
        let end = (through.0 + 1)
            .saturating_sub(first)
            .min(self.entries.len() as u64)
            .max(start);
        self.entries.range(start as usize..end as usize)
    }

    /// Every entry still held, for conf-state replay and test inspection.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }
}
