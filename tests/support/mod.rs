pub mod braid_client;
pub mod process;
pub mod raft_cluster;
pub mod stand_in;
