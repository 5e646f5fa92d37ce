//! The node: composes raft, wal and mvcc over io, and decides ordering.
pub mod peer_codec;
