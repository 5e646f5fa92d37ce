//! The only door to the OS (DESIGN.md invariant 2).
//!
//! Every byte braid stores goes through one of these traits. Production uses
//! io_uring (with a pwrite/fdatasync fallback); tests and the simulation use the
//! in-memory fault-injecting implementations, which keep a "written" and a
//! "durable" image so a crash can drop, tear or corrupt what was never synced.
//!
//! Contract shared by every device: data is readable as soon as the call that
//! wrote it returns, and durable only once a `sync` that *began after* that call
//! returned has completed with `Ok`. A failed `sync` is fatal: the caller must
//! stop (fail-stop, never retry an fsync), see `fatal_io`.

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::Bytes;

pub mod clock;
pub mod file;
pub mod mem;
mod mmap;
pub mod os;
pub mod uring;
mod worker;
mod zero_ahead;

pub use clock::{ManualClock, SystemClock};
pub use file::{FileDir, FileLog, FilePages};
pub use mem::{CrashOptions, MemDir, MemLog, MemPages, MemStats};
pub use os::{DeviceChoice, DevicePreference, OsDir, OsLog};
pub use uring::UringLog;
pub use worker::SyncCounters;

/// Linux `EIO`: what a device returns for a failed write, fsync or read.
pub const EIO: i32 = 5;
/// Linux `ENOSPC`: the device is full.
pub const ENOSPC: i32 = 28;

/// Ends the process after a failed write or fsync (fail-stop, DESIGN.md
/// invariant 8, TESTING.md durable-ack rule 4).
///
/// After a failed fsync the kernel may already have dropped the dirty pages it
/// could not write, so a retry can "succeed" without the data ever reaching the
/// disk (fsyncgate). The only safe continuation is to stop and let recovery
/// start again from what is durable. Aborting (rather than unwinding) makes sure
/// no task gets to acknowledge anything after the failure.
pub fn fatal_io(context: &str, error: &io::Error) -> ! {
    eprintln!("braid: fatal I/O error, stopping (fail-stop): {context}: {error}");
    std::process::abort()
}

/// Writes up to this size run on the calling task's thread with pwrite: a
/// write into the page cache takes microseconds, less than handing it to a
/// device thread (the pwrite worker or the io_uring driver) and waiting for the
/// reply, which costs two thread wake-ups. Larger writes (bulk loads, snapshot
/// installs, zero fill) go to the device thread so they do not hold up the
/// runtime. Fsyncs always run off the runtime.
pub(crate) const INLINE_WRITE_BYTES_MAX: usize = 64 << 10;

/// Writes `buf` at `offset` on this thread; a failed write ends the process
/// (fail-stop, as `fatal_io`).
pub(crate) fn write_or_stop(file: &std::fs::File, path: &std::path::Path, buf: &[u8], offset: u64) {
    if let Err(error) = std::os::unix::fs::FileExt::write_all_at(file, buf, offset) {
        fatal_io(
            &format!("write of {} bytes at {offset} to {}", buf.len(), path.display()),
            &error,
        );
    }
}

/// Identifies a page inside a page file; page `n` starts at byte `n * page_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageId(pub u64);

/// An append-only file (one WAL segment).
pub trait LogDevice: Send + Sync + 'static {
    /// Appends `buf` at the end; returns the offset it starts at. Readable at
    /// once, durable only after a later `sync`.
    fn append(&self, buf: Bytes) -> impl Future<Output = io::Result<u64>> + Send;
    /// Makes every append that returned before this call durable.
    fn sync(&self) -> impl Future<Output = io::Result<()>> + Send;
    /// Reads `len` bytes at `offset` (short only at end of file).
    fn read_at(&self, offset: u64, len: usize) -> impl Future<Output = io::Result<Bytes>> + Send;
    /// Cuts the file to `len` bytes (used by recovery to drop a torn tail); durable after `sync`.
    fn truncate(&self, len: u64) -> impl Future<Output = io::Result<()>> + Send;
    /// Current logical length in bytes (appended, not necessarily durable).
    /// After `zero_ahead`, production devices keep up to 1 MiB of zeros written
    /// past it, which a reopen shows as a zero tail; `truncate(len())` cuts them.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reserves disk space for the file to grow to `len` bytes without changing
    /// its logical length (`fallocate(FALLOC_FL_KEEP_SIZE)`), so a full disk shows
    /// up here rather than in the middle of an append. A hint: devices that
    /// cannot reserve space do nothing.
    fn preallocate(&self, len: u64) -> impl Future<Output = io::Result<()>> + Send {
        let _ = len;
        std::future::ready(Ok(()))
    }
    /// Asks the device to write zeros ahead of appends, up to `limit` bytes, so
    /// an fdatasync after an append flushes data without a metadata change (see
    /// `zero_ahead`). The file then has a zero tail past `len()` until it is cut.
    /// A hint: the in-memory devices do nothing.
    fn zero_ahead(&self, limit: u64) {
        let _ = limit;
    }
}

/// A file of fixed-size pages (the B+tree file).
pub trait PageStore: Send + Sync + 'static {
    fn page_size(&self) -> usize;
    /// Number of pages the file currently holds (written, not necessarily durable).
    fn page_count(&self) -> u64;
    /// Reads one page. Production reads through a read-only mmap.
    fn read_page(&self, id: PageId) -> io::Result<Bytes>;
    /// Writes whole pages (each exactly `page_size` bytes); readable at once, durable after `sync`.
    fn write_pages(&self, pages: Vec<(PageId, Bytes)>) -> impl Future<Output = io::Result<()>> + Send;
    fn sync(&self) -> impl Future<Output = io::Result<()>> + Send;
}

/// A directory holding log segments and other files. Creating, renaming or
/// removing an entry is durable only after `sync_dir`.
pub trait Dir: Send + Sync + 'static {
    type Log: LogDevice;
    type Pages: PageStore;
    /// Names of the files in the directory, sorted.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Opens an existing log file or creates an empty one.
    fn open_log(&self, name: &str) -> impl Future<Output = io::Result<Self::Log>> + Send;
    /// Opens (or creates) a page file with the given page size.
    fn open_pages(&self, name: &str, page_size: usize) -> impl Future<Output = io::Result<Self::Pages>> + Send;
    fn remove(&self, name: &str) -> impl Future<Output = io::Result<()>> + Send;
    fn rename(&self, from: &str, to: &str) -> impl Future<Output = io::Result<()>> + Send;
    fn sync_dir(&self) -> impl Future<Output = io::Result<()>> + Send;
}

/// Time as one node sees it. Simulation gives every node its own skew and drift.
pub trait Clock: Send + Sync + 'static {
    /// Never goes backwards; used for timers, election timeouts, lease durations.
    fn monotonic_ns(&self) -> u64;
    /// May step; only for values shown to users.
    fn wall_ns(&self) -> i64;
    /// Sleeps for `duration` as measured by this clock.
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send;
}
