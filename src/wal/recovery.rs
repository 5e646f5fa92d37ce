//! Recovery: what to do with each segment, as a decision table.
//!
//! A checksum alone cannot tell a torn tail that was never acknowledged from
//! bit rot in a record that was (PAR, FAST'18). Two facts of the write protocol
//! let recovery tell them apart:
//!
//! 1. A segment is synced in full before the next one is created, so only the
//!    last segment can hold unsynced bytes.
//! 2. Every record carries the durable offset of its segment at the time it was
//!    written: all bytes below it had been made durable by a completed sync.
//!    A crash never damages durable bytes, so damage below the largest durable
//!    offset carried by any valid record is corruption of committed data.
//!
//! Recovery parses each segment from its start until the end or the first
//! damage, then scans the rest for valid records of the same segment:
//!
//! | segment | what the scan found                                     | decision          |
//! |---------|---------------------------------------------------------|-------------------|
//! | any     | clean: valid records up to the end of the file          | accept            |
//! | sealed  | damage of any kind                                      | refuse            |
//! | last    | zeros from the damage to the end of the file            | cut zeros         |
//! | last    | damage, nothing valid after it                          | truncate tail     |
//! | last    | damage, valid records after it, none proves it durable  | truncate unproven |
//! | last    | damage below a durable offset carried by a later record | refuse            |
//!
//! "Cut zeros" cuts the file there without calling it a repair: the production
//! devices write zeros ahead of the active segment's end (`io::zero_ahead`),
//! and a size that reached the disk before its data looks the same; either
//! way nothing was stored there. (Rotation cuts a segment to its last record
//! before sealing it, so a sealed segment never ends in zeros.)
//! "Truncate" cuts the file at the damage (and logs it): the bytes there were
//! never synced, so nothing in them was acknowledged. "Truncate unproven" is
//! the same for a crash that persisted later blocks but not earlier ones; the
//! valid records it drops were never synced either. "Refuse" stops start-up
//! with an error naming the file and offset; the node must be repaired from its
//! peers, never silently truncated. Known limit (PAR): bit rot in the last
//! synced batch of the last segment, before any later record proves it
//! durable, looks exactly like a torn tail and is truncated; Raft re-replicates
//! those entries from the quorum that acknowledged them.

use std::ops::Range;

use super::record::{find_valid, parse_at, Damage, Header, Parsed};

/// A segment's place in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SegmentRole {
    /// A later segment exists, so this one was synced in full.
    Sealed,
    /// The newest segment: the only one that may hold unsynced bytes.
    Last,
}

