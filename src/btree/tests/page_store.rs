//! An in-memory `PageStore` for the B+tree's tests, with a written image and a
//! durable one, and page-level crash control (per-page fates, forks, failing
//! the n-th operation) that the crash enumeration needs. `io::MemDir` models
//! whole-disk faults for the WAL and the simulation; this store is finer-grained.
//!
//! Fault model:
//! - `write_pages` lands in a pending set, readable at once; `sync` makes the
//!   whole pending set durable.
//! - `crash(rng)` decides each pending page independently: kept, dropped, or
//!   torn at a 512-byte boundary (new sectors up to the tear, old after it).
//!   A crash may also keep a grown file size without the data (zero tail).
//! - `fail_at_op(n)`: the n-th later `write_pages`/`sync` call fails (its
//!   pages still land in the pending set: they may or may not have reached the
//!   disk) and so does every later one until `crash`.
//! - Targeted damage for corruption tests: bit flips, copies of one page over
//!   another (misdirected writes), latent read errors.

use std::collections::{BTreeMap, BTreeSet};
use std::future::{ready, Future};
use std::io;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use rand::Rng;

use crate::io::{PageId, PageStore};

const SECTOR_BYTES: usize = 512;

/// What a crash does to one unsynced page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashFate {
    Keep,
    Drop,
    /// The first `sectors_written` 512-byte sectors are new, the rest old.
    Tear {
        sectors_written: usize,
    },
}

/// Clones share one store, so a test can keep a handle across reopens.
#[derive(Clone)]
pub struct MemPageStore {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    page_size: usize,
    /// Durable page contents; a page missing here reads as zeros.
    durable: BTreeMap<u64, Bytes>,
    durable_page_count: u64,
    pending: BTreeMap<u64, Bytes>,
    page_count: u64,
    /// Mutating calls made so far.
    ops: u64,
    fail_at_op: Option<u64>,
    read_errors: BTreeSet<u64>,
}

impl Inner {
    /// Counts a mutating call; whether it must fail.
    fn next_op_fails(&mut self) -> bool {
        self.ops += 1;
        self.fail_at_op.is_some_and(|at| self.ops > at)
    }
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected failure: {what}"))
}

impl MemPageStore {
    pub fn new(page_size: usize) -> MemPageStore {
        let inner = Inner {
            page_size,
            durable: BTreeMap::new(),
            durable_page_count: 0,
            pending: BTreeMap::new(),
            page_count: 0,
            ops: 0,
            fail_at_op: None,
            read_errors: BTreeSet::new(),
        };
        MemPageStore {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("test store lock poisoned")
    }

    /// Mutating calls (`write_pages` and `sync`) made so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// The call after `ops` more successful ones fails, and all after it.
    pub fn fail_at_op(&self, ops: u64) {
        let mut inner = self.lock();
        inner.fail_at_op = Some(inner.ops + ops);
    }

    pub fn pending_pages(&self) -> usize {
        self.lock().pending.len()
    }

    /// Power loss: unsynced pages are kept, dropped or torn, each on its own.
    /// Clears injected write failures (the machine restarts).
    pub fn crash(&self, rng: &mut impl Rng) {
        let sectors = self.lock().page_size / SECTOR_BYTES;
        let keep_grown_size = rng.gen_bool(0.5);
        self.crash_with(
            |_| match rng.gen_range(0..3) {
                0 => CrashFate::Keep,
                1 => CrashFate::Drop,
                _ => CrashFate::Tear {
                    sectors_written: rng.gen_range(1..sectors.max(2)),
                },
            },
            keep_grown_size,
        );
    }

    /// Power loss with each unsynced page's fate chosen by the caller (for
    /// enumerating crash states); `keep_grown_size` keeps a file size that
    /// grew even where the data did not land.
    pub fn crash_with(&self, mut fate: impl FnMut(PageId) -> CrashFate, keep_grown_size: bool) {
        let mut inner = self.lock();
        let pending = std::mem::take(&mut inner.pending);
        let page_size = inner.page_size;
        let mut grown_size = inner.durable_page_count;
        for (id, new) in pending {
            grown_size = grown_size.max(id + 1);
            let landed = match fate(PageId(id)) {
                CrashFate::Keep => new,
                CrashFate::Drop => continue,
                CrashFate::Tear { sectors_written } => {
                    let old = inner
                        .durable
                        .get(&id)
                        .cloned()
                        .unwrap_or_else(|| Bytes::from(vec![0; page_size]));
                    let tear_at = (sectors_written * SECTOR_BYTES).min(page_size);
                    let mut torn = BytesMut::from(&new[..tear_at]);
                    torn.extend_from_slice(&old[tear_at..]);
                    torn.freeze()
                }
            };
            inner.durable.insert(id, landed);
            inner.durable_page_count = inner.durable_page_count.max(id + 1);
        }
        if keep_grown_size {
            inner.durable_page_count = grown_size;
        }
        inner.page_count = inner.durable_page_count;
        inner.fail_at_op = None;
    }

    /// Ids of the written but unsynced pages.
    pub fn pending_ids(&self) -> Vec<PageId> {
        self.lock().pending.keys().map(|id| PageId(*id)).collect()
    }

    /// An independent copy of both images (clones of the result share with each other, not with `self`).
    pub fn fork(&self) -> MemPageStore {
        let inner = self.lock();
        let copy = Inner {
            page_size: inner.page_size,
            durable: inner.durable.clone(),
            durable_page_count: inner.durable_page_count,
            pending: inner.pending.clone(),
            page_count: inner.page_count,
            ops: inner.ops,
            fail_at_op: inner.fail_at_op,
            read_errors: inner.read_errors.clone(),
        };
        MemPageStore {
            inner: Arc::new(Mutex::new(copy)),
        }
    }

    /// Flips one bit of a page wherever it is stored (durable and written images).
    pub fn flip_bit(&self, id: PageId, bit: usize) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let page_size = inner.page_size;
        let mut found = false;
        for image in [&mut inner.durable, &mut inner.pending] {
            if let Some(page) = image.get_mut(&id.0) {
                let mut bytes = BytesMut::from(&page[..]);
                bytes[bit / 8 % page_size] ^= 1 << (bit % 8);
                *page = bytes.freeze();
                found = true;
            }
        }
        assert!(found, "flip_bit on page {} that was never written", id.0);
    }

