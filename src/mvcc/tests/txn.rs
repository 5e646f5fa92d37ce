//! Proves Txn follows etcd 3.5: compares (targets, results, missing keys, ranges), branch
//! execution with one revision, nested txns, and every validation rule in etcd's order.

use bytes::Bytes;

use super::{bytes, Harness};
use crate::mvcc::{
    validate_txn, Compare, CompareResult, CompareTarget, DeleteRangeRequest, LeaseId, MvccError, PutRequest,
    RangeRequest, RequestOp, ResponseOp, Revision, TxnRequest,
};

fn compare(key: &str, target: CompareTarget, result: CompareResult) -> Compare {
    Compare {
        key: bytes(key),
        range_end: Bytes::new(),
        target,
        result,
    }
}

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp::Put(PutRequest::new(bytes(key), bytes(value)))
}

fn delete_op(key: &str, range_end: &str) -> RequestOp {
    RequestOp::DeleteRange(DeleteRangeRequest::new(bytes(key), bytes(range_end)))
}

fn range_op(key: &str, range_end: &str) -> RequestOp {
    RequestOp::Range(RangeRequest::new(bytes(key), bytes(range_end)))
}

fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare,
        success,
        failure,
    }
}

fn nested(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
    RequestOp::Txn(txn(compare, success, failure))
}

async fn succeeded(harness: &mut Harness, compare: Compare) -> bool {
    harness.txn(txn(vec![compare], vec![], vec![])).await.unwrap().succeeded
}

#[tokio::test]
async fn compare_targets_and_results() {
    let mut harness = Harness::new().await;
    harness.leases.insert(LeaseId(5));
    harness.put("k", "b").await; // 2
    let mut request = PutRequest::new(bytes("k"), bytes("b"));
    request.lease = LeaseId(5);
    harness.try_put(request).await.unwrap(); // 3: version 2, create 2, mod 3, lease 5
    use CompareResult::{Equal, Greater, Less, NotEqual};
    let cases = [
        (CompareTarget::Version(2), [true, false, false, false]),
        (CompareTarget::Version(1), [false, true, false, true]),
        (CompareTarget::CreateRevision(Revision(3)), [false, false, true, true]),
        (CompareTarget::ModRevision(Revision(3)), [true, false, false, false]),
        (CompareTarget::Value(bytes("a")), [false, true, false, true]),
        (CompareTarget::Value(bytes("c")), [false, false, true, true]),
        (CompareTarget::Value(bytes("b")), [true, false, false, false]),
        (CompareTarget::Lease(LeaseId(5)), [true, false, false, false]),
        (CompareTarget::Lease(LeaseId(0)), [false, true, false, true]),
    ];
    for (target, expected) in cases {
        for (result, expected) in [Equal, Greater, Less, NotEqual].into_iter().zip(expected) {
            let outcome = succeeded(&mut harness, compare("k", target.clone(), result)).await;
            assert_eq!(outcome, expected, "{target:?} {result:?}");
        }
    }
    assert_eq!(harness.revision(), 3, "read-only txns create no revision");
}

#[tokio::test]
async fn compares_on_missing_keys_and_ranges() {
    let mut harness = Harness::new().await;
    // A missing key compares as the zero key-value...
    assert!(
        succeeded(
            &mut harness,
            compare("nope", CompareTarget::Version(0), CompareResult::Equal)
        )
        .await
    );
    assert!(
        succeeded(
            &mut harness,
            compare("nope", CompareTarget::CreateRevision(Revision(0)), CompareResult::Equal)
        )
        .await
    );
    assert!(
        succeeded(
            &mut harness,
            compare("nope", CompareTarget::Lease(LeaseId(0)), CompareResult::Equal)
        )
        .await
    );
    // ...except that a VALUE compare on a missing key is always false.
    assert!(
        !succeeded(
            &mut harness,
            compare("nope", CompareTarget::Value(Bytes::new()), CompareResult::Equal)
        )
        .await
    );
    assert!(
        !succeeded(
            &mut harness,
            compare("nope", CompareTarget::Value(bytes("x")), CompareResult::NotEqual)
        )
        .await
    );

    harness.put("p/a", "1").await;
    harness.put("p/b", "2").await;
    let mut over_range = compare("p/", CompareTarget::Version(1), CompareResult::Equal);
    over_range.range_end = bytes("p0");
    assert!(
        succeeded(&mut harness, over_range.clone()).await,
        "every key in range satisfies"
    );
    harness.put("p/b", "3").await;
    assert!(
        !succeeded(&mut harness, over_range.clone()).await,
        "one key fails the compare"
    );
    over_range.target = CompareTarget::Value(bytes("0"));
    over_range.result = CompareResult::Greater;
    assert!(succeeded(&mut harness, over_range).await);
}

