//! Proves the braid binary behaves like etcd at the command line: `--version`
//! reports an etcd 3.5 version, unknown flags exit 2 with Go's text, bad
//! values exit 1 with etcd's text, and an etcd data directory is refused
//! rather than silently ignored.

#![cfg(not(madsim))]

mod support;

use std::process::Command;

use support::process::temp_dir;

const BRAID: &str = env!("CARGO_BIN_EXE_braid");

fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BRAID).args(args).env_remove("ETCD_NAME").output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[test]
fn version_reports_etcd_3_5() {
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("etcd Version: 3.5.17\n"), "{stdout}");
    assert!(stdout.contains("braid Version: "), "{stdout}");
}

#[test]
fn unknown_flag_exits_2_like_go_flag() {
    let (code, _, stderr) = run(&["--no-such-flag"]);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("flag provided but not defined: -no-such-flag\n"),
        "{stderr}"
    );
}

#[test]
fn bad_election_timeout_exits_1_with_etcds_text() {
    let (code, _, stderr) = run(&["--heartbeat-interval=100", "--election-timeout=200"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("should be at least as 5 times as --heartbeat-interval"),
        "{stderr}"
    );
}

#[test]
fn an_etcd_data_dir_is_refused() {
    let data_dir = temp_dir("etcd-dir");
    std::fs::create_dir_all(data_dir.join("member/wal")).unwrap();
    let flag = format!("--data-dir={}", data_dir.display());
    let (code, _, stderr) = run(&[&flag]);
    assert_eq!(code, 1);
    assert!(stderr.contains("is an etcd data directory"), "{stderr}");
    assert!(
        !data_dir.join("braid").exists(),
        "braid must not write into an etcd data dir"
    );
    std::fs::remove_dir_all(&data_dir).unwrap();
}
