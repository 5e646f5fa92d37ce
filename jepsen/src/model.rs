//! The sequential specification a history is checked against.
//!
//! A model turns recorded operations into typed inputs and outputs, may split a history into
//! independent parts (P-compositionality: a history is linearizable iff each part is), and
//! steps a state through one operation. The checker never looks inside inputs, outputs or
//! states except through this trait.

use std::fmt::{self, Debug};
use std::hash::Hash;

use crate::history::Operation;

/// An operation as the checker sees it: times plus the model's typed input and output.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelOperation<Input, Output> {
    /// The client process (used only in reports).
    pub process: u64,
    /// When the request was sent.
    pub call_ns: u64,
    /// When the response arrived; `None` means +∞ (indeterminate or never answered).
    pub return_ns: Option<u64>,
    /// The request.
    pub input: Input,
    /// The response, or the model's "unknown" output for indeterminate operations.
    pub output: Output,
}

/// A decoded operation: its input and output, or `None` when the model drops it.
pub type Decoded<Input, Output> = Option<(Input, Output)>;

/// The result of applying one operation to one state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step<State> {
    /// The output cannot have come from this state.
    Illegal,
    /// The operation is legal here and leads to this state.
    Legal(State),
    /// The operation is legal here and may lead to any of these states (a non-deterministic
    /// step, e.g. an indeterminate write that was or was not applied). Empty means illegal.
    Forked(Vec<State>),
}

/// Why a recorded operation does not fit a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// What was wrong, for a human.
    pub message: String,
}

impl DecodeError {
    /// A decode error with this message.
    pub fn new(message: impl Into<String>) -> DecodeError {
        DecodeError {
            message: message.into(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}

/// A sequential specification.
///
/// `Sync` because partitions may be checked on several threads at once.
pub trait Model: Sync {
    /// A request, decoded from an operation's `op` and `input`.
    type Input: Debug + PartialEq + Send + Sync;
    /// A response, decoded from an operation's `output` and `status`; includes "unknown".
    type Output: Debug + PartialEq + Send + Sync;
    /// The abstract state. `Eq + Hash` because the checker memoises (linearized set, state).
    type State: Clone + Eq + Hash + Debug + Send;

    /// A short name for reports and the command line.
    fn name(&self) -> &'static str;

    /// Decodes a recorded operation. `Ok(None)` drops it: it cannot have changed the state and
    /// tells nothing (a read that errored, a write rejected before it took effect).
    fn decode(&self, operation: &Operation) -> Result<Decoded<Self::Input, Self::Output>, DecodeError>;

    /// Splits the operations into independent sub-histories, as lists of positions in
    /// `operations`. Every position must appear in exactly one part. The default keeps the
    /// history whole.
    fn partition(&self, operations: &[ModelOperation<Self::Input, Self::Output>]) -> Vec<Vec<usize>> {
        vec![(0..operations.len()).collect()]
    }

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Applies `input` with the observed `output` to `state`.
    fn step(&self, state: &Self::State, input: &Self::Input, output: &Self::Output) -> Step<Self::State>;

    /// True when this operation is legal in every state (an indeterminate write: applied or
    /// not). For such an operation left open-ended, a linearization can always place it last,
    /// which lets the checker try it after the others and prune by subsumption. A model that
    /// answers true wrongly makes the checker unsound, so the default is false.
    fn is_always_legal(&self, input: &Self::Input, output: &Self::Output) -> bool {
        let _ = (input, output);
        false
    }

    /// True only when this operation is illegal in `state` and stays illegal after any
    /// sequence of always-legal operations (those `is_always_legal` accepts), e.g. a response
    /// whose revision the state has already passed. Lets the checker skip trying pending
    /// indeterminate operations at a dead end. Answering false is always safe (the default);
    /// answering true wrongly makes the checker unsound.
    fn cannot_become_legal(&self, state: &Self::State, input: &Self::Input, output: &Self::Output) -> bool {
        let _ = (state, input, output);
        false
    }

    /// One line describing an operation, e.g. `cas(x, 1 -> 2) = fail`.
    fn describe_operation(&self, input: &Self::Input, output: &Self::Output) -> String;

    /// One line describing a state.
    fn describe_state(&self, state: &Self::State) -> String;

    /// A label for a partition (e.g. its key), given its first operation.
    fn describe_partition(&self, first: &Self::Input) -> String {
        let _ = first;
        String::from("whole history")
    }
}
