//! Proves the check-history binary prints the verdict and exits 0 only for a linearizable
//! history (1 illegal, 2 unknown, 3 unusable input).

use std::path::PathBuf;
use std::process::Command;

fn write_temporary(name: &str, contents: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("braid-jepsen-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).expect("write temporary history");
    path
}

fn run(arguments: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_check-history"))
        .args(arguments)
        .output()
        .expect("run check-history");
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().expect("exit code"), text)
}

const WRITE: &str = r#"{"process":0,"op":"write","input":{"key":"x","value":"1"},"output":{},"call_ns":0,"return_ns":10,"status":"ok"}"#;
const READ_ONE: &str =
    r#"{"process":1,"op":"read","input":{"key":"x"},"output":{"value":"1"},"call_ns":20,"return_ns":30,"status":"ok"}"#;
const READ_NIL: &str = r#"{"process":1,"op":"read","input":{"key":"x"},"output":{"value":null},"call_ns":20,"return_ns":30,"status":"ok"}"#;

#[test]
fn exit_code_follows_the_verdict() {
    let good = write_temporary("good.jsonl", &format!("{WRITE}\n{READ_ONE}\n"));
    let bad = write_temporary("bad.jsonl", &format!("{WRITE}\n{READ_NIL}\n"));
    let broken = write_temporary("broken.jsonl", "not json\n");

    let (code, text) = run(&[good.to_str().expect("utf-8 path")]);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("verdict: ok"), "{text}");

    let (code, text) = run(&["--model", "register", bad.to_str().expect("utf-8 path")]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("verdict: illegal") && text.contains("cannot place"),
        "{text}"
    );

    let (code, text) = run(&[broken.to_str().expect("utf-8 path")]);
    assert_eq!(code, 3, "{text}");
    let (code, _) = run(&["--model", "nonsense", good.to_str().expect("utf-8 path")]);
    assert_eq!(code, 3);
    let (code, _) = run(&[]);
    assert_eq!(code, 3);

    for path in [good, bad, broken] {
        std::fs::remove_file(path).expect("remove temporary history");
    }
}

#[test]
fn etcd_model_and_jepsen_format_are_selectable() {
    let put = r#"{"process":0,"op":"put","input":{"key":"a","value":"1"},"output":{"revision":2},"call_ns":0,"return_ns":10,"status":"ok"}"#;
    let stale = r#"{"process":1,"op":"get","input":{"key":"a"},"output":{"revision":1,"kvs":[]},"call_ns":20,"return_ns":30,"status":"ok"}"#;
    let history = write_temporary("etcd.jsonl", &format!("{put}\n{stale}\n"));
    let (code, text) = run(&["--model", "etcd", history.to_str().expect("utf-8 path")]);
    assert_eq!(code, 1, "{text}");

    let log = write_temporary(
        "jepsen.log",
        "INFO  jepsen.util - 0\t:invoke\t:write\t1\nINFO  jepsen.util - 0\t:ok\t:write\t1\n",
    );
    let (code, text) = run(&[
        "--format",
        "jepsen-etcd-log",
        "--budget-ms",
        "1000",
        log.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 0, "{text}");

    for path in [history, log] {
        std::fs::remove_file(path).expect("remove temporary history");
    }
}
