//! The bytes a client write becomes inside a Raft entry.
//!
//! Layout (all integers big-endian): `[version u8 = 1][origin member u64]
//! [request id u64][command]`. A command is an mvcc write (tags 1-6), a
//! lease command (tags 7-8) or an alarm change (tag 9: `[action u8]
//! [member u64][alarm u8]`). Tags 7-9 were added without a version change:
//! older entries decode unchanged, and only a member too old to know a tag
//! refuses it. The origin and id let the member that proposed
//! the entry find the waiting client when it applies it; every other member
//! applies it the same way and answers nobody. The request encoding is braid's
//! own (not protobuf) so the server stays free of wire types, and it is the
//! on-disk format of WAL entries: keep it stable and versioned. A version
//! must never be 0xC1: normal entries starting with that byte are member
//! attribute entries (`membership::MEMBER_ENTRY_TAG`), which the node loop
//! routes before decoding.
//!
//! Decoding never panics: a malformed entry is an error the caller treats as
//! corruption (it was checksummed by the WAL and by the peer frame).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::lessor::{LeaseCheckpoint, LeaseCommand};
use crate::mvcc::{
    CompactRequest, Compare, CompareResult, CompareTarget, DeleteRangeRequest, LeaseId, PutRequest, RangeRequest,
    RequestOp, Revision, SortOrder, SortTarget, TxnRequest, WriteRequest,
};
use crate::server::alarms::{AlarmAction, AlarmChange, AlarmKind, AlarmMember};

const VERSION: u8 = 1;

/// A decoded proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub origin: u64,
    pub id: u64,
    pub command: Command,
}

/// What a committed entry asks the state machine to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// An mvcc write (a lease revoke is one: it deletes the lease's keys).
    Write(WriteRequest),
    /// A lease command with no mvcc effect (the lessor applies it).
    Lease(LeaseCommand),
    /// Maintenance.Alarm ACTIVATE / DEACTIVATE (`server::alarms`).
    Alarm(AlarmChange),
}

