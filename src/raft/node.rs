//! The Raft state machine: construction, the public API, `Ready`/`advance`,
//! ticks and role changes. Message handling lives in `election.rs`,
//! `replication.rs` and `read_index.rs` (all `impl Raft`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::log::RaftLog;
use super::progress::Tracker;
use super::types::{
    ConfChange, ConfChangeKind, ConfState, Entry, EntryKind, HardState, Index, Message, MessageKind, NodeId, RaftError,
    ReadState, Role, Snapshot, SnapshotMeta, SoftState, Term,
};

/// Tunables. Times are in ticks; the caller decides how long a tick is.
#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    /// A follower that hears nothing for this many ticks (randomised up to twice
    /// as many) starts an election; a leader checks its quorum this often.
    pub election_ticks: u32,
    pub heartbeat_ticks: u32,
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// Bytes of entries per append message (at least one entry is always sent).
    pub max_message_bytes: usize,
    /// Append messages in flight per follower in the Replicate state.
    pub max_inflight_messages: usize,
    /// Bytes of committed entries handed out per `Ready`.
    pub max_apply_bytes: usize,
    /// Seeds election jitter; the core has no other randomness.
    pub seed: u64,
    /// The context of each bootstrap membership entry (the server puts the
    /// member's name and URLs there); missing nodes get an empty context.
    /// Every bootstrapping node must pass the same map.
    pub bootstrap_contexts: BTreeMap<NodeId, Bytes>,
    /// The caller streams its live state (as of its applied index) with every
    /// snapshot message instead of the image it gave `compact`: snapshots are
    /// then positioned at the applied index, with the configuration in force
    /// there. The follower needs fewer entries afterwards, and a member added
    /// after the last compaction finds itself in the snapshot's configuration.
    pub live_snapshots: bool,
}

impl Config {
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            election_ticks: 10,
            heartbeat_ticks: 1,
            pre_vote: true,
            check_quorum: true,
            max_message_bytes: 1024 * 1024,
            max_inflight_messages: 256,
            max_apply_bytes: 64 * 1024 * 1024,
            seed: id.0,
            bootstrap_contexts: BTreeMap::new(),
            live_snapshots: false,
        }
    }

    fn validate(&self) {
        assert!(self.id != NodeId::NONE, "node id 0 is reserved");
        assert!(self.heartbeat_ticks > 0, "heartbeat_ticks must be positive");
        assert!(
            self.election_ticks > self.heartbeat_ticks,
            "election_ticks ({}) must exceed heartbeat_ticks ({})",
            self.election_ticks,
            self.heartbeat_ticks
        );
        assert!(self.max_inflight_messages > 0);
    }
}

/// What the caller recovered from its own storage when (re)starting a node.
#[derive(Clone, Debug, Default)]
pub struct Persisted {
    pub hard_state: HardState,
    /// The latest snapshot, if any (index 0 = none).
    pub snapshot: Snapshot,
    /// Every durable entry after the snapshot, contiguous.
    pub entries: Vec<Entry>,
    /// The state machine's applied index; committed entries up to it are not
    /// handed out again.
    pub applied: Index,
}

/// Everything the caller must do after a batch of inputs. See the module docs
/// of [`crate::raft`] for the order in which the fields must be handled.
#[derive(Clone, Debug, Default)]
pub struct Ready {
    pub soft_state: Option<SoftState>,
    pub hard_state: Option<HardState>,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    pub messages: Vec<Message>,
    pub persisted_messages: Vec<Message>,
    pub committed_entries: Vec<Entry>,
    pub read_states: Vec<ReadState>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.soft_state.is_none()
            && self.hard_state.is_none()
            && self.snapshot.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.persisted_messages.is_empty()
            && self.committed_entries.is_empty()
            && self.read_states.is_empty()
    }
}

/// A read waiting for a quorum of heartbeat acknowledgements.
#[derive(Debug)]
pub(super) struct PendingRead {
    pub context: Bytes,
    pub index: Index,
    pub requester: NodeId,
    pub acks: BTreeSet<NodeId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CampaignKind {
    PreElection,
    Election,
    Transfer,
}

/// A read-only view for observers and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    pub leader: NodeId,
    pub term: Term,
    pub vote: NodeId,
    pub committed: Index,
    pub persisted: Index,
    pub applied_out: Index,
    pub first_index: Index,
    pub last_index: Index,
    pub conf_state: ConfState,
}

