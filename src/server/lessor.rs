//! The lessor: etcd's leases (COMPAT.md §2.4) as a replicated table plus the
//! leader's timers.
//!
//! Two kinds of state live here, and they must never mix:
//!
//! - **Replicated**: which leases exist, their granted TTL, and the remaining
//!   TTL of the last checkpoint. It changes only when a committed entry is
//!   applied (`apply`), identically on every member, and is persisted in the
//!   `Lease` bucket in the same backend batch as the entry
//!   (`ApplyEntry::extra`), so it survives restarts together with the applied
//!   index it belongs to.
//! - **Leader-local**: when each lease expires, on the monotonic clock. Only a
//!   leader (the "primary", in etcd's words) has expiries; followers hold
//!   leases forever. Keepalives move an expiry without Raft; an expiry becomes
//!   a revoke only by being proposed and committed.
//!
//! Timing rules, etcd's unless marked:
//! - A new leader does not expire leases early: `promote` gives every lease
//!   `now + remaining`, where remaining is the checkpointed remaining TTL if
//!   there is one, otherwise the full TTL.
//! - Beyond etcd (which needs `--experimental-enable-lease-checkpoint`):
//!   checkpoints are on by default. Every checkpoint interval the leader
//!   proposes the remaining TTL of every lease, so after a failover the new
//!   leader continues from at most one interval ago instead of resetting every
//!   lease to its full TTL. A keepalive clears the lease's checkpoint (a
//!   checkpoint of 0), so a renewed lease never comes back shorter.
//! - Expired leases are revoked at most `revokes_per_tick` per tick (etcd:
//!   1000/s); a revoke that does not commit is proposed again after
//!   `revoke_retry` (etcd: the request timeout).
//!
//! The lessor reads no clock: callers pass `now_ns` from the node's `Clock`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::proposal::Command;
use crate::mvcc::{BackendError, BackendRead, Bucket, LeaseId, WriteBatch, WriteRequest};

/// etcd's `MaxLeaseTTL`: larger grants get `etcdserver: too large lease TTL`.
pub const MAX_LEASE_TTL_SECONDS: i64 = 9_000_000_000;

/// etcd's default `--experimental-lease-checkpoint-interval`.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// At most this many leases per checkpoint proposal (etcd's batch size), so a
/// proposal stays far below `--max-request-bytes`.
pub const CHECKPOINT_BATCH_MAX: usize = 1000;

/// etcd revokes at most this many expired leases per second.
pub const REVOKES_PER_SECOND: u64 = 1000;

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// etcd's minimum lease TTL: `ceil((3 × election ticks / 2) × heartbeat)` in
/// seconds, with the ticks halved in integer arithmetic as etcd does. A lease
/// shorter than this could expire during an ordinary leader election.
pub fn min_ttl_seconds(election_ticks: u32, tick: Duration) -> i64 {
    let minimum = tick.saturating_mul(3u32.saturating_mul(election_ticks) / 2);
    minimum.as_nanos().div_ceil(u128::from(NANOS_PER_SECOND)) as i64
}

/// A lease request from the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseRequest {
    /// `id` 0: the server picks one.
    Grant {
        id: LeaseId,
        ttl_seconds: i64,
    },
    Revoke(LeaseId),
    KeepAlive(LeaseId),
    TimeToLive {
        id: LeaseId,
        keys: bool,
    },
    Leases,
}

/// The answer to a `LeaseRequest` (same variant order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseResponse {
    /// `ttl_seconds` may have been raised to the minimum TTL.
    Granted {
        id: LeaseId,
        ttl_seconds: i64,
    },
    Revoked,
    /// The renewed TTL; 0 when the lease does not exist (any more).
    KeepAlive {
        ttl_seconds: i64,
    },
    /// `None` when the lease does not exist.
    TimeToLive(Option<LeaseStatus>),
    Leases(Vec<LeaseId>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseStatus {
    /// Whole seconds left (truncated, as etcd reports them).
    pub remaining_seconds: i64,
    pub granted_ttl_seconds: i64,
    /// Attached keys, in key order (only when asked for).
    pub keys: Vec<Bytes>,
}

/// The lease requests only the leader can answer; a follower forwards them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseQuery {
    KeepAlive(LeaseId),
    TimeToLive { id: LeaseId, keys: bool },
}