const TAG_LEASE_GRANT: u8 = 7;
const TAG_LEASE_CHECKPOINT: u8 = 8;
const TAG_ALARM: u8 = 9;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed proposal: {0}")]
pub struct DecodeError(&'static str);

pub fn encode(proposal: &Proposal) -> Bytes {
    let mut buffer = BytesMut::with_capacity(64);
    buffer.put_u8(VERSION);
    buffer.put_u64(proposal.origin);
    buffer.put_u64(proposal.id);
    match &proposal.command {
        Command::Write(request) => put_write(&mut buffer, request),
        Command::Lease(LeaseCommand::Grant { id, ttl_seconds }) => {
            buffer.put_u8(TAG_LEASE_GRANT);
            buffer.put_i64(id.0);
            buffer.put_i64(*ttl_seconds);
        }
        Command::Lease(LeaseCommand::Checkpoint(checkpoints)) => {
            buffer.put_u8(TAG_LEASE_CHECKPOINT);
            buffer.put_u32(checkpoints.len() as u32);
            for checkpoint in checkpoints {
                buffer.put_i64(checkpoint.id.0);
                buffer.put_i64(checkpoint.remaining_ttl_seconds);
            }
        }
        Command::Alarm(change) => {
            buffer.put_u8(TAG_ALARM);
            buffer.put_u8(match change.action {
                AlarmAction::Activate => 1,
                AlarmAction::Deactivate => 2,
            });
            buffer.put_u64(change.member.member_id);
            buffer.put_u8(change.member.alarm.number() as u8);
        }
    }
    buffer.freeze()
}

pub fn decode(mut data: Bytes) -> Result<Proposal, DecodeError> {
    let version = take_u8(&mut data)?;
    if version != VERSION {
        return Err(DecodeError("unknown version"));
    }
    let origin = take_u64(&mut data)?;
    let id = take_u64(&mut data)?;
    let command = take_command(&mut data)?;
    if data.has_remaining() {
        return Err(DecodeError("trailing bytes"));
    }
    Ok(Proposal { origin, id, command })
}

// ----- encoding ----------------------------------------------------------

fn put_bytes(buffer: &mut BytesMut, bytes: &Bytes) {
    buffer.put_u32(bytes.len() as u32);
    buffer.put_slice(bytes);
}

fn put_bool(buffer: &mut BytesMut, value: bool) {
    buffer.put_u8(u8::from(value));
}

fn put_write(buffer: &mut BytesMut, request: &WriteRequest) {
    match request {
        WriteRequest::Put(put) => {
            buffer.put_u8(1);
            put_put(buffer, put);
        }
        WriteRequest::DeleteRange(delete) => {
            buffer.put_u8(2);
            put_delete(buffer, delete);
        }
        WriteRequest::Txn(txn) => {
            buffer.put_u8(3);
            put_txn(buffer, txn);
        }
        WriteRequest::Compact(compact) => {
            buffer.put_u8(4);
            buffer.put_i64(compact.revision.0);
        }
        WriteRequest::RevokeLease(lease) => {
            buffer.put_u8(5);
            buffer.put_i64(lease.0);
        }
        WriteRequest::Noop => buffer.put_u8(6),
    }
}

fn put_put(buffer: &mut BytesMut, put: &PutRequest) {
    put_bytes(buffer, &put.key);
    put_bytes(buffer, &put.value);
    buffer.put_i64(put.lease.0);
    put_bool(buffer, put.prev_kv);
    put_bool(buffer, put.ignore_value);
    put_bool(buffer, put.ignore_lease);
}

fn put_delete(buffer: &mut BytesMut, delete: &DeleteRangeRequest) {
    put_bytes(buffer, &delete.key);
    put_bytes(buffer, &delete.range_end);
    put_bool(buffer, delete.prev_kv);
}

fn put_range(buffer: &mut BytesMut, range: &RangeRequest) {
    put_bytes(buffer, &range.key);
    put_bytes(buffer, &range.range_end);
    buffer.put_i64(range.limit);
    buffer.put_i64(range.revision.0);
    buffer.put_u8(match range.sort_order {
        SortOrder::None => 0,
        SortOrder::Ascend => 1,
        SortOrder::Descend => 2,
    });
    buffer.put_u8(match range.sort_target {
        SortTarget::Key => 0,
        SortTarget::Version => 1,
        SortTarget::Create => 2,
        SortTarget::Mod => 3,
        SortTarget::Value => 4,
    });
    put_bool(buffer, range.keys_only);
    put_bool(buffer, range.count_only);
    for revision in [
        range.min_mod_revision,
        range.max_mod_revision,
        range.min_create_revision,
        range.max_create_revision,
    ] {
        buffer.put_i64(revision.0);
    }
}

fn put_txn(buffer: &mut BytesMut, txn: &TxnRequest) {
    buffer.put_u32(txn.compare.len() as u32);
    for compare in &txn.compare {
        put_bytes(buffer, &compare.key);
        put_bytes(buffer, &compare.range_end);
        buffer.put_u8(match compare.result {
            CompareResult::Equal => 0,
            CompareResult::Greater => 1,
            CompareResult::Less => 2,
            CompareResult::NotEqual => 3,
        });
        match &compare.target {
            CompareTarget::Version(version) => {
                buffer.put_u8(0);
                buffer.put_i64(*version);
            }
            CompareTarget::CreateRevision(revision) => {
                buffer.put_u8(1);
                buffer.put_i64(revision.0);
            }
            CompareTarget::ModRevision(revision) => {
                buffer.put_u8(2);
                buffer.put_i64(revision.0);
            }
            CompareTarget::Value(value) => {
                buffer.put_u8(3);
                put_bytes(buffer, value);
            }
            CompareTarget::Lease(lease) => {
                buffer.put_u8(4);
                buffer.put_i64(lease.0);
            }
        }
    }
    for branch in [&txn.success, &txn.failure] {
        buffer.put_u32(branch.len() as u32);
        for op in branch {
            match op {
                RequestOp::Range(range) => {
                    buffer.put_u8(1);
                    put_range(buffer, range);
                }
                RequestOp::Put(put) => {
                    buffer.put_u8(2);
                    put_put(buffer, put);
                }
                RequestOp::DeleteRange(delete) => {
                    buffer.put_u8(3);
                    put_delete(buffer, delete);
                }
                RequestOp::Txn(nested) => {
                    buffer.put_u8(4);
                    put_txn(buffer, nested);
                }
                RequestOp::Empty => buffer.put_u8(0),
            }
        }
    }
}

// ----- decoding ----------------------------------------------------------

/// Nested txns deeper than this are refused (the API limits total ops anyway).
const NESTING_MAX: usize = 64;

fn take_u8(data: &mut Bytes) -> Result<u8, DecodeError> {
    if data.remaining() < 1 {
        return Err(DecodeError("truncated"));
    }
    Ok(data.get_u8())
}

fn take_u32(data: &mut Bytes) -> Result<u32, DecodeError> {
    if data.remaining() < 4 {
        return Err(DecodeError("truncated"));
    }
    Ok(data.get_u32())
}

fn take_u64(data: &mut Bytes) -> Result<u64, DecodeError> {
    if data.remaining() < 8 {
        return Err(DecodeError("truncated"));
    }
    Ok(data.get_u64())
}

fn take_i64(data: &mut Bytes) -> Result<i64, DecodeError> {
    take_u64(data).map(|value| value as i64)
}

fn take_bool(data: &mut Bytes) -> Result<bool, DecodeError> {
    match take_u8(data)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError("bad bool")),
    }
}

