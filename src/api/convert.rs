//! Explicit conversions between etcd's protos and mvcc's types (DESIGN invariant 4: only
//! `api` and the server's transport see protos).
//!
//! Requests go both ways (proto → mvcc to serve them; mvcc → proto for whoever must put a
//! request back on the wire). Results go mvcc → proto. A proto enum field holding a number
//! its enum does not define is refused with `ApiError::UnknownEnumValue`, never a panic.
//!
//! Headers follow etcd: the top-level response gets the full header from the caller; the
//! responses of ops inside a txn carry a header with only `revision` set (etcd's applier
//! fills it, and the server's header fill touches only the top level), and a nested txn's
//! header is present but empty.

use bytes::Bytes;

use braid_proto::etcdserverpb as pb;
use braid_proto::etcdserverpb::compare::{
    CompareResult as ProtoCompareResult, CompareTarget as ProtoCompareTarget, TargetUnion,
};
use braid_proto::etcdserverpb::range_request::{SortOrder as ProtoSortOrder, SortTarget as ProtoSortTarget};
use braid_proto::etcdserverpb::watch_create_request::FilterType;
use braid_proto::etcdserverpb::{request_op, response_op};
use braid_proto::mvccpb;

use crate::api::errors::ApiError;
use crate::mvcc::{
    CompactRequest, Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResult, Event, EventKind,
    KeyValue, LeaseId, PutRequest, PutResult, RangeRequest, RangeResult, RequestOp, ResponseOp, Revision, SortOrder,
    SortTarget, TxnRequest, TxnResult, WatchFilters, WatchRequest,
};
use crate::server::Header;

// ---- headers and key-values ----

pub fn response_header(header: Header) -> pb::ResponseHeader {
    pb::ResponseHeader {
        cluster_id: header.cluster_id,
        member_id: header.member_id,
        revision: header.revision,
        raft_term: header.raft_term,
    }
}

/// The header etcd puts on the response of an op inside a txn: only the revision.
fn nested_header(revision: Revision) -> pb::ResponseHeader {
    pb::ResponseHeader {
        revision: revision.0,
        ..pb::ResponseHeader::default()
    }
}

pub fn key_value_to_proto(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision.0,
        mod_revision: kv.mod_revision.0,
        version: kv.version,
        value: kv.value,
        lease: kv.lease.0,
    }
}

pub fn key_value_from_proto(kv: mvccpb::KeyValue) -> KeyValue {
    KeyValue {
        key: kv.key,
        create_revision: Revision(kv.create_revision),
        mod_revision: Revision(kv.mod_revision),
        version: kv.version,
        value: kv.value,
        lease: LeaseId(kv.lease),
    }
}

// ---- enums ----

fn unknown(field: &'static str, value: i32) -> ApiError {
    ApiError::UnknownEnumValue { field, value }
}

fn sort_order_from_proto(value: i32) -> Result<SortOrder, ApiError> {
    match ProtoSortOrder::try_from(value).map_err(|_| unknown("RangeRequest.sort_order", value))? {
        ProtoSortOrder::None => Ok(SortOrder::None),
        ProtoSortOrder::Ascend => Ok(SortOrder::Ascend),
        ProtoSortOrder::Descend => Ok(SortOrder::Descend),
    }
}

fn sort_order_to_proto(order: SortOrder) -> ProtoSortOrder {
    match order {
        SortOrder::None => ProtoSortOrder::None,
        SortOrder::Ascend => ProtoSortOrder::Ascend,
        SortOrder::Descend => ProtoSortOrder::Descend,
    }
}

fn sort_target_from_proto(value: i32) -> Result<SortTarget, ApiError> {
    match ProtoSortTarget::try_from(value).map_err(|_| unknown("RangeRequest.sort_target", value))? {
        ProtoSortTarget::Key => Ok(SortTarget::Key),
        ProtoSortTarget::Version => Ok(SortTarget::Version),
        ProtoSortTarget::Create => Ok(SortTarget::Create),
        ProtoSortTarget::Mod => Ok(SortTarget::Mod),
        ProtoSortTarget::Value => Ok(SortTarget::Value),
    }
}

fn sort_target_to_proto(target: SortTarget) -> ProtoSortTarget {
    match target {
        SortTarget::Key => ProtoSortTarget::Key,
        SortTarget::Version => ProtoSortTarget::Version,
        SortTarget::Create => ProtoSortTarget::Create,
        SortTarget::Mod => ProtoSortTarget::Mod,
        SortTarget::Value => ProtoSortTarget::Value,
    }
}

