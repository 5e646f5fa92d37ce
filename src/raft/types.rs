//! The vocabulary of the Raft core: identifiers, log entries, messages and the
//! persistent state. These are plain Rust types; the server's transport converts
//! them to and from the peer protocol (DESIGN.md invariant 4).

use bytes::Bytes;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_newtype!(
    /// A member of the cluster. `NodeId(0)` means "nobody" (no leader, no vote).
    NodeId
);
id_newtype!(
    /// A Raft term. Terms only grow on any one node (persisted in `HardState`).
    Term
);
id_newtype!(
    /// A position in the replicated log; the first entry has index 1.
    Index
);

impl NodeId {
    pub const NONE: NodeId = NodeId(0);
}

impl Index {
    pub fn next(self) -> Index {
        Index(self.0 + 1)
    }

    /// The previous index; `Index(0).prev()` is a caller bug.
    pub fn prev(self) -> Index {
        assert!(self.0 > 0, "Index(0) has no predecessor");
        Index(self.0 - 1)
    }

    pub fn plus(self, count: usize) -> Index {
        Index(self.0 + count as u64)
    }
}

/// What a log entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Application data (may be empty: a new leader's no-op entry).
    Normal,
    /// An encoded [`ConfChange`].
    ConfChange,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub index: Index,
    pub term: Term,
    pub kind: EntryKind,
    pub data: Bytes,
}

impl Entry {
    /// Bytes this entry counts against message and batch limits.
    pub fn size_bytes(&self) -> usize {
        self.data.len() + 24
    }
}

/// The state a node must persist before it sends any message that depends on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: Term,
    pub vote: NodeId,
    pub commit: Index,
}

/// A membership change. Braid changes membership one member at a time (see
/// `membership.rs` for why); promoting a learner is `AddVoter` on that learner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfChangeKind {
    AddVoter,
    RemoveVoter,
    AddLearner,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfChange {
    pub kind: ConfChangeKind,
    pub node: NodeId,
    /// Opaque to Raft (the server keeps the member's name and URLs here).
    pub context: Bytes,
}

impl ConfChange {
    /// Encodes the change as entry data: one kind byte, the node id, the context.
    pub fn encode(&self) -> Bytes {
        let mut buffer = Vec::with_capacity(9 + self.context.len());
        buffer.push(match self.kind {
            ConfChangeKind::AddVoter => 1,
            ConfChangeKind::RemoveVoter => 2,
            ConfChangeKind::AddLearner => 3,
        });
        buffer.extend_from_slice(&self.node.0.to_be_bytes());
        buffer.extend_from_slice(&self.context);
        Bytes::from(buffer)
    }

    /// Decodes entry data written by [`ConfChange::encode`]; `None` if malformed.
    pub fn decode(data: &Bytes) -> Option<ConfChange> {
        if data.len() < 9 {
            return None;
        }
        let kind = match data[0] {
            1 => ConfChangeKind::AddVoter,
            2 => ConfChangeKind::RemoveVoter,
            3 => ConfChangeKind::AddLearner,
            _ => return None,
        };
        let node = NodeId(u64::from_be_bytes(data[1..9].try_into().ok()?));
        Some(ConfChange {
            kind,
            node,
            context: data.slice(9..),
        })
    }
}

/// Who votes and who only listens. Kept sorted so it reaches the wire in a
/// deterministic order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConfState {
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
}

impl ConfState {
    pub fn new(voters: impl IntoIterator<Item = NodeId>, learners: impl IntoIterator<Item = NodeId>) -> Self {
        let mut state = ConfState {
            voters: voters.into_iter().collect(),
            learners: learners.into_iter().collect(),
        };
        state.voters.sort();
        state.voters.dedup();
        state.learners.sort();
        state.learners.dedup();
        state
    }

    pub fn is_voter(&self, node: NodeId) -> bool {
        self.voters.binary_search(&node).is_ok()
    }

    pub fn is_learner(&self, node: NodeId) -> bool {
        self.learners.binary_search(&node).is_ok()
    }

    pub fn contains(&self, node: NodeId) -> bool {
        self.is_voter(node) || self.is_learner(node)
    }

    /// Voters then learners, each in ascending order.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }

    /// Applies one change; returns an error text when the change makes no sense
    /// for this configuration (the entry is then skipped on every node alike).
    pub fn apply(&mut self, change: &ConfChange) -> Result<(), &'static str> {
        let node = change.node;
        match change.kind {
            ConfChangeKind::AddVoter => {
                if self.is_voter(node) {
                    return Err("node is already a voter");
                }
                self.learners.retain(|learner| *learner != node);
                self.voters.push(node);
                self.voters.sort();
            }
            ConfChangeKind::AddLearner => {
                if self.contains(node) {
                    return Err("node is already a member");
                }
                self.learners.push(node);
                self.learners.sort();
            }
            ConfChangeKind::RemoveVoter => {
                if !self.contains(node) {
                    return Err("node is not a member");
                }
                if self.is_voter(node) && self.voters.len() == 1 {
                    return Err("cannot remove the last voter");
                }
                self.voters.retain(|voter| *voter != node);
                self.learners.retain(|learner| *learner != node);
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub index: Index,
    pub term: Term,
    /// The configuration in force at `index`.
    pub conf_state: ConfState,
}

/// A point-in-time image of the state machine up to `meta.index`. `data` is
/// opaque to Raft: the server may put the image itself or a handle to it here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub data: Bytes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// Leader → follower: entries after (`log_term`, `index`), and `commit`.
    Append,
    /// Follower → leader: accepted up to `index`, or rejected with hints.
    AppendResponse,
    /// Candidate → all: `index`/`log_term` describe the candidate's last entry.
    Vote,
    VoteResponse,
    /// Like `Vote` but for `term` + 1 without anyone changing their term.
    PreVote,
    PreVoteResponse,
    /// Leader → follower: keeps followers quiet, carries `commit` and a read context.
    Heartbeat,
    HeartbeatResponse,
    /// Leader → follower: a snapshot for a follower behind the compacted log.
    Snapshot,
    /// Follower → leader: a forwarded proposal (entries without index or term).
    Propose,
    /// Follower → leader: a forwarded read-index request (`context`).
    ReadIndex,
    /// Leader → follower: the read index for a forwarded request.
    ReadIndexResponse,
    /// Leader → transfer target: campaign now, ignoring election timeouts.
    TimeoutNow,
    /// Follower → leader: a forwarded leader-transfer request (`index` = target id).
    TransferLeader,
}

/// One message between two nodes. Fields not used by a kind are left zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub kind: MessageKind,
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    /// Append: the term of the entry before `entries`. Vote: the candidate's last log term.
    pub log_term: Term,
    /// Append: the index of the entry before `entries`. Vote: the candidate's last index.
    /// AppendResponse: the highest index accepted, or the rejected index.
    pub index: Index,
    pub entries: Vec<Entry>,
    pub commit: Index,
    pub reject: bool,
    /// AppendResponse rejection: the follower's suggestion for the next probe.
    pub reject_hint: Index,
    /// AppendResponse rejection: the follower's term at `reject_hint` (0 if it has no entry there).
    pub reject_term: Term,
    /// ReadIndex context; `Vote` from a leader transfer carries [`TRANSFER_CONTEXT`].
    pub context: Bytes,
    pub snapshot: Option<Snapshot>,
}

/// Marks a `Vote` caused by `TimeoutNow`: voters skip their leader-lease check.
pub const TRANSFER_CONTEXT: &[u8] = b"braid-leader-transfer";

impl Message {
    pub fn new(kind: MessageKind, from: NodeId, to: NodeId, term: Term) -> Message {
        Message {
            kind,
            from,
            to,
            term,
            log_term: Term(0),
            index: Index(0),
            entries: Vec::new(),
            commit: Index(0),
            reject: false,
            reject_hint: Index(0),
            reject_term: Term(0),
            context: Bytes::new(),
            snapshot: None,
        }
    }
}

/// A released linearizable read: once the state machine has applied `index`,
/// reads waiting on `context` may run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadState {
    pub index: Index,
    pub context: Bytes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Volatile state worth telling observers about (metrics, logs, the API).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    pub leader: NodeId,
    pub role: Role,
}

/// Why a request was not accepted. The server maps these to etcd's errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RaftError {
    /// No leader is known, so nothing can be forwarded.
    NoLeader,
    /// A leadership transfer is in progress; proposals wait for the new leader.
    TransferInProgress,
    /// A membership change is already in flight, or the leader has not yet
    /// committed an entry of its term (single-server change safety).
    ConfChangeInProgress,
    /// The change is not valid for the current configuration.
    InvalidConfChange(&'static str),
    /// Only the leader can do this.
    NotLeader,
    /// The transfer target is not a voter, or is this node.
    BadTransferee,
    /// The node was removed from the configuration.
    NotMember,
    /// `compact` asked for an index that is not applied or already compacted.
    CompactOutOfRange,
}

impl std::fmt::Display for RaftError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RaftError::NoLeader => write!(f, "raft: no leader"),
            RaftError::TransferInProgress => write!(f, "raft: leader transfer in progress"),
            RaftError::ConfChangeInProgress => write!(f, "raft: a configuration change is in progress"),
            RaftError::InvalidConfChange(reason) => write!(f, "raft: invalid configuration change: {reason}"),
            RaftError::NotLeader => write!(f, "raft: not leader"),
            RaftError::BadTransferee => write!(f, "raft: bad leader transferee"),
            RaftError::NotMember => write!(f, "raft: this node is not a member of the cluster"),
            RaftError::CompactOutOfRange => write!(f, "raft: compaction index out of range"),
        }
    }
}

impl std::error::Error for RaftError {}
