//! Protocol buffer and gRPC definitions for braid.
//!
//! Two kinds of protocol live here:
//!
//! - **The etcd v3 client API** ([`etcdserverpb`], [`mvccpb`], [`authpb`], [`v3lockpb`],
//!   [`v3electionpb`], plus the standard [`grpc::health::v1`]). braid's `.proto` files are
//!   written for braid, but every proto package, service, method, message and enum name and
//!   every field number and type is etcd v3.5's (tag `v3.5.33`), so unmodified etcd clients
//!   (`etcdctl`, the Go client, `etcd-client`, jetcd) work against braid. The contract is
//!   COMPAT.md section 2; `tests/wire.rs` pins known encodings and the easy-to-get-wrong
//!   field numbers.
//! - **braid's peer protocol** ([`braidpb`]): the `Peer` service members use to exchange
//!   Raft messages. It is braid's own and owes nothing to etcd's peer protocol.
//!
//! Every module is generated at build time (see `build.rs`) for both worlds: the normal
//! build gets ordinary tonic servers and clients, a `--cfg madsim` build gets madsim's
//! simulated ones with the same API. Servers are `<pkg>::<service>_server::<Service>Server`
//! (e.g. [`etcdserverpb::kv_server::KvServer`]), clients `<pkg>::<service>_client::<Service>Client`.
//!
//! prost turns etcd's camel-case field names into snake case, sometimes oddly:
//! `peerURLs` becomes `peer_ur_ls`, `TTL` becomes `ttl`, `ID` becomes `id`. Only the Rust
//! names change; the wire format uses numbers, and JSON (the gateway) must use the proto
//! names.

/// All of this crate's .proto files as an encoded `google.protobuf.FileDescriptorSet`, comments included:
/// what a gRPC reflection service needs to describe braid's API.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/file_descriptor_set.bin"));

// Each package is a module at the crate root because prost refers to other packages by
// relative path (`super::mvccpb::KeyValue` from inside `etcdserverpb`).

/// Keys and watch events (`mvccpb.KeyValue`, `mvccpb.Event`).
#[allow(clippy::all, missing_docs)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// Users, roles and permissions of etcd authentication.
#[allow(clippy::all, missing_docs)]
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// The KV, Watch, Lease, Cluster, Maintenance and Auth services.
#[allow(clippy::all, missing_docs)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// The distributed lock service (`v3lockpb.Lock`).
#[allow(clippy::all, missing_docs)]
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

/// The leader election service (`v3electionpb.Election`).
#[allow(clippy::all, missing_docs)]
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

/// The standard gRPC health service, as `grpc.health.v1`.
pub mod grpc {
    /// `grpc.health`
    pub mod health {
        /// `grpc.health.v1.Health`, served by every member like etcd does.
        #[allow(clippy::all, missing_docs)]
        pub mod v1 {
            tonic::include_proto!("grpc.health.v1");
        }
    }
}

/// braid's peer protocol: the `Peer` service, its frames, and the Raft messages they carry.
#[allow(clippy::all, missing_docs)]
pub mod braidpb {
    tonic::include_proto!("braidpb");
}
