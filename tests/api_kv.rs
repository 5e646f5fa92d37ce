//! Proves the KV, Maintenance and Health services answer like etcd over real gRPC on loopback:
//! every Range option, writes with their headers and revisions, txns, compaction, and every
//! error a KV client can provoke, with etcd's code and exact text.
#![cfg(not(madsim))]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use braid::api::ApiLimits;
use braid::mvcc::MemBackend;
use braid::server::{MemberStatus, NodeHandle, ServerError};
use braid_proto::etcdserverpb as pb;
use braid_proto::etcdserverpb::auth_client::AuthClient;
use braid_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use braid_proto::etcdserverpb::kv_client::KvClient;
use braid_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use braid_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use braid_proto::etcdserverpb::{request_op, response_op};
use braid_proto::grpc::health::v1::health_check_response::ServingStatus;
use braid_proto::grpc::health::v1::health_client::HealthClient;
use braid_proto::grpc::health::v1::HealthCheckRequest;
use bytes::Bytes;
use support::stand_in::{leader_status, start_stand_in, CLUSTER_ID, MAX_REQUEST_BYTES, MEMBER_ID, TERM};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// A member served over loopback; a task stands in for the node loop.
struct TestNode {
    node: NodeHandle<MemBackend>,
    kv: KvClient<Channel>,
    maintenance: MaintenanceClient<Channel>,
    channel: Channel,
    /// Linearizable barriers the node loop was asked for.
    barriers: Arc<AtomicUsize>,
    /// When set, the node loop fails every write / barrier with it.
    write_failure: Arc<Mutex<Option<ServerError>>>,
    barrier_failure: Arc<Mutex<Option<ServerError>>>,
}

async fn start(max_request_bytes: usize, limits: ApiLimits) -> TestNode {
    let stand_in = start_stand_in(max_request_bytes, limits).await;
    let channel = Endpoint::from_shared(stand_in.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    TestNode {
        node: stand_in.node,
        kv: KvClient::new(channel.clone()),
        maintenance: MaintenanceClient::new(channel.clone()),
        channel,
        barriers: stand_in.barriers,
        write_failure: stand_in.write_failure,
        barrier_failure: stand_in.barrier_failure,
    }
}

async fn start_default() -> TestNode {
    start(MAX_REQUEST_BYTES, ApiLimits::default()).await
}

fn range(key: &str, range_end: &str) -> pb::RangeRequest {
    range_with(key, range_end, |_| ())
}

/// A range request adjusted by `edit`.
fn range_with(key: &str, range_end: &str, edit: impl FnOnce(&mut pb::RangeRequest)) -> pb::RangeRequest {
    let mut request = pb::RangeRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        range_end: Bytes::copy_from_slice(range_end.as_bytes()),
        ..pb::RangeRequest::default()
    };
    edit(&mut request);
    request
}

fn put(key: &str, value: &str) -> pb::PutRequest {
    put_with(key, value, |_| ())
}

fn put_with(key: &str, value: &str, edit: impl FnOnce(&mut pb::PutRequest)) -> pb::PutRequest {
    let mut request = pb::PutRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        ..pb::PutRequest::default()
    };
    edit(&mut request);
    request
}

fn delete(key: &str, range_end: &str, prev_kv: bool) -> pb::DeleteRangeRequest {
    pb::DeleteRangeRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        range_end: Bytes::copy_from_slice(range_end.as_bytes()),
        prev_kv,
    }
}

/// A compare whose target is the union's field.
fn compare(key: &str, result: CompareResult, union: TargetUnion) -> pb::Compare {
    let target = match union {
        TargetUnion::Version(_) => CompareTarget::Version,
        TargetUnion::CreateRevision(_) => CompareTarget::Create,
        TargetUnion::ModRevision(_) => CompareTarget::Mod,
        TargetUnion::Value(_) => CompareTarget::Value,
        TargetUnion::Lease(_) => CompareTarget::Lease,
    };
    pb::Compare {
        result: result as i32,
        target: target as i32,
        key: Bytes::copy_from_slice(key.as_bytes()),
        range_end: Bytes::new(),
        target_union: Some(union),
    }
}

fn op_put(key: &str, value: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(request_op::Request::RequestPut(put(key, value))),
    }
}

fn op_range(request: pb::RangeRequest) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(request_op::Request::RequestRange(request)),
    }
}

