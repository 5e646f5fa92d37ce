//! Raft messages on the wire between members: conversion between the core's
//! types and the peer protocol (`braidpb`), inside frames whose payload is
//! checked with crc32. The check is ours, not the transport's, so a corrupt
//! frame is caught even where the transport skips encoding (the simulator).

use braid_proto::braidpb;
use bytes::Bytes;
use prost::Message as _;

use crate::raft::{ConfState, Entry, EntryKind, Index, Message, MessageKind, NodeId, Snapshot, SnapshotMeta, Term};

/// Why an incoming frame was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame checksum mismatch (expected {expected:#010x}, computed {computed:#010x})")]
    Checksum { expected: u32, computed: u32 },
    #[error("frame from cluster {got:#x}, this member belongs to cluster {expected:#x}")]
    ClusterMismatch { expected: u64, got: u64 },
    #[error("frame payload does not decode: {0}")]
    Decode(String),
    #[error("frame addressed to member {to:#x}, this member is {local:#x}")]
    WrongRecipient { local: u64, to: u64 },
    #[error("raft message has no known type ({0})")]
    UnknownType(i32),
}

fn kind_to_proto(kind: MessageKind) -> braidpb::MessageType {
    use braidpb::MessageType as T;
    match kind {
        MessageKind::Append => T::Append,
        MessageKind::AppendResponse => T::AppendResponse,
        MessageKind::Vote => T::Vote,
        MessageKind::VoteResponse => T::VoteResponse,
        MessageKind::PreVote => T::PreVote,
        MessageKind::PreVoteResponse => T::PreVoteResponse,
        MessageKind::Heartbeat => T::Heartbeat,
        MessageKind::HeartbeatResponse => T::HeartbeatResponse,
        MessageKind::Snapshot => T::Snapshot,
        MessageKind::Propose => T::Propose,
        MessageKind::ReadIndex => T::ReadIndex,
        MessageKind::ReadIndexResponse => T::ReadIndexResponse,
        MessageKind::TimeoutNow => T::TimeoutNow,
        MessageKind::TransferLeader => T::TransferLeader,
    }
}

fn kind_from_proto(value: i32) -> Result<MessageKind, FrameError> {
    use braidpb::MessageType as T;
    let kind = match T::try_from(value).map_err(|_| FrameError::UnknownType(value))? {
        T::Append => MessageKind::Append,
        T::AppendResponse => MessageKind::AppendResponse,
        T::Vote => MessageKind::Vote,
        T::VoteResponse => MessageKind::VoteResponse,
        T::PreVote => MessageKind::PreVote,
        T::PreVoteResponse => MessageKind::PreVoteResponse,
        T::Heartbeat => MessageKind::Heartbeat,
        T::HeartbeatResponse => MessageKind::HeartbeatResponse,
        T::Snapshot => MessageKind::Snapshot,
        T::ReadIndex => MessageKind::ReadIndex,
        T::ReadIndexResponse => MessageKind::ReadIndexResponse,
        T::TimeoutNow => MessageKind::TimeoutNow,
        T::TransferLeader => MessageKind::TransferLeader,
        T::Propose => MessageKind::Propose,
        T::Unspecified => return Err(FrameError::UnknownType(value)),
    };
    Ok(kind)
}

fn entry_to_proto(entry: &Entry) -> braidpb::Entry {
    braidpb::Entry {
        term: entry.term.0,
        index: entry.index.0,
        r#type: match entry.kind {
            EntryKind::Normal => braidpb::EntryType::Normal as i32,
            EntryKind::ConfChange => braidpb::EntryType::ConfChange as i32,
        },
        data: entry.data.clone(),
    }
}

