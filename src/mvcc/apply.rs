//! The write path: applying committed Raft entries, exactly once, in batches.
//!
//! `MvccStore::apply` runs a batch of entries in log order against the in-memory index (see
//! the concurrency notes in `store.rs`), collects their backend writes into one `WriteBatch`
//! together with the consistent index of the last entry (DESIGN invariant 6), commits it,
//! then publishes the new revision and hands the events to the watchers. An entry whose index
//! is ≤ the consistent index was applied before and is skipped.
//!
//! A request error (e.g. `key not found`) is decided before the request writes anything, so
//! a failed request leaves no trace except the advanced consistent index, as in etcd.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::mvcc::backend::{Backend, BackendError, BackendRead, BatchOp, Bucket, WriteBatch};
use crate::mvcc::encoding::{
    encode_consistent_index, encode_i64, encode_put, encode_tombstone, meta_key, revision_raw_key, RevisionKey,
    META_CONSISTENT_INDEX, META_SCHEDULED_COMPACT,
};
use crate::mvcc::error::{MvccError, StoreError};
use crate::mvcc::key_index::{KeyIndex, KeyRange};
use crate::mvcc::read::{key_values_at, ValueSource};
use crate::mvcc::store::{CommitGuard, IndexState, MvccStore, PhysicalCompaction};
use crate::mvcc::txn::{execute_txn, LeaseExists, TxnContext};
use crate::mvcc::types::{
    CompactRequest, CompactResult, ConsistentIndex, DeleteRangeRequest, DeleteRangeResult, Event, EventKind, KeyValue,
    LeaseId, PutRequest, PutResult, Revision, TxnRequest, TxnResult,
};
use crate::mvcc::validate::{validate_delete_range, validate_put};

/// A state-machine command for mvcc, decoded from a committed Raft entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteRequest {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    /// Any txn; a read-only one creates no revision.
    Txn(TxnRequest),
    Compact(CompactRequest),
    /// Deletes every key attached to the lease, in key order, in one revision (the lessor
    /// removes the lease itself, e.g. through `ApplyEntry::extra`).
    RevokeLease(LeaseId),
    /// An entry with no mvcc effect (lease grant, member change, empty entry): only the
    /// consistent index and `extra` are persisted.
    Noop,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteResponse {
    Put(PutResult),
    DeleteRange(DeleteRangeResult),
    Txn(TxnResult),
    Compact(CompactResult),
    RevokeLease(DeleteRangeResult),
    Noop { revision: Revision },
}

/// One committed entry to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyEntry {
    pub position: ConsistentIndex,
    pub request: WriteRequest,
    /// Writes of other modules (lessor, auth, membership) committed atomically with this
    /// entry. They must stay out of mvcc's buckets (`Bucket::Key`, `Bucket::Meta`).
    pub extra: WriteBatch,
}

impl ApplyEntry {
    pub fn new(position: ConsistentIndex, request: WriteRequest) -> Self {
        ApplyEntry {
            position,
            request,
            extra: WriteBatch::new(),
        }
    }
}

/// What became of one entry.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome<T> {
    /// Applied now; the request's answer or its etcd error.
    Applied(Result<T, MvccError>),
    /// The entry's index is ≤ the consistent index: it was applied before; nothing changed.
    AlreadyApplied { consistent_index: ConsistentIndex },
}

impl<T> ApplyOutcome<T> {
    pub fn map<U>(self, map: impl FnOnce(T) -> U) -> ApplyOutcome<U> {
        match self {
            ApplyOutcome::Applied(result) => ApplyOutcome::Applied(result.map(map)),
            ApplyOutcome::AlreadyApplied { consistent_index } => ApplyOutcome::AlreadyApplied { consistent_index },
        }
    }

    /// The request's result; panics if the entry was already applied.
    pub fn expect_applied(self) -> Result<T, MvccError> {
        match self {
            ApplyOutcome::Applied(result) => result,
            ApplyOutcome::AlreadyApplied { consistent_index } => {
                panic!("entry was already applied (consistent index {consistent_index:?})")
            }
        }
    }
}

