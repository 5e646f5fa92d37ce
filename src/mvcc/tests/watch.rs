//! Proves watches follow etcd: history then live, start revisions, compaction, prev_kv,
//! filters, atomic revisions in op order, and that a slow watcher never blocks writes and
//! later catches up with no gap and no duplicate.

use bytes::Bytes;

use crate::mvcc::backend::Backend;

use super::{bytes, Harness};
use crate::mvcc::{
    DeleteRangeRequest, Event, EventKind, MemBackend, MvccConfig, MvccError, PutRequest, RequestOp, Revision,
    TxnRequest, WatchFilters, WatchRequest, WatchResponse, WatchStep, Watcher,
};

fn watch_request(key: &str, range_end: &str, start_revision: i64) -> WatchRequest {
    WatchRequest {
        key: bytes(key),
        range_end: bytes(range_end),
        start_revision: Revision(start_revision),
        ..WatchRequest::default()
    }
}

/// Everything the watcher has ready now, as (kind, key, revision) triples.
fn drain(watcher: &mut Watcher<MemBackend>) -> Vec<(EventKind, String, i64)> {
    let mut seen = Vec::new();
    while let Some(response) = watcher.try_recv().unwrap() {
        match response {
            WatchResponse::Events { events, .. } => seen.extend(events.iter().map(describe)),
            WatchResponse::Canceled { compact_revision } => {
                panic!("canceled at {compact_revision}")
            }
        }
    }
    seen
}

fn describe(event: &Event) -> (EventKind, String, i64) {
    (
        event.kind,
        String::from_utf8_lossy(&event.kv.key).into_owned(),
        event.kv.mod_revision.0,
    )
}

fn put_event(key: &str, revision: i64) -> (EventKind, String, i64) {
    (EventKind::Put, key.to_string(), revision)
}

fn delete_event(key: &str, revision: i64) -> (EventKind, String, i64) {
    (EventKind::Delete, key.to_string(), revision)
}

#[tokio::test]
async fn history_then_live() {
    let mut harness = Harness::new().await;
    harness.put("a", "1").await; // 2
    harness.put("b", "1").await; // 3
    harness.put("zz", "1").await; // 4 (outside the range)
    let mut watcher = harness.store.watch(watch_request("a", "c", 2)).unwrap();
    assert_eq!(watcher.created_revision(), Revision(4));
    assert_eq!(watcher.progress_revision(), None, "still has history to replay");
    assert_eq!(drain(&mut watcher), [put_event("a", 2), put_event("b", 3)]);
    assert_eq!(watcher.progress_revision(), Some(Revision(4)));
    harness.delete("a", "").await; // 5
    harness.put("b", "2").await; // 6
    assert_eq!(watcher.progress_revision(), None, "events are waiting");
    assert_eq!(drain(&mut watcher), [delete_event("a", 5), put_event("b", 6)]);
    assert_eq!(drain(&mut watcher), []);
}

#[tokio::test]
async fn start_revisions() {
    let mut harness = Harness::new().await;
    harness.put("k", "1").await; // 2
    let mut from_now = harness.store.watch(watch_request("k", "", 0)).unwrap();
    let mut from_future = harness.store.watch(watch_request("k", "", 4)).unwrap();
    let mut everything = harness
        .store
        .watch(WatchRequest {
            range_end: Bytes::from_static(&[0]),
            ..watch_request("", "", 1)
        })
        .unwrap();
    harness.put("k", "2").await; // 3
    harness.put("k", "3").await; // 4
    assert_eq!(drain(&mut from_now), [put_event("k", 3), put_event("k", 4)]);
    assert_eq!(drain(&mut from_future), [put_event("k", 4)]);
    assert_eq!(
        drain(&mut everything),
        [put_event("k", 2), put_event("k", 3), put_event("k", 4)],
        "empty key = \\0"
    );

    assert_eq!(
        harness.store.watch(watch_request("b", "a", 0)).err(),
        Some(MvccError::WatcherRangeEmpty)
    );
    assert_eq!(
        harness.store.watch(watch_request("b", "b", 0)).err(),
        Some(MvccError::WatcherRangeEmpty)
    );
    assert_eq!(
        harness.store.watch(watch_request("b", "", -1)).err(),
        Some(MvccError::Compacted)
    );
    assert_eq!(harness.store.watcher_count(), 3);
    drop(from_now);
    assert_eq!(harness.store.watcher_count(), 2, "dropping a watcher cancels it");
}

