//! In-memory, fault-injecting storage for tests and the simulation.
//!
//! # Fault model
//!
//! This is the disk braid is designed to survive; every fault below can be
//! switched on by a test or by the simulation's seed (TESTING.md S1–S11).
//!
//! * **Written is not durable.** Each file keeps a durable image and the set of
//!   4 KiB blocks written since they last became durable ("pending"). Reads see
//!   pending data at once. A `sync` captures the pending set *at the moment it
//!   is called*, waits out the fsync latency, and then makes exactly that capture
//!   durable, unless the disk crashed in between. Overlapping syncs may finish in
//!   any order; a capture older than one already applied is a no-op, because the
//!   newer capture contained everything the older one did.
//! * **Crash (power loss), `MemDir::crash`.** Every pending block, independently
//!   (which is what produces reordering), is kept, dropped, or torn at a 512-byte
//!   sector boundary; a block that reached the disk may also get one flipped bit
//!   among the bytes that write changed.
//!   A file whose length changed since its last sync ends up with either its old
//!   or its new length: a grown file may keep its new size while its data blocks
//!   were dropped, leaving a zero tail (ALICE's "size before data"). A crash
//!   never damages data that an earlier completed `sync` made durable, even in
//!   a block rewritten since: sector writes are atomic (old or new sector).
//! * **Directory entries.** `open_*` (create), `rename` and `remove` change the
//!   visible namespace at once but become durable only through `sync_dir`; a
//!   crash reverts the namespace to the last durable one. A file left without a
//!   name in either namespace disappears, and handles to it fail.
//! * **fsync error (`fail_next_sync`).** The next `sync` or `sync_dir` returns
//!   `EIO`. As on Linux (fsyncgate), the blocks it would have written are marked
//!   clean but never reach the durable image: a retried sync "succeeds" without
//!   them. Only fail-stop is safe.
//! * **ENOSPC (`set_capacity_bytes`).** A write or preallocation that would make
//!   the files' total size (or reservation) exceed the capacity fails with
//!   `ENOSPC` and writes nothing.
//! * **Short write (`short_write_next`).** The next write stores only the first
//!   half of its buffer and then fails with `WriteZero`.
//! * **Latent sector error (`inject_read_error`).** Reads touching a marked
//!   4 KiB block fail with `EIO` until that block is written again.
//! * **Bit rot (`corrupt_durable`).** A bit flips in the durable image (and in
//!   what reads see), with no crash and no error.
//! * **Latency and stalls.** `set_sync_latency` makes every sync sleep (through
//!   `tokio::time::sleep`, so the simulation's clock); `stall_syncs` holds every
//!   sync after its capture until `resume_syncs`, which lets a test crash the
//!   disk while syncs are in flight without sleeping.
//!
//! Not modelled: misdirected writes, faults in the directory itself, and reads
//! returning stale data without an error.
//!
//! Randomness comes only from the RNG a caller passes to `crash`, so a run is
//! reproducible from its seed. Handles are cheap clones of an `Arc`: a harness
//! keeps a `MemDir` across a node's kill and restart, calls `crash`, and the
//! restarted node reopens its files from the durable image. Handles opened
//! before a crash fail with an error afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rand::RngCore;
use tokio::sync::watch;

use super::{Dir, LogDevice, PageId, PageStore, EIO, ENOSPC};

mod crash;

use crash::resolve_crash;
pub use crash::CrashOptions;

/// Granularity at which the disk tracks what is pending (one page-cache page).
pub const BLOCK_BYTES: usize = 4096;
/// The unit a torn write is torn at; writes of one sector are atomic.
pub const SECTOR_BYTES: usize = 512;

/// Counters for tests and the simulation's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemStats {
    pub appends: u64,
    pub page_writes: u64,
    pub syncs: u64,
    pub sync_dirs: u64,
    pub failed_syncs: u64,
    pub crashes: u64,
}

/// A directory of in-memory files with a written and a durable image.
#[derive(Clone, Default)]
pub struct MemDir {
    disk: Arc<MemDisk>,
}

/// One append-only file of a `MemDir`.
#[derive(Clone)]
pub struct MemLog {
    file: FileHandle,
}

/// One page file of a `MemDir`.
#[derive(Clone)]
pub struct MemPages {
    file: FileHandle,
    page_size: usize,
}

struct MemDisk {
    state: Mutex<DiskState>,
    /// `true` while syncs are held after their capture (`stall_syncs`).
    stalled: watch::Sender<bool>,
}

