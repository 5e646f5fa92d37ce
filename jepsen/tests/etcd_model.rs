//! Proves M-etcd gives the right verdict on small hand-written histories: stale reads,
//! revisions going backwards, lost writes, txn atomicity and compare-and-set, deletes,
//! versions, prev_kv, and indeterminate writes that may or may not have happened.

use braid_jepsen::{check, CheckOptions, EtcdModel, History, Operation, Status, Verdict};
use serde_json::{json, Value};

fn completed(process: u64, op: &str, input: Value, output: Value, call_ns: u64, return_ns: u64) -> Operation {
    Operation {
        process,
        op: op.into(),
        input,
        output: Some(output),
        call_ns,
        return_ns: Some(return_ns),
        status: Status::Ok,
    }
}

fn indeterminate(process: u64, op: &str, input: Value, call_ns: u64) -> Operation {
    Operation {
        process,
        op: op.into(),
        input,
        output: None,
        call_ns,
        return_ns: None,
        status: Status::Info,
    }
}

fn put(process: u64, key: &str, value: &str, revision: i64, call_ns: u64, return_ns: u64) -> Operation {
    completed(
        process,
        "put",
        json!({ "key": key, "value": value }),
        json!({ "revision": revision }),
        call_ns,
        return_ns,
    )
}

/// (key, value, create_revision, mod_revision, version)
type Kv<'a> = (&'a str, &'a str, i64, i64, i64);

