//! Time sources behind the `Clock` trait.
//!
//! `SystemClock` is the only place in braid that reads the OS clocks
//! (DESIGN.md invariant 7); everything else asks a `Clock`. `ManualClock` lets a
//! test set both readings by hand.

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Clock;

/// The real clocks. Under madsim the same calls read the simulated clock.
#[derive(Clone, Debug)]
pub struct SystemClock {
    /// `monotonic_ns` counts from here, so readings start near zero and fit a u64.
    origin: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        SystemClock { origin: Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn monotonic_ns(&self) -> u64 {
        // u64 nanoseconds last 584 years from process start.
        self.origin.elapsed().as_nanos() as u64
    }

    fn wall_ns(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since_epoch) => since_epoch.as_nanos() as i64,
            Err(before_epoch) => -(before_epoch.duration().as_nanos() as i64),
        }
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(duration)
    }
}

/// A clock whose readings only move when the test says so. Clones share the
/// same readings. `sleep` still waits on the runtime's timer, so tests that
/// sleep through it need a runtime with time enabled.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    readings: Arc<ManualReadings>,
}

#[derive(Debug, Default)]
struct ManualReadings {
    // Invariant: only ever increases (checked in `set_monotonic_ns`).
    monotonic_ns: AtomicU64,
    wall_ns: AtomicI64,
}

impl ManualClock {
    pub fn new(monotonic_ns: u64, wall_ns: i64) -> Self {
        ManualClock {
            readings: Arc::new(ManualReadings {
                monotonic_ns: AtomicU64::new(monotonic_ns),
                wall_ns: AtomicI64::new(wall_ns),
            }),
        }
    }

    /// Moves the monotonic reading forward (and the wall reading with it).
    pub fn advance(&self, duration: Duration) {
        let step_ns = duration.as_nanos() as u64;
        self.readings.monotonic_ns.fetch_add(step_ns, Ordering::SeqCst);
        self.readings.wall_ns.fetch_add(step_ns as i64, Ordering::SeqCst);
    }

    /// Sets the monotonic reading; panics if that would move it backwards.
    pub fn set_monotonic_ns(&self, monotonic_ns: u64) {
        let previous_ns = self.readings.monotonic_ns.swap(monotonic_ns, Ordering::SeqCst);
        assert!(
            monotonic_ns >= previous_ns,
            "monotonic clock moved backwards: {previous_ns} -> {monotonic_ns}"
        );
    }

    /// Sets the wall reading; it may step in either direction.
    pub fn set_wall_ns(&self, wall_ns: i64) {
        self.readings.wall_ns.store(wall_ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn monotonic_ns(&self) -> u64 {
        self.readings.monotonic_ns.load(Ordering::SeqCst)
    }

    fn wall_ns(&self) -> i64 {
        self.readings.wall_ns.load(Ordering::SeqCst)
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(10, -5);
        let other = clock.clone();
        assert_eq!((clock.monotonic_ns(), clock.wall_ns()), (10, -5));
        clock.advance(Duration::from_nanos(7));
        assert_eq!((other.monotonic_ns(), other.wall_ns()), (17, 2));
        other.set_wall_ns(-1_000);
        assert_eq!((clock.monotonic_ns(), clock.wall_ns()), (17, -1_000));
    }

    #[test]
    #[should_panic(expected = "monotonic clock moved backwards: 17 -> 3")]
    fn manual_clock_refuses_to_go_backwards() {
        let clock = ManualClock::new(17, 0);
        clock.set_monotonic_ns(3);
    }

    #[test]
    fn system_clock_is_monotonic_and_after_2020() {
        let clock = SystemClock::new();
        let first_ns = clock.monotonic_ns();
        let second_ns = clock.monotonic_ns();
        assert!(second_ns >= first_ns, "{first_ns} then {second_ns}");
        // 2020-01-01T00:00:00Z in nanoseconds.
        assert!(clock.wall_ns() > 1_577_836_800_000_000_000);
    }
}
