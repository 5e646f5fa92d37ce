//! Proves Range/Put/DeleteRange follow etcd: revision arithmetic, every RangeRequest option,
//! put/delete flags, and the exact error texts.

use bytes::Bytes;

use super::{bytes, Harness};
use crate::mvcc::{
    DeleteRangeRequest, KeyValue, LeaseId, MvccError, PutRequest, RangeRequest, Revision, SortOrder, SortTarget,
};

fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

fn range_of(key: &str, range_end: &[u8]) -> RangeRequest {
    RangeRequest::new(bytes(key), Bytes::copy_from_slice(range_end))
}

#[tokio::test]
async fn store_starts_at_revision_one_and_first_write_gets_two() {
    let mut harness = Harness::new().await;
    assert_eq!(harness.revision(), 1);
    assert_eq!(harness.store.compact_revision(), Revision(-1));
    let empty = harness.range(&range_of("a", b"")).unwrap();
    assert_eq!((empty.revision, empty.count, empty.kvs.len()), (Revision(1), 0, 0));

    let first = harness.put("a", "1").await;
    assert_eq!(first.revision, Revision(2));
    assert_eq!(first.prev_kv, None);
    let kv = harness.get("a").unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (Revision(2), Revision(2), 1)
    );

    assert_eq!(harness.put("a", "2").await.revision, Revision(3));
    let kv = harness.get("a").unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version, &kv.value[..]),
        (Revision(2), Revision(3), 2, &b"2"[..])
    );

    let deleted = harness.delete("a", "").await;
    assert_eq!((deleted.revision, deleted.deleted), (Revision(4), 1));
    assert_eq!(harness.get("a"), None);

    // Deleting nothing creates no revision; the header shows the current one.
    let nothing = harness.delete("a", "").await;
    assert_eq!((nothing.revision, nothing.deleted), (Revision(4), 0));
    assert_eq!(harness.revision(), 4);

    // Re-creating restarts the version.
    harness.put("a", "3").await;
    let kv = harness.get("a").unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (Revision(5), Revision(5), 1)
    );
}

#[tokio::test]
async fn range_end_conventions() {
    let mut harness = Harness::new().await;
    for key in ["a", "ab", "abc", "b", "c", "\u{7f}"] {
        harness.put(key, "v").await;
    }
    let found = |request: RangeRequest| keys(&harness.range(&request).unwrap().kvs);
    assert_eq!(found(range_of("ab", b"")), ["ab"]);
    assert_eq!(found(range_of("ab", b"ac")), ["ab", "abc"], "prefix");
    assert_eq!(found(range_of("b", &[0])), ["b", "c", "\u{7f}"], "from key");
    assert_eq!(
        found(RangeRequest::new(Bytes::from_static(&[0]), Bytes::from_static(&[0]))).len(),
        6,
        "all keys"
    );
    assert!(found(range_of("b", b"a")).is_empty(), "end before key");
    assert!(found(range_of("b", b"b")).is_empty(), "end equal to key");
    assert!(found(range_of("zz", b"")).is_empty());
}

#[tokio::test]
async fn range_limit_more_and_count() {
    let mut harness = Harness::new().await;
    for key in ["a", "b", "c", "d"] {
        harness.put(key, key).await;
    }
    let mut request = range_of("a", &[0]);
    request.limit = 2;
    let result = harness.range(&request).unwrap();
    assert_eq!(
        (keys(&result.kvs), result.more, result.count),
        (vec!["a".to_string(), "b".to_string()], true, 4)
    );
    request.limit = 4;
    let result = harness.range(&request).unwrap();
    assert_eq!((result.kvs.len(), result.more, result.count), (4, false, 4));
    request.limit = -1;
    assert_eq!(
        harness.range(&request).unwrap().kvs.len(),
        4,
        "negative limit is unlimited"
    );
}

#[tokio::test]
async fn range_at_revision() {
    let mut harness = Harness::new().await;
    harness.put("k", "v2").await; // 2
    harness.put("k", "v3").await; // 3
    harness.delete("k", "").await; // 4
    harness.put("j", "v5").await; // 5
    let at = |harness: &Harness, revision: i64| {
        let mut request = range_of("a", &[0]);
        request.revision = Revision(revision);
        harness.range(&request)
    };
    let historical = at(&harness, 3).unwrap();
    assert_eq!(historical.revision, Revision(5), "header is the current revision");
    assert_eq!(&historical.kvs[0].value[..], b"v3");
    assert_eq!(at(&harness, 4).unwrap().count, 0);
    assert_eq!(keys(&at(&harness, 0).unwrap().kvs), ["j"]);
    assert_eq!(keys(&at(&harness, -7).unwrap().kvs), ["j"], "negative = current");
    assert_eq!(at(&harness, 6), Err(MvccError::FutureRevision));

    harness.compact(3).await.unwrap();
    assert_eq!(at(&harness, 2), Err(MvccError::Compacted));
    assert_eq!(
        &at(&harness, 3).unwrap().kvs[0].value[..],
        b"v3",
        "the compact revision stays readable"
    );
    // Future is checked before compacted.
    assert_eq!(at(&harness, 99), Err(MvccError::FutureRevision));
}