fn compare_result_from_proto(value: i32) -> Result<CompareResult, ApiError> {
    match ProtoCompareResult::try_from(value).map_err(|_| unknown("Compare.result", value))? {
        ProtoCompareResult::Equal => Ok(CompareResult::Equal),
        ProtoCompareResult::Greater => Ok(CompareResult::Greater),
        ProtoCompareResult::Less => Ok(CompareResult::Less),
        ProtoCompareResult::NotEqual => Ok(CompareResult::NotEqual),
    }
}

fn compare_result_to_proto(result: CompareResult) -> ProtoCompareResult {
    match result {
        CompareResult::Equal => ProtoCompareResult::Equal,
        CompareResult::Greater => ProtoCompareResult::Greater,
        CompareResult::Less => ProtoCompareResult::Less,
        CompareResult::NotEqual => ProtoCompareResult::NotEqual,
    }
}

// ---- requests, proto → mvcc ----

/// `serializable` is not part of mvcc's request: the caller reads it from the proto first.
pub fn range_request_from_proto(request: pb::RangeRequest) -> Result<RangeRequest, ApiError> {
    Ok(RangeRequest {
        key: request.key,
        range_end: request.range_end,
        limit: request.limit,
        revision: Revision(request.revision),
        sort_order: sort_order_from_proto(request.sort_order)?,
        sort_target: sort_target_from_proto(request.sort_target)?,
        keys_only: request.keys_only,
        count_only: request.count_only,
        min_mod_revision: Revision(request.min_mod_revision),
        max_mod_revision: Revision(request.max_mod_revision),
        min_create_revision: Revision(request.min_create_revision),
        max_create_revision: Revision(request.max_create_revision),
    })
}

pub fn put_request_from_proto(request: pb::PutRequest) -> PutRequest {
    PutRequest {
        key: request.key,
        value: request.value,
        lease: LeaseId(request.lease),
        prev_kv: request.prev_kv,
        ignore_value: request.ignore_value,
        ignore_lease: request.ignore_lease,
    }
}

pub fn delete_range_request_from_proto(request: pb::DeleteRangeRequest) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: request.key,
        range_end: request.range_end,
        prev_kv: request.prev_kv,
    }
}

/// etcd compares against the zero value of the *target* when `target_union` is unset or
/// holds another field (`compareKV` reads the union only through the target's type), so
/// e.g. target MOD with a `version` union compares `mod_revision` with 0.
pub fn compare_from_proto(compare: pb::Compare) -> Result<Compare, ApiError> {
    let result = compare_result_from_proto(compare.result)?;
    let proto_target =
        ProtoCompareTarget::try_from(compare.target).map_err(|_| unknown("Compare.target", compare.target))?;
    let target = match (proto_target, compare.target_union) {
        (ProtoCompareTarget::Version, Some(TargetUnion::Version(version))) => CompareTarget::Version(version),
        (ProtoCompareTarget::Version, _) => CompareTarget::Version(0),
        (ProtoCompareTarget::Create, Some(TargetUnion::CreateRevision(revision))) => {
            CompareTarget::CreateRevision(Revision(revision))
        }
        (ProtoCompareTarget::Create, _) => CompareTarget::CreateRevision(Revision(0)),
        (ProtoCompareTarget::Mod, Some(TargetUnion::ModRevision(revision))) => {
            CompareTarget::ModRevision(Revision(revision))
        }
        (ProtoCompareTarget::Mod, _) => CompareTarget::ModRevision(Revision(0)),
        (ProtoCompareTarget::Value, Some(TargetUnion::Value(value))) => CompareTarget::Value(value),
        (ProtoCompareTarget::Value, _) => CompareTarget::Value(Bytes::new()),
        (ProtoCompareTarget::Lease, Some(TargetUnion::Lease(lease))) => CompareTarget::Lease(LeaseId(lease)),
        (ProtoCompareTarget::Lease, _) => CompareTarget::Lease(LeaseId::NONE),
    };
    Ok(Compare {
        key: compare.key,
        range_end: compare.range_end,
        target,
        result,
    })
}

