//! Proves compaction, persistence and exactly-once apply: compact errors and what stays
//! readable, physical deletion, reopen (index, revision, leases, consistent index, resumed
//! compaction), hashes, lease revocation, batches, and fail-stop on backend errors.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::{bytes, Harness};
use crate::mvcc::{
    ApplyEntry, ApplyOutcome, Backend, BackendError, BackendRead, Bucket, ConsistentIndex, LeaseId, MemBackend,
    MvccConfig, MvccError, MvccStore, PutRequest, RangeRequest, Revision, StoreError, WriteBatch, WriteRequest,
    WriteResponse,
};

fn all_keys_at(harness: &Harness, revision: i64) -> Result<Vec<(String, String, i64)>, MvccError> {
    let mut request = RangeRequest::new(Bytes::from_static(&[0]), Bytes::from_static(&[0]));
    request.revision = Revision(revision);
    let result = harness.range(&request)?;
    Ok(result
        .kvs
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
                kv.version,
            )
        })
        .collect())
}

#[tokio::test]
async fn compact_errors_and_revisions() {
    let mut harness = Harness::new().await;
    harness.put("a", "1").await; // 2
    harness.put("a", "2").await; // 3
    assert_eq!(harness.compact(4).await, Err(MvccError::FutureRevision));
    assert_eq!(
        harness.compact(3).await.unwrap().revision,
        Revision(3),
        "header = current, no new revision"
    );
    assert_eq!(harness.revision(), 3);
    assert_eq!(harness.store.compact_revision(), Revision(3));
    assert_eq!(harness.compact(3).await, Err(MvccError::Compacted));
    assert_eq!(harness.compact(2).await, Err(MvccError::Compacted));
    // Compacted is checked before future.
    assert_eq!(harness.compact(1).await, Err(MvccError::Compacted));
    assert_eq!(all_keys_at(&harness, 3).unwrap(), [("a".into(), "2".into(), 2)]);
    assert_eq!(all_keys_at(&harness, 2), Err(MvccError::Compacted));
}

#[tokio::test]
async fn physical_compaction_removes_only_dead_history() {
    let mut harness = Harness::with_config(MvccConfig {
        compaction_batch_entries: 2,
        ..MvccConfig::default()
    })
    .await;
    for round in 0..5 {
        harness.put("a", &format!("a{round}")).await;
        harness.put("b", &format!("b{round}")).await;
    }
    harness.delete("b", "").await; // 12
    harness.put("c", "c").await; // 13
    let before: Vec<_> = (10..=13)
        .map(|revision| all_keys_at(&harness, revision).unwrap())
        .collect();
    let hash_before = harness.store.hash_kv(Revision(0)).unwrap();
    assert_eq!(harness.backend.bucket_len(Bucket::Key), 12);

    harness.compact(12).await.unwrap();
    let hash_scheduled = harness.store.hash_kv(Revision(0)).unwrap();
    harness.store.finish_compaction().await.unwrap();
    // Equal before and after physical deletion: members agree mid-compaction.
    assert_eq!(harness.store.hash_kv(Revision(0)).unwrap(), hash_scheduled);
    assert_ne!(hash_before.hash, hash_scheduled.hash);
    assert_eq!(
        harness.backend.bucket_len(Bucket::Key),
        3,
        "a@10, b's tombstone @12 (kept, as in etcd >= 3.5.16), c@13"
    );
    assert_eq!(all_keys_at(&harness, 12).unwrap(), before[2]);
    assert_eq!(all_keys_at(&harness, 13).unwrap(), before[3]);
    assert!(harness.store.compaction_step().await.unwrap(), "nothing left to do");

    harness.reopen().await;
    assert_eq!(harness.revision(), 13);
    assert_eq!(all_keys_at(&harness, 12).unwrap(), before[2]);
    assert_eq!(
        harness.get("a").unwrap().version,
        5,
        "version survives compaction and reopen"
    );
    harness.put("a", "again").await;
    assert_eq!(harness.get("a").unwrap().version, 6);
}

#[tokio::test]
async fn reopen_restores_everything() {
    let mut harness = Harness::new().await;
    harness.leases.insert(LeaseId(9));
    harness.put("a", "1").await;
    let mut leased = PutRequest::new(bytes("b"), bytes("2"));
    leased.lease = LeaseId(9);
    harness.try_put(leased).await.unwrap();
    harness.put("c", "3").await;
    harness.delete("c", "").await;
    harness.put("c", "4").await;
    let revision = harness.revision();
    let history: Vec<_> = (1..=revision).map(|at| all_keys_at(&harness, at).unwrap()).collect();
    let consistent_index = harness.store.consistent_index();
    let hash = harness.store.hash_kv(Revision(0)).unwrap();
    assert_eq!(consistent_index.index, 5);

    harness.reopen().await;
    assert_eq!(harness.revision(), revision);
    assert_eq!(harness.store.consistent_index(), consistent_index);
    assert_eq!(harness.store.keys_for_lease(LeaseId(9)), vec![bytes("b")]);
    assert_eq!(harness.store.hash_kv(Revision(0)).unwrap(), hash);
    for at in 1..=revision {
        assert_eq!(
            all_keys_at(&harness, at).unwrap(),
            history[(at - 1) as usize],
            "at {at}"
        );
    }
}

