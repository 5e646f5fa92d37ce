//! The linearizability checker: decode, partition, search each partition, combine verdicts.
//!
//! **`Verdict::Unknown` is a failure.** It means the budget ran out before the search finished;
//! the history may hide a violation. Callers must treat it like `Illegal` (use
//! [`Verdict::is_ok`], which is false for both).

mod memo;
mod report;
mod search;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

pub use report::{IllegalReport, PendingOperation, ReportOperation};

use crate::deadline::Deadline;
use crate::history::History;
use crate::model::{Model, ModelOperation};
use search::{SearchOutcome, StopSignal};

/// How to run a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOptions {
    /// Wall-time budget for the whole check; `None` means no limit.
    pub budget: Option<Duration>,
    /// Threads for checking partitions; 1 checks them in order on the caller's thread, which
    /// makes the reported partition deterministic.
    pub threads: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            budget: None,
            threads: 1,
        }
    }
}

impl CheckOptions {
    /// These options with a wall-time budget.
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = Some(budget);
        self
    }

    /// These options with `threads` worker threads (at least 1).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }
}

/// Why the checker could not decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnknownReason {
    /// The wall-time budget ran out.
    BudgetExhausted { budget: Duration },
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every partition has a linearization.
    Ok,
    /// Some partition has none; the report says where the search got stuck.
    Illegal(Box<IllegalReport>),
    /// Undecided. **Counts as a failed check.**
    Unknown(UnknownReason),
}

impl Verdict {
    /// True only for `Ok`: `Illegal` and `Unknown` are both failures.
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Ok)
    }

    /// True for `Illegal`.
    pub fn is_illegal(&self) -> bool {
        matches!(self, Verdict::Illegal(_))
    }

    /// True for `Unknown`.
    pub fn is_unknown(&self) -> bool {
        matches!(self, Verdict::Unknown(_))
    }

    /// `ok`, `illegal` or `unknown`.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Illegal(_) => "illegal",
            Verdict::Unknown(_) => "unknown",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Ok => formatter.write_str("linearizable"),
            Verdict::Illegal(report) => write!(formatter, "{report}"),
            Verdict::Unknown(UnknownReason::BudgetExhausted { budget }) => write!(
                formatter,
                "unknown: the {} ms budget ran out (counts as a failure)",
                budget.as_millis()
            ),
        }
    }
}

/// Figures about one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckStatistics {
    /// Operations checked (after dropping).
    pub operations: usize,
    /// Operations the model dropped (failed reads, rejected writes, unanswered reads).
    pub dropped: usize,
    /// Number of partitions.
    pub partitions: usize,
    /// Operations in the largest partition.
    pub largest_partition: usize,
    /// Wall time of the check.
    pub elapsed: Duration,
}

/// A verdict and the figures behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    /// The answer.
    pub verdict: Verdict,
    /// Sizes and time.
    pub statistics: CheckStatistics,
}

impl CheckResult {
    /// True only for a linearizable history (`Unknown` is a failure).
    pub fn is_ok(&self) -> bool {
        self.verdict.is_ok()
    }
}

/// Why a history could not be checked at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckError {
    /// The model could not decode operation `id`.
    Decode { id: usize, op: String, message: String },
    /// Operation `id` has impossible times.
    InvalidTimes { id: usize, reason: String },
}

impl fmt::Display for CheckError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Decode { id, op, message } => {
                write!(formatter, "operation {id} ({op}): {message}")
            }
            CheckError::InvalidTimes { id, reason } => {
                write!(formatter, "operation {id}: {reason}")
            }
        }
    }
}

impl std::error::Error for CheckError {}

/// Checks a recorded history against `model`.
pub fn check<M: Model>(model: &M, history: &History, options: &CheckOptions) -> Result<CheckResult, CheckError> {
    let deadline = Deadline::from_budget(options.budget);
    let mut operations = Vec::with_capacity(history.len());
    let mut ids = Vec::with_capacity(history.len());
    for (id, operation) in history.operations.iter().enumerate() {
        let decoded = model.decode(operation).map_err(|error| CheckError::Decode {
            id,
            op: operation.op.clone(),
            message: error.message,
        })?;
        if let Some((input, output)) = decoded {
            operations.push(ModelOperation {
                process: operation.process,
                call_ns: operation.call_ns,
                return_ns: operation.effective_return_ns(),
                input,
                output,
            });
            ids.push(id);
        }
    }
    let dropped = history.len() - operations.len();
    check_decoded(model, &operations, &ids, dropped, options, &deadline)
}

