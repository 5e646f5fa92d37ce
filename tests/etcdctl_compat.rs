//! Proves braid answers Debian's etcdctl exactly as etcd does: the same
//! command script runs against a real etcd (3.4.23, from Debian) and a braid
//! node, and their normalised outputs — results, error texts and gRPC codes —
//! must be identical. Only what legitimately differs is normalised away:
//! endpoints, member/cluster IDs, the version string, sizes and timings.
//! A second script runs `etcdctl watch` processes in the background while
//! etcdctl writes, and compares what each watcher printed.

#![cfg(not(madsim))]

mod support;

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::process::{etcdctl, etcdctl_command, require_tool, Server, ETCD, ETCDCTL};

/// One etcdctl invocation: arguments and optional stdin.
struct Step {
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
}

fn step(args: &str) -> Step {
    Step {
        args: args.split_whitespace().map(str::to_string).collect(),
        stdin: None,
    }
}

fn step_with_stdin(args: &str, stdin: impl Into<Vec<u8>>) -> Step {
    Step {
        args: args.split_whitespace().map(str::to_string).collect(),
        stdin: Some(stdin.into()),
    }
}

fn script() -> Vec<Step> {
    let too_many: String = (0..129).map(|index| format!("put k{index} v\n")).collect();
    vec![
        step("put foo bar"),
        step("get foo"),
        step("put foo baz --prev-kv"),
        step("put k1 v1"),
        step("put k2 v2"),
        step("put k3 v3"),
        step("get k --prefix"),
        step("get k --prefix --limit=2"),
        step("get k --prefix --sort-by=MODIFY --order=DESCEND"),
        step("get k --prefix --sort-by=VALUE --order=ASCEND --keys-only"),
        step("get k1 k3"),
        step("get k --from-key --limit=1"),
        step("get k --prefix --rev=4"),
        step("get k --prefix --print-value-only"),
        step("get foo -w json"),
        step("get nothing"),
        step("get foo --rev=100"),
        step("get foo --consistency=s"),
        step("del k2 --prev-kv"),
        step("del nothing"),
        step_with_stdin(
            "txn",
            "value(\"foo\") = \"baz\"\n\nput foo qux\nget k1\n\nput foo never\n\n",
        ),
        step_with_stdin(
            "txn",
            "mod(\"k1\") > \"1000\"\n\nput k1 never\n\nput k3 failure-branch\n\n",
        ),
        step_with_stdin("txn", "\nput dup 1\nput dup 2\n\n\n"),
        step_with_stdin("txn", format!("\n{too_many}\n\n")),
        step("compaction 5"),
        step("get foo --rev=4"),
        step("get foo --rev=5"),
        step("compaction 3"),
        step("put foo bar --ignore-value"),
        step("put missing --ignore-value"),
        step("put foo bar --lease=1234"),
        step_with_stdin("put big", vec![b'x'; 1_600_000]),
        step("del k --prefix --prev-kv"),
        step("get --from-key \"\" --keys-only"),
        step("endpoint health"),
        step("endpoint status"),
    ]
}

/// Removes what may differ between two correct servers.
fn normalise(text: &str, endpoint: &str) -> String {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.replace(endpoint, "ENDPOINT");
        // etcdctl's retry warnings: keep only the gRPC code and message.
        if line.starts_with("{\"level\":\"warn\"") {
            if let Some(position) = line.find("\"error\":\"") {
                out.push(format!("warn {}", &line[position + 9..].trim_end_matches("\"}")));
            }
            continue;
        }
        let mut line = line;
        if let Some(position) = line.find("took = ") {
            line.truncate(position + 7);
            line.push('T');
        }
        // JSON headers carry cluster/member IDs and terms.
        if let Some(start) = line.find("\"header\":{") {
            if let Some(end) = line[start..].find('}') {
                line.replace_range(start..start + end + 1, "\"header\":H");
            }
        }
        if line.starts_with("ENDPOINT, ") {
            // endpoint status: ENDPOINT, ID, VERSION, DB SIZE, IS LEADER, IS LEARNER, TERM, INDEX, APPLIED, ERRORS
            let fields: Vec<&str> = line.split(", ").collect();
            line = format!("ENDPOINT, ID, VERSION, SIZE, {}", fields[4..].join(", "));
            // Term and indexes differ in how each server counts its own entries.
            let fields: Vec<String> = line.split(", ").map(str::to_string).collect();
            line = format!(
                "{}, {}, TERM, INDEX, APPLIED, {}",
                fields[..4].join(", "),
                fields[4..6].join(", "),
                fields[9..].join(", ")
            );
        }
        out.push(line);
    }
    out.join("\n")
}