fn entry_from_proto(entry: braidpb::Entry) -> Result<Entry, FrameError> {
    let kind = match braidpb::EntryType::try_from(entry.r#type) {
        Ok(braidpb::EntryType::Normal) => EntryKind::Normal,
        Ok(braidpb::EntryType::ConfChange) => EntryKind::ConfChange,
        Err(_) => return Err(FrameError::Decode(format!("unknown entry type {}", entry.r#type))),
    };
    Ok(Entry {
        index: Index(entry.index),
        term: Term(entry.term),
        kind,
        data: entry.data,
    })
}

/// Converts a core message to the peer protocol.
pub fn message_to_proto(message: &Message) -> braidpb::RaftMessage {
    braidpb::RaftMessage {
        r#type: kind_to_proto(message.kind) as i32,
        from: message.from.0,
        to: message.to.0,
        term: message.term.0,
        log_term: message.log_term.0,
        index: message.index.0,
        entries: message.entries.iter().map(entry_to_proto).collect(),
        commit: message.commit.0,
        reject: message.reject,
        reject_hint: message.reject_hint.0,
        reject_term: message.reject_term.0,
        context: message.context.clone(),
        snapshot: message.snapshot.as_ref().map(|snapshot| braidpb::Snapshot {
            meta: Some(braidpb::SnapshotMeta {
                index: snapshot.meta.index.0,
                term: snapshot.meta.term.0,
                conf_state: Some(braidpb::ConfState {
                    voters: snapshot.meta.conf_state.voters.iter().map(|node| node.0).collect(),
                    learners: snapshot.meta.conf_state.learners.iter().map(|node| node.0).collect(),
                }),
            }),
            data: snapshot.data.clone(),
        }),
    }
}

pub fn message_from_proto(message: braidpb::RaftMessage) -> Result<Message, FrameError> {
    let kind = kind_from_proto(message.r#type)?;
    let entries = message
        .entries
        .into_iter()
        .map(entry_from_proto)
        .collect::<Result<Vec<_>, _>>()?;
    let snapshot = message.snapshot.map(|snapshot| {
        let meta = snapshot.meta.unwrap_or_default();
        let conf = meta.conf_state.unwrap_or_default();
        Snapshot {
            meta: SnapshotMeta {
                index: Index(meta.index),
                term: Term(meta.term),
                conf_state: ConfState::new(
                    conf.voters.into_iter().map(NodeId),
                    conf.learners.into_iter().map(NodeId),
                ),
            },
            data: snapshot.data,
        }
    });
    Ok(Message {
        kind,
        from: NodeId(message.from),
        to: NodeId(message.to),
        term: Term(message.term),
        log_term: Term(message.log_term),
        index: Index(message.index),
        entries,
        commit: Index(message.commit),
        reject: message.reject,
        reject_hint: Index(message.reject_hint),
        reject_term: Term(message.reject_term),
        context: message.context,
        snapshot,
    })
}

/// Wraps one message in a checksummed frame.
pub fn encode_frame(cluster_id: u64, message: &Message) -> braidpb::Frame {
    let payload = Bytes::from(message_to_proto(message).encode_to_vec());
    braidpb::Frame {
        from: message.from.0,
        to: message.to.0,
        cluster_id,
        crc32: crc32fast::hash(&payload),
        payload,
    }
}

/// Checks and unwraps a frame received by member `local` of cluster `cluster_id`.
pub fn decode_frame(cluster_id: u64, local: NodeId, frame: braidpb::Frame) -> Result<Message, FrameError> {
    let computed = crc32fast::hash(&frame.payload);
    if computed != frame.crc32 {
        return Err(FrameError::Checksum {
            expected: frame.crc32,
            computed,
        });
    }
    if frame.cluster_id != cluster_id {
        return Err(FrameError::ClusterMismatch {
            expected: cluster_id,
            got: frame.cluster_id,
        });
    }
    let message = braidpb::RaftMessage::decode(frame.payload).map_err(|error| FrameError::Decode(error.to_string()))?;
    let message = message_from_proto(message)?;
    if message.to != local {
        return Err(FrameError::WrongRecipient {
            local: local.0,
            to: message.to.0,
        });
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        let mut message = Message::new(MessageKind::Append, NodeId(1), NodeId(2), Term(7));
        message.log_term = Term(6);
        message.index = Index(41);
        message.commit = Index(40);
        message.entries = vec![
            Entry {
                index: Index(42),
                term: Term(7),
                kind: EntryKind::Normal,
                data: Bytes::from_static(b"put a=b"),
            },
            Entry {
                index: Index(43),
                term: Term(7),
                kind: EntryKind::ConfChange,
                data: Bytes::from_static(b"\x01\0\0\0\0\0\0\0\x04"),
            },
        ];
        message.context = Bytes::from_static(b"read-9");
        message.snapshot = Some(Snapshot {
            meta: SnapshotMeta {
                index: Index(30),
                term: Term(5),
                conf_state: ConfState::new([NodeId(1), NodeId(2), NodeId(3)], [NodeId(4)]),
            },
            data: Bytes::from_static(b"image"),
        });
        message
    }

    #[test]
    fn every_field_survives_the_round_trip() {
        let message = sample();
        let frame = encode_frame(0xabc, &message);
        assert_eq!(decode_frame(0xabc, NodeId(2), frame), Ok(message));
    }

    #[test]
    fn every_kind_round_trips() {
        use MessageKind::*;
        for kind in [
            Append,
            AppendResponse,
            Vote,
            VoteResponse,
            PreVote,
            PreVoteResponse,
            Heartbeat,
            HeartbeatResponse,
            Snapshot,
            ReadIndex,
            ReadIndexResponse,
            TimeoutNow,
            TransferLeader,
            Propose,
        ] {
            let message = Message::new(kind, NodeId(3), NodeId(1), Term(2));
            let decoded = decode_frame(1, NodeId(1), encode_frame(1, &message)).unwrap();
            assert_eq!(decoded, message, "{kind:?}");
        }
    }

    #[test]
    fn a_flipped_bit_is_refused() {
        let mut frame = encode_frame(1, &sample());
        let mut payload = frame.payload.to_vec();
        payload[5] ^= 0x10;
        frame.payload = Bytes::from(payload);
        assert!(matches!(
            decode_frame(1, NodeId(2), frame),
            Err(FrameError::Checksum { .. })
        ));
    }

    #[test]
    fn frames_from_another_cluster_or_for_another_member_are_refused() {
        let frame = encode_frame(1, &sample());
        assert_eq!(
            decode_frame(2, NodeId(2), frame.clone()),
            Err(FrameError::ClusterMismatch { expected: 2, got: 1 })
        );
        assert_eq!(
            decode_frame(1, NodeId(9), frame),
            Err(FrameError::WrongRecipient { local: 9, to: 2 })
        );
    }

    #[test]
    fn garbage_with_a_valid_checksum_is_an_error_not_a_panic() {
        let payload = Bytes::from_static(&[0xff, 0xff, 0xff, 0x01, 0x02]);
        let frame = braidpb::Frame {
            from: 1,
            to: 2,
            cluster_id: 1,
            crc32: crc32fast::hash(&payload),
            payload,
        };
        assert!(decode_frame(1, NodeId(2), frame).is_err());
    }
}
