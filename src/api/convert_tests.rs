//! Proves the proto ↔ mvcc conversions lose nothing, reproduce etcd's target/union rule and
//! nested headers, and refuse unknown enum values.

use super::*;

fn range_proto() -> pb::RangeRequest {
    pb::RangeRequest {
        key: Bytes::from_static(b"a"),
        range_end: Bytes::from_static(b"z"),
        limit: 7,
        revision: 42,
        sort_order: ProtoSortOrder::Descend as i32,
        sort_target: ProtoSortTarget::Mod as i32,
        serializable: false,
        keys_only: true,
        count_only: false,
        min_mod_revision: 3,
        max_mod_revision: 30,
        min_create_revision: 2,
        max_create_revision: 20,
    }
}

fn compare_proto(target: ProtoCompareTarget, union: Option<TargetUnion>) -> pb::Compare {
    pb::Compare {
        result: ProtoCompareResult::Greater as i32,
        target: target as i32,
        key: Bytes::from_static(b"k"),
        range_end: Bytes::from_static(b"l"),
        target_union: union,
    }
}

fn op(request: request_op::Request) -> pb::RequestOp {
    pb::RequestOp { request: Some(request) }
}

fn txn_proto() -> pb::TxnRequest {
    let nested = pb::TxnRequest {
        compare: vec![compare_proto(
            ProtoCompareTarget::Value,
            Some(TargetUnion::Value("v".into())),
        )],
        success: vec![op(request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest {
            key: "d".into(),
            range_end: "e".into(),
            prev_kv: true,
        }))],
        failure: vec![pb::RequestOp { request: None }],
    };
    pb::TxnRequest {
        compare: vec![
            compare_proto(ProtoCompareTarget::Version, Some(TargetUnion::Version(3))),
            compare_proto(ProtoCompareTarget::Create, Some(TargetUnion::CreateRevision(4))),
            compare_proto(ProtoCompareTarget::Mod, Some(TargetUnion::ModRevision(5))),
            compare_proto(ProtoCompareTarget::Lease, Some(TargetUnion::Lease(6))),
        ],
        success: vec![
            op(request_op::Request::RequestRange(range_proto())),
            op(request_op::Request::RequestPut(pb::PutRequest {
                key: "p".into(),
                value: "v".into(),
                lease: 9,
                prev_kv: true,
                ignore_value: false,
                ignore_lease: true,
            })),
        ],
        failure: vec![op(request_op::Request::RequestTxn(nested))],
    }
}

#[test]
fn requests_survive_a_round_trip() {
    let range = range_proto();
    let converted = range_request_from_proto(range.clone()).unwrap();
    assert_eq!(converted.sort_order, SortOrder::Descend);
    assert_eq!(converted.sort_target, SortTarget::Mod);
    assert_eq!(converted.revision, Revision(42));
    assert_eq!(range_request_to_proto(&converted, false), range);
    let serializable = pb::RangeRequest {
        serializable: true,
        ..range_proto()
    };
    assert_eq!(
        range_request_to_proto(&range_request_from_proto(serializable.clone()).unwrap(), true),
        serializable
    );

    let txn = txn_proto();
    let converted = txn_request_from_proto(txn.clone()).unwrap();
    assert!(matches!(converted.failure[0], RequestOp::Txn(ref nested) if nested.failure == [RequestOp::Empty]));
    assert_eq!(txn_request_to_proto(&converted), txn);

    let compaction = pb::CompactionRequest {
        revision: 12,
        physical: true,
    };
    assert_eq!(
        compact_request_to_proto(&compact_request_from_proto(&compaction), true),
        compaction
    );
    let kv = mvccpb::KeyValue {
        key: "k".into(),
        create_revision: 2,
        mod_revision: 5,
        version: 3,
        value: "v".into(),
        lease: 77,
    };
    assert_eq!(key_value_to_proto(key_value_from_proto(kv.clone())), kv);
}

#[test]
fn compare_uses_the_target_and_zero_when_the_union_disagrees() {
    let cases = [
        (ProtoCompareTarget::Version, None, CompareTarget::Version(0)),
        (
            ProtoCompareTarget::Version,
            Some(TargetUnion::ModRevision(9)),
            CompareTarget::Version(0),
        ),
        (
            ProtoCompareTarget::Create,
            Some(TargetUnion::Version(9)),
            CompareTarget::CreateRevision(Revision(0)),
        ),
        (
            ProtoCompareTarget::Mod,
            Some(TargetUnion::CreateRevision(9)),
            CompareTarget::ModRevision(Revision(0)),
        ),
        (
            ProtoCompareTarget::Value,
            Some(TargetUnion::Lease(9)),
            CompareTarget::Value(Bytes::new()),
        ),
        (
            ProtoCompareTarget::Lease,
            Some(TargetUnion::Value("9".into())),
            CompareTarget::Lease(LeaseId::NONE),
        ),
        (
            ProtoCompareTarget::Mod,
            Some(TargetUnion::ModRevision(9)),
            CompareTarget::ModRevision(Revision(9)),
        ),
    ];
    for (target, union, expected) in cases {
        let compare = compare_from_proto(compare_proto(target, union.clone())).unwrap();
        assert_eq!(compare.target, expected, "target {target:?} union {union:?}");
        assert_eq!(compare.result, CompareResult::Greater);
        assert_eq!(compare.range_end, Bytes::from_static(b"l"));
    }
}