impl Default for MemDisk {
    fn default() -> Self {
        MemDisk {
            state: Mutex::new(DiskState::default()),
            stalled: watch::Sender::new(false),
        }
    }
}

#[derive(Default)]
struct DiskState {
    /// Bumped by every crash; handles and in-flight syncs from an older epoch are dead.
    epoch: u64,
    next_inode: u64,
    next_write_sequence: u64,
    inodes: BTreeMap<u64, MemFile>,
    /// The namespace that `list` and `open_*` see.
    names: BTreeMap<String, u64>,
    /// The namespace a crash reverts to.
    durable_names: BTreeMap<String, u64>,
    name_captures_started: u64,
    name_captures_applied: u64,
    faults: Faults,
    stats: MemStats,
}

#[derive(Default)]
struct Faults {
    sync_latency: Duration,
    failing_syncs: u32,
    capacity_bytes: Option<u64>,
    short_write_next: bool,
}

#[derive(Default)]
pub(super) struct MemFile {
    /// What reads see; its length is the file's logical length.
    data: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
    /// Blocks written since they were last made durable, with the sequence
    /// number of the latest write to each.
    // Invariant: a block absent from `pending` holds the same bytes in `data` and
    // `durable` over their common length, except blocks lost to a failed sync.
    pending: BTreeMap<u64, u64>,
    captures_started: u64,
    // Invariant: captures_applied <= captures_started.
    captures_applied: u64,
    reserved_bytes: u64,
    latent_errors: BTreeSet<u64>,
}

impl MemFile {
    fn usage_bytes(&self) -> u64 {
        (self.data.len() as u64).max(self.reserved_bytes)
    }

    fn mark_pending(&mut self, start: usize, end: usize, sequence: u64) {
        if start >= end {
            return;
        }
        for block in (start / BLOCK_BYTES)..end.div_ceil(BLOCK_BYTES) {
            self.pending.insert(block as u64, sequence);
            self.latent_errors.remove(&(block as u64));
        }
    }
}

/// What a `sync` saw when it was called.
struct FileCapture {
    epoch: u64,
    id: u64,
    len: usize,
    blocks: Vec<(u64, u64, Vec<u8>)>,
}

fn stale_handle_error() -> io::Error {
    io::Error::other("mem disk crashed since this handle was opened")
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(ENOSPC)
}

impl MemDisk {
    fn lock(&self) -> MutexGuard<'_, DiskState> {
        // A panicking test thread must not hide the disk from the others.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits out the fsync latency and any stall; never sleeps when both are off.
    async fn wait_for_sync(&self, latency: Duration) {
        if latency > Duration::ZERO {
            tokio::time::sleep(latency).await;
        }
        if *self.stalled.borrow() {
            let mut receiver = self.stalled.subscribe();
            // The sender lives as long as `self`, so this cannot fail.
            let _ = receiver.wait_for(|stalled| !*stalled).await;
        }
    }
}

impl DiskState {
    fn next_sequence(&mut self) -> u64 {
        self.next_write_sequence += 1;
        self.next_write_sequence
    }

    fn usage_bytes(&self) -> u64 {
        self.inodes.values().map(MemFile::usage_bytes).sum()
    }

    /// Fails with ENOSPC if `inode`'s usage growing to `new_usage` would exceed the capacity.
    fn check_capacity(&self, inode: u64, new_usage: u64) -> io::Result<()> {
        let Some(capacity) = self.faults.capacity_bytes else {
            return Ok(());
        };
        let current = self.inodes[&inode].usage_bytes();
        if new_usage > current && self.usage_bytes() - current + new_usage > capacity {
            return Err(enospc());
        }
        Ok(())
    }

    /// Consumes an injected fsync failure, if one is armed.
    fn take_sync_failure(&mut self) -> bool {
        if self.faults.failing_syncs == 0 {
            return false;
        }
        self.faults.failing_syncs -= 1;
        self.stats.failed_syncs += 1;
        true
    }

    /// Drops files that no longer have a name in either namespace.
    fn collect_garbage(&mut self) {
        let named: BTreeSet<u64> = self
            .names
            .values()
            .chain(self.durable_names.values())
            .copied()
            .collect();
        self.inodes.retain(|inode, _| named.contains(inode));
    }

    fn create(&mut self, name: &str) -> u64 {
        if let Some(&inode) = self.names.get(name) {
            return inode;
        }
        self.next_inode += 1;
        let inode = self.next_inode;
        self.inodes.insert(inode, MemFile::default());
        self.names.insert(name.to_string(), inode);
        inode
    }
}

