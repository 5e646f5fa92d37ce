//! The production directory: io_uring for logs where the kernel allows it, the
//! pwrite/fdatasync fallback otherwise, chosen once at start-up.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::file::{FileDir, FileLog, FilePages};
use super::uring::{self, UringLog};
use super::worker::SyncCounters;
use super::{Dir, LogDevice};

/// What the operator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevicePreference {
    /// io_uring if it works here, else the fallback.
    Auto,
    /// Always the pwrite/fdatasync fallback.
    File,
}

/// What `OsDir::open` chose; its `Display` is meant for the start-up log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    IoUring,
    File { reason: String },
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::IoUring => write!(formatter, "io_uring"),
            DeviceChoice::File { reason } => {
                write!(formatter, "pwrite/fdatasync fallback ({reason})")
            }
        }
    }
}

/// A data directory on the real file system.
#[derive(Clone)]
pub struct OsDir {
    files: FileDir,
    uring: bool,
}

impl OsDir {
    /// Opens (creating if needed) `path`; with `Auto`, probes io_uring and falls
    /// back when it cannot be set up. Returns the choice so the caller can log it.
    pub fn open(path: impl Into<PathBuf>, preference: DevicePreference) -> io::Result<(OsDir, DeviceChoice)> {
        let files = FileDir::open(path)?;
        let choice = match preference {
            DevicePreference::File => DeviceChoice::File {
                reason: "requested".to_string(),
            },
            DevicePreference::Auto => match uring::probe() {
                Ok(()) => DeviceChoice::IoUring,
                Err(error) => DeviceChoice::File {
                    reason: format!("io_uring unavailable: {error}"),
                },
            },
        };
        let uring = choice == DeviceChoice::IoUring;
        Ok((OsDir { files, uring }, choice))
    }

    pub fn path(&self) -> &Path {
        self.files.path()
    }

    /// Sync requests and fdatasyncs of every file opened here.
    pub fn counters(&self) -> Arc<SyncCounters> {
        self.files.counters()
    }
}

/// A log file on whichever device `OsDir` chose.
#[derive(Clone)]
pub enum OsLog {
    Uring(UringLog),
    File(FileLog),
}

impl OsLog {
    /// Test hook: the next fsync fails with EIO, which ends the process.
    pub fn fail_next_sync_for_test(&self) {
        match self {
            OsLog::Uring(log) => log.fail_next_sync_for_test(),
            OsLog::File(log) => log.fail_next_sync_for_test(),
        }
    }
}

impl Dir for OsDir {
    type Log = OsLog;
    type Pages = FilePages;

    fn list(&self) -> io::Result<Vec<String>> {
        self.files.list()
    }

    async fn open_log(&self, name: &str) -> io::Result<OsLog> {
        if self.uring {
            let (file, path) = self.files.open_file(name).await?;
            Ok(OsLog::Uring(UringLog::new(file, path, self.files.counters())?))
        } else {
            Ok(OsLog::File(self.files.open_log(name).await?))
        }
    }

    async fn open_pages(&self, name: &str, page_size: usize) -> io::Result<FilePages> {
        self.files.open_pages(name, page_size).await
    }

    async fn remove(&self, name: &str) -> io::Result<()> {
        self.files.remove(name).await
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.files.rename(from, to).await
    }

    async fn sync_dir(&self) -> io::Result<()> {
        self.files.sync_dir().await
    }
}

impl LogDevice for OsLog {
    async fn append(&self, buf: Bytes) -> io::Result<u64> {
        match self {
            OsLog::Uring(log) => log.append(buf).await,
            OsLog::File(log) => log.append(buf).await,
        }
    }

    async fn sync(&self) -> io::Result<()> {
        match self {
            OsLog::Uring(log) => log.sync().await,
            OsLog::File(log) => log.sync().await,
        }
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        match self {
            OsLog::Uring(log) => log.read_at(offset, len).await,
            OsLog::File(log) => log.read_at(offset, len).await,
        }
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        match self {
            OsLog::Uring(log) => log.truncate(len).await,
            OsLog::File(log) => log.truncate(len).await,
        }
    }

    fn len(&self) -> u64 {
        match self {
            OsLog::Uring(log) => log.len(),
            OsLog::File(log) => log.len(),
        }
    }

    async fn preallocate(&self, len: u64) -> io::Result<()> {
        match self {
            OsLog::Uring(log) => log.preallocate(len).await,
            OsLog::File(log) => log.preallocate(len).await,
        }
    }

    fn zero_ahead(&self, limit: u64) {
        match self {
            OsLog::Uring(log) => log.zero_ahead(limit),
            OsLog::File(log) => log.zero_ahead(limit),
        }
    }
}
