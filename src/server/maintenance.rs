//! The node's side of etcd's Maintenance service: alarms (shared between the node loop,
//! which applies their changes, and the API, which reads them and checks the quota), leader
//! transfers (MoveLeader), and the per-member options (`--quota-backend-bytes`,
//! `--auto-compaction-*`). Kept out of `node.rs`, which only calls in here.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

use super::alarms::{AlarmAction, AlarmChange, AlarmKind, AlarmMember, AlarmSet};
use super::handle::{Applied, Header, NodeHandle, Request, ServerError};
use super::lessor::LeaseCommand;
use super::proposal::Command;
use crate::mvcc::{Backend, LeaseId, WriteRequest};
use crate::raft::{NodeId, Raft, RaftError, Role};

/// etcd's `DefaultQuotaBytes` (2 GiB), for `--quota-backend-bytes 0`.
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// etcd's quota cost of a LeaseGrant (`leaseOverhead` in its `quota.go`).
const LEASE_GRANT_COST_BYTES: u64 = 64;

/// `--auto-compaction-mode` with `--auto-compaction-retention` (see `auto_compaction`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AutoCompactionPolicy {
    #[default]
    Disabled,
    /// Keep this much history.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(u64),
}

/// Per-member maintenance settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaintenanceOptions {
    /// NOSPACE is raised when a write would take the bytes in use past this; `None` = no quota.
    pub quota_backend_bytes: Option<u64>,
    pub auto_compaction: AutoCompactionPolicy,
}

impl Default for MaintenanceOptions {
    fn default() -> Self {
        MaintenanceOptions {
            quota_backend_bytes: Some(DEFAULT_QUOTA_BACKEND_BYTES),
            auto_compaction: AutoCompactionPolicy::Disabled,
        }
    }
}

/// State the node loop and the API share through the `NodeHandle`.
pub(crate) struct MaintenanceShared {
    /// The alarms as of the last applied batch (the node loop replaces it after each).
    alarms: Mutex<AlarmSet>,
    quota_backend_bytes: Mutex<Option<u64>>,
}