impl<B: Backend> MvccStore<B> {
    /// Applies `entries` in order and commits them in one backend batch. Only a backend
    /// failure is an `Err` (fatal: the store refuses all later writes). `lease_exists` is
    /// consulted while the batch executes, so a batch must not span a change of the set of
    /// leases (split batches at lease grants/revokes).
    pub async fn apply(
        &self,
        entries: Vec<ApplyEntry>,
        lease_exists: LeaseExists<'_>,
    ) -> Result<Vec<ApplyOutcome<WriteResponse>>, BackendError> {
        // A caller bug, checked before anything is executed so a panic leaves no half-applied
        // batch in the index.
        for entry in &entries {
            for op in &entry.extra.ops {
                let (BatchOp::Put { key, .. } | BatchOp::Delete { key }) = op;
                assert!(!Bucket::is_mvcc_owned(key), "extra write {key:?} into an mvcc bucket");
            }
        }
        let shared = &*self.shared;
        let mut writer = shared.writer.lock().await;
        shared.check_healthy()?;
        let mut batch = {
            let state = shared.read_state();
            PendingBatch {
                snapshot: shared.backend.read(),
                pending: BTreeMap::new(),
                writes: WriteBatch::new(),
                revision: state.revision,
                compact_revision: state.compact_revision,
                consistent_index: state.consistent_index,
                events: Vec::new(),
                scheduled_compaction: None,
            }
        };
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut applied = false;
        for entry in entries {
            #[cfg(feature = "sim-bugs")]
            let guarded = !shared.config.planted_double_apply;
            #[cfg(not(feature = "sim-bugs"))]
            let guarded = true;
            if guarded && entry.position.index <= batch.consistent_index.index {
                outcomes.push(ApplyOutcome::AlreadyApplied {
                    consistent_index: batch.consistent_index,
                });
                continue;
            }
            let result = {
                let mut state = shared.write_state();
                batch.execute(&mut state, &entry.request, lease_exists)
            };
            let result = match result {
                Ok(response) => Ok(response),
                Err(StoreError::Request(error)) => Err(error),
                Err(StoreError::Backend(error)) => {
                    // The index may hold part of this batch: nothing more may be written.
                    shared.fail(error.clone());
                    return Err(error);
                }
            };
            batch.writes.extend(entry.extra);
            batch.consistent_index = entry.position;
            applied = true;
            outcomes.push(ApplyOutcome::Applied(result));
        }
        if !applied {
            return Ok(outcomes);
        }

        batch.writes.put(
            meta_key(META_CONSISTENT_INDEX),
            encode_consistent_index(batch.consistent_index),
        );
        if let Some(compaction) = batch.scheduled_compaction {
            batch
                .writes
                .put(meta_key(META_SCHEDULED_COMPACT), encode_i64(compaction));
        }
        // Release the snapshot before committing: a copy-on-write backend must not keep (or
        // copy) the old version for a reader that is done.
        let PendingBatch {
            snapshot,
            pending,
            writes,
            revision,
            consistent_index,
            events,
            scheduled_compaction,
            ..
        } = batch;
        drop((snapshot, pending));
        CommitGuard::new(shared).commit(writes).await?;

        // Publish (store.rs note 3), then deliver events while still holding the watch lock so
        // a watcher that syncs up sees either all of this batch or none of it.
        let mut watches = shared.watches();
        {
            let mut state = shared.write_state();
            state.revision = revision;
            state.consistent_index = consistent_index;
            if let Some(compaction) = scheduled_compaction {
                state.index.compact(compaction);
                state.compact_revision = compaction;
            }
        }
        watches.deliver(events, revision);
        drop(watches);
        if let Some(compaction) = scheduled_compaction {
            writer.physical = Some(PhysicalCompaction {
                revision: compaction,
                cursor: RevisionKey::default(),
            });
        }
        Ok(outcomes)
    }

