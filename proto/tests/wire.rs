//! Proves braid's generated messages encode and decode etcd v3.5's wire bytes, using hand-computed encodings.
//!
//! Every expected byte string below was worked out by hand from the protobuf encoding rules
//! (key = field number << 3 | wire type; varint 0, length-delimited 2, fixed32 5) and the
//! field numbers of etcd's rpc.proto, kv.proto and auth.proto at v3.5.33. The layout tests
//! set every field of a message and read back which numbers and wire types went on the wire,
//! with a reader that does not use prost (tests/common).

mod common;

use braid_proto::authpb::{self, permission, UserAddOptions};
use braid_proto::braidpb;
use braid_proto::etcdserverpb::{
    self as pb, alarm_request, compare, downgrade_request, range_request, request_op, response_op,
    watch_create_request, watch_request,
};
use braid_proto::grpc::health::v1 as health;
use braid_proto::mvccpb::{self, event};
use braid_proto::{v3electionpb, v3lockpb};
use common::WireType::{Fixed32, LengthDelimited as Bytes, Varint};
use prost::Message;

/// Checks both directions: `message` encodes to exactly `expected`, and `expected` decodes
/// back to `message`.
fn assert_wire<M: Message + Default + PartialEq + std::fmt::Debug>(message: &M, expected: &[u8]) {
    let encoded = message.encode_to_vec();
    assert_eq!(
        encoded, expected,
        "encoding of {message:?}\n  got      {encoded:02x?}\n  expected {expected:02x?}"
    );
    let decoded = M::decode(expected).expect("hand-computed bytes decode");
    assert_eq!(&decoded, message, "decoding {expected:02x?}");
}

/// The (number, wire type) pairs `message` puts on the wire, sorted by number.
fn sorted_layout<M: Message>(message: &M) -> Vec<(u32, common::WireType)> {
    let mut layout = common::layout(&message.encode_to_vec());
    layout.sort_by_key(|(number, _)| *number);
    layout
}

fn header() -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        cluster_id: 1,
        member_id: 2,
        revision: 3,
        raft_term: 4,
    })
}

#[test]
fn put_request_matches_hand_encoding() {
    let put = pb::PutRequest {
        key: bytes::Bytes::from_static(b"foo"),
        value: bytes::Bytes::from_static(b"bar"),
        lease: 7,
        prev_kv: true,
        ..Default::default()
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 3, b'f', b'o', b'o', // 1 key
        0x12, 3, b'b', b'a', b'r', // 2 value
        0x18, 7,                   // 3 lease
        0x20, 1,                   // 4 prev_kv
    ];
    assert_wire(&put, &expected);
}

#[test]
fn range_request_matches_hand_encoding() {
    let range = pb::RangeRequest {
        key: bytes::Bytes::from_static(b"a"),
        range_end: bytes::Bytes::from_static(b"b"),
        limit: 10,
        revision: 300,
        sort_order: range_request::SortOrder::Descend as i32,
        sort_target: range_request::SortTarget::Mod as i32,
        serializable: true,
        max_create_revision: 5,
        ..Default::default()
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 1, b'a',    // 1 key
        0x12, 1, b'b',    // 2 range_end
        0x18, 10,         // 3 limit
        0x20, 0xac, 0x02, // 4 revision: 300 = 0b10_0101100 -> 0x2c|0x80, 0x02
        0x28, 2,          // 5 sort_order DESCEND
        0x30, 3,          // 6 sort_target MOD
        0x38, 1,          // 7 serializable
        0x68, 5,          // 13 max_create_revision: key 13 << 3 = 104
    ];
    assert_wire(&range, &expected);
}

#[test]
fn compare_value_uses_field_7_and_range_end_field_64() {
    let compare = pb::Compare {
        result: compare::CompareResult::NotEqual as i32,
        target: compare::CompareTarget::Value as i32,
        key: bytes::Bytes::from_static(b"k"),
        target_union: Some(compare::TargetUnion::Value(bytes::Bytes::from_static(b"v"))),
        range_end: bytes::Bytes::from_static(b"z"),
    };
    #[rustfmt::skip]
    let expected = [
        0x08, 3,             // 1 result NOT_EQUAL
        0x10, 3,             // 2 target VALUE
        0x1a, 1, b'k',       // 3 key
        0x3a, 1, b'v',       // 7 value (target_union)
        0x82, 0x04, 1, b'z', // 64 range_end: key 64 << 3 | 2 = 514 -> 0x82, 0x04
    ];
    assert_wire(&compare, &expected);
}