fn take_bytes(data: &mut Bytes) -> Result<Bytes, DecodeError> {
    let length = take_u32(data)? as usize;
    if data.remaining() < length {
        return Err(DecodeError("truncated bytes"));
    }
    Ok(data.split_to(length))
}

fn take_count(data: &mut Bytes) -> Result<usize, DecodeError> {
    let count = take_u32(data)? as usize;
    // Every item takes at least one byte: a larger count is corruption, and
    // refusing it keeps a bad length from reserving huge vectors.
    if count > data.remaining() {
        return Err(DecodeError("count exceeds data"));
    }
    Ok(count)
}

fn take_alarm(data: &mut Bytes) -> Result<AlarmChange, DecodeError> {
    let action = match take_u8(data)? {
        1 => AlarmAction::Activate,
        2 => AlarmAction::Deactivate,
        _ => return Err(DecodeError("bad alarm action")),
    };
    let member_id = take_u64(data)?;
    let alarm = AlarmKind::from_number(i32::from(take_u8(data)?)).ok_or(DecodeError("bad alarm type"))?;
    Ok(AlarmChange {
        action,
        member: AlarmMember { member_id, alarm },
    })
}

fn take_command(data: &mut Bytes) -> Result<Command, DecodeError> {
    Ok(match take_u8(data)? {
        TAG_LEASE_GRANT => Command::Lease(LeaseCommand::Grant {
            id: LeaseId(take_i64(data)?),
            ttl_seconds: take_i64(data)?,
        }),
        TAG_LEASE_CHECKPOINT => {
            let mut checkpoints = Vec::new();
            for _ in 0..take_count(data)? {
                checkpoints.push(LeaseCheckpoint {
                    id: LeaseId(take_i64(data)?),
                    remaining_ttl_seconds: take_i64(data)?,
                });
            }
            Command::Lease(LeaseCommand::Checkpoint(checkpoints))
        }
        TAG_ALARM => Command::Alarm(take_alarm(data)?),
        tag => Command::Write(take_write(tag, data, 0)?),
    })
}

