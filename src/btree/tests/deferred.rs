//! Proves deferred commits: each is visible to readers at once, a crash (unsynced pages
//! kept, dropped or torn) reopens exactly the last durable commit however many deferred
//! commits followed it, `sync` and a durable commit make everything before them durable,
//! a reader of an old commit stays intact while deferred commits reuse pages, and the
//! free list reaches the disk only with a durable commit.

use rand::Rng;

use super::{assert_same, open, random_key, random_value, rng_for, run, seeds, Model};
use crate::btree::page::{check_page, Layout, PageType};
use crate::btree::tests::page_store::MemPageStore;
use crate::btree::TxnId;

#[test]
fn a_crash_reopens_the_last_durable_commit() {
    for seed in seeds(11, 48) {
        let mut rng = rng_for(seed);
        let page_size = if rng.gen_bool(0.5) { 512 } else { 4096 };
        run(async {
            let store = MemPageStore::new(page_size);
            let mut tree = open(&store).await;
            let (mut durable, mut newest) = (Model::new(), Model::new());
            let mut durable_txn = TxnId(0);
            let mut crashes = 0;
            for round in 0..120 {
                let context = format!("seed {seed} round {round}");
                let key_bytes_max = tree.key_bytes_max();
                let mut write = tree.write().await.expect("write");
                for _ in 0..rng.gen_range(1..30) {
                    let key = random_key(&mut rng, 150, key_bytes_max);
                    if rng.gen_bool(0.3) {
                        write.delete(&key).expect("delete");
                        newest.remove(&key);
                    } else {
                        let value = random_value(&mut rng, 20);
                        write.put(&key, value.clone()).expect("put");
                        newest.insert(key, value);
                    }
                }
                match rng.gen_range(0..10) {
                    0 => {
                        durable_txn = write.commit().await.expect("durable commit");
                        durable = newest.clone();
                    }
                    _ => {
                        write.commit_deferred().await.expect("deferred commit");
                    }
                }
                assert_same(&tree.read().expect("read"), &newest, &format!("{context}: newest"));
                if rng.gen_bool(0.05) {
                    durable_txn = tree.sync().await.expect("sync");
                    durable = newest.clone();
                }
                assert_eq!(tree.durable_txn().await, durable_txn, "{context}");
                if rng.gen_bool(0.1) {
                    crashes += 1;
                    drop(tree);
                    store.crash(&mut rng);
                    tree = open(&store).await;
                    assert_eq!(tree.stats().txn_id, durable_txn, "{context}: reopened txn");
                    assert_same(
                        &tree.read().expect("read"),
                        &durable,
                        &format!("{context}: after crash"),
                    );
                    tree.verify()
                        .await
                        .unwrap_or_else(|error| panic!("{context}: verify after crash: {error}"));
                    newest = durable.clone();
                }
            }
            println!("seed {seed}: {crashes} crashes");
        });
    }
}

#[test]
fn a_reader_keeps_its_commit_while_deferred_commits_reuse_pages() {
    for seed in seeds(12, 16) {
        let mut rng = rng_for(seed);
        run(async {
            let store = MemPageStore::new(512);
            let tree = open(&store).await;
            let mut model = Model::new();
            for round in 0..60 {
                let key_bytes_max = tree.key_bytes_max();
                let mut write = tree.write().await.expect("write");
                for _ in 0..20 {
                    let key = random_key(&mut rng, 80, key_bytes_max);
                    let value = random_value(&mut rng, 0);
                    write.put(&key, value.clone()).expect("put");
                    model.insert(key, value);
                }
                write.commit_deferred().await.expect("deferred commit");
                let held = tree.read().expect("read");
                let held_model = model.clone();
                for _ in 0..5 {
                    let mut write = tree.write().await.expect("write");
                    for _ in 0..20 {
                        let key = random_key(&mut rng, 80, key_bytes_max);
                        write.delete(&key).expect("delete");
                        model.remove(&key);
                    }
                    write.commit_deferred().await.expect("deferred commit");
                }
                if round % 7 == 0 {
                    tree.sync().await.expect("sync");
                }
                assert_same(&held, &held_model, &format!("seed {seed} round {round}: held reader"));
            }
            tree.verify().await.expect("verify");
        });
    }
}

