//! The portable production devices: `std::fs`, pwrite and fdatasync on
//! dedicated threads. Used where io_uring is unavailable (see `os`), and for
//! page files everywhere.
//!
//! Every failed write or fsync ends the process (`fatal_io`): after a failed
//! fsync the kernel may have dropped the very pages it could not write, so
//! there is nothing safe to retry. Creating, renaming or removing a file fsyncs
//! the directory before returning (TESTING.md durable-ack rule 5), and
//! `sync_dir` does it again on demand.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::mmap::ReadMap;
use super::worker::{BlockingWorker, GroupSync, SyncCounters};
use super::zero_ahead::ZeroAhead;
use super::{fatal_io, write_or_stop, Dir, LogDevice, PageId, PageStore, EIO, INLINE_WRITE_BYTES_MAX};

/// A directory on the real file system.
#[derive(Clone)]
pub struct FileDir {
    inner: Arc<FileDirInner>,
}

struct FileDirInner {
    path: PathBuf,
    /// Runs opens, renames, removes and directory fsyncs off the async runtime.
    worker: BlockingWorker,
    /// Shared by every file opened here.
    counters: Arc<SyncCounters>,
}

impl FileDir {
    /// Opens `path`, creating it (and its parents) if missing.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<FileDir> {
        let path = path.into();
        std::fs::create_dir_all(&path)?;
        let inner = FileDirInner {
            path,
            worker: BlockingWorker::spawn("braid-dir")?,
            counters: Arc::default(),
        };
        Ok(FileDir { inner: Arc::new(inner) })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Sync requests and fdatasyncs of every file opened through this directory.
    pub fn counters(&self) -> Arc<SyncCounters> {
        self.inner.counters.clone()
    }

    /// Opens or creates `name` for reading and writing; fsyncs the directory if
    /// it was created. Returns the file and its path.
    pub(crate) async fn open_file(&self, name: &str) -> io::Result<(File, PathBuf)> {
        let directory = self.inner.path.clone();
        let path = directory.join(name);
        self.inner
            .worker
            .run(move || {
                let created = !path.exists();
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)?;
                if created {
                    fsync_directory(&directory);
                }
                Ok((file, path))
            })
            .await
    }
}

/// fsyncs a directory so the entries in it are durable; fail-stop on error.
fn fsync_directory(directory: &Path) {
    let result = File::open(directory).and_then(|handle| handle.sync_all());
    if let Err(error) = result {
        fatal_io(&format!("fsync of directory {}", directory.display()), &error);
    }
}

impl Dir for FileDir {
    type Log = FileLog;
    type Pages = FilePages;

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.inner.path)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    async fn open_log(&self, name: &str) -> io::Result<FileLog> {
        let (file, path) = self.open_file(name).await?;
        FileLog::new(file, path, self.inner.counters.clone())
    }

    async fn open_pages(&self, name: &str, page_size: usize) -> io::Result<FilePages> {
        let (file, path) = self.open_file(name).await?;
        FilePages::new(file, path, page_size, self.inner.counters.clone())
    }

    async fn remove(&self, name: &str) -> io::Result<()> {
        let directory = self.inner.path.clone();
        let path = directory.join(name);
        self.inner
            .worker
            .run(move || {
                std::fs::remove_file(&path)?;
                fsync_directory(&directory);
                Ok(())
            })
            .await
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let directory = self.inner.path.clone();
        let (from, to) = (directory.join(from), directory.join(to));
        self.inner
            .worker
            .run(move || {
                std::fs::rename(&from, &to)?;
                fsync_directory(&directory);
                Ok(())
            })
            .await
    }

    async fn sync_dir(&self) -> io::Result<()> {
        let directory = self.inner.path.clone();
        self.inner.worker.run(move || fsync_directory(&directory)).await;
        Ok(())
    }
}

/// State shared by the log and page devices: the file, its threads and group commit.
struct FileCore {
    file: Arc<File>,
    path: PathBuf,
    /// Writes, reads and truncations, in order.
    writer: BlockingWorker,
    /// fdatasync runs here so appends continue while it is in flight.
    syncer: BlockingWorker,
    group: GroupSync,
    counters: Arc<SyncCounters>,
    /// Test hook: the next fdatasync is treated as failed (`EIO`).
    fail_next_sync: Arc<AtomicBool>,
}

impl FileCore {
    fn new(file: File, path: PathBuf, counters: Arc<SyncCounters>) -> io::Result<Self> {
        Ok(FileCore {
            file: Arc::new(file),
            path,
            writer: BlockingWorker::spawn("braid-file-write")?,
            syncer: BlockingWorker::spawn("braid-file-sync")?,
            group: GroupSync::new(),
            counters,
            fail_next_sync: Arc::default(),
        })
    }

    async fn write_at(&self, buf: Bytes, offset: u64) {
        if buf.len() <= INLINE_WRITE_BYTES_MAX {
            return write_or_stop(&self.file, &self.path, &buf, offset);
        }
        let (file, path) = (self.file.clone(), self.path.clone());
        self.writer.run(move || write_or_stop(&file, &path, &buf, offset)).await;
    }

