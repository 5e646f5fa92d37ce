//! Tests of the mvcc module, plus the harness they share.

mod compaction;
mod concurrency;
mod kv;
mod model;
mod property;
mod txn;
mod watch;

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::mvcc::{
    ApplyOutcome, CompactResult, ConsistentIndex, DeleteRangeRequest, DeleteRangeResult, KeyValue, LeaseId, MemBackend,
    MvccConfig, MvccError, MvccStore, PutRequest, PutResult, RangeRequest, RangeResult, Revision, StoreError,
    TxnRequest, TxnResult,
};

pub(crate) fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// A store on a `MemBackend` that numbers Raft entries itself and plays the lessor.
pub(crate) struct Harness {
    pub store: MvccStore<MemBackend>,
    pub backend: MemBackend,
    pub config: MvccConfig,
    pub next_index: u64,
    pub leases: BTreeSet<LeaseId>,
}

impl Harness {
    pub async fn new() -> Self {
        Harness::with_config(MvccConfig::default()).await
    }

    pub async fn with_config(config: MvccConfig) -> Self {
        let backend = MemBackend::new();
        let store = MvccStore::open(backend.clone(), config.clone()).await.expect("open");
        Harness {
            store,
            backend,
            config,
            next_index: 1,
            leases: BTreeSet::new(),
        }
    }

    /// Drops the store and opens a new one on the same backend (a restart).
    pub async fn reopen(&mut self) {
        self.store = MvccStore::open(self.backend.clone(), self.config.clone())
            .await
            .expect("reopen");
    }

    pub fn position(&mut self) -> ConsistentIndex {
        let position = ConsistentIndex {
            index: self.next_index,
            term: 1,
        };
        self.next_index += 1;
        position
    }

    pub async fn try_put(&mut self, request: PutRequest) -> Result<PutResult, MvccError> {
        let position = self.position();
        let leases = self.leases.clone();
        let outcome = self
            .store
            .apply_put(position, request, &move |lease| leases.contains(&lease))
            .await;
        outcome.expect("backend").expect_applied()
    }

    pub async fn put(&mut self, key: &str, value: &str) -> PutResult {
        self.try_put(PutRequest::new(bytes(key), bytes(value)))
            .await
            .expect("put")
    }

    pub async fn try_delete(&mut self, request: DeleteRangeRequest) -> Result<DeleteRangeResult, MvccError> {
        let position = self.position();
        self.store
            .apply_delete_range(position, request)
            .await
            .expect("backend")
            .expect_applied()
    }

    pub async fn delete(&mut self, key: &str, range_end: &str) -> DeleteRangeResult {
        self.try_delete(DeleteRangeRequest::new(bytes(key), bytes(range_end)))
            .await
            .expect("delete")
    }

    pub async fn txn(&mut self, request: TxnRequest) -> Result<TxnResult, MvccError> {
        let position = self.position();
        let leases = self.leases.clone();
        let outcome = self
            .store
            .apply_txn(position, request, &move |lease| leases.contains(&lease))
            .await;
        outcome.expect("backend").expect_applied()
    }

    pub async fn compact(&mut self, revision: i64) -> Result<CompactResult, MvccError> {
        let position = self.position();
        let outcome = self
            .store
            .apply_compact(position, Revision(revision))
            .await
            .expect("backend");
        match outcome {
            ApplyOutcome::Applied(result) => result,
            other => panic!("compact not applied: {other:?}"),
        }
    }

    pub fn range(&self, request: &RangeRequest) -> Result<RangeResult, MvccError> {
        self.store.range(request).map_err(|error| match error {
            StoreError::Request(error) => error,
            StoreError::Backend(error) => panic!("backend: {error}"),
        })
    }

    pub fn get(&self, key: &str) -> Option<KeyValue> {
        let result = self.range(&RangeRequest::new(bytes(key), Bytes::new())).expect("range");
        assert!(result.kvs.len() <= 1);
        result.kvs.into_iter().next()
    }

    pub fn revision(&self) -> i64 {
        self.store.current_revision().0
    }
}