#[test]
fn compare_target_union_numbers() {
    let cases = [
        (compare::TargetUnion::Version(1), 4),
        (compare::TargetUnion::CreateRevision(1), 5),
        (compare::TargetUnion::ModRevision(1), 6),
        (compare::TargetUnion::Lease(1), 8),
    ];
    for (target_union, number) in cases {
        let compare = pb::Compare {
            target_union: Some(target_union),
            ..Default::default()
        };
        // Only the oneof member is non-default, so it is the whole encoding.
        assert_eq!(compare.encode_to_vec(), [number << 3, 1], "{compare:?}");
    }
}

#[test]
fn watch_create_request_matches_hand_encoding() {
    let create = pb::WatchCreateRequest {
        key: bytes::Bytes::from_static(b"w"),
        start_revision: 5,
        filters: vec![
            watch_create_request::FilterType::Noput as i32,
            watch_create_request::FilterType::Nodelete as i32,
        ],
        prev_kv: true,
        watch_id: 9,
        fragment: true,
        ..Default::default()
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 1, b'w',    // 1 key
        0x18, 5,          // 3 start_revision
        0x2a, 2, 0, 1,    // 5 filters, packed (proto3 default): NOPUT, NODELETE
        0x30, 1,          // 6 prev_kv
        0x38, 9,          // 7 watch_id
        0x40, 1,          // 8 fragment
    ];
    assert_wire(&create, &expected);

    // Parsers must also accept the unpacked form of a repeated enum.
    let unpacked = [0x0a, 1, b'w', 0x18, 5, 0x28, 0, 0x28, 1, 0x30, 1, 0x38, 9, 0x40, 1];
    assert_eq!(pb::WatchCreateRequest::decode(&unpacked[..]).unwrap(), create);

    // Wrapped in a WatchRequest: create_request is field 1.
    let request = pb::WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
    };
    let mut wrapped = vec![0x0a, expected.len() as u8];
    wrapped.extend_from_slice(&expected);
    assert_wire(&request, &wrapped);
}

#[test]
fn watch_request_cancel_and_progress_numbers() {
    let cancel = pb::WatchRequest {
        request_union: Some(watch_request::RequestUnion::CancelRequest(pb::WatchCancelRequest {
            watch_id: 3,
        })),
    };
    assert_wire(&cancel, &[0x12, 2, 0x08, 3]);
    // An empty message still marks which oneof member is set.
    let progress = pb::WatchRequest {
        request_union: Some(watch_request::RequestUnion::ProgressRequest(
            pb::WatchProgressRequest {},
        )),
    };
    assert_wire(&progress, &[0x1a, 0]);
}

#[test]
fn key_value_matches_hand_encoding() {
    let kv = mvccpb::KeyValue {
        key: bytes::Bytes::from_static(b"foo"),
        create_revision: 2,
        mod_revision: 3,
        version: 1,
        value: bytes::Bytes::from_static(b"bar"),
        lease: 0x1234,
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 3, b'f', b'o', b'o', // 1 key
        0x10, 2,                   // 2 create_revision
        0x18, 3,                   // 3 mod_revision
        0x20, 1,                   // 4 version
        0x2a, 3, b'b', b'a', b'r', // 5 value
        0x30, 0xb4, 0x24,          // 6 lease: 0x1234 -> 0x34|0x80, 0x1234 >> 7 = 0x24
    ];
    assert_wire(&kv, &expected);
}

#[test]
fn watch_response_events_are_field_11() {
    let response = pb::WatchResponse {
        watch_id: 1,
        events: vec![mvccpb::Event {
            r#type: event::EventType::Delete as i32,
            kv: Some(mvccpb::KeyValue {
                key: bytes::Bytes::from_static(b"a"),
                mod_revision: 4,
                ..Default::default()
            }),
            prev_kv: None,
        }],
        ..Default::default()
    };
    #[rustfmt::skip]
    let expected = [
        0x10, 1,                 // 2 watch_id
        0x5a, 9,                 // 11 events: key 11 << 3 | 2 = 90
        0x08, 1,                 //   Event 1 type DELETE
        0x12, 5,                 //   Event 2 kv
        0x0a, 1, b'a',           //     KeyValue 1 key
        0x18, 4,                 //     KeyValue 3 mod_revision
    ];
    assert_wire(&response, &expected);
}