#[tokio::test]
async fn compacted_start_is_canceled_with_the_compact_revision() {
    let mut harness = Harness::new().await;
    harness.put("k", "1").await; // 2
    harness.put("k", "2").await; // 3
    harness.delete("k", "").await; // 4
    harness.compact(4).await.unwrap();
    harness.store.finish_compaction().await.unwrap();
    let mut stale = harness.store.watch(watch_request("k", "", 3)).unwrap();
    let canceled = WatchResponse::Canceled {
        compact_revision: Revision(4),
    };
    assert_eq!(stale.try_recv().unwrap(), Some(canceled.clone()));
    assert_eq!(stale.try_recv().unwrap(), Some(canceled), "stays canceled");
    assert_eq!(harness.store.watcher_count(), 0);
    // From the compact revision itself: the tombstone there is still delivered.
    let mut at_compact = harness.store.watch(watch_request("k", "", 4)).unwrap();
    assert_eq!(drain(&mut at_compact), [delete_event("k", 4)]);
}

#[tokio::test]
async fn prev_kv_and_filters() {
    let mut harness = Harness::new().await;
    let mut with_prev = harness
        .store
        .watch(WatchRequest {
            prev_kv: true,
            ..watch_request("k", "", 0)
        })
        .unwrap();
    let no_put = WatchFilters {
        no_put: true,
        no_delete: false,
    };
    let mut deletes_only = harness
        .store
        .watch(WatchRequest {
            filters: no_put,
            ..watch_request("k", "", 0)
        })
        .unwrap();
    let no_delete = WatchFilters {
        no_put: false,
        no_delete: true,
    };
    let mut puts_only = harness
        .store
        .watch(WatchRequest {
            filters: no_delete,
            ..watch_request("k", "", 0)
        })
        .unwrap();
    harness.put("k", "v1").await; // 2
    harness.put("k", "v2").await; // 3
    harness.delete("k", "").await; // 4
    let Some(WatchResponse::Events { events, .. }) = with_prev.try_recv().unwrap() else {
        panic!()
    };
    let prev_values: Vec<_> = events
        .iter()
        .map(|event| event.prev_kv.as_ref().map(|kv| kv.value.clone()))
        .collect();
    assert_eq!(
        prev_values,
        [None, Some(bytes("v1")), Some(bytes("v2"))],
        "no prev_kv for a create"
    );
    let delete = &events[2];
    assert_eq!(
        (delete.kv.create_revision, delete.kv.version, delete.kv.value.len()),
        (Revision(0), 0, 0),
        "a DELETE carries key + mod_revision only"
    );
    assert_eq!(drain(&mut deletes_only), [delete_event("k", 4)]);
    assert_eq!(drain(&mut puts_only), [put_event("k", 2), put_event("k", 3)]);

    // prev_kv is left out when its revision has been compacted (etcd reads at mod - 1).
    harness.put("k", "v5").await; // 5
    harness.put("k", "v6").await; // 6
    let mut late = harness
        .store
        .watch(WatchRequest {
            prev_kv: true,
            ..watch_request("k", "", 6)
        })
        .unwrap();
    harness.compact(6).await.unwrap();
    let Some(WatchResponse::Events { events, .. }) = late.try_recv().unwrap() else {
        panic!()
    };
    assert_eq!((events.len(), events[0].prev_kv.as_ref()), (1, None));
}

#[tokio::test]
async fn one_txn_is_one_atomic_batch_in_op_order() {
    let mut harness = Harness::new().await;
    harness.put("x", "0").await; // 2
    let mut watcher = harness.store.watch(watch_request("a", "\0", 0)).unwrap();
    let request = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::Put(PutRequest::new(bytes("c"), bytes("1"))),
            RequestOp::Put(PutRequest::new(bytes("a"), bytes("1"))),
            RequestOp::DeleteRange(DeleteRangeRequest::new(bytes("x"), Bytes::new())),
            RequestOp::Put(PutRequest::new(bytes("b"), bytes("1"))),
        ],
        failure: vec![],
    };
    harness.txn(request).await.unwrap();
    harness.put("d", "1").await; // 4
    let Some(WatchResponse::Events { events, .. }) = watcher.try_recv().unwrap() else {
        panic!()
    };
    let seen: Vec<_> = events.iter().map(describe).collect();
    assert_eq!(
        seen,
        [
            put_event("c", 3),
            put_event("a", 3),
            delete_event("x", 3),
            put_event("b", 3),
            put_event("d", 4)
        ]
    );
}