fn txn(compare: Vec<pb::Compare>, success: Vec<pb::RequestOp>, failure: Vec<pb::RequestOp>) -> pb::TxnRequest {
    pb::TxnRequest {
        compare,
        success,
        failure,
    }
}

fn keys(response: &pb::RangeResponse) -> Vec<String> {
    response
        .kvs
        .iter()
        .map(|kv| String::from_utf8(kv.key.to_vec()).unwrap())
        .collect()
}

fn assert_status(result: Result<impl std::fmt::Debug, Status>, code: Code, message: &str) {
    let status = result.expect_err("the request should fail");
    assert_eq!((status.code(), status.message()), (code, message), "{status:?}");
}

fn with_leader_required<T>(message: T, value: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("hasleader", value.parse().unwrap());
    request
}

/// Shorthands for calls expected to succeed.
impl TestNode {
    async fn put(&mut self, key: &str, value: &str) -> i64 {
        self.put_request(put(key, value)).await.header.unwrap().revision
    }

    async fn put_request(&mut self, request: pb::PutRequest) -> pb::PutResponse {
        self.kv.put(request).await.unwrap().into_inner()
    }

    async fn get(&mut self, request: pb::RangeRequest) -> pb::RangeResponse {
        self.kv.range(request).await.unwrap().into_inner()
    }

    async fn delete(&mut self, request: pb::DeleteRangeRequest) -> pb::DeleteRangeResponse {
        self.kv.delete_range(request).await.unwrap().into_inner()
    }

    async fn txn(&mut self, request: pb::TxnRequest) -> pb::TxnResponse {
        self.kv.txn(request).await.unwrap().into_inner()
    }

    async fn status(&mut self) -> pb::StatusResponse {
        self.maintenance
            .status(pb::StatusRequest {})
            .await
            .unwrap()
            .into_inner()
    }
}

#[tokio::test]
async fn range_honours_every_option() {
    let mut node = start_default().await;
    // Revisions 2..=6; "b" is rewritten at 6, so sorting by version, create and mod differ.
    assert_eq!(node.put("b", "3").await, 2, "the first write is revision 2");
    assert_eq!(node.put("a", "5").await, 3);
    assert_eq!(node.put("c", "1").await, 4);
    assert_eq!(node.put("d/x", "4").await, 5);
    assert_eq!(node.put("b", "2").await, 6);

    let single = node.get(range("b", "")).await;
    let header = single.header.unwrap();
    let header_fields = (header.cluster_id, header.member_id, header.revision, header.raft_term);
    assert_eq!(header_fields, (CLUSTER_ID, MEMBER_ID, 6, TERM));
    let kv = &single.kvs[0];
    let kv_fields = (&kv.value[..], kv.create_revision, kv.mod_revision, kv.version);
    assert_eq!(kv_fields, (&b"2"[..], 2, 6, 2));
    assert_eq!((single.count, single.more), (1, false));

    assert_eq!(keys(&node.get(range("d/", "d0")).await), ["d/x"], "prefix");
    assert_eq!(keys(&node.get(range("b", "\0")).await), ["b", "c", "d/x"], "from key");
    let limited = node.get(range_with("a", "z", |request| request.limit = 2)).await;
    assert_eq!(
        (keys(&limited), limited.more, limited.count),
        (vec!["a".into(), "b".into()], true, 4)
    );

    let cases = [
        (SortOrder::Descend, SortTarget::Key, ["d/x", "c", "b", "a"]),
        (SortOrder::None, SortTarget::Value, ["c", "b", "d/x", "a"]),
        (SortOrder::Ascend, SortTarget::Create, ["b", "a", "c", "d/x"]),
        (SortOrder::Descend, SortTarget::Mod, ["b", "d/x", "c", "a"]),
    ];
    let sorted = |order: SortOrder, target: SortTarget| {
        range_with("a", "z", |request| {
            request.sort_order = order as i32;
            request.sort_target = target as i32;
        })
    };
    for (order, target, expected) in cases {
        let response = node.get(sorted(order, target)).await;
        assert_eq!(keys(&response), expected, "{order:?} {target:?}");
    }
    let by_version = node.get(sorted(SortOrder::Descend, SortTarget::Version)).await;
    assert_eq!(keys(&by_version)[0], "b");

    let historical = node.get(range_with("a", "z", |request| request.revision = 3)).await;
    assert_eq!(keys(&historical), ["a", "b"]);
    assert_eq!(historical.kvs[1].value, "3", "b as of revision 3");
    assert_eq!(
        historical.header.unwrap().revision,
        6,
        "the header shows the current revision"
    );

    let keys_only = node.get(range_with("a", "z", |request| request.keys_only = true)).await;
    assert_eq!(keys_only.kvs.len(), 4);
    assert!(keys_only
        .kvs
        .iter()
        .all(|kv| kv.value.is_empty() && kv.mod_revision > 0));
    let count_only = node
        .get(range_with("a", "z", |request| request.count_only = true))
        .await;
    assert_eq!((count_only.kvs.len(), count_only.count), (0, 4));

    let filtered = node
        .get(range_with("a", "z", |request| {
            request.min_mod_revision = 4;
            request.max_create_revision = 4;
        }))
        .await;
    assert_eq!(keys(&filtered), ["b", "c"]);
    assert_eq!(filtered.count, 4, "count ignores the filters");
}