#[test]
fn deferred_commits_leave_the_free_list_to_the_durable_one() {
    for seed in seeds(13, 8) {
        let mut rng = rng_for(seed);
        run(async {
            let page_size = 512;
            let layout = Layout::new(page_size).expect("layout");
            let store = MemPageStore::new(page_size);
            let tree = open(&store).await;
            let mut model = Model::new();
            let key_bytes_max = tree.key_bytes_max();
            let pending_types = |store: &MemPageStore| -> Vec<PageType> {
                let ids = store.pending_ids();
                let headers = ids.iter().map(|id| check_page(layout, *id, &store.page(*id)));
                headers.map(|header| header.expect("pending page").page_type).collect()
            };
            for round in 0..12 {
                let context = format!("seed {seed} round {round}");
                // Rewrites most keys, so every commit frees pages.
                for _ in 0..6 {
                    let mut write = tree.write().await.expect("write");
                    for _ in 0..25 {
                        let key = random_key(&mut rng, 60, key_bytes_max);
                        let value = random_value(&mut rng, 0);
                        write.put(&key, value.clone()).expect("put");
                        model.insert(key, value);
                    }
                    write.commit_deferred().await.expect("deferred commit");
                }
                assert!(tree.stats().free_page_count > 0, "{context}: nothing freed");
                let types = pending_types(&store);
                assert!(
                    !types.contains(&PageType::FreeList),
                    "{context}: a deferred commit wrote its free list: {types:?}"
                );
                // A snapshot of a deferred commit knows its size without a list on disk.
                let read = tree.read().expect("read");
                let mut stream = read.snapshot();
                let announced = stream.total_bytes().expect("total bytes");
                let streamed: usize = stream.by_ref().map(|page| page.expect("stream").len()).sum();
                assert_eq!(streamed as u64, announced, "{context}: snapshot size");
                drop((stream, read));
                tree.verify()
                    .await
                    .unwrap_or_else(|error| panic!("{context}: verify deferred: {error}"));
                tree.sync().await.expect("sync");
                // verify compares the list the durable meta names with the writer's.
                tree.verify()
                    .await
                    .unwrap_or_else(|error| panic!("{context}: verify durable: {error}"));
                assert_same(&tree.read().expect("read"), &model, &context);
            }
        });
    }
}

#[test]
fn deferred_commits_rewrite_the_pages_of_earlier_deferred_commits() {
    run(async {
        let store = MemPageStore::new(512);
        let tree = open(&store).await;
        let mut write = tree.write().await.expect("write");
        for index in 0..2000u32 {
            write
                .put(
                    format!("key-{index:05}").as_bytes(),
                    bytes::Bytes::from_static(b"initial"),
                )
                .expect("put");
        }
        write.commit().await.expect("durable commit");
        let durable_pages = tree.stats().page_count;
        // One small overwrite per commit, as braid's applies do between syncs:
        // each frees the path the previous one wrote, which the durable commit
        // never reached, so the next one takes those pages again.
        for round in 0..300u32 {
            let mut write = tree.write().await.expect("write");
            // Ten hot keys: a durable commit pins only the leaves it reached.
            let key = format!("key-{:05}", (round % 10) * 200);
            write
                .put(key.as_bytes(), bytes::Bytes::from(format!("value {round}")))
                .expect("put");
            write.commit_deferred().await.expect("deferred commit");
        }
        let grown = tree.stats().page_count - durable_pages;
        // The durable commit pins its own pages, so the first touch of each
        // leaf takes a new page; after that the commits take each other's
        // (before, every commit took a new page for every node on its path).
        assert!(grown < 40, "300 deferred commits grew the file by {grown} pages");
        tree.verify().await.expect("verify deferred");
        tree.sync().await.expect("sync");
        tree.verify().await.expect("verify durable");
    });
}
