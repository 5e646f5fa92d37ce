//! The mvcc module's own request/response types. They mirror etcd's `etcdserverpb`/`mvccpb`
//! messages field for field (minus headers), so the api layer converts them one to one.

use std::fmt;

use bytes::Bytes;

/// A main store revision. The store starts at 1; the first write creates 2.
/// In requests, values ≤ 0 mean "current" (range) or "unset" (filters), as in etcd.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub i64);

impl fmt::Display for Revision {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)
    }
}

/// A lease id; 0 means "no lease".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseId(pub i64);

impl LeaseId {
    pub const NONE: LeaseId = LeaseId(0);

    pub fn is_none(self) -> bool {
        self.0 == 0
    }
}

/// The applied Raft position recorded with the state it produced (DESIGN invariant 6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConsistentIndex {
    pub index: u64,
    pub term: u64,
}

/// `mvccpb.KeyValue`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Bytes,
    pub create_revision: Revision,
    pub mod_revision: Revision,
    /// 1 on create, +1 per put; restarts at 1 when the key is re-created after a delete.
    pub version: i64,
    pub value: Bytes,
    pub lease: LeaseId,
}

/// `mvccpb.Event.EventType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    Put,
    Delete,
}

/// `mvccpb.Event`. A DELETE event's `kv` carries only `key` and `mod_revision` (the delete's
/// revision), exactly as etcd sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    /// Filled only for watchers created with `prev_kv`: the key at `mod_revision - 1`, absent
    /// for creates or when that revision was compacted.
    pub prev_kv: Option<KeyValue>,
}

/// `RangeRequest.SortOrder`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortOrder {
    #[default]
    None,
    Ascend,
    Descend,
}

/// `RangeRequest.SortTarget`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortTarget {
    #[default]
    Key,
    Version,
    Create,
    Mod,
    Value,
}

/// `etcdserverpb.RangeRequest` (without `serializable`, which is the server's concern).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    pub key: Bytes,
    pub range_end: Bytes,
    /// 0 (or negative) = unlimited.
    pub limit: i64,
    /// ≤ 0 = current revision.
    pub revision: Revision,
    pub sort_order: SortOrder,
    pub sort_target: SortTarget,
    pub keys_only: bool,
    pub count_only: bool,
    /// Inclusive filters; 0 = unset.
    pub min_mod_revision: Revision,
    pub max_mod_revision: Revision,
    pub min_create_revision: Revision,
    pub max_create_revision: Revision,
}

impl RangeRequest {
    /// A plain range over `key`/`range_end` at the current revision.
    pub fn new(key: impl Into<Bytes>, range_end: impl Into<Bytes>) -> Self {
        RangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            ..RangeRequest::default()
        }
    }
}

/// `etcdserverpb.RangeResponse` without the header; `revision` is what etcd puts in
/// `header.revision` (the store's current revision, also for historical reads).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResult {
    pub revision: Revision,
    pub kvs: Vec<KeyValue>,
    pub more: bool,
    pub count: i64,
}

/// `etcdserverpb.PutRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutRequest {
    pub key: Bytes,
    pub value: Bytes,
    pub lease: LeaseId,
    pub prev_kv: bool,
    pub ignore_value: bool,
    pub ignore_lease: bool,
}

impl PutRequest {
    pub fn new(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        PutRequest {
            key: key.into(),
            value: value.into(),
            ..PutRequest::default()
        }
    }
}

/// `etcdserverpb.PutResponse`; `revision` = header revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutResult {
    pub revision: Revision,
    pub prev_kv: Option<KeyValue>,
}

/// `etcdserverpb.DeleteRangeRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeRequest {
    pub key: Bytes,
    pub range_end: Bytes,
    pub prev_kv: bool,
}

impl DeleteRangeRequest {
    pub fn new(key: impl Into<Bytes>, range_end: impl Into<Bytes>) -> Self {
        DeleteRangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            prev_kv: false,
        }
    }
}

/// `etcdserverpb.DeleteRangeResponse`; `revision` = header revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeResult {
    pub revision: Revision,
    pub deleted: i64,
    /// Filled only when `prev_kv` was requested.
    pub prev_kvs: Vec<KeyValue>,
}

/// `Compare.CompareResult`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CompareResult {
    #[default]
    Equal,
    Greater,
    Less,
    NotEqual,
}

/// `Compare.target` together with the `target_union` value. etcd compares against 0 / empty
/// when the union holds a different field than the target; the api layer reproduces that by
/// building the variant of `target` with the default value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    Version(i64),
    CreateRevision(Revision),
    ModRevision(Revision),
    Value(Bytes),
    Lease(LeaseId),
}

/// `etcdserverpb.Compare`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    pub key: Bytes,
    pub range_end: Bytes,
    pub target: CompareTarget,
    pub result: CompareResult,
}

/// `etcdserverpb.RequestOp`; `Empty` is an op with no request set (rejected with
/// `etcdserver: key not found`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Empty,
}

/// `etcdserverpb.TxnRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

/// `etcdserverpb.ResponseOp`, one per executed op, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseOp {
    Range(RangeResult),
    Put(PutResult),
    DeleteRange(DeleteRangeResult),
    Txn(TxnResult),
}

/// `etcdserverpb.TxnResponse`. For the top-level txn `revision` is the header revision (the
/// txn's revision if it wrote, else the current one). etcd leaves the header of a *nested*
/// txn response empty, so nested results carry `Revision(0)`; the ops inside carry the
/// revisions etcd gives them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnResult {
    pub revision: Revision,
    pub succeeded: bool,
    pub responses: Vec<ResponseOp>,
}

/// `etcdserverpb.CompactionRequest` (`physical` is handled by the caller through
/// `MvccStore::finish_compaction`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactRequest {
    pub revision: Revision,
}

/// `etcdserverpb.CompactionResponse`; `revision` = header revision (current, unchanged).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactResult {
    pub revision: Revision,
}

/// Result of `MvccStore::hash`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashResult {
    pub hash: u32,
    /// Header revision (current).
    pub revision: Revision,
}

/// Result of `MvccStore::hash_kv` (`etcdserverpb.HashKVResponse` plus the hashed revision).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashKvResult {
    pub hash: u32,
    pub compact_revision: Revision,
    /// The revision the hash covers (the requested one, or current for 0).
    pub hash_revision: Revision,
    /// Header revision (current).
    pub revision: Revision,
}