#[tokio::test]
async fn puts_and_deletes_return_previous_values_and_revisions() {
    let mut node = start_default().await;
    let first = node
        .put_request(put_with("k", "v1", |request| request.prev_kv = true))
        .await;
    assert_eq!(first.prev_kv, None, "a new key has no previous value");
    let second = node
        .put_request(put_with("k", "v2", |request| request.prev_kv = true))
        .await;
    assert_eq!(second.prev_kv.unwrap().value, "v1");
    assert_eq!(second.header.unwrap().revision, 3);
    let kept = node
        .put_request(put_with("k", "", |request| request.ignore_value = true))
        .await;
    assert_eq!(kept.header.unwrap().revision, 4);
    assert_eq!(node.get(range("k", "")).await.kvs[0].value, "v2");
    node.put("l", "w").await;

    let deleted = node.delete(delete("k", "m", true)).await;
    assert_eq!((deleted.deleted, deleted.prev_kvs.len()), (2, 2));
    assert_eq!(deleted.header.unwrap().revision, 6);
    let nothing = node.delete(delete("k", "", false)).await;
    assert_eq!(nothing.deleted, 0);
    assert_eq!(
        nothing.header.unwrap().revision,
        6,
        "deleting nothing creates no revision"
    );
}

#[tokio::test]
async fn txn_runs_the_branch_its_compares_choose() {
    let mut node = start_default().await;
    let revision = node.put("lock", "owner-1").await;
    let take_lock = |compares: Vec<pb::Compare>| {
        let success = vec![op_put("lock", "owner-2"), op_range(range("lock", ""))];
        txn(compares, success, vec![op_range(range("lock", ""))])
    };

    let someone = compare("lock", CompareResult::Equal, TargetUnion::Value("someone".into()));
    let failed = node.txn(take_lock(vec![someone])).await;
    assert!(!failed.succeeded);
    assert_eq!(
        failed.header.unwrap().revision,
        revision,
        "a read-only outcome adds no revision"
    );

    let compares = vec![
        compare("lock", CompareResult::Equal, TargetUnion::ModRevision(revision)),
        compare("lock", CompareResult::Greater, TargetUnion::Version(0)),
        compare("missing", CompareResult::Equal, TargetUnion::CreateRevision(0)),
    ];
    let succeeded = node.txn(take_lock(compares)).await;
    assert!(succeeded.succeeded);
    let header = succeeded.header.unwrap();
    assert_eq!((header.revision, header.member_id), (revision + 1, MEMBER_ID));
    let [put_response, range_response] = &succeeded.responses[..] else {
        panic!("two responses: {:?}", succeeded.responses)
    };
    let Some(response_op::Response::ResponsePut(put_response)) = &put_response.response else {
        panic!("first is the put")
    };
    let nested_header = put_response.header.unwrap();
    assert_eq!(nested_header.revision, revision + 1);
    assert_eq!(nested_header.member_id, 0, "nested headers carry only a revision");
    let Some(response_op::Response::ResponseRange(range_response)) = &range_response.response else {
        panic!("second is the range")
    };
    assert_eq!(range_response.kvs[0].value, "owner-2", "later ops see earlier writes");

    // Target MOD with a `version` union compares mod_revision with 0 (etcd's rule), so a
    // huge version cannot make it fail.
    let mut disagreeing = compare("lock", CompareResult::Greater, TargetUnion::Version(1_000_000));
    disagreeing.target = CompareTarget::Mod as i32;
    assert!(node.txn(take_lock(vec![disagreeing])).await.succeeded);

    let inner = txn(
        vec![compare("x", CompareResult::Equal, TargetUnion::Version(0))],
        vec![op_put("x", "1")],
        vec![],
    );
    let nested = pb::RequestOp {
        request: Some(request_op::Request::RequestTxn(inner)),
    };
    let response = node.txn(txn(vec![], vec![nested], vec![])).await;
    let Some(response_op::Response::ResponseTxn(inner)) = &response.responses[0].response else {
        panic!("a nested txn response")
    };
    assert!(inner.succeeded);
    assert_eq!(
        inner.header,
        Some(pb::ResponseHeader::default()),
        "etcd leaves it empty"
    );
    assert_eq!(node.get(range("x", "")).await.kvs[0].value, "1");
}

