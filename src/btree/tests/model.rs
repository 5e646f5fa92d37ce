//! Proves random puts, deletes, gets, ranges, commits, aborts and reopens
//! agree with a `BTreeMap` model, on small pages (deep trees) and default ones.

use std::ops::Bound;

use rand::rngs::SmallRng;
use rand::Rng;

use super::{assert_same, open, random_key, random_value, rng_for, run, seeds, Model};
use crate::btree::tests::page_store::MemPageStore;
use crate::btree::{BTree, ReadTxn};

fn model_range(model: &Model, start: &[u8], end: Option<&[u8]>) -> Vec<(Vec<u8>, bytes::Bytes)> {
    if end.is_some_and(|end| end <= start) {
        return Vec::new();
    }
    let upper = end.map_or(Bound::Unbounded, |end| Bound::Excluded(end.to_vec()));
    model
        .range((Bound::Included(start.to_vec()), upper))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

fn random_bounds(rng: &mut SmallRng, key_space: u32, key_bytes_max: usize) -> (Vec<u8>, Option<Vec<u8>>) {
    let start = random_key(rng, key_space, key_bytes_max);
    let end = match rng.gen_range(0..4) {
        0 => None,
        _ => Some(random_key(rng, key_space, key_bytes_max)),
    };
    (start, end)
}

/// An old snapshot kept open with the model it must keep showing.
struct OldReader {
    read: ReadTxn<MemPageStore>,
    model: Model,
}

fn run_seed(seed: u64, page_size: usize, ops: usize, key_space: u32, huge_per_mille: u32) {
    let mut rng = rng_for(seed);
    run(async {
        let store = MemPageStore::new(page_size);
        let mut tree: BTree<MemPageStore> = open(&store).await;
        let key_bytes_max = tree.key_bytes_max();
        let mut committed = Model::new();
        let mut pending = committed.clone();
        let mut old_readers: Vec<OldReader> = Vec::new();
        let mut txn = Some(tree.write().await.expect("write"));
        let (mut commits, mut huge_values) = (0, 0);
        for step in 0..ops {
            let context = format!("seed {seed} step {step}");
            let write = txn.as_mut().expect("a write txn is open");
            match rng.gen_range(0..1000) {
                0..=549 => {
                    let key = random_key(&mut rng, key_space, key_bytes_max);
                    let value = random_value(&mut rng, huge_per_mille);
                    huge_values += usize::from(value.len() > 1024 * 1024);
                    write
                        .put(&key, value.clone())
                        .unwrap_or_else(|error| panic!("{context}: put: {error}"));
                    pending.insert(key, value);
                }
                550..=669 => {
                    let key = if !pending.is_empty() && rng.gen_bool(0.7) {
                        let index = rng.gen_range(0..pending.len());
                        pending.keys().nth(index).cloned().expect("index in range")
                    } else {
                        random_key(&mut rng, key_space, key_bytes_max)
                    };
                    let deleted = write
                        .delete(&key)
                        .unwrap_or_else(|error| panic!("{context}: delete: {error}"));
                    assert_eq!(deleted, pending.remove(&key).is_some(), "{context}: delete result");
                }
                670..=769 => {
                    let key = random_key(&mut rng, key_space, key_bytes_max);
                    let found = write
                        .get(&key)
                        .unwrap_or_else(|error| panic!("{context}: get: {error}"));
                    assert_eq!(found.as_ref(), pending.get(&key), "{context}: get");
                }
                770..=829 => {
                    let (start, end) = random_bounds(&mut rng, key_space, key_bytes_max);
                    let found = write.range(&start, end.as_deref()).expect("range");
                    let expected = model_range(&pending, &start, end.as_deref());
                    assert_eq!(found.len(), expected.len(), "{context}: range length");
                    for ((key, value), (model_key, model_value)) in found.iter().zip(&expected) {
                        assert_eq!(
                            (key.as_ref(), value),
                            (model_key.as_slice(), model_value),
                            "{context}: range"
                        );
                    }
                }
                830..=909 => {
                    let write = txn.take().expect("open txn");
                    let base = write.base_txn_id();
                    let committed_txn = write
                        .commit()
                        .await
                        .unwrap_or_else(|error| panic!("{context}: commit: {error}"));
                    assert!(committed_txn.0 == base.0 + 1 || (committed_txn == base && pending == committed));
                    committed = pending.clone();
                    commits += 1;
                    let read = tree.read().expect("read");
                    assert_eq!(read.txn_id(), committed_txn, "{context}: reader sees the commit");
                    if rng.gen_bool(0.2) {
                        assert_same(&read, &committed, &context);
                        tree.verify()
                            .await
                            .unwrap_or_else(|error| panic!("{context}: verify: {error}"));
                    }
                    if rng.gen_bool(0.3) && old_readers.len() < 3 {
                        old_readers.push(OldReader {
                            read,
                            model: committed.clone(),
                        });
                    }
                    txn = Some(tree.write().await.expect("write"));
                }
                910..=929 => {
                    txn.take().expect("open txn").abort();
                    pending = committed.clone();
                    txn = Some(tree.write().await.expect("write"));
                }
                930..=944 => {
                    drop(txn.take());
                    old_readers.clear();
                    drop(tree);
                    tree = open(&store).await;
                    pending = committed.clone();
                    assert_same(
                        &tree.read().expect("read"),
                        &committed,
                        &format!("{context} after reopen"),
                    );
                    tree.verify()
                        .await
                        .unwrap_or_else(|error| panic!("{context}: verify after reopen: {error}"));
                    txn = Some(tree.write().await.expect("write"));
                }
                _ => {
                    if let Some(old) = old_readers.pop() {
                        if rng.gen_bool(0.5) {
                            assert_same(&old.read, &old.model, &format!("{context} old reader"));
                            old_readers.insert(0, old);
                        }
                    }
                }
            }
        }
        let write = txn.take().expect("open txn");
        write.commit().await.expect("final commit");
        for old in &old_readers {
            assert_same(&old.read, &old.model, &format!("seed {seed} old reader at the end"));
        }
        old_readers.clear();
        assert_same(
            &tree.read().expect("read"),
            &pending,
            &format!("seed {seed} at the end"),
        );
        let report = tree
            .verify()
            .await
            .unwrap_or_else(|error| panic!("seed {seed}: final verify: {error}"));
        assert_eq!(report.entry_count, pending.len() as u64);
        println!(
            "seed {seed}: {commits} commits, {huge_values} huge values, {} entries, depth {}, {} pages",
            report.entry_count,
            report.depth,
            tree.stats().page_count
        );
    });
}

#[test]
fn small_pages_agree_with_model() {
    for seed in seeds(1, 20) {
        run_seed(seed, 512, 1500, 1500, 0);
    }
}

#[test]
fn default_pages_agree_with_model() {
    for seed in seeds(2, 16) {
        run_seed(seed, 4096, 1500, 1500, 0);
    }
}

#[test]
fn huge_values_agree_with_model() {
    for seed in seeds(3, 8) {
        run_seed(seed, 4096, 400, 200, 20);
    }
}

/// Sequential and reverse-sequential bulk loads then deletes of everything:
/// the tree grows several levels and shrinks back to one empty leaf.
#[test]
fn grow_and_shrink_to_empty() {
    run(async {
        let store = MemPageStore::new(512);
        let tree = open(&store).await;
        let mut write = tree.write().await.expect("write");
        for index in 0..3000u32 {
            write
                .put(
                    format!("key{:08}", index * 7919 % 3000).as_bytes(),
                    super::value_of(20, index.into()),
                )
                .expect("put");
        }
        write.commit().await.expect("commit");
        let report = tree.verify().await.expect("verify");
        assert!(
            report.depth >= 4,
            "3000 entries on 512-byte pages: depth {}",
            report.depth
        );
        for round in 0..3u32 {
            let mut write = tree.write().await.expect("write");
            for index in (round * 1000..(round + 1) * 1000).rev() {
                assert!(write.delete(format!("key{index:08}").as_bytes()).expect("delete"));
            }
            write.commit().await.expect("commit");
            tree.verify().await.expect("verify");
        }
        let report = tree.verify().await.expect("verify");
        assert_eq!((report.depth, report.node_pages, report.entry_count), (1, 1, 0));
        assert!(tree.read().expect("read").range(b"", None).expect("range").is_empty());
    });
}