#[test]
fn negative_int64_uses_ten_byte_varint() {
    // etcd uses int64 (not sint64): -1 is sign-extended to 64 bits, 10 varint bytes. A
    // rejected watch reports watch_id -1 and an unknown lease reports TTL -1.
    let minus_one = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    let response = pb::WatchResponse {
        watch_id: -1,
        created: true,
        canceled: true,
        ..Default::default()
    };
    let mut expected = vec![0x10];
    expected.extend_from_slice(&minus_one);
    expected.extend_from_slice(&[0x18, 1, 0x20, 1]);
    assert_wire(&response, &expected);

    let time_to_live = pb::LeaseTimeToLiveResponse {
        ttl: -1,
        ..Default::default()
    };
    let mut expected = vec![0x18];
    expected.extend_from_slice(&minus_one);
    assert_wire(&time_to_live, &expected);
}

#[test]
fn status_response_uses_fields_1_to_10() {
    let status = pb::StatusResponse {
        header: header(),
        version: "3.5.17".into(),
        db_size: 1,
        leader: 2,
        raft_index: 3,
        raft_term: 4,
        raft_applied_index: 5,
        errors: vec!["etcdserver: no leader".into()],
        db_size_in_use: 6,
        is_learner: true,
    };
    let expected = [
        (1, Bytes),
        (2, Bytes),
        (3, Varint),
        (4, Varint),
        (5, Varint),
        (6, Varint),
        (7, Varint),
        (8, Bytes),
        (9, Varint),
        (10, Varint),
    ];
    assert_eq!(sorted_layout(&status), expected);
}

#[test]
fn cluster_message_numbers() {
    let member = pb::Member {
        id: 1,
        name: "n1".into(),
        peer_ur_ls: vec!["http://a:2380".into()],
        client_ur_ls: vec!["http://a:2379".into()],
        is_learner: true,
    };
    let member_layout = [(1, Varint), (2, Bytes), (3, Bytes), (4, Bytes), (5, Varint)];
    assert_eq!(sorted_layout(&member), member_layout);

    let add = pb::MemberAddRequest {
        peer_ur_ls: vec!["http://b:2380".into()],
        is_learner: true,
    };
    assert_eq!(sorted_layout(&add), [(1, Bytes), (2, Varint)]);

    let added = pb::MemberAddResponse {
        header: header(),
        member: Some(member.clone()),
        members: vec![member],
    };
    assert_eq!(sorted_layout(&added), [(1, Bytes), (2, Bytes), (3, Bytes)]);

    let update = pb::MemberUpdateRequest {
        id: 1,
        peer_ur_ls: vec!["http://c:2380".into()],
    };
    assert_eq!(sorted_layout(&update), [(1, Varint), (2, Bytes)]);
    assert_eq!(
        sorted_layout(&pb::MemberListRequest { linearizable: true }),
        [(1, Varint)]
    );
    assert_eq!(sorted_layout(&pb::MoveLeaderRequest { target_id: 9 }), [(1, Varint)]);
}

#[test]
fn lease_message_numbers() {
    let granted = pb::LeaseGrantResponse {
        header: header(),
        id: 1,
        ttl: 2,
        error: "e".into(),
    };
    assert_eq!(
        sorted_layout(&granted),
        [(1, Bytes), (2, Varint), (3, Varint), (4, Bytes)]
    );
    assert_eq!(
        sorted_layout(&pb::LeaseGrantRequest { ttl: 5, id: 6 }),
        [(1, Varint), (2, Varint)]
    );

    let time_to_live = pb::LeaseTimeToLiveResponse {
        header: header(),
        id: 1,
        ttl: 2,
        granted_ttl: 3,
        keys: vec![bytes::Bytes::from_static(b"k")],
    };
    let expected = [(1, Bytes), (2, Varint), (3, Varint), (4, Varint), (5, Bytes)];
    assert_eq!(sorted_layout(&time_to_live), expected);

    let checkpoint = pb::LeaseCheckpointRequest {
        checkpoints: vec![pb::LeaseCheckpoint {
            id: 1,
            remaining_ttl: 2,
        }],
    };
    assert_wire(&checkpoint, &[0x0a, 4, 0x08, 1, 0x10, 2]);
}