#[tokio::test]
async fn only_linearizable_reads_wait_for_a_barrier() {
    let mut node = start_default().await;
    node.put("k", "v").await;
    let counter = Arc::clone(&node.barriers);
    let barriers = || counter.load(Ordering::SeqCst);
    assert_eq!(barriers(), 0, "writes need no barrier");
    node.get(range("k", "")).await;
    assert_eq!(barriers(), 1);
    let serializable = range_with("k", "", |request| request.serializable = true);
    node.get(serializable.clone()).await;
    assert_eq!(barriers(), 1, "a serializable range is served locally");

    let local = txn(
        vec![],
        vec![op_range(serializable.clone())],
        vec![op_range(serializable.clone())],
    );
    node.txn(local).await;
    assert_eq!(barriers(), 1, "a txn of serializable ranges is served locally");
    let mixed = txn(vec![], vec![op_range(serializable), op_range(range("k", ""))], vec![]);
    let response = node.txn(mixed).await;
    assert_eq!(barriers(), 2);
    assert_eq!(response.header.unwrap().revision, 2);
}

#[tokio::test]
async fn compaction_drops_history_and_refuses_old_revisions() {
    let mut node = start_default().await;
    for value in ["1", "2", "3", "4"] {
        node.put("k", value).await;
    }
    let compact = |revision, physical| pb::CompactionRequest { revision, physical };
    let compacted = node.kv.compact(compact(3, true)).await.unwrap().into_inner();
    assert_eq!(compacted.header.unwrap().revision, 5);

    let at = |revision| range_with("k", "", |request| request.revision = revision);
    assert_eq!(
        node.get(at(3)).await.kvs[0].value,
        "2",
        "the compact revision stays readable"
    );
    let compacted_text = "etcdserver: mvcc: required revision has been compacted";
    let future_text = "etcdserver: mvcc: required revision is a future revision";
    assert_status(node.kv.range(at(2)).await, Code::OutOfRange, compacted_text);
    assert_status(node.kv.range(at(6)).await, Code::OutOfRange, future_text);
    assert_status(
        node.kv.compact(compact(3, false)).await,
        Code::OutOfRange,
        compacted_text,
    );
    assert_status(node.kv.compact(compact(9, false)).await, Code::OutOfRange, future_text);

    let hash_kv = node.maintenance.hash_kv(pb::HashKvRequest { revision: 0 }).await;
    let hash_kv = hash_kv.unwrap().into_inner();
    assert_eq!((hash_kv.compact_revision, hash_kv.header.unwrap().revision), (3, 5));
    let old = node.maintenance.hash_kv(pb::HashKvRequest { revision: 2 }).await;
    assert_status(old, Code::OutOfRange, compacted_text);
}