    /// Replaces a page's durable and written contents (tearing, misdirection).
    pub fn set_page(&self, id: PageId, contents: Bytes) {
        let mut inner = self.lock();
        assert_eq!(contents.len(), inner.page_size, "set_page needs a whole page");
        inner.pending.remove(&id.0);
        inner.durable.insert(id.0, contents);
        inner.durable_page_count = inner.durable_page_count.max(id.0 + 1);
        inner.page_count = inner.page_count.max(id.0 + 1);
    }

    /// Current contents of a page, as a read would see them.
    pub fn page(&self, id: PageId) -> Bytes {
        let inner = self.lock();
        inner
            .pending
            .get(&id.0)
            .or_else(|| inner.durable.get(&id.0))
            .cloned()
            .unwrap_or_else(|| Bytes::from(vec![0; inner.page_size]))
    }

    /// Reads of `id` fail from now on (a latent sector error).
    pub fn fail_reads(&self, id: PageId) {
        self.lock().read_errors.insert(id.0);
    }
}

impl PageStore for MemPageStore {
    fn page_size(&self) -> usize {
        self.lock().page_size
    }

    fn page_count(&self) -> u64 {
        self.lock().page_count
    }

    fn read_page(&self, id: PageId) -> io::Result<Bytes> {
        let inner = self.lock();
        if inner.read_errors.contains(&id.0) {
            return Err(injected("latent sector error"));
        }
        if id.0 >= inner.page_count {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("page {} past the end", id.0),
            ));
        }
        Ok(inner
            .pending
            .get(&id.0)
            .or_else(|| inner.durable.get(&id.0))
            .cloned()
            .unwrap_or_else(|| Bytes::from(vec![0; inner.page_size])))
    }

    fn write_pages(&self, pages: Vec<(PageId, Bytes)>) -> impl Future<Output = io::Result<()>> + Send {
        let mut inner = self.lock();
        let fails = inner.next_op_fails();
        for (id, page) in pages {
            assert_eq!(
                page.len(),
                inner.page_size,
                "page {} written with {} bytes",
                id.0,
                page.len()
            );
            inner.pending.insert(id.0, page);
            inner.page_count = inner.page_count.max(id.0 + 1);
        }
        ready(if fails { Err(injected("write")) } else { Ok(()) })
    }

    fn sync(&self) -> impl Future<Output = io::Result<()>> + Send {
        let mut inner = self.lock();
        if inner.next_op_fails() {
            return ready(Err(injected("sync")));
        }
        let pending = std::mem::take(&mut inner.pending);
        inner.durable.extend(pending);
        inner.durable_page_count = inner.page_count;
        ready(Ok(()))
    }
}