/// A replicated lease command (the Raft entry form; see `proposal.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseCommand {
    Grant {
        id: LeaseId,
        ttl_seconds: i64,
    },
    /// Remaining TTLs measured by the leader; 0 clears a lease's checkpoint.
    Checkpoint(Vec<LeaseCheckpoint>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseCheckpoint {
    pub id: LeaseId,
    pub remaining_ttl_seconds: i64,
}

/// Why a lease command failed (decided when the entry is applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("etcdserver: requested lease not found")]
    NotFound,
    #[error("etcdserver: lease already exists")]
    Exists,
    #[error("etcdserver: too large lease TTL")]
    TtlTooLarge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LessorOptions {
    pub min_ttl_seconds: i64,
    /// `Duration::ZERO` turns periodic checkpoints off (keepalives still clear old ones).
    pub checkpoint_interval: Duration,
    /// How long an expiry revoke may take to commit before it is proposed again.
    pub revoke_retry: Duration,
    pub revokes_per_tick: usize,
}

/// One lease. Invariant: `expiry_ns` is `Some` exactly while the lessor is primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lease {
    ttl_seconds: i64,
    /// The remaining TTL of the last checkpoint; 0 = none (use the full TTL).
    checkpoint_seconds: i64,
    expiry_ns: Option<u64>,
}

/// What applying one entry means for mvcc: the request to run, the lease
/// table's writes to commit with it, and the lease error to answer instead of
/// mvcc's result.
#[derive(Debug)]
pub struct Applied {
    pub request: WriteRequest,
    pub extra: WriteBatch,
    pub error: Option<LeaseError>,
}

#[derive(Debug)]
pub struct Lessor {
    options: LessorOptions,
    leases: BTreeMap<LeaseId, Lease>,
    /// (expiry, lease) for every lease with an expiry: the next to expire first.
    expiries: BTreeSet<(u64, LeaseId)>,
    primary: bool,
    /// Expired leases whose revoke was proposed, with when to propose it again.
    revoking: BTreeMap<LeaseId, u64>,
    /// Renewed leases whose checkpoint must be cleared.
    checkpoint_resets: BTreeSet<LeaseId>,
    next_checkpoint_ns: u64,
}

impl Lessor {
    pub fn new(options: LessorOptions) -> Lessor {
        Lessor {
            options,
            leases: BTreeMap::new(),
            expiries: BTreeSet::new(),
            primary: false,
            revoking: BTreeMap::new(),
            checkpoint_resets: BTreeSet::new(),
            next_checkpoint_ns: 0,
        }
    }

    /// Loads the lease table persisted in `read`'s `Lease` bucket.
    pub fn open(options: LessorOptions, read: &impl BackendRead) -> Result<Lessor, BackendError> {
        let mut lessor = Lessor::new(options);
        let (start, end) = Bucket::Lease.bounds();
        let mut corrupt = None;
        read.scan(&start, &end, &mut |key, value| match decode_record(key, value) {
            Some((id, lease)) => {
                lessor.leases.insert(id, lease);
                std::ops::ControlFlow::Continue(())
            }
            None => {
                corrupt = Some(format!("corrupt lease record {key:?} = {value:?}"));
                std::ops::ControlFlow::Break(())
            }
        })?;
        match corrupt {
            Some(message) => Err(BackendError::new(message)),
            None => Ok(lessor),
        }
    }

    pub fn options(&self) -> &LessorOptions {
        &self.options
    }

    pub fn contains(&self, id: LeaseId) -> bool {
        self.leases.contains_key(&id)
    }

    pub fn is_primary(&self) -> bool {
        self.primary
    }

    /// Every lease, by id.
    pub fn ids(&self) -> Vec<LeaseId> {
        self.leases.keys().copied().collect()
    }

    /// The TTL a grant of `ttl_seconds` gets (etcd raises short TTLs to the minimum).
    pub fn granted_ttl(&self, ttl_seconds: i64) -> i64 {
        ttl_seconds.max(self.options.min_ttl_seconds)
    }

    // ----- replicated: applying committed entries -------------------------

    /// Whether applying `command` can change which leases exist.
    pub fn changes_lease_set(command: &Command) -> bool {
        matches!(
            command,
            Command::Lease(LeaseCommand::Grant { .. }) | Command::Write(WriteRequest::RevokeLease(_))
        )
    }

