//! Counters and histograms the node keeps for `/metrics`, named after etcd's
//! (COMPAT.md §7) so existing dashboards and alerts work. Lock-free: the node
//! loop writes, HTTP readers read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// etcd's disk histograms: 14 buckets, 1 ms doubling (0.001 … 8.192 s).
pub const DISK_BUCKETS: usize = 14;

#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds in nanoseconds; counts are per bucket (not cumulative).
    bounds_ns: [u64; DISK_BUCKETS],
    counts: [AtomicU64; DISK_BUCKETS],
    overflow: AtomicU64,
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        let mut bounds_ns = [0; DISK_BUCKETS];
        for (position, bound) in bounds_ns.iter_mut().enumerate() {
            *bound = 1_000_000u64 << position;
        }
        Histogram {
            bounds_ns,
            counts: Default::default(),
            overflow: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, duration: Duration) {
        let nanos = duration.as_nanos().min(u64::MAX as u128) as u64;
        self.sum_ns.fetch_add(nanos, Ordering::Relaxed);
        match self.bounds_ns.iter().position(|bound| nanos <= *bound) {
            Some(bucket) => self.counts[bucket].fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Writes the histogram in Prometheus text format.
    pub fn render(&self, name: &str, help: &str, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds_ns.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let seconds = *bound as f64 / 1e9;
            let _ = writeln!(out, "{name}_bucket{{le=\"{seconds}\"}} {cumulative}");
        }
        cumulative += self.overflow.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// Everything the node measures.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    pub wal_fsync: Histogram,
    pub backend_commit: Histogram,
    pub proposals_failed: AtomicU64,
    pub proposals_pending: AtomicU64,
    pub slow_fsyncs: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_renders_cumulative_buckets_in_seconds() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(500));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(60));
        let mut out = String::new();
        histogram.render("etcd_disk_wal_fsync_duration_seconds", "fsync latency", &mut out);
        assert!(
            out.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.004\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"8.192\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("etcd_disk_wal_fsync_duration_seconds_count 3\n"), "{out}");
    }
}
