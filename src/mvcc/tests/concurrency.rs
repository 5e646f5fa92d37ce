//! Proves reads and watches stay consistent while a writer applies and compacts on another
//! thread: every read is exactly the state of its header revision, and a watcher sees every
//! revision once, in order (or is canceled by compaction and resumes without a gap).

use bytes::Bytes;

use crate::mvcc::{
    ConsistentIndex, MemBackend, MvccConfig, MvccError, MvccStore, PutRequest, RangeRequest, Revision, StoreError,
    WatchRequest, WatchResponse,
};

const WRITES: i64 = 400;
const KEYS: i64 = 5;

/// Write i (0-based) puts `k{i % KEYS}` = its own revision (i + 2).
fn expected_mod_revision(key_index: i64, at: i64) -> Option<i64> {
    (2..=at).rev().find(|revision| (revision - 2) % KEYS == key_index)
}

#[test]
fn reads_and_watches_stay_consistent_under_concurrent_writes() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = MvccConfig {
            watcher_buffer_events_max: 8,
            compaction_batch_entries: 16,
            ..MvccConfig::default()
        };
        let store = MvccStore::open(MemBackend::new(), config).await.unwrap();
        let writer = tokio::spawn({
            let store = store.clone();
            async move {
                for write in 0..WRITES {
                    let revision = write + 2;
                    let request = PutRequest::new(format!("k{}", write % KEYS), revision.to_string());
                    let position = ConsistentIndex {
                        index: 2 * write as u64 + 1,
                        term: 1,
                    };
                    let result = store
                        .apply_put(position, request, &|_| true)
                        .await
                        .unwrap()
                        .expect_applied()
                        .unwrap();
                    assert_eq!(result.revision, Revision(revision));
                    if write % 50 == 49 {
                        let position = ConsistentIndex {
                            index: 2 * write as u64 + 2,
                            term: 1,
                        };
                        store
                            .apply_compact(position, Revision(revision - 25))
                            .await
                            .unwrap()
                            .expect_applied()
                            .unwrap();
                        store.compaction_step().await.unwrap();
                    }
                }
                store.finish_compaction().await.unwrap();
            }
        });
        let mut readers = Vec::new();
        for _ in 0..2 {
            let store = store.clone();
            readers.push(tokio::spawn(async move {
                let mut reads = 0;
                while store.current_revision().0 < WRITES + 1 {
                    let everything = RangeRequest::new(Bytes::from_static(&[0]), Bytes::from_static(&[0]));
                    let result = store.range(&everything).unwrap();
                    check_state(&result.kvs, result.revision.0);
                    let past_revision = result.revision.0 - 10;
                    if past_revision >= 1 {
                        let mut historical = everything.clone();
                        historical.revision = Revision(past_revision);
                        match store.range(&historical) {
                            Ok(past) => check_state(&past.kvs, past_revision),
                            Err(StoreError::Request(MvccError::Compacted)) => {}
                            Err(error) => panic!("{error}"),
                        }
                    }
                    reads += 1;
                    tokio::task::yield_now().await;
                }
                reads
            }));
        }
        let watcher = tokio::spawn({
            let store = store.clone();
            async move {
                let request = |start: i64| WatchRequest {
                    key: Bytes::from_static(&[0]),
                    range_end: Bytes::from_static(&[0]),
                    start_revision: Revision(start),
                    ..WatchRequest::default()
                };
                let mut next = 2;
                let mut watcher = store.watch(request(next)).unwrap();
                let mut cancels = 0;
                while next <= WRITES + 1 {
                    match watcher.recv().await.unwrap() {
                        WatchResponse::Events { events, revision } => {
                            for event in events {
                                assert_eq!(event.kv.mod_revision.0, next, "no gap, no duplicate");
                                assert_eq!(event.kv.value, Bytes::from(next.to_string()));
                                next += 1;
                            }
                            assert_eq!(revision.0, next - 1);
                        }
                        WatchResponse::Canceled { compact_revision } => {
                            assert!(next < compact_revision.0);
                            cancels += 1;
                            next = compact_revision.0;
                            watcher = store.watch(request(next)).unwrap();
                        }
                    }
                }
                cancels
            }
        });
        writer.await.unwrap();
        for reader in readers {
            assert!(reader.await.unwrap() > 0);
        }
        let cancels = watcher.await.unwrap();
        eprintln!("concurrent watcher was canceled {cancels} times");
    });
}

fn check_state(kvs: &[crate::mvcc::KeyValue], at: i64) {
    let expected: Vec<(String, i64)> = (0..KEYS)
        .filter_map(|key_index| {
            expected_mod_revision(key_index, at).map(|revision| (format!("k{key_index}"), revision))
        })
        .collect();
    let seen: Vec<(String, i64)> = kvs
        .iter()
        .map(|kv| {
            assert_eq!(kv.value, Bytes::from(kv.mod_revision.0.to_string()));
            (String::from_utf8_lossy(&kv.key).into_owned(), kv.mod_revision.0)
        })
        .collect();
    assert_eq!(seen, expected, "state at {at}");
}
