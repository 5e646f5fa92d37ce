//! The production log device: io_uring with one driver thread per file.
//!
//! Callers hand requests to the driver through a queue and wake it with an
//! eventfd that the ring itself watches, so the driver sleeps in one place
//! (`submit_and_wait`) whether it waits for the disk or for work. Appends larger
//! than `INLINE_WRITE_BYTES_MAX` (and the zero fill of `zero_ahead`) become
//! `IORING_OP_WRITE` at the offset reserved for them; smaller ones, nearly every
//! WAL round, are a pwrite into the page cache on the caller's thread, which is
//! cheaper than the two thread wake-ups a trip through the driver costs. The
//! fsyncs, the part that waits for the disk, always go through the ring.
//!
//! Group commit: every sync
//! request pending when no fsync is running is served by one
//! `IORING_OP_FSYNC(DATASYNC)`; requests that arrive while it runs wait for the
//! next one, which starts as soon as it completes. A sync only needs to cover
//! appends that had *returned* when it was requested, and an append returns
//! only after its write completed, so an fsync never has to be ordered behind
//! writes still in flight.
//!
//! A failed or short write and a failed fsync end the process (`fatal_io`):
//! fail-stop, never retry.
#![allow(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;

use bytes::Bytes;
use io_uring::{opcode, types, IoUring};
use tokio::sync::oneshot;

use super::worker::{BlockingWorker, SyncCounters};
use super::zero_ahead::ZeroAhead;
use super::{fatal_io, write_or_stop, LogDevice, EIO, INLINE_WRITE_BYTES_MAX};

/// Submission queue size; also bounds the requests in flight at once.
const RING_ENTRIES: u32 = 256;
const IN_FLIGHT_MAX: usize = 128;
/// `user_data` of the eventfd read and of the fsync; writes use small numbers.
const WAKE_USER_DATA: u64 = u64::MAX;
const FSYNC_USER_DATA: u64 = u64::MAX - 1;
/// `fallocate` mode that reserves blocks without changing the file size.
const FALLOC_FL_KEEP_SIZE: i32 = 1;
/// Linux `EOPNOTSUPP`: the file system cannot preallocate; fine for a hint.
const EOPNOTSUPP: i32 = 95;

/// Checks that this kernel and sandbox let us set up an io_uring with the
/// operations the log device uses. `Err` says why not.
pub fn probe() -> io::Result<()> {
    let ring = IoUring::new(8)?;
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    for (code, name) in [
        (opcode::Write::CODE, "write"),
        (opcode::Fsync::CODE, "fsync"),
        (opcode::Read::CODE, "read"),
        (opcode::Fallocate::CODE, "fallocate"),
    ] {
        if !probe.is_supported(code) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring lacks the {name} operation"),
            ));
        }
    }
    Ok(())
}

enum Request {
    Append {
        offset: u64,
        buf: Bytes,
        reply: oneshot::Sender<()>,
    },
    Sync {
        reply: oneshot::Sender<()>,
    },
    Preallocate {
        len: u64,
        reply: oneshot::Sender<io::Result<()>>,
    },
    Shutdown,
}

struct Shared {
    file: Arc<File>,
    path: PathBuf,
    queue: Mutex<Vec<Request>>,
    /// Written after every enqueue; the driver keeps a read of it in the ring.
    wake: File,
    counters: Arc<SyncCounters>,
    /// Test hook: the next fsync completion is treated as failed (`EIO`).
    fail_next_sync: AtomicBool,
}

impl Shared {
    fn lock_queue(&self) -> MutexGuard<'_, Vec<Request>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enqueue(&self, request: Request) {
        self.lock_queue().push(request);
        if let Err(error) = (&self.wake).write_all(&1u64.to_ne_bytes()) {
            fatal_io(
                &format!("waking the io_uring driver of {}", self.path.display()),
                &error,
            );
        }
    }
}

/// Stops the driver thread when the last handle goes away.
struct Owner {
    shared: Arc<Shared>,
    /// Reads and truncations (rare: recovery only) run here, off the ring.
    worker: BlockingWorker,
    /// Logical length: appends reserve their offset here before writing.
    len: AtomicU64,
    zero_ahead: ZeroAhead,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.enqueue(Request::Shutdown);
    }
}

/// An append-only file driven through io_uring.
#[derive(Clone)]
pub struct UringLog {
    owner: Arc<Owner>,
}

impl UringLog {
    /// Sets up a ring and its driver thread for `file`.
    pub fn new(file: File, path: PathBuf, counters: Arc<SyncCounters>) -> io::Result<UringLog> {
        let len = file.metadata()?.len();
        let ring = IoUring::new(RING_ENTRIES)?;
        // SAFETY: eventfd has no memory-safety preconditions; a negative return
        // is an error, checked below.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let wake = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
        let wake_fd = wake.as_raw_fd();
        let shared = Arc::new(Shared {
            file: Arc::new(file),
            path,
            queue: Mutex::new(Vec::new()),
            wake,
            counters,
            fail_next_sync: AtomicBool::new(false),
        });
        let driver = Driver::new(shared.clone(), ring, wake_fd);
        thread::Builder::new()
            .name("braid-uring".to_string())
            .spawn(move || driver.run())?;
        let owner = Owner {
            shared,
            worker: BlockingWorker::spawn("braid-uring-read")?,
            len: AtomicU64::new(len),
            zero_ahead: ZeroAhead::new(len),
        };
        Ok(UringLog { owner: Arc::new(owner) })
    }

