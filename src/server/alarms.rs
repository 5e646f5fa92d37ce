//! Alarms (COMPAT.md §2.6): etcd's NOSPACE and CORRUPT, cluster-wide state changed only by
//! committed Raft entries (`proposal::Command::Alarm`) and persisted in the state file's alarm
//! bucket in the same commit as the entry's applied index, so every member agrees on them at
//! every index and a restart finds them again.
//!
//! While NOSPACE is active, a Put, or a Txn with a Put in either branch, is refused when it
//! is applied (etcd's capped applier): the refusal is decided in log order on every member,
//! so no member writes what another refused. A LeaseGrant is refused the same way (etcd's
//! capped applier refuses it too). CORRUPT refuses every write and grant. Before proposing,
//! the API also refuses such writes early and raises NOSPACE itself when a write would take
//! the backend past `--quota-backend-bytes` (`NodeHandle::check_space`).
//!
//! braid measures the quota against the bytes in use, not the file size: its B+tree reuses
//! freed pages without a defragmentation, so after a compaction the space is really back
//! (etcd compares the file size, which only `defrag` shrinks).

use std::collections::BTreeSet;

use bytes::{BufMut, Bytes, BytesMut};

use crate::mvcc::{BackendError, BackendRead, Bucket, RequestOp, WriteBatch, WriteRequest};
use crate::server::lessor::LeaseCommand;
use crate::server::proposal::Command;
use crate::server::ServerError;

/// etcd's quota estimate of storing a key's metadata (`kvOverhead`).
const KEY_VALUE_OVERHEAD_BYTES: u64 = 256;

/// `etcdserverpb.AlarmType` without NONE (which only means "any" in a GET).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlarmKind {
    NoSpace,
    Corrupt,
}

impl AlarmKind {
    /// The proto enum number.
    pub fn number(self) -> i32 {
        match self {
            AlarmKind::NoSpace => 1,
            AlarmKind::Corrupt => 2,
        }
    }

    pub fn from_number(number: i32) -> Option<AlarmKind> {
        match number {
            1 => Some(AlarmKind::NoSpace),
            2 => Some(AlarmKind::Corrupt),
            _ => None,
        }
    }

    /// The proto enum name, as etcd prints it.
    pub fn name(self) -> &'static str {
        match self {
            AlarmKind::NoSpace => "NOSPACE",
            AlarmKind::Corrupt => "CORRUPT",
        }
    }
}

/// One active alarm: which member raised which alarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlarmMember {
    pub member_id: u64,
    pub alarm: AlarmKind,
}

impl AlarmMember {
    /// How etcd lists it in `Status.errors`: the protobuf compact text of `AlarmMember`.
    pub fn status_text(&self) -> String {
        format!("memberID:{} alarm:{} ", self.member_id, self.alarm.name())
    }

    fn raw_key(&self) -> Bytes {
        let mut key = BytesMut::with_capacity(9);
        key.put_u64(self.member_id);
        key.put_u8(self.alarm.number() as u8);
        Bucket::Alarm.raw_key(&key)
    }

    fn from_raw_key(raw_key: &[u8]) -> Result<AlarmMember, BackendError> {
        let corrupt = || BackendError::new(format!("corrupt alarm key {raw_key:?}"));
        let body = raw_key.get(1..).filter(|body| body.len() == 9).ok_or_else(corrupt)?;
        let member_id = u64::from_be_bytes(body[..8].try_into().map_err(|_| corrupt())?);
        let alarm = AlarmKind::from_number(i32::from(body[8])).ok_or_else(corrupt)?;
        Ok(AlarmMember { member_id, alarm })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlarmAction {
    Activate,
    Deactivate,
}

/// A replicated alarm change (Alarm ACTIVATE / DEACTIVATE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlarmChange {
    pub action: AlarmAction,
    pub member: AlarmMember,
}

/// The active alarms as of some applied index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlarmSet {
    active: BTreeSet<AlarmMember>,
}

impl AlarmSet {
    /// The alarms persisted in a state file.
    pub fn load(read: &impl BackendRead) -> Result<AlarmSet, BackendError> {
        let (start, end) = Bucket::Alarm.bounds();
        let mut keys = Vec::new();
        read.scan(&start, &end, &mut |key, _| {
            keys.push(key.to_vec());
            std::ops::ControlFlow::Continue(())
        })?;
        let active = keys
            .iter()
            .map(|key| AlarmMember::from_raw_key(key))
            .collect::<Result<_, _>>()?;
        Ok(AlarmSet { active })
    }

