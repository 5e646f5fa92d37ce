//! mvcc microbenchmarks (divan) on `MemBackend`: puts (one entry per apply and
//! batched as the server's group commit applies them), txn, puts delivered to
//! watchers, and range shapes over a preloaded key space.
//!
//! Run: `cargo bench --bench mvcc`. `cargo test --benches` runs each case once
//! on a smaller key space.

use braid::mvcc::{
    ApplyEntry, Compare, CompareResult, CompareTarget, ConsistentIndex, MemBackend, MvccConfig, MvccStore, PutRequest,
    RangeRequest, RequestOp, Revision, TxnRequest, WatchRequest, WatchResponse, WriteRequest,
};
use bytes::Bytes;
use divan::counter::ItemsCount;
use divan::{black_box, Bencher};

fn main() {
    divan::main();
}

/// Distinct keys preloaded (fewer in unoptimised test runs).
const KEYS: usize = if cfg!(debug_assertions) { 1_000 } else { 10_000 };

fn key(index: usize) -> Bytes {
    Bytes::from(format!("key/{index:08}"))
}

fn value() -> Bytes {
    Bytes::from_static(&[b'v'; 100])
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    store: MvccStore<MemBackend>,
    next_index: u64,
    writes: usize,
}

impl Fixture {
    /// A store holding every key once, written 64 per apply.
    fn loaded() -> Fixture {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let store = runtime
            .block_on(MvccStore::open(MemBackend::new(), MvccConfig::default()))
            .expect("open");
        let mut fixture = Fixture {
            runtime,
            store,
            next_index: 1,
            writes: 0,
        };
        while fixture.writes < KEYS {
            fixture.put_batch(64.min(KEYS - fixture.writes));
        }
        fixture
    }

    fn position(&mut self) -> ConsistentIndex {
        self.next_index += 1;
        ConsistentIndex {
            index: self.next_index,
            term: 1,
        }
    }

    fn next_key(&mut self, space: usize) -> Bytes {
        self.writes += 1;
        key(self.writes % space)
    }

    /// Applies `batch` puts of the next keys in one apply call.
    fn put_batch(&mut self, batch: usize) {
        let entries = (0..batch)
            .map(|_| {
                let request = PutRequest::new(self.next_key(KEYS), value());
                ApplyEntry::new(self.position(), WriteRequest::Put(request))
            })
            .collect();
        self.runtime
            .block_on(self.store.apply(entries, &|_| true))
            .expect("apply");
    }

    fn put_one(&mut self, space: usize) {
        let position = self.position();
        let request = PutRequest::new(self.next_key(space), value());
        self.runtime
            .block_on(self.store.apply_put(position, request, &|_| true))
            .expect("apply")
            .expect_applied()
            .expect("put");
    }
}

/// Puts applied 1 or 64 entries per apply call.
#[divan::bench(args = [1, 64])]
fn put(bencher: Bencher, batch: usize) {
    let mut fixture = Fixture::loaded();
    bencher.counter(ItemsCount::new(batch)).bench_local(|| {
        if batch == 1 {
            fixture.put_one(KEYS);
        } else {
            fixture.put_batch(batch);
        }
    });
}

/// A txn comparing the key's version, then putting it.
#[divan::bench]
fn txn_compare_version_put(bencher: Bencher) {
    let mut fixture = Fixture::loaded();
    bencher.bench_local(|| {
        let position = fixture.position();
        let key = fixture.next_key(KEYS);
        let request = TxnRequest {
            compare: vec![Compare {
                key: key.clone(),
                range_end: Bytes::new(),
                target: CompareTarget::Version(0),
                result: CompareResult::Greater,
            }],
            success: vec![RequestOp::Put(PutRequest::new(key, value()))],
            failure: vec![],
        };
        fixture
            .runtime
            .block_on(fixture.store.apply_txn(position, request, &|_| true))
            .expect("apply")
            .expect_applied()
            .expect("txn");
    });
}

/// Puts to 100 keys, each watched by one watcher whose events are drained
/// every 100 puts.
#[divan::bench]
fn put_delivered_to_100_watchers(bencher: Bencher) {
    let mut fixture = Fixture::loaded();
    let mut watchers: Vec<_> = (0..100)
        .map(|index| {
            fixture
                .store
                .watch(WatchRequest {
                    key: key(index),
                    ..WatchRequest::default()
                })
                .expect("watch")
        })
        .collect();
    bencher.bench_local(|| {
        fixture.put_one(100);
        if fixture.writes % 100 == 0 {
            for watcher in &mut watchers {
                while let Some(WatchResponse::Events { .. }) = watcher.try_recv().expect("watch stream") {}
            }
        }
    });
}

#[divan::bench]
fn range_single_key(bencher: Bencher) {
    let mut fixture = Fixture::loaded();
    bencher.bench_local(|| {
        let request = RangeRequest::new(fixture.next_key(KEYS), Bytes::new());
        assert_eq!(fixture.store.range(&request).expect("range").kvs.len(), 1);
    });
}

/// A single key as of a revision half the history ago.
#[divan::bench]
fn range_single_key_old_revision(bencher: Bencher) {
    let mut fixture = Fixture::loaded();
    let old = Revision(fixture.store.current_revision().0 / 2);
    bencher.bench_local(|| {
        let mut request = RangeRequest::new(fixture.next_key(KEYS), Bytes::new());
        request.revision = old;
        black_box(fixture.store.range(&request).expect("range"));
    });
}

/// 100 keys in range, 10 returned (a paginated listing's first page).
#[divan::bench]
fn range_100_keys_limit_10(bencher: Bencher) {
    let mut fixture = Fixture::loaded();
    bencher.bench_local(|| {
        let start = fixture.next_key(KEYS - 100);
        let end = key(start_index(&start) + 100);
        let mut request = RangeRequest::new(start, end);
        request.limit = 10;
        let result = fixture.store.range(&request).expect("range");
        assert!(result.more && result.count == 100);
    });
}

fn start_index(key: &[u8]) -> usize {
    std::str::from_utf8(&key[4..])
        .expect("ascii")
        .parse()
        .expect("a key index")
}

/// Counting every key (`count_only`).
#[divan::bench]
fn range_count_only_all_keys(bencher: Bencher) {
    let fixture = Fixture::loaded();
    bencher.counter(ItemsCount::new(KEYS)).bench_local(|| {
        let mut request = RangeRequest::new(Bytes::from_static(&[0]), Bytes::from_static(&[0]));
        request.count_only = true;
        assert_eq!(fixture.store.range(&request).expect("range").count, KEYS as i64);
    });
}

/// Every key with its value.
#[divan::bench(sample_count = 20)]
fn range_all_keys_with_values(bencher: Bencher) {
    let fixture = Fixture::loaded();
    bencher.counter(ItemsCount::new(KEYS)).bench_local(|| {
        let request = RangeRequest::new(Bytes::from_static(b"key/"), Bytes::from_static(b"key0"));
        assert_eq!(fixture.store.range(&request).expect("range").kvs.len(), KEYS);
    });
}