#[tokio::test]
async fn branches_run_in_order_in_one_revision() {
    let mut harness = Harness::new().await;
    harness.put("x", "0").await; // 2
    let request = txn(
        vec![compare("x", CompareTarget::Value(bytes("0")), CompareResult::Equal)],
        vec![
            put_op("a", "1"),
            put_op("b", "2"),
            range_op("a", "c"),
            delete_op("x", ""),
            range_op("x", ""),
        ],
        vec![put_op("never", "x")],
    );
    let result = harness.txn(request).await.unwrap();
    assert!(result.succeeded);
    assert_eq!(result.revision, Revision(3), "one revision for the whole txn");
    assert_eq!(harness.revision(), 3);
    let ResponseOp::Put(first_put) = &result.responses[0] else {
        panic!()
    };
    assert_eq!(first_put.revision, Revision(3));
    let ResponseOp::Range(range) = &result.responses[2] else {
        panic!()
    };
    assert_eq!(range.count, 2, "later ops see earlier writes");
    assert!(range.kvs.iter().all(|kv| kv.mod_revision == Revision(3)));
    assert_eq!(range.revision, Revision(3));
    let ResponseOp::DeleteRange(delete) = &result.responses[3] else {
        panic!()
    };
    assert_eq!((delete.deleted, delete.revision), (1, Revision(3)));
    let ResponseOp::Range(after_delete) = &result.responses[4] else {
        panic!()
    };
    assert_eq!(after_delete.count, 0);
    assert_eq!(harness.get("never"), None);

    // Failure branch.
    let request = txn(
        vec![compare("x", CompareTarget::Version(0), CompareResult::Greater)],
        vec![put_op("a", "nope")],
        vec![range_op("a", ""), delete_op("missing", "")],
    );
    let result = harness.txn(request).await.unwrap();
    assert!(!result.succeeded);
    let ResponseOp::DeleteRange(delete) = &result.responses[1] else {
        panic!()
    };
    assert_eq!((delete.deleted, delete.revision), (0, Revision(3)));
    assert_eq!(
        result.revision,
        Revision(3),
        "a write txn that changed nothing creates no revision"
    );
    assert_eq!(harness.revision(), 3);

    // The Go concurrency.Mutex shape: put then range in one branch.
    let mut mutex_range = RangeRequest::new(bytes("lock/"), bytes("lock0"));
    mutex_range.sort_target = crate::mvcc::SortTarget::Create;
    mutex_range.limit = 1;
    let request = txn(
        vec![compare(
            "lock/1",
            CompareTarget::CreateRevision(Revision(0)),
            CompareResult::Equal,
        )],
        vec![put_op("lock/1", ""), RequestOp::Range(mutex_range)],
        vec![],
    );
    let result = harness.txn(request).await.unwrap();
    let ResponseOp::Range(owner) = &result.responses[1] else {
        panic!()
    };
    assert_eq!(
        (&owner.kvs[0].key[..], owner.kvs[0].create_revision),
        (&b"lock/1"[..], Revision(4))
    );
}

#[tokio::test]
async fn nested_txns_compare_against_the_state_before_the_txn() {
    let mut harness = Harness::new().await;
    harness.put("k", "old").await; // 2
    let request = txn(
        vec![],
        vec![
            put_op("k", "new"),
            nested(
                vec![compare("k", CompareTarget::Value(bytes("old")), CompareResult::Equal)],
                vec![range_op("k", "")],
                vec![],
            ),
        ],
        vec![],
    );
    let result = harness.txn(request).await.unwrap();
    let ResponseOp::Txn(inner) = &result.responses[1] else {
        panic!()
    };
    assert!(inner.succeeded, "the nested compare saw the pre-txn value");
    assert_eq!(inner.revision, Revision(0), "etcd leaves nested txn headers empty");
    let ResponseOp::Range(range) = &inner.responses[0] else {
        panic!()
    };
    assert_eq!(
        &range.kvs[0].value[..],
        b"new",
        "but the nested ops see the outer writes"
    );
    assert_eq!(result.revision, Revision(3));
}