#[derive(Clone)]
struct FileHandle {
    disk: Arc<MemDisk>,
    inode: u64,
    epoch: u64,
}

impl FileHandle {
    /// Runs `operation` on this handle's file, failing if the handle is stale.
    fn with_file<R>(&self, operation: impl FnOnce(&mut DiskState, u64) -> io::Result<R>) -> io::Result<R> {
        let mut state = self.disk.lock();
        if state.epoch != self.epoch {
            return Err(stale_handle_error());
        }
        if !state.inodes.contains_key(&self.inode) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "mem file was removed"));
        }
        operation(&mut state, self.inode)
    }

    fn len(&self) -> u64 {
        let state = self.disk.lock();
        match state.inodes.get(&self.inode) {
            Some(file) if state.epoch == self.epoch => file.data.len() as u64,
            _ => 0,
        }
    }

    /// Writes `bytes` at `offset`, honouring the capacity and short-write faults.
    fn write_at(state: &mut DiskState, inode: u64, offset: usize, bytes: &[u8]) -> io::Result<()> {
        let old_len = state.inodes[&inode].data.len();
        let end = offset + bytes.len();
        state.check_capacity(inode, end.max(old_len) as u64)?;
        let (stored, short) = if std::mem::take(&mut state.faults.short_write_next) {
            (&bytes[..bytes.len() / 2], true)
        } else {
            (bytes, false)
        };
        let sequence = state.next_sequence();
        let file = state.inodes.get_mut(&inode).expect("checked by with_file");
        let stored_end = offset + stored.len();
        if stored_end > file.data.len() {
            file.data.resize(stored_end, 0);
        }
        file.data[offset..stored_end].copy_from_slice(stored);
        // Zero-filled gaps changed too, so they are pending as well.
        file.mark_pending(offset.min(old_len), stored_end, sequence);
        if short {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "short write: {} of {} bytes at offset {offset}",
                    stored.len(),
                    bytes.len()
                ),
            ));
        }
        Ok(())
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        self.with_file(|state, inode| {
            let file = &state.inodes[&inode];
            let start = (offset as usize).min(file.data.len());
            let end = start.saturating_add(len).min(file.data.len());
            if start < end {
                let first_block = (start / BLOCK_BYTES) as u64;
                let last_block = ((end - 1) / BLOCK_BYTES) as u64;
                if file.latent_errors.range(first_block..=last_block).next().is_some() {
                    return Err(io::Error::from_raw_os_error(EIO));
                }
            }
            Ok(Bytes::copy_from_slice(&file.data[start..end]))
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with_file(|state, inode| {
            let len = len as usize;
            state.check_capacity(inode, len as u64)?;
            let sequence = state.next_sequence();
            let file = state.inodes.get_mut(&inode).expect("checked by with_file");
            let old_len = file.data.len();
            file.data.resize(len, 0);
            if len > old_len {
                file.mark_pending(old_len, len, sequence);
            } else {
                // Blocks wholly past the end are gone; the length change itself is
                // pending because `data` and `durable` now differ in length.
                let first_gone = len.div_ceil(BLOCK_BYTES) as u64;
                file.pending.retain(|&block, _| block < first_gone);
            }
            Ok(())
        })
    }

    async fn sync(&self) -> io::Result<()> {
        let (capture, latency) = self.with_file(|state, inode| {
            state.stats.syncs += 1;
            let failed = state.take_sync_failure();
            let epoch = state.epoch;
            let latency = state.faults.sync_latency;
            let file = state.inodes.get_mut(&inode).expect("checked by with_file");
            if failed {
                // fsyncgate: the kernel marks the pages it failed to write clean.
                file.pending.clear();
                return Err(io::Error::from_raw_os_error(EIO));
            }
            file.captures_started += 1;
            let len = file.data.len();
            let blocks = file
                .pending
                .iter()
                .map(|(&block, &sequence)| {
                    let start = block as usize * BLOCK_BYTES;
                    let end = (start + BLOCK_BYTES).min(len);
                    (block, sequence, file.data[start..end].to_vec())
                })
                .collect();
            Ok((
                FileCapture {
                    epoch,
                    id: file.captures_started,
                    len,
                    blocks,
                },
                latency,
            ))
        })?;
        self.disk.wait_for_sync(latency).await;
        let mut state = self.disk.lock();
        if state.epoch != capture.epoch {
            return Err(stale_handle_error());
        }
        let Some(file) = state.inodes.get_mut(&self.inode) else {
            // Removed from both namespaces meanwhile: nothing left to persist.
            return Ok(());
        };
        if capture.id > file.captures_applied {
            file.captures_applied = capture.id;
            file.durable.resize(capture.len, 0);
            for (block, sequence, bytes) in capture.blocks {
                let start = block as usize * BLOCK_BYTES;
                file.durable[start..start + bytes.len()].copy_from_slice(&bytes);
                if file.pending.get(&block) == Some(&sequence) {
                    file.pending.remove(&block);
                }
            }
        }
        Ok(())
    }
}

