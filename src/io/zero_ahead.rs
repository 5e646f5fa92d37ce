//! Zero-filled space ahead of a log file's logical end.
//!
//! On ext4 (and most journaling file systems) an fdatasync after a write that
//! extends the file, or that lands in fallocated but never written blocks, must
//! also commit a metadata change (the size, or the extent's "unwritten" flag)
//! through the journal. A write over blocks that already hold data, inside the
//! file's size, needs only the data flushed. Measured on this project's CI disk,
//! 4 KiB write + fdatasync: ~290 µs extending the file, ~220 µs into a fallocated
//! range, ~140 µs into a zero-filled one.
//!
//! So the production log devices keep up to `CHUNK` bytes of real zeros written
//! past the logical end: when an append would reach past the zeroed frontier, a
//! chunk of zeros is written first (one page-cache write per MiB of log, whose
//! cost the next fdatasync pays once). The logical length stays the device's
//! `len`; after a reopen the zeros show up as a zero tail, which WAL recovery
//! cuts without calling it damage, and WAL rotation cuts a segment to its
//! logical length before sealing it.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

/// How far ahead of the logical end zeros are written, at most, per extension.
pub(crate) const CHUNK: usize = 1 << 20;

static ZEROS: [u8; CHUNK] = [0; CHUNK];

/// The zeroed frontier of one file: bytes below it hold data or zeros.
pub(crate) struct ZeroAhead {
    zeroed: AtomicU64,
    /// Zeros are written only below this (0 until `LogDevice::zero_ahead`
    /// asks for them: WAL segments do, other files never).
    limit: AtomicU64,
    /// Held while a chunk of zeros is being written; appends reaching past the
    /// frontier wait here, so no data write overlaps a zero write in flight.
    extending: tokio::sync::Mutex<()>,
}

impl ZeroAhead {
    /// `len`: the file's size when opened (everything below it is written).
    pub(crate) fn new(len: u64) -> Self {
        ZeroAhead {
            zeroed: AtomicU64::new(len),
            limit: AtomicU64::new(0),
            extending: tokio::sync::Mutex::new(()),
        }
    }

    /// From now on, keep zeros written ahead of appends, up to `limit`. Call it
    /// with no append in flight.
    pub(crate) fn enable(&self, limit: u64) {
        self.limit.fetch_max(limit, Ordering::SeqCst);
    }

    /// Called before an append of the range ending at `end` is issued: makes
    /// sure the bytes below `end` (up to the limit) are written, with whole
    /// chunks of zeros from the frontier if they are not, and moves the
    /// frontier past the append.
    ///
    /// Safe against concurrent appends: an append whose range ends at or below
    /// the frontier was entirely below it when checked (the frontier only
    /// grows), so zeros written above it never overlap it; one that ends
    /// above it (within the limit) waits here and writes only after the zeros
    /// it overlaps completed. Past the limit no zeros are ever written.
    pub(crate) async fn ensure<W, F>(&self, end: u64, write_zeros: W) -> io::Result<()>
    where
        W: Fn(u64, Bytes) -> F,
        F: Future<Output = io::Result<()>>,
    {
        let wanted = end.min(self.limit.load(Ordering::SeqCst));
        if wanted > self.zeroed.load(Ordering::SeqCst) {
            let _extending = self.extending.lock().await;
            let mut zeroed = self.zeroed.load(Ordering::SeqCst);
            while zeroed < wanted {
                write_zeros(zeroed, Bytes::from_static(&ZEROS)).await?;
                zeroed += CHUNK as u64;
                self.zeroed.fetch_max(zeroed, Ordering::SeqCst);
            }
        }
        self.zeroed.fetch_max(end, Ordering::SeqCst);
        Ok(())
    }

    /// The file was cut to `len`; no append may be in flight.
    pub(crate) fn truncated(&self, len: u64) {
        self.zeroed.store(len, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn whole_chunks_of_zeros_are_written_from_the_frontier_past_the_end() {
        let chunk = CHUNK as u64;
        let zero_ahead = ZeroAhead::new(100);
        zero_ahead.enable(1 << 40);
        let writes = Mutex::new(Vec::new());
        let record = |offset: u64, zeros: Bytes| {
            assert!(zeros.len() == CHUNK && zeros.iter().all(|&byte| byte == 0));
            writes.lock().unwrap().push(offset);
            async { Ok(()) }
        };
        zero_ahead.ensure(100, record).await.unwrap();
        assert!(writes.lock().unwrap().is_empty(), "below the frontier: nothing to do");
        zero_ahead.ensure(150, record).await.unwrap();
        zero_ahead.ensure(100 + chunk, record).await.unwrap();
        assert_eq!(*writes.lock().unwrap(), [100]);
        zero_ahead.ensure(101 + 2 * chunk, record).await.unwrap();
        assert_eq!(*writes.lock().unwrap(), [100, 100 + chunk, 100 + 2 * chunk]);

        zero_ahead.truncated(10);
        zero_ahead.ensure(20, record).await.unwrap();
        assert_eq!(writes.lock().unwrap().last(), Some(&10));
    }

    #[tokio::test]
    async fn a_failed_zero_write_leaves_the_frontier_where_it_was() {
        let zero_ahead = ZeroAhead::new(0);
        zero_ahead.enable(1 << 40);
        let failing = |_: u64, _: Bytes| async { Err(io::Error::other("disk full")) };
        assert!(zero_ahead.ensure(10, failing).await.is_err());
        let writes = Mutex::new(Vec::new());
        let record = |offset: u64, _: Bytes| {
            writes.lock().unwrap().push(offset);
            async { Ok(()) }
        };
        zero_ahead.ensure(10, record).await.unwrap();
        assert_eq!(*writes.lock().unwrap(), [0]);
    }

    #[tokio::test]
    async fn nothing_is_written_until_enabled_nor_past_the_limit() {
        let chunk = CHUNK as u64;
        let zero_ahead = ZeroAhead::new(0);
        let writes = Mutex::new(Vec::new());
        let record = |offset: u64, _: Bytes| {
            writes.lock().unwrap().push(offset);
            async { Ok(()) }
        };
        zero_ahead.ensure(10, record).await.unwrap();
        assert!(
            writes.lock().unwrap().is_empty(),
            "not enabled: a snapshot or identity file"
        );
        zero_ahead.enable(chunk + 1);
        zero_ahead.ensure(5 * chunk, record).await.unwrap();
        assert_eq!(*writes.lock().unwrap(), [10], "no zeros past the limit");
    }
}