#[tokio::test]
async fn request_errors_have_etcds_codes_and_texts() {
    let limits = ApiLimits {
        max_txn_ops: 3,
        ..ApiLimits::default()
    };
    let mut node = start(MAX_REQUEST_BYTES, limits).await;
    node.put("exists", "v").await;
    let invalid = Code::InvalidArgument;

    let not_provided = "etcdserver: key is not provided";
    assert_status(node.kv.range(range("", "")).await, invalid, not_provided);
    assert_status(node.kv.put(put("", "v")).await, invalid, not_provided);
    assert_status(node.kv.delete_range(delete("", "", false)).await, invalid, not_provided);
    let empty_compare = txn(
        vec![compare("", CompareResult::Equal, TargetUnion::Version(0))],
        vec![],
        vec![],
    );
    assert_status(node.kv.txn(empty_compare).await, invalid, not_provided);

    let value_provided = put_with("exists", "v", |request| request.ignore_value = true);
    assert_status(
        node.kv.put(value_provided).await,
        invalid,
        "etcdserver: value is provided",
    );
    let lease_provided = put_with("exists", "", |request| {
        request.ignore_lease = true;
        request.lease = 7;
    });
    assert_status(
        node.kv.put(lease_provided).await,
        invalid,
        "etcdserver: lease is provided",
    );
    let missing = put_with("missing", "", |request| request.ignore_value = true);
    assert_status(node.kv.put(missing).await, invalid, "etcdserver: key not found");
    let empty_op = txn(vec![], vec![pb::RequestOp { request: None }], vec![]);
    assert_status(node.kv.txn(empty_op).await, invalid, "etcdserver: key not found");
    let with_lease = put_with("k", "v", |request| request.lease = 42);
    let lease_text = "etcdserver: requested lease not found";
    assert_status(node.kv.put(with_lease).await, Code::NotFound, lease_text);

    let too_many = txn(
        vec![],
        (0..4).map(|index| op_put(&format!("k{index}"), "v")).collect(),
        vec![],
    );
    let too_many_text = "etcdserver: too many operations in txn request";
    assert_status(node.kv.txn(too_many).await, invalid, too_many_text);
    let duplicate = txn(vec![], vec![op_put("k", "1"), op_put("k", "2")], vec![]);
    let duplicate_text = "etcdserver: duplicate key given in txn request";
    assert_status(node.kv.txn(duplicate).await, invalid, duplicate_text);
    let future = range_with("exists", "", |request| request.revision = 100);
    let future_text = "etcdserver: mvcc: required revision is a future revision";
    assert_status(node.kv.range(future).await, Code::OutOfRange, future_text);

    let unknown_sort = range_with("exists", "", |request| request.sort_order = 7);
    let unknown_text = "braid: RangeRequest.sort_order has no enum value 7";
    assert_status(node.kv.range(unknown_sort).await, invalid, unknown_text);
    let mut unknown_target = compare("exists", CompareResult::Equal, TargetUnion::Value("v".into()));
    unknown_target.target = 9;
    let unknown_text = "braid: Compare.target has no enum value 9";
    assert_status(
        node.kv.txn(txn(vec![unknown_target], vec![], vec![])).await,
        invalid,
        unknown_text,
    );
    let revision = node.get(range("exists", "")).await.header.unwrap().revision;
    assert_eq!(revision, 2, "no failed request wrote");
}

#[tokio::test]
async fn oversized_requests_are_refused_before_replication() {
    let mut node = start(1024, ApiLimits::default()).await;
    let big = "x".repeat(2000);
    let too_large = "etcdserver: request is too large";
    assert_status(node.kv.put(put("k", &big)).await, Code::InvalidArgument, too_large);
    let big_txn = txn(vec![], vec![op_put("k", &big)], vec![]);
    assert_status(node.kv.txn(big_txn).await, Code::InvalidArgument, too_large);
    // Reads are never proposed, so their size does not matter (etcd checks proposals only).
    node.get(range(&big, "")).await;
    node.txn(txn(vec![], vec![op_range(range(&big, ""))], vec![])).await;
    assert_eq!(node.put("k", "small").await, 2, "nothing oversized was written");

    // Beyond max-request-bytes + 512 KiB gRPC itself refuses the message. etcd (grpc-go) says
    // ResourceExhausted "grpc: received message larger than max"; tonic says OutOfRange.
    let huge = "x".repeat(1024 + 512 * 1024 + 1);
    let status = node.kv.put(put("k", &huge)).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("too large"), "{status:?}");
}

#[tokio::test]
async fn hasleader_fails_fast_without_a_leader() {
    let mut node = start_default().await;
    let no_leader = "etcdserver: no leader";
    node.node.publish(MemberStatus {
        leader: 0,
        ..leader_status()
    });
    let request = with_leader_required(range("k", ""), "true");
    assert_status(node.kv.range(request).await, Code::Unavailable, no_leader);
    let request = with_leader_required(put("k", "v"), "true");
    assert_status(node.kv.put(request).await, Code::Unavailable, no_leader);
    let request = with_leader_required(pb::StatusRequest {}, "true");
    assert_status(node.maintenance.status(request).await, Code::Unavailable, no_leader);
    // Without the metadata (or with another value) the member still answers.
    node.kv
        .range(with_leader_required(range("k", ""), "false"))
        .await
        .unwrap();
    node.kv.range(range("k", "")).await.unwrap();
    let status = node.status().await;
    assert_eq!((status.leader, status.errors), (0, vec![no_leader.to_string()]));

    node.node.publish(leader_status());
    node.kv
        .range(with_leader_required(range("k", ""), "true"))
        .await
        .unwrap();
    assert_eq!(node.status().await.errors, Vec::<String>::new());
}

