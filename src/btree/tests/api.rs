//! Proves the API's edges: empty trees, key and page-size limits, one writer
//! at a time, poisoning after a failed or cancelled commit, and values far
//! above etcd's 1.5 MiB request limit.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use super::{open, run, value_of};
use crate::btree::tests::page_store::MemPageStore;
use crate::btree::{BTree, BTreeError, BTreeOptions, TxnId};
use crate::io::{PageId, PageStore};

fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn empty_tree_and_unchanged_commits() {
    run(async {
        let store = MemPageStore::new(4096);
        let tree = open(&store).await;
        assert_eq!(tree.stats().txn_id, TxnId(0));
        let read = tree.read().expect("read");
        assert_eq!(read.get(b"anything").expect("get"), None);
        assert!(read.range(b"", None).expect("range").is_empty());
        let ops = store.ops();
        let mut write = tree.write().await.expect("write");
        assert!(!write.delete(b"missing").expect("delete"));
        assert_eq!(write.get(b"missing").expect("get"), None);
        assert_eq!(write.commit().await.expect("commit"), TxnId(0));
        assert_eq!(store.ops(), ops, "a transaction that changed nothing writes nothing");
        let stats = tree.stats();
        assert_eq!((stats.page_count, stats.free_page_count, stats.entry_count), (3, 0, 0));
        assert_eq!((stats.file_bytes, stats.in_use_bytes), (3 * 4096, 3 * 4096));
    });
}

#[test]
fn ranges_respect_bounds_and_own_writes() {
    run(async {
        let store = MemPageStore::new(512);
        let tree = open(&store).await;
        let mut write = tree.write().await.expect("write");
        for index in 0..200u32 {
            write
                .put(format!("{index:03}").as_bytes(), Bytes::from(index.to_string()))
                .expect("put");
        }
        write.commit().await.expect("commit");
        let mut write = tree.write().await.expect("write");
        write.put(b"0505", Bytes::from_static(b"new")).expect("put");
        assert!(write.delete(b"051").expect("delete"));
        let keys = |entries: Vec<(Bytes, Bytes)>| entries.into_iter().map(|(key, _)| key).collect::<Vec<_>>();
        assert_eq!(
            keys(write.range(b"050", Some(b"053")).expect("range")),
            ["050", "0505", "052"]
        );
        assert!(write.range(b"053", Some(b"050")).expect("range").is_empty());
        assert!(write.range(b"050", Some(b"050")).expect("range").is_empty());
        let read = tree.read().expect("read");
        assert_eq!(
            keys(read.range(b"050", Some(b"053")).expect("range")),
            ["050", "051", "052"]
        );
        assert_eq!(read.range(b"19", None).expect("range").len(), 10);
        let first_three: Vec<_> = read
            .range_iter(b"", None)
            .take(3)
            .collect::<Result<_, _>>()
            .expect("iter");
        assert_eq!(keys(first_three), ["000", "001", "002"]);
    });
}

#[test]
fn key_limit_is_an_error_not_a_panic() {
    run(async {
        for page_size in [512, 4096, 65536] {
            let store = MemPageStore::new(page_size);
            let tree = BTree::open(store.clone(), BTreeOptions { page_size })
                .await
                .expect("open");
            let max = tree.key_bytes_max();
            assert_eq!(max, page_size / 2 - 64);
            let mut write = tree.write().await.expect("write");
            let too_long = vec![b'k'; max + 1];
            match write.put(&too_long, Bytes::from_static(b"v")) {
                Err(BTreeError::KeyTooLarge { len, max: limit }) => {
                    assert_eq!((len, limit), (max + 1, max))
                }
                other => panic!("expected KeyTooLarge, got {other:?}"),
            }
            assert!(!write.delete(&too_long).expect("delete of an impossible key"));
            // The refused put left the transaction usable; the longest keys fit,
            // many at once, with inline and overflow values.
            for index in 0..40u8 {
                let mut key = vec![index; max];
                key[0] = index;
                let value = value_of(usize::from(index) * 97, index.into());
                write.put(&key, value.clone()).expect("put of a maximal key");
                assert_eq!(write.get(&key).expect("get"), Some(value));
            }
            write.commit().await.expect("commit");
            tree.verify().await.expect("verify");
        }
    });
}

#[test]
fn page_size_is_checked() {
    run(async {
        for page_size in [0, 256, 1000, 131072] {
            let result = BTree::open(MemPageStore::new(page_size), BTreeOptions { page_size }).await;
            assert!(matches!(result, Err(BTreeError::InvalidPageSize { .. })), "{page_size}");
        }
        let result = BTree::open(MemPageStore::new(1024), BTreeOptions { page_size: 4096 }).await;
        assert!(matches!(
            result,
            Err(BTreeError::PageSizeMismatch {
                expected: 4096,
                found: 1024
            })
        ));
    });
}