fn run_script(server: &Server) -> Vec<String> {
    script()
        .iter()
        .map(|step| {
            let args: Vec<&str> = step.args.iter().map(String::as_str).collect();
            let output = etcdctl(&server.endpoint(), &args, step.stdin.as_deref());
            let text = format!(
                "$ etcdctl {}\nexit {}\n{}\n{}",
                step.args.join(" "),
                output.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            normalise(&text, &server.endpoint())
        })
        .collect()
}

fn start(program: &str, label: &str) -> Server {
    let server = Server::start_single(program, label);
    server.wait_ready(Duration::from_secs(20));
    server
}

/// Runs `run` against a fresh etcd, then a fresh braid, and asserts their transcripts
/// (one entry per step) are identical.
fn compare_with_etcd(label: &str, run: fn(&Server) -> Vec<String>) {
    if !require_tool(ETCDCTL) || !require_tool(ETCD) {
        return;
    }
    let etcd = start(ETCD, &format!("etcd{label}"));
    let expected = run(&etcd);
    drop(etcd);
    let braid = start(env!("CARGO_BIN_EXE_braid"), &format!("braid{label}"));
    let actual = run(&braid);
    if std::env::var_os("BRAID_SHOW_TRANSCRIPT").is_some() {
        println!("{}", actual.join("\n"));
    }
    let mut differences = Vec::new();
    for (expected, actual) in expected.iter().zip(&actual) {
        if expected != actual {
            differences.push(format!("--- etcd\n{expected}\n--- braid\n{actual}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} etcdctl steps differ:\n{}\nbraid log:\n{}",
        differences.len(),
        expected.len(),
        differences.join("\n\n"),
        braid.log()
    );
}

#[test]
fn etcdctl_output_matches_etcd() {
    compare_with_etcd("", run_script);
}

/// Background watchers: every one starts at a revision, so what it prints does not depend
/// on whether it was created before or during the writes.
const WATCHERS: &[&str] = &[
    "watch w --prefix --rev=2",
    "watch w/a --prefix --rev=5 --prev-kv",
    "watch w/a w/b --rev=2 --prev-kv",
    "watch w/a/end --rev=2",
];

/// The writes (revisions 2 to 10 on a fresh server); the last one ends every watcher.
fn watch_workload() -> Vec<Step> {
    vec![
        step("put w/a 1"),
        step("put w/b 1"),
        step("put x 1"),
        step("put w/a 2"),
        step("del w/a"),
        step("put w/a/x 3"),
        step_with_stdin("txn", "\nput w/a/t1 4\nput w/a/t2 5\nput x 2\n\n\n"),
        step("del w --prefix"),
        step("put w/a/end done"),
    ]
}

/// Starts the watchers, runs the writes, and returns what each watcher printed up to the
/// final put (or a note that it did not get there within the time limit).
fn run_watchers(server: &Server) -> Vec<String> {
    let endpoint = server.endpoint();
    let mut children = Vec::new();
    let mut outputs = Vec::new();
    for watcher in WATCHERS {
        let args: Vec<&str> = watcher.split_whitespace().collect();
        let mut child = etcdctl_command(&endpoint, &args).spawn().expect("etcdctl runs");
        let stdout = child.stdout.take().unwrap();
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        children.push(child);
        outputs.push(received);
    }
    for write in watch_workload() {
        let args: Vec<&str> = write.args.iter().map(String::as_str).collect();
        let output = etcdctl(&endpoint, &args, write.stdin.as_deref());
        assert!(output.status.success(), "{:?} failed: {output:?}", write.args);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut transcripts = Vec::new();
    for ((watcher, received), mut child) in WATCHERS.iter().zip(outputs).zip(children) {
        let mut lines = vec![format!("$ etcdctl {watcher}")];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(left) {
                Ok(line) => {
                    let done = line == "done" && lines.last().is_some_and(|last| last == "w/a/end");
                    lines.push(line);
                    if done {
                        break;
                    }
                }
                Err(_) => {
                    lines.push("(no final put within 20 s)".to_string());
                    break;
                }
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        transcripts.push(lines.join("\n"));
    }
    transcripts
}

#[test]
fn etcdctl_watch_output_matches_etcd() {
    compare_with_etcd("-watch", run_watchers);
}