/// What follows the first damage in a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum After {
    /// Only zeros, up to the end of the file.
    Zeros,
    /// No valid record of this segment.
    Nothing,
    /// Valid records, all written before the damaged bytes were known durable.
    UnprovenRecords,
    /// A valid record whose durable offset lies beyond the damage.
    DurableProof,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ScanResult {
    Clean,
    Damaged { damage: Damage, after: After },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Decision {
    Accept,
    CutZeros,
    TruncateTail,
    TruncateUnproven,
    Refuse,
}

/// The table in the module doc, as code.
pub(crate) fn decide(role: SegmentRole, scan: ScanResult) -> Decision {
    match (role, scan) {
        (SegmentRole::Sealed | SegmentRole::Last, ScanResult::Clean) => Decision::Accept,
        (SegmentRole::Sealed, ScanResult::Damaged { .. }) => Decision::Refuse,
        (
            SegmentRole::Last,
            ScanResult::Damaged {
                after: After::Zeros, ..
            },
        ) => Decision::CutZeros,
        (
            SegmentRole::Last,
            ScanResult::Damaged {
                after: After::Nothing, ..
            },
        ) => Decision::TruncateTail,
        (
            SegmentRole::Last,
            ScanResult::Damaged {
                after: After::UnprovenRecords,
                ..
            },
        ) => Decision::TruncateUnproven,
        (
            SegmentRole::Last,
            ScanResult::Damaged {
                after: After::DurableProof,
                ..
            },
        ) => Decision::Refuse,
    }
}

/// The valid prefix of one segment and what lies beyond it.
pub(crate) struct SegmentScan {
    pub records: Vec<(Header, Range<usize>)>,
    /// Where the valid prefix ends (the damage offset when damaged).
    pub valid_end: usize,
    pub result: ScanResult,
    /// Valid records found after the damage (dropped if the tail is truncated).
    pub records_after_damage: usize,
}

pub(crate) fn scan_segment(data: &[u8], segment: u64) -> SegmentScan {
    let mut records = Vec::new();
    let mut at = 0;
    let damage = loop {
        match parse_at(data, at, segment) {
            Parsed::Record { header, payload, next } => {
                records.push((header, payload));
                at = next;
            }
            Parsed::End => {
                return SegmentScan {
                    records,
                    valid_end: at,
                    result: ScanResult::Clean,
                    records_after_damage: 0,
                };
            }
            Parsed::Damaged(damage) => break damage,
        }
    };
    if data[at..].iter().all(|&byte| byte == 0) {
        return SegmentScan {
            records,
            valid_end: at,
            result: ScanResult::Damaged {
                damage,
                after: After::Zeros,
            },
            records_after_damage: 0,
        };
    }
    let mut after = After::Nothing;
    let mut records_after_damage = 0;
    let mut cursor = at + 1;
    while let Some((_, header, next)) = find_valid(data, cursor, segment) {
        records_after_damage += 1;
        if header.durable_offset as usize > at {
            after = After::DurableProof;
        } else if after == After::Nothing {
            after = After::UnprovenRecords;
        }
        cursor = next;
    }
    SegmentScan {
        records,
        valid_end: at,
        result: ScanResult::Damaged { damage, after },
        records_after_damage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: [SegmentRole; 2] = [SegmentRole::Sealed, SegmentRole::Last];
    const DAMAGES: [Damage; 4] = [Damage::Zero, Damage::Incomplete, Damage::Checksum, Damage::Misplaced];
    const AFTERS: [After; 4] = [
        After::Zeros,
        After::Nothing,
        After::UnprovenRecords,
        After::DurableProof,
    ];

    /// The module doc's table, row by row: role and scan patterns, then the decision.
    type Row = (fn(SegmentRole) -> bool, fn(ScanResult) -> bool, Decision);
    const TABLE: [Row; 6] = [
        (|_| true, |scan| scan == ScanResult::Clean, Decision::Accept),
        (
            |role| role == SegmentRole::Sealed,
            |scan| scan != ScanResult::Clean,
            Decision::Refuse,
        ),
        (
            |role| role == SegmentRole::Last,
            |scan| {
                matches!(
                    scan,
                    ScanResult::Damaged {
                        after: After::Zeros,
                        ..
                    }
                )
            },
            Decision::CutZeros,
        ),
        (
            |role| role == SegmentRole::Last,
            |scan| {
                matches!(
                    scan,
                    ScanResult::Damaged {
                        after: After::Nothing,
                        ..
                    }
                )
            },
            Decision::TruncateTail,
        ),
        (
            |role| role == SegmentRole::Last,
            |scan| {
                matches!(
                    scan,
                    ScanResult::Damaged {
                        after: After::UnprovenRecords,
                        ..
                    }
                )
            },
            Decision::TruncateUnproven,
        ),
        (
            |role| role == SegmentRole::Last,
            |scan| {
                matches!(
                    scan,
                    ScanResult::Damaged {
                        after: After::DurableProof,
                        ..
                    }
                )
            },
            Decision::Refuse,
        ),
    ];

    fn every_scan() -> Vec<ScanResult> {
        let mut scans = vec![ScanResult::Clean];
        for damage in DAMAGES {
            for after in AFTERS {
                scans.push(ScanResult::Damaged { damage, after });
            }
        }
        scans
    }

    #[test]
    fn every_input_lands_in_exactly_one_row_and_the_code_agrees() {
        let mut combinations = 0;
        for role in ROLES {
            for scan in every_scan() {
                combinations += 1;
                let rows: Vec<usize> = (0..TABLE.len())
                    .filter(|&row| TABLE[row].0(role) && TABLE[row].1(scan))
                    .collect();
                assert_eq!(rows.len(), 1, "{role:?} {scan:?} matches rows {rows:?}");
                assert_eq!(decide(role, scan), TABLE[rows[0]].2, "{role:?} {scan:?}");
            }
        }
        assert_eq!(combinations, 2 * (1 + 4 * 4));
    }

    #[test]
    fn refusal_never_comes_from_a_torn_tail_and_sealed_damage_never_truncates() {
        for role in ROLES {
            for scan in every_scan() {
                let decision = decide(role, scan);
                if let ScanResult::Damaged {
                    after: After::DurableProof,
                    ..
                } = scan
                {
                    assert_eq!(
                        decision,
                        Decision::Refuse,
                        "proven-durable damage must never be truncated"
                    );
                }
                if role == SegmentRole::Sealed && scan != ScanResult::Clean {
                    assert_eq!(decision, Decision::Refuse);
                }
            }
        }
    }
}
