//! Proves M-reg gives the right verdict on small hand-written histories: stale reads, lost
//! writes, cas outcomes, indeterminate writes, partitions, revisions and the failure report.

use braid_jepsen::{check, CheckOptions, History, Operation, RegisterModel, Status, Verdict};
use serde_json::json;

fn read(process: u64, key: &str, value: Option<&str>, call_ns: u64, return_ns: u64) -> Operation {
    Operation {
        process,
        op: "read".into(),
        input: json!({ "key": key }),
        output: Some(json!({ "value": value })),
        call_ns,
        return_ns: Some(return_ns),
        status: Status::Ok,
    }
}

fn read_at(process: u64, key: &str, value: &str, mod_revision: i64, call_ns: u64, return_ns: u64) -> Operation {
    Operation {
        output: Some(json!({ "value": value, "mod_revision": mod_revision })),
        ..read(process, key, Some(value), call_ns, return_ns)
    }
}

fn write(process: u64, key: &str, value: &str, call_ns: u64, return_ns: u64) -> Operation {
    Operation {
        process,
        op: "write".into(),
        input: json!({ "key": key, "value": value }),
        output: Some(json!({})),
        call_ns,
        return_ns: Some(return_ns),
        status: Status::Ok,
    }
}

fn write_at(process: u64, key: &str, value: &str, mod_revision: i64, call_ns: u64, return_ns: u64) -> Operation {
    Operation {
        output: Some(json!({ "mod_revision": mod_revision })),
        ..write(process, key, value, call_ns, return_ns)
    }
}

fn write_indeterminate(process: u64, key: &str, value: &str, call_ns: u64) -> Operation {
    Operation {
        output: None,
        return_ns: None,
        status: Status::Info,
        ..write(process, key, value, call_ns, call_ns)
    }
}

fn cas(process: u64, key: &str, from: &str, to: &str, succeeded: bool, call_ns: u64, return_ns: u64) -> Operation {
    Operation {
        process,
        op: "cas".into(),
        input: json!({ "key": key, "from": from, "to": to }),
        output: succeeded.then(|| json!({})),
        call_ns,
        return_ns: Some(return_ns),
        status: if succeeded { Status::Ok } else { Status::Fail },
    }
}

fn verdict_with(model: RegisterModel, operations: Vec<Operation>) -> Verdict {
    let history = History { operations };
    history.validate().expect("hand-written histories are well formed");
    check(&model, &history, &CheckOptions::default())
        .expect("check")
        .verdict
}

fn verdict(operations: Vec<Operation>) -> Verdict {
    verdict_with(RegisterModel::new(), operations)
}

#[test]
fn sequential_read_sees_the_last_write() {
    assert!(verdict(vec![write(0, "x", "1", 0, 10), read(1, "x", Some("1"), 20, 30)]).is_ok());
    assert!(verdict(vec![read(1, "x", None, 0, 5), write(0, "x", "1", 10, 20)]).is_ok());
}

