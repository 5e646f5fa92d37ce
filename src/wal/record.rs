//! Record framing: every record is self-identifying and checksummed.
//!
//! Byte layout (little-endian), padded with zeros to a multiple of 8 bytes so a
//! scan for records after damage only has to try aligned offsets:
//!
//! | at | bytes | field                                                         |
//! |----|-------|---------------------------------------------------------------|
//! |  0 | 4     | crc32 (`crc32fast`) of bytes 4..48 and the payload             |
//! |  4 | 4     | payload length                                                 |
//! |  8 | 1     | kind (`RecordKind`)                                            |
//! |  9 | 7     | zero                                                           |
//! | 16 | 8     | segment sequence number                                        |
//! | 24 | 8     | index                                                          |
//! | 32 | 8     | term                                                           |
//! | 40 | 4     | offset of this record in its segment                           |
//! | 44 | 4     | durable offset: bytes of this segment known durable when it was written |
//! | 48 | len   | payload                                                        |
//!
//! Segment, offset, index and term sit inside the checksum, so a record that
//! lands in the wrong file or at the wrong offset (misdirected write, stale
//! block) is caught even though its checksum is valid (TESTING.md S6). The
//! durable offset lets recovery tell a torn tail from damaged committed data
//! (see `recovery`).

use std::ops::Range;

use bytes::{BufMut, BytesMut};

pub(crate) const HEADER_BYTES: usize = 48;
pub(crate) const ALIGNMENT: usize = 8;
/// Payload of a segment header: magic, then the format version.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"braidwal";
pub(crate) const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// First record of every segment: index = first index expected in it.
    SegmentHeader = 1,
    /// A log entry: index, term, payload = entry data.
    Entry = 2,
    /// index = commit, term = term, payload = vote (u64).
    HardState = 3,
    /// index and term of the latest snapshot; no payload.
    SnapshotMarker = 4,
    /// Entries from `index` on are gone; no payload.
    Truncate = 5,
}

