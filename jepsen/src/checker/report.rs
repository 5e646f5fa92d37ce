//! What the checker says about a history that is not linearizable: the longest partial
//! linearization it found, the operation that could not be placed, and a timeline of the
//! window around it.

use std::fmt;

use crate::checker::search::Failure;
use crate::model::{Model, ModelOperation, Step};

/// How many operations of the partial linearization the text shows (the last ones).
const LINEARIZATION_SHOWN: usize = 12;
/// How many operations the timeline shows at most.
const TIMELINE_OPERATIONS_MAX: usize = 40;
/// Width of the timeline's bars, in characters.
const TIMELINE_WIDTH: usize = 48;

/// One operation as a report shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportOperation {
    /// Position in the checked history (or in the slice given to `check_operations`).
    pub id: usize,
    /// The client process.
    pub process: u64,
    /// Call time.
    pub call_ns: u64,
    /// Return time; `None` is +∞.
    pub return_ns: Option<u64>,
    /// The model's description, e.g. `read(x) = 3`.
    pub description: String,
}

/// A candidate the search tried at its deepest point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingOperation {
    /// The operation.
    pub operation: ReportOperation,
    /// Whether the model accepts it in the state after the partial linearization. If it does,
    /// every continuation after it failed (or was already explored).
    pub legal_in_state: bool,
}

/// Why a partition is not linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IllegalReport {
    /// The model's name.
    pub model: &'static str,
    /// Which partition (e.g. the key).
    pub partition: String,
    /// Operations in that partition.
    pub partition_operations: usize,
    /// The longest partial linearization found, in order.
    pub linearized: Vec<ReportOperation>,
    /// The model state after it.
    pub state: String,
    /// The operation whose return came before it could be placed.
    pub unplaceable: ReportOperation,
    /// Operations called before that return and not linearized, with their fate.
    pub pending: Vec<PendingOperation>,
    /// A text timeline of the window around the failure.
    pub timeline: String,
}

pub(crate) fn build_report<M: Model>(
    model: &M,
    operations: &[&ModelOperation<M::Input, M::Output>],
    ids: &[usize],
    failure: &Failure<M::State>,
) -> IllegalReport {
    let describe = |position: usize| {
        let operation = operations[position];
        ReportOperation {
            id: ids[position],
            process: operation.process,
            call_ns: operation.call_ns,
            return_ns: operation.return_ns,
            description: model.describe_operation(&operation.input, &operation.output),
        }
    };
    let pending = failure
        .pending
        .iter()
        .map(|&position| {
            let operation = operations[position];
            let legal_in_state = match model.step(&failure.state, &operation.input, &operation.output) {
                Step::Illegal => false,
                Step::Legal(_) => true,
                Step::Forked(states) => !states.is_empty(),
            };
            PendingOperation {
                operation: describe(position),
                legal_in_state,
            }
        })
        .collect();
    let partition = match operations.first() {
        Some(first) => model.describe_partition(&first.input),
        None => String::from("empty"),
    };
    IllegalReport {
        model: model.name(),
        partition,
        partition_operations: operations.len(),
        linearized: failure.linearized.iter().map(|&p| describe(p)).collect(),
        state: model.describe_state(&failure.state),
        unplaceable: describe(failure.unplaceable),
        pending,
        timeline: timeline(model, operations, ids, failure),
    }
}

fn format_return(return_ns: Option<u64>) -> String {
    match return_ns {
        Some(return_ns) => return_ns.to_string(),
        None => String::from("∞"),
    }
}