#[test]
fn stale_read_is_illegal() {
    let operations = vec![
        write(0, "x", "1", 0, 10),
        write(0, "x", "2", 20, 30),
        read(1, "x", Some("1"), 40, 50),
    ];
    let Verdict::Illegal(report) = verdict(operations) else {
        panic!("stale read accepted")
    };
    assert_eq!(
        report.unplaceable.id, 2,
        "the stale read is the operation that cannot be placed"
    );
    assert_eq!(
        report
            .linearized
            .iter()
            .map(|operation| operation.id)
            .collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(report.state, "2");
    assert!(!report.pending[0].legal_in_state);
    let text = report.to_string();
    assert!(
        text.contains("cannot place before its return: #2 p1 read(x) = 1"),
        "{text}"
    );
    assert!(text.contains("<- cannot be placed"), "{text}");
}

#[test]
fn lost_write_is_illegal() {
    assert!(verdict(vec![write(0, "x", "1", 0, 10), read(1, "x", None, 20, 30)]).is_illegal());
}

#[test]
fn concurrent_reads_may_see_before_or_after_but_not_go_back() {
    let write_long = write(0, "x", "1", 0, 100);
    assert!(verdict(vec![
        write_long.clone(),
        read(1, "x", None, 10, 20),
        read(2, "x", Some("1"), 30, 40)
    ])
    .is_ok());
    assert!(verdict(vec![
        write_long,
        read(1, "x", Some("1"), 10, 20),
        read(2, "x", None, 30, 40)
    ])
    .is_illegal());
}

#[test]
fn operations_touching_at_one_instant_are_concurrent() {
    assert!(verdict(vec![write(0, "x", "1", 0, 10), read(1, "x", None, 10, 20)]).is_ok());
    assert!(verdict(vec![write(0, "x", "1", 0, 10), read(1, "x", None, 11, 20)]).is_illegal());
}

#[test]
fn failed_cas_observed_a_different_value() {
    assert!(verdict(vec![write(0, "x", "1", 0, 10), cas(1, "x", "1", "2", false, 20, 30)]).is_illegal());
    assert!(verdict(vec![write(0, "x", "1", 0, 10), cas(1, "x", "3", "2", false, 20, 30)]).is_ok());
    assert!(verdict(vec![
        write(0, "x", "1", 0, 10),
        cas(1, "x", "1", "2", true, 20, 30),
        read(2, "x", Some("2"), 40, 50),
    ])
    .is_ok());
    // Two cas from the same value cannot both succeed.
    assert!(verdict(vec![
        write(0, "x", "1", 0, 10),
        cas(1, "x", "1", "2", true, 20, 30),
        cas(2, "x", "1", "3", true, 20, 30),
    ])
    .is_illegal());
}

#[test]
fn indeterminate_write_may_or_may_not_have_happened() {
    // Never observed: fine. Observed late: fine. Observed, then gone: illegal.
    assert!(verdict(vec![write_indeterminate(0, "x", "1", 0), read(1, "x", None, 100, 110)]).is_ok());
    assert!(verdict(vec![
        write_indeterminate(0, "x", "1", 0),
        read(1, "x", None, 100, 110),
        read(1, "x", Some("1"), 200, 210),
    ])
    .is_ok());
    assert!(verdict(vec![
        write_indeterminate(0, "x", "1", 0),
        read(1, "x", Some("1"), 100, 110),
        read(1, "x", None, 200, 210),
    ])
    .is_illegal());
    // It cannot take effect before it was called.
    assert!(verdict(vec![
        read(1, "x", Some("1"), 0, 10),
        write_indeterminate(0, "x", "1", 20)
    ])
    .is_illegal());
}

#[test]
fn failed_and_unanswered_reads_are_dropped() {
    let mut failed_read = read(1, "x", Some("garbage"), 20, 30);
    failed_read.status = Status::Fail;
    let mut open_read = read(2, "x", Some("garbage"), 20, 30);
    open_read.status = Status::Info;
    open_read.return_ns = None;
    let history = History {
        operations: vec![write(0, "x", "1", 0, 10), failed_read, open_read],
    };
    let result = check(&RegisterModel::new(), &history, &CheckOptions::default()).expect("check");
    assert!(result.is_ok());
    assert_eq!(result.statistics.dropped, 2);
}

#[test]
fn keys_are_checked_independently_and_the_report_names_the_key() {
    let operations = vec![
        write(0, "a", "1", 0, 10),
        write(1, "b", "1", 0, 10),
        read(2, "a", Some("1"), 20, 30),
        read(2, "b", None, 40, 50),
    ];
    let history = History { operations };
    for threads in [1, 2] {
        let options = CheckOptions::default().with_threads(threads);
        let result = check(&RegisterModel::new(), &history, &options).expect("check");
        assert_eq!(result.statistics.partitions, 2);
        assert_eq!(result.statistics.largest_partition, 2);
        let Verdict::Illegal(report) = result.verdict else {
            panic!("lost write on b accepted")
        };
        assert_eq!(report.partition, "key \"b\"");
        assert_eq!(report.unplaceable.id, 3);
    }
}

#[test]
fn revision_aware_register_catches_revisions_going_backwards() {
    let model = RegisterModel::revision_aware();
    assert!(verdict_with(
        model,
        vec![write_at(0, "x", "1", 5, 0, 10), read_at(1, "x", "1", 5, 20, 30)]
    )
    .is_ok());
    // The read reports a revision the write did not get.
    assert!(verdict_with(
        model,
        vec![write_at(0, "x", "1", 5, 0, 10), read_at(1, "x", "1", 4, 20, 30)]
    )
    .is_illegal());
    // A later write with a lower revision.
    assert!(verdict_with(
        model,
        vec![write_at(0, "x", "1", 5, 0, 10), write_at(0, "x", "2", 4, 20, 30)]
    )
    .is_illegal());
    // Revisions only order writes when they are concurrent: either order is fine here.
    assert!(verdict_with(
        model,
        vec![write_at(0, "x", "1", 5, 0, 30), write_at(1, "x", "2", 4, 0, 30)]
    )
    .is_ok());
    // An indeterminate write took some revision above 5, so a read of it at 6 or more is fine
    // and a write after that read must be higher still.
    assert!(verdict_with(
        model,
        vec![
            write_at(0, "x", "1", 5, 0, 10),
            write_indeterminate(1, "x", "2", 20),
            read_at(2, "x", "2", 9, 30, 40),
            write_at(2, "x", "3", 10, 50, 60),
        ]
    )
    .is_ok());
    assert!(verdict_with(
        model,
        vec![
            write_at(0, "x", "1", 5, 0, 10),
            write_indeterminate(1, "x", "2", 20),
            read_at(2, "x", "2", 5, 30, 40),
        ]
    )
    .is_illegal());
    // Without revision checks the same history passes.
    assert!(verdict(vec![write_at(0, "x", "1", 5, 0, 10), read_at(1, "x", "1", 4, 20, 30)]).is_ok());
}

#[test]
fn malformed_operations_are_errors_not_verdicts() {
    let history = History {
        operations: vec![Operation {
            op: "increment".into(),
            ..write(0, "x", "1", 0, 10)
        }],
    };
    let error = check(&RegisterModel::new(), &history, &CheckOptions::default()).expect_err("unknown op");
    assert!(error.to_string().contains("increment"), "{error}");
    let history = History {
        operations: vec![Operation {
            input: json!({ "value": "1" }),
            ..write(0, "x", "1", 0, 10)
        }],
    };
    assert!(check(&RegisterModel::new(), &history, &CheckOptions::default()).is_err());
    let history = History {
        operations: vec![write(0, "x", "1", 0, 10)],
    };
    assert!(check(&RegisterModel::revision_aware(), &history, &CheckOptions::default()).is_err());
}