#[test]
fn values_beyond_etcd_request_limit_round_trip_and_free_their_pages() {
    run(async {
        let store = MemPageStore::new(4096);
        let tree = open(&store).await;
        let big = value_of(1536 * 1024 + 17, 1);
        let mut write = tree.write().await.expect("write");
        write.put(b"big", big.clone()).expect("put");
        write.put(b"small", Bytes::from_static(b"s")).expect("put");
        assert_eq!(write.get(b"big").expect("get"), Some(big.clone()));
        write.commit().await.expect("commit");
        assert_eq!(tree.read().expect("read").get(b"big").expect("get"), Some(big.clone()));
        let pages_with_one = tree.stats().page_count;
        assert!(pages_with_one > 390, "{pages_with_one} pages for 1.5 MiB");

        // Overwrites free the old chain, so the file does not keep growing.
        for tag in 2..6 {
            let mut write = tree.write().await.expect("write");
            write.put(b"big", value_of(1536 * 1024 + 17, tag)).expect("put");
            write.commit().await.expect("commit");
        }
        assert!(
            tree.stats().page_count < 2 * pages_with_one + 10,
            "{}",
            tree.stats().page_count
        );
        let mut write = tree.write().await.expect("write");
        assert!(write.delete(b"big").expect("delete"));
        write.commit().await.expect("commit");
        let report = tree.verify().await.expect("verify");
        assert_eq!((report.entry_count, report.overflow_pages), (1, 0));
        assert!(tree.stats().free_page_count > 380);
    });
}

#[test]
fn one_writer_at_a_time_readers_never_wait() {
    run(async {
        let store = MemPageStore::new(4096);
        let tree = open(&store).await;
        let mut first = tree.write().await.expect("write");
        first.put(b"a", Bytes::from_static(b"1")).expect("put");
        let mut second = pin!(tree.write());
        assert!(poll_once(second.as_mut()).is_pending(), "a second writer waits");
        let read = tree.read().expect("readers do not wait for the writer");
        assert_eq!(read.get(b"a").expect("get"), None, "uncommitted writes are invisible");
        first.commit().await.expect("commit");
        let second = second.await.expect("the second writer runs after the first ends");
        assert_eq!(second.get(b"a").expect("get"), Some(Bytes::from_static(b"1")));
        assert_eq!(read.get(b"a").expect("get"), None, "the old reader keeps its snapshot");
    });
}

#[test]
fn failed_commit_poisons_until_reopen() {
    run(async {
        let store = MemPageStore::new(4096);
        let tree = open(&store).await;
        let mut write = tree.write().await.expect("write");
        write.put(b"kept", Bytes::from_static(b"1")).expect("put");
        write.commit().await.expect("commit");
        let reader = tree.read().expect("read");
        let mut write = tree.write().await.expect("write");
        write.put(b"lost", Bytes::from_static(b"2")).expect("put");
        store.fail_at_op(1);
        assert!(matches!(write.commit().await, Err(BTreeError::Io(_))));
        assert!(store.pending_pages() > 0, "the failed sync left the new pages unsynced");
        assert!(matches!(tree.read(), Err(BTreeError::Poisoned { .. })));
        assert!(matches!(tree.write().await, Err(BTreeError::Poisoned { .. })));
        assert!(matches!(tree.verify().await, Err(BTreeError::Poisoned { .. })));
        // A reader from before keeps working: nothing it reaches was touched.
        assert_eq!(reader.get(b"kept").expect("get"), Some(Bytes::from_static(b"1")));
        drop(reader);
        drop(tree);
        store.crash(&mut <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(1));
        let tree = open(&store).await;
        assert_eq!(tree.read().expect("read").get(b"lost").expect("get"), None);
        tree.verify().await.expect("verify");
    });
}

/// A store whose syncs hang while `stalled` is set, to cancel a commit mid-way.
#[derive(Clone)]
struct StallingStore {
    inner: MemPageStore,
    stalled: Arc<AtomicBool>,
}

impl PageStore for StallingStore {
    fn page_size(&self) -> usize {
        self.inner.page_size()
    }
    fn page_count(&self) -> u64 {
        self.inner.page_count()
    }
    fn read_page(&self, id: PageId) -> io::Result<Bytes> {
        self.inner.read_page(id)
    }
    fn write_pages(&self, pages: Vec<(PageId, Bytes)>) -> impl Future<Output = io::Result<()>> + Send {
        self.inner.write_pages(pages)
    }
    fn sync(&self) -> impl Future<Output = io::Result<()>> + Send {
        let sync = (!self.stalled.load(Ordering::SeqCst)).then(|| self.inner.sync());
        async move {
            match sync {
                Some(sync) => sync.await,
                None => std::future::pending().await,
            }
        }
    }
}

#[test]
fn cancelled_commit_poisons() {
    run(async {
        let store = StallingStore {
            inner: MemPageStore::new(4096),
            stalled: Arc::new(AtomicBool::new(false)),
        };
        let tree = BTree::open(store.clone(), BTreeOptions::default()).await.expect("open");
        let mut write = tree.write().await.expect("write");
        write.put(b"k", Bytes::from_static(b"v")).expect("put");
        store.stalled.store(true, Ordering::SeqCst);
        {
            let mut commit = pin!(write.commit());
            assert!(poll_once(commit.as_mut()).is_pending(), "the commit waits on its sync");
        }
        assert!(
            matches!(tree.read(), Err(BTreeError::Poisoned { .. })),
            "a dropped commit poisons"
        );
    });
}
