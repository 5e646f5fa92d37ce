//! Proves the storage stack keeps its promise through crashes: MVCC over the
//! B+tree over the fault-injecting memory disk, with random puts, deletes,
//! txns and compactions, crashes between applies and in the middle of a
//! commit (unsynced pages dropped, kept or torn). After every recovery the
//! store must be exactly the model's state at the recovered applied index,
//! and that index must cover every apply that returned (acknowledged).
//! `MVCC_CRASH_SEED=<n>` replays one seed.

use std::collections::BTreeMap;
use std::time::Duration;

use braid::btree::{BTree, BTreeOptions};
use braid::io::{Dir, MemDir};
use braid::mvcc::{
    BTreeBackend, ConsistentIndex, DeleteRangeRequest, MvccConfig, MvccStore, PutRequest, RangeRequest, Revision,
};
use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

type Store = MvccStore<BTreeBackend<braid::io::MemPages>>;

/// What a reader sees: key -> (value, version, create, mod) at the current revision.
type View = (i64, BTreeMap<Bytes, (Bytes, i64, i64, i64)>);

async fn open(dir: &MemDir) -> Store {
    let pages = dir.open_pages("db", 4096).await.unwrap();
    dir.sync_dir().await.unwrap();
    let tree = BTree::open(pages, BTreeOptions::default()).await.unwrap();
    MvccStore::open(BTreeBackend::new(tree), MvccConfig::default())
        .await
        .unwrap()
}

fn view(store: &Store) -> View {
    let mut request = RangeRequest::new(Bytes::from_static(b"\0"), Bytes::from_static(b"\0"));
    request.revision = Revision(0);
    let result = store.range(&request).unwrap();
    let kvs = result
        .kvs
        .into_iter()
        .map(|kv| (kv.key, (kv.value, kv.version, kv.create_revision.0, kv.mod_revision.0)))
        .collect();
    (store.current_revision().0, kvs)
}

fn key(rng: &mut SmallRng) -> Bytes {
    Bytes::from(format!("key-{:02}", rng.gen_range(0..24)))
}

/// Applies one random write at `index`; a dropped future simulates a crash
/// in the middle of the commit. Returns whether the apply completed.
async fn random_write(store: &Store, rng: &mut SmallRng, index: u64, crash_after: Option<Duration>) -> bool {
    let position = ConsistentIndex { index, term: 1 };
    let roll = rng.gen_range(0..100);
    let value = Bytes::from(format!("v{index}-").repeat(rng.gen_range(1..300)));
    let work = async {
        match roll {
            0..=59 => {
                let _ = store
                    .apply_put(position, PutRequest::new(key(rng), value), &|_| true)
                    .await
                    .unwrap();
            }
            60..=84 => {
                let start = key(rng);
                let end = if rng.gen_bool(0.5) { Bytes::new() } else { key(rng) };
                let _ = store
                    .apply_delete_range(position, DeleteRangeRequest::new(start, end))
                    .await
                    .unwrap();
            }
            _ => {
                let current = store.current_revision().0;
                let compact_to = rng.gen_range(1..=current.max(1));
                // A compaction below the compacted revision is a request error,
                // still applied (it advances the applied index) like etcd.
                let _ = store.apply_compact(position, Revision(compact_to)).await.unwrap();
            }
        }
    };
    match crash_after {
        None => {
            work.await;
            true
        }
        Some(delay) => tokio::time::timeout(delay, work).await.is_ok(),
    }
}

async fn run_seed(seed: u64) -> (u64, u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let dir = MemDir::new();
    // The model: the view after each applied index (index 0 = empty store).
    let mut history: Vec<View> = vec![(1, BTreeMap::new())];
    let mut acknowledged = 0u64;
    let mut crashes = 0;
    let mut store = open(&dir).await;
    for _round in 0..6 {
        let writes = rng.gen_range(5..40);
        let mut crashed_mid_commit = false;
        for _ in 0..writes {
            let index = history.len() as u64;
            let crash_now = rng.gen_bool(0.05);
            if crash_now {
                dir.set_sync_latency(Duration::from_millis(2));
                let delay = Duration::from_micros(rng.gen_range(0..3000));
                let completed = random_write(&store, &mut rng, index, Some(delay)).await;
                if completed {
                    acknowledged = index;
                    history.push(view(&store));
                } else {
                    // Unknown outcome: the model may or may not include it.
                    history.push((-1, BTreeMap::new()));
                }
                crashed_mid_commit = true;
                break;
            }
            random_write(&store, &mut rng, index, None).await;
            acknowledged = index;
            history.push(view(&store));
        }
        if !crashed_mid_commit && rng.gen_bool(0.3) {
            // A clean restart keeps everything.
            drop(store);
            store = open(&dir).await;
            continue;
        }
        drop(store);
        dir.crash(&mut rng);
        dir.set_sync_latency(Duration::ZERO);
        crashes += 1;
        store = open(&dir).await;
        let recovered = store.consistent_index().index;
        assert!(
            recovered >= acknowledged,
            "seed {seed}: acknowledged apply {acknowledged} lost (recovered {recovered})"
        );
        assert!(
            recovered < history.len() as u64,
            "seed {seed}: recovered {recovered} never applied"
        );
        let expected = if history[recovered as usize].0 == -1 {
            // The interrupted apply made it: its outcome is what we recompute now.
            view(&store)
        } else {
            history[recovered as usize].clone()
        };
        assert_eq!(
            view(&store),
            expected,
            "seed {seed}: state after recovery differs from applied index {recovered}"
        );
        history.truncate(recovered as usize + 1);
        if history[recovered as usize].0 == -1 {
            history[recovered as usize] = expected;
        }
        acknowledged = recovered;
    }
    (history.len() as u64, crashes)
}

#[tokio::test]
async fn mvcc_on_btree_on_memory_disk_survives_crashes() {
    let seeds: Vec<u64> = match std::env::var("MVCC_CRASH_SEED") {
        Ok(seed) => vec![seed.parse().unwrap()],
        Err(_) => (1..=150).collect(),
    };
    let mut applied = 0;
    let mut crashes = 0;
    for seed in &seeds {
        let (seed_applied, seed_crashes) = run_seed(*seed).await;
        applied += seed_applied;
        crashes += seed_crashes;
    }
    println!("{} seeds: {applied} applies, {crashes} crashes", seeds.len());
    assert!(crashes > seeds.len() as u64, "the test must actually crash");
}
