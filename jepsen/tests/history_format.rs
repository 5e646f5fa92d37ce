//! Proves the JSONL history format round-trips, rejects malformed histories with a precise
//! error, and that the Jepsen log converter maps invocations, completions and crashes right.

use braid_jepsen::jepsen_log::{parse_jepsen_etcd_log, JEPSEN_REGISTER_KEY};
use braid_jepsen::{History, HistoryError, Operation, Status};
use serde_json::json;

fn write(process: u64, call_ns: u64, return_ns: Option<u64>, status: Status) -> Operation {
    Operation {
        process,
        op: "write".into(),
        input: json!({ "key": "x", "value": "1" }),
        output: None,
        call_ns,
        return_ns,
        status,
    }
}

#[test]
fn jsonl_round_trips_and_reads_the_documented_shape() {
    let line = r#"{"process":3,"op":"write","input":{"key":"x","value":"7"},"output":{},"call_ns":120,"return_ns":180,"status":"ok"}"#;
    let open = r#"{"process":4,"op":"write","input":{"key":"x","value":"8"},"output":null,"call_ns":130,"return_ns":null,"status":"info"}"#;
    let history = History::from_jsonl_str(&format!("{line}\n\n{open}\n")).expect("parse");
    assert_eq!(history.len(), 2);
    assert_eq!(history.operations[0].status, Status::Ok);
    assert_eq!(history.operations[0].output, Some(json!({})));
    assert_eq!(history.operations[1].output, None);
    assert_eq!(history.operations[1].effective_return_ns(), None);
    assert_eq!(history.status_counts(), (1, 0, 1));
    let text = history.to_jsonl_string();
    assert_eq!(text.lines().next(), Some(line));
    assert_eq!(History::from_jsonl_str(&text).expect("reparse"), history);
    history.validate().expect("valid");
}

#[test]
fn bad_lines_name_their_line_number() {
    let text = "{\"process\":1}\n";
    match History::from_jsonl_str(text) {
        Err(HistoryError::Json { line: 1, .. }) => {}
        other => panic!("expected a JSON error on line 1, got {other:?}"),
    }
    let text = "\n{\"process\":1,\"op\":\"read\",\"input\":{},\"call_ns\":1,\"status\":\"maybe\"}\n";
    assert!(matches!(
        History::from_jsonl_str(text),
        Err(HistoryError::Json { line: 2, .. })
    ));
}

#[test]
fn validation_rejects_impossible_histories() {
    let invalid = |operations: Vec<Operation>| -> String {
        match (History { operations }).validate() {
            Err(HistoryError::Invalid { reason, .. }) => reason,
            other => panic!("expected invalid, got {other:?}"),
        }
    };
    assert!(invalid(vec![write(0, 10, None, Status::Ok)]).contains("needs a return_ns"));
    assert!(invalid(vec![write(0, 10, Some(5), Status::Ok)]).contains("before its call"));
    assert!(invalid(vec![
        write(0, 0, Some(10), Status::Ok),
        write(0, 5, Some(20), Status::Ok)
    ])
    .contains("in flight"));
    assert!(invalid(vec![
        write(0, 0, None, Status::Info),
        write(0, 50, Some(60), Status::Ok)
    ])
    .contains("retired"));
    // Touching operations of one process and other processes' overlap are fine.
    (History {
        operations: vec![
            write(0, 0, Some(10), Status::Ok),
            write(0, 10, Some(20), Status::Fail),
            write(1, 5, Some(15), Status::Ok),
        ],
    })
    .validate()
    .expect("valid");
}

#[test]
fn jepsen_log_converts_invocations_completions_and_crashes() {
    let log = "\
INFO  jepsen.util - 0\t:invoke\t:read\tnil
INFO  jepsen.util - 1   :invoke :cas    [1 4]
INFO  jepsen.util - 2\t:invoke\t:write\t3
INFO  jepsen.util - 0\t:ok\t:read\t3
INFO  jepsen.util - 1   :fail   :cas    [1 4]
INFO  jepsen.util - 2\t:info\t:write\t:timed-out
INFO  jepsen.util - 0\t:invoke\t:write\t4
INFO  jepsen.util - 2\t:invoke\t:read\tnil
INFO  jepsen.util - 2\t:ok\t:read\tnil
";
    let history = parse_jepsen_etcd_log(log).expect("parse");
    history.validate().expect("converted history is valid");
    let operations = &history.operations;
    assert_eq!(operations.len(), 5);

    assert_eq!(operations[0].op, "read");
    assert_eq!(operations[0].input, json!({ "key": JEPSEN_REGISTER_KEY }));
    assert_eq!(operations[0].output, Some(json!({ "value": "3" })));
    assert_eq!((operations[0].call_ns, operations[0].return_ns), (0, Some(3)));

    assert_eq!(
        operations[1].input,
        json!({ "key": JEPSEN_REGISTER_KEY, "from": "1", "to": "4" })
    );
    assert_eq!(operations[1].status, Status::Fail);

    // The crashed write is open-ended and its process number is retired.
    assert_eq!(operations[2].status, Status::Info);
    assert_eq!(operations[2].return_ns, None);
    assert_ne!(operations[4].process, 2, "a retired process number must not be reused");
    assert_eq!(operations[4].output, Some(json!({ "value": null })));

    // Still open at the end of the log: indeterminate.
    assert_eq!(operations[3].status, Status::Info);
    assert_eq!(operations[3].return_ns, None);
}

#[test]
fn jepsen_log_errors_name_the_line() {
    let error = parse_jepsen_etcd_log("INFO  jepsen.util - 0\t:ok\t:read\t3\n").expect_err("nothing open");
    assert_eq!(error.line, 1);
    let error = parse_jepsen_etcd_log("INFO  jepsen.util - 0\t:invoke\t:cas\t[1]\n").expect_err("bad pair");
    assert!(error.message.contains("[from to]"), "{error}");
    let error = parse_jepsen_etcd_log("\nsomething else\n").expect_err("not a jepsen line");
    assert_eq!(error.line, 2);
}
