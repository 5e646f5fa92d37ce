//! B+tree microbenchmarks (divan): put + commit, get, range and snapshot
//! streaming on an in-memory page store, so they measure the tree, not the disk.
//!
//! Run: `cargo bench --bench btree`. `cargo test --benches` runs each case once
//! on a smaller tree.

use std::collections::BTreeMap;
use std::future::{ready, Future};
use std::io;
use std::sync::{Arc, Mutex};

use braid::btree::{BTree, BTreeOptions, ReadTxn};
use braid::io::{PageId, PageStore};
use bytes::Bytes;
use divan::counter::ItemsCount;
use divan::{black_box, Bencher};
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

fn main() {
    divan::main();
}

/// Keys in the tree the benches work on (fewer in unoptimised test runs).
const KEYS: u64 = if cfg!(debug_assertions) { 2_000 } else { 100_000 };

fn key(index: u64) -> Vec<u8> {
    format!("/registry/pods/default/pod-{index:010}").into_bytes()
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    tree: BTree<MemoryPages>,
    rng: SmallRng,
}

impl Fixture {
    /// A tree of `KEYS` entries of 256 B, loaded 1000 per commit.
    fn loaded() -> Fixture {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let store = MemoryPages {
            page_size: 4096,
            pages: Arc::default(),
        };
        let tree = runtime
            .block_on(async {
                let tree = BTree::open(store, BTreeOptions::default()).await?;
                for first in (0..KEYS).step_by(1000) {
                    let mut write = tree.write().await?;
                    for index in first..(first + 1000).min(KEYS) {
                        write.put(&key(index), value())?;
                    }
                    write.commit().await?;
                }
                Ok::<_, braid::btree::BTreeError>(tree)
            })
            .expect("load the tree");
        Fixture {
            runtime,
            tree,
            rng: SmallRng::seed_from_u64(1),
        }
    }

    fn read(&self) -> ReadTxn<MemoryPages> {
        self.tree.read().expect("read")
    }

    /// Overwrites `batch` random existing keys in one transaction.
    fn overwrite(&mut self, batch: usize, durable: bool) {
        let keys: Vec<Vec<u8>> = (0..batch).map(|_| key(self.rng.gen_range(0..KEYS))).collect();
        let tree = &self.tree;
        self.runtime
            .block_on(async {
                let mut write = tree.write().await?;
                for key in &keys {
                    write.put(key, value())?;
                }
                if durable {
                    write.commit().await
                } else {
                    write.commit_deferred().await
                }
            })
            .expect("commit");
    }
}

fn value() -> Bytes {
    Bytes::from_static(&[7u8; 256])
}

/// Random overwrites of `batch` keys per durable commit (1 = one put per
/// transaction; 1000 = a bulk load).
#[divan::bench(args = [1, 64, 1000])]
fn put_commit(bencher: Bencher, batch: usize) {
    let mut fixture = Fixture::loaded();
    bencher
        .counter(ItemsCount::new(batch))
        .bench_local(|| fixture.overwrite(batch, true));
}

/// The same with deferred commits (no meta write; how the server applies).
#[divan::bench(args = [1, 64])]
fn put_commit_deferred(bencher: Bencher, batch: usize) {
    let mut fixture = Fixture::loaded();
    bencher
        .counter(ItemsCount::new(batch))
        .bench_local(|| fixture.overwrite(batch, false));
}

#[divan::bench]
fn get_random_existing(bencher: Bencher) {
    let mut fixture = Fixture::loaded();
    let read = fixture.read();
    bencher.bench_local(|| {
        let found = read.get(&key(fixture.rng.gen_range(0..KEYS))).expect("get");
        assert!(black_box(found).is_some());
    });
}

/// 100 entries scanned from a random key.
#[divan::bench]
fn range_100_from_random_key(bencher: Bencher) {
    let mut fixture = Fixture::loaded();
    let read = fixture.read();
    bencher.counter(ItemsCount::new(100usize)).bench_local(|| {
        let start = key(fixture.rng.gen_range(0..KEYS - 100));
        assert_eq!(read.range_iter(&start, None).take(100).count(), 100);
    });
}

/// Streaming every page of a consistent snapshot (what a follower catching up receives).
#[divan::bench(sample_count = 20)]
fn snapshot_stream(bencher: Bencher) {
    let fixture = Fixture::loaded();
    let read = fixture.read();
    let pages = fixture.tree.stats().page_count;
    bencher.counter(ItemsCount::new(pages)).bench_local(|| {
        read.snapshot()
            .map(|page| page.expect("page").len() as u64)
            .sum::<u64>()
    });
}
