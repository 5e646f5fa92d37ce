//! What the API layer sees of a running node: propose a write and wait for its
//! result, wait for a linearizable read point, read the store, and describe
//! the member. Everything here is cheap to clone and safe to call from many
//! request tasks at once.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::alarms::AlarmMember;
use super::lessor::{LeaseError, LeaseRequest, LeaseResponse};
use super::maintenance::MaintenanceShared;
use super::membership::{Member, MemberAnswer, MemberRequest, MembershipError};
use super::metrics::NodeMetrics;
use super::proposal::Command;
use crate::mvcc::{Backend, MvccError, MvccStore, WriteRequest, WriteResponse};
use crate::raft::NodeId;

/// Why a request could not be served. `api` maps each to etcd's gRPC code and text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    /// `etcdserver: no leader` (Unavailable).
    #[error("etcdserver: no leader")]
    NoLeader,
    /// `etcdserver: request timed out` (Unavailable).
    #[error("etcdserver: request timed out")]
    Timeout,
    /// `etcdserver: leader changed` (Unavailable): a read lost its leader mid-way.
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    /// `etcdserver: server stopped` (Unavailable).
    #[error("etcdserver: server stopped")]
    Stopped,
    /// `etcdserver: request is too large` (InvalidArgument).
    #[error("etcdserver: request is too large")]
    TooLarge,
    /// `etcdserver: too many requests` (ResourceExhausted): apply is far behind commit.
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    /// A request error decided when the entry was applied (compacted, future revision, …).
    #[error("{0}")]
    Mvcc(MvccError),
    /// A membership request refused before it was proposed (etcd's member errors).
    #[error("{0}")]
    Membership(MembershipError),
    /// A lease request failed (`requested lease not found`, `lease already exists`, `too large lease TTL`).
    #[error("{0}")]
    Lease(LeaseError),
    /// The storage failed; the node is stopping (fail-stop).
    #[error("etcdserver: storage failure: {0}")]
    Storage(String),
    /// `etcdserver: mvcc: database space exceeded` (ResourceExhausted): NOSPACE is active.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// `etcdserver: corrupt cluster` (DataLoss): CORRUPT is active.
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    /// `etcdserver: not leader` (FailedPrecondition): MoveLeader sent to a follower.
    #[error("etcdserver: not leader")]
    NotLeader,
    /// `etcdserver: bad leader transferee` (FailedPrecondition).
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// `etcdserver: request timed out, leader transfer took too long` (Unknown).
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
}

/// The `ResponseHeader` every etcd response carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub cluster_id: u64,
    pub member_id: u64,
    /// The member's current store revision (also for historical reads).
    pub revision: i64,
    pub raft_term: u64,
}

/// A member's view of itself, for `Maintenance.Status`, `/health` and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberStatus {
    pub member_id: u64,
    pub cluster_id: u64,
    /// 0 when no leader is known.
    pub leader: u64,
    pub raft_term: u64,
    /// The committed Raft index.
    pub raft_index: u64,
    pub raft_applied_index: u64,
    pub is_learner: bool,
    /// Bytes of the state file, and of the pages in use.
    pub db_size_bytes: i64,
    pub db_size_in_use_bytes: i64,
    pub is_leader: bool,
    pub leader_changes_seen: u64,
}

/// Requests from the API to the node loop (public so tests can stand in for
/// the node loop).
pub enum Request {
    Write {
        request: Command,
        reply: oneshot::Sender<Result<(Applied, Header), ServerError>>,
    },
    LinearizableRead {
        reply: oneshot::Sender<Result<(), ServerError>>,
    },
    /// A Cluster-service change, answered once this member has applied it.
    Member {
        request: MemberRequest,
        reply: oneshot::Sender<Result<MemberAnswer, ServerError>>,
    },
    Lease {
        request: LeaseRequest,
        reply: oneshot::Sender<Result<(LeaseResponse, Header), ServerError>>,
    },
    /// Maintenance.MoveLeader: hand leadership to `target` (`server::maintenance`).
    MoveLeader {
        target: NodeId,
        reply: oneshot::Sender<Result<(), ServerError>>,
    },
}

/// What an applied command answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    Write(WriteResponse),
    /// The alarm the change activated or deactivated (`None`: it already was so).
    Alarm(Option<AlarmMember>),
}

/// Live status the node loop publishes for readers.
#[derive(Clone, Debug, Default)]
pub(crate) struct Published {
    pub status: MemberStatus,
    /// The applied member table, ordered by ID.
    pub members: Vec<Member>,
}