    /// Test hook for the fail-stop path: the next fsync is treated as failed
    /// with EIO, which ends the process.
    pub fn fail_next_sync_for_test(&self) {
        self.owner.shared.fail_next_sync.store(true, Ordering::SeqCst);
    }

    pub fn counters(&self) -> Arc<SyncCounters> {
        self.owner.shared.counters.clone()
    }

    async fn write_at(&self, offset: u64, buf: Bytes) -> io::Result<()> {
        let (reply, done) = oneshot::channel();
        self.owner.shared.enqueue(Request::Append { offset, buf, reply });
        done.await.map_err(|_| driver_gone())
    }
}

fn driver_gone() -> io::Error {
    io::Error::other("io_uring driver thread stopped")
}

impl LogDevice for UringLog {
    /// `len` includes appends still in flight. The caller must not truncate
    /// while appends are in flight.
    async fn append(&self, buf: Bytes) -> io::Result<u64> {
        let offset = self.owner.len.fetch_add(buf.len() as u64, Ordering::SeqCst);
        if buf.is_empty() {
            return Ok(offset);
        }
        let end = offset + buf.len() as u64;
        self.owner
            .zero_ahead
            .ensure(end, |at, zeros| self.write_at(at, zeros))
            .await?;
        if buf.len() <= INLINE_WRITE_BYTES_MAX {
            let shared = &self.owner.shared;
            write_or_stop(&shared.file, &shared.path, &buf, offset);
        } else {
            self.write_at(offset, buf).await?;
        }
        Ok(offset)
    }

    async fn sync(&self) -> io::Result<()> {
        self.owner.shared.counters.count_request();
        let (reply, done) = oneshot::channel();
        self.owner.shared.enqueue(Request::Sync { reply });
        done.await.map_err(|_| driver_gone())
    }