#[tokio::test]
async fn range_sorting() {
    let mut harness = Harness::new().await;
    // versions: a=2, b=3, c=1; create: a=2, b=3, c=4.
    harness.put("a", "z").await; // 2
    harness.put("b", "y").await; // 3
    harness.put("c", "x").await; // 4
    harness.put("a", "w").await; // 5
    harness.put("b", "v").await; // 6
    harness.put("b", "u").await; // 7
    let sorted = |order: SortOrder, target: SortTarget, limit: i64| {
        let mut request = range_of("a", &[0]);
        request.sort_order = order;
        request.sort_target = target;
        request.limit = limit;
        let result = harness.range(&request).unwrap();
        (keys(&result.kvs).join(""), result.more)
    };
    assert_eq!(sorted(SortOrder::Ascend, SortTarget::Key, 0).0, "abc");
    assert_eq!(sorted(SortOrder::Descend, SortTarget::Key, 0).0, "cba");
    assert_eq!(sorted(SortOrder::Ascend, SortTarget::Version, 0).0, "cab");
    assert_eq!(sorted(SortOrder::Descend, SortTarget::Version, 0).0, "bac");
    assert_eq!(sorted(SortOrder::Ascend, SortTarget::Create, 0).0, "abc");
    assert_eq!(sorted(SortOrder::Descend, SortTarget::Create, 0).0, "cba");
    assert_eq!(sorted(SortOrder::Ascend, SortTarget::Mod, 0).0, "cab");
    assert_eq!(sorted(SortOrder::Descend, SortTarget::Mod, 0).0, "bac");
    assert_eq!(sorted(SortOrder::Ascend, SortTarget::Value, 0).0, "bac");
    assert_eq!(sorted(SortOrder::Descend, SortTarget::Value, 0).0, "cab");
    // A non-key target with order NONE sorts ascending.
    assert_eq!(sorted(SortOrder::None, SortTarget::Version, 0).0, "cab");
    // The limit applies after the sort: descending by key, the last key comes first.
    assert_eq!(sorted(SortOrder::Descend, SortTarget::Key, 1), ("c".to_string(), true));
    assert_eq!(
        sorted(SortOrder::Ascend, SortTarget::Version, 1),
        ("c".to_string(), true)
    );
    // etcd quirk: with order NONE the limit+1 fetch happens before the implied sort, so only
    // the first two keys (a, b) are sorted by version.
    assert_eq!(sorted(SortOrder::None, SortTarget::Version, 1), ("a".to_string(), true));
}

#[tokio::test]
async fn range_revision_filters_and_flags() {
    let mut harness = Harness::new().await;
    harness.put("a", "1").await; // 2
    harness.put("b", "1").await; // 3
    harness.put("c", "1").await; // 4
    harness.put("a", "2").await; // 5
    let filtered = |configure: &dyn Fn(&mut RangeRequest)| {
        let mut request = range_of("a", &[0]);
        configure(&mut request);
        let result = harness.range(&request).unwrap();
        (keys(&result.kvs).join(""), result.count, result.more)
    };
    assert_eq!(filtered(&|r| r.min_mod_revision = Revision(4)), ("ac".into(), 3, false));
    assert_eq!(filtered(&|r| r.max_mod_revision = Revision(4)), ("bc".into(), 3, false));
    assert_eq!(
        filtered(&|r| r.min_create_revision = Revision(3)),
        ("bc".into(), 3, false)
    );
    assert_eq!(
        filtered(&|r| r.max_create_revision = Revision(3)),
        ("ab".into(), 3, false)
    );
    assert_eq!(
        filtered(&|r| {
            r.min_mod_revision = Revision(3);
            r.max_mod_revision = Revision(4);
        }),
        ("bc".into(), 3, false)
    );
    // The Go concurrency.Mutex pattern: prefix, sort by CREATE, limit 1, max_create_revision.
    assert_eq!(
        filtered(&|r| {
            r.sort_target = SortTarget::Create;
            r.limit = 1;
            r.max_create_revision = Revision(4);
        }),
        ("a".into(), 3, true)
    );

    let mut request = range_of("a", &[0]);
    request.keys_only = true;
    let result = harness.range(&request).unwrap();
    assert!(result.kvs.iter().all(|kv| kv.value.is_empty()));
    assert_eq!(result.kvs[0].version, 2, "keys_only keeps everything but the value");

    request.keys_only = false;
    request.count_only = true;
    request.limit = 1;
    let result = harness.range(&request).unwrap();
    assert_eq!(
        (result.kvs.len(), result.count, result.more, result.revision),
        (0, 3, false, Revision(5))
    );

    assert_eq!(harness.range(&range_of("", b"")), Err(MvccError::KeyNotProvided));
}