/// A handle to a running node, given to the API layer.
pub struct NodeHandle<B: Backend> {
    pub(crate) requests: mpsc::Sender<Request>,
    pub(crate) store: MvccStore<B>,
    pub(crate) published: Arc<Mutex<Published>>,
    pub(crate) id: NodeId,
    pub(crate) cluster_id: u64,
    pub(crate) max_request_bytes: usize,
    pub(crate) metrics: Arc<NodeMetrics>,
    pub(crate) maintenance: Arc<MaintenanceShared>,
}

impl<B: Backend> Clone for NodeHandle<B> {
    fn clone(&self) -> Self {
        NodeHandle {
            requests: self.requests.clone(),
            store: self.store.clone(),
            published: Arc::clone(&self.published),
            id: self.id,
            cluster_id: self.cluster_id,
            max_request_bytes: self.max_request_bytes,
            metrics: Arc::clone(&self.metrics),
            maintenance: Arc::clone(&self.maintenance),
        }
    }
}

impl<B: Backend> NodeHandle<B> {
    /// Creates a handle and the receiving end the node loop serves.
    pub fn new(
        store: MvccStore<B>,
        id: NodeId,
        cluster_id: u64,
        max_request_bytes: usize,
    ) -> (NodeHandle<B>, mpsc::Receiver<Request>) {
        let (requests, inbox) = mpsc::channel(4096);
        let published = Arc::new(Mutex::new(Published::default()));
        let handle = NodeHandle {
            requests,
            store,
            published,
            id,
            cluster_id,
            max_request_bytes,
            metrics: Arc::new(NodeMetrics::default()),
            maintenance: Arc::default(),
        };
        (handle, inbox)
    }

    /// Replaces the published status (the node loop calls this on every change).
    pub fn publish(&self, status: MemberStatus) {
        self.published
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .status = status;
    }

    /// Replaces the published member table (the node loop calls this after applying a change).
    pub fn publish_members(&self, members: Vec<Member>) {
        self.published
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .members = members;
    }

    /// The member table as this member has applied it (serializable).
    pub fn members(&self) -> Vec<Member> {
        self.published
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .members
            .clone()
    }

    /// Proposes a membership change and answers once this member has applied it.
    pub async fn change_membership(&self, request: MemberRequest) -> Result<MemberAnswer, ServerError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Member { request, reply })
            .await
            .map_err(|_| ServerError::Stopped)?;
        answer.await.map_err(|_| ServerError::Stopped)?
    }

    /// Replicates `request` through Raft and returns its result once this member
    /// has applied it. The caller validates the request first (mvcc::validate_*).
    pub async fn write(&self, request: WriteRequest) -> Result<(WriteResponse, Header), ServerError> {
        match self.propose(Command::Write(request)).await? {
            (Applied::Write(response), header) => Ok((response, header)),
            (other, _) => panic!("the node answered a write with {other:?}"),
        }
    }

    /// Replicates any command and returns its answer once this member applied it.
    pub async fn propose(&self, request: Command) -> Result<(Applied, Header), ServerError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Write { request, reply })
            .await
            .map_err(|_| ServerError::Stopped)?;
        answer.await.map_err(|_| ServerError::Stopped)?
    }

    /// Serves a lease request: grants and revokes go through Raft; keepalives
    /// and time-to-live queries are answered by the leader (a follower
    /// forwards them); the lease list is this member's.
    pub async fn lease(&self, request: LeaseRequest) -> Result<(LeaseResponse, Header), ServerError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Lease { request, reply })
            .await
            .map_err(|_| ServerError::Stopped)?;
        answer.await.map_err(|_| ServerError::Stopped)?
    }

    /// Waits until this member has applied everything committed before the call
    /// (ReadIndex); a read from `store()` after it is linearizable.
    pub async fn linearizable_barrier(&self) -> Result<(), ServerError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::LinearizableRead { reply })
            .await
            .map_err(|_| ServerError::Stopped)?;
        answer.await.map_err(|_| ServerError::Stopped)?
    }

    /// The local store, for reads (serializable unless preceded by a barrier).
    pub fn store(&self) -> &MvccStore<B> {
        &self.store
    }

    /// A header with the member's current revision and term.
    pub fn header(&self) -> Header {
        let status = self.status();
        Header {
            cluster_id: self.cluster_id,
            member_id: self.id.0,
            revision: self.store.current_revision().0,
            raft_term: status.raft_term,
        }
    }

    /// The node's counters and histograms (for `/metrics`).
    pub fn metrics(&self) -> &Arc<NodeMetrics> {
        &self.metrics
    }

    pub fn status(&self) -> MemberStatus {
        self.published
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .status
            .clone()
    }

    pub fn has_leader(&self) -> bool {
        self.status().leader != 0
    }

    pub fn member_id(&self) -> u64 {
        self.id.0
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// `--max-request-bytes`: larger proposals get `etcdserver: request is too large`.
    pub fn max_request_bytes(&self) -> usize {
        self.max_request_bytes
    }
}