fn kvs(items: &[Kv<'_>]) -> Value {
    Value::Array(
        items
            .iter()
            .map(|(key, value, create, modified, version)| {
                json!({ "key": key, "value": value, "create_revision": create, "mod_revision": modified, "version": version })
            })
            .collect(),
    )
}

fn get(process: u64, key: &str, found: &[Kv<'_>], revision: i64, call_ns: u64, return_ns: u64) -> Operation {
    completed(
        process,
        "get",
        json!({ "key": key }),
        json!({ "revision": revision, "kvs": kvs(found) }),
        call_ns,
        return_ns,
    )
}

fn get_all(process: u64, found: &[Kv<'_>], revision: i64, call_ns: u64, return_ns: u64) -> Operation {
    completed(
        process,
        "get",
        json!({ "key": "", "range_end": "\u{0}" }),
        json!({ "revision": revision, "kvs": kvs(found), "count": found.len() }),
        call_ns,
        return_ns,
    )
}

fn delete(process: u64, key: &str, deleted: i64, revision: i64, call_ns: u64, return_ns: u64) -> Operation {
    completed(
        process,
        "delete",
        json!({ "key": key }),
        json!({ "revision": revision, "deleted": deleted }),
        call_ns,
        return_ns,
    )
}

/// txn(if key.mod_revision == expected then put(key, value)), the create-or-update idiom.
fn txn_cas(
    process: u64,
    key: &str,
    expected: i64,
    value: &str,
    succeeded: bool,
    revision: i64,
    (call_ns, return_ns): (u64, u64),
) -> Operation {
    completed(
        process,
        "txn",
        json!({
            "compare": [{ "key": key, "target": "mod_revision", "mod_revision": expected }],
            "success": [{ "put": { "key": key, "value": value } }],
        }),
        json!({ "revision": revision, "succeeded": succeeded }),
        call_ns,
        return_ns,
    )
}

fn verdict(operations: Vec<Operation>) -> Verdict {
    let history = History { operations };
    history.validate().expect("hand-written histories are well formed");
    check(&EtcdModel::new(), &history, &CheckOptions::default())
        .expect("check")
        .verdict
}

#[test]
fn put_then_get_reports_revisions() {
    assert!(verdict(vec![
        get(0, "a", &[], 1, 0, 5),
        put(0, "a", "1", 2, 10, 20),
        get(1, "a", &[("a", "1", 2, 2, 1)], 2, 30, 40),
    ])
    .is_ok());
    // The first put of a fresh store makes revision 2, not 1 or 3.
    assert!(verdict(vec![put(0, "a", "1", 3, 10, 20)]).is_illegal());
}

#[test]
fn stale_read_is_illegal() {
    let Verdict::Illegal(report) = verdict(vec![
        put(0, "a", "1", 2, 0, 10),
        put(0, "a", "2", 3, 20, 30),
        get(1, "a", &[("a", "1", 2, 2, 1)], 2, 40, 50),
    ]) else {
        panic!("stale read accepted")
    };
    assert_eq!(report.unplaceable.id, 2);
    assert_eq!(report.partition, "whole history");
}

#[test]
fn revision_going_backwards_is_illegal() {
    // Same data, but the second read's header revision is lower than the first's.
    assert!(verdict(vec![
        put(0, "a", "1", 2, 0, 10),
        put(0, "b", "1", 3, 20, 30),
        get(1, "a", &[("a", "1", 2, 2, 1)], 3, 40, 50),
        get(1, "a", &[("a", "1", 2, 2, 1)], 2, 60, 70),
    ])
    .is_illegal());
    // Two concurrent puts cannot both get one revision.
    assert!(verdict(vec![put(0, "a", "1", 2, 0, 10), put(1, "b", "1", 2, 0, 10)]).is_illegal());
    assert!(verdict(vec![put(0, "a", "1", 3, 0, 10), put(1, "b", "1", 2, 0, 10)]).is_ok());
}

#[test]
fn lost_write_is_illegal() {
    assert!(verdict(vec![put(0, "a", "1", 2, 0, 10), get(1, "a", &[], 2, 20, 30)]).is_illegal());
    assert!(verdict(vec![put(0, "a", "1", 2, 0, 10), get(1, "a", &[], 1, 20, 30)]).is_illegal());
}

#[test]
fn txn_writes_are_atomic() {
    let both = completed(
        0,
        "txn",
        json!({ "success": [{ "put": { "key": "a", "value": "1" } }, { "put": { "key": "b", "value": "1" } }] }),
        json!({ "revision": 2, "succeeded": true }),
        0,
        100,
    );
    // A reader during the txn sees all of it or none of it.
    assert!(verdict(vec![
        both.clone(),
        get_all(1, &[("a", "1", 2, 2, 1), ("b", "1", 2, 2, 1)], 2, 10, 20)
    ])
    .is_ok());
    assert!(verdict(vec![both.clone(), get_all(1, &[], 1, 10, 20)]).is_ok());
    assert!(verdict(vec![both.clone(), get_all(1, &[("a", "1", 2, 2, 1)], 2, 10, 20)]).is_illegal());
    // Half applied at a later revision: also impossible.
    assert!(verdict(vec![
        both,
        get_all(1, &[("a", "1", 2, 2, 1), ("b", "1", 3, 3, 1)], 3, 10, 20)
    ])
    .is_illegal());
}

#[test]
fn txn_compare_and_set_admits_one_winner() {
    // Create-if-absent (mod_revision == 0) raced by two clients: exactly one may succeed.
    assert!(verdict(vec![
        txn_cas(0, "lock", 0, "p0", true, 2, (0, 10)),
        txn_cas(1, "lock", 0, "p1", false, 2, (0, 10)),
    ])
    .is_ok());
    assert!(verdict(vec![
        txn_cas(0, "lock", 0, "p0", true, 2, (0, 10)),
        txn_cas(1, "lock", 0, "p1", true, 3, (0, 10)),
    ])
    .is_illegal());
    // Compare on the value of a missing key is false (as in etcd).
    let on_value = completed(
        0,
        "txn",
        json!({
            "compare": [{ "key": "a", "target": "value", "value": "", "result": "equal" }],
            "success": [{ "put": { "key": "a", "value": "1" } }],
            "failure": [{ "get": { "key": "a" } }],
        }),
        json!({ "revision": 1, "succeeded": false, "responses": [{ "get": { "kvs": [] } }] }),
        0,
        10,
    );
    assert!(verdict(vec![on_value]).is_ok());
}

#[test]
fn deletes_bump_the_revision_only_when_they_remove_something() {
    assert!(verdict(vec![
        put(0, "a", "1", 2, 0, 10),
        delete(0, "a", 1, 3, 20, 30),
        get(0, "a", &[], 3, 40, 50),
        delete(0, "a", 0, 3, 60, 70),
    ])
    .is_ok());
    assert!(verdict(vec![delete(0, "a", 0, 2, 0, 10)]).is_illegal());
    assert!(verdict(vec![put(0, "a", "1", 2, 0, 10), delete(0, "a", 0, 2, 20, 30)]).is_illegal());
}

#[test]
fn versions_and_create_revisions_are_tracked() {
    let history = |version: i64, create: i64| {
        vec![
            put(0, "a", "1", 2, 0, 10),
            put(0, "a", "2", 3, 20, 30),
            get(0, "a", &[("a", "2", create, 3, version)], 3, 40, 50),
        ]
    };
    assert!(verdict(history(2, 2)).is_ok());
    assert!(verdict(history(1, 2)).is_illegal());
    assert!(verdict(history(2, 3)).is_illegal());
    // Deleting forgets the key: a new put starts over at version 1.
    assert!(verdict(vec![
        put(0, "a", "1", 2, 0, 10),
        delete(0, "a", 1, 3, 20, 30),
        put(0, "a", "2", 4, 40, 50),
        get(0, "a", &[("a", "2", 4, 4, 1)], 4, 60, 70),
    ])
    .is_ok());
}

#[test]
fn prev_kv_must_be_the_overwritten_value() {
    let with_previous = |previous: Value| {
        vec![
            put(0, "a", "1", 2, 0, 10),
            completed(
                0,
                "put",
                json!({ "key": "a", "value": "2", "prev_kv": true }),
                json!({ "revision": 3, "prev_kv": previous }),
                20,
                30,
            ),
        ]
    };
    let right = json!({ "key": "a", "value": "1", "create_revision": 2, "mod_revision": 2, "version": 1 });
    let wrong = json!({ "key": "a", "value": "0", "create_revision": 2, "mod_revision": 2, "version": 1 });
    assert!(verdict(with_previous(right)).is_ok());
    assert!(verdict(with_previous(wrong)).is_illegal());
    assert!(verdict(with_previous(Value::Null)).is_illegal());
}

#[test]
fn indeterminate_write_may_or_may_not_have_happened() {
    let maybe = indeterminate(9, "put", json!({ "key": "a", "value": "1" }), 0);
    // Not applied (yet), then applied: both fine, in that order.
    assert!(verdict(vec![
        maybe.clone(),
        get(1, "a", &[], 1, 10, 20),
        get(1, "a", &[("a", "1", 2, 2, 1)], 2, 30, 40)
    ])
    .is_ok());
    // Once seen it cannot disappear.
    assert!(verdict(vec![
        maybe.clone(),
        get(1, "a", &[("a", "1", 2, 2, 1)], 2, 10, 20),
        get(1, "a", &[], 1, 30, 40)
    ])
    .is_illegal());
    // A later put's revision tells whether it had happened: 2 (no) or 3 (yes) but never 4.
    assert!(verdict(vec![maybe.clone(), put(1, "b", "1", 2, 10, 20)]).is_ok());
    assert!(verdict(vec![maybe.clone(), put(1, "b", "1", 3, 10, 20)]).is_ok());
    assert!(verdict(vec![maybe.clone(), put(1, "b", "1", 4, 10, 20)]).is_illegal());
    // If it happened before b's put (revision 3), a read must show it at revision 2.
    assert!(verdict(vec![
        maybe.clone(),
        put(1, "b", "1", 3, 10, 20),
        get_all(1, &[("b", "1", 3, 3, 1)], 3, 30, 40)
    ])
    .is_illegal());
    assert!(verdict(vec![
        maybe,
        put(1, "b", "1", 3, 10, 20),
        get_all(1, &[("a", "1", 2, 2, 1), ("b", "1", 3, 3, 1)], 3, 30, 40)
    ])
    .is_ok());
}

#[test]
fn failed_operations_are_dropped_and_bad_shapes_are_errors() {
    let mut failed = put(0, "a", "1", 99, 0, 10);
    failed.status = Status::Fail;
    let history = History {
        operations: vec![failed, get(1, "a", &[], 1, 20, 30)],
    };
    let result = check(&EtcdModel::new(), &history, &CheckOptions::default()).expect("check");
    assert!(result.is_ok());
    assert_eq!(result.statistics.dropped, 1);

    let no_revision = completed(0, "put", json!({ "key": "a", "value": "1" }), json!({}), 0, 10);
    let history = History {
        operations: vec![no_revision],
    };
    assert!(check(&EtcdModel::new(), &history, &CheckOptions::default()).is_err());
}
