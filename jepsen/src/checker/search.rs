//! The search over one partition: Wing & Gong's algorithm with Lowe's memoisation.
//!
//! The history is a doubly linked list of call and return entries sorted by time (at equal
//! times calls come first, so operations that touch count as concurrent). Walking from the
//! head, at a call we try to linearize that operation now: if the model accepts it and the
//! configuration (set of linearized operations, new state) is not known to fail, we push a
//! frame, *lift* the call and its return out of the list and restart from the head. Reaching a
//! return means its operation should have been linearized already: the configuration is
//! stuck, so we pop the last frame, *unlift* it (removed entries still point at their old
//! neighbours, so reinsertion is O(1) when done in reverse order) and continue after that
//! call. An empty stack at a return means no linearization exists.
//!
//! Non-deterministic steps add a choice point: the frame keeps the successor states not yet
//! tried, and backtracking tries them before moving on to the next call.
//!
//! **Deferrable operations** are open-ended (return +∞) and always legal by the model's word
//! (indeterminate writes). They live in a second list holding only their calls, and are:
//! - *optional*: one can always go last, so the search succeeds once every other operation is
//!   placed;
//! - *tried last*: a configuration tries its other candidates first, then the deferrable ones
//!   called before its first pending return.
//!
//! **Memoisation with subsumption.** A configuration that is popped has been explored in full
//! and failed; we remember it, and prune any configuration with the same state and the same
//! non-deferrable operations placed whose deferrable operations are a superset. Proof: if
//! (L + D, s) had a completion, (L, s) would too: run the same completion (D, open-ended,
//! constrains nothing) and leave D out. Without deferrable operations this is Lowe's cache
//! (a configuration still on the stack cannot repeat: the placed set grows along a path).
//!
//! **Skipped placements of a deferrable operation `d`** (each sound by the same argument):
//! - *no-op*: `d` leaves the state unchanged. The result has the current configuration's state
//!   and more placed, so the current configuration's own exploration covers it.
//! - *redundant chain*: `d` comes right after another deferrable `d0` (configuration X, reached
//!   from P) and placing `d` at P instead reaches the same state. That sibling, with `d0`
//!   unplaced, dominates, and P explores it. X's exploration is then incomplete, so X is not
//!   remembered as failed ("tainted"); P's is complete. Without this, a stuck configuration
//!   would try every subset of its pending indeterminate writes.
//! - *dead ends*: when the model says none of the other candidates can become legal whatever
//!   indeterminate operations run first (in M-etcd: they report a revision already passed),
//!   the deferrable candidates are not tried at all.
//! - *symmetry*: equal deferrable operations (same input and output) are interchangeable once
//!   both are called, so they are placed in call order.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::checker::memo::{Bits, FailedConfigurations, Linearized};
use crate::deadline::Deadline;
use crate::model::{Model, ModelOperation, Step};

/// When a search must stop early.
pub(crate) struct StopSignal<'a> {
    pub deadline: &'a Deadline,
    /// Set by another partition that found a violation.
    pub cancelled: &'a AtomicBool,
}

impl StopSignal<'_> {
    fn should_stop(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || self.deadline.is_expired()
    }
}

/// What the search found, in positions of the partition's operation list.
pub(crate) enum SearchOutcome<State> {
    Linearizable,
    Illegal(Failure<State>),
    /// Stopped by the deadline or by cancellation.
    Stopped,
}

/// The deepest point the search reached before it had to give up on an operation.
pub(crate) struct Failure<State> {
    /// The longest partial linearization, in order.
    pub linearized: Vec<usize>,
    /// The model state after `linearized`.
    pub state: State,
    /// The operation whose return came before it could be placed.
    pub unplaceable: usize,
    /// Operations called before that return and not linearized: the candidates that were tried
    /// next and did not fit (`unplaceable` is among them).
    pub pending: Vec<usize>,
}

/// Marks the end of a list (no next entry).
const NONE: usize = usize::MAX;
/// Node 0 heads the main list (calls and returns of non-deferrable operations); nodes 1..=2n
/// are entries, numbered in time order; node 2n+1 heads the list of deferrable calls.
const HEAD: usize = 0;
/// How many loop turns between two looks at the clock.
const STOP_CHECK_INTERVAL: u64 = 1024;

/// Checks one partition.
pub(crate) fn search<M: Model>(
    model: &M,
    operations: &[&ModelOperation<M::Input, M::Output>],
    stop: &StopSignal<'_>,
) -> SearchOutcome<M::State> {
    Search::new(model, operations).run(stop)
}

/// Where the walk is: among the non-deferrable candidates, or among the deferrable ones called
/// before `blocking_return` (the first pending return of the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Fixed,
    Deferrable { blocking_return: usize },
}