/// Checks operations already in the model's types; ids in reports are positions in the slice.
pub fn check_operations<M: Model>(
    model: &M,
    operations: &[ModelOperation<M::Input, M::Output>],
    options: &CheckOptions,
) -> Result<CheckResult, CheckError> {
    let deadline = Deadline::from_budget(options.budget);
    let ids: Vec<usize> = (0..operations.len()).collect();
    check_decoded(model, operations, &ids, 0, options, &deadline)
}

/// What one partition's search ended with.
enum PartitionVerdict {
    Ok,
    Illegal(Box<IllegalReport>),
    Stopped,
}

fn check_decoded<M: Model>(
    model: &M,
    operations: &[ModelOperation<M::Input, M::Output>],
    ids: &[usize],
    dropped: usize,
    options: &CheckOptions,
    deadline: &Deadline,
) -> Result<CheckResult, CheckError> {
    for (position, operation) in operations.iter().enumerate() {
        if let Some(return_ns) = operation.return_ns {
            if return_ns < operation.call_ns {
                return Err(CheckError::InvalidTimes {
                    id: ids[position],
                    reason: format!("returns at {return_ns} before its call at {}", operation.call_ns),
                });
            }
        }
    }
    let partitions = model.partition(operations);
    let mut seen = vec![false; operations.len()];
    for &position in partitions.iter().flatten() {
        assert!(
            position < operations.len() && !seen[position],
            "model {} partitioned position {position} twice or out of range (len {})",
            model.name(),
            operations.len()
        );
        seen[position] = true;
    }
    assert!(
        seen.iter().all(|&covered| covered),
        "model {} left operations out of every partition",
        model.name()
    );

    let cancelled = AtomicBool::new(false);
    let stop = StopSignal {
        deadline,
        cancelled: &cancelled,
    };
    let check_one = |partition: &[usize]| -> PartitionVerdict {
        let partition_operations: Vec<&ModelOperation<M::Input, M::Output>> =
            partition.iter().map(|&position| &operations[position]).collect();
        match search::search(model, &partition_operations, &stop) {
            SearchOutcome::Linearizable => PartitionVerdict::Ok,
            SearchOutcome::Stopped => PartitionVerdict::Stopped,
            SearchOutcome::Illegal(failure) => {
                let partition_ids: Vec<usize> = partition.iter().map(|&position| ids[position]).collect();
                PartitionVerdict::Illegal(Box::new(report::build_report(
                    model,
                    &partition_operations,
                    &partition_ids,
                    &failure,
                )))
            }
        }
    };

    let threads = options.threads.max(1).min(partitions.len());
    let outcomes: Vec<PartitionVerdict> = if threads <= 1 {
        let mut outcomes = Vec::new();
        for partition in &partitions {
            let outcome = check_one(partition);
            let done = !matches!(outcome, PartitionVerdict::Ok);
            outcomes.push(outcome);
            if done {
                break;
            }
        }
        outcomes
    } else {
        let next_partition = AtomicUsize::new(0);
        let outcomes = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| loop {
                    let index = next_partition.fetch_add(1, Ordering::Relaxed);
                    if index >= partitions.len() || cancelled.load(Ordering::Relaxed) {
                        return;
                    }
                    let outcome = check_one(&partitions[index]);
                    if matches!(outcome, PartitionVerdict::Illegal(_)) {
                        // The first violation decides the check; the rest need not finish.
                        cancelled.store(true, Ordering::Relaxed);
                    }
                    outcomes
                        .lock()
                        .expect("a checker thread panicked")
                        .push((index, outcome));
                });
            }
        });
        let mut outcomes = outcomes.into_inner().expect("a checker thread panicked");
        outcomes.sort_by_key(|(index, _)| *index);
        outcomes.into_iter().map(|(_, outcome)| outcome).collect()
    };

    let mut verdict = Verdict::Ok;
    for outcome in outcomes {
        match outcome {
            PartitionVerdict::Ok => {}
            PartitionVerdict::Illegal(report) => {
                verdict = Verdict::Illegal(report);
                break;
            }
            PartitionVerdict::Stopped => {
                // A partition stopped by cancellation is covered by the Illegal that caused it.
                if !cancelled.load(Ordering::Relaxed) {
                    verdict = Verdict::Unknown(UnknownReason::BudgetExhausted {
                        budget: deadline.budget().unwrap_or_default(),
                    });
                }
            }
        }
    }
    Ok(CheckResult {
        verdict,
        statistics: CheckStatistics {
            operations: operations.len(),
            dropped,
            partitions: partitions.len(),
            largest_partition: partitions.iter().map(Vec::len).max().unwrap_or(0),
            elapsed: deadline.elapsed(),
        },
    })
}