#[tokio::test]
async fn learners_serve_only_serializable_reads_and_status() {
    let mut node = start_default().await;
    node.put("k", "v").await;
    node.node.publish(MemberStatus {
        is_learner: true,
        is_leader: false,
        ..leader_status()
    });
    let refused = "etcdserver: rpc not supported for learner";
    assert_status(node.kv.range(range("k", "")).await, Code::Unavailable, refused);
    assert_status(node.kv.put(put("k", "v")).await, Code::Unavailable, refused);
    assert_status(
        node.kv.txn(txn(vec![], vec![], vec![])).await,
        Code::Unavailable,
        refused,
    );
    let serializable = range_with("k", "", |request| request.serializable = true);
    assert_eq!(node.get(serializable).await.kvs.len(), 1);
    assert!(node.status().await.is_learner);
}

#[tokio::test]
async fn status_describes_the_member() {
    let mut node = start_default().await;
    node.put("k", "v").await;
    let expected = pb::StatusResponse {
        header: Some(pb::ResponseHeader {
            cluster_id: CLUSTER_ID,
            member_id: MEMBER_ID,
            revision: 2,
            raft_term: TERM,
        }),
        version: "3.5.17".to_string(),
        db_size: 1 << 20,
        leader: MEMBER_ID,
        raft_index: 40,
        raft_term: TERM,
        raft_applied_index: 39,
        errors: vec![],
        db_size_in_use: 1 << 19,
        is_learner: false,
    };
    assert_eq!(node.status().await, expected);
    let alarms = node
        .maintenance
        .alarm(pb::AlarmRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(alarms.alarms.is_empty());
    assert_eq!(alarms.header.unwrap().member_id, MEMBER_ID);
    let hash = node.maintenance.hash(pb::HashRequest {}).await.unwrap().into_inner();
    assert_eq!(hash.header.unwrap().revision, 2);
}

#[tokio::test]
async fn node_failures_reach_the_client_as_etcd_errors() {
    let mut node = start_default().await;
    let fail_writes = |error: ServerError| *node.write_failure.lock().unwrap() = Some(error);
    fail_writes(ServerError::LeaderChanged);
    let changed = "etcdserver: leader changed";
    assert_status(node.kv.put(put("k", "v")).await, Code::Unavailable, changed);
    fail_writes(ServerError::Storage("fsync failed".into()));
    let stopped = "etcdserver: server stopped";
    assert_status(node.kv.put(put("k", "v")).await, Code::Unavailable, stopped);
    fail_writes(ServerError::TooManyRequests);
    let busy = "etcdserver: too many requests";
    assert_status(
        node.kv.delete_range(delete("k", "", false)).await,
        Code::ResourceExhausted,
        busy,
    );
    *node.barrier_failure.lock().unwrap() = Some(ServerError::Timeout);
    let timed_out = "etcdserver: request timed out";
    assert_status(node.kv.range(range("k", "")).await, Code::Unavailable, timed_out);
    let alarm = node.maintenance.alarm(pb::AlarmRequest::default()).await;
    assert_status(alarm, Code::Unavailable, timed_out);
}

#[tokio::test]
async fn services_not_built_yet_say_unimplemented() {
    let mut node = start_default().await;
    let mut auth = AuthClient::new(node.channel.clone());
    let status = auth.auth_status(pb::AuthStatusRequest::default()).await;
    let status_text = "braid: Auth.AuthStatus is not implemented yet";
    assert_status(status, Code::Unimplemented, status_text);
    let downgrade = node.maintenance.downgrade(pb::DowngradeRequest::default()).await;
    let downgrade_text = "braid: Maintenance.Downgrade is not implemented yet";
    assert_status(downgrade, Code::Unimplemented, downgrade_text);

    let mut health = HealthClient::new(node.channel.clone());
    for service in ["", "etcdserverpb.KV"] {
        let request = HealthCheckRequest {
            service: service.to_string(),
        };
        let response = health.check(request).await.unwrap().into_inner();
        assert_eq!(response.status, ServingStatus::Serving as i32, "service {service:?}");
    }
    let mut updates = health.watch(HealthCheckRequest::default()).await.unwrap().into_inner();
    let first = updates.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
}