/// An op with no request set becomes `RequestOp::Empty` (validation answers it with
/// `etcdserver: key not found`, as etcd does).
pub fn request_op_from_proto(op: pb::RequestOp) -> Result<RequestOp, ApiError> {
    Ok(match op.request {
        Some(request_op::Request::RequestRange(range)) => RequestOp::Range(range_request_from_proto(range)?),
        Some(request_op::Request::RequestPut(put)) => RequestOp::Put(put_request_from_proto(put)),
        Some(request_op::Request::RequestDeleteRange(delete)) => {
            RequestOp::DeleteRange(delete_range_request_from_proto(delete))
        }
        Some(request_op::Request::RequestTxn(txn)) => RequestOp::Txn(txn_request_from_proto(txn)?),
        None => RequestOp::Empty,
    })
}

pub fn txn_request_from_proto(request: pb::TxnRequest) -> Result<TxnRequest, ApiError> {
    let ops = |ops: Vec<pb::RequestOp>| {
        ops.into_iter()
            .map(request_op_from_proto)
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(TxnRequest {
        compare: request
            .compare
            .into_iter()
            .map(compare_from_proto)
            .collect::<Result<_, _>>()?,
        success: ops(request.success)?,
        failure: ops(request.failure)?,
    })
}

/// `physical` is not part of mvcc's request: the caller reads it from the proto first.
pub fn compact_request_from_proto(request: &pb::CompactionRequest) -> CompactRequest {
    CompactRequest {
        revision: Revision(request.revision),
    }
}

// ---- requests, mvcc → proto ----

pub fn range_request_to_proto(request: &RangeRequest, serializable: bool) -> pb::RangeRequest {
    pb::RangeRequest {
        key: request.key.clone(),
        range_end: request.range_end.clone(),
        limit: request.limit,
        revision: request.revision.0,
        sort_order: sort_order_to_proto(request.sort_order) as i32,
        sort_target: sort_target_to_proto(request.sort_target) as i32,
        serializable,
        keys_only: request.keys_only,
        count_only: request.count_only,
        min_mod_revision: request.min_mod_revision.0,
        max_mod_revision: request.max_mod_revision.0,
        min_create_revision: request.min_create_revision.0,
        max_create_revision: request.max_create_revision.0,
    }
}

pub fn put_request_to_proto(request: &PutRequest) -> pb::PutRequest {
    pb::PutRequest {
        key: request.key.clone(),
        value: request.value.clone(),
        lease: request.lease.0,
        prev_kv: request.prev_kv,
        ignore_value: request.ignore_value,
        ignore_lease: request.ignore_lease,
    }
}

pub fn delete_range_request_to_proto(request: &DeleteRangeRequest) -> pb::DeleteRangeRequest {
    pb::DeleteRangeRequest {
        key: request.key.clone(),
        range_end: request.range_end.clone(),
        prev_kv: request.prev_kv,
    }
}

pub fn compare_to_proto(compare: &Compare) -> pb::Compare {
    let (target, union) = match &compare.target {
        CompareTarget::Version(version) => (ProtoCompareTarget::Version, TargetUnion::Version(*version)),
        CompareTarget::CreateRevision(revision) => {
            (ProtoCompareTarget::Create, TargetUnion::CreateRevision(revision.0))
        }
        CompareTarget::ModRevision(revision) => (ProtoCompareTarget::Mod, TargetUnion::ModRevision(revision.0)),
        CompareTarget::Value(value) => (ProtoCompareTarget::Value, TargetUnion::Value(value.clone())),
        CompareTarget::Lease(lease) => (ProtoCompareTarget::Lease, TargetUnion::Lease(lease.0)),
    };
    pb::Compare {
        result: compare_result_to_proto(compare.result) as i32,
        target: target as i32,
        key: compare.key.clone(),
        range_end: compare.range_end.clone(),
        target_union: Some(union),
    }
}

/// Nested ranges come out with `serializable = false` (mvcc does not keep the flag).
pub fn request_op_to_proto(op: &RequestOp) -> pb::RequestOp {
    let request = match op {
        RequestOp::Range(range) => Some(request_op::Request::RequestRange(range_request_to_proto(range, false))),
        RequestOp::Put(put) => Some(request_op::Request::RequestPut(put_request_to_proto(put))),
        RequestOp::DeleteRange(delete) => Some(request_op::Request::RequestDeleteRange(delete_range_request_to_proto(
            delete,
        ))),
        RequestOp::Txn(txn) => Some(request_op::Request::RequestTxn(txn_request_to_proto(txn))),
        RequestOp::Empty => None,
    };
    pb::RequestOp { request }
}

pub fn txn_request_to_proto(request: &TxnRequest) -> pb::TxnRequest {
    pb::TxnRequest {
        compare: request.compare.iter().map(compare_to_proto).collect(),
        success: request.success.iter().map(request_op_to_proto).collect(),
        failure: request.failure.iter().map(request_op_to_proto).collect(),
    }
}

pub fn compact_request_to_proto(request: &CompactRequest, physical: bool) -> pb::CompactionRequest {
    pb::CompactionRequest {
        revision: request.revision.0,
        physical,
    }
}

// ---- results, mvcc → proto ----

pub fn range_response(result: RangeResult, header: pb::ResponseHeader) -> pb::RangeResponse {
    pb::RangeResponse {
        header: Some(header),
        kvs: result.kvs.into_iter().map(key_value_to_proto).collect(),
        more: result.more,
        count: result.count,
    }
}

pub fn put_response(result: PutResult, header: pb::ResponseHeader) -> pb::PutResponse {
    pb::PutResponse {
        header: Some(header),
        prev_kv: result.prev_kv.map(key_value_to_proto),
    }
}

pub fn delete_range_response(result: DeleteRangeResult, header: pb::ResponseHeader) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: Some(header),
        deleted: result.deleted,
        prev_kvs: result.prev_kvs.into_iter().map(key_value_to_proto).collect(),
    }
}