impl MemDir {
    pub fn new() -> Self {
        Self::default()
    }

    /// Power loss with the default `CrashOptions`.
    pub fn crash(&self, rng: &mut impl RngCore) {
        self.crash_with(rng, &CrashOptions::default());
    }

    /// Power loss: reverts the namespace to the last `sync_dir`, resolves every
    /// pending block of every surviving file (see the fault model), and makes
    /// every handle and in-flight sync from before the crash fail.
    pub fn crash_with(&self, rng: &mut impl RngCore, options: &CrashOptions) {
        let mut state = self.disk.lock();
        state.epoch += 1;
        state.stats.crashes += 1;
        state.names = state.durable_names.clone();
        state.collect_garbage();
        for file in state.inodes.values_mut() {
            resolve_crash(file, rng, options);
        }
    }

    /// Every later sync sleeps `latency` (simulated time under madsim).
    pub fn set_sync_latency(&self, latency: Duration) {
        self.disk.lock().faults.sync_latency = latency;
    }

    /// Holds every sync after it has captured its pending set, until `resume_syncs`.
    pub fn stall_syncs(&self) {
        self.disk.stalled.send_replace(true);
    }

    pub fn resume_syncs(&self) {
        self.disk.stalled.send_replace(false);
    }

    /// The next `count` syncs (file or directory) fail with EIO.
    pub fn fail_next_syncs(&self, count: u32) {
        self.disk.lock().faults.failing_syncs = count;
    }

    /// Writes beyond `capacity_bytes` in total fail with ENOSPC; `None` lifts the limit.
    pub fn set_capacity_bytes(&self, capacity_bytes: Option<u64>) {
        self.disk.lock().faults.capacity_bytes = capacity_bytes;
    }

    /// The next write stores half its buffer and fails.
    pub fn short_write_next(&self) {
        self.disk.lock().faults.short_write_next = true;
    }

    /// Reads of the 4 KiB block holding `offset` in `name` fail with EIO until it is rewritten.
    pub fn inject_read_error(&self, name: &str, offset: u64) -> io::Result<()> {
        let mut state = self.disk.lock();
        let inode = named_inode(&state, name)?;
        let file = state.inodes.get_mut(&inode).expect("named inodes exist");
        file.latent_errors.insert(offset / BLOCK_BYTES as u64);
        Ok(())
    }

    /// Bit rot: flips bit `bit` of the byte at `offset` in the durable image of
    /// `name`, and in what reads see unless that block has newer pending data.
    pub fn corrupt_durable(&self, name: &str, offset: u64, bit: u8) -> io::Result<()> {
        let mut state = self.disk.lock();
        let inode = named_inode(&state, name)?;
        let file = state.inodes.get_mut(&inode).expect("named inodes exist");
        let at = offset as usize;
        if at >= file.durable.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "offset {offset} is beyond the durable length {} of {name}",
                    file.durable.len()
                ),
            ));
        }
        file.durable[at] ^= 1 << (bit % 8);
        if !file.pending.contains_key(&(offset / BLOCK_BYTES as u64)) && at < file.data.len() {
            file.data[at] ^= 1 << (bit % 8);
        }
        Ok(())
    }

    /// What reads of `name` currently see (written data), for tests.
    pub fn file_bytes(&self, name: &str) -> Option<Vec<u8>> {
        let state = self.disk.lock();
        let inode = state.names.get(name)?;
        Some(state.inodes[inode].data.clone())
    }

    /// The durable image of `name` (what a crash that loses everything pending leaves).
    pub fn durable_bytes(&self, name: &str) -> Option<Vec<u8>> {
        let state = self.disk.lock();
        let inode = state.names.get(name)?;
        Some(state.inodes[inode].durable.clone())
    }

    pub fn stats(&self) -> MemStats {
        self.disk.lock().stats
    }

    fn handle(&self, state: &DiskState, inode: u64) -> FileHandle {
        FileHandle {
            disk: self.disk.clone(),
            inode,
            epoch: state.epoch,
        }
    }

    async fn sync_names(&self) -> io::Result<()> {
        let (epoch, id, names, latency) = {
            let mut state = self.disk.lock();
            state.stats.sync_dirs += 1;
            if state.take_sync_failure() {
                return Err(io::Error::from_raw_os_error(EIO));
            }
            state.name_captures_started += 1;
            (
                state.epoch,
                state.name_captures_started,
                state.names.clone(),
                state.faults.sync_latency,
            )
        };
        self.disk.wait_for_sync(latency).await;
        let mut state = self.disk.lock();
        if state.epoch != epoch {
            return Err(stale_handle_error());
        }
        if id > state.name_captures_applied {
            state.name_captures_applied = id;
            state.durable_names = names;
            state.collect_garbage();
        }
        Ok(())
    }
}

