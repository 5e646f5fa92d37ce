//! Shared test helpers: history builders, simulated registers and stores that produce
//! linearizable histories, and a brute-force linearizability oracle.
#![allow(dead_code)]

pub mod etcd_simulation;
pub mod register_simulation;

use braid_jepsen::{History, Model, ModelOperation, Operation, Status, Step};
use serde_json::Value;

/// Builds a history by hand: `operation(process, op, input, output, call, return, status)`.
pub fn operation(
    process: u64,
    op: &str,
    input: Value,
    output: Option<Value>,
    call_ns: u64,
    return_ns: Option<u64>,
    status: Status,
) -> Operation {
    Operation {
        process,
        op: op.to_owned(),
        input,
        output,
        call_ns,
        return_ns,
        status,
    }
}

/// A history from a list of operations.
pub fn history(operations: Vec<Operation>) -> History {
    History { operations }
}

/// Decodes a history with `model`, keeping the operations the model keeps.
pub fn decode<M: Model>(model: &M, history: &History) -> Vec<ModelOperation<M::Input, M::Output>> {
    history
        .operations
        .iter()
        .filter_map(|operation| {
            model
                .decode(operation)
                .expect("decode")
                .map(|(input, output)| ModelOperation {
                    process: operation.process,
                    call_ns: operation.call_ns,
                    return_ns: operation.effective_return_ns(),
                    input,
                    output,
                })
        })
        .collect()
}

/// The brute-force oracle: tries every order of the operations that respects real time
/// (an operation may go next only if no unplaced operation returned before its call) and
/// answers whether one of them is legal under `step`, which returns all successor states.
/// No memoisation and no cleverness, so it shares nothing with the checker but the semantics.
pub fn brute_force_linearizable<Operation, State: Clone>(
    times: &[(u64, Option<u64>)],
    operations: &[Operation],
    initial: State,
    step: &dyn Fn(&State, &Operation) -> Vec<State>,
) -> bool {
    let mut placed = vec![false; operations.len()];
    place_rest(times, operations, &mut placed, &initial, step)
}

fn place_rest<Operation, State: Clone>(
    times: &[(u64, Option<u64>)],
    operations: &[Operation],
    placed: &mut [bool],
    state: &State,
    step: &dyn Fn(&State, &Operation) -> Vec<State>,
) -> bool {
    if placed.iter().all(|&is_placed| is_placed) {
        return true;
    }
    for candidate in 0..operations.len() {
        if placed[candidate] {
            continue;
        }
        let (call_ns, _) = times[candidate];
        let must_wait = (0..operations.len()).any(|other| {
            other != candidate && !placed[other] && times[other].1.is_some_and(|return_ns| return_ns < call_ns)
        });
        if must_wait {
            continue;
        }
        for next_state in step(state, &operations[candidate]) {
            placed[candidate] = true;
            let found = place_rest(times, operations, placed, &next_state, step);
            placed[candidate] = false;
            if found {
                return true;
            }
        }
    }
    false
}

/// The brute-force oracle over a model's own step function (whole history, no partitions).
pub fn brute_force_with_model<M: Model>(model: &M, operations: &[ModelOperation<M::Input, M::Output>]) -> bool {
    let times: Vec<(u64, Option<u64>)> = operations
        .iter()
        .map(|operation| (operation.call_ns, operation.return_ns))
        .collect();
    let step = |state: &M::State, operation: &ModelOperation<M::Input, M::Output>| match model.step(
        state,
        &operation.input,
        &operation.output,
    ) {
        Step::Illegal => Vec::new(),
        Step::Legal(next) => vec![next],
        Step::Forked(states) => states,
    };
    brute_force_linearizable(&times, operations, model.init(), &step)
}