    /// Applies one committed command to the lease table (at once, in memory)
    /// and says what mvcc must do with it. Deterministic: every member gets
    /// the same table and the same writes. `now_ns` only sets a primary's
    /// expiry for a new lease.
    pub fn apply(&mut self, command: Command, now_ns: u64) -> Applied {
        let mut extra = WriteBatch::new();
        let (request, error) = match command {
            Command::Write(WriteRequest::RevokeLease(id)) => match self.leases.remove(&id) {
                Some(lease) => {
                    self.forget(id, lease);
                    extra.delete(record_key(id));
                    (WriteRequest::RevokeLease(id), None)
                }
                None => (WriteRequest::Noop, Some(LeaseError::NotFound)),
            },
            Command::Write(request) => (request, None),
            Command::Lease(LeaseCommand::Grant { id, ttl_seconds }) => {
                let error = if ttl_seconds > MAX_LEASE_TTL_SECONDS {
                    Some(LeaseError::TtlTooLarge)
                } else if id.is_none() {
                    // The API never proposes this; etcd's lessor refuses it the same way.
                    Some(LeaseError::NotFound)
                } else if self.leases.contains_key(&id) {
                    Some(LeaseError::Exists)
                } else {
                    let lease = Lease {
                        ttl_seconds: self.granted_ttl(ttl_seconds),
                        checkpoint_seconds: 0,
                        expiry_ns: None,
                    };
                    extra.put(record_key(id), encode_record(&lease));
                    self.leases.insert(id, lease);
                    if self.primary {
                        self.set_expiry(id, now_ns.saturating_add(seconds_to_ns(lease.ttl_seconds)));
                    }
                    None
                };
                (WriteRequest::Noop, error)
            }
            Command::Lease(LeaseCommand::Checkpoint(checkpoints)) => {
                // Only the remaining TTL changes; `promote` is what turns it into an expiry.
                for checkpoint in checkpoints {
                    if let Some(lease) = self.leases.get_mut(&checkpoint.id) {
                        lease.checkpoint_seconds = checkpoint.remaining_ttl_seconds.max(0);
                        extra.put(record_key(checkpoint.id), encode_record(lease));
                    }
                }
                (WriteRequest::Noop, None)
            }
            // The node loop applies alarm changes before the lessor (`maintenance::screen_command`);
            // they touch no lease.
            Command::Alarm(_) => (WriteRequest::Noop, None),
        };
        Applied { request, extra, error }
    }

    // ----- leader-local: expiries ------------------------------------------

    /// This member became leader: every lease expires `remaining` from now
    /// (etcd's Promote; the checkpointed remaining TTL where there is one).
    pub fn promote(&mut self, now_ns: u64) {
        self.primary = true;
        self.revoking.clear();
        self.checkpoint_resets.clear();
        self.expiries.clear();
        let remaining: Vec<(LeaseId, i64)> = self
            .leases
            .iter()
            .map(|(id, lease)| {
                let seconds = if lease.checkpoint_seconds > 0 {
                    lease.checkpoint_seconds
                } else {
                    lease.ttl_seconds
                };
                (*id, seconds)
            })
            .collect();
        for (id, seconds) in remaining {
            self.set_expiry(id, now_ns.saturating_add(seconds_to_ns(seconds)));
        }
        self.next_checkpoint_ns = now_ns.saturating_add(self.options.checkpoint_interval.as_nanos() as u64);
    }

    /// This member is no longer leader: leases live forever here until the
    /// next promotion.
    pub fn demote(&mut self) {
        self.primary = false;
        self.revoking.clear();
        self.checkpoint_resets.clear();
        self.expiries.clear();
        for lease in self.leases.values_mut() {
            lease.expiry_ns = None;
        }
    }

    /// etcd's Renew, on the primary: the lease's TTL starts again from now.
    /// `None` when the lease is unknown, already expired or being revoked
    /// (etcd waits for that revoke and then answers "not found").
    pub fn renew(&mut self, id: LeaseId, now_ns: u64) -> Option<i64> {
        assert!(self.primary, "renew of lease {id:?} on a lessor that is not primary");
        let lease = *self.leases.get(&id)?;
        if self.revoking.contains_key(&id) || lease.expiry_ns.is_some_and(|expiry| expiry <= now_ns) {
            return None;
        }
        if lease.checkpoint_seconds > 0 {
            self.checkpoint_resets.insert(id);
        }
        self.set_expiry(id, now_ns.saturating_add(seconds_to_ns(lease.ttl_seconds)));
        Some(lease.ttl_seconds)
    }

    /// Remaining and granted TTL in whole seconds, `None` if the lease is unknown.
    pub fn time_to_live(&self, id: LeaseId, now_ns: u64) -> Option<(i64, i64)> {
        let lease = self.leases.get(&id)?;
        let remaining = match lease.expiry_ns {
            Some(expiry) => (expiry.saturating_sub(now_ns) / NANOS_PER_SECOND) as i64,
            None if lease.checkpoint_seconds > 0 => lease.checkpoint_seconds,
            None => lease.ttl_seconds,
        };
        Some((remaining, lease.ttl_seconds))
    }

