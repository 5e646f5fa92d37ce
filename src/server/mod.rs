//! The node: composes raft, wal and mvcc over io, and decides ordering.
mod handle;
pub mod peer_codec;

pub use handle::{Header, MemberStatus, NodeHandle, Request, ServerError};
