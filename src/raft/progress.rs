//! What the leader knows about each follower's log, and the quorum arithmetic.

use std::collections::{BTreeMap, VecDeque};

use super::types::{ConfState, Index, NodeId};

/// How the leader currently replicates to one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// We do not know where the follower's log matches ours: send one append at
    /// a time and wait for the answer (or the next heartbeat response).
    Probe,
    /// The follower is known to match up to `matched`: stream appends optimistically,
    /// bounded by the inflight window.
    Replicate,
    /// The follower needs the snapshot at `pending`; nothing else is sent until it
    /// reports back.
    Snapshot { pending: Index },
}

/// A window of in-flight append messages, each remembered by its last index.
#[derive(Clone, Debug)]
pub struct Inflights {
    last_indexes: VecDeque<Index>,
    capacity: usize,
}

impl Inflights {
    pub fn new(capacity: usize) -> Inflights {
        assert!(capacity > 0);
        Inflights {
            last_indexes: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    pub fn is_full(&self) -> bool {
        self.last_indexes.len() >= self.capacity
    }

    pub fn add(&mut self, last_index: Index) {
        assert!(!self.is_full(), "inflight window overflow");
        if let Some(&back) = self.last_indexes.back() {
            assert!(
                last_index > back,
                "inflight indexes must increase: {last_index} after {back}"
            );
        }
        self.last_indexes.push_back(last_index);
    }

    /// Frees every message whose last index is covered by an acknowledgement.
    pub fn free_to(&mut self, acknowledged: Index) {
        while self.last_indexes.front().is_some_and(|&front| front <= acknowledged) {
            self.last_indexes.pop_front();
        }
    }

    pub fn reset(&mut self) {
        self.last_indexes.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.last_indexes.is_empty()
    }
}

#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known to match the leader's log.
    // Invariant: matched < next.
    pub matched: Index,
    /// Next index to send.
    pub next: Index,
    pub state: ProgressState,
    /// In Probe state: an append was sent and we wait before sending another.
    pub probe_sent: bool,
    pub inflights: Inflights,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    pub is_learner: bool,
    /// `matched` when the previous heartbeat response arrived; a Replicate
    /// stream with appends in flight that made no progress over a whole
    /// heartbeat round has lost a message and falls back to probing.
    pub matched_at_last_heartbeat: Index,
}

impl Progress {
    pub fn new(next: Index, inflight_capacity: usize, is_learner: bool) -> Progress {
        Progress {
            matched: Index(0),
            next,
            state: ProgressState::Probe,
            probe_sent: false,
            inflights: Inflights::new(inflight_capacity),
            recent_active: true,
            is_learner,
            matched_at_last_heartbeat: Index(0),
        }
    }

    pub fn become_probe(&mut self) {
        // After a snapshot the follower has at least the snapshot index.
        let next = match self.state {
            ProgressState::Snapshot { pending } => self.matched.next().max(pending.next()),
            _ => self.matched.next(),
        };
        self.state = ProgressState::Probe;
        self.next = next;
        self.probe_sent = false;
        self.inflights.reset();
    }

    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next = self.matched.next();
        self.probe_sent = false;
        self.inflights.reset();
    }

    pub fn become_snapshot(&mut self, pending: Index) {
        self.state = ProgressState::Snapshot { pending };
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// Records an acknowledgement up to `index`; returns whether it was news.
    pub fn maybe_update(&mut self, index: Index) -> bool {
        let updated = index > self.matched;
        if updated {
            self.matched = index;
            self.probe_sent = false;
        }
        if index >= self.next {
            self.next = index.next();
        }
        updated
    }

    /// Handles a rejection of the append that followed `rejected`; `hint` is the
    /// next index to try. Returns false if the rejection is stale.
    pub fn maybe_decrease_to(&mut self, rejected: Index, hint: Index) -> bool {
        match self.state {
            // Stale if it rejects something already acknowledged.
            ProgressState::Replicate if rejected <= self.matched => return false,
            ProgressState::Replicate => self.become_probe(),
            // Only the rejection of our latest probe counts.
            ProgressState::Probe if rejected != self.next.prev() => return false,
            ProgressState::Probe => {}
            ProgressState::Snapshot { .. } => return false,
        }
        self.next = hint.min(rejected).max(self.matched.next());
        self.probe_sent = false;
        true
    }

    /// Whether the leader should hold back appends to this follower for now.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.is_full(),
            ProgressState::Snapshot { .. } => true,
        }
    }

    /// Bookkeeping after sending entries ending at `last` (None: an empty probe).
    pub fn sent_entries(&mut self, last: Option<Index>) {
        match self.state {
            ProgressState::Replicate => {
                if let Some(last) = last {
                    self.next = last.next();
                    self.inflights.add(last);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot { .. } => {}
        }
    }
}

/// Every member's progress plus the configuration they form.
#[derive(Clone, Debug)]
pub struct Tracker {
    pub conf: ConfState,
    pub progress: BTreeMap<NodeId, Progress>,
    inflight_capacity: usize,
}

impl Tracker {
    pub fn new(conf: ConfState, inflight_capacity: usize) -> Tracker {
        let mut tracker = Tracker {
            conf: ConfState::default(),
            progress: BTreeMap::new(),
            inflight_capacity,
        };
        tracker.set_conf(conf, Index(1));
        tracker
    }

    /// Switches to `conf`, keeping progress of members that stay and starting new
    /// members at `next`.
    pub fn set_conf(&mut self, conf: ConfState, next: Index) {
        self.progress.retain(|node, _| conf.contains(*node));
        for node in conf.members() {
            let is_learner = conf.is_learner(node);
            let capacity = self.inflight_capacity;
            self.progress
                .entry(node)
                .and_modify(|progress| progress.is_learner = is_learner)
                .or_insert_with(|| Progress::new(next, capacity, is_learner));
        }
        self.conf = conf;
    }

    pub fn quorum(&self) -> usize {
        self.conf.voters.len() / 2 + 1
    }

    /// The highest index a quorum of voters has matched.
    pub fn quorum_matched(&self) -> Index {
        let mut matched: Vec<Index> = self
            .conf
            .voters
            .iter()
            .map(|voter| self.progress.get(voter).map_or(Index(0), |progress| progress.matched))
            .collect();
        if matched.is_empty() {
            return Index(0);
        }
        matched.sort_unstable_by(|a, b| b.cmp(a));
        matched[self.quorum() - 1]
    }

    /// Whether `granted` voters form a quorum.
    pub fn has_quorum(&self, granted: impl IntoIterator<Item = NodeId>) -> bool {
        granted.into_iter().filter(|node| self.conf.is_voter(*node)).count() >= self.quorum()
    }

    /// Counts `votes` (node → granted) into won / lost / pending.
    pub fn tally(&self, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
        let mut granted = 0;
        let mut rejected = 0;
        for voter in &self.conf.voters {
            match votes.get(voter) {
                Some(true) => granted += 1,
                Some(false) => rejected += 1,
                None => {}
            }
        }
        let quorum = self.quorum();
        if granted >= quorum {
            VoteResult::Won
        } else if rejected > self.conf.voters.len() - quorum {
            VoteResult::Lost
        } else {
            VoteResult::Pending
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    Won,
    Lost,
    Pending,
}
