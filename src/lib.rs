//! braid: an etcd-compatible distributed key-value store.
//!
//! Modules in reading order (see README.md for the full code map):
//!
//! - [`raft`]: the pure, deterministic consensus core.
//! - [`io`]: the only door to the OS: log, page and directory devices
//!   (io_uring, a pwrite/fdatasync fallback, fault-injecting memory) and clocks.
//! - [`wal`]: the append-only log: framing, segments, recovery.
//! - [`btree`]: the copy-on-write B+tree file (pages, double meta, free list).
//! - [`mvcc`]: etcd's revision model, key index, range/put/delete/txn,
//!   compaction, hashes and watches, over a small backend seam.
//! - [`config`]: etcd's flags, `ETCD_*` variables and YAML config file.
//! - [`server`]: the node, composing raft + wal + mvcc over io; peer transport.
//! - [`api`]: etcd's gRPC services over the node; proto <-> internal types, etcd's errors.
pub mod api;
pub mod btree;
pub mod config;
pub mod io;
pub mod mvcc;
pub mod raft;
pub mod server;
pub mod wal;