#[tokio::test]
async fn apply_time_checks_fail_the_whole_txn() {
    let mut harness = Harness::new().await;
    harness.put("k", "v").await; // 2
    harness.put("k", "w").await; // 3
    let mut ignore = PutRequest::new(bytes("missing"), Bytes::new());
    ignore.ignore_value = true;
    let request = txn(vec![], vec![put_op("a", "1"), RequestOp::Put(ignore)], vec![]);
    assert_eq!(harness.txn(request).await, Err(MvccError::KeyNotFound));

    let mut leased = PutRequest::new(bytes("b"), Bytes::new());
    leased.lease = LeaseId(42);
    let request = txn(
        vec![],
        vec![put_op("a", "1"), nested(vec![], vec![RequestOp::Put(leased)], vec![])],
        vec![],
    );
    assert_eq!(harness.txn(request).await, Err(MvccError::LeaseNotFound));

    let at = |revision: i64| {
        let mut range = RangeRequest::new(bytes("k"), Bytes::new());
        range.revision = Revision(revision);
        txn(vec![], vec![put_op("a", "1"), RequestOp::Range(range)], vec![])
    };
    // The txn's own revision counts as future: ranges are checked against the revision before it.
    assert_eq!(harness.txn(at(4)).await, Err(MvccError::FutureRevision));
    harness.compact(3).await.unwrap();
    assert_eq!(harness.txn(at(2)).await, Err(MvccError::Compacted));
    // etcd quirk: a negative revision is "below the compact revision" inside a txn.
    assert_eq!(harness.txn(at(-1)).await, Err(MvccError::Compacted));
    assert_eq!(harness.get("a"), None);
    assert_eq!(harness.revision(), 3, "failed txns write nothing");

    let result = harness.txn(at(3)).await.unwrap();
    let ResponseOp::Range(range) = &result.responses[1] else {
        panic!()
    };
    assert_eq!(&range.kvs[0].value[..], b"w");
}

#[tokio::test]
async fn from_key_delete_then_ignore_value_is_rejected_up_front() {
    // etcd 3.5 accepts this txn at the API (its duplicate check skips from-key deletes) and then
    // panics while applying it; braid rejects it before writing anything.
    let mut harness = Harness::new().await;
    harness.put("b", "v").await;
    let mut ignore = PutRequest::new(bytes("b"), Bytes::new());
    ignore.ignore_value = true;
    let request = txn(vec![], vec![delete_op("a", "\0"), RequestOp::Put(ignore)], vec![]);
    assert_eq!(validate_txn(&request, 128), Ok(()));
    assert_eq!(harness.txn(request).await, Err(MvccError::KeyNotFound));
    assert_eq!(harness.revision(), 2);

    // Without ignore_value the same shape is a valid delete-then-recreate in one revision.
    let request = txn(vec![], vec![delete_op("a", "\0"), put_op("b", "new")], vec![]);
    harness.txn(request).await.unwrap();
    let kv = harness.get("b").unwrap();
    assert_eq!(
        (kv.create_revision, kv.version, &kv.value[..]),
        (Revision(3), 1, &b"new"[..])
    );
}

#[test]
fn validation_rules() {
    let ops = |count: usize| {
        (0..count)
            .map(|index| range_op(&format!("k{index}"), ""))
            .collect::<Vec<_>>()
    };
    assert_eq!(validate_txn(&txn(vec![], ops(128), vec![]), 128), Ok(()));
    assert_eq!(
        validate_txn(&txn(vec![], ops(129), vec![]), 128),
        Err(MvccError::TooManyOperations)
    );
    let compares = (0..129)
        .map(|_| compare("k", CompareTarget::Version(0), CompareResult::Equal))
        .collect();
    assert_eq!(
        validate_txn(&txn(compares, vec![], vec![]), 128),
        Err(MvccError::TooManyOperations)
    );
    // Nested txns get what is left of the budget: 100 used, 29 left.
    let inner = nested(vec![], ops(29), vec![]);
    let mut outer = ops(99);
    outer.push(inner);
    assert_eq!(
        validate_txn(&txn(vec![], outer.clone(), vec![]), 128),
        Err(MvccError::TooManyOperations)
    );
    outer.pop();
    outer.push(nested(vec![], ops(28), vec![]));
    assert_eq!(validate_txn(&txn(vec![], outer, vec![]), 128), Ok(()));

    let empty_compare = compare("", CompareTarget::Version(0), CompareResult::Equal);
    assert_eq!(
        validate_txn(&txn(vec![empty_compare], vec![], vec![]), 128),
        Err(MvccError::KeyNotProvided)
    );
    assert_eq!(
        validate_txn(&txn(vec![], vec![put_op("", "v")], vec![]), 128),
        Err(MvccError::KeyNotProvided)
    );
    assert_eq!(
        validate_txn(&txn(vec![], vec![], vec![RequestOp::Empty]), 128),
        Err(MvccError::KeyNotFound)
    );
    let mut bad_put = PutRequest::new(bytes("k"), bytes("v"));
    bad_put.ignore_value = true;
    let deep = nested(
        vec![],
        vec![nested(vec![], vec![], vec![RequestOp::Put(bad_put)])],
        vec![],
    );
    assert_eq!(
        validate_txn(&txn(vec![], vec![deep], vec![]), 128),
        Err(MvccError::ValueProvided)
    );
    // Shape errors come before duplicate keys.
    let both = txn(
        vec![],
        vec![put_op("k", "1"), put_op("k", "2"), range_op("", "")],
        vec![],
    );
    assert_eq!(validate_txn(&both, 128), Err(MvccError::KeyNotProvided));
}

