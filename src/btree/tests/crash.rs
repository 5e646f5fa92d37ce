//! Proves a crash at any write or sync of a commit (unsynced pages kept,
//! dropped or torn) reopens to exactly the last durable commit, or the
//! attempted one once its meta page was written, and never to a damaged tree.

use bytes::Bytes;
use rand::Rng;

use super::{assert_same, open, random_key, random_value, rng_for, run, seeds, value_of, Model};
use crate::btree::tests::page_store::{CrashFate, MemPageStore};
use crate::btree::{BTreeError, BTreeOptions, TxnId};

/// `write_pages` of the tree pages, `sync`, `write_pages` of the meta, `sync`.
const COMMIT_OPS: u64 = 4;

#[test]
fn crash_during_commit_recovers_a_commit() {
    for seed in seeds(4, 48) {
        let mut rng = rng_for(seed);
        let page_size = if rng.gen_bool(0.5) { 512 } else { 4096 };
        run(async {
            let store = MemPageStore::new(page_size);
            // The very first open may die while creating the file.
            if rng.gen_bool(0.3) {
                store.fail_at_op(rng.gen_range(0..COMMIT_OPS));
                let options = BTreeOptions { page_size };
                assert!(crate::btree::BTree::open(store.clone(), options).await.is_err());
                store.crash(&mut rng);
            }
            let mut tree = open(&store).await;
            assert_eq!(
                tree.stats().txn_id,
                TxnId(0),
                "seed {seed}: a cut-short creation leaves an empty tree"
            );
            let mut committed = Model::new();
            let (mut crashes, mut attempted_won) = (0, 0);
            for round in 0..40 {
                let context = format!("seed {seed} round {round}");
                let base = tree.stats().txn_id;
                let mut attempt = committed.clone();
                let key_bytes_max = tree.key_bytes_max();
                let mut write = tree.write().await.expect("write");
                for op in 0..rng.gen_range(1..40) {
                    let key = random_key(&mut rng, 200, key_bytes_max);
                    // The first op is a put, so every commit has something to write.
                    if op > 0 && rng.gen_bool(0.25) {
                        write.delete(&key).expect("delete");
                        attempt.remove(&key);
                    } else {
                        let value = random_value(&mut rng, 0);
                        write.put(&key, value.clone()).expect("put");
                        attempt.insert(key, value);
                    }
                }
                // Which of the commit's four calls fails; COMMIT_OPS means none.
                let failing_op = if rng.gen_bool(0.5) {
                    rng.gen_range(0..=COMMIT_OPS)
                } else {
                    COMMIT_OPS
                };
                if failing_op < COMMIT_OPS {
                    store.fail_at_op(failing_op);
                }
                let result = write.commit().await;
                match (&result, failing_op < COMMIT_OPS) {
                    (Ok(txn), false) => {
                        assert_eq!(*txn, TxnId(base.0 + 1), "{context}");
                        committed = attempt.clone();
                        if !rng.gen_bool(0.3) {
                            continue;
                        }
                    }
                    (Err(BTreeError::Io(_)), true) => {
                        assert!(
                            matches!(tree.read(), Err(BTreeError::Poisoned { .. })),
                            "{context}: a failed commit poisons the tree"
                        );
                        assert!(
                            matches!(tree.write().await, Err(BTreeError::Poisoned { .. })),
                            "{context}"
                        );
                    }
                    (result, failing) => {
                        panic!("{context}: commit gave {result:?} with failing op {failing}")
                    }
                }
                crashes += 1;
                drop(tree);
                store.crash(&mut rng);
                tree = open(&store).await;
                let recovered = tree.stats().txn_id;
                let read = tree.read().expect("read");
                // Before the meta write (ops 0 and 1) only the old commit can
                // come back; once the meta page was issued, either can.
                if recovered == base {
                    assert_same(&read, &committed, &format!("{context}: recovered the previous commit"));
                } else {
                    assert!(
                        failing_op >= 2,
                        "{context}: txn {recovered:?} recovered though op {failing_op} failed"
                    );
                    assert_eq!(recovered, TxnId(base.0 + 1), "{context}");
                    assert_same(&read, &attempt, &format!("{context}: recovered the attempted commit"));
                    committed = attempt;
                    attempted_won += usize::from(failing_op < COMMIT_OPS);
                }
                drop(read);
                tree.verify()
                    .await
                    .unwrap_or_else(|error| panic!("{context}: verify after crash: {error}"));
            }
            println!("seed {seed}: {crashes} crashes, {attempted_won} recovered the interrupted commit");
            assert!(crashes > 0);
        });
    }
}