    /// Applies a committed change: the alarm that changed (etcd answers with it; `None` when
    /// it was already so) and the writes that persist the change.
    pub fn apply(&mut self, change: AlarmChange) -> (Option<AlarmMember>, WriteBatch) {
        let mut batch = WriteBatch::new();
        let changed = match change.action {
            AlarmAction::Activate => self.active.insert(change.member),
            AlarmAction::Deactivate => self.active.remove(&change.member),
        };
        if !changed {
            return (None, batch);
        }
        match change.action {
            AlarmAction::Activate => batch.put(change.member.raw_key(), Bytes::new()),
            AlarmAction::Deactivate => batch.delete(change.member.raw_key()),
        }
        (Some(change.member), batch)
    }

    /// Every active alarm, by member then type.
    pub fn list(&self) -> Vec<AlarmMember> {
        self.active.iter().copied().collect()
    }

    pub fn has(&self, alarm: AlarmKind) -> bool {
        self.active.iter().any(|member| member.alarm == alarm)
    }

    /// Why an applied write must be refused while these alarms are active (etcd's corrupt and
    /// capped appliers), or `None`.
    pub fn refusal(&self, request: &WriteRequest) -> Option<ServerError> {
        let writes = !matches!(request, WriteRequest::Noop) && !is_read_only_txn(request);
        if writes && self.has(AlarmKind::Corrupt) {
            return Some(ServerError::Corrupt);
        }
        if request_cost(request) > 0 && self.has(AlarmKind::NoSpace) {
            return Some(ServerError::NoSpace);
        }
        None
    }

    /// `refusal` for any committed command: a LeaseGrant is refused like a Put (etcd's capped
    /// and corrupt appliers refuse it); lease checkpoints and alarm changes never are.
    pub fn command_refusal(&self, command: &Command) -> Option<ServerError> {
        match command {
            Command::Write(request) => self.refusal(request),
            Command::Lease(LeaseCommand::Grant { .. }) if self.has(AlarmKind::Corrupt) => Some(ServerError::Corrupt),
            Command::Lease(LeaseCommand::Grant { .. }) if self.has(AlarmKind::NoSpace) => Some(ServerError::NoSpace),
            Command::Lease(_) | Command::Alarm(_) => None,
        }
    }
}

fn is_read_only_txn(request: &WriteRequest) -> bool {
    matches!(request, WriteRequest::Txn(txn) if crate::mvcc::is_read_only(txn))
}

