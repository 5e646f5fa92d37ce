//! WAL append+sync throughput on the real file system: one appender at a time
//! versus 64 concurrent appenders sharing fsyncs (group commit), on io_uring
//! and on the pwrite/fdatasync fallback. Bounded in ops and time.
//!
//! Run: `cargo bench --bench wal` (uses a directory under the system temp dir).

use std::path::PathBuf;
use std::sync::Arc;

use braid::io::{Clock, DevicePreference, OsDir, SystemClock};
use braid::wal::{Wal, WalEntry, WalOptions};
use bytes::Bytes;

const PAYLOAD_BYTES: usize = 256;
const TIME_LIMIT_NS: u64 = 2_000_000_000;

struct Outcome {
    ops: u64,
    elapsed_ns: u64,
    fsyncs: u64,
}

impl Outcome {
    fn ops_per_second(&self) -> f64 {
        self.ops as f64 * 1e9 / self.elapsed_ns as f64
    }
}

async fn measure(path: &PathBuf, preference: DevicePreference, appenders: u64, ops_per_appender: u64) -> Outcome {
    let _ = std::fs::remove_dir_all(path);
    let (dir, _) = OsDir::open(path, preference).expect("open data directory");
    let counters = dir.counters();
    let (wal, _) = Wal::open(dir, WalOptions::default()).await.expect("open WAL");
    let wal = Arc::new(wal);
    let next_index = Arc::new(tokio::sync::Mutex::new(1u64));
    let clock = SystemClock::new();
    let fsyncs_before = counters.fsyncs();
    let start_ns = clock.monotonic_ns();
    let tasks: Vec<_> = (0..appenders)
        .map(|_| {
            let (wal, next_index, clock) = (wal.clone(), next_index.clone(), clock.clone());
            tokio::spawn(async move {
                let data = Bytes::from(vec![7u8; PAYLOAD_BYTES]);
                let mut done = 0u64;
                while done < ops_per_appender && clock.monotonic_ns() - start_ns < TIME_LIMIT_NS {
                    let mut index = next_index.lock().await;
                    wal.append_entries(&[WalEntry {
                        index: *index,
                        term: 1,
                        data: data.clone(),
                    }])
                    .await
                    .unwrap();
                    *index += 1;
                    drop(index);
                    wal.sync().await.unwrap();
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut ops = 0;
    for task in tasks {
        ops += task.await.unwrap();
    }
    let elapsed_ns = clock.monotonic_ns() - start_ns;
    let fsyncs = counters.fsyncs() - fsyncs_before;
    drop(wal);
    let _ = std::fs::remove_dir_all(path);
    Outcome {
        ops,
        elapsed_ns,
        fsyncs,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let path = std::env::temp_dir().join(format!("braid-wal-bench-{}", std::process::id()));
    for preference in [DevicePreference::Auto, DevicePreference::File] {
        let choice = OsDir::open(&path, preference).expect("probe").1;
        let single = runtime.block_on(measure(&path, preference, 1, 3_000));
        let grouped = runtime.block_on(measure(&path, preference, 64, 400));
        println!(
            "{choice}: 1 appender {:.0} ops/s ({} ops, {} fdatasyncs); 64 appenders {:.0} ops/s ({} ops, {} fdatasyncs, {:.1} ops per fdatasync); speedup {:.1}x",
            single.ops_per_second(),
            single.ops,
            single.fsyncs,
            grouped.ops_per_second(),
            grouped.ops,
            grouped.fsyncs,
            grouped.ops as f64 / grouped.fsyncs.max(1) as f64,
            grouped.ops_per_second() / single.ops_per_second()
        );
    }
    let _ = std::fs::remove_dir_all(&path);
}
