//! Proves a snapshot stream restores to an identical, writable tree even while
//! the writer keeps committing, and that truncated, damaged, reordered or
//! duplicated streams are refused (S9).

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::Rng;

use super::{assert_same, open, random_key, random_value, rng_for, run, seeds, Model};
use crate::btree::tests::page_store::MemPageStore;
use crate::btree::{BTree, BTreeError, BTreeOptions, SnapshotRestore};

async fn random_tree(
    rng: &mut SmallRng,
    page_size: usize,
    commits: usize,
) -> (MemPageStore, BTree<MemPageStore>, Model) {
    let store = MemPageStore::new(page_size);
    let tree = open(&store).await;
    let key_bytes_max = tree.key_bytes_max();
    let mut model = Model::new();
    for _ in 0..commits {
        let mut write = tree.write().await.expect("write");
        for _ in 0..60 {
            let key = random_key(rng, 300, key_bytes_max);
            if rng.gen_bool(0.2) {
                write.delete(&key).expect("delete");
                model.remove(&key);
            } else {
                let value = random_value(rng, 0);
                write.put(&key, value.clone()).expect("put");
                model.insert(key, value);
            }
        }
        write.commit().await.expect("commit");
    }
    (store, tree, model)
}

/// Feeds `bytes` in random chunks, then finishes.
async fn restore(rng: &mut SmallRng, page_size: usize, bytes: &[u8]) -> Result<BTree<MemPageStore>, BTreeError> {
    let mut restore = SnapshotRestore::new(MemPageStore::new(page_size), BTreeOptions { page_size })?;
    let mut rest = bytes;
    while !rest.is_empty() {
        let take = rng.gen_range(1..=rest.len().min(3 * page_size));
        restore.feed(&rest[..take]).await?;
        rest = &rest[take..];
    }
    restore.finish().await
}

fn stream_bytes(pages: &[Bytes]) -> Vec<u8> {
    pages.iter().flat_map(|page| page.iter().copied()).collect()
}

#[test]
fn snapshot_restores_identical_writable_tree() {
    for seed in seeds(8, 6) {
        let mut rng = rng_for(seed);
        let page_size = if rng.gen_bool(0.5) { 512 } else { 4096 };
        run(async {
            let (_store, tree, mut model) = random_tree(&mut rng, page_size, 8).await;
            let read = tree.read().expect("read");
            let mut stream = read.snapshot();
            let total_bytes = stream.total_bytes().expect("total bytes");
            let snapshot_model = model.clone();
            // Half the stream now, then the writer rewrites most of the tree,
            // then the rest: the stream still shows its commit.
            let mut pages: Vec<Bytes> = stream.by_ref().take(5).collect::<Result<_, _>>().expect("stream");
            let mut write = tree.write().await.expect("write");
            for key in snapshot_model.keys() {
                write.put(key, Bytes::from_static(b"changed")).expect("put");
                model.insert(key.clone(), Bytes::from_static(b"changed"));
            }
            write.commit().await.expect("commit");
            pages.extend(stream.collect::<Result<Vec<_>, _>>().expect("stream"));
            assert_eq!(
                (pages.len() * page_size) as u64,
                total_bytes,
                "seed {seed}: total_bytes announced before streaming"
            );

            let restored = restore(&mut rng, page_size, &stream_bytes(&pages))
                .await
                .expect("restore");
            assert_eq!(restored.stats().txn_id, read.txn_id());
            assert_same(
                &restored.read().expect("read"),
                &snapshot_model,
                &format!("seed {seed}: restored"),
            );
            restored
                .verify()
                .await
                .unwrap_or_else(|error| panic!("seed {seed}: verify restored: {error}"));

            // The restored tree takes writes and reuses the pages that did not travel.
            let before = restored.stats();
            let mut write = restored.write().await.expect("write");
            write.put(b"after-restore", Bytes::from_static(b"yes")).expect("put");
            write.commit().await.expect("commit");
            assert!(restored.stats().page_count <= before.page_count || before.free_page_count == 0);
            restored.verify().await.expect("verify after a write");
            assert_same(&tree.read().expect("read"), &model, "source tree unaffected");
        });
    }
}

#[test]
fn damaged_streams_are_refused() {
    for seed in seeds(9, 4) {
        let mut rng = rng_for(seed);
        run(async {
            let page_size = 512;
            let (_store, tree, _model) = random_tree(&mut rng, page_size, 4).await;
            let pages: Vec<Bytes> = tree
                .read()
                .expect("read")
                .snapshot()
                .collect::<Result<_, _>>()
                .expect("stream");
            assert!(pages.len() > 6, "a tree of several pages");
            let body = 1 + rng.gen_range(0..pages.len() - 2);

            let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
            let whole = stream_bytes(&pages);
            cases.push((
                "truncated mid-page",
                whole[..whole.len() - rng.gen_range(1..page_size)].to_vec(),
            ));
            cases.push(("no trailer", stream_bytes(&pages[..pages.len() - 1])));
            cases.push(("no header", stream_bytes(&pages[1..])));
            let mut missing = pages.clone();
            missing.remove(body);
            cases.push(("a page missing", stream_bytes(&missing)));
            let mut doubled = pages.clone();
            doubled.insert(body, pages[body].clone());
            cases.push(("a page twice", stream_bytes(&doubled)));
            let mut swapped = pages.clone();
            swapped.swap(1, pages.len() - 2);
            cases.push(("pages reordered", stream_bytes(&swapped)));
            let mut flipped = whole.clone();
            flipped[body * page_size + rng.gen_range(0..page_size)] ^= 1 << rng.gen_range(0..8);
            cases.push(("a bit flipped", flipped));
            let mut extra = whole.clone();
            extra.extend_from_slice(&pages[body]);
            cases.push(("data after the trailer", extra));

            for (name, bytes) in cases {
                match restore(&mut rng, page_size, &bytes).await {
                    Err(BTreeError::InvalidSnapshot { reason }) => {
                        println!("{name}: refused: {reason}")
                    }
                    Err(error) => panic!("seed {seed}: {name}: unexpected error {error}"),
                    Ok(_) => panic!("seed {seed}: {name}: accepted"),
                }
            }
            let accepted = restore(&mut rng, page_size, &whole)
                .await
                .expect("the intact stream restores");
            accepted.verify().await.expect("verify");
        });
    }
}

#[test]
fn restore_needs_an_empty_store_of_the_same_page_size() {
    run(async {
        let store = MemPageStore::new(4096);
        let _tree = open(&store).await;
        let error = SnapshotRestore::new(store.clone(), BTreeOptions::default())
            .err()
            .expect("non-empty store refused");
        assert!(matches!(error, BTreeError::InvalidSnapshot { .. }), "{error}");
        let error = SnapshotRestore::new(MemPageStore::new(512), BTreeOptions::default())
            .err()
            .expect("size mismatch");
        assert!(
            matches!(
                error,
                BTreeError::PageSizeMismatch {
                    expected: 4096,
                    found: 512
                }
            ),
            "{error}"
        );

        let mut restore = SnapshotRestore::new(MemPageStore::new(512), BTreeOptions { page_size: 512 }).expect("new");
        let from_4096 = open(&MemPageStore::new(4096)).await;
        let header = from_4096
            .read()
            .expect("read")
            .snapshot()
            .next()
            .expect("header")
            .expect("header page");
        let error = restore
            .feed(&header)
            .await
            .expect_err("a 4096-byte header in a 512-byte restore");
        assert!(matches!(error, BTreeError::InvalidSnapshot { .. }), "{error}");
    });
}