fn named_inode(state: &DiskState, name: &str) -> io::Result<u64> {
    state
        .names
        .get(name)
        .copied()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no mem file named {name}")))
}

impl Dir for MemDir {
    type Log = MemLog;
    type Pages = MemPages;

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.disk.lock().names.keys().cloned().collect())
    }

    async fn open_log(&self, name: &str) -> io::Result<MemLog> {
        let mut state = self.disk.lock();
        let inode = state.create(name);
        Ok(MemLog {
            file: self.handle(&state, inode),
        })
    }

    async fn open_pages(&self, name: &str, page_size: usize) -> io::Result<MemPages> {
        assert!(page_size > 0, "page size must be positive");
        let mut state = self.disk.lock();
        let inode = state.create(name);
        Ok(MemPages {
            file: self.handle(&state, inode),
            page_size,
        })
    }

    async fn remove(&self, name: &str) -> io::Result<()> {
        let mut state = self.disk.lock();
        named_inode(&state, name)?;
        state.names.remove(name);
        state.collect_garbage();
        Ok(())
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut state = self.disk.lock();
        let inode = named_inode(&state, from)?;
        state.names.remove(from);
        state.names.insert(to.to_string(), inode);
        state.collect_garbage();
        Ok(())
    }

    async fn sync_dir(&self) -> io::Result<()> {
        self.sync_names().await
    }
}

impl LogDevice for MemLog {
    async fn append(&self, buf: Bytes) -> io::Result<u64> {
        self.file.with_file(|state, inode| {
            state.stats.appends += 1;
            let offset = state.inodes[&inode].data.len();
            FileHandle::write_at(state, inode, offset, &buf)?;
            Ok(offset as u64)
        })
    }

    async fn sync(&self) -> io::Result<()> {
        self.file.sync().await
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        self.file.read_at(offset, len)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn len(&self) -> u64 {
        self.file.len()
    }

    async fn preallocate(&self, len: u64) -> io::Result<()> {
        self.file.with_file(|state, inode| {
            let reserved = state.inodes[&inode].reserved_bytes.max(len);
            state.check_capacity(inode, reserved)?;
            state
                .inodes
                .get_mut(&inode)
                .expect("checked by with_file")
                .reserved_bytes = reserved;
            Ok(())
        })
    }
}

impl PageStore for MemPages {
    fn page_size(&self) -> usize {
        self.page_size
    }

    fn page_count(&self) -> u64 {
        self.file.len() / self.page_size as u64
    }

    fn read_page(&self, id: PageId) -> io::Result<Bytes> {
        let count = self.page_count();
        if id.0 >= count {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("page {} is beyond the end of the file ({count} pages)", id.0),
            ));
        }
        self.file.read_at(id.0 * self.page_size as u64, self.page_size)
    }

    async fn write_pages(&self, pages: Vec<(PageId, Bytes)>) -> io::Result<()> {
        self.file.with_file(|state, inode| {
            for (id, page) in &pages {
                assert_eq!(
                    page.len(),
                    self.page_size,
                    "page {} has {} bytes, the page size is {}",
                    id.0,
                    page.len(),
                    self.page_size
                );
                state.stats.page_writes += 1;
                FileHandle::write_at(state, inode, id.0 as usize * self.page_size, page)?;
            }
            Ok(())
        })
    }

    async fn sync(&self) -> io::Result<()> {
        self.file.sync().await
    }
}

#[cfg(test)]
mod tests;