    async fn apply_one(
        &self,
        position: ConsistentIndex,
        request: WriteRequest,
        lease_exists: LeaseExists<'_>,
    ) -> Result<ApplyOutcome<WriteResponse>, BackendError> {
        let mut outcomes = self
            .apply(vec![ApplyEntry::new(position, request)], lease_exists)
            .await?;
        Ok(outcomes.pop().expect("one outcome per entry"))
    }

    pub async fn apply_put(
        &self,
        position: ConsistentIndex,
        request: PutRequest,
        lease_exists: LeaseExists<'_>,
    ) -> Result<ApplyOutcome<PutResult>, BackendError> {
        let outcome = self
            .apply_one(position, WriteRequest::Put(request), lease_exists)
            .await?;
        Ok(outcome.map(|response| match response {
            WriteResponse::Put(result) => result,
            other => panic!("put answered with {other:?}"),
        }))
    }

    pub async fn apply_delete_range(
        &self,
        position: ConsistentIndex,
        request: DeleteRangeRequest,
    ) -> Result<ApplyOutcome<DeleteRangeResult>, BackendError> {
        let outcome = self
            .apply_one(position, WriteRequest::DeleteRange(request), &|_| true)
            .await?;
        Ok(outcome.map(|response| match response {
            WriteResponse::DeleteRange(result) => result,
            other => panic!("delete answered with {other:?}"),
        }))
    }

    pub async fn apply_txn(
        &self,
        position: ConsistentIndex,
        request: TxnRequest,
        lease_exists: LeaseExists<'_>,
    ) -> Result<ApplyOutcome<TxnResult>, BackendError> {
        let outcome = self
            .apply_one(position, WriteRequest::Txn(request), lease_exists)
            .await?;
        Ok(outcome.map(|response| match response {
            WriteResponse::Txn(result) => result,
            other => panic!("txn answered with {other:?}"),
        }))
    }

    /// Schedules compaction at `revision`: the index drops the history no read at or above
    /// it needs as soon as this returns; backend space comes back through `compaction_step`.
    pub async fn apply_compact(
        &self,
        position: ConsistentIndex,
        revision: Revision,
    ) -> Result<ApplyOutcome<CompactResult>, BackendError> {
        let outcome = self
            .apply_one(position, WriteRequest::Compact(CompactRequest { revision }), &|_| true)
            .await?;
        Ok(outcome.map(|response| match response {
            WriteResponse::Compact(result) => result,
            other => panic!("compact answered with {other:?}"),
        }))
    }

    pub async fn apply_revoke_lease(
        &self,
        position: ConsistentIndex,
        lease: LeaseId,
    ) -> Result<ApplyOutcome<DeleteRangeResult>, BackendError> {
        let outcome = self
            .apply_one(position, WriteRequest::RevokeLease(lease), &|_| true)
            .await?;
        Ok(outcome.map(|response| match response {
            WriteResponse::RevokeLease(result) => result,
            other => panic!("revoke answered with {other:?}"),
        }))
    }
}

/// The writer's state while a batch executes.
struct PendingBatch<R: BackendRead> {
    /// Everything committed before this batch.
    snapshot: R,
    /// Values written by this batch, not yet in `snapshot`.
    pending: BTreeMap<RevisionKey, Bytes>,
    writes: WriteBatch,
    /// The newest revision, counting this batch's writes.
    revision: i64,
    compact_revision: i64,
    consistent_index: ConsistentIndex,
    /// Events per new revision, in order.
    events: Vec<(i64, Vec<Event>)>,
    scheduled_compaction: Option<i64>,
}

