//! Proves a failed fsync ends the process (fail-stop) on both production log
//! devices: the test re-runs itself as a child that injects the failure, and
//! checks the child died abnormally and said why.

// Real file system and OS threads: never part of the simulation build.
#![cfg(not(madsim))]

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;

use braid::io::{DevicePreference, Dir, LogDevice, OsDir, OsLog};
use bytes::Bytes;

const CHILD_ROLE: &str = "BRAID_FAIL_STOP_CHILD";
const CHILD_DIR: &str = "BRAID_FAIL_STOP_DIR";
const TEST_NAME: &str = "a_failed_fsync_ends_the_process";

/// In the child: open a log, append, inject an fsync failure, sync. Never returns.
fn child(preference: DevicePreference, path: PathBuf) -> ! {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (dir, choice) = OsDir::open(&path, preference).expect("open");
        eprintln!("child using {choice}");
        let log: OsLog = dir.open_log("doomed.log").await.expect("open log");
        log.append(Bytes::from_static(b"never durable")).await.expect("append");
        log.fail_next_sync_for_test();
        let _ = log.sync().await;
    });
    // Reaching here means the device acknowledged a failed fsync.
    println!("CHILD SURVIVED A FAILED FSYNC");
    std::process::exit(0)
}

#[test]
fn a_failed_fsync_ends_the_process() {
    if let Ok(role) = std::env::var(CHILD_ROLE) {
        let preference = if role == "file" {
            DevicePreference::File
        } else {
            DevicePreference::Auto
        };
        child(preference, PathBuf::from(std::env::var(CHILD_DIR).expect("child dir")));
    }
    for role in ["auto", "file"] {
        let path = std::env::temp_dir().join(format!("braid-fail-stop-{role}-{}", std::process::id()));
        let output = Command::new(std::env::current_exe().expect("test binary"))
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ROLE, role)
            .env(CHILD_DIR, &path)
            .output()
            .expect("run child");
        let _ = std::fs::remove_dir_all(&path);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stdout.contains("CHILD SURVIVED"),
            "{role}: the child kept running:\n{stdout}\n{stderr}"
        );
        assert_eq!(
            output.status.signal(),
            Some(6),
            "{role}: expected SIGABRT, got {:?}\n{stderr}",
            output.status
        );
        assert!(
            stderr.contains("fatal I/O error, stopping (fail-stop)"),
            "{role}: {stderr}"
        );
        assert!(stderr.contains("fdatasync of"), "{role}: {stderr}");
        assert!(stderr.contains("Input/output error"), "{role}: {stderr}");
        eprintln!(
            "{role}: child stderr: {}",
            stderr
                .lines()
                .filter(|line| line.contains("braid"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
}