/// The mvcc write whose tag (already read) is `tag`.
fn take_write(tag: u8, data: &mut Bytes, depth: usize) -> Result<WriteRequest, DecodeError> {
    Ok(match tag {
        1 => WriteRequest::Put(take_put(data)?),
        2 => WriteRequest::DeleteRange(take_delete(data)?),
        3 => WriteRequest::Txn(take_txn(data, depth)?),
        4 => WriteRequest::Compact(CompactRequest {
            revision: Revision(take_i64(data)?),
        }),
        5 => WriteRequest::RevokeLease(LeaseId(take_i64(data)?)),
        6 => WriteRequest::Noop,
        _ => return Err(DecodeError("unknown request kind")),
    })
}

fn take_put(data: &mut Bytes) -> Result<PutRequest, DecodeError> {
    Ok(PutRequest {
        key: take_bytes(data)?,
        value: take_bytes(data)?,
        lease: LeaseId(take_i64(data)?),
        prev_kv: take_bool(data)?,
        ignore_value: take_bool(data)?,
        ignore_lease: take_bool(data)?,
    })
}

fn take_delete(data: &mut Bytes) -> Result<DeleteRangeRequest, DecodeError> {
    Ok(DeleteRangeRequest {
        key: take_bytes(data)?,
        range_end: take_bytes(data)?,
        prev_kv: take_bool(data)?,
    })
}

fn take_range(data: &mut Bytes) -> Result<RangeRequest, DecodeError> {
    let key = take_bytes(data)?;
    let range_end = take_bytes(data)?;
    let limit = take_i64(data)?;
    let revision = Revision(take_i64(data)?);
    let sort_order = match take_u8(data)? {
        0 => SortOrder::None,
        1 => SortOrder::Ascend,
        2 => SortOrder::Descend,
        _ => return Err(DecodeError("bad sort order")),
    };
    let sort_target = match take_u8(data)? {
        0 => SortTarget::Key,
        1 => SortTarget::Version,
        2 => SortTarget::Create,
        3 => SortTarget::Mod,
        4 => SortTarget::Value,
        _ => return Err(DecodeError("bad sort target")),
    };
    Ok(RangeRequest {
        key,
        range_end,
        limit,
        revision,
        sort_order,
        sort_target,
        keys_only: take_bool(data)?,
        count_only: take_bool(data)?,
        min_mod_revision: Revision(take_i64(data)?),
        max_mod_revision: Revision(take_i64(data)?),
        min_create_revision: Revision(take_i64(data)?),
        max_create_revision: Revision(take_i64(data)?),
    })
}