impl RecordKind {
    fn from_byte(byte: u8) -> Option<RecordKind> {
        Some(match byte {
            1 => RecordKind::SegmentHeader,
            2 => RecordKind::Entry,
            3 => RecordKind::HardState,
            4 => RecordKind::SnapshotMarker,
            5 => RecordKind::Truncate,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub kind: RecordKind,
    pub payload_len: u32,
    pub segment: u64,
    pub index: u64,
    pub term: u64,
    pub offset: u32,
    pub durable_offset: u32,
}

/// Bytes a record with `payload_len` bytes of payload takes, padding included.
pub(crate) fn encoded_len(payload_len: usize) -> usize {
    (HEADER_BYTES + payload_len).next_multiple_of(ALIGNMENT)
}

/// Appends one framed record to `out`.
pub(crate) fn encode(out: &mut BytesMut, header: &Header, payload: &[u8]) {
    assert_eq!(
        header.payload_len as usize,
        payload.len(),
        "header length disagrees with payload: {header:?}"
    );
    let start = out.len();
    out.put_u32_le(0); // checksum, filled in below
    out.put_u32_le(header.payload_len);
    out.put_u8(header.kind as u8);
    out.put_bytes(0, 7);
    out.put_u64_le(header.segment);
    out.put_u64_le(header.index);
    out.put_u64_le(header.term);
    out.put_u32_le(header.offset);
    out.put_u32_le(header.durable_offset);
    out.put_slice(payload);
    let checksum = crc32fast::hash(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&checksum.to_le_bytes());
    let padded = encoded_len(payload.len());
    out.put_bytes(0, padded - (out.len() - start));
}

/// Why the bytes at some offset are not a valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Damage {
    /// The header is all zeros: a preallocated or size-before-data tail.
    Zero,
    /// The record runs past the end of the file: an append cut short.
    Incomplete,
    /// Header and payload do not match their checksum: torn or rotten.
    Checksum,
    /// A valid checksum, but the record names another segment or offset, or a
    /// kind this version does not know: a misdirected or stale write.
    Misplaced,
}

pub(crate) enum Parsed {
    Record {
        header: Header,
        payload: Range<usize>,
        next: usize,
    },
    End,
    Damaged(Damage),
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"))
}

/// Parses the record at `at` of a segment's bytes.
pub(crate) fn parse_at(data: &[u8], at: usize, segment: u64) -> Parsed {
    let rest = &data[at..];
    if rest.is_empty() {
        return Parsed::End;
    }
    if rest.len() < HEADER_BYTES {
        return Parsed::Damaged(if rest.iter().all(|&byte| byte == 0) {
            Damage::Zero
        } else {
            Damage::Incomplete
        });
    }
    if rest[..HEADER_BYTES].iter().all(|&byte| byte == 0) {
        return Parsed::Damaged(Damage::Zero);
    }
    let payload_len = u32_at(rest, 4) as usize;
    let Some(total) = HEADER_BYTES
        .checked_add(payload_len)
        .filter(|&total| total <= rest.len())
    else {
        return Parsed::Damaged(Damage::Incomplete);
    };
    if crc32fast::hash(&rest[4..total]) != u32_at(rest, 0) {
        return Parsed::Damaged(Damage::Checksum);
    }
    let Some(kind) = RecordKind::from_byte(rest[8]) else {
        return Parsed::Damaged(Damage::Misplaced);
    };
    let header = Header {
        kind,
        payload_len: payload_len as u32,
        segment: u64_at(rest, 16),
        index: u64_at(rest, 24),
        term: u64_at(rest, 32),
        offset: u32_at(rest, 40),
        durable_offset: u32_at(rest, 44),
    };
    if header.segment != segment || header.offset as usize != at {
        return Parsed::Damaged(Damage::Misplaced);
    }
    // Padding may be cut off only at the very end of the file.
    let next = (at + encoded_len(payload_len)).min(data.len());
    Parsed::Record {
        header,
        payload: at + HEADER_BYTES..at + total,
        next,
    }
}

/// The first valid record of `segment` at an aligned offset in `from..`.
pub(crate) fn find_valid(data: &[u8], from: usize, segment: u64) -> Option<(usize, Header, usize)> {
    let mut at = from.next_multiple_of(ALIGNMENT);
    while at + HEADER_BYTES <= data.len() {
        // Cheap filter before the checksum: the record must name this place.
        if u32_at(data, at + 40) as usize == at && u64_at(data, at + 16) == segment {
            if let Parsed::Record { header, next, .. } = parse_at(data, at, segment) {
                return Some((at, header, next));
            }
        }
        at += ALIGNMENT;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: RecordKind, payload_len: u32, offset: u32) -> Header {
        Header {
            kind,
            payload_len,
            segment: 7,
            index: 42,
            term: 3,
            offset,
            durable_offset: 0,
        }
    }

    fn two_records() -> BytesMut {
        let mut out = BytesMut::new();
        encode(&mut out, &header(RecordKind::Entry, 5, 0), b"hello");
        let second = out.len() as u32;
        encode(&mut out, &header(RecordKind::Entry, 3, second), b"abc");
        out
    }

    #[test]
    fn records_round_trip_and_are_aligned() {
        let out = two_records();
        assert_eq!(out.len(), encoded_len(5) + encoded_len(3));
        assert_eq!(out.len() % ALIGNMENT, 0);
        let Parsed::Record {
            header: first,
            payload,
            next,
        } = parse_at(&out, 0, 7)
        else {
            panic!("first record")
        };
        assert_eq!(
            (first.kind, first.index, first.term, &out[payload]),
            (RecordKind::Entry, 42, 3, &b"hello"[..])
        );
        let Parsed::Record { payload, next: end, .. } = parse_at(&out, next, 7) else {
            panic!("second record")
        };
        assert_eq!(&out[payload], b"abc");
        assert!(matches!(parse_at(&out, end, 7), Parsed::End));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let clean = two_records();
        let first_len = encoded_len(5);
        for bit in 0..(HEADER_BYTES + 5) * 8 {
            let mut data = clean.clone();
            data[bit / 8] ^= 1 << (bit % 8);
            match parse_at(&data, 0, 7) {
                Parsed::Damaged(_) => {}
                Parsed::Record { .. } => panic!("bit {bit} flipped, record still accepted"),
                Parsed::End => panic!("bit {bit}: unexpected end"),
            }
            // The record after the damage is still found by the scan.
            let found = find_valid(&data, 8, 7).map(|(at, _, _)| at);
            assert_eq!(found, Some(first_len), "bit {bit}");
        }
    }

    #[test]
    fn damage_is_classified() {
        let clean = two_records();
        assert!(
            matches!(parse_at(&clean, 0, 8), Parsed::Damaged(Damage::Misplaced)),
            "wrong segment"
        );
        assert!(matches!(
            parse_at(&clean[..20], 0, 7),
            Parsed::Damaged(Damage::Incomplete)
        ));
        assert!(matches!(
            parse_at(&clean[..HEADER_BYTES + 2], 0, 7),
            Parsed::Damaged(Damage::Incomplete)
        ));
        assert!(matches!(parse_at(&[0u8; 100], 0, 7), Parsed::Damaged(Damage::Zero)));
        assert!(matches!(parse_at(&[0u8; 10], 0, 7), Parsed::Damaged(Damage::Zero)));
        // A valid record copied to another offset names the wrong place.
        let mut moved = vec![0u8; 64];
        moved.extend_from_slice(&clean[..encoded_len(5)]);
        assert!(matches!(parse_at(&moved, 64, 7), Parsed::Damaged(Damage::Misplaced)));
        assert_eq!(find_valid(&moved, 0, 7), None);
    }
}