    /// Expired leases to propose revokes for now (at most `revokes_per_tick`),
    /// marked as being revoked. Empty unless primary.
    pub fn take_expired(&mut self, now_ns: u64) -> Vec<LeaseId> {
        let mut expired = Vec::new();
        for &(expiry, id) in &self.expiries {
            if expiry > now_ns || expired.len() >= self.options.revokes_per_tick {
                break;
            }
            if self.revoking.get(&id).is_some_and(|retry_ns| *retry_ns > now_ns) {
                continue;
            }
            expired.push(id);
        }
        let retry_ns = now_ns.saturating_add(self.options.revoke_retry.as_nanos() as u64);
        for id in &expired {
            self.revoking.insert(*id, retry_ns);
        }
        expired
    }

    /// Checkpoints to propose now: cleared checkpoints of renewed leases, and
    /// once per interval the remaining TTL of every lease (rounded up, so a
    /// checkpoint never shortens a lease). Empty unless primary.
    pub fn take_checkpoints(&mut self, now_ns: u64) -> Vec<LeaseCheckpoint> {
        if !self.primary {
            return Vec::new();
        }
        let mut remaining: BTreeMap<LeaseId, i64> = std::mem::take(&mut self.checkpoint_resets)
            .into_iter()
            .map(|id| (id, 0))
            .collect();
        let interval_ns = self.options.checkpoint_interval.as_nanos() as u64;
        if interval_ns > 0 && now_ns >= self.next_checkpoint_ns {
            self.next_checkpoint_ns = now_ns.saturating_add(interval_ns);
            for (id, lease) in &self.leases {
                let Some(expiry) = lease.expiry_ns else { continue };
                if self.revoking.contains_key(id) {
                    continue;
                }
                let seconds = expiry.saturating_sub(now_ns).div_ceil(NANOS_PER_SECOND).max(1);
                remaining.insert(*id, seconds as i64);
            }
        }
        remaining
            .into_iter()
            .filter(|(id, _)| self.leases.contains_key(id))
            .map(|(id, remaining_ttl_seconds)| LeaseCheckpoint {
                id,
                remaining_ttl_seconds,
            })
            .collect()
    }

    fn set_expiry(&mut self, id: LeaseId, expiry_ns: u64) {
        let lease = self
            .leases
            .get_mut(&id)
            .unwrap_or_else(|| panic!("expiry set for unknown lease {id:?}"));
        if let Some(old) = lease.expiry_ns.replace(expiry_ns) {
            self.expiries.remove(&(old, id));
        }
        self.expiries.insert((expiry_ns, id));
    }

    /// Drops the leader-local bookkeeping of a removed lease.
    fn forget(&mut self, id: LeaseId, lease: Lease) {
        if let Some(expiry) = lease.expiry_ns {
            self.expiries.remove(&(expiry, id));
        }
        self.revoking.remove(&id);
        self.checkpoint_resets.remove(&id);
    }
}

/// Whether applying `request` asks whether a lease exists (a put with a lease,
/// directly or anywhere in a txn).
pub fn consults_leases(request: &WriteRequest) -> bool {
    use crate::mvcc::{RequestOp, TxnRequest};
    fn txn_consults(txn: &TxnRequest) -> bool {
        txn.success.iter().chain(&txn.failure).any(|op| match op {
            RequestOp::Put(put) => !put.lease.is_none(),
            RequestOp::Txn(nested) => txn_consults(nested),
            _ => false,
        })
    }
    match request {
        WriteRequest::Put(put) => !put.lease.is_none(),
        WriteRequest::Txn(txn) => txn_consults(txn),
        _ => false,
    }
}

fn seconds_to_ns(seconds: i64) -> u64 {
    (seconds.max(0) as u64).saturating_mul(NANOS_PER_SECOND)
}

// ----- the Lease bucket: id (big-endian) -> [version 1][ttl i64][checkpoint i64] ----

const RECORD_VERSION: u8 = 1;

fn record_key(id: LeaseId) -> Bytes {
    Bucket::Lease.raw_key(&id.0.to_be_bytes())
}

fn encode_record(lease: &Lease) -> Bytes {
    let mut value = BytesMut::with_capacity(17);
    value.put_u8(RECORD_VERSION);
    value.put_i64(lease.ttl_seconds);
    value.put_i64(lease.checkpoint_seconds);
    value.freeze()
}

fn decode_record(key: &[u8], mut value: &[u8]) -> Option<(LeaseId, Lease)> {
    let id = LeaseId(i64::from_be_bytes(key.get(1..)?.try_into().ok()?));
    if value.len() != 17 || value.get_u8() != RECORD_VERSION {
        return None;
    }
    let lease = Lease {
        ttl_seconds: value.get_i64(),
        checkpoint_seconds: value.get_i64(),
        expiry_ns: None,
    };
    Some((id, lease))
}

#[cfg(test)]
#[path = "lessor_tests.rs"]
mod tests;