impl<R: BackendRead> PendingBatch<R> {
    fn execute(
        &mut self,
        state: &mut IndexState,
        request: &WriteRequest,
        lease_exists: LeaseExists<'_>,
    ) -> Result<WriteResponse, StoreError> {
        let begin = self.revision;
        if let WriteRequest::Compact(compact) = request {
            // etcd's updateCompactRev: compacted is checked before future.
            if compact.revision.0 <= self.compact_revision {
                return Err(MvccError::Compacted.into());
            }
            if compact.revision.0 > begin {
                return Err(MvccError::FutureRevision.into());
            }
            self.compact_revision = compact.revision.0;
            self.scheduled_compaction = Some(compact.revision.0);
            return Ok(WriteResponse::Compact(CompactResult {
                revision: Revision(begin),
            }));
        }
        let mut view = WriteView {
            state,
            snapshot: &self.snapshot,
            pending: &mut self.pending,
            writes: &mut self.writes,
            begin,
            compact: self.compact_revision,
            changes: Vec::new(),
        };
        let result = match request {
            WriteRequest::Put(put) => view.standalone_put(put, lease_exists).map(WriteResponse::Put),
            WriteRequest::DeleteRange(delete) => validate_delete_range(delete)
                .map_err(StoreError::from)
                .and_then(|()| view.delete_range(delete))
                .map(WriteResponse::DeleteRange),
            WriteRequest::Txn(txn) => execute_txn(&mut view, txn, lease_exists).map(WriteResponse::Txn),
            WriteRequest::RevokeLease(lease) => Ok(WriteResponse::RevokeLease(view.revoke(*lease))),
            WriteRequest::Noop => Ok(WriteResponse::Noop {
                revision: Revision(begin),
            }),
            WriteRequest::Compact(_) => unreachable!("handled above"),
        };
        let changes = std::mem::take(&mut view.changes);
        if let Err(StoreError::Request(error)) = &result {
            assert!(
                changes.is_empty(),
                "request failed with {error:?} after writing {changes:?}"
            );
        }
        if !changes.is_empty() {
            self.revision += 1;
            self.events.push((self.revision, changes));
        }
        result
    }
}

/// One request's write: the index (mutated in place), this batch's values, and the changes
/// made so far (their count is the next `sub` revision).
struct WriteView<'a, R: BackendRead> {
    state: &'a mut IndexState,
    snapshot: &'a R,
    pending: &'a mut BTreeMap<RevisionKey, Bytes>,
    writes: &'a mut WriteBatch,
    begin: i64,
    compact: i64,
    changes: Vec<Event>,
}

impl<R: BackendRead> ValueSource for WriteView<'_, R> {
    fn value(&self, revision: RevisionKey) -> Result<Bytes, BackendError> {
        if let Some(value) = self.pending.get(&revision) {
            return Ok(value.clone());
        }
        match self.snapshot.get(&revision_raw_key(revision))? {
            Some(value) => Ok(value),
            None => panic!("revision {revision:?} is in the key index but not in the backend"),
        }
    }
}

impl<R: BackendRead> TxnContext for WriteView<'_, R> {
    fn index(&self) -> &KeyIndex {
        &self.state.index
    }

    fn values(&self) -> &dyn ValueSource {
        self
    }

    fn current(&self) -> i64 {
        self.begin + i64::from(!self.changes.is_empty())
    }

    fn compact(&self) -> i64 {
        self.compact
    }

    fn put(&mut self, request: &PutRequest) -> Result<PutResult, StoreError> {
        self.put_checked(request)
    }

    /// etcd's DeleteRange inside a write: `deleted` counts live keys in the range; the
    /// response revision is the txn's once anything in it was written.
    fn delete_range(&mut self, request: &DeleteRangeRequest) -> Result<DeleteRangeResult, StoreError> {
        let range = KeyRange::new(request.key.clone(), request.range_end.clone());
        let current = self.current();
        let prev_kvs = if request.prev_kv {
            key_values_at(&self.state.index, &range, current, self)?
        } else {
            Vec::new()
        };
        let keys = self.state.index.alive_keys(&range, current);
        for key in &keys {
            self.write_tombstone(key);
        }
        let revision = if keys.is_empty() && self.changes.is_empty() {
            self.begin
        } else {
            self.begin + 1
        };
        Ok(DeleteRangeResult {
            revision: Revision(revision),
            deleted: keys.len() as i64,
            prev_kvs,
        })
    }
}

