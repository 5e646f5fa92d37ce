//! Byte layout of mvcc's buckets.
//!
//! Key bucket: `'k' ++ main (i64 BE) ++ sub (i64 BE)` → value. Revisions are positive, so
//! big-endian order is revision order, and one scan replays history. The value is
//! `kind (0 put / 1 tombstone)` followed by
//! - put: `create_revision i64 ++ version i64 ++ lease i64 ++ key_len u32 ++ key ++ value`
//! - tombstone: `key`.
//!
//! (etcd marks tombstones with a trailing `'t'` on the bucket key; braid keeps the bucket key
//! fixed-width so a revision can be fetched with one `get`, and puts the marker in the value.)
//! `mod_revision` is the bucket key's `main`.
//!
//! Meta bucket: `'m' ++ name` → `consistent_index` (index u64 ++ term u64),
//! `scheduled_compact` / `finished_compact` (i64).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::mvcc::backend::{BackendError, Bucket};
use crate::mvcc::types::{ConsistentIndex, KeyValue, LeaseId, Revision};

/// A revision with its position inside the write (`sub` = op order within one main revision).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RevisionKey {
    pub main: i64,
    pub sub: i64,
}

impl RevisionKey {
    pub fn new(main: i64, sub: i64) -> Self {
        RevisionKey { main, sub }
    }
}

pub const REVISION_KEY_BYTES: usize = 17;

pub fn revision_raw_key(revision: RevisionKey) -> [u8; REVISION_KEY_BYTES] {
    let mut raw = [0u8; REVISION_KEY_BYTES];
    raw[0] = Bucket::Key.tag();
    raw[1..9].copy_from_slice(&revision.main.to_be_bytes());
    raw[9..17].copy_from_slice(&revision.sub.to_be_bytes());
    raw
}

pub fn decode_revision_raw_key(raw: &[u8]) -> Result<RevisionKey, BackendError> {
    if raw.len() != REVISION_KEY_BYTES || raw[0] != Bucket::Key.tag() {
        return Err(BackendError::new(format!("corrupt revision key {raw:?}")));
    }
    let main = i64::from_be_bytes(raw[1..9].try_into().expect("8 bytes"));
    let sub = i64::from_be_bytes(raw[9..17].try_into().expect("8 bytes"));
    Ok(RevisionKey { main, sub })
}

const KIND_PUT: u8 = 0;
const KIND_TOMBSTONE: u8 = 1;
const PUT_HEADER_BYTES: usize = 1 + 8 + 8 + 8 + 4;

pub fn encode_put(kv: &KeyValue) -> Bytes {
    let mut buffer = BytesMut::with_capacity(PUT_HEADER_BYTES + kv.key.len() + kv.value.len());
    buffer.put_u8(KIND_PUT);
    buffer.put_i64(kv.create_revision.0);
    buffer.put_i64(kv.version);
    buffer.put_i64(kv.lease.0);
    buffer.put_u32(u32::try_from(kv.key.len()).expect("key length fits u32 (bounded by request size)"));
    buffer.put_slice(&kv.key);
    buffer.put_slice(&kv.value);
    buffer.freeze()
}

pub fn encode_tombstone(key: &[u8]) -> Bytes {
    let mut buffer = BytesMut::with_capacity(1 + key.len());
    buffer.put_u8(KIND_TOMBSTONE);
    buffer.put_slice(key);
    buffer.freeze()
}

/// A decoded key-bucket entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredEntry {
    Put(KeyValue),
    /// Only the key is stored for a delete.
    Tombstone(Bytes),
}

/// Decodes a value stored at `revision`. Slices share `value`'s buffer.
pub fn decode_entry(revision: RevisionKey, value: &Bytes) -> Result<StoredEntry, BackendError> {
    let corrupt = || BackendError::new(format!("corrupt value at revision {revision:?}"));
    let mut cursor = &value[..];
    if cursor.is_empty() {
        return Err(corrupt());
    }
    match cursor.get_u8() {
        KIND_TOMBSTONE => Ok(StoredEntry::Tombstone(value.slice(1..))),
        KIND_PUT => {
            if cursor.len() < PUT_HEADER_BYTES - 1 {
                return Err(corrupt());
            }
            let create_revision = Revision(cursor.get_i64());
            let version = cursor.get_i64();
            let lease = LeaseId(cursor.get_i64());
            let key_len = cursor.get_u32() as usize;
            if cursor.len() < key_len {
                return Err(corrupt());
            }
            let key = value.slice(PUT_HEADER_BYTES..PUT_HEADER_BYTES + key_len);
            let stored_value = value.slice(PUT_HEADER_BYTES + key_len..);
            Ok(StoredEntry::Put(KeyValue {
                key,
                create_revision,
                mod_revision: Revision(revision.main),
                version,
                value: stored_value,
                lease,
            }))
        }
        _ => Err(corrupt()),
    }
}