#[tokio::test]
async fn slow_watcher_never_blocks_writes_and_catches_up_exactly() {
    let config = MvccConfig {
        watcher_buffer_events_max: 4,
        watch_response_events_max: 3,
        watch_history_chunk_entries: 5,
        ..MvccConfig::default()
    };
    let mut harness = Harness::with_config(config).await;
    let mut slow = harness.store.watch(watch_request("a", "\0", 0)).unwrap();
    let mut expected = Vec::new();
    for round in 0..60 {
        let key = format!("k{}", round % 7);
        let result = harness.put(&key, "v").await; // completes: nobody waits for the watcher
        expected.push(put_event(&key, result.revision.0));
    }
    // Interleave live writes with catching up: still no gap, no duplicate.
    let mut seen = Vec::new();
    let mut round = 0;
    loop {
        match slow.try_recv().unwrap() {
            Some(WatchResponse::Events { events, .. }) => {
                assert!(events.len() <= 3);
                seen.extend(events.iter().map(describe));
            }
            Some(canceled) => panic!("{canceled:?}"),
            None => break,
        }
        if round < 10 {
            let result = harness.put("live", "v").await;
            expected.push(put_event("live", result.revision.0));
            round += 1;
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(slow.progress_revision(), Some(Revision(harness.revision())));
}

#[tokio::test]
async fn a_watcher_left_behind_by_compaction_is_canceled() {
    let mut harness = Harness::with_config(MvccConfig {
        watcher_buffer_events_max: 2,
        ..MvccConfig::default()
    })
    .await;
    let mut behind = harness.store.watch(watch_request("k", "", 0)).unwrap();
    let mut keeping_up = harness.store.watch(watch_request("k", "", 0)).unwrap();
    for round in 0..6 {
        harness.put("k", &round.to_string()).await; // 2..=7
        drain(&mut keeping_up);
    }
    harness.compact(6).await.unwrap();
    harness.put("k", "after").await; // 8
    let Some(WatchResponse::Events { events: first, .. }) = behind.try_recv().unwrap() else {
        panic!()
    };
    assert_eq!(
        first.iter().map(describe).collect::<Vec<_>>(),
        [put_event("k", 2), put_event("k", 3)],
        "what was queued"
    );
    assert_eq!(
        behind.try_recv().unwrap(),
        Some(WatchResponse::Canceled {
            compact_revision: Revision(6)
        })
    );
    assert_eq!(
        drain(&mut keeping_up),
        [put_event("k", 8)],
        "a synced watcher is unaffected by compaction"
    );
}

#[tokio::test]
async fn recv_waits_for_the_next_write() {
    let mut harness = Harness::new().await;
    let mut watcher = harness.store.watch(watch_request("k", "", 0)).unwrap();
    let waiting = tokio::spawn(async move { watcher.recv().await.unwrap() });
    tokio::task::yield_now().await;
    harness.put("k", "v").await;
    let WatchResponse::Events { events, .. } = waiting.await.unwrap() else {
        panic!()
    };
    assert_eq!(events.iter().map(describe).collect::<Vec<_>>(), [put_event("k", 2)]);
}

/// One task serving many watchers through one shared `Notify` (the gRPC Watch stream's way):
/// a write to any of them wakes the waiter, and `step` hands out each one's events.
#[tokio::test]
async fn watchers_sharing_a_notify_wake_their_one_consumer() {
    let mut harness = Harness::new().await;
    let notify = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut first = harness
        .store
        .watch_notifying(watch_request("a", "", 0), notify.clone())
        .unwrap();
    let mut second = harness
        .store
        .watch_notifying(watch_request("b", "", 0), notify.clone())
        .unwrap();
    assert_eq!(first.step().unwrap(), WatchStep::Idle);
    assert_eq!(second.step().unwrap(), WatchStep::Idle);
    let waiting = tokio::spawn({
        let notify = notify.clone();
        async move { notify.notified().await }
    });
    harness.put("b", "1").await; // 2
    waiting.await.unwrap();
    assert_eq!(first.step().unwrap(), WatchStep::Idle);
    let WatchStep::Response(WatchResponse::Events { events, revision }) = second.step().unwrap() else {
        panic!("the second watcher has the put")
    };
    assert_eq!(
        (events.iter().map(describe).collect::<Vec<_>>(), revision),
        (vec![put_event("b", 2)], Revision(2))
    );
    // Nobody waits now: the write's wake-up is kept as a permit for the next wait.
    harness.put("a", "1").await; // 3
    notify.notified().await;
    assert!(matches!(
        first.step().unwrap(),
        WatchStep::Response(WatchResponse::Events { .. })
    ));
}

#[tokio::test]
async fn replay_from_the_compact_revision_matches_etcd_before_and_after_physical_compaction() {
    // A txn that puts b and then deletes from a: at revision 3, b is put (sub 0) then deleted
    // (sub 2). Compaction at 3 keeps the tombstones but drops the put, so a watch replaying
    // revision 3 sees only the deletes, whether or not the backend has deleted the put yet.
    let mut harness = Harness::new().await;
    harness.put("a", "1").await; // 2
    let request = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::Put(PutRequest::new(bytes("b"), bytes("1"))),
            RequestOp::DeleteRange(DeleteRangeRequest::new(bytes("a"), Bytes::from_static(&[0]))),
        ],
        failure: vec![],
    };
    assert_eq!(harness.txn(request).await.unwrap().revision, Revision(3));
    let mut live = harness.store.watch(watch_request("a", "\0", 3)).unwrap();
    assert_eq!(
        drain(&mut live),
        [put_event("b", 3), delete_event("a", 3), delete_event("b", 3)]
    );

    harness.compact(3).await.unwrap();
    let expected = [delete_event("a", 3), delete_event("b", 3)];
    let mut before_physical = harness.store.watch(watch_request("a", "\0", 3)).unwrap();
    assert_eq!(drain(&mut before_physical), expected);
    harness.store.finish_compaction().await.unwrap();
    let mut after_physical = harness.store.watch(watch_request("a", "\0", 3)).unwrap();
    assert_eq!(drain(&mut after_physical), expected);
}