#[tokio::test]
async fn revision_survives_compacting_the_newest_tombstones_and_reopening() {
    // etcd #17780: compaction at the newest revision, whose only change is a delete, must not
    // make the revision go backwards on restart (braid keeps that tombstone, as etcd 3.5.33
    // does, and also takes the compact revision as a floor when reopening).
    let mut harness = Harness::new().await;
    harness.put("a", "1").await; // 2
    harness.delete("a", "").await; // 3
    harness.put("b", "1").await; // 4
    harness.delete("b", "").await; // 5
    harness.compact(5).await.unwrap();
    harness.store.finish_compaction().await.unwrap();
    harness.reopen().await;
    assert_eq!(harness.revision(), 5);
    assert_eq!(harness.put("c", "1").await.revision, Revision(6));
}

#[tokio::test]
async fn scheduled_compaction_resumes_after_reopen() {
    let mut harness = Harness::new().await;
    for round in 0..4 {
        harness.put("k", &round.to_string()).await; // 2..=5
    }
    harness.compact(4).await.unwrap();
    assert_eq!(
        harness.backend.bucket_len(Bucket::Key),
        4,
        "not yet physically compacted"
    );
    harness.reopen().await;
    assert_eq!(harness.store.compact_revision(), Revision(4));
    assert_eq!(all_keys_at(&harness, 3), Err(MvccError::Compacted));
    harness.store.finish_compaction().await.unwrap();
    assert_eq!(harness.backend.bucket_len(Bucket::Key), 2);
    harness.reopen().await;
    assert_eq!(harness.store.compact_revision(), Revision(4));
    assert_eq!(all_keys_at(&harness, 4).unwrap(), [("k".into(), "2".into(), 3)]);
}

#[tokio::test]
async fn entries_apply_exactly_once() {
    let mut harness = Harness::new().await;
    let position = ConsistentIndex { index: 10, term: 2 };
    let put = || PutRequest::new(bytes("k"), bytes("v"));
    let outcome = harness.store.apply_put(position, put(), &|_| true).await.unwrap();
    assert_eq!(outcome.expect_applied().unwrap().revision, Revision(2));
    let again = harness.store.apply_put(position, put(), &|_| true).await.unwrap();
    assert_eq!(
        again,
        ApplyOutcome::AlreadyApplied {
            consistent_index: position
        }
    );
    let older = ConsistentIndex { index: 9, term: 2 };
    assert!(matches!(
        harness.store.apply_put(older, put(), &|_| true).await.unwrap(),
        ApplyOutcome::AlreadyApplied { .. }
    ));
    assert_eq!(harness.revision(), 2);

    harness.reopen().await;
    assert_eq!(harness.store.consistent_index(), position);
    assert!(matches!(
        harness.store.apply_put(position, put(), &|_| true).await.unwrap(),
        ApplyOutcome::AlreadyApplied { .. }
    ));

    // A failed request still advances the consistent index (it was applied: it failed).
    let next = ConsistentIndex { index: 11, term: 3 };
    let mut bad = put();
    bad.lease = LeaseId(1);
    let failed = harness.store.apply_put(next, bad, &|_| false).await.unwrap();
    assert_eq!(failed, ApplyOutcome::Applied(Err(MvccError::LeaseNotFound)));
    harness.reopen().await;
    assert_eq!(harness.store.consistent_index(), next);
    assert_eq!(harness.revision(), 2);
}

