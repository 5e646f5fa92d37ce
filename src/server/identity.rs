//! A member's identity (member ID and cluster ID), fixed at its first start
//! and kept in the data directory, as etcd keeps it in the WAL metadata.
//!
//! After the first start `--initial-cluster` is ignored (etcd does the same):
//! a member that joined through MemberAdd has an ID no local flag can
//! recompute, and a founding member must keep its cluster ID after the
//! membership changed.
//!
//! Layout: the file `identity` holds one record `[member id u64][cluster id
//! u64][crc32 of the 16 bytes u32]`, big-endian, written and synced before the
//! member does anything else. A missing or torn record means "first start".

use bytes::{BufMut, BytesMut};

use crate::io::{Dir, LogDevice};

pub const IDENTITY_FILE: &str = "identity";
/// Present (non-empty) once the member learned it was removed from the cluster
/// other than by applying its removal (a peer refused its messages), so it
/// refuses to start again even though its member table does not say so.
pub const REMOVED_FILE: &str = "removed";
const RECORD_BYTES: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub member_id: u64,
    pub cluster_id: u64,
}

/// The identity stored in `dir`, if a complete one is there.
pub async fn load<D: Dir>(dir: &D) -> std::io::Result<Option<Identity>> {
    let log = dir.open_log(IDENTITY_FILE).await?;
    if log.len() < RECORD_BYTES as u64 {
        return Ok(None);
    }
    let record = log.read_at(0, RECORD_BYTES).await?;
    let (body, crc) = record.split_at(16);
    if crc32fast::hash(body).to_be_bytes() != crc {
        return Err(std::io::Error::other(format!("{IDENTITY_FILE}: checksum mismatch")));
    }
    Ok(Some(Identity {
        member_id: u64::from_be_bytes(body[..8].try_into().expect("8 bytes")),
        cluster_id: u64::from_be_bytes(body[8..].try_into().expect("8 bytes")),
    }))
}

/// Makes `identity` durable in `dir` (replacing a torn record).
pub async fn store<D: Dir>(dir: &D, identity: Identity) -> std::io::Result<()> {
    let log = dir.open_log(IDENTITY_FILE).await?;
    log.truncate(0).await?;
    let mut record = BytesMut::with_capacity(RECORD_BYTES);
    record.put_u64(identity.member_id);
    record.put_u64(identity.cluster_id);
    let crc = crc32fast::hash(&record);
    record.put_u32(crc);
    log.append(record.freeze()).await?;
    log.sync().await?;
    dir.sync_dir().await
}

/// Records that this member was removed from its cluster.
pub async fn mark_removed<D: Dir>(dir: &D) -> std::io::Result<()> {
    let log = dir.open_log(REMOVED_FILE).await?;
    if log.is_empty() {
        log.append(bytes::Bytes::from_static(b"removed\n")).await?;
        log.sync().await?;
        dir.sync_dir().await?;
    }
    Ok(())
}

/// Whether [`mark_removed`] ran on this data directory.
pub async fn was_removed<D: Dir>(dir: &D) -> std::io::Result<bool> {
    if !dir.list()?.iter().any(|name| name == REMOVED_FILE) {
        return Ok(false);
    }
    Ok(!dir.open_log(REMOVED_FILE).await?.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemDir;

    #[tokio::test]
    async fn stores_loads_and_detects_a_torn_or_corrupt_record() {
        let dir = MemDir::new();
        assert_eq!(load(&dir).await.unwrap(), None);
        let identity = Identity {
            member_id: 0xabc,
            cluster_id: 0xdef,
        };
        store(&dir, identity).await.unwrap();
        assert_eq!(load(&dir).await.unwrap(), Some(identity));
        let log = dir.open_log(IDENTITY_FILE).await.unwrap();
        log.truncate(10).await.unwrap();
        assert_eq!(load(&dir).await.unwrap(), None);
        store(&dir, identity).await.unwrap();
        log.truncate(19).await.unwrap();
        log.append(bytes::Bytes::from_static(&[0])).await.unwrap();
        assert!(load(&dir).await.is_err());
    }

    #[tokio::test]
    async fn a_removal_mark_sticks() {
        let dir = MemDir::new();
        assert!(!was_removed(&dir).await.unwrap());
        mark_removed(&dir).await.unwrap();
        mark_removed(&dir).await.unwrap();
        assert!(was_removed(&dir).await.unwrap());
    }
}