#[test]
fn unknown_enum_values_are_refused_by_name() {
    fn expect<T: std::fmt::Debug>(result: Result<T, ApiError>, field: &'static str, value: i32) {
        assert_eq!(result.map(|_| ()), Err(ApiError::UnknownEnumValue { field, value }));
    }
    expect(
        range_request_from_proto(pb::RangeRequest {
            sort_order: 3,
            ..range_proto()
        }),
        "RangeRequest.sort_order",
        3,
    );
    expect(
        range_request_from_proto(pb::RangeRequest {
            sort_target: -1,
            ..range_proto()
        }),
        "RangeRequest.sort_target",
        -1,
    );
    let mut bad_result = compare_proto(ProtoCompareTarget::Mod, None);
    bad_result.result = 4;
    expect(compare_from_proto(bad_result), "Compare.result", 4);
    let mut bad_target = compare_proto(ProtoCompareTarget::Mod, None);
    bad_target.target = 5;
    expect(compare_from_proto(bad_target), "Compare.target", 5);

    // Deep inside a nested txn too.
    let mut txn = txn_proto();
    let Some(request_op::Request::RequestTxn(nested)) = &mut txn.failure[0].request else {
        panic!("fixture changed")
    };
    nested
        .success
        .push(op(request_op::Request::RequestRange(pb::RangeRequest {
            sort_target: 99,
            ..range_proto()
        })));
    expect(txn_request_from_proto(txn), "RangeRequest.sort_target", 99);
}

#[test]
fn nested_responses_carry_only_their_revision() {
    let kv = KeyValue {
        key: "k".into(),
        create_revision: Revision(2),
        mod_revision: Revision(3),
        version: 2,
        value: "v".into(),
        lease: LeaseId::NONE,
    };
    let result = TxnResult {
        revision: Revision(8),
        succeeded: true,
        responses: vec![
            ResponseOp::Range(RangeResult {
                revision: Revision(7),
                kvs: vec![kv.clone()],
                more: true,
                count: 3,
            }),
            ResponseOp::Put(PutResult {
                revision: Revision(8),
                prev_kv: Some(kv),
            }),
            ResponseOp::DeleteRange(DeleteRangeResult {
                revision: Revision(8),
                deleted: 0,
                prev_kvs: vec![],
            }),
            ResponseOp::Txn(TxnResult {
                revision: Revision(0),
                succeeded: false,
                responses: vec![],
            }),
        ],
    };
    let top = pb::ResponseHeader {
        cluster_id: 1,
        member_id: 2,
        revision: 8,
        raft_term: 3,
    };
    let response = txn_response(result, top);
    assert_eq!(response.header, Some(top));
    let headers: Vec<pb::ResponseHeader> = response
        .responses
        .iter()
        .map(|op| match op.response.as_ref().unwrap() {
            response_op::Response::ResponseRange(range) => range.header.unwrap(),
            response_op::Response::ResponsePut(put) => put.header.unwrap(),
            response_op::Response::ResponseDeleteRange(delete) => delete.header.unwrap(),
            response_op::Response::ResponseTxn(txn) => txn.header.unwrap(),
        })
        .collect();
    let only_revision = |revision| pb::ResponseHeader {
        revision,
        ..pb::ResponseHeader::default()
    };
    assert_eq!(
        headers,
        [only_revision(7), only_revision(8), only_revision(8), only_revision(0)]
    );
    let Some(response_op::Response::ResponseRange(range)) = &response.responses[0].response else {
        panic!("first response is the range")
    };
    assert!(range.more);
    assert_eq!(range.count, 3);
    assert_eq!(range.kvs[0].mod_revision, 3);
}

#[test]
fn only_txns_of_serializable_ranges_are_served_locally() {
    let serializable_range = || {
        op(request_op::Request::RequestRange(pb::RangeRequest {
            serializable: true,
            ..range_proto()
        }))
    };
    let mut txn = pb::TxnRequest::default();
    assert!(txn_is_serializable(&txn), "an empty txn reads nothing");
    txn.success.push(serializable_range());
    txn.failure.push(serializable_range());
    assert!(txn_is_serializable(&txn));
    txn.failure.push(op(request_op::Request::RequestRange(range_proto())));
    assert!(!txn_is_serializable(&txn), "one linearizable range");
    txn.failure.pop();
    txn.success
        .push(op(request_op::Request::RequestTxn(pb::TxnRequest::default())));
    assert!(!txn_is_serializable(&txn), "a nested txn");
}
