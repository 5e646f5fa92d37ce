pub mod process;
pub mod raft_cluster;
