//! Proves a spent budget yields `Unknown`, which `is_ok()` counts as a failure, in sequential
//! and in parallel checks.

use std::time::Duration;

use braid_jepsen::{check, CheckOptions, Deadline, History, Operation, RegisterModel, Status, Verdict};
use serde_json::json;

/// 24 concurrent writes of distinct values and a concurrent read of a value nobody wrote: the
/// search must visit every (set of writes, last write) pair, about 2^27 of them, to say no.
fn hard_history(key: &str) -> Vec<Operation> {
    let mut operations: Vec<Operation> = (0..24)
        .map(|index| Operation {
            process: index,
            op: "write".into(),
            input: json!({ "key": key, "value": index.to_string() }),
            output: Some(json!({})),
            call_ns: 0,
            return_ns: Some(100 + index),
            status: Status::Ok,
        })
        .collect();
    operations.push(Operation {
        process: 99,
        op: "read".into(),
        input: json!({ "key": key }),
        output: Some(json!({ "value": "never written" })),
        call_ns: 0,
        return_ns: Some(1_000),
        status: Status::Ok,
    });
    operations
}

fn expect_unknown(history: &History, options: &CheckOptions) {
    let result = check(&RegisterModel::new(), history, options).expect("check");
    assert!(
        matches!(result.verdict, Verdict::Unknown(_)),
        "expected unknown, got {}",
        result.verdict.label()
    );
    assert!(
        !result.is_ok() && !result.verdict.is_ok(),
        "Unknown must count as a failure"
    );
    assert!(
        result.statistics.elapsed < Duration::from_secs(10),
        "the budget was not honoured: {:?}",
        result.statistics.elapsed
    );
    println!("unknown after {:?} ({})", result.statistics.elapsed, result.verdict);
}

#[test]
fn tiny_budget_on_a_hard_history_is_unknown_and_not_ok() {
    let history = History {
        operations: hard_history("x"),
    };
    expect_unknown(
        &history,
        &CheckOptions::default().with_budget(Duration::from_millis(50)),
    );
}

#[test]
fn tiny_budget_with_parallel_partitions_is_unknown_and_not_ok() {
    let mut operations = hard_history("x");
    operations.extend(hard_history("y"));
    let history = History { operations };
    expect_unknown(
        &history,
        &CheckOptions::default()
            .with_budget(Duration::from_millis(50))
            .with_threads(2),
    );
}

#[test]
fn deadline_expires_only_with_a_budget() {
    assert!(Deadline::after(Duration::ZERO).is_expired());
    assert!(!Deadline::never().is_expired());
    assert_eq!(Deadline::from_budget(None).budget(), None);
}
