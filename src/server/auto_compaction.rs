//! Background maintenance every member runs: `--auto-compaction-mode/-retention` as etcd 3.5's
//! compactors do it (only the leader proposes, through Raft, so every member compacts at the
//! same index), and the physical part of every compaction (dead revisions deleted from the
//! state file in bounded steps, so their pages return to the free list and later commits
//! reuse them), whichever member or client proposed it. Time comes from the node's `Clock`.
//!
//! Periodic (etcd's `v3compactor.Periodic`): with retention `R`, the current revision is
//! sampled every `min(R, 1h) / 10`; once `R` has passed since the start (then every
//! `min(R, 1h)`), the leader compacts to the oldest sample it kept, the revision of `R` ago.
//! Revision (etcd's `v3compactor.Revision`): every 5 minutes the leader compacts to
//! `current − N` unless that is not positive or was already compacted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::maintenance::AutoCompactionPolicy;
use super::{NodeHandle, ServerError};
use crate::io::Clock;
use crate::mvcc::{Backend, CompactRequest, MvccError, Revision, WriteRequest};

/// etcd's revision compactor checks this often.
pub const REVISION_CHECK_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// How often every member looks for physical compaction work.
pub const PHYSICAL_COMPACTION_INTERVAL: Duration = Duration::from_secs(1);
/// etcd caps the periodic compactor's intervals at an hour.
const PERIODIC_INTERVAL_MAX: Duration = Duration::from_secs(3600);
/// etcd samples the revision ten times per (capped) retention window.
const RETRY_DIVISOR: u32 = 10;

/// etcd's periodic compactor as a state machine (the caller sleeps and proposes).
#[derive(Clone, Debug)]
pub struct PeriodicCompactor {
    period: Duration,
    /// Revisions sampled every retry interval; the front is the one of `period` ago.
    revisions: VecDeque<i64>,
    retentions: usize,
    last_success_ns: u64,
    /// `period` until the first compaction, then the compact interval.
    base_interval: Duration,
    last_revision: i64,
}

impl PeriodicCompactor {
    pub fn new(period: Duration, now_ns: u64) -> PeriodicCompactor {
        let mut compactor = PeriodicCompactor {
            period,
            revisions: VecDeque::new(),
            retentions: 0,
            last_success_ns: now_ns,
            base_interval: period,
            last_revision: 0,
        };
        let retry_ns = compactor.retry_interval().as_nanos().max(1);
        compactor.retentions = (period.as_nanos() / retry_ns) as usize + 1;
        compactor
    }

    fn compact_interval(&self) -> Duration {
        self.period.min(PERIODIC_INTERVAL_MAX)
    }

    /// How long to sleep between samples.
    pub fn retry_interval(&self) -> Duration {
        self.compact_interval() / RETRY_DIVISOR
    }

    /// Samples the current revision (before each sleep).
    pub fn record(&mut self, revision: i64) {
        self.revisions.push_back(revision);
        if self.revisions.len() > self.retentions {
            self.revisions.pop_front();
        }
    }

    /// After a sleep: the revision to compact now, if any (only a leader compacts).
    pub fn due(&mut self, now_ns: u64, is_leader: bool) -> Option<i64> {
        if !is_leader {
            return None;
        }
        let revision = *self.revisions.front()?;
        let since_success = Duration::from_nanos(now_ns.saturating_sub(self.last_success_ns));
        if since_success < self.base_interval || revision == self.last_revision {
            return None;
        }
        self.base_interval = self.compact_interval();
        Some(revision)
    }

    /// The compaction to `revision` succeeded (or was already done).
    pub fn succeeded(&mut self, now_ns: u64, revision: i64) {
        self.last_success_ns = now_ns;
        self.last_revision = revision;
    }
}

/// etcd's revision compactor's choice: `current − retention`, unless not positive or the
/// same as the last one.
pub fn revision_due(current: i64, retention: u64, previous: i64) -> Option<i64> {
    let revision = current.saturating_sub(i64::try_from(retention).unwrap_or(i64::MAX));
    (revision > 0 && revision != previous).then_some(revision)
}

/// Proposes a compaction; `Ok` also when it was already compacted.
async fn compact<B: Backend>(node: &NodeHandle<B>, revision: i64) -> Result<(), ServerError> {
    let request = WriteRequest::Compact(CompactRequest {
        revision: Revision(revision),
    });
    match node.write(request).await {
        Ok(_) | Err(ServerError::Mvcc(MvccError::Compacted)) => Ok(()),
        Err(error) => Err(error),
    }
}

