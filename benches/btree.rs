//! B+tree microbenchmark: put, get and range throughput on an in-memory page
//! store (so it measures the tree, not the disk). Bounded loops; prints ops/s.
//! Run: `cargo bench --bench btree` (`BTREE_BENCH_KEYS` changes the key count).

use std::collections::BTreeMap;
use std::future::{ready, Future};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use braid::btree::{BTree, BTreeOptions};
use braid::io::{PageId, PageStore};
use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Pages in a map; `sync` is free. Just enough store for a benchmark.
#[derive(Clone)]
struct MemoryPages {
    page_size: usize,
    pages: Arc<Mutex<BTreeMap<u64, Bytes>>>,
}

impl PageStore for MemoryPages {
    fn page_size(&self) -> usize {
        self.page_size
    }
    fn page_count(&self) -> u64 {
        self.pages
            .lock()
            .expect("lock")
            .keys()
            .next_back()
            .map_or(0, |last| last + 1)
    }
    fn read_page(&self, id: PageId) -> io::Result<Bytes> {
        let pages = self.pages.lock().expect("lock");
        Ok(pages
            .get(&id.0)
            .cloned()
            .unwrap_or_else(|| Bytes::from(vec![0; self.page_size])))
    }
    fn write_pages(&self, pages: Vec<(PageId, Bytes)>) -> impl Future<Output = io::Result<()>> + Send {
        self.pages
            .lock()
            .expect("lock")
            .extend(pages.into_iter().map(|(id, page)| (id.0, page)));
        ready(Ok(()))
    }
    fn sync(&self) -> impl Future<Output = io::Result<()>> + Send {
        ready(Ok(()))
    }
}

fn key(index: u64) -> Vec<u8> {
    format!("/registry/pods/default/pod-{index:010}").into_bytes()
}

fn report(name: &str, ops: u64, started: Instant) {
    // Wall time is fine here: benches never run in the simulator.
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{name:<44} {ops:>9} ops in {seconds:>7.3} s = {:>11.0} ops/s",
        ops as f64 / seconds
    );
}

async fn bench(keys: u64) {
    let store = MemoryPages {
        page_size: 4096,
        pages: Arc::default(),
    };
    let tree = BTree::open(store, BTreeOptions::default()).await.expect("open");
    let value = Bytes::from(vec![7u8; 256]);
    let batch = 1000;
    let mut rng = SmallRng::seed_from_u64(1);

    let started = Instant::now();
    for first in (0..keys).step_by(batch) {
        let mut write = tree.write().await.expect("write");
        for index in first..(first + batch as u64).min(keys) {
            write.put(&key(index), value.clone()).expect("put");
        }
        write.commit().await.expect("commit");
    }
    report("put, sequential keys, 1000 per commit", keys, started);

    let started = Instant::now();
    for _ in (0..keys).step_by(batch) {
        let mut write = tree.write().await.expect("write");
        for _ in 0..batch {
            write.put(&key(rng.gen_range(0..keys)), value.clone()).expect("put");
        }
        write.commit().await.expect("commit");
    }
    report("put, random overwrite, 1000 per commit", keys, started);

    let commits = 2000;
    let started = Instant::now();
    for _ in 0..commits {
        let mut write = tree.write().await.expect("write");
        write.put(&key(rng.gen_range(0..keys)), value.clone()).expect("put");
        write.commit().await.expect("commit");
    }
    report("put, random overwrite, 1 per commit", commits, started);

    let read = tree.read().expect("read");
    let gets = keys * 2;
    let started = Instant::now();
    for _ in 0..gets {
        let found = read.get(&key(rng.gen_range(0..keys))).expect("get");
        assert!(found.is_some());
    }
    report("get, random existing key", gets, started);

    let ranges = 2000;
    let started = Instant::now();
    let mut entries = 0;
    for _ in 0..ranges {
        let start = key(rng.gen_range(0..keys));
        entries += read.range_iter(&start, None).take(100).count() as u64;
    }
    report("range entries, 100 per scan from a random key", entries, started);

    let started = Instant::now();
    let pages = read
        .snapshot()
        .map(|page| page.expect("page").len() as u64)
        .sum::<u64>()
        / 4096;
    report("snapshot stream pages", pages, started);
    drop(read);
    let stats = tree.stats();
    println!(
        "tree: {} entries, {} pages ({} free), {:.1} MiB file",
        stats.entry_count,
        stats.page_count,
        stats.free_page_count,
        stats.file_bytes as f64 / (1024.0 * 1024.0)
    );
}

fn main() {
    let keys = std::env::var("BTREE_BENCH_KEYS")
        .ok()
        .and_then(|keys| keys.parse().ok())
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(bench(keys));
}
