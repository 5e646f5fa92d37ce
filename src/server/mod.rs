//! The node: composes raft, wal and mvcc over io, and decides ordering.
pub mod alarms;
pub mod auto_compaction;
pub mod cluster;
mod handle;
pub mod hooks;
pub mod identity;
mod incarnation;
pub mod join;
pub mod lessor;
mod log_store;
pub mod maintenance;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod peer_codec;
pub mod proposal;
pub mod snapshot_file;
pub mod transport;

pub use handle::{Applied, Header, MemberStatus, NodeHandle, Request, ServerError};
pub use maintenance::{AutoCompactionPolicy, MaintenanceOptions};
pub use proposal::Command;