#[tokio::test]
async fn batches_apply_in_order_with_extra_writes() {
    let harness = Harness::new().await;
    let position = |index: u64| ConsistentIndex { index, term: 1 };
    let mut lease_record = WriteBatch::new();
    lease_record.put(Bucket::Lease.raw_key(b"lease-7"), bytes("ttl=10"));
    let entries = vec![
        ApplyEntry::new(position(1), WriteRequest::Put(PutRequest::new(bytes("a"), bytes("1")))),
        ApplyEntry {
            position: position(2),
            request: WriteRequest::Noop,
            extra: lease_record,
        },
        ApplyEntry::new(position(3), WriteRequest::Put(PutRequest::new(bytes("a"), bytes("2")))),
        ApplyEntry::new(
            position(2),
            WriteRequest::Put(PutRequest::new(bytes("dup"), bytes("x"))),
        ),
        ApplyEntry::new(
            position(4),
            WriteRequest::Compact(crate::mvcc::CompactRequest { revision: Revision(3) }),
        ),
        ApplyEntry::new(position(5), WriteRequest::Put(PutRequest::new(bytes("a"), bytes("3")))),
    ];
    let outcomes = harness.store.apply(entries, &|_| true).await.unwrap();
    let revisions: Vec<_> = outcomes
        .iter()
        .map(|outcome| match outcome {
            ApplyOutcome::Applied(Ok(WriteResponse::Put(put))) => format!("put@{}", put.revision),
            ApplyOutcome::Applied(Ok(WriteResponse::Noop { revision })) => {
                format!("noop@{revision}")
            }
            ApplyOutcome::Applied(Ok(WriteResponse::Compact(compact))) => {
                format!("compact@{}", compact.revision)
            }
            ApplyOutcome::AlreadyApplied { .. } => "skipped".to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(revisions, ["put@2", "noop@2", "put@3", "skipped", "compact@3", "put@4"]);
    assert_eq!(harness.store.compact_revision(), Revision(3));
    assert_eq!(harness.get("a").unwrap().version, 3);
    assert_eq!(harness.store.consistent_index(), position(5));
    let lease_record = harness
        .store
        .backend()
        .read()
        .get(&Bucket::Lease.raw_key(b"lease-7"))
        .unwrap();
    assert_eq!(lease_record, Some(bytes("ttl=10")));
}

#[tokio::test]
#[should_panic(expected = "into an mvcc bucket")]
async fn extra_writes_may_not_touch_mvcc_buckets() {
    let harness = Harness::new().await;
    let mut extra = WriteBatch::new();
    extra.put(Bucket::Meta.raw_key(b"consistent_index"), bytes("forged"));
    let entry = ApplyEntry {
        position: ConsistentIndex { index: 1, term: 1 },
        request: WriteRequest::Noop,
        extra,
    };
    let _ = harness.store.apply(vec![entry], &|_| true).await;
}

#[tokio::test]
async fn lease_revocation_deletes_attached_keys_in_one_revision() {
    let mut harness = Harness::new().await;
    harness.leases.insert(LeaseId(3));
    for key in ["z", "a", "m"] {
        let mut request = PutRequest::new(bytes(key), bytes("v"));
        request.lease = LeaseId(3);
        harness.try_put(request).await.unwrap();
    }
    harness.put("m", "detached").await; // a put without lease detaches m
    harness.put("other", "v").await;
    assert_eq!(harness.store.keys_for_lease(LeaseId(3)), vec![bytes("a"), bytes("z")]);
    let position = harness.position();
    let result = harness
        .store
        .apply_revoke_lease(position, LeaseId(3))
        .await
        .unwrap()
        .expect_applied()
        .unwrap();
    assert_eq!((result.deleted, result.revision), (2, Revision(7)));
    assert_eq!(harness.revision(), 7);
    assert!(harness.store.keys_for_lease(LeaseId(3)).is_empty());
    assert!(harness.get("m").is_some() && harness.get("a").is_none());
    let position = harness.position();
    let nothing = harness
        .store
        .apply_revoke_lease(position, LeaseId(3))
        .await
        .unwrap()
        .expect_applied()
        .unwrap();
    assert_eq!((nothing.deleted, nothing.revision), (0, Revision(7)));
}

#[tokio::test]
async fn hashes_agree_for_equal_histories() {
    let mut first = Harness::new().await;
    let mut second = Harness::new().await;
    for harness in [&mut first, &mut second] {
        harness.put("a", "1").await;
        harness.put("b", "2").await;
        harness.delete("a", "").await;
    }
    assert_eq!(
        first.store.hash_kv(Revision(0)).unwrap(),
        second.store.hash_kv(Revision(0)).unwrap()
    );
    assert_eq!(first.store.hash().unwrap(), second.store.hash().unwrap());
    assert_eq!(
        first.store.hash_kv(Revision(3)).unwrap().hash,
        second.store.hash_kv(Revision(3)).unwrap().hash
    );
    assert_ne!(
        first.store.hash_kv(Revision(3)).unwrap().hash,
        first.store.hash_kv(Revision(4)).unwrap().hash
    );
    second.put("c", "3").await;
    assert_eq!(
        first.store.hash_kv(Revision(4)).unwrap().hash,
        second.store.hash_kv(Revision(4)).unwrap().hash
    );
    assert_ne!(
        first.store.hash_kv(Revision(0)).unwrap().hash,
        second.store.hash_kv(Revision(0)).unwrap().hash
    );
    let result = first.store.hash_kv(Revision(0)).unwrap();
    assert_eq!(
        (result.compact_revision, result.hash_revision, result.revision),
        (Revision(-1), Revision(4), Revision(4))
    );
    assert_eq!(
        first.store.hash_kv(Revision(5)),
        Err(StoreError::Request(MvccError::FutureRevision))
    );
    first.compact(3).await.unwrap();
    assert_eq!(
        first.store.hash_kv(Revision(2)),
        Err(StoreError::Request(MvccError::Compacted))
    );
    assert_eq!(first.store.hash_kv(Revision(3)).unwrap().compact_revision, Revision(3));
}

/// A MemBackend whose commits fail on demand.
#[derive(Clone, Default)]
struct FailingBackend {
    inner: MemBackend,
    fail: Arc<AtomicBool>,
}

impl Backend for FailingBackend {
    type Read = <MemBackend as Backend>::Read;

    fn read(&self) -> Self::Read {
        self.inner.read()
    }

    fn apply(&self, batch: WriteBatch) -> impl Future<Output = Result<(), BackendError>> + Send {
        let failing = self.fail.load(Ordering::SeqCst);
        let inner = self.inner.clone();
        async move {
            if failing {
                return Err(BackendError::new("injected fsync failure"));
            }
            inner.apply(batch).await
        }
    }
}

#[tokio::test]
async fn a_failed_commit_stops_all_later_writes() {
    let backend = FailingBackend::default();
    let store = MvccStore::open(backend.clone(), MvccConfig::default()).await.unwrap();
    let put = |key: &str| PutRequest::new(bytes(key), bytes("v"));
    let position = |index: u64| ConsistentIndex { index, term: 1 };
    store
        .apply_put(position(1), put("a"), &|_| true)
        .await
        .unwrap()
        .expect_applied()
        .unwrap();
    backend.fail.store(true, Ordering::SeqCst);
    let error = store.apply_put(position(2), put("b"), &|_| true).await.unwrap_err();
    assert_eq!(error.message, "injected fsync failure");
    assert_eq!(store.current_revision(), Revision(2), "nothing was published");
    assert_eq!(
        store.range(&RangeRequest::new(bytes("b"), Bytes::new())).unwrap().count,
        0
    );
    backend.fail.store(false, Ordering::SeqCst);
    assert!(
        store.apply_put(position(3), put("c"), &|_| true).await.is_err(),
        "fail-stop: the store stays failed"
    );
    assert!(store.compaction_step().await.is_err());
    // A restart recovers from what the backend holds.
    let reopened = MvccStore::open(backend, MvccConfig::default()).await.unwrap();
    assert_eq!(
        (reopened.current_revision(), reopened.consistent_index()),
        (Revision(2), position(1))
    );
}

#[test]
fn store_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let store = runtime
        .block_on(MvccStore::open(MemBackend::new(), MvccConfig::default()))
        .unwrap();
    let apply = store.apply(Vec::new(), &|_| true);
    assert_send(&apply);
    let step = store.compaction_step();
    assert_send(&step);
    let mut watcher = store
        .watch(crate::mvcc::WatchRequest {
            key: bytes("k"),
            ..Default::default()
        })
        .unwrap();
    let receive = watcher.recv();
    assert_send(&receive);
}

/// A MemBackend that records how many snapshots were alive at each commit.
#[derive(Clone, Default)]
struct SnapshotCountingBackend {
    inner: MemBackend,
    most_open_at_commit: Arc<std::sync::atomic::AtomicUsize>,
}

impl Backend for SnapshotCountingBackend {
    type Read = <MemBackend as Backend>::Read;

    fn read(&self) -> Self::Read {
        self.inner.read()
    }

    fn apply(&self, batch: WriteBatch) -> impl Future<Output = Result<(), BackendError>> + Send {
        self.most_open_at_commit
            .fetch_max(self.inner.open_snapshots(), Ordering::SeqCst);
        self.inner.apply(batch)
    }
}

#[tokio::test]
async fn commits_happen_without_a_live_snapshot() {
    // Regression: the writer kept its snapshot across the commit, so MemBackend copied the
    // whole map on every write (2k puts/s instead of 750k).
    let backend = SnapshotCountingBackend::default();
    let store = MvccStore::open(backend.clone(), MvccConfig::default()).await.unwrap();
    for index in 1..=5 {
        let position = ConsistentIndex { index, term: 1 };
        let request = PutRequest::new(bytes("k"), Bytes::from(index.to_string()));
        store
            .apply_put(position, request, &|_| true)
            .await
            .unwrap()
            .expect_applied()
            .unwrap();
    }
    let position = ConsistentIndex { index: 6, term: 1 };
    store
        .apply_compact(position, Revision(4))
        .await
        .unwrap()
        .expect_applied()
        .unwrap();
    store.finish_compaction().await.unwrap();
    assert_eq!(backend.inner.bucket_len(Bucket::Key), 3);
    assert_eq!(backend.most_open_at_commit.load(Ordering::SeqCst), 0);
}