impl Default for MaintenanceShared {
    fn default() -> Self {
        MaintenanceShared {
            alarms: Mutex::default(),
            quota_backend_bytes: Mutex::new(MaintenanceOptions::default().quota_backend_bytes),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<B: Backend> NodeHandle<B> {
    /// The active alarms this member has applied.
    pub fn alarms(&self) -> AlarmSet {
        lock(&self.maintenance.alarms).clone()
    }

    /// Replaces the alarms (the node loop, after applying a batch; tests standing in for it).
    pub fn publish_alarms(&self, alarms: AlarmSet) {
        *lock(&self.maintenance.alarms) = alarms;
    }

    /// `--quota-backend-bytes` (`None` = no quota).
    pub fn set_quota_backend_bytes(&self, quota: Option<u64>) {
        *lock(&self.maintenance.quota_backend_bytes) = quota;
    }

    /// etcd's quota check before proposing a write: refused at once while NOSPACE (or
    /// CORRUPT) is active, and a write that would take the backend past the quota raises
    /// NOSPACE for this member (through Raft) and is refused.
    pub async fn check_space(&self, request: &WriteRequest) -> Result<(), ServerError> {
        self.check_quota(self.alarms().refusal(request), super::alarms::request_cost(request))
            .await
    }

    /// The same check before proposing a LeaseGrant (etcd's `quotaLeaseServer`): refused
    /// while NOSPACE or CORRUPT is active, and a grant costs etcd's lease overhead.
    pub async fn check_lease_grant_space(&self) -> Result<(), ServerError> {
        let grant = Command::Lease(LeaseCommand::Grant {
            id: LeaseId(0),
            ttl_seconds: 0,
        });
        self.check_quota(self.alarms().command_refusal(&grant), LEASE_GRANT_COST_BYTES)
            .await
    }

    /// Refuses with `refusal` if there is one; otherwise raises NOSPACE and refuses when
    /// `cost` more bytes would take the backend past the quota.
    async fn check_quota(&self, refusal: Option<ServerError>, cost: u64) -> Result<(), ServerError> {
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        let quota = *lock(&self.maintenance.quota_backend_bytes);
        let Some(quota) = quota.filter(|_| cost > 0) else {
            return Ok(());
        };
        let (_, in_use_bytes) = self.store.backend().size_bytes();
        if in_use_bytes.saturating_add(cost) < quota {
            return Ok(());
        }
        let change = AlarmChange {
            action: AlarmAction::Activate,
            member: AlarmMember {
                member_id: self.id.0,
                alarm: AlarmKind::NoSpace,
            },
        };
        // etcd raises the alarm and refuses the write whether or not raising succeeded.
        let _ = self.propose(Command::Alarm(change)).await;
        Err(ServerError::NoSpace)
    }

    /// Replicates an alarm change; answers with the alarm that changed.
    pub async fn change_alarm(&self, change: AlarmChange) -> Result<(Option<AlarmMember>, Header), ServerError> {
        match self.propose(Command::Alarm(change)).await? {
            (Applied::Alarm(changed), header) => Ok((changed, header)),
            (other, _) => panic!("the node answered an alarm change with {other:?}"),
        }
    }

    /// Maintenance.MoveLeader: returns once `target` leads.
    pub async fn move_leader(&self, target: NodeId) -> Result<(), ServerError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::MoveLeader { target, reply })
            .await
            .map_err(|_| ServerError::Stopped)?;
        answer.await.map_err(|_| ServerError::Stopped)?
    }
}

/// What the alarms make of one committed command (entries applied before a restart are not
/// screened: the alarms loaded with the state file include them already).
pub(crate) enum Screened {
    /// The alarms let it through: the lessor and mvcc apply it.
    Pass(Command),
    /// Decided here — an alarm change, or a command the active alarms refuse. mvcc applies a
    /// no-op (it only advances the applied index) with `extra`; the proposer gets `answer`.
    Decided {
        extra: crate::mvcc::WriteBatch,
        answer: Result<Applied, ServerError>,
    },
}

/// Applies alarm changes to `alarms` in log order and refuses the commands they forbid
/// (etcd's corrupt and capped appliers).
pub(crate) fn screen_command(alarms: &mut AlarmSet, command: Command) -> Screened {
    if let Command::Alarm(change) = command {
        let (changed, extra) = alarms.apply(change);
        return Screened::Decided {
            extra,
            answer: Ok(Applied::Alarm(changed)),
        };
    }
    match alarms.command_refusal(&command) {
        Some(refusal) => Screened::Decided {
            extra: crate::mvcc::WriteBatch::new(),
            answer: Err(refusal),
        },
        None => Screened::Pass(command),
    }
}

type TransferReply = oneshot::Sender<Result<(), ServerError>>;

/// MoveLeader requests waiting for their transferee to lead: (target, deadline, reply).
#[derive(Default)]
pub(crate) struct LeaderTransfers {
    waiting: Vec<(NodeId, u64, TransferReply)>,
}

impl LeaderTransfers {
    /// Starts a transfer (etcd's checks: only the leader moves leadership, only to a voter).
    pub(crate) fn start(&mut self, raft: &mut Raft, target: NodeId, deadline_ns: u64, reply: TransferReply) {
        if raft.role() != Role::Leader {
            let _ = reply.send(Err(ServerError::NotLeader));
            return;
        }
        if !raft.conf_state().is_voter(target) {
            let _ = reply.send(Err(ServerError::BadLeaderTransferee));
            return;
        }
        match raft.transfer_leader(target) {
            Ok(()) => self.waiting.push((target, deadline_ns, reply)),
            Err(RaftError::BadTransferee) => {
                let _ = reply.send(Err(ServerError::BadLeaderTransferee));
            }
            Err(_) => {
                let _ = reply.send(Err(ServerError::NotLeader));
            }
        }
    }

    /// Answers the transfers that finished (`leader` leads now) or ran out of time.
    pub(crate) fn observe(&mut self, leader: NodeId, now_ns: u64) {
        if self.waiting.is_empty() {
            return;
        }
        for (target, deadline_ns, reply) in std::mem::take(&mut self.waiting) {
            if target == leader {
                let _ = reply.send(Ok(()));
            } else if deadline_ns <= now_ns {
                let _ = reply.send(Err(ServerError::LeaderTransferTimeout));
            } else {
                self.waiting.push((target, deadline_ns, reply));
            }
        }
    }
}
