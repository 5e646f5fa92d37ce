//! A member's incarnation: how many times it has started from this data
//! directory, made durable before the member does anything else.
//!
//! Request ids and ReadIndex contexts are `incarnation << 40 | counter`, so
//! they never repeat across restarts: an entry proposed by an earlier
//! incarnation may still be applied after this one starts, and a ReadIndex
//! answer for an earlier incarnation's context may still arrive. Matching
//! either to a new request would acknowledge a write before its own entry
//! commits, or release a read at an index that predates it (the simulation
//! found the stale read: seed 594). An earlier version seeded the counters
//! from the wall clock, which a clock stepped backwards defeats; the count on
//! disk does not depend on any clock.
//!
//! Layout: the file `incarnation.log` holds one 8-byte big-endian record per
//! start. A torn tail (a crash during the append) is ignored, which can only
//! reuse the number of a start that never got past this point.

use bytes::{BufMut, BytesMut};

use crate::io::{Dir, LogDevice};

pub const INCARNATION_FILE: &str = "incarnation.log";
const RECORD_BYTES: u64 = 8;
/// Low bits of an id left for the counter within one incarnation (2^40 ≈ 10^12 requests).
pub const COUNTER_BITS: u32 = 40;

/// Counts this start and returns its number (1 for the first start).
pub async fn next_incarnation<D: Dir>(dir: &D) -> std::io::Result<u64> {
    let log = dir.open_log(INCARNATION_FILE).await?;
    let complete = log.len() / RECORD_BYTES;
    if log.len() % RECORD_BYTES != 0 {
        log.truncate(complete * RECORD_BYTES).await?;
    }
    let incarnation = complete + 1;
    if incarnation >= 1 << (64 - COUNTER_BITS) {
        return Err(std::io::Error::other(format!(
            "{INCARNATION_FILE}: this member has started {complete} times, more than ids can tell apart"
        )));
    }
    let mut record = BytesMut::with_capacity(RECORD_BYTES as usize);
    record.put_u64(incarnation);
    log.append(record.freeze()).await?;
    log.sync().await?;
    dir.sync_dir().await?;
    Ok(incarnation)
}

/// The first request id (and ReadIndex context) of `incarnation`.
pub fn first_id(incarnation: u64) -> u64 {
    incarnation << COUNTER_BITS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemDir;

    #[tokio::test]
    async fn counts_starts_and_survives_a_torn_tail() {
        let dir = MemDir::new();
        assert_eq!(next_incarnation(&dir).await.unwrap(), 1);
        assert_eq!(next_incarnation(&dir).await.unwrap(), 2);
        // A torn third record (a crash mid-append) does not count.
        let log = dir.open_log(INCARNATION_FILE).await.unwrap();
        log.append(bytes::Bytes::from_static(&[0, 0, 0])).await.unwrap();
        log.sync().await.unwrap();
        assert_eq!(next_incarnation(&dir).await.unwrap(), 3);
        assert_eq!(first_id(3), 3 << 40);
        assert!(first_id(2) + (1 << 40) - 1 < first_id(3));
    }
}
