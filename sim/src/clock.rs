//! SimClock: one member's view of time, with a wall-clock offset that can step
//! and a rate drift, both turned by the nemesis while the member runs.
//!
//! Rules (TESTING.md §4): the monotonic reading runs at `1 + ppm/10^6` times
//! simulated time and never jumps or goes back, even when the drift changes
//! (it is piecewise linear); the wall reading is the simulated wall clock plus
//! the offset plus the drift accumulated so far, and may step; `sleep(d)`
//! waits until this clock has advanced by `d`.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use braid::io::Clock;

/// Drift in parts per million; kept above -500,000 (half speed) so time
/// always moves forward.
const DRIFT_PPM_MIN: i64 = -500_000;

#[derive(Debug)]
struct Readings {
    /// Simulated time (ns since the simulation began) when the drift last changed.
    segment_start_ns: u64,
    /// This clock's monotonic reading at `segment_start_ns`.
    segment_start_monotonic_ns: u64,
    drift_ppm: i64,
    wall_offset_ns: i64,
}

/// A skewable clock; clones share the same knobs, so the harness keeps one
/// and the member's node gets another across restarts.
#[derive(Clone, Debug)]
pub struct SimClock {
    readings: Arc<Mutex<Readings>>,
    /// The simulation's start: readings count from here.
    origin: tokio::time::Instant,
}

impl SimClock {
    pub fn new(origin: tokio::time::Instant) -> SimClock {
        SimClock {
            readings: Arc::new(Mutex::new(Readings {
                segment_start_ns: 0,
                segment_start_monotonic_ns: 0,
                drift_ppm: 0,
                wall_offset_ns: 0,
            })),
            origin,
        }
    }

    fn simulated_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn monotonic_at(readings: &Readings, simulated_ns: u64) -> u64 {
        let elapsed = simulated_ns.saturating_sub(readings.segment_start_ns) as i128;
        let scaled = elapsed + elapsed * i128::from(readings.drift_ppm) / 1_000_000;
        readings.segment_start_monotonic_ns + scaled.max(0) as u64
    }

    /// Changes the rate from now on; the reading stays continuous.
    pub fn set_drift_ppm(&self, drift_ppm: i64) {
        let now = self.simulated_ns();
        let mut readings = self.readings.lock().unwrap();
        readings.segment_start_monotonic_ns = Self::monotonic_at(&readings, now);
        readings.segment_start_ns = now;
        readings.drift_ppm = drift_ppm.max(DRIFT_PPM_MIN);
    }

    /// Steps the wall clock by `step_ns` (either direction), as an NTP step or
    /// an operator's `date -s` would.
    pub fn step_wall(&self, step_ns: i64) {
        self.readings.lock().unwrap().wall_offset_ns += step_ns;
    }

    /// Back to no drift (the offset stays: a stepped wall clock is not a fault
    /// the member may rely on anyone undoing).
    pub fn heal(&self) {
        self.set_drift_ppm(0);
    }
}

impl Clock for SimClock {
    fn monotonic_ns(&self) -> u64 {
        let now = self.simulated_ns();
        Self::monotonic_at(&self.readings.lock().unwrap(), now)
    }

    fn wall_ns(&self) -> i64 {
        let now = self.simulated_ns();
        let readings = self.readings.lock().unwrap();
        let drifted = Self::monotonic_at(&readings, now) as i64 - now as i64;
        let simulated_wall = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(since_epoch) => since_epoch.as_nanos() as i64,
            Err(_) => 0,
        };
        simulated_wall + readings.wall_offset_ns + drifted
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send {
        let drift_ppm = self.readings.lock().unwrap().drift_ppm;
        let real = duration.as_nanos() as i128 * 1_000_000 / (1_000_000 + i128::from(drift_ppm));
        tokio::time::sleep(Duration::from_nanos(real.max(0) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[madsim::test]
    async fn drift_scales_time_and_steps_move_only_the_wall_clock() {
        let clock = SimClock::new(tokio::time::Instant::now());
        clock.set_drift_ppm(100_000); // 10% fast
        let wall_before = clock.wall_ns();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let monotonic = clock.monotonic_ns();
        assert!((10_999_000_000..=11_001_000_000).contains(&monotonic), "{monotonic}");
        clock.set_drift_ppm(0);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let later = clock.monotonic_ns();
        assert!((11_999_000_000..=12_001_000_000).contains(&later), "{later}");
        clock.step_wall(-3_600_000_000_000);
        let wall_after = clock.wall_ns();
        assert!(wall_after < wall_before, "a step back moves the wall clock back");
        assert!(clock.monotonic_ns() >= later, "steps never move the monotonic clock");
        // sleep(d) lasts d on this clock: at 2x speed, 1 s of clock is 0.5 s simulated.
        clock.set_drift_ppm(1_000_000);
        let start = tokio::time::Instant::now();
        clock.sleep(Duration::from_secs(1)).await;
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(499) && took <= Duration::from_millis(501),
            "{took:?}"
        );
    }
}