/// etcd's quota cost (`quota.go`): bytes a request may add. Only Puts cost, in a Txn only the
/// top-level ones of its larger branch (etcd's rule, nested txns included).
pub fn request_cost(request: &WriteRequest) -> u64 {
    let put_cost = |key: &Bytes, value: &Bytes| key.len() as u64 + value.len() as u64 + KEY_VALUE_OVERHEAD_BYTES;
    match request {
        WriteRequest::Put(put) => put_cost(&put.key, &put.value),
        WriteRequest::Txn(txn) => {
            let branch_cost = |ops: &[RequestOp]| -> u64 {
                ops.iter()
                    .map(|op| match op {
                        RequestOp::Put(put) => put_cost(&put.key, &put.value),
                        _ => 0,
                    })
                    .sum()
            };
            branch_cost(&txn.success).max(branch_cost(&txn.failure))
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{Backend, DeleteRangeRequest, MemBackend, PutRequest, TxnRequest};

    fn bytes(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    fn change(action: AlarmAction, member_id: u64, alarm: AlarmKind) -> AlarmChange {
        AlarmChange {
            action,
            member: AlarmMember { member_id, alarm },
        }
    }

    #[test]
    fn changes_persist_and_reload_and_answer_like_etcd() {
        let backend = MemBackend::new();
        let mut alarms = AlarmSet::default();
        let nospace = change(AlarmAction::Activate, 7, AlarmKind::NoSpace);
        let (changed, batch) = alarms.apply(nospace);
        assert_eq!(changed, Some(nospace.member));
        futures_util::FutureExt::now_or_never(backend.apply(batch))
            .unwrap()
            .unwrap();
        // Activating again changes nothing and etcd answers with no alarm.
        let (changed, batch) = alarms.apply(nospace);
        assert_eq!((changed, batch.len()), (None, 0));
        let corrupt = change(AlarmAction::Activate, 3, AlarmKind::Corrupt);
        let (_, batch) = alarms.apply(corrupt);
        futures_util::FutureExt::now_or_never(backend.apply(batch))
            .unwrap()
            .unwrap();
        assert_eq!(AlarmSet::load(&backend.read()).unwrap(), alarms);
        assert_eq!(alarms.list(), vec![corrupt.member, nospace.member]);
        assert_eq!(nospace.member.status_text(), "memberID:7 alarm:NOSPACE ");

        let (changed, batch) = alarms.apply(change(AlarmAction::Deactivate, 3, AlarmKind::Corrupt));
        assert_eq!(changed, Some(corrupt.member));
        futures_util::FutureExt::now_or_never(backend.apply(batch))
            .unwrap()
            .unwrap();
        let (changed, _) = alarms.apply(change(AlarmAction::Deactivate, 3, AlarmKind::Corrupt));
        assert_eq!(changed, None);
        assert_eq!(AlarmSet::load(&backend.read()).unwrap().list(), vec![nospace.member]);
    }

    #[test]
    fn nospace_refuses_only_writes_that_add_data_and_corrupt_refuses_every_write() {
        let put = WriteRequest::Put(PutRequest::new(bytes("k"), bytes("v")));
        let delete = WriteRequest::DeleteRange(DeleteRangeRequest::new(bytes("k"), Bytes::new()));
        let txn_put = WriteRequest::Txn(TxnRequest {
            compare: vec![],
            success: vec![],
            failure: vec![RequestOp::Put(PutRequest::new(bytes("k"), bytes("vv")))],
        });
        let txn_delete = WriteRequest::Txn(TxnRequest {
            compare: vec![],
            success: vec![RequestOp::DeleteRange(DeleteRangeRequest::new(
                bytes("k"),
                Bytes::new(),
            ))],
            failure: vec![],
        });
        assert_eq!(request_cost(&put), 2 + KEY_VALUE_OVERHEAD_BYTES);
        assert_eq!(request_cost(&txn_put), 3 + KEY_VALUE_OVERHEAD_BYTES);
        assert_eq!(request_cost(&delete), 0);

        let mut alarms = AlarmSet::default();
        assert_eq!(alarms.refusal(&put), None);
        let _ = alarms.apply(change(AlarmAction::Activate, 1, AlarmKind::NoSpace));
        assert_eq!(alarms.refusal(&put), Some(ServerError::NoSpace));
        assert_eq!(alarms.refusal(&txn_put), Some(ServerError::NoSpace));
        assert_eq!(alarms.refusal(&delete), None);
        assert_eq!(alarms.refusal(&txn_delete), None);
        assert_eq!(alarms.refusal(&WriteRequest::Noop), None);

        let _ = alarms.apply(change(AlarmAction::Activate, 1, AlarmKind::Corrupt));
        assert_eq!(alarms.refusal(&delete), Some(ServerError::Corrupt));
        assert_eq!(alarms.refusal(&put), Some(ServerError::Corrupt));
        assert_eq!(alarms.refusal(&WriteRequest::Noop), None);
    }

    #[test]
    fn a_lease_grant_is_refused_like_a_put_and_checkpoints_never_are() {
        use crate::mvcc::LeaseId;
        use crate::server::lessor::LeaseCheckpoint;
        let grant = Command::Lease(LeaseCommand::Grant {
            id: LeaseId(7),
            ttl_seconds: 60,
        });
        let checkpoint = Command::Lease(LeaseCommand::Checkpoint(vec![LeaseCheckpoint {
            id: LeaseId(7),
            remaining_ttl_seconds: 30,
        }]));
        let revoke = Command::Write(WriteRequest::RevokeLease(LeaseId(7)));
        let disarm = Command::Alarm(change(AlarmAction::Deactivate, 1, AlarmKind::NoSpace));

        let mut alarms = AlarmSet::default();
        assert_eq!(alarms.command_refusal(&grant), None);
        let _ = alarms.apply(change(AlarmAction::Activate, 1, AlarmKind::NoSpace));
        assert_eq!(alarms.command_refusal(&grant), Some(ServerError::NoSpace));
        assert_eq!(alarms.command_refusal(&checkpoint), None);
        assert_eq!(alarms.command_refusal(&revoke), None, "a revoke frees space");
        assert_eq!(alarms.command_refusal(&disarm), None);

        let _ = alarms.apply(change(AlarmAction::Activate, 2, AlarmKind::Corrupt));
        assert_eq!(alarms.command_refusal(&grant), Some(ServerError::Corrupt));
        assert_eq!(alarms.command_refusal(&revoke), Some(ServerError::Corrupt));
        assert_eq!(alarms.command_refusal(&checkpoint), None);
        assert_eq!(alarms.command_refusal(&disarm), None);
    }
}