impl<R: BackendRead> WriteView<'_, R> {
    /// A Put outside a txn: etcd checks the lease before anything else.
    fn standalone_put(&mut self, request: &PutRequest, lease_exists: LeaseExists<'_>) -> Result<PutResult, StoreError> {
        validate_put(request)?;
        if !request.lease.is_none() && !lease_exists(request.lease) {
            return Err(MvccError::LeaseNotFound.into());
        }
        self.put_checked(request)
    }

    /// etcd's Put body: `ignore_*` take the existing value/lease (the key must exist).
    fn put_checked(&mut self, request: &PutRequest) -> Result<PutResult, StoreError> {
        let wants_previous = request.ignore_value || request.ignore_lease || request.prev_kv;
        let previous = if wants_previous {
            match self.state.index.get(&request.key, self.current()) {
                Some(found) => Some(self.key_value(found.modified)?),
                None => None,
            }
        } else {
            None
        };
        if (request.ignore_value || request.ignore_lease) && previous.is_none() {
            return Err(MvccError::KeyNotFound.into());
        }
        let value = match (&previous, request.ignore_value) {
            (Some(previous), true) => previous.value.clone(),
            _ => request.value.clone(),
        };
        let lease = match (&previous, request.ignore_lease) {
            (Some(previous), true) => previous.lease,
            _ => request.lease,
        };
        self.write_put(&request.key, value, lease);
        Ok(PutResult {
            revision: Revision(self.begin + 1),
            prev_kv: if request.prev_kv { previous } else { None },
        })
    }

    fn next_revision(&self) -> RevisionKey {
        RevisionKey::new(self.begin + 1, self.changes.len() as i64)
    }

    fn record(&mut self, revision: RevisionKey, value: Bytes) {
        self.writes
            .put(Bytes::copy_from_slice(&revision_raw_key(revision)), value.clone());
        self.pending.insert(revision, value);
    }

    fn write_put(&mut self, key: &Bytes, value: Bytes, lease: LeaseId) {
        let revision = self.next_revision();
        let written = self.state.index.put(key, revision, lease);
        self.state.detach(written.replaced_lease, key);
        self.state.attach(lease, key);
        let kv = KeyValue {
            key: key.clone(),
            create_revision: Revision(written.created),
            mod_revision: Revision(revision.main),
            version: written.version,
            value,
            lease,
        };
        self.record(revision, encode_put(&kv));
        self.changes.push(Event {
            kind: EventKind::Put,
            kv,
            prev_kv: None,
        });
    }

    fn write_tombstone(&mut self, key: &Bytes) {
        let revision = self.next_revision();
        self.record(revision, encode_tombstone(key));
        let old_lease = self.state.index.tombstone(key, revision);
        self.state.detach(old_lease, key);
        let kv = KeyValue {
            key: key.clone(),
            mod_revision: Revision(revision.main),
            ..KeyValue::default()
        };
        self.changes.push(Event {
            kind: EventKind::Delete,
            kv,
            prev_kv: None,
        });
    }

    /// etcd's lessor Revoke: delete the attached keys, sorted, in one write.
    fn revoke(&mut self, lease: LeaseId) -> DeleteRangeResult {
        let keys: Vec<Bytes> = self
            .state
            .leases
            .get(&lease)
            .map_or_else(Vec::new, |keys| keys.iter().cloned().collect());
        for key in &keys {
            self.write_tombstone(key);
        }
        DeleteRangeResult {
            revision: Revision(self.current()),
            deleted: keys.len() as i64,
            prev_kvs: Vec::new(),
        }
    }
}