#[tokio::test]
async fn put_flags() {
    let mut harness = Harness::new().await;
    harness.leases.insert(LeaseId(7));
    harness.leases.insert(LeaseId(8));
    let put = |key: &str, value: &str| PutRequest::new(bytes(key), bytes(value));

    let mut request = put("k", "v1");
    request.prev_kv = true;
    assert_eq!(
        harness.try_put(request.clone()).await.unwrap().prev_kv,
        None,
        "no prev_kv for a new key"
    );
    request.value = bytes("v2");
    request.lease = LeaseId(7);
    let previous = harness.try_put(request).await.unwrap().prev_kv.unwrap();
    assert_eq!((&previous.value[..], previous.version), (&b"v1"[..], 1));
    assert_eq!(harness.store.keys_for_lease(LeaseId(7)), vec![bytes("k")]);

    // ignore_value keeps the value (and a put without lease detaches).
    let mut request = put("k", "");
    request.ignore_value = true;
    harness.try_put(request).await.unwrap();
    let kv = harness.get("k").unwrap();
    assert_eq!((&kv.value[..], kv.lease, kv.version), (&b"v2"[..], LeaseId::NONE, 3));
    assert!(harness.store.keys_for_lease(LeaseId(7)).is_empty());

    // ignore_lease keeps the lease.
    let mut request = put("k", "v4");
    request.lease = LeaseId(8);
    harness.try_put(request).await.unwrap();
    let mut request = put("k", "v5");
    request.ignore_lease = true;
    harness.try_put(request).await.unwrap();
    let kv = harness.get("k").unwrap();
    assert_eq!((&kv.value[..], kv.lease), (&b"v5"[..], LeaseId(8)));
    assert_eq!(harness.store.keys_for_lease(LeaseId(8)), vec![bytes("k")]);

    let revision = harness.revision();
    let mut request = put("missing", "");
    request.ignore_value = true;
    assert_eq!(harness.try_put(request.clone()).await, Err(MvccError::KeyNotFound));
    request.ignore_value = false;
    request.ignore_lease = true;
    assert_eq!(harness.try_put(request).await, Err(MvccError::KeyNotFound));
    let mut request = put("k", "x");
    request.ignore_value = true;
    assert_eq!(harness.try_put(request).await, Err(MvccError::ValueProvided));
    let mut request = put("k", "");
    request.ignore_lease = true;
    request.lease = LeaseId(7);
    assert_eq!(harness.try_put(request).await, Err(MvccError::LeaseProvided));
    let mut request = put("k", "x");
    request.lease = LeaseId(99);
    assert_eq!(harness.try_put(request).await, Err(MvccError::LeaseNotFound));
    // The lease is checked before the key (etcd's order outside a txn).
    let mut request = put("missing", "");
    request.ignore_value = true;
    request.lease = LeaseId(99);
    assert_eq!(harness.try_put(request).await, Err(MvccError::LeaseNotFound));
    assert_eq!(harness.try_put(put("", "x")).await, Err(MvccError::KeyNotProvided));
    assert_eq!(harness.revision(), revision, "failed puts create no revision");
}

#[tokio::test]
async fn delete_range_counts_and_prev_kvs() {
    let mut harness = Harness::new().await;
    for key in ["a", "b", "c"] {
        harness.put(key, key).await;
    }
    let mut request = DeleteRangeRequest::new(bytes("a"), bytes("c"));
    request.prev_kv = true;
    let result = harness.try_delete(request).await.unwrap();
    assert_eq!(
        (result.revision, result.deleted, keys(&result.prev_kvs)),
        (Revision(5), 2, vec!["a".into(), "b".into()])
    );
    let result = harness.delete("a", "\0").await;
    assert_eq!(
        (result.deleted, result.prev_kvs.len()),
        (1, 0),
        "prev_kvs only on request"
    );
    assert_eq!(
        harness
            .try_delete(DeleteRangeRequest::new(Bytes::new(), Bytes::new()))
            .await,
        Err(MvccError::KeyNotProvided)
    );
}

#[test]
fn error_texts_are_etcds() {
    let expected = [
        (
            MvccError::Compacted,
            "etcdserver: mvcc: required revision has been compacted",
        ),
        (
            MvccError::FutureRevision,
            "etcdserver: mvcc: required revision is a future revision",
        ),
        (MvccError::KeyNotProvided, "etcdserver: key is not provided"),
        (MvccError::KeyNotFound, "etcdserver: key not found"),
        (MvccError::ValueProvided, "etcdserver: value is provided"),
        (MvccError::LeaseProvided, "etcdserver: lease is provided"),
        (
            MvccError::TooManyOperations,
            "etcdserver: too many operations in txn request",
        ),
        (
            MvccError::DuplicateKey,
            "etcdserver: duplicate key given in txn request",
        ),
        (MvccError::LeaseNotFound, "etcdserver: requested lease not found"),
        (MvccError::WatcherRangeEmpty, "mvcc: watcher range is empty"),
    ];
    for (error, text) in expected {
        assert_eq!(error.to_string(), text);
    }
}