/// Decodes only the key of a stored value (cheap: no value slicing).
pub fn decode_entry_key(revision: RevisionKey, value: &[u8]) -> Result<&[u8], BackendError> {
    let corrupt = || BackendError::new(format!("corrupt value at revision {revision:?}"));
    match value.first() {
        Some(&KIND_TOMBSTONE) => Ok(&value[1..]),
        Some(&KIND_PUT) if value.len() >= PUT_HEADER_BYTES => {
            let key_len = u32::from_be_bytes(value[25..29].try_into().expect("4 bytes")) as usize;
            value
                .get(PUT_HEADER_BYTES..PUT_HEADER_BYTES + key_len)
                .ok_or_else(corrupt)
        }
        _ => Err(corrupt()),
    }
}

pub const META_CONSISTENT_INDEX: &[u8] = b"consistent_index";
pub const META_SCHEDULED_COMPACT: &[u8] = b"scheduled_compact";
pub const META_FINISHED_COMPACT: &[u8] = b"finished_compact";

pub fn meta_key(name: &[u8]) -> Bytes {
    Bucket::Meta.raw_key(name)
}

pub fn encode_consistent_index(position: ConsistentIndex) -> Bytes {
    let mut buffer = BytesMut::with_capacity(16);
    buffer.put_u64(position.index);
    buffer.put_u64(position.term);
    buffer.freeze()
}

pub fn decode_consistent_index(value: &[u8]) -> Result<ConsistentIndex, BackendError> {
    if value.len() != 16 {
        return Err(BackendError::new(format!("corrupt consistent index {value:?}")));
    }
    let mut cursor = value;
    Ok(ConsistentIndex {
        index: cursor.get_u64(),
        term: cursor.get_u64(),
    })
}

pub fn encode_i64(value: i64) -> Bytes {
    Bytes::copy_from_slice(&value.to_be_bytes())
}

pub fn decode_i64(value: &[u8]) -> Result<i64, BackendError> {
    let bytes: [u8; 8] = value
        .try_into()
        .map_err(|_| BackendError::new(format!("corrupt meta integer {value:?}")))?;
    Ok(i64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_keys_sort_in_revision_order() {
        let revisions = [
            RevisionKey::new(2, 0),
            RevisionKey::new(2, 1),
            RevisionKey::new(3, 0),
            RevisionKey::new(256, 0),
        ];
        for pair in revisions.windows(2) {
            assert!(revision_raw_key(pair[0]) < revision_raw_key(pair[1]), "{pair:?}");
            assert_eq!(decode_revision_raw_key(&revision_raw_key(pair[0])).unwrap(), pair[0]);
        }
    }

    #[test]
    fn entries_round_trip() {
        let kv = KeyValue {
            key: Bytes::from_static(b"key"),
            create_revision: Revision(3),
            mod_revision: Revision(9),
            version: 4,
            value: Bytes::from_static(b"value"),
            lease: LeaseId(77),
        };
        let revision = RevisionKey::new(9, 2);
        let encoded = encode_put(&kv);
        assert_eq!(decode_entry(revision, &encoded).unwrap(), StoredEntry::Put(kv));
        assert_eq!(decode_entry_key(revision, &encoded).unwrap(), b"key");
        let tombstone = encode_tombstone(b"gone");
        assert_eq!(
            decode_entry(revision, &tombstone).unwrap(),
            StoredEntry::Tombstone(Bytes::from_static(b"gone"))
        );
        assert_eq!(decode_entry_key(revision, &tombstone).unwrap(), b"gone");
        assert!(decode_entry(revision, &Bytes::from_static(&[7])).is_err());
    }
}
