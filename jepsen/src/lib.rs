//! braid-jepsen: histories, a linearizability checker and the models braid is held to.
//!
//! Code map, in reading order:
//! - [`history`]: the JSON-lines history format (`Operation`, `Status`, `History`).
//! - [`model`]: the `Model` trait: decode, partition, init, step, describe.
//! - [`checker`]: Wing & Gong's search with Lowe's memoisation, P-compositional over the
//!   model's partitions; verdicts and reports. **`Verdict::Unknown` counts as a failure.**
//! - [`deadline`]: the wall-time budget (the only real clock in the test tooling).
//! - [`models`]: M-reg (per-key register) and M-etcd (the whole store, global revision).
//! - [`jepsen_log`]: converter for Jepsen's etcd register logs, the known-answer histories.
//!
//! Architecture invariant: this crate knows nothing of braid's internals or wire types; the
//! simulation and the process harness record histories in its format and call `check`.

pub mod checker;
pub mod deadline;
pub mod history;
pub mod jepsen_log;
pub mod model;
pub mod models;

pub use checker::{
    check, check_operations, CheckError, CheckOptions, CheckResult, CheckStatistics, IllegalReport, PendingOperation,
    ReportOperation, UnknownReason, Verdict,
};
pub use deadline::Deadline;
pub use history::{History, HistoryError, Operation, Status};
pub use model::{DecodeError, Decoded, Model, ModelOperation, Step};
pub use models::etcd::EtcdModel;
pub use models::register::RegisterModel;