pub struct Raft {
    pub(super) config: Config,
    pub(super) id: NodeId,
    pub(super) term: Term,
    pub(super) vote: NodeId,
    pub(super) role: Role,
    pub(super) leader: NodeId,
    pub(super) log: RaftLog,
    pub(super) tracker: Tracker,
    /// Votes received in the current (pre-)election.
    pub(super) votes: BTreeMap<NodeId, bool>,
    pub(super) election_elapsed: u32,
    pub(super) heartbeat_elapsed: u32,
    // Invariant: election_ticks <= randomized_election_ticks < 2 * election_ticks.
    pub(super) randomized_election_ticks: u32,
    /// Set while this leader hands leadership to another voter.
    pub(super) transferee: Option<NodeId>,
    /// Index of the latest membership change appended by this leader.
    pub(super) pending_conf_index: Index,
    /// Reads waiting for a heartbeat quorum, oldest first.
    pub(super) pending_reads: VecDeque<PendingRead>,
    /// Reads that arrived before this leader committed an entry of its term.
    pub(super) reads_before_commit: Vec<(NodeId, Bytes)>,
    /// Proposals since the last `ready` that still need broadcasting.
    pub(super) needs_broadcast: bool,
    pub(super) messages: Vec<Message>,
    pub(super) persisted_messages: Vec<Message>,
    pub(super) read_states: Vec<ReadState>,
    pub(super) pending_snapshot: Option<Snapshot>,
    pub(super) last_hard_state: HardState,
    pub(super) last_soft_state: SoftState,
    pub(super) rng: SmallRng,
}

impl Raft {
    /// Starts a node from what the caller recovered. `initial_conf` is the
    /// bootstrap membership (etcd's `--initial-cluster`), used only when the
    /// node has no durable state at all: then, like etcd, the log starts with
    /// one committed membership entry per initial member at term 1, identical
    /// on every bootstrapping node. Keeping the bootstrap membership *in the
    /// log* is what lets a member added later learn the whole configuration
    /// from the leader. A node joining an existing cluster passes an empty
    /// configuration.
    pub fn new(config: Config, persisted: Persisted, initial_conf: ConfState) -> Raft {
        config.validate();
        let Persisted {
            mut hard_state,
            snapshot,
            mut entries,
            applied,
        } = persisted;
        let fresh = hard_state == HardState::default() && snapshot.meta.index == Index(0) && entries.is_empty();
        let bootstrap = fresh && !initial_conf.voters.is_empty();
        if bootstrap {
            entries = Raft::bootstrap_entries(&initial_conf, &config.bootstrap_contexts);
            hard_state = HardState {
                term: Term(1),
                vote: NodeId::NONE,
                commit: Index(entries.len() as u64),
            };
        }
        let mut log = RaftLog::new(snapshot, entries, hard_state.commit, applied);
        if bootstrap {
            // The bootstrap entries exist only in memory until the first Ready.
            log.persisted = Index(0);
            log.unstable_from = Index(1);
        }
        let id = config.id;
        let rng = SmallRng::seed_from_u64(config.seed);
        let mut raft = Raft {
            tracker: Tracker::new(ConfState::default(), config.max_inflight_messages),
            id,
            term: hard_state.term,
            vote: hard_state.vote,
            role: Role::Follower,
            leader: NodeId::NONE,
            log,
            votes: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_ticks: config.election_ticks,
            transferee: None,
            pending_conf_index: Index(0),
            pending_reads: VecDeque::new(),
            reads_before_commit: Vec::new(),
            needs_broadcast: false,
            messages: Vec::new(),
            persisted_messages: Vec::new(),
            read_states: Vec::new(),
            pending_snapshot: None,
            last_hard_state: HardState::default(),
            last_soft_state: SoftState {
                leader: NodeId::NONE,
                role: Role::Follower,
            },
            rng,
            config,
        };
        let conf = raft.conf_state_at(raft.log.committed);
        raft.tracker.set_conf(conf, raft.log.last_index().next());
        raft.last_hard_state = if bootstrap {
            HardState::default()
        } else {
            raft.hard_state()
        };
        raft.reset_randomized_election_timeout();
        raft
    }

