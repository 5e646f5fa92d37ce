//! Proves a reader keeps its snapshot while the writer commits, that the
//! pages it reaches are not rewritten while it lives and are reused after it
//! drops, and that the file stops growing when the data stops growing.

use super::{assert_same, open, reachable_pages, run, value_of, Model};
use crate::btree::tests::page_store::MemPageStore;
use crate::btree::TxnId;
use crate::io::PageStore;

async fn overwrite_all(tree: &crate::btree::BTree<MemPageStore>, keys: u32, tag: u64, model: &mut Model) {
    let mut write = tree.write().await.expect("write");
    for index in 0..keys {
        let key = format!("key{index:05}").into_bytes();
        // Every 50th key carries an overflow value, so chains are freed too.
        let len = if index % 50 == 0 { 9000 } else { 100 };
        let value = value_of(len, tag * 100_000 + u64::from(index));
        write.put(&key, value.clone()).expect("put");
        model.insert(key, value);
    }
    write.commit().await.expect("commit");
}

#[test]
fn reader_keeps_snapshot_and_pins_its_pages() {
    run(async {
        let store = MemPageStore::new(4096);
        let tree = open(&store).await;
        let mut model = Model::new();
        overwrite_all(&tree, 500, 1, &mut model).await;
        let reader = tree.read().expect("read");
        let reader_model = model.clone();
        let pinned = reachable_pages(&reader);
        let pages_at_read = tree.stats().page_count;
        assert_eq!(tree.stats().oldest_reader_txn, Some(reader.txn_id()));

        for tag in 2..12 {
            overwrite_all(&tree, 500, tag, &mut model).await;
        }
        // Nothing the reader reaches was reused, so the file had to grow.
        assert_same(&reader, &reader_model, "old reader after 10 commits");
        for (id, bytes) in &pinned {
            assert!(
                store.page(*id) == *bytes,
                "pinned page {} was rewritten while a reader could see it",
                id.0
            );
        }
        let pages_with_reader = tree.stats().page_count;
        assert!(
            pages_with_reader > pages_at_read,
            "{pages_with_reader} <= {pages_at_read}"
        );
        assert_same(&tree.read().expect("read"), &model, "newest commit");

        // A clone is a second registration of the same snapshot.
        let clone = reader.clone();
        drop(reader);
        assert_eq!(tree.stats().oldest_reader_txn, Some(clone.txn_id()));
        overwrite_all(&tree, 500, 12, &mut model).await;
        assert_same(&clone, &reader_model, "clone of the old reader");
        drop(clone);
        assert_eq!(tree.stats().live_readers, 0);

        // With the reader gone its pages are reused: no growth from here on.
        let pages_after_drop = tree.stats().page_count;
        for tag in 13..33 {
            overwrite_all(&tree, 500, tag, &mut model).await;
        }
        let reused = pinned.iter().filter(|(id, bytes)| store.page(*id) != *bytes).count();
        assert!(reused > 0, "no page of the dropped reader was reused");
        assert!(
            tree.stats().page_count <= pages_after_drop,
            "file grew from {pages_after_drop} to {} pages with no reader and no new data",
            tree.stats().page_count
        );
        tree.verify().await.expect("verify");
    });
}

#[test]
fn file_stops_growing_under_repeated_overwrites() {
    run(async {
        let store = MemPageStore::new(4096);
        let tree = open(&store).await;
        let mut model = Model::new();
        let mut high_water = Vec::new();
        for tag in 0..300 {
            overwrite_all(&tree, 200, tag, &mut model).await;
            high_water.push(tree.stats().page_count);
        }
        let early = high_water[..100].iter().max().copied().unwrap_or(0);
        let late = high_water[100..].iter().max().copied().unwrap_or(0);
        println!("page count: max {early} in commits 0..100, max {late} in 100..300");
        assert!(late <= early, "file kept growing: {early} -> {late} pages");
        assert_eq!(store.page_count(), tree.stats().page_count);
        let stats = tree.stats();
        assert_eq!(stats.in_use_bytes, (stats.page_count - stats.free_page_count) * 4096);
        assert_same(&tree.read().expect("read"), &model, "after 300 overwrites");
        tree.verify().await.expect("verify");
    });
}

#[test]
fn readers_at_different_commits_each_see_their_own() {
    run(async {
        let store = MemPageStore::new(512);
        let tree = open(&store).await;
        let mut model = Model::new();
        let mut readers = Vec::new();
        for tag in 1..8 {
            overwrite_all(&tree, 60 * tag as u32, tag, &mut model).await;
            readers.push((tree.read().expect("read"), model.clone()));
        }
        assert_eq!(tree.stats().oldest_reader_txn, Some(TxnId(1)));
        // Dropping the newest readers first leaves the oldest pinning everything after it.
        while let Some((reader, expected)) = readers.pop() {
            overwrite_all(&tree, 100, 100 + reader.txn_id().0, &mut model).await;
            for (older, older_model) in &readers {
                assert_same(older, older_model, &format!("reader of txn {}", older.txn_id().0));
            }
            assert_same(&reader, &expected, &format!("reader of txn {}", reader.txn_id().0));
        }
        tree.verify().await.expect("verify");
    });
}

#[test]
fn handles_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    run(async {
        let store = MemPageStore::new(4096);
        assert_send(&crate::btree::BTree::open(
            store.clone(),
            crate::btree::BTreeOptions::default(),
        ));
        let tree = open(&store).await;
        assert_send(&tree.verify());
        let mut restore = crate::btree::SnapshotRestore::new(MemPageStore::new(4096), Default::default()).expect("new");
        assert_send(&restore.feed(b""));
        let read = tree.read().expect("read");
        assert_send(&read);
        assert_send(&read.snapshot());
        let write = tree.write().await.expect("write");
        assert_send(&write);
        let commit = write.commit();
        assert_send(&commit);
        assert_eq!(
            commit.await.expect("commit"),
            TxnId(0),
            "an unchanged txn commits nothing"
        );
        assert_send(&tree.write());
    });
}