#[test]
fn maintenance_message_numbers() {
    let alarm = pb::AlarmRequest {
        action: alarm_request::AlarmAction::Deactivate as i32,
        member_id: 7,
        alarm: pb::AlarmType::Nospace as i32,
    };
    assert_wire(&alarm, &[0x08, 2, 0x10, 7, 0x18, 1]);
    assert_eq!(pb::AlarmType::Corrupt as i32, 2);

    let hash_kv = pb::HashKvResponse {
        header: header(),
        hash: 0xffff_ffff,
        compact_revision: 3,
    };
    assert_eq!(sorted_layout(&hash_kv), [(1, Bytes), (2, Varint), (3, Varint)]);

    let chunk = pb::SnapshotResponse {
        header: header(),
        remaining_bytes: 1,
        blob: bytes::Bytes::from_static(&[0]),
    };
    assert_eq!(sorted_layout(&chunk), [(1, Bytes), (2, Varint), (3, Bytes)]);

    let downgrade = pb::DowngradeRequest {
        action: downgrade_request::DowngradeAction::Cancel as i32,
        version: "3.4".into(),
    };
    assert_wire(&downgrade, &[0x08, 2, 0x12, 3, b'3', b'.', b'4']);
}

#[test]
fn auth_message_numbers() {
    let add = pb::AuthUserAddRequest {
        name: "u".into(),
        password: "p".into(),
        options: Some(UserAddOptions { no_password: true }),
        hashed_password: "h".into(),
    };
    assert_eq!(sorted_layout(&add), [(1, Bytes), (2, Bytes), (3, Bytes), (4, Bytes)]);
    assert_wire(&UserAddOptions { no_password: true }, &[0x08, 1]);

    // Grant names the user `user`, revoke names it `name`; both are field 1.
    let grant = pb::AuthUserGrantRoleRequest {
        user: "u".into(),
        role: "r".into(),
    };
    assert_wire(&grant, &[0x0a, 1, b'u', 0x12, 1, b'r']);
    let revoke = pb::AuthUserRevokeRoleRequest {
        name: "u".into(),
        role: "r".into(),
    };
    assert_wire(&revoke, &[0x0a, 1, b'u', 0x12, 1, b'r']);

    let permission = authpb::Permission {
        perm_type: permission::Type::Readwrite as i32,
        key: bytes::Bytes::from_static(b"a"),
        range_end: bytes::Bytes::from_static(b"b"),
    };
    assert_wire(&permission, &[0x08, 2, 0x12, 1, b'a', 0x1a, 1, b'b']);

    let revoke_permission = pb::AuthRoleRevokePermissionRequest {
        role: "r".into(),
        key: bytes::Bytes::from_static(b"a"),
        range_end: bytes::Bytes::from_static(b"b"),
    };
    assert_wire(&revoke_permission, &[0x0a, 1, b'r', 0x12, 1, b'a', 0x1a, 1, b'b']);

    let status = pb::AuthStatusResponse {
        header: header(),
        enabled: true,
        auth_revision: 8,
    };
    assert_eq!(sorted_layout(&status), [(1, Bytes), (2, Varint), (3, Varint)]);
}

#[test]
fn txn_op_oneof_numbers() {
    let ops = [
        (request_op::Request::RequestRange(Default::default()), 1u8),
        (request_op::Request::RequestPut(Default::default()), 2),
        (request_op::Request::RequestDeleteRange(Default::default()), 3),
        (request_op::Request::RequestTxn(Default::default()), 4),
    ];
    for (request, number) in ops {
        assert_wire(&pb::RequestOp { request: Some(request) }, &[number << 3 | 2, 0]);
    }
    let responses = [
        (response_op::Response::ResponseRange(Default::default()), 1u8),
        (response_op::Response::ResponsePut(Default::default()), 2),
        (response_op::Response::ResponseDeleteRange(Default::default()), 3),
        (response_op::Response::ResponseTxn(Default::default()), 4),
    ];
    for (response, number) in responses {
        assert_wire(
            &pb::ResponseOp {
                response: Some(response),
            },
            &[number << 3 | 2, 0],
        );
    }
    let txn = pb::TxnResponse {
        header: header(),
        succeeded: true,
        responses: vec![Default::default()],
    };
    assert_eq!(sorted_layout(&txn), [(1, Bytes), (2, Varint), (3, Bytes)]);
}

