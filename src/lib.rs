//! braid
pub mod raft;