    /// Reads stop at the logical length, not at the zeros written past it.
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let len = len.min(self.len().saturating_sub(offset) as usize);
        let file = self.owner.shared.file.clone();
        self.owner
            .worker
            .run(move || {
                let mut buf = vec![0u8; len];
                let mut filled = 0;
                while filled < len {
                    match std::os::unix::fs::FileExt::read_at(&*file, &mut buf[filled..], offset + filled as u64) {
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

    async fn truncate(&self, len: u64) -> io::Result<()> {
        let file = self.owner.shared.file.clone();
        self.owner.worker.run(move || file.set_len(len)).await?;
        self.owner.len.store(len, Ordering::SeqCst);
        self.owner.zero_ahead.truncated(len);
        Ok(())
    }

    fn len(&self) -> u64 {
        self.owner.len.load(Ordering::SeqCst)
    }

    async fn preallocate(&self, len: u64) -> io::Result<()> {
        let (reply, done) = oneshot::channel();
        self.owner.shared.enqueue(Request::Preallocate { len, reply });
        done.await.map_err(|_| driver_gone())?
    }

    fn zero_ahead(&self, limit: u64) {
        self.owner.zero_ahead.enable(limit);
    }
}

/// What a submitted entry is waiting for. Owns the write buffer, which must
/// stay alive and unmoved until the kernel reports the write complete.
enum InFlight {
    Write {
        offset: u64,
        buf: Bytes,
        reply: oneshot::Sender<()>,
    },
    Preallocate {
        reply: oneshot::Sender<io::Result<()>>,
    },
}

struct Driver {
    shared: Arc<Shared>,
    ring: IoUring,
    wake_fd: RawFd,
    /// The eventfd read lands here; boxed so its address is stable.
    wake_buf: Box<[u8; 8]>,
    wake_armed: bool,
    next_user_data: u64,
    in_flight: HashMap<u64, InFlight>,
    backlog: VecDeque<Request>,
    /// Sync requests that need the next fsync.
    waiting_syncs: Vec<oneshot::Sender<()>>,
    /// Sync requests the running fsync will complete; `None` when none runs.
    fsync_waiters: Option<Vec<oneshot::Sender<()>>>,
    shutdown: bool,
}

impl Driver {
    fn new(shared: Arc<Shared>, ring: IoUring, wake_fd: RawFd) -> Self {
        Driver {
            shared,
            ring,
            wake_fd,
            wake_buf: Box::new([0; 8]),
            wake_armed: false,
            next_user_data: 0,
            in_flight: HashMap::new(),
            backlog: VecDeque::new(),
            waiting_syncs: Vec::new(),
            fsync_waiters: None,
            shutdown: false,
        }
    }

    fn fatal(&self, what: &str, error: &io::Error) -> ! {
        fatal_io(&format!("{what} of {} (io_uring)", self.shared.path.display()), error)
    }

    /// Pushes one entry. The caller has checked there is room.
    fn push(&mut self, entry: io_uring::squeue::Entry) {
        // SAFETY: every pointer in `entry` stays valid until its completion is
        // reaped: write buffers are owned by `in_flight`, the wake buffer is a
        // box owned by `self`, and the file descriptors belong to `shared`
        // (kept alive by `self`). The driver exits only after every entry has
        // completed (see `run`), so nothing is freed while the kernel uses it.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        assert!(
            pushed.is_ok(),
            "io_uring submission queue full although room was checked"
        );
    }

    fn has_room(&mut self) -> bool {
        self.in_flight.len() < IN_FLIGHT_MAX && !self.ring.submission().is_full()
    }

    fn run(mut self) {
        loop {
            let queued = std::mem::take(&mut *self.shared.lock_queue());
            self.backlog.extend(queued);
            self.submit_requests();
            if !self.shutdown && !self.wake_armed && self.has_room() {
                let read = opcode::Read::new(types::Fd(self.wake_fd), self.wake_buf.as_mut_ptr(), 8)
                    .build()
                    .user_data(WAKE_USER_DATA);
                self.push(read);
                self.wake_armed = true;
            }
            if self.fsync_waiters.is_none() && !self.waiting_syncs.is_empty() && self.has_room() {
                let fsync = opcode::Fsync::new(types::Fd(self.shared.file.as_raw_fd()))
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(FSYNC_USER_DATA);
                self.push(fsync);
                self.fsync_waiters = Some(std::mem::take(&mut self.waiting_syncs));
            }
            let idle = self.in_flight.is_empty() && self.fsync_waiters.is_none() && !self.wake_armed;
            if self.shutdown && idle && self.backlog.is_empty() && self.waiting_syncs.is_empty() {
                return;
            }
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // The completion queue is full: reap below, then submit again.
                Err(error) if error.raw_os_error() == Some(libc::EBUSY) => {}
                Err(error) => self.fatal("io_uring_enter", &error),
            }
            self.reap();
        }
    }

    fn submit_requests(&mut self) {
        while self.has_room() {
            let Some(request) = self.backlog.pop_front() else {
                return;
            };
            match request {
                Request::Append { offset, buf, reply } => {
                    let user_data = self.next_user_data;
                    self.next_user_data += 1;
                    let length = u32::try_from(buf.len()).expect("appends are far below 4 GiB");
                    let write = opcode::Write::new(types::Fd(self.shared.file.as_raw_fd()), buf.as_ptr(), length)
                        .offset(offset)
                        .build()
                        .user_data(user_data);
                    self.in_flight.insert(user_data, InFlight::Write { offset, buf, reply });
                    self.push(write);
                }
                Request::Preallocate { len, reply } => {
                    let user_data = self.next_user_data;
                    self.next_user_data += 1;
                    let fallocate = opcode::Fallocate::new(types::Fd(self.shared.file.as_raw_fd()), len)
                        .mode(FALLOC_FL_KEEP_SIZE)
                        .build()
                        .user_data(user_data);
                    self.in_flight.insert(user_data, InFlight::Preallocate { reply });
                    self.push(fallocate);
                }
                Request::Sync { reply } => self.waiting_syncs.push(reply),
                Request::Shutdown => self.shutdown = true,
            }
        }
    }

    fn reap(&mut self) {
        let completions: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|completion| (completion.user_data(), completion.result()))
            .collect();
        for (user_data, result) in completions {
            let error = (result < 0).then(|| io::Error::from_raw_os_error(-result));
            match user_data {
                WAKE_USER_DATA => {
                    if let Some(error) = error {
                        self.fatal("read of the wake eventfd", &error);
                    }
                    self.wake_armed = false;
                }
                FSYNC_USER_DATA => {
                    if let Some(error) = error {
                        self.fatal("fdatasync", &error);
                    }
                    if self.shared.fail_next_sync.swap(false, Ordering::SeqCst) {
                        self.fatal("fdatasync", &io::Error::from_raw_os_error(EIO));
                    }
                    self.shared.counters.count_fsync();
                    for waiter in self
                        .fsync_waiters
                        .take()
                        .expect("an fsync completed, so one was running")
                    {
                        let _ = waiter.send(());
                    }
                }
                _ => match self.in_flight.remove(&user_data) {
                    Some(InFlight::Write { offset, buf, reply }) => {
                        if let Some(error) = error {
                            self.fatal(&format!("write of {} bytes at {offset}", buf.len()), &error);
                        }
                        if result as usize != buf.len() {
                            let short = io::Error::new(
                                io::ErrorKind::WriteZero,
                                format!("short write: {result} of {} bytes", buf.len()),
                            );
                            self.fatal(&format!("write at {offset}"), &short);
                        }
                        let _ = reply.send(());
                    }
                    Some(InFlight::Preallocate { reply }) => {
                        let outcome = match error {
                            Some(error) if error.raw_os_error() != Some(EOPNOTSUPP) => Err(error),
                            _ => Ok(()),
                        };
                        let _ = reply.send(outcome);
                    }
                    None => panic!("io_uring completion with unknown user_data {user_data} (result {result})"),
                },
            }
        }
    }
}