    fn bootstrap_entries(conf: &ConfState, contexts: &BTreeMap<NodeId, Bytes>) -> Vec<Entry> {
        let voters = conf.voters.iter().map(|node| (ConfChangeKind::AddVoter, *node));
        let learners = conf.learners.iter().map(|node| (ConfChangeKind::AddLearner, *node));
        voters
            .chain(learners)
            .enumerate()
            .map(|(position, (kind, node))| Entry {
                index: Index(position as u64 + 1),
                term: Term(1),
                kind: EntryKind::ConfChange,
                data: ConfChange {
                    kind,
                    node,
                    context: contexts.get(&node).cloned().unwrap_or_default(),
                }
                .encode(),
            })
            .collect()
    }

    // ----- inputs --------------------------------------------------------

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        match self.role {
            Role::Leader => self.tick_leader(),
            _ => self.tick_election(),
        }
    }

    /// Starts an election now (with a pre-vote round when enabled).
    pub fn campaign(&mut self) {
        let kind = if self.config.pre_vote {
            CampaignKind::PreElection
        } else {
            CampaignKind::Election
        };
        self.start_campaign(kind);
    }

    /// Proposes one entry of application data.
    pub fn propose(&mut self, data: Bytes) -> Result<(), RaftError> {
        self.propose_batch(vec![data])
    }

    /// Proposes many entries at once; they travel in the same append messages.
    pub fn propose_batch(&mut self, batch: Vec<Bytes>) -> Result<(), RaftError> {
        let entries = batch
            .into_iter()
            .map(|data| Entry {
                index: Index(0),
                term: Term(0),
                kind: EntryKind::Normal,
                data,
            })
            .collect();
        self.propose_entries(self.id, entries)
    }

    /// Proposes a membership change (one at a time; see `membership.rs`).
    pub fn propose_conf_change(&mut self, change: ConfChange) -> Result<(), RaftError> {
        let entry = Entry {
            index: Index(0),
            term: Term(0),
            kind: EntryKind::ConfChange,
            data: change.encode(),
        };
        self.propose_entries(self.id, vec![entry])
    }

    /// Asks for a linearizable read point. When confirmed, a [`ReadState`] with
    /// this `context` appears in a later `Ready`. Many client reads should share
    /// one context: one heartbeat round then serves them all.
    pub fn read_index(&mut self, context: Bytes) -> Result<(), RaftError> {
        match self.role {
            Role::Leader => {
                self.handle_read_request(self.id, context);
                Ok(())
            }
            _ if self.leader != NodeId::NONE => {
                let mut message = Message::new(MessageKind::ReadIndex, self.id, self.leader, Term(0));
                message.context = context;
                self.send(message);
                Ok(())
            }
            _ => Err(RaftError::NoLeader),
        }
    }

    /// Hands leadership to `to` (a voter). Forwarded when this node is a follower.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), RaftError> {
        match self.role {
            Role::Leader => self.handle_transfer_leader(to),
            _ if self.leader != NodeId::NONE => {
                let mut message = Message::new(MessageKind::TransferLeader, self.id, self.leader, Term(0));
                message.index = Index(to.0);
                self.send(message);
                Ok(())
            }
            _ => Err(RaftError::NoLeader),
        }
    }

    /// Tells the leader the snapshot sent to `to` was delivered (or not).
    pub fn report_snapshot(&mut self, to: NodeId, delivered: bool) {
        if self.role != Role::Leader {
            return;
        }
        if let Some(progress) = self.tracker.progress.get_mut(&to) {
            if matches!(progress.state, super::progress::ProgressState::Snapshot { .. }) {
                progress.become_probe();
                // Wait for the follower's answer (or a heartbeat) before probing.
                progress.probe_sent = delivered;
            }
        }
    }

    /// Tells the leader that sending to `to` failed; stop streaming to it blindly.
    pub fn report_unreachable(&mut self, to: NodeId) {
        if self.role != Role::Leader {
            return;
        }
        if let Some(progress) = self.tracker.progress.get_mut(&to) {
            if progress.state == super::progress::ProgressState::Replicate {
                progress.become_probe();
            }
        }
    }

    /// Discards the log up to `index`, which the state machine has applied and
    /// captured in `data`. Followers behind it will be sent this snapshot.
    pub fn compact(&mut self, index: Index, data: Bytes) -> Result<(), RaftError> {
        if index <= self.log.snapshot.meta.index || index > self.log.applied_out {
            return Err(RaftError::CompactOutOfRange);
        }
        let term = self
            .log
            .term(index)
            .expect("an applied index above the snapshot is in the log");
        let conf_state = self.conf_state_at(index);
        self.log.compact(Snapshot {
            meta: SnapshotMeta {
                index,
                term,
                conf_state,
            },
            data,
        });
        Ok(())
    }

    /// The position of a snapshot of the state machine as applied through
    /// `index` (its term and the configuration in force there); `None` unless
    /// `index` is applied and still in the log (or is the snapshot's own).
    pub fn snapshot_meta_at(&self, index: Index) -> Option<SnapshotMeta> {
        if index < self.log.snapshot.meta.index || index > self.log.applied_out {
            return None;
        }
        Some(SnapshotMeta {
            index,
            term: self.log.term(index)?,
            conf_state: self.conf_state_at(index),
        })
    }

    // ----- outputs -------------------------------------------------------

    pub fn has_ready(&self) -> bool {
        self.needs_broadcast
            || !self.messages.is_empty()
            || !self.persisted_messages.is_empty()
            || !self.read_states.is_empty()
            || self.pending_snapshot.is_some()
            || self.log.unstable_from <= self.log.last_index()
            || self.log.has_next_committed()
            || self.hard_state() != self.last_hard_state
            || self.soft_state() != self.last_soft_state
    }

    /// Collects everything the caller must persist, send and apply. Call
    /// `advance` with it once its entries and hard state are durable, before
    /// the next `ready`.
    pub fn ready(&mut self) -> Ready {
        if self.needs_broadcast {
            self.needs_broadcast = false;
            self.broadcast_append();
        }
        let hard_state = self.hard_state();
        let soft_state = self.soft_state();
        let entries = self.log.unstable_entries();
        self.log.mark_handed_out();
        let committed_entries = self.log.next_committed(self.config.max_apply_bytes);
        if let Some(last) = committed_entries.last() {
            self.log.applied_out = last.index;
        }
        let ready = Ready {
            soft_state: (soft_state != self.last_soft_state).then_some(soft_state),
            hard_state: (hard_state != self.last_hard_state).then_some(hard_state),
            snapshot: self.pending_snapshot.take(),
            entries,
            messages: std::mem::take(&mut self.messages),
            persisted_messages: std::mem::take(&mut self.persisted_messages),
            committed_entries,
            read_states: std::mem::take(&mut self.read_states),
        };
        self.last_soft_state = soft_state;
        ready
    }

    /// The caller has made `ready`'s snapshot, entries and hard state durable.
    pub fn advance(&mut self, ready: &Ready) {
        if let Some(hard_state) = ready.hard_state {
            self.last_hard_state = hard_state;
        }
        if let Some(last) = ready.entries.last() {
            self.log.persisted_to(last.index, last.term);
        }
        if self.role == Role::Leader && self.maybe_commit() {
            self.needs_broadcast = true;
        }
    }

    // ----- observation ---------------------------------------------------

    pub fn status(&self) -> Status {
        Status {
            id: self.id,
            role: self.role,
            leader: self.leader,
            term: self.term,
            vote: self.vote,
            committed: self.log.committed,
            persisted: self.log.persisted,
            applied_out: self.log.applied_out,
            first_index: self.log.first_index(),
            last_index: self.log.last_index(),
            conf_state: self.tracker.conf.clone(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn leader(&self) -> NodeId {
        self.leader
    }

    pub fn term(&self) -> Term {
        self.term
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.tracker.conf
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.log.snapshot
    }

    /// Entries held in memory (after the snapshot), for inspection.
    pub fn log_entries(&self) -> impl Iterator<Item = &Entry> {
        self.log.entries()
    }

    /// Whether this node may campaign: a voter in the current configuration.
    pub fn is_promotable(&self) -> bool {
        self.tracker.conf.is_voter(self.id)
    }

    /// The follower states the leader tracks (empty on a non-leader).
    pub fn progress(&self) -> Vec<(NodeId, Index, super::progress::ProgressState)> {
        if self.role != Role::Leader {
            return Vec::new();
        }
        self.tracker
            .progress
            .iter()
            .map(|(node, progress)| (*node, progress.matched, progress.state))
            .collect()
    }

    // ----- internals shared by the handlers ------------------------------

    pub(super) fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
        }
    }

    fn soft_state(&self) -> SoftState {
        SoftState {
            leader: self.leader,
            role: self.role,
        }
    }

    /// Queues a message. A leader's appends, heartbeats, snapshots and
    /// TimeoutNow promise nothing about local durable state and may leave at
    /// once; every other message waits until this `Ready` is persisted.
    pub(super) fn send(&mut self, message: Message) {
        let immediate = matches!(
            message.kind,
            MessageKind::Append | MessageKind::Heartbeat | MessageKind::Snapshot | MessageKind::TimeoutNow
        );
        if immediate {
            self.messages.push(message);
        } else {
            self.persisted_messages.push(message);
        }
    }

    pub(super) fn reset_randomized_election_timeout(&mut self) {
        let base = self.config.election_ticks;
        self.randomized_election_ticks = base + self.rng.gen_range(0..base);
    }

    /// Clears per-term volatile state when the term or role changes.
    pub(super) fn reset(&mut self, term: Term) {
        if self.term != term {
            assert!(term > self.term, "term going backwards: {} -> {term}", self.term);
            self.term = term;
            self.vote = NodeId::NONE;
        }
        self.leader = NodeId::NONE;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.reset_randomized_election_timeout();
        self.transferee = None;
        self.votes.clear();
        // Pending reads belong to a leadership that is over; callers learn of it
        // through the soft state and fail those reads ("leader changed").
        self.pending_reads.clear();
        self.reads_before_commit.clear();
        self.needs_broadcast = false;
    }

    pub(super) fn become_follower(&mut self, term: Term, leader: NodeId) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    pub(super) fn become_leader(&mut self) {
        assert!(
            matches!(self.role, Role::Candidate),
            "{} became leader from {:?}",
            self.id,
            self.role
        );
        let term = self.term;
        self.reset(term);
        self.role = Role::Leader;
        self.leader = self.id;
        let next = self.log.last_index().next();
        let conf = self.tracker.conf.clone();
        self.tracker.progress.clear();
        self.tracker.set_conf(conf, next);
        // Check-quorum must hear from each follower anew in this term.
        let id = self.id;
        for (node, progress) in self.tracker.progress.iter_mut() {
            progress.recent_active = *node == id;
        }
        if let Some(own) = self.tracker.progress.get_mut(&self.id) {
            own.matched = self.log.persisted;
            own.next = next;
        }
        // The no-op entry lets this leader commit (and so learn the commit
        // index) in its own term; membership changes and reads wait for it.
        self.pending_conf_index = next;
        self.append_entries(vec![Entry {
            index: Index(0),
            term: Term(0),
            kind: EntryKind::Normal,
            data: Bytes::new(),
        }]);
        self.needs_broadcast = true;
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.is_promotable() && self.election_elapsed >= self.randomized_election_ticks {
            self.election_elapsed = 0;
            self.campaign();
        }
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.config.election_ticks {
            self.election_elapsed = 0;
            if self.config.check_quorum && !self.check_quorum_active() {
                // Partitioned from a quorum: stop claiming leadership, so clients
                // go elsewhere and no lease-style guarantee is given.
                let term = self.term;
                self.become_follower(term, NodeId::NONE);
                return;
            }
            // A transfer that has not finished within an election timeout failed.
            self.transferee = None;
        }
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            let context = self
                .pending_reads
                .back()
                .map(|read| read.context.clone())
                .unwrap_or_default();
            self.broadcast_heartbeat(context);
        }
    }

    /// Whether a quorum was heard from since the last check; resets the marks.
    fn check_quorum_active(&mut self) -> bool {
        let id = self.id;
        let active: Vec<NodeId> = self
            .tracker
            .progress
            .iter()
            .filter(|(node, progress)| **node == id || progress.recent_active)
            .map(|(node, _)| *node)
            .collect();
        for (node, progress) in self.tracker.progress.iter_mut() {
            if *node != id {
                progress.recent_active = false;
            }
        }
        self.tracker.has_quorum(active)
    }

    /// The configuration in force once every entry up to `index` is applied:
    /// the snapshot's, then each valid membership change in the log.
    pub(super) fn conf_state_at(&self, index: Index) -> ConfState {
        let mut conf = self.log.snapshot.meta.conf_state.clone();
        for entry in self.log.entries_between(Index(0), index) {
            if entry.kind == EntryKind::ConfChange {
                if let Some(change) = ConfChange::decode(&entry.data) {
                    // Invalid changes are skipped identically on every node.
                    let _ = conf.apply(&change);
                }
            }
        }
        conf
    }
}