/// `header` is the top-level txn's; the op responses inside get etcd's nested headers.
pub fn txn_response(result: TxnResult, header: pb::ResponseHeader) -> pb::TxnResponse {
    pb::TxnResponse {
        header: Some(header),
        succeeded: result.succeeded,
        responses: result.responses.into_iter().map(response_op).collect(),
    }
}

fn response_op(op: ResponseOp) -> pb::ResponseOp {
    let response = match op {
        ResponseOp::Range(range) => {
            let header = nested_header(range.revision);
            response_op::Response::ResponseRange(range_response(range, header))
        }
        ResponseOp::Put(put) => {
            let header = nested_header(put.revision);
            response_op::Response::ResponsePut(put_response(put, header))
        }
        ResponseOp::DeleteRange(delete) => {
            let header = nested_header(delete.revision);
            response_op::Response::ResponseDeleteRange(delete_range_response(delete, header))
        }
        ResponseOp::Txn(txn) => {
            // mvcc gives nested txns Revision(0): etcd's empty nested header.
            let header = nested_header(txn.revision);
            response_op::Response::ResponseTxn(txn_response(txn, header))
        }
    };
    pb::ResponseOp {
        response: Some(response),
    }
}

/// A compaction answers only with a header (whose revision is `CompactResult::revision`).
pub fn compaction_response(header: pb::ResponseHeader) -> pb::CompactionResponse {
    pb::CompactionResponse { header: Some(header) }
}

/// etcd serves a read-only txn locally, without ReadIndex, only when every op of both
/// branches is a serializable Range (`isTxnSerializable`: a nested txn does not qualify).
pub fn txn_is_serializable(request: &pb::TxnRequest) -> bool {
    request.success.iter().chain(&request.failure).all(|op| {
        matches!(
            &op.request,
            Some(request_op::Request::RequestRange(range)) if range.serializable
        )
    })
}

// ---- watches ----

/// The mvcc part of a `WatchCreateRequest` (id, progress_notify and fragment stay with the
/// stream). Unknown filter values are ignored, as etcd's `FiltersFromRequest` does.
pub fn watch_request_from_proto(request: &pb::WatchCreateRequest) -> WatchRequest {
    let mut filters = WatchFilters::default();
    for filter in &request.filters {
        match FilterType::try_from(*filter) {
            Ok(FilterType::Noput) => filters.no_put = true,
            Ok(FilterType::Nodelete) => filters.no_delete = true,
            Err(_) => {}
        }
    }
    WatchRequest {
        key: request.key.clone(),
        range_end: request.range_end.clone(),
        start_revision: Revision(request.start_revision),
        filters,
        prev_kv: request.prev_kv,
    }
}

pub fn event_to_proto(event: Event) -> mvccpb::Event {
    let kind = match event.kind {
        EventKind::Put => mvccpb::event::EventType::Put,
        EventKind::Delete => mvccpb::event::EventType::Delete,
    };
    mvccpb::Event {
        r#type: kind as i32,
        kv: Some(key_value_to_proto(event.kv)),
        prev_kv: event.prev_kv.map(key_value_to_proto),
    }
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
