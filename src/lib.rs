//! braid: an etcd-compatible distributed key-value store.
//!
//! Modules in reading order (see README.md for the full code map):
//!
//! - [`raft`]: the pure, deterministic consensus core.
pub mod raft;
