//! A wall-time budget for the checker.
//!
//! This is the one place in braid's test tooling that reads the real clock. It is allowed
//! because the checker runs after a run, outside the deterministic system: its verdict never
//! feeds back into a simulation. A check that runs out of time answers `Unknown`, which callers
//! count as a failure, so the clock can make a check fail but never make it pass.

use std::time::{Duration, Instant};

/// When a check must give up.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    started: Instant,
    budget: Option<Duration>,
}

impl Deadline {
    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Deadline {
        Deadline {
            started: Instant::now(),
            budget: Some(budget),
        }
    }

    /// A deadline that never expires (the clock still runs, for `elapsed`).
    pub fn never() -> Deadline {
        Deadline {
            started: Instant::now(),
            budget: None,
        }
    }

    /// A deadline `budget` from now, or none when `budget` is `None`.
    pub fn from_budget(budget: Option<Duration>) -> Deadline {
        match budget {
            Some(budget) => Deadline::after(budget),
            None => Deadline::never(),
        }
    }

    /// The budget this deadline was made with.
    pub fn budget(&self) -> Option<Duration> {
        self.budget
    }

    /// Time since the deadline was made.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// True once the budget is spent.
    pub fn is_expired(&self) -> bool {
        match self.budget {
            Some(budget) => self.started.elapsed() >= budget,
            None => false,
        }
    }
}
