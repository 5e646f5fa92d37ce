//! mvcc microbenchmarks on `MemBackend`: put (one entry per apply, and batched as the server's
//! group commit would), txn, and range shapes. Bounded loops; prints ops/s. Benchmarks never run
//! in simulation, so they read the wall clock directly.

use std::time::Instant;

use braid::mvcc::{
    ApplyEntry, Compare, CompareResult, CompareTarget, ConsistentIndex, MemBackend, MvccConfig, MvccStore, PutRequest,
    RangeRequest, RequestOp, TxnRequest, WatchRequest, WatchResponse, WriteRequest,
};
use bytes::Bytes;

const KEYS: usize = 10_000;

fn key(index: usize) -> Bytes {
    Bytes::from(format!("key/{index:08}"))
}

fn report(name: &str, operations: usize, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{name:<44} {operations:>8} ops in {seconds:>7.3} s = {:>10.0} ops/s",
        operations as f64 / seconds
    );
}

struct Bench {
    store: MvccStore<MemBackend>,
    next_index: u64,
}

impl Bench {
    async fn new() -> Self {
        let store = MvccStore::open(MemBackend::new(), MvccConfig::default()).await.unwrap();
        Bench { store, next_index: 1 }
    }

    fn position(&mut self) -> ConsistentIndex {
        self.next_index += 1;
        ConsistentIndex {
            index: self.next_index,
            term: 1,
        }
    }
}

async fn run() {
    let value = Bytes::from(vec![b'v'; 100]);
    let mut bench = Bench::new().await;

    let operations = 20_000;
    let started = Instant::now();
    for write in 0..operations {
        let position = bench.position();
        let request = PutRequest::new(key(write % KEYS), value.clone());
        bench
            .store
            .apply_put(position, request, &|_| true)
            .await
            .unwrap()
            .expect_applied()
            .unwrap();
    }
    report("put, 1 entry per apply (100 B values)", operations, started);

    let operations = 64_000;
    let started = Instant::now();
    for batch in 0..operations / 64 {
        let entries = (0..64)
            .map(|offset| {
                let request = PutRequest::new(key((batch * 64 + offset) % KEYS), value.clone());
                ApplyEntry::new(bench.position(), WriteRequest::Put(request))
            })
            .collect();
        bench.store.apply(entries, &|_| true).await.unwrap();
    }
    report("put, 64 entries per apply", operations, started);

    let operations = 10_000;
    let started = Instant::now();
    for write in 0..operations {
        let position = bench.position();
        let compare = Compare {
            key: key(write % KEYS),
            range_end: Bytes::new(),
            target: CompareTarget::Version(0),
            result: CompareResult::Greater,
        };
        let put = RequestOp::Put(PutRequest::new(key(write % KEYS), value.clone()));
        let request = TxnRequest {
            compare: vec![compare],
            success: vec![put],
            failure: vec![],
        };
        bench
            .store
            .apply_txn(position, request, &|_| true)
            .await
            .unwrap()
            .expect_applied()
            .unwrap();
    }
    report("txn (compare version + put)", operations, started);

    let mut watchers: Vec<_> = (0..100)
        .map(|index| {
            bench
                .store
                .watch(WatchRequest {
                    key: key(index),
                    ..WatchRequest::default()
                })
                .unwrap()
        })
        .collect();
    let operations = 20_000;
    let started = Instant::now();
    for write in 0..operations {
        let position = bench.position();
        let request = PutRequest::new(key(write % 100), value.clone());
        bench
            .store
            .apply_put(position, request, &|_| true)
            .await
            .unwrap()
            .expect_applied()
            .unwrap();
        if write % 100 == 99 {
            for watcher in &mut watchers {
                while let Some(WatchResponse::Events { .. }) = watcher.try_recv().unwrap() {}
            }
        }
    }
    report("put + deliver to 100 single-key watchers", operations, started);
    drop(watchers);

    let operations = 200_000;
    let started = Instant::now();
    for read in 0..operations {
        let result = bench
            .store
            .range(&RangeRequest::new(key(read * 7 % KEYS), Bytes::new()))
            .unwrap();
        assert_eq!(result.kvs.len(), 1);
    }
    report("range, single key", operations, started);

    let operations = 50_000;
    let started = Instant::now();
    for read in 0..operations {
        let start = read * 13 % (KEYS - 100);
        let mut request = RangeRequest::new(key(start), key(start + 100));
        request.limit = 10;
        let result = bench.store.range(&request).unwrap();
        assert!(result.more && result.count == 100);
    }
    report("range, 100 keys, limit 10", operations, started);

    let operations = 500;
    let started = Instant::now();
    for _ in 0..operations {
        let mut request = RangeRequest::new(Bytes::from_static(&[0]), Bytes::from_static(&[0]));
        request.count_only = true;
        assert_eq!(bench.store.range(&request).unwrap().count, KEYS as i64);
    }
    report("range, count_only over 10k keys", operations, started);

    let operations = 200;
    let started = Instant::now();
    for _ in 0..operations {
        let request = RangeRequest::new(Bytes::from_static(b"key/"), Bytes::from_static(b"key0"));
        assert_eq!(bench.store.range(&request).unwrap().kvs.len(), KEYS);
    }
    report("range, all 10k keys with values", operations, started);

    let operations = 20_000;
    let started = Instant::now();
    let current = bench.store.current_revision().0;
    for read in 0..operations {
        let mut request = RangeRequest::new(key(read % KEYS), Bytes::new());
        request.revision = braid::mvcc::Revision(current - 50_000);
        bench.store.range(&request).unwrap();
    }
    report("range, single key at an old revision", operations, started);
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(run());
}
