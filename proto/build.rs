//! Generates the Rust code for every .proto file under `proto/`.
//!
//! `tonic_build` here is madsim-tonic-build: it writes the ordinary tonic code to
//! `OUT_DIR/<package>.rs` and the simulator's version to `OUT_DIR/sim/<package>.rs`;
//! `tonic::include_proto!` picks the right one, so no cfg switch is needed anywhere.

use std::path::PathBuf;

/// Relative to the crate root (cargo runs build scripts there). Order does not matter:
/// protoc resolves imports against the include directory.
const PROTO_FILES: &[&str] = &[
    "proto/mvccpb/kv.proto",
    "proto/authpb/auth.proto",
    "proto/etcdserverpb/rpc.proto",
    "proto/v3lockpb/v3lock.proto",
    "proto/v3electionpb/v3election.proto",
    "proto/grpc/health/v1/health.proto",
    "proto/braidpb/peer.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc, so a fresh machine needs no system package. Setting the variable
    // is safe here: a build script is a single-threaded process of its own.
    let protoc: PathBuf = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);

    // The descriptor set (with comments) feeds gRPC reflection and lets tests/descriptor.rs
    // compare the etcd schema with etcd's own, name for name.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        // Every `bytes` field is `bytes::Bytes`: keys, values and Raft entries
        // travel from the gRPC frame to the WAL without a copy.
        .bytes(["."])
        .file_descriptor_set_path(out_dir.join("file_descriptor_set.bin"))
        .compile_protos(PROTO_FILES, &["proto"])?;
    Ok(())
}
