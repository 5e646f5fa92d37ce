//! etcd's gRPC services over a `NodeHandle` (COMPAT.md §2): the edge where protos meet
//! braid's own types (DESIGN invariant 4) and every error gets etcd's code and text.
//!
//! Reading order: `version` (what braid reports), `errors` (the one error → `Status`
//! mapping), `convert` (proto ↔ mvcc), `kv` (Range/Put/DeleteRange/Txn/Compact),
//! `lease` (grant, revoke, keepalive, time-to-live, list), `maintenance` (Status and friends),
//! `cluster` (the member RPCs), `watch` (the Watch stream), `health` (`grpc.health.v1`),
//! `unimplemented` (the services still to come, answering UNIMPLEMENTED).
//!
//! `add_services` mounts them all on a tonic server. It names no generated server type: those
//! differ between the normal build and the simulator's (`--cfg madsim`), while
//! `tonic::transport::Server`/`Router` and the builder methods used here exist in both.

pub mod cluster;
pub mod convert;
pub mod errors;
pub mod health;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod snapshot;
pub mod unimplemented;
pub mod version;
pub mod watch;

use tonic::metadata::MetadataMap;
use tonic::transport::server::Router;
use tonic::transport::Server;

use crate::api::errors::{ApiError, EtcdError};
use crate::mvcc::Backend;
use crate::server::NodeHandle;

pub use cluster::ClusterService;
pub use health::HealthService;
pub use kv::KvService;
pub use lease::LeaseService;
pub use maintenance::MaintenanceService;
pub use unimplemented::Unimplemented;
pub use watch::WatchService;

/// `--max-txn-ops` default.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;

/// gRPC accepts messages this much larger than `--max-request-bytes` (COMPAT.md §4.6), so an
/// oversized proposal gets etcd's `request is too large` rather than a transport error.
pub const RECEIVE_OVERHEAD_BYTES: usize = 512 * 1024;

/// etcd's server send limit: 2³¹ − 1 bytes (COMPAT.md §4.6).
pub const MAX_SEND_MESSAGE_BYTES: usize = (1 << 31) - 1;

/// gRPC metadata a client sets to fail fast when the member has no leader (COMPAT.md §4.5).
pub const METADATA_REQUIRE_LEADER_KEY: &str = "hasleader";
/// The only value of `hasleader` that asks for the check (etcd's `MetadataHasLeader`).
pub const METADATA_HAS_LEADER: &str = "true";

/// Bounds the API layer enforces (`--max-request-bytes` lives on the `NodeHandle`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiLimits {
    /// `--max-txn-ops`: max(compares, success ops, failure ops) per txn.
    pub max_txn_ops: usize,
    /// The largest response message the server sends.
    pub max_send_message_bytes: usize,
    /// `--experimental-watch-progress-notify-interval`: how often a `progress_notify` watcher
    /// that saw no events hears the current revision.
    pub watch_progress_notify_interval: std::time::Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_txn_ops: DEFAULT_MAX_TXN_OPS,
            max_send_message_bytes: MAX_SEND_MESSAGE_BYTES,
            watch_progress_notify_interval: watch::DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL,
        }
    }
}

/// The largest request message gRPC decodes for a member with this `--max-request-bytes`.
pub fn max_receive_message_bytes(max_request_bytes: usize) -> usize {
    max_request_bytes.saturating_add(RECEIVE_OVERHEAD_BYTES)
}

/// Which RPCs a learner serves (etcd's `isRPCSupportedForLearner`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LearnerAccess {
    /// Status, serializable Range, Snapshot.
    Allowed,
    Refused,
}

/// The checks etcd's unary interceptor makes before any handler runs, in its order: a learner
/// serves only a few RPCs, then `hasleader: true` fails fast while the member has no leader.
/// The gateway calls this too, with the metadata it forwards.
pub fn check_access<B: Backend>(
    node: &NodeHandle<B>,
    metadata: &MetadataMap,
    learner_access: LearnerAccess,
) -> Result<(), ApiError> {
    let status = node.status();
    if status.is_learner && learner_access == LearnerAccess::Refused {
        return Err(EtcdError::NotSupportedForLearner.into());
    }
    let require_leader = metadata
        .get(METADATA_REQUIRE_LEADER_KEY)
        .is_some_and(|value| value.to_str().is_ok_and(|text| text == METADATA_HAS_LEADER));
    if require_leader && status.leader == 0 {
        return Err(EtcdError::NoLeader.into());
    }
    Ok(())
}

/// Mounts every client-facing gRPC service on `$target`, anything with tonic's
/// chaining `add_service` (a `transport::Server` builder, its `Router`, or the
/// real build's `service::Routes`, which the binary serves next to HTTP on one
/// port): KV, Lease, Maintenance, Watch and Cluster over `$node`, `grpc.health.v1.Health`,
/// and Auth, Lock and Election answering UNIMPLEMENTED. Requests may
/// be up to `max_request_bytes + 512 KiB` on the wire.
///
/// A macro, because the generated server types differ between the normal and
/// the simulator build and share no trait that carries these methods: the
/// types are inferred where it expands.
#[macro_export]
macro_rules! add_api_services {
    ($target:expr, $node:expr, $limits:expr) => {{
        use $crate::api::__proto::etcdserverpb::auth_server::AuthServer;
        use $crate::api::__proto::etcdserverpb::cluster_server::ClusterServer;
        use $crate::api::__proto::etcdserverpb::kv_server::KvServer;
        use $crate::api::__proto::etcdserverpb::lease_server::LeaseServer;
        use $crate::api::__proto::etcdserverpb::maintenance_server::MaintenanceServer;
        use $crate::api::__proto::etcdserverpb::watch_server::WatchServer;
        use $crate::api::__proto::grpc::health::v1::health_server::HealthServer;
        use $crate::api::__proto::v3electionpb::election_server::ElectionServer;
        use $crate::api::__proto::v3lockpb::lock_server::LockServer;
        use $crate::api::{
            ClusterService, HealthService, KvService, LeaseService, MaintenanceService, Unimplemented, WatchService,
        };
        let node = $node;
        let limits: $crate::api::ApiLimits = $limits;
        let receive_bytes = $crate::api::max_receive_message_bytes(node.max_request_bytes());
        let send_bytes = limits.max_send_message_bytes;
        macro_rules! limited {
            ($server:expr) => {
                $server
                    .max_decoding_message_size(receive_bytes)
                    .max_encoding_message_size(send_bytes)
            };
        }
        $target
            .add_service(limited!(KvServer::new(KvService::new(node.clone(), limits))))
            .add_service(limited!(MaintenanceServer::new(MaintenanceService::new(node.clone()))))
            .add_service(limited!(ClusterServer::new(ClusterService::new(node.clone()))))
            .add_service(limited!(WatchServer::new(WatchService::new(node.clone(), limits))))
            .add_service(limited!(LeaseServer::new(LeaseService::new(node.clone()))))
            .add_service(limited!(AuthServer::new(Unimplemented)))
            .add_service(limited!(LockServer::new(Unimplemented)))
            .add_service(limited!(ElectionServer::new(Unimplemented)))
            .add_service(limited!(HealthServer::new(HealthService)))
    }};
}

#[doc(hidden)]
pub use braid_proto as __proto;

/// [`add_api_services!`] on a tonic server builder.
pub fn add_services<B: Backend, L: Clone>(mut builder: Server<L>, node: NodeHandle<B>, limits: ApiLimits) -> Router<L> {
    crate::add_api_services!(builder, node, limits)
}