fn timeline<M: Model>(
    model: &M,
    operations: &[&ModelOperation<M::Input, M::Output>],
    ids: &[usize],
    failure: &Failure<M::State>,
) -> String {
    let unplaceable = operations[failure.unplaceable];
    // The window runs from the earliest call among the candidates and the last few linearized
    // operations to the return that could not be met.
    let recent = failure.linearized.iter().rev().take(4).chain(failure.pending.iter());
    let window_start = recent
        .map(|&position| operations[position].call_ns)
        .min()
        .unwrap_or(unplaceable.call_ns);
    let window_end = unplaceable
        .return_ns
        .unwrap_or(unplaceable.call_ns)
        .max(window_start + 1);

    let mut shown: Vec<usize> = (0..operations.len())
        .filter(|&position| {
            let operation = operations[position];
            let ends_after_start = operation.return_ns.is_none_or(|return_ns| return_ns >= window_start);
            operation.call_ns <= window_end && ends_after_start
        })
        .collect();
    shown.sort_by_key(|&position| (operations[position].call_ns, position));
    if shown.len() > TIMELINE_OPERATIONS_MAX {
        // Keep the operations closest to the one that failed.
        let centre = shown
            .iter()
            .position(|&position| position == failure.unplaceable)
            .unwrap_or(shown.len() / 2);
        let first = centre
            .saturating_sub(TIMELINE_OPERATIONS_MAX / 2)
            .min(shown.len() - TIMELINE_OPERATIONS_MAX);
        shown = shown[first..first + TIMELINE_OPERATIONS_MAX].to_vec();
    }

    // Stretch the window to the last finite return shown, so '>' only ever means open-ended.
    let window_end = shown
        .iter()
        .filter_map(|&position| operations[position].return_ns)
        .fold(window_end, u64::max);
    let span = window_end - window_start;
    let column = |time_ns: u64| -> usize {
        let clamped = time_ns.clamp(window_start, window_end) - window_start;
        ((u128::from(clamped) * (TIMELINE_WIDTH as u128 - 1)) / u128::from(span)) as usize
    };
    let mut text = format!(
        "window {window_start}..{window_end} ns ('<' called earlier, '>' open-ended), {} operations shown\n",
        shown.len()
    );
    for position in shown {
        let operation = operations[position];
        let start = column(operation.call_ns);
        let end = operation.return_ns.map_or(TIMELINE_WIDTH - 1, &column);
        let mut bar = vec![' '; TIMELINE_WIDTH];
        for cell in bar.iter_mut().take(end + 1).skip(start) {
            *cell = '-';
        }
        bar[start] = if operation.call_ns < window_start { '<' } else { '[' };
        bar[end] = if operation.return_ns.is_none() { '>' } else { ']' };
        let bar: String = bar.into_iter().collect();
        let mark = if position == failure.unplaceable {
            String::from("  <- cannot be placed")
        } else if let Some(order) = failure.linearized.iter().position(|&p| p == position) {
            format!("  (linearized {})", order + 1)
        } else if failure.pending.contains(&position) {
            String::from("  (candidate)")
        } else {
            String::new()
        };
        text.push_str(&format!(
            "  |{bar}| #{:<6} p{:<4} {}{mark}\n",
            ids[position],
            operation.process,
            model.describe_operation(&operation.input, &operation.output),
        ));
    }
    text
}

impl fmt::Display for ReportOperation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "#{} p{} {} [{} .. {}]",
            self.id,
            self.process,
            self.description,
            self.call_ns,
            format_return(self.return_ns)
        )
    }
}

impl fmt::Display for IllegalReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            formatter,
            "not linearizable: model {}, partition {}, {} operations",
            self.model, self.partition, self.partition_operations
        )?;
        let skipped = self.linearized.len().saturating_sub(LINEARIZATION_SHOWN);
        writeln!(
            formatter,
            "longest partial linearization: {} operations{}",
            self.linearized.len(),
            if skipped > 0 {
                format!(" (first {skipped} not shown)")
            } else {
                String::new()
            }
        )?;
        for (order, operation) in self.linearized.iter().enumerate().skip(skipped) {
            writeln!(formatter, "  {:>5}. {operation}", order + 1)?;
        }
        writeln!(formatter, "state after it: {}", self.state)?;
        writeln!(formatter, "cannot place before its return: {}", self.unplaceable)?;
        writeln!(formatter, "candidates at that point:")?;
        for pending in &self.pending {
            let fate = if pending.legal_in_state {
                "legal here, but no continuation works"
            } else {
                "illegal in this state"
            };
            writeln!(formatter, "  {}: {fate}", pending.operation)?;
        }
        write!(formatter, "timeline:\n{}", self.timeline)
    }
}