    async fn sync(&self) {
        self.group
            .sync(&self.counters, || {
                let (file, path, fail) = (self.file.clone(), self.path.clone(), self.fail_next_sync.clone());
                self.syncer.run(move || {
                    let result = if fail.swap(false, Ordering::SeqCst) {
                        Err(io::Error::from_raw_os_error(EIO))
                    } else {
                        file.sync_data()
                    };
                    if let Err(error) = result {
                        fatal_io(&format!("fdatasync of {}", path.display()), &error);
                    }
                })
            })
            .await;
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let file = self.file.clone();
        self.writer
            .run(move || {
                let mut buf = vec![0u8; len];
                let mut filled = 0;
                while filled < len {
                    match file.read_at(&mut buf[filled..], offset + filled as u64) {
                        Ok(0) => break,
                        Ok(read) => filled += read,
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                        Err(error) => return Err(error),
                    }
                }
                buf.truncate(filled);
                Ok(Bytes::from(buf))
            })
            .await
    }
}

/// An append-only file written with pwrite and made durable with fdatasync.
#[derive(Clone)]
pub struct FileLog {
    core: Arc<FileCore>,
    /// Logical length: appends reserve their offset here before writing.
    len: Arc<AtomicU64>,
    zero_ahead: Arc<ZeroAhead>,
}

impl FileLog {
    pub(crate) fn new(file: File, path: PathBuf, counters: Arc<SyncCounters>) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(FileLog {
            core: Arc::new(FileCore::new(file, path, counters)?),
            len: Arc::new(AtomicU64::new(len)),
            zero_ahead: Arc::new(ZeroAhead::new(len)),
        })
    }

    /// Test hook for the fail-stop path: the next fdatasync is treated as
    /// failed with EIO, which ends the process.
    pub fn fail_next_sync_for_test(&self) {
        self.core.fail_next_sync.store(true, Ordering::SeqCst);
    }

    pub fn counters(&self) -> Arc<SyncCounters> {
        self.core.counters.clone()
    }
}

impl LogDevice for FileLog {
    /// Appends run one at a time in reservation order; `len` includes appends
    /// still in flight. The caller must not truncate while appends are in flight.
    async fn append(&self, buf: Bytes) -> io::Result<u64> {
        let offset = self.len.fetch_add(buf.len() as u64, Ordering::SeqCst);
        let end = offset + buf.len() as u64;
        self.zero_ahead
            .ensure(end, |at, zeros| async move {
                self.core.write_at(zeros, at).await;
                Ok(())
            })
            .await?;
        self.core.write_at(buf, offset).await;
        Ok(offset)
    }

    async fn sync(&self) -> io::Result<()> {
        self.core.sync().await;
        Ok(())
    }

    /// Reads stop at the logical length, not at the zeros written past it.
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let len = len.min(self.len().saturating_sub(offset) as usize);
        self.core.read_at(offset, len).await
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        let file = self.core.file.clone();
        self.core.writer.run(move || file.set_len(len)).await?;
        self.len.store(len, Ordering::SeqCst);
        self.zero_ahead.truncated(len);
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len.load(Ordering::SeqCst)
    }

    // `preallocate` keeps the default no-op: reserving space without changing
    // the length needs fallocate(FALLOC_FL_KEEP_SIZE), which std does not offer.

    fn zero_ahead(&self, limit: u64) {
        self.zero_ahead.enable(limit);
    }
}

/// A page file: reads through a read-only mmap, writes with pwrite, fdatasync.
#[derive(Clone)]
pub struct FilePages {
    core: Arc<FileCore>,
    map: Arc<ReadMap>,
    page_size: usize,
    /// Bytes written so far (the file length).
    len: Arc<AtomicU64>,
}

impl FilePages {
    pub(crate) fn new(file: File, path: PathBuf, page_size: usize, counters: Arc<SyncCounters>) -> io::Result<Self> {
        assert!(page_size > 0, "page size must be positive");
        let len = file.metadata()?.len();
        let core = Arc::new(FileCore::new(file, path, counters)?);
        let map = Arc::new(ReadMap::new(core.file.clone()));
        Ok(FilePages {
            core,
            map,
            page_size,
            len: Arc::new(AtomicU64::new(len)),
        })
    }

    /// Test hook for the fail-stop path, as `FileLog::fail_next_sync_for_test`.
    pub fn fail_next_sync_for_test(&self) {
        self.core.fail_next_sync.store(true, Ordering::SeqCst);
    }
}

impl PageStore for FilePages {
    fn page_size(&self) -> usize {
        self.page_size
    }

    fn page_count(&self) -> u64 {
        self.len.load(Ordering::SeqCst) / self.page_size as u64
    }

    fn read_page(&self, id: PageId) -> io::Result<Bytes> {
        let count = self.page_count();
        if id.0 >= count {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "page {} is beyond the end of {} ({count} pages)",
                    id.0,
                    self.core.path.display()
                ),
            ));
        }
        self.map.read(id.0 * self.page_size as u64, self.page_size)
    }

    async fn write_pages(&self, pages: Vec<(PageId, Bytes)>) -> io::Result<()> {
        let pages_bytes = pages.len() * self.page_size;
        let mut end = 0;
        for (id, page) in &pages {
            assert_eq!(
                page.len(),
                self.page_size,
                "page {} has {} bytes, the page size is {}",
                id.0,
                page.len(),
                self.page_size
            );
            end = end.max((id.0 + 1) * self.page_size as u64);
        }
        let (file, path) = (self.core.file.clone(), self.core.path.clone());
        let page_size = self.page_size as u64;
        let write = move || {
            for (id, page) in pages {
                write_or_stop(&file, &path, &page, id.0 * page_size);
            }
        };
        if pages_bytes <= INLINE_WRITE_BYTES_MAX {
            write();
        } else {
            self.core.writer.run(write).await;
        }
        self.len.fetch_max(end, Ordering::SeqCst);
        Ok(())
    }

    async fn sync(&self) -> io::Result<()> {
        self.core.sync().await;
        Ok(())
    }
}