struct Frame<State> {
    call_node: usize,
    operation: usize,
    previous_state: State,
    /// The phase the parent configuration was in when it placed this operation.
    phase: Phase,
    /// This frame's untried successor states are `alternatives[alternatives_start..]` minus
    /// whatever frames above it pushed.
    alternatives_start: usize,
    /// A child of this configuration was skipped as a redundant chain, so its failure is not
    /// a proof and must not be remembered.
    tainted: bool,
}

struct Search<'a, M: Model> {
    model: &'a M,
    operations: &'a [&'a ModelOperation<M::Input, M::Output>],
    next: Vec<usize>,
    previous: Vec<usize>,
    deferrable_head: usize,
    /// For each node: the operation it belongs to.
    node_operation: Vec<usize>,
    /// For each node: true for a call, false for a return.
    node_is_call: Vec<bool>,
    /// For each operation: its return node (unused for deferrable operations).
    return_node: Vec<usize>,
    /// For each operation: open-ended and always legal.
    deferrable: Vec<bool>,
    /// For each operation: its bit in `linearized.fixed` or `linearized.deferrable`.
    bit: Vec<usize>,
    /// For each deferrable operation: the previously called equal one, placed first.
    deferrable_predecessor: Vec<Option<usize>>,
    linearized: Linearized,
    /// Non-deferrable operations not yet linearized; the search succeeds at zero.
    fixed_remaining: usize,
    failed: FailedConfigurations<M::State>,
    frames: Vec<Frame<M::State>>,
    /// Successor states of non-deterministic steps, used as a stack shared by all frames.
    alternatives: Vec<M::State>,
    state: M::State,
    deepest: Option<Failure<M::State>>,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(model: &'a M, operations: &'a [&'a ModelOperation<M::Input, M::Output>]) -> Self {
        let count = operations.len();
        let deferrable: Vec<bool> = operations
            .iter()
            .map(|operation| {
                operation.return_ns.is_none() && model.is_always_legal(&operation.input, &operation.output)
            })
            .collect();
        // Sort key: finite times first, then time, then calls before returns.
        let mut events: Vec<(bool, u64, bool, usize)> = Vec::with_capacity(2 * count);
        for (index, operation) in operations.iter().enumerate() {
            events.push((false, operation.call_ns, false, index));
            match operation.return_ns {
                Some(return_ns) => {
                    assert!(
                        return_ns >= operation.call_ns,
                        "operation {index} returns at {return_ns} before its call at {}",
                        operation.call_ns
                    );
                    events.push((false, return_ns, true, index));
                }
                None => events.push((true, u64::MAX, true, index)),
            }
        }
        events.sort_unstable();

        let deferrable_head = 2 * count + 1;
        let node_count = deferrable_head + 1;
        let mut node_operation = vec![NONE; node_count];
        let mut node_is_call = vec![false; node_count];
        let mut return_node = vec![NONE; count];
        let mut next = vec![NONE; node_count];
        let mut previous = vec![NONE; node_count];
        let (mut main_tail, mut deferrable_tail) = (HEAD, deferrable_head);
        for (position, &(_, _, is_return, operation)) in events.iter().enumerate() {
            let node = position + 1;
            node_operation[node] = operation;
            node_is_call[node] = !is_return;
            if is_return {
                return_node[operation] = node;
            }
            let tail = if !deferrable[operation] {
                &mut main_tail
            } else if !is_return {
                &mut deferrable_tail
            } else {
                // A deferrable operation's return forces nothing: it is in no list.
                continue;
            };
            next[*tail] = node;
            previous[node] = *tail;
            *tail = node;
        }

        let mut counts = [0usize; 2];
        let bit = deferrable
            .iter()
            .map(|&is_deferrable| {
                let counter = &mut counts[usize::from(is_deferrable)];
                *counter += 1;
                *counter - 1
            })
            .collect();

        let mut deferrable_predecessor = vec![None; count];
        // Per kind of deferrable operation: (a representative, the latest called so far).
        let mut kinds: Vec<(usize, usize)> = Vec::new();
        for &(_, _, is_return, operation) in &events {
            if is_return || !deferrable[operation] {
                continue;
            }
            let candidate = operations[operation];
            let kind = kinds.iter_mut().find(|(representative, _)| {
                let representative = operations[*representative];
                representative.input == candidate.input && representative.output == candidate.output
            });
            match kind {
                Some((_, latest)) => {
                    deferrable_predecessor[operation] = Some(*latest);
                    *latest = operation;
                }
                None => kinds.push((operation, operation)),
            }
        }

        Search {
            model,
            operations,
            next,
            previous,
            deferrable_head,
            node_operation,
            node_is_call,
            return_node,
            deferrable,
            bit,
            deferrable_predecessor,
            linearized: Linearized {
                fixed: Bits::new(counts[0], 0),
                deferrable: Bits::new(counts[1], 1),
            },
            fixed_remaining: counts[0],
            failed: FailedConfigurations::default(),
            frames: Vec::new(),
            alternatives: Vec::new(),
            state: model.init(),
            deepest: None,
        }
    }

    fn run(mut self, stop: &StopSignal<'_>) -> SearchOutcome<M::State> {
        let mut node = self.next[HEAD];
        let mut phase = Phase::Fixed;
        let mut turns: u64 = 0;
        loop {
            if self.fixed_remaining == 0 {
                return SearchOutcome::Linearizable;
            }
            turns += 1;
            if turns % STOP_CHECK_INTERVAL == 0 && stop.should_stop() {
                return SearchOutcome::Stopped;
            }
            let blocking_return = match phase {
                Phase::Fixed => {
                    assert!(node != NONE, "a non-deferrable operation is pending, so is its return");
                    if self.node_is_call[node] {
                        None
                    } else if self.deferrable_phase_may_help(node) {
                        // Every non-deferrable candidate failed: now the deferrable ones.
                        phase = Phase::Deferrable { blocking_return: node };
                        node = self.next[self.deferrable_head];
                        continue;
                    } else {
                        Some(node)
                    }
                }
                Phase::Deferrable { blocking_return } => {
                    // Node numbers follow time order, so "called before the return" is `<`.
                    if node == NONE || node > blocking_return {
                        Some(blocking_return)
                    } else {
                        None
                    }
                }
            };
            if let Some(blocking_return) = blocking_return {
                // Stuck: the operation returning here cannot be placed in this configuration.
                match self.backtrack(blocking_return) {
                    Some((resume_node, resume_phase)) => {
                        node = resume_node;
                        phase = resume_phase;
                    }
                    None => {
                        let failure = self
                            .deepest
                            .take()
                            .expect("a failure is recorded before the stack runs out");
                        return SearchOutcome::Illegal(failure);
                    }
                }
                continue;
            }

            let operation = self.node_operation[node];
            if self.waits_for_predecessor(operation) {
                node = self.next[node];
                continue;
            }
            let alternatives_start = self.alternatives.len();
            let input = &self.operations[operation].input;
            let output = &self.operations[operation].output;
            match self.model.step(&self.state, input, output) {
                Step::Illegal => {}
                Step::Legal(next_state) => self.alternatives.push(next_state),
                // Reversed so that popping tries them in the model's order.
                Step::Forked(states) => self.alternatives.extend(states.into_iter().rev()),
            }
            if self.deferrable[operation] && self.alternatives.len() > alternatives_start {
                self.drop_skippable_placements(operation, alternatives_start);
            }
            if self.try_alternatives(node, operation, phase, alternatives_start) {
                node = self.next[HEAD];
                phase = Phase::Fixed;
            } else {
                node = self.next[node];
            }
        }
    }

    /// False when no deferrable operation is pending before `blocking_return`, or when the
    /// model says no non-deferrable candidate can become legal whatever deferrable operations
    /// come first: a completion would have to place one of those candidates first, so the
    /// configuration is a dead end (and a genuine failure).
    fn deferrable_phase_may_help(&self, blocking_return: usize) -> bool {
        let first_deferrable = self.next[self.deferrable_head];
        if first_deferrable == NONE || first_deferrable > blocking_return {
            return false;
        }
        let mut node = self.next[HEAD];
        while node != blocking_return {
            let operation = self.operations[self.node_operation[node]];
            if self.node_is_call[node]
                && !self
                    .model
                    .cannot_become_legal(&self.state, &operation.input, &operation.output)
            {
                return true;
            }
            node = self.next[node];
        }
        false
    }

    /// Pops frames until one can try another successor state or continue its walk; returns
    /// where to resume, or `None` when the stack is empty.
    fn backtrack(&mut self, blocking_return: usize) -> Option<(usize, Phase)> {
        self.maybe_record_deepest(blocking_return);
        let frame = self.frames.pop()?;
        if !frame.tainted {
            self.failed.insert(&self.linearized, &self.state);
        }
        self.state = frame.previous_state;
        self.clear(frame.operation);
        self.unlift(frame.call_node);
        if self.try_alternatives(frame.call_node, frame.operation, frame.phase, frame.alternatives_start) {
            Some((self.next[HEAD], Phase::Fixed))
        } else {
            Some((self.next[frame.call_node], frame.phase))
        }
    }

    /// Removes, from the successor states of deferrable `operation` (in
    /// `alternatives[alternatives_start..]`), the no-op placements and the redundant chains
    /// (see the module doc).
    fn drop_skippable_placements(&mut self, operation: usize, alternatives_start: usize) {
        // The redundant-chain test applies after another deferrable operation, provided
        // `operation` was a candidate at the parent too (not waiting for it as its equal
        // predecessor).
        let from_parent = match self.frames.last() {
            Some(top)
                if self.deferrable[top.operation] && self.deferrable_predecessor[operation] != Some(top.operation) =>
            {
                let input = &self.operations[operation].input;
                let output = &self.operations[operation].output;
                Some(self.model.step(&top.previous_state, input, output))
            }
            _ => None,
        };
        let mut tainted = false;
        let mut index = alternatives_start;
        while index < self.alternatives.len() {
            let candidate = &self.alternatives[index];
            let no_op = *candidate == self.state;
            let redundant = match &from_parent {
                Some(Step::Legal(state)) => state == candidate,
                Some(Step::Forked(states)) => states.contains(candidate),
                Some(Step::Illegal) | None => false,
            };
            if no_op || redundant {
                tainted |= !no_op;
                self.alternatives.remove(index);
            } else {
                index += 1;
            }
        }
        if tainted {
            self.frames
                .last_mut()
                .expect("a redundant chain has a parent frame")
                .tainted = true;
        }
    }

    fn waits_for_predecessor(&self, operation: usize) -> bool {
        self.deferrable_predecessor[operation]
            .is_some_and(|predecessor| !self.linearized.deferrable.contains(self.bit[predecessor]))
    }

    fn set(&mut self, operation: usize) {
        let bit = self.bit[operation];
        if self.deferrable[operation] {
            self.linearized.deferrable.set(bit);
        } else {
            self.linearized.fixed.set(bit);
            self.fixed_remaining -= 1;
        }
    }

    fn clear(&mut self, operation: usize) {
        let bit = self.bit[operation];
        if self.deferrable[operation] {
            self.linearized.deferrable.clear(bit);
        } else {
            self.linearized.fixed.clear(bit);
            self.fixed_remaining += 1;
        }
    }

    /// Linearizes `operation` with the first untried successor state that leads to a
    /// configuration not known to fail.
    fn try_alternatives(
        &mut self,
        call_node: usize,
        operation: usize,
        phase: Phase,
        alternatives_start: usize,
    ) -> bool {
        while self.alternatives.len() > alternatives_start {
            let candidate = self.alternatives.pop().expect("length checked by the loop condition");
            self.set(operation);
            if !self.failed.subsumes(&self.linearized, &candidate) {
                let previous_state = std::mem::replace(&mut self.state, candidate);
                self.frames.push(Frame {
                    call_node,
                    operation,
                    previous_state,
                    phase,
                    alternatives_start,
                    tainted: false,
                });
                self.lift(call_node);
                return true;
            }
            self.clear(operation);
        }
        false
    }

    fn maybe_record_deepest(&mut self, blocking_return: usize) {
        let depth = self.frames.len();
        if let Some(deepest) = &self.deepest {
            if deepest.linearized.len() >= depth {
                return;
            }
        }
        let mut pending = Vec::new();
        for head in [HEAD, self.deferrable_head] {
            let mut node = self.next[head];
            while node != NONE && node < blocking_return {
                if self.node_is_call[node] {
                    pending.push(self.node_operation[node]);
                }
                node = self.next[node];
            }
        }
        self.deepest = Some(Failure {
            linearized: self.frames.iter().map(|frame| frame.operation).collect(),
            state: self.state.clone(),
            unplaceable: self.node_operation[blocking_return],
            pending,
        });
    }

    fn unlink(&mut self, node: usize) {
        let (previous, next) = (self.previous[node], self.next[node]);
        self.next[previous] = next;
        if next != NONE {
            self.previous[next] = previous;
        }
    }

    fn relink(&mut self, node: usize) {
        let (previous, next) = (self.previous[node], self.next[node]);
        self.next[previous] = node;
        if next != NONE {
            self.previous[next] = node;
        }
    }

    fn lift(&mut self, call_node: usize) {
        let operation = self.node_operation[call_node];
        self.unlink(call_node);
        if !self.deferrable[operation] {
            self.unlink(self.return_node[operation]);
        }
    }

    /// Exactly reverses `lift`: the return goes back first.
    fn unlift(&mut self, call_node: usize) {
        let operation = self.node_operation[call_node];
        if !self.deferrable[operation] {
            self.relink(self.return_node[operation]);
        }
        self.relink(call_node);
    }
}
