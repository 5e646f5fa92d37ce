//! Proves damage is reported, never read as data and never a panic: a torn
//! meta falls back to the previous commit (S3), a bit flip or a misdirected
//! write in any reachable page is an error naming that page (S6), a read error
//! names its page (S5), and a page newer than its parent is refused.

use bytes::{Bytes, BytesMut};
use rand::Rng;

use super::{assert_same, open, reachable_pages, rng_for, run, seeds, value_of, Model};
use crate::btree::page::{seal_page, write_u64, TXN_ID_OFFSET};
use crate::btree::tests::page_store::MemPageStore;
use crate::btree::{BTree, BTreeError, BTreeOptions, TxnId};
use crate::io::PageId;

async fn commit_round(tree: &BTree<MemPageStore>, round: u64, model: &mut Model) {
    let mut write = tree.write().await.expect("write");
    for index in 0..150u64 {
        let key = format!("r{round}-{index:04}").into_bytes();
        let len = if index % 40 == 0 { 6000 } else { 30 };
        write.put(&key, value_of(len, round * 1000 + index)).expect("put");
        model.insert(key, value_of(len, round * 1000 + index));
    }
    write.commit().await.expect("commit");
}

/// Reads every key and the whole range; the first error, if any.
fn read_everything(tree: &BTree<MemPageStore>, model: &Model) -> Result<(), BTreeError> {
    let read = tree.read()?;
    for (key, value) in model {
        assert_eq!(
            read.get(key)?.as_ref(),
            Some(value),
            "a damaged read returned wrong data"
        );
    }
    let entries = read.range(b"", None)?;
    assert_eq!(entries.len(), model.len());
    Ok(())
}

#[test]
fn torn_meta_falls_back_to_previous_commit() {
    for seed in seeds(6, 6) {
        let mut rng = rng_for(seed);
        run(async {
            let store = MemPageStore::new(4096);
            let tree = open(&store).await;
            let mut models = vec![Model::new()];
            let mut slot_1_at_txn_1 = Bytes::new();
            for round in 0..3 {
                let mut model = models.last().cloned().expect("a model");
                commit_round(&tree, round, &mut model).await;
                models.push(model);
                if round == 0 {
                    slot_1_at_txn_1 = store.page(PageId(1));
                }
            }
            drop(tree);
            // Txn 3 went to slot 1 over txn 1's meta. Tear it: either inside
            // the meta's bytes over the old meta, or at a sector boundary over junk.
            let newest = store.page(PageId(1));
            let torn = if rng.gen_bool(0.5) {
                // Cut before the entry count (64..72), which differs between the two metas.
                let tear_at = rng.gen_range(4..64);
                let mut torn = BytesMut::from(&newest[..tear_at]);
                torn.extend_from_slice(&slot_1_at_txn_1[tear_at..]);
                torn
            } else {
                let mut torn = BytesMut::from(&newest[..rng.gen_range(1..8) * 512]);
                torn.resize(4096, 0xa5);
                torn
            };
            assert!(torn != newest, "the tear changed the page");
            store.set_page(PageId(1), torn.freeze());
            let tree = open(&store).await;
            assert_eq!(
                tree.stats().txn_id,
                TxnId(2),
                "seed {seed}: fell back to the previous meta"
            );
            assert_same(&tree.read().expect("read"), &models[2], "previous commit");
            tree.verify().await.expect("verify");

            // The next commit writes slot 1 again and is the newest.
            let mut model = models[2].clone();
            commit_round(&tree, 10, &mut model).await;
            drop(tree);
            let tree = open(&store).await;
            assert_eq!(tree.stats().txn_id, TxnId(3));
            assert_same(&tree.read().expect("read"), &model, "commit after the fallback");
            drop(tree);

            // With both slots torn nothing can be trusted: a clear error, not an empty tree.
            for slot in [PageId(0), PageId(1)] {
                store.flip_bit(slot, rng.gen_range(0..4096 * 8));
            }
            match BTree::open(store.clone(), BTreeOptions::default()).await {
                Err(error) => assert!(error.is_corruption(), "seed {seed}: {error}"),
                Ok(_) => panic!("seed {seed}: opened with both meta pages damaged"),
            }
        });
    }
}

