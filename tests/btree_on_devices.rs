//! Proves the B+tree runs on the real page devices: the production file (read
//! through a read-only mmap) and the fault-injecting memory disk, including a
//! reopen after a crash of the memory disk that keeps only synced data.

#![cfg(not(madsim))]

use braid::btree::{BTree, BTreeOptions};
use braid::io::{Dir, FileDir, MemDir};
use bytes::Bytes;
use rand::SeedableRng;

fn value(index: u32) -> Bytes {
    Bytes::from(format!("value-{index}-").repeat(1 + (index % 50) as usize))
}

async fn fill<S: braid::io::PageStore>(tree: &BTree<S>, from: u32, to: u32) {
    let mut txn = tree.write().await.unwrap();
    for index in from..to {
        txn.put(format!("key-{index:05}").as_bytes(), value(index)).unwrap();
    }
    txn.commit().await.unwrap();
}

async fn check<S: braid::io::PageStore>(tree: &BTree<S>, count: u32) {
    let read = tree.read().unwrap();
    let all = read.range(b"", None).unwrap();
    assert_eq!(all.len(), count as usize);
    for (index, (key, stored)) in all.iter().enumerate() {
        assert_eq!(key.as_ref(), format!("key-{index:05}").as_bytes());
        assert_eq!(*stored, value(index as u32));
    }
}

#[tokio::test]
async fn btree_on_the_file_device_survives_reopen() {
    let path = std::env::temp_dir().join(format!("braid-btree-file-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    {
        let dir = FileDir::open(&path).unwrap();
        let pages = dir.open_pages("db", 4096).await.unwrap();
        let tree = BTree::open(pages, BTreeOptions::default()).await.unwrap();
        fill(&tree, 0, 2000).await;
        fill(&tree, 2000, 3000).await;
        check(&tree, 3000).await;
    }
    let dir = FileDir::open(&path).unwrap();
    let pages = dir.open_pages("db", 4096).await.unwrap();
    let tree = BTree::open(pages, BTreeOptions::default()).await.unwrap();
    check(&tree, 3000).await;
    std::fs::remove_dir_all(&path).unwrap();
}

#[tokio::test]
async fn btree_on_the_memory_disk_keeps_committed_data_through_a_crash() {
    let dir = MemDir::new();
    {
        let pages = dir.open_pages("db", 4096).await.unwrap();
        // Creating the file is durable only once its directory is synced
        // (without this the crash below reverts the file's creation).
        dir.sync_dir().await.unwrap();
        let tree = BTree::open(pages, BTreeOptions::default()).await.unwrap();
        fill(&tree, 0, 500).await;
        // Written but never committed: must vanish.
        let mut txn = tree.write().await.unwrap();
        txn.put(b"zz-uncommitted", Bytes::from_static(b"x")).unwrap();
        drop(txn);
    }
    dir.crash(&mut rand::rngs::SmallRng::seed_from_u64(7));
    let pages = dir.open_pages("db", 4096).await.unwrap();
    let tree = BTree::open(pages, BTreeOptions::default()).await.unwrap();
    check(&tree, 500).await;
}