/// The same crash points, with a reader holding an old snapshot: pages it
/// pins are never overwritten, so the reader and the recovered tree agree
/// with their models whichever commit survives.
#[test]
fn crash_with_live_reader_leaves_reader_intact() {
    for seed in seeds(5, 8) {
        let mut rng = rng_for(seed);
        run(async {
            let store = MemPageStore::new(512);
            let mut tree = open(&store).await;
            let mut committed = Model::new();
            for round in 0..25 {
                let reader = tree.read().expect("read");
                let reader_model = committed.clone();
                for _ in 0..3 {
                    let mut write = tree.write().await.expect("write");
                    for _ in 0..20 {
                        let key = random_key(&mut rng, 100, 100);
                        let value = random_value(&mut rng, 0);
                        write.put(&key, value.clone()).expect("put");
                        committed.insert(key, value);
                    }
                    write.commit().await.expect("commit");
                }
                let mut write = tree.write().await.expect("write");
                let base = write.base_txn_id();
                let mut attempt = committed.clone();
                for _ in 0..20 {
                    let key = random_key(&mut rng, 100, 100);
                    write.delete(&key).expect("delete");
                    attempt.remove(&key);
                }
                let failing_op = rng.gen_range(0..COMMIT_OPS);
                store.fail_at_op(failing_op);
                assert!(write.commit().await.is_err());
                assert_same(
                    &reader,
                    &reader_model,
                    &format!("seed {seed} round {round}: reader after failed commit"),
                );
                drop(reader);
                drop(tree);
                store.crash(&mut rng);
                tree = open(&store).await;
                let read = tree.read().expect("read");
                if read.txn_id() != base {
                    assert!(failing_op >= 2, "seed {seed} round {round}: op {failing_op} failed");
                    assert_eq!(read.txn_id(), TxnId(base.0 + 1));
                    committed = attempt;
                }
                assert_same(&read, &committed, &format!("seed {seed} round {round}: after crash"));
                drop(read);
                tree.verify().await.expect("verify");
            }
        });
    }
}

/// Every crash state of a few small commits, enumerated: for each call of the
/// commit that can fail, every unsynced page kept, dropped or torn (3^n
/// combinations), with and without the grown file size reaching the disk.
#[test]
fn every_crash_state_of_small_commits_recovers() {
    run(async {
        let store = MemPageStore::new(1024);
        let tree = open(&store).await;
        let mut committed = Model::new();
        let mut write = tree.write().await.expect("write");
        for index in 0..60u64 {
            let key = format!("key{index:03}").into_bytes();
            write.put(&key, value_of(30, index)).expect("put");
            committed.insert(key, value_of(30, index));
        }
        write.commit().await.expect("commit");
        assert_eq!(tree.verify().await.expect("verify").depth, 2, "a two-level tree");
        drop(tree);

        type Scenario = fn(&mut Model) -> Vec<(Vec<u8>, Option<Bytes>)>;
        let scenarios: [(&str, Scenario); 3] = [
            ("one put", |_| vec![(b"key030x".to_vec(), Some(value_of(10, 1)))]),
            ("overflow value", |_| {
                vec![(b"key010".to_vec(), Some(value_of(1500, 2)))]
            }),
            ("deletes that merge leaves", |_| {
                (0..20u64)
                    .map(|index| (format!("key{index:03}").into_bytes(), None))
                    .collect()
            }),
        ];
        let (mut states, mut new_commit_survived) = (0, 0);
        for (name, scenario) in scenarios {
            for failing_op in 0..COMMIT_OPS {
                let trial = store.fork();
                let tree = open(&trial).await;
                let base = tree.stats().txn_id;
                let mut attempt = committed.clone();
                let mut write = tree.write().await.expect("write");
                for (key, value) in scenario(&mut attempt) {
                    match value {
                        Some(value) => {
                            write.put(&key, value.clone()).expect("put");
                            attempt.insert(key, value);
                        }
                        None => {
                            write.delete(&key).expect("delete");
                            attempt.remove(&key);
                        }
                    }
                }
                trial.fail_at_op(failing_op);
                assert!(write.commit().await.is_err());
                drop(tree);
                let pending = trial.pending_ids().len();
                assert!((1..=7).contains(&pending), "{name}: {pending} unsynced pages");
                println!("{name}: op {failing_op} failed with {pending} unsynced pages");
                for combination in 0..3u32.pow(pending as u32) {
                    for keep_grown_size in [false, true] {
                        let context =
                            format!("{name}, op {failing_op} failed, fates {combination}, size {keep_grown_size}");
                        let state = trial.fork();
                        let mut digits = combination;
                        let fate = |_| {
                            let fate = match digits % 3 {
                                0 => CrashFate::Keep,
                                1 => CrashFate::Drop,
                                _ => CrashFate::Tear { sectors_written: 1 },
                            };
                            digits /= 3;
                            fate
                        };
                        state.crash_with(fate, keep_grown_size);
                        let tree = open(&state).await;
                        let read = tree.read().expect("read");
                        if read.txn_id() == base {
                            assert_same(&read, &committed, &context);
                        } else {
                            assert!(
                                failing_op >= 2,
                                "{context}: the new commit survived before its meta was written"
                            );
                            assert_same(&read, &attempt, &context);
                            new_commit_survived += 1;
                        }
                        drop(read);
                        tree.verify().await.unwrap_or_else(|error| panic!("{context}: {error}"));
                        states += 1;
                    }
                }
            }
        }
        println!("{states} crash states recovered, {new_commit_survived} to the interrupted commit");
        assert!(new_commit_survived > 0 && new_commit_survived < states);
    });
}