#[test]
fn bit_flip_in_any_reachable_page_names_that_page() {
    for seed in seeds(7, 3) {
        let mut rng = rng_for(seed);
        run(async {
            let store = MemPageStore::new(1024);
            let tree = open(&store).await;
            let mut model = Model::new();
            for round in 0..3 {
                commit_round(&tree, round, &mut model).await;
            }
            let reachable = reachable_pages(&tree.read().expect("read"));
            let page_count = tree.stats().page_count;
            let mut reached_errors = 0;
            for id in 2..page_count {
                let id = PageId(id);
                let original = store.page(id);
                store.flip_bit(id, rng.gen_range(0..1024 * 8));
                let result = read_everything(&tree, &model);
                if reachable.iter().any(|(page, _)| *page == id) {
                    let error = result.expect_err("damage in a reachable page went unnoticed");
                    assert_eq!(error.page_id(), Some(id), "seed {seed}: {error}");
                    assert!(error.is_corruption(), "{error}");
                    reached_errors += 1;
                } else {
                    result
                        .unwrap_or_else(|error| panic!("seed {seed}: unreachable page {} broke a read: {error}", id.0));
                }
                store.set_page(id, original);
            }
            assert_eq!(reached_errors, reachable.len());
            read_everything(&tree, &model).expect("all pages restored");
        });
    }
}

#[test]
fn misdirected_write_is_caught_by_the_page_id() {
    run(async {
        let store = MemPageStore::new(1024);
        let tree = open(&store).await;
        let mut model = Model::new();
        commit_round(&tree, 0, &mut model).await;
        let reachable = reachable_pages(&tree.read().expect("read"));
        let (victim, _) = reachable[reachable.len() / 2];
        let (source, source_bytes) = reachable[reachable.len() / 3].clone();
        // The write meant for `source` landed on `victim`: checksum fine, id wrong.
        store.set_page(victim, source_bytes);
        let error = read_everything(&tree, &model).expect_err("misdirected write unnoticed");
        assert_eq!(error.page_id(), Some(victim), "{error}");
        assert!(
            error.to_string().contains(&format!("says it is page {}", source.0)),
            "{error}"
        );
    });
}

#[test]
fn latent_read_error_names_the_page() {
    run(async {
        let store = MemPageStore::new(4096);
        let tree = open(&store).await;
        let mut model = Model::new();
        commit_round(&tree, 0, &mut model).await;
        let reachable = reachable_pages(&tree.read().expect("read"));
        let (victim, _) = reachable[reachable.len() - 1];
        store.fail_reads(victim);
        let error = read_everything(&tree, &model).expect_err("read error unnoticed");
        assert!(
            matches!(error, BTreeError::ReadFailed { page_id, .. } if page_id == victim),
            "{error}"
        );
    });
}

#[test]
fn page_newer_than_its_parent_is_refused() {
    run(async {
        let store = MemPageStore::new(4096);
        let tree = open(&store).await;
        let mut model = Model::new();
        commit_round(&tree, 0, &mut model).await;
        let reachable = reachable_pages(&tree.read().expect("read"));
        // A child with a valid checksum and id, stamped by a later txn: what a
        // page reused while still reachable would look like.
        let (victim, bytes) = reachable[1].clone();
        let mut newer = BytesMut::from(&bytes[..]);
        write_u64(&mut newer, TXN_ID_OFFSET, 99);
        store.set_page(victim, seal_page(newer));
        let error = read_everything(&tree, &model).expect_err("stale parent unnoticed");
        assert_eq!(error.page_id(), Some(victim), "{error}");
        assert!(error.to_string().contains("reused while reachable"), "{error}");
    });
}

#[test]
fn damaged_free_list_fails_open_with_its_page() {
    run(async {
        let store = MemPageStore::new(4096);
        let tree = open(&store).await;
        let mut model = Model::new();
        for round in 0..3 {
            commit_round(&tree, round, &mut model).await;
        }
        let free_list = tree.read().expect("read").meta().free_list;
        assert_ne!(free_list, PageId(0), "three overwriting commits leave free pages");
        drop(tree);
        store.flip_bit(free_list, 1000);
        match BTree::open(store.clone(), BTreeOptions::default()).await {
            Err(error) => assert_eq!(error.page_id(), Some(free_list), "{error}"),
            Ok(_) => panic!("opened with a damaged free list"),
        }
    });
}
