//! braid's deterministic simulation: the unchanged server on madsim nodes with
//! in-memory disks that survive restarts. Compiled only with `--cfg madsim`
//! (`cargo sim -p braid-sim`); in a normal build this crate is empty.
//!
//! This is the smoke harness: a 3-member cluster, writes, a partition that
//! heals, a crash and restart, and the check that every acknowledged write is
//! still readable. The full nemesis, clients and checker come with the
//! simulation issue.
#![cfg(madsim)]

pub mod cluster;

#[cfg(test)]
mod smoke;