/// Starts the background tasks; they end when the node loop does.
pub(crate) fn spawn<B: Backend, C: Clock>(node: NodeHandle<B>, clock: Arc<C>, policy: AutoCompactionPolicy) {
    let physical_node = node.clone();
    let physical_clock = Arc::clone(&clock);
    tokio::spawn(async move {
        while !physical_node.requests.is_closed() {
            physical_clock.sleep(PHYSICAL_COMPACTION_INTERVAL).await;
            if let Err(error) = physical_node.store().finish_compaction().await {
                eprintln!("braid: physical compaction failed: {error}");
                return;
            }
        }
    });
    match policy {
        AutoCompactionPolicy::Disabled => {}
        AutoCompactionPolicy::Periodic(period) => {
            tokio::spawn(async move {
                let mut compactor = PeriodicCompactor::new(period, clock.monotonic_ns());
                while !node.requests.is_closed() {
                    compactor.record(node.store().current_revision().0);
                    clock.sleep(compactor.retry_interval()).await;
                    let Some(revision) = compactor.due(clock.monotonic_ns(), node.status().is_leader) else {
                        continue;
                    };
                    match compact(&node, revision).await {
                        Ok(()) => compactor.succeeded(clock.monotonic_ns(), revision),
                        Err(error) => eprintln!("braid: auto compaction to revision {revision} failed: {error}"),
                    }
                }
            });
        }
        AutoCompactionPolicy::Revision(retention) => {
            tokio::spawn(async move {
                let mut previous = 0;
                while !node.requests.is_closed() {
                    clock.sleep(REVISION_CHECK_INTERVAL).await;
                    if !node.status().is_leader {
                        continue;
                    }
                    let Some(revision) = revision_due(node.store().current_revision().0, retention, previous) else {
                        continue;
                    };
                    match compact(&node, revision).await {
                        Ok(()) => previous = revision,
                        Err(error) => eprintln!("braid: auto compaction to revision {revision} failed: {error}"),
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND_NS: u64 = 1_000_000_000;

    #[test]
    fn periodic_compacts_the_revision_of_one_retention_ago_then_every_interval() {
        // Retention 10 s: samples every second, 11 kept, first compaction after 10 s.
        let mut compactor = PeriodicCompactor::new(Duration::from_secs(10), 0);
        assert_eq!(compactor.retry_interval(), Duration::from_secs(1));
        let mut compactions = Vec::new();
        for second in 1..=40u64 {
            // One write per second: the revision at second s is 100 + s.
            compactor.record(100 + second as i64);
            let now = second * SECOND_NS;
            if let Some(revision) = compactor.due(now, true) {
                compactor.succeeded(now, revision);
                compactions.push((second, revision));
            }
        }
        // At 10 s the oldest sample is the one taken at 1 s; afterwards every 10 s it is
        // the revision of 10 s earlier.
        assert_eq!(compactions, vec![(10, 101), (20, 110), (30, 120), (40, 130)]);
    }

    #[test]
    fn periodic_waits_while_a_follower_and_skips_an_unchanged_revision() {
        let mut compactor = PeriodicCompactor::new(Duration::from_secs(10), 0);
        for second in 1..=15u64 {
            compactor.record(7);
            assert_eq!(
                compactor.due(second * SECOND_NS, false),
                None,
                "a follower never compacts"
            );
        }
        compactor.record(7);
        assert_eq!(compactor.due(16 * SECOND_NS, true), Some(7));
        compactor.succeeded(16 * SECOND_NS, 7);
        for second in 17..=40u64 {
            compactor.record(7);
            assert_eq!(compactor.due(second * SECOND_NS, true), None, "nothing new to compact");
        }
    }

    #[test]
    fn long_retentions_sample_every_six_minutes_and_compact_hourly() {
        let compactor = PeriodicCompactor::new(Duration::from_secs(5 * 3600), 0);
        assert_eq!(compactor.retry_interval(), Duration::from_secs(360));
        assert_eq!(compactor.retentions, 51);
        assert_eq!(compactor.compact_interval(), Duration::from_secs(3600));
    }

    #[test]
    fn revision_mode_keeps_the_last_n_revisions() {
        assert_eq!(revision_due(1000, 100, 0), Some(900));
        assert_eq!(revision_due(1000, 100, 900), None);
        assert_eq!(revision_due(50, 100, 0), None);
        assert_eq!(revision_due(100, 100, 0), None);
    }
}
