//! Tests of the B+tree through the `PageStore` seam, on the in-memory store.
//! Randomized tests print their seed; `BTREE_TEST_SEED=<n>` reruns one seed and
//! `BTREE_TEST_SEEDS=<count>` sweeps more.

mod api;
mod corruption;
mod crash;
mod deferred;
mod model;
pub(crate) mod page_store;
mod readers;
mod snapshot;

use std::collections::BTreeMap;
use std::future::Future;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::btree::tests::page_store::MemPageStore;
use crate::btree::{BTree, BTreeOptions, ReadTxn};
use crate::io::PageId;

pub(super) type Model = BTreeMap<Vec<u8>, Bytes>;

/// Runs a test body on a current-thread runtime.
pub(super) fn run<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("test runtime")
        .block_on(future)
}

/// The seeds a randomized test runs: `count` seeds derived from a per-test
/// salt, `BTREE_TEST_SEEDS=<n>` of them for a longer sweep, or only the one in
/// `BTREE_TEST_SEED`.
pub(super) fn seeds(salt: u64, count: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("BTREE_TEST_SEED") {
        return vec![seed.parse().expect("BTREE_TEST_SEED must be a u64")];
    }
    let count = std::env::var("BTREE_TEST_SEEDS").map_or(count, |count| count.parse().expect("a seed count"));
    (0..count)
        .map(|index| salt.wrapping_mul(1_000_003).wrapping_add(index))
        .collect()
}

pub(super) fn rng_for(seed: u64) -> SmallRng {
    println!("seed {seed} (rerun with BTREE_TEST_SEED={seed})");
    SmallRng::seed_from_u64(seed)
}

pub(super) async fn open(store: &MemPageStore) -> BTree<MemPageStore> {
    let options = BTreeOptions {
        page_size: crate::io::PageStore::page_size(store),
    };
    BTree::open(store.clone(), options).await.expect("open")
}

/// A value of `len` bytes whose contents depend on `tag` (cheap to build in debug).
pub(super) fn value_of(len: usize, tag: u64) -> Bytes {
    let pattern = tag.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes();
    let mut value = Vec::with_capacity(len);
    while value.len() < len {
        let take = (len - value.len()).min(8);
        value.extend_from_slice(&pattern[..take]);
        if value.len() % 4096 == 0 {
            value.push(value.len() as u8);
        }
    }
    value.truncate(len);
    Bytes::from(value)
}

/// Mostly small values, some up to 20 KiB, and `huge_per_mille` in a
/// thousand above etcd's 1.5 MiB request limit.
pub(super) fn random_value(rng: &mut SmallRng, huge_per_mille: u32) -> Bytes {
    let len = if rng.gen_range(0..1000) < huge_per_mille {
        1536 * 1024 + rng.gen_range(0..8192)
    } else {
        match rng.gen_range(0..100) {
            0..=59 => rng.gen_range(0..64),
            60..=89 => rng.gen_range(0..2048),
            _ => rng.gen_range(0..20 * 1024),
        }
    };
    value_of(len, rng.gen())
}

/// Keys from a small space (so puts overwrite and deletes hit), sometimes
/// long, sometimes empty.
pub(super) fn random_key(rng: &mut SmallRng, key_space: u32, key_bytes_max: usize) -> Vec<u8> {
    let base = format!("k{:05}", rng.gen_range(0..key_space)).into_bytes();
    match rng.gen_range(0..100) {
        0 => Vec::new(),
        1..=4 => {
            let mut key = base;
            key.resize(rng.gen_range(key.len()..=key_bytes_max), b'x');
            key
        }
        _ => base,
    }
}

/// Whole-tree comparison: every entry, in order, and the entry count.
pub(super) fn assert_same(read: &ReadTxn<MemPageStore>, model: &Model, context: &str) {
    let entries = read
        .range(b"", None)
        .unwrap_or_else(|error| panic!("{context}: range failed: {error}"));
    assert_eq!(entries.len(), model.len(), "{context}: entry count");
    for ((key, value), (model_key, model_value)) in entries.iter().zip(model) {
        assert_eq!(key.as_ref(), model_key.as_slice(), "{context}: keys differ");
        assert!(
            value == model_value,
            "{context}: value of key {key:?} differs ({} vs {} bytes)",
            value.len(),
            model_value.len()
        );
    }
    assert_eq!(read.entry_count(), model.len() as u64, "{context}: entry_count");
}

/// The ids of every page a snapshot reaches (from its snapshot stream).
pub(super) fn reachable_pages(read: &ReadTxn<MemPageStore>) -> Vec<(PageId, Bytes)> {
    let pages: Vec<Bytes> = read.snapshot().collect::<Result<_, _>>().expect("snapshot stream");
    pages[1..pages.len() - 1]
        .iter()
        .map(|page| {
            (
                PageId(crate::btree::page::read_u64(page, crate::btree::page::PAGE_ID_OFFSET)),
                page.clone(),
            )
        })
        .collect()
}
