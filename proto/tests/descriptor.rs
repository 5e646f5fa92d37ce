//! Proves the etcd schema braid compiles is, name for name and number for number, the one etcd v3.5.33 compiles.
//!
//! protoc turns a .proto file into a FileDescriptorProto: packages, services, methods and
//! their streaming flags, messages, fields (name, JSON name, number, type, label, oneof),
//! enums and values, imports. Comments live only in its `source_code_info` (field 9).
//! So with field 9 removed, braid's descriptors must equal etcd's byte for byte.
//!
//! `ETCD_V3_5_33_FINGERPRINT` was computed from etcd's own files at tag v3.5.33, compiled by
//! the same protoc (protoc-bin-vendored 3.3.0, libprotoc 36.2) after only these edits:
//! removing the gogoproto imports and options, removing the google.api.http annotations
//! (`rpc X(A) returns (B) { option ... }` becomes `rpc X(A) returns (B);`), and rewriting the
//! `etcd/api/...` import paths to braid's (`mvccpb/kv.proto`, ...). Recipe:
//! `protoc -I. --descriptor_set_out=etcd.pb mvccpb/kv.proto authpb/auth.proto
//! etcdserverpb/rpc.proto v3lockpb/v3lock.proto v3electionpb/v3election.proto`, then
//! `etcd_fingerprints` below over `etcd.pb`. A protoc upgrade may change descriptor bytes;
//! then redo the recipe rather than pasting braid's own value.

mod common;

use braid_proto::FILE_DESCRIPTOR_SET;

/// Each etcd file in braid's tree with the FNV-1a hash of etcd's compiled descriptor.
const ETCD_V3_5_33_FINGERPRINTS: [(&str, u64); 5] = [
    ("mvccpb/kv.proto", 0x405c_d5d8_2004_5bc3),
    ("authpb/auth.proto", 0x0827_e3bf_3c0d_4b62),
    ("etcdserverpb/rpc.proto", 0x5922_0dd7_392f_5dee),
    ("v3lockpb/v3lock.proto", 0x1428_ae7c_4e97_0262),
    ("v3electionpb/v3election.proto", 0x75b7_b2e7_413c_72fc),
];

const FILE_DESCRIPTOR_SET_FILE: u32 = 1;
const FILE_NAME: u32 = 1;
const FILE_SOURCE_CODE_INFO: u32 = 9;

/// The files of an encoded FileDescriptorSet by name, each without its source_code_info.
fn files_without_source_info(descriptor_set: &[u8]) -> Vec<(String, Vec<u8>)> {
    common::fields(descriptor_set)
        .iter()
        .filter(|field| field.number == FILE_DESCRIPTOR_SET_FILE)
        .map(|file| {
            let mut name = None;
            let mut stripped = Vec::new();
            for field in common::fields(file.value) {
                if field.number == FILE_NAME {
                    name = Some(String::from_utf8(field.value.to_vec()).expect("file name is UTF-8"));
                }
                if field.number != FILE_SOURCE_CODE_INFO {
                    stripped.extend_from_slice(field.encoded);
                }
            }
            (name.expect("every FileDescriptorProto has a name"), stripped)
        })
        .collect()
}

/// FNV-1a, 64 bits: tiny, dependency-free, and plenty to notice an edit.
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The fingerprint of each etcd file (without comments) found in `descriptor_set`.
fn etcd_fingerprints(descriptor_set: &[u8]) -> Vec<(&'static str, u64)> {
    const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    let files = files_without_source_info(descriptor_set);
    ETCD_V3_5_33_FINGERPRINTS
        .iter()
        .map(|(wanted, _)| {
            let (_, bytes) = files
                .iter()
                .find(|(name, _)| name == wanted)
                .unwrap_or_else(|| panic!("{wanted} missing from the descriptor set"));
            (*wanted, fnv1a(FNV_OFFSET_BASIS, bytes))
        })
        .collect()
}

#[test]
fn etcd_schema_matches_etcd_v3_5_33() {
    // A mismatching file has changed a name, number, type, label, streaming flag or import.
    assert_eq!(etcd_fingerprints(FILE_DESCRIPTOR_SET), ETCD_V3_5_33_FINGERPRINTS);
}

#[test]
fn descriptor_set_holds_every_proto_file_once() {
    let mut names: Vec<String> = files_without_source_info(FILE_DESCRIPTOR_SET)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    names.sort();
    let expected = [
        "authpb/auth.proto",
        "braidpb/peer.proto",
        "etcdserverpb/rpc.proto",
        "grpc/health/v1/health.proto",
        "mvccpb/kv.proto",
        "v3electionpb/v3election.proto",
        "v3lockpb/v3lock.proto",
    ];
    assert_eq!(names, expected);
}

#[test]
fn comments_are_kept_for_reflection() {
    let set = common::fields(FILE_DESCRIPTOR_SET);
    let with_source_info = set
        .iter()
        .filter(|file| {
            common::fields(file.value)
                .iter()
                .any(|field| field.number == FILE_SOURCE_CODE_INFO)
        })
        .count();
    assert_eq!(with_source_info, set.len(), "every file carries its comments");
}
