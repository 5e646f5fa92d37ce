//! WAL microbenchmarks (divan) on the real file system: append + fdatasync with
//! one appender and a batch of entries per sync, and 64 concurrent appenders
//! sharing fsyncs (group commit), on io_uring and on the pwrite/fdatasync
//! fallback. Each case writes under its own directory in the system temp dir
//! and removes it afterwards.
//!
//! Run: `cargo bench --bench wal`. `cargo test --benches` runs each case once.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use braid::io::{DevicePreference, OsDir, SyncCounters};
use braid::wal::{Wal, WalEntry, WalOptions};
use bytes::Bytes;
use divan::counter::ItemsCount;
use divan::Bencher;

fn main() {
    divan::main();
    for line in GROUP_COMMIT_REPORTS.lock().expect("reports").iter() {
        println!("{line}");
    }
}

/// How well each group-commit case shared fsyncs, printed after divan's table.
static GROUP_COMMIT_REPORTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

const PAYLOAD_BYTES: usize = 256;
const APPENDERS: usize = 64;

#[derive(Clone, Copy, Debug)]
enum Device {
    /// io_uring where the kernel allows it (what production uses).
    Uring,
    /// pwrite + fdatasync.
    File,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Uring => "io_uring",
            Device::File => "file",
        })
    }
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    wal: Arc<Wal<OsDir>>,
    counters: Arc<SyncCounters>,
    next_index: Arc<AtomicU64>,
    path: PathBuf,
}

impl Fixture {
    fn open(device: Device, name: &str) -> Fixture {
        static CASE: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "braid-wal-bench-{}-{name}-{}",
            std::process::id(),
            CASE.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        let preference = match device {
            Device::Uring => DevicePreference::Auto,
            Device::File => DevicePreference::File,
        };
        let (dir, _) = OsDir::open(&path, preference).expect("open data directory");
        let counters = dir.counters();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (wal, _) = runtime
            .block_on(Wal::open(dir, WalOptions::default()))
            .expect("open WAL");
        Fixture {
            runtime,
            wal: Arc::new(wal),
            counters,
            next_index: Arc::new(AtomicU64::new(1)),
            path,
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Appends `entries` consecutive entries and makes them durable.
async fn append_and_sync(wal: &Wal<OsDir>, next_index: &AtomicU64, entries: usize) {
    let data = Bytes::from(vec![7u8; PAYLOAD_BYTES]);
    let first = next_index.fetch_add(entries as u64, Ordering::Relaxed);
    let batch: Vec<WalEntry> = (0..entries as u64)
        .map(|offset| WalEntry {
            index: first + offset,
            term: 1,
            data: data.clone(),
        })
        .collect();
    wal.append_entries(&batch).await.expect("append");
    wal.sync().await.expect("sync");
}

/// One appender: `entries` per fdatasync (1 = a lone client; 64 = a batched round).
#[divan::bench(args = [(Device::Uring, 1), (Device::Uring, 64), (Device::File, 1), (Device::File, 64)])]
fn append_sync(bencher: Bencher, (device, entries): (Device, usize)) {
    let fixture = Fixture::open(device, "single");
    bencher.counter(ItemsCount::new(entries)).bench_local(|| {
        fixture
            .runtime
            .block_on(append_and_sync(&fixture.wal, &fixture.next_index, entries))
    });
}

/// 64 concurrent appenders of one entry each, each waiting for its own sync:
/// the WAL should share fsyncs between them (group commit).
#[divan::bench(args = [Device::Uring, Device::File])]
fn group_commit_64_appenders(bencher: Bencher, device: Device) {
    let fixture = Fixture::open(device, "group");
    // Index order must be kept, so appenders take turns appending but sync concurrently.
    let turn = Arc::new(tokio::sync::Mutex::new(()));
    let fsyncs_before = fixture.counters.fsyncs();
    bencher.counter(ItemsCount::new(APPENDERS)).bench_local(|| {
        fixture.runtime.block_on(async {
            let tasks: Vec<_> = (0..APPENDERS)
                .map(|_| {
                    let (wal, next_index, turn) = (fixture.wal.clone(), fixture.next_index.clone(), turn.clone());
                    tokio::spawn(async move {
                        let data = Bytes::from(vec![7u8; PAYLOAD_BYTES]);
                        let held = turn.lock().await;
                        let index = next_index.fetch_add(1, Ordering::Relaxed);
                        wal.append_entries(&[WalEntry { index, term: 1, data }])
                            .await
                            .expect("append");
                        drop(held);
                        wal.sync().await.expect("sync");
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("appender");
            }
        })
    });
    // Divan reports time per item; how well fsyncs were shared is printed here.
    let appended = fixture.next_index.load(Ordering::Relaxed) - 1;
    let fsyncs = fixture.counters.fsyncs() - fsyncs_before;
    GROUP_COMMIT_REPORTS.lock().expect("reports").push(format!(
        "group commit on {device}: {appended} appends shared {fsyncs} fdatasyncs ({:.1} appends per fdatasync)",
        appended as f64 / fsyncs.max(1) as f64
    ));
}