/// A follower's store replaced by the leader's snapshot: reads, hashes and the consistent
/// index become the leader's, and a live watcher catches up through the revisions it never
/// saw applied, with no gap and no duplicate.
#[tokio::test]
async fn install_snapshot_replaces_state_and_watchers_catch_up() {
    let mut leader = Harness::new().await;
    let mut follower = Harness::new().await;
    for harness in [&mut leader, &mut follower] {
        harness.put("a", "1").await; // 2
        harness.put("gone", "1").await; // 3
    }
    let mut watcher = follower.store.watch(watch_request("a", "z", 0)).unwrap();
    assert_eq!(drain(&mut watcher), vec![]);
    leader.put("b", "2").await; // 4
    leader.delete("gone", "").await; // 5
    leader.put("a", "3").await; // 6

    follower.store.install_snapshot(&leader.backend.read()).await.unwrap();

    assert_eq!(follower.store.current_revision(), Revision(6));
    assert_eq!(follower.store.consistent_index(), leader.store.consistent_index());
    assert_eq!(follower.store.hash().unwrap().hash, leader.store.hash().unwrap().hash);
    assert_eq!(
        follower.store.hash_kv(Revision(0)).unwrap(),
        leader.store.hash_kv(Revision(0)).unwrap()
    );
    assert_eq!(
        drain(&mut watcher),
        vec![put_event("b", 4), delete_event("gone", 5), put_event("a", 6)]
    );
    // Live again afterwards, and a restart sees the same state.
    follower.next_index = leader.next_index;
    follower.put("c", "4").await; // 7
    assert_eq!(drain(&mut watcher), vec![put_event("c", 7)]);
    follower.reopen().await;
    assert_eq!(follower.store.current_revision(), Revision(7));
}

/// A watcher whose next revision the snapshot has compacted away is canceled with the
/// snapshot's compact revision, as etcd's restore does.
#[tokio::test]
async fn install_snapshot_cancels_watchers_behind_its_compaction() {
    let mut leader = Harness::new().await;
    let mut follower = Harness::new().await;
    for harness in [&mut leader, &mut follower] {
        harness.put("a", "1").await; // 2
    }
    let mut watcher = follower.store.watch(watch_request("a", "", 0)).unwrap();
    leader.put("a", "2").await; // 3
    leader.put("a", "3").await; // 4
    leader.compact(4).await.unwrap();
    follower.store.install_snapshot(&leader.backend.read()).await.unwrap();
    // Entries the leader compacted away are gone from the follower's backend too.
    assert_eq!(follower.store.hash().unwrap().hash, leader.store.hash().unwrap().hash);
    assert_eq!(
        watcher.try_recv().unwrap(),
        Some(WatchResponse::Canceled {
            compact_revision: Revision(4)
        })
    );
}