#[test]
fn lock_election_and_health_numbers() {
    let leader = v3electionpb::LeaderKey {
        name: bytes::Bytes::from_static(b"e"),
        key: bytes::Bytes::from_static(b"e/1"),
        rev: 2,
        lease: 1,
    };
    assert_eq!(
        sorted_layout(&leader),
        [(1, Bytes), (2, Bytes), (3, Varint), (4, Varint)]
    );
    let campaign = v3electionpb::CampaignRequest {
        name: bytes::Bytes::from_static(b"e"),
        lease: 1,
        value: bytes::Bytes::from_static(b"v"),
    };
    assert_wire(&campaign, &[0x0a, 1, b'e', 0x10, 1, 0x1a, 1, b'v']);

    let lock = v3lockpb::LockResponse {
        header: header(),
        key: bytes::Bytes::from_static(b"l/1"),
    };
    assert_eq!(sorted_layout(&lock), [(1, Bytes), (2, Bytes)]);

    let serving = health::HealthCheckResponse {
        status: health::health_check_response::ServingStatus::ServiceUnknown as i32,
    };
    assert_wire(&serving, &[0x08, 3]);
}

#[test]
fn newer_etcd_fields_are_skipped_not_rejected() {
    // etcd 3.6 added HashKVResponse.hash_revision (4) and StatusResponse.storageVersion (11);
    // a 3.5 schema must decode such messages and ignore the extra fields.
    let hash_kv = [0x10, 7, 0x20, 9];
    assert_eq!(pb::HashKvResponse::decode(&hash_kv[..]).unwrap().hash, 7);
    let status = [0x12, 1, b'3', 0x5a, 1, b'x'];
    assert_eq!(pb::StatusResponse::decode(&status[..]).unwrap().version, "3");
}

#[test]
fn peer_frame_checksum_is_fixed32_and_raft_message_round_trips() {
    let raft = braidpb::RaftMessage {
        r#type: braidpb::MessageType::Snapshot as i32,
        from: 1,
        to: 2,
        term: 3,
        log_term: 4,
        index: 5,
        entries: vec![braidpb::Entry {
            term: 3,
            index: 6,
            r#type: braidpb::EntryType::ConfChange as i32,
            data: braidpb::ConfChange {
                r#type: braidpb::ConfChangeType::AddLearner as i32,
                node_id: 4,
                context: bytes::Bytes::from_static(b"peer urls"),
            }
            .encode_to_vec()
            .into(),
        }],
        commit: 6,
        reject: true,
        reject_hint: 7,
        reject_term: 8,
        context: bytes::Bytes::from_static(b"read 1"),
        snapshot: Some(braidpb::Snapshot {
            meta: Some(braidpb::SnapshotMeta {
                index: 5,
                term: 4,
                conf_state: Some(braidpb::ConfState {
                    voters: vec![1, 2, 3],
                    learners: vec![4],
                }),
            }),
            data: bytes::Bytes::from_static(b"state"),
        }),
    };
    let payload = raft.encode_to_vec();
    assert_eq!(braidpb::RaftMessage::decode(&payload[..]).unwrap(), raft);
    assert_eq!(common::layout(&payload).len(), 13, "every RaftMessage field set once");

    let frame = braidpb::Frame {
        from: 1,
        to: 2,
        cluster_id: 3,
        payload: payload.clone().into(),
        crc32: 0xdead_beef,
    };
    let encoded = frame.encode_to_vec();
    let last = *common::fields(&encoded).last().unwrap();
    assert_eq!((last.number, last.wire_type), (5, Fixed32));
    assert_eq!(last.value, 0xdead_beef_u32.to_le_bytes(), "fixed32 is little-endian");
    assert_eq!(braidpb::Frame::decode(&encoded[..]).unwrap(), frame);

    // The zero value of MessageType is reserved for "not set", so a frame whose payload
    // lost its type field is recognisable.
    assert_eq!(braidpb::MessageType::Unspecified as i32, 0);
    assert_eq!(
        braidpb::RaftMessage::default().r#type(),
        braidpb::MessageType::Unspecified
    );
}
