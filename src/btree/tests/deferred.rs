//! Proves deferred commits: each is visible to readers at once, a crash (unsynced pages
//! kept, dropped or torn) reopens exactly the last durable commit however many deferred
//! commits followed it, `sync` and a durable commit make everything before them durable,
//! and a reader of an old commit stays intact while deferred commits reuse pages.

use rand::Rng;

use super::{assert_same, open, random_key, random_value, rng_for, run, seeds, Model};
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