fn take_txn(data: &mut Bytes, depth: usize) -> Result<TxnRequest, DecodeError> {
    if depth > NESTING_MAX {
        return Err(DecodeError("txn nested too deeply"));
    }
    let mut compare = Vec::new();
    for _ in 0..take_count(data)? {
        let key = take_bytes(data)?;
        let range_end = take_bytes(data)?;
        let result = match take_u8(data)? {
            0 => CompareResult::Equal,
            1 => CompareResult::Greater,
            2 => CompareResult::Less,
            3 => CompareResult::NotEqual,
            _ => return Err(DecodeError("bad compare result")),
        };
        let target = match take_u8(data)? {
            0 => CompareTarget::Version(take_i64(data)?),
            1 => CompareTarget::CreateRevision(Revision(take_i64(data)?)),
            2 => CompareTarget::ModRevision(Revision(take_i64(data)?)),
            3 => CompareTarget::Value(take_bytes(data)?),
            4 => CompareTarget::Lease(LeaseId(take_i64(data)?)),
            _ => return Err(DecodeError("bad compare target")),
        };
        compare.push(Compare {
            key,
            range_end,
            target,
            result,
        });
    }
    let mut branches = [Vec::new(), Vec::new()];
    for branch in &mut branches {
        for _ in 0..take_count(data)? {
            branch.push(match take_u8(data)? {
                0 => RequestOp::Empty,
                1 => RequestOp::Range(take_range(data)?),
                2 => RequestOp::Put(take_put(data)?),
                3 => RequestOp::DeleteRange(take_delete(data)?),
                4 => RequestOp::Txn(take_txn(data, depth + 1)?),
                _ => return Err(DecodeError("bad request op")),
            });
        }
    }
    let [success, failure] = branches;
    Ok(TxnRequest {
        compare,
        success,
        failure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    fn sample_txn() -> TxnRequest {
        let mut range = RangeRequest::new(bytes("a"), bytes("z"));
        range.limit = 3;
        range.sort_order = SortOrder::Descend;
        range.sort_target = SortTarget::Mod;
        range.min_create_revision = Revision(4);
        TxnRequest {
            compare: vec![
                Compare {
                    key: bytes("k"),
                    range_end: Bytes::new(),
                    target: CompareTarget::Value(bytes("v")),
                    result: CompareResult::NotEqual,
                },
                Compare {
                    key: bytes("k"),
                    range_end: bytes("l"),
                    target: CompareTarget::ModRevision(Revision(9)),
                    result: CompareResult::Less,
                },
            ],
            success: vec![
                RequestOp::Put(PutRequest {
                    key: bytes("k"),
                    value: bytes("w"),
                    lease: LeaseId(77),
                    prev_kv: true,
                    ignore_value: false,
                    ignore_lease: true,
                }),
                RequestOp::Range(range),
                RequestOp::Txn(TxnRequest {
                    compare: vec![],
                    success: vec![RequestOp::DeleteRange(DeleteRangeRequest::new(bytes("x"), bytes("y")))],
                    failure: vec![RequestOp::Empty],
                }),
            ],
            failure: vec![RequestOp::DeleteRange(DeleteRangeRequest {
                key: bytes("q"),
                range_end: Bytes::new(),
                prev_kv: true,
            })],
        }
    }

    #[test]
    fn every_request_kind_round_trips() {
        let commands = vec![
            Command::Write(WriteRequest::Put(PutRequest::new(bytes("key"), bytes("value")))),
            Command::Write(WriteRequest::DeleteRange(DeleteRangeRequest::new(
                bytes("a"),
                bytes("\0"),
            ))),
            Command::Write(WriteRequest::Txn(sample_txn())),
            Command::Write(WriteRequest::Compact(CompactRequest { revision: Revision(12) })),
            Command::Write(WriteRequest::RevokeLease(LeaseId(5))),
            Command::Write(WriteRequest::Noop),
            Command::Lease(LeaseCommand::Grant {
                id: LeaseId(-3),
                ttl_seconds: 9_000_000_001,
            }),
            Command::Lease(LeaseCommand::Checkpoint(vec![])),
            Command::Lease(LeaseCommand::Checkpoint(vec![
                LeaseCheckpoint {
                    id: LeaseId(1),
                    remaining_ttl_seconds: 0,
                },
                LeaseCheckpoint {
                    id: LeaseId(i64::MAX),
                    remaining_ttl_seconds: 299,
                },
            ])),
        ];
        let alarms = [
            (AlarmAction::Activate, AlarmKind::NoSpace),
            (AlarmAction::Deactivate, AlarmKind::NoSpace),
            (AlarmAction::Activate, AlarmKind::Corrupt),
            (AlarmAction::Deactivate, AlarmKind::Corrupt),
        ]
        .map(|(action, alarm)| {
            Command::Alarm(AlarmChange {
                action,
                member: AlarmMember {
                    member_id: 0x8e9e_05c5_2164_694d,
                    alarm,
                },
            })
        });
        for (id, command) in commands.into_iter().chain(alarms).enumerate() {
            let proposal = Proposal {
                origin: 0x1234,
                id: id as u64,
                command,
            };
            assert_eq!(decode(encode(&proposal)), Ok(proposal));
        }
    }

    #[test]
    fn lease_tags_extend_the_format_without_changing_older_entries() {
        let envelope = |tail: &[u8]| {
            let mut bytes = vec![VERSION];
            bytes.extend(7u64.to_be_bytes());
            bytes.extend(9u64.to_be_bytes());
            bytes.extend_from_slice(tail);
            Bytes::from(bytes)
        };
        let proposal = |command| Proposal {
            origin: 7,
            id: 9,
            command,
        };
        // A revoke exactly as braid wrote it before leases existed.
        let revoke = envelope(&[[5u8].as_slice(), &42i64.to_be_bytes()].concat());
        let decoded = proposal(Command::Write(WriteRequest::RevokeLease(LeaseId(42))));
        assert_eq!(decode(revoke.clone()), Ok(decoded.clone()));
        assert_eq!(encode(&decoded), revoke);
        let grant = proposal(Command::Lease(LeaseCommand::Grant {
            id: LeaseId(42),
            ttl_seconds: 60,
        }));
        let grant_bytes = envelope(&[[7u8].as_slice(), &42i64.to_be_bytes(), &60i64.to_be_bytes()].concat());
        assert_eq!(encode(&grant), grant_bytes);
        let checkpoint = proposal(Command::Lease(LeaseCommand::Checkpoint(vec![LeaseCheckpoint {
            id: LeaseId(3),
            remaining_ttl_seconds: 299,
        }])));
        let full = encode(&checkpoint);
        assert_eq!(&full[17..22], &[8, 0, 0, 0, 1]);
        for encoded in [grant_bytes, full] {
            for cut in 0..encoded.len() {
                assert!(
                    decode(encoded.slice(..cut)).is_err(),
                    "a lease proposal cut at {cut} decoded"
                );
            }
        }
        let alarm = proposal(Command::Alarm(AlarmChange {
            action: AlarmAction::Deactivate,
            member: AlarmMember {
                member_id: 5,
                alarm: AlarmKind::NoSpace,
            },
        }));
        let alarm_bytes = envelope(
            &[
                [9u8, 2].as_slice(),
                &5u64.to_be_bytes(),
                &[AlarmKind::NoSpace.number() as u8],
            ]
            .concat(),
        );
        assert_eq!(encode(&alarm), alarm_bytes);
        assert_eq!(decode(alarm_bytes), Ok(alarm));
        assert_eq!(decode(envelope(&[10])), Err(DecodeError("unknown request kind")));
    }

    #[test]
    fn every_truncation_and_garbage_is_an_error_not_a_panic() {
        let full = encode(&Proposal {
            origin: 1,
            id: 2,
            command: Command::Write(WriteRequest::Txn(sample_txn())),
        });
        let alarm = encode(&Proposal {
            origin: 1,
            id: 3,
            command: Command::Alarm(AlarmChange {
                action: AlarmAction::Activate,
                member: AlarmMember {
                    member_id: 9,
                    alarm: AlarmKind::NoSpace,
                },
            }),
        });
        for cut in 0..alarm.len() {
            assert!(
                decode(alarm.slice(..cut)).is_err(),
                "an alarm proposal cut at {cut} decoded"
            );
        }
        for (position, value) in [(18, 0u8), (18, 3), (27, 0), (27, 3)] {
            let mut bad = alarm.to_vec();
            bad[position] = value;
            assert!(decode(Bytes::from(bad)).is_err(), "byte {position} = {value} decoded");
        }
        for cut in 0..full.len() {
            assert!(decode(full.slice(..cut)).is_err(), "a proposal cut at {cut} decoded");
        }
        let mut extended = full.to_vec();
        extended.push(0);
        assert_eq!(decode(Bytes::from(extended)), Err(DecodeError("trailing bytes")));
        let mut rng = 0x9e37_79b9_u64;
        for _ in 0..2000 {
            let mut garbage = full.to_vec();
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let position = (rng >> 33) as usize % garbage.len();
            garbage[position] ^= (rng >> 17) as u8 | 1;
            let _ = decode(Bytes::from(garbage));
        }
    }
}
