//! braid's deterministic simulation: the unchanged server on madsim nodes with
//! in-memory disks that survive restarts, clients on the real gRPC API, a
//! seeded nemesis, and the linearizability checker. Compiled only with
//! `--cfg madsim` (`sim/sweep`, or `cargo sim -p braid-sim`); in a normal build
//! this crate is empty.
//!
//! Reading order: `cluster` (members on madsim nodes, each with a `clock`,
//! the shared `faults` of the transport and the `observer` of invariants), `workload` (clients
//! recording histories), `watch_check` (watchers resuming across faults, and
//! etcd's watch guarantees checked against the history), `lease_check`
//! (lease clients checking leases never expire early and die with a revoke),
//! `nemesis` (the seed's fault mix) with `churn` (members replaced by new
//! ones, etcd's runbook), `run` (one seeded run: safety phase, heal,
//! liveness, checks), `sweep` (many seeds, repro lines, determinism).
#![cfg(madsim)]

pub mod churn;
pub mod clock;
pub mod cluster;
pub mod faults;
pub mod lease_check;
pub mod nemesis;
pub mod observer;
pub mod run;
pub mod watch_check;
pub mod workload;

#[cfg(test)]
mod smoke;
#[cfg(test)]
mod sweep;