#[test]
fn duplicate_key_rules() {
    let check = |success: Vec<RequestOp>| validate_txn(&txn(vec![], success, vec![]), 128);
    let duplicate = Err(MvccError::DuplicateKey);
    assert_eq!(check(vec![put_op("k", "1"), put_op("k", "2")]), duplicate);
    assert_eq!(check(vec![put_op("k", "1"), delete_op("k", "")]), duplicate);
    assert_eq!(
        check(vec![delete_op("a", "z"), put_op("k", "1")]),
        duplicate,
        "put covered by a range delete"
    );
    assert_eq!(
        check(vec![put_op("z", "1"), delete_op("a", "z")]),
        Ok(()),
        "range end is exclusive"
    );
    assert_eq!(
        check(vec![delete_op("a", "m"), delete_op("k", "z"), delete_op("k", "")]),
        Ok(()),
        "deletes may overlap"
    );
    assert_eq!(
        check(vec![delete_op("a", "\0"), put_op("k", "1")]),
        Ok(()),
        "from-key deletes never conflict (etcd)"
    );
    assert_eq!(
        check(vec![delete_op("z", "a"), put_op("k", "1")]),
        Ok(()),
        "an empty delete range covers nothing"
    );
    // The same key in both branches of a nested txn is fine, not twice in one branch.
    assert_eq!(
        check(vec![nested(vec![], vec![put_op("k", "1")], vec![put_op("k", "2")])]),
        Ok(())
    );
    assert_eq!(
        check(vec![nested(vec![], vec![put_op("k", "1"), put_op("k", "2")], vec![])]),
        duplicate
    );
    // A nested put conflicts with this level's puts and deletes.
    assert_eq!(
        check(vec![put_op("k", "1"), nested(vec![], vec![put_op("k", "2")], vec![])]),
        duplicate
    );
    assert_eq!(
        check(vec![delete_op("k", ""), nested(vec![], vec![], vec![put_op("k", "2")])]),
        duplicate
    );
    assert_eq!(
        check(vec![nested(vec![], vec![delete_op("k", "")], vec![]), put_op("k", "1")]),
        duplicate
    );
    // Two nested txns: an earlier one's deletes cover a later one's puts...
    let deleting = nested(vec![], vec![delete_op("k", "")], vec![]);
    let putting = nested(vec![], vec![put_op("k", "1")], vec![]);
    assert_eq!(check(vec![deleting.clone(), putting.clone()]), duplicate);
    // ...but not the other way round (etcd's order of checks).
    assert_eq!(check(vec![putting.clone(), deleting]), Ok(()));
    assert_eq!(check(vec![putting.clone(), putting]), duplicate);
    // Branches of the top-level txn are checked separately.
    let request = txn(vec![], vec![put_op("k", "1")], vec![put_op("k", "2")]);
    assert_eq!(validate_txn(&request, 128), Ok(()));
}

#[tokio::test]
async fn read_only_txn_is_served_without_apply() {
    let mut harness = Harness::new().await;
    harness.put("k", "v").await;
    let request = txn(
        vec![compare("k", CompareTarget::Version(1), CompareResult::Equal)],
        vec![range_op("k", ""), nested(vec![], vec![range_op("a", "\0")], vec![])],
        vec![],
    );
    assert!(crate::mvcc::is_read_only(&request));
    let result = harness.store.read_txn(&request).unwrap();
    assert!(result.succeeded);
    assert_eq!(result.revision, Revision(2));
    let ResponseOp::Txn(inner) = &result.responses[1] else {
        panic!()
    };
    let ResponseOp::Range(range) = &inner.responses[0] else {
        panic!()
    };
    assert_eq!(range.count, 1);
    assert_eq!(
        harness.store.read_txn(&txn(vec![], vec![RequestOp::Empty], vec![])),
        Err(MvccError::KeyNotFound.into())
    );
}
