//! Proves that breaking a linearizable history flips the verdict: a read made stale, or a
//! read's return moved before the call of the write it observed, must be `Illegal`.

mod support;

use braid_jepsen::{check, CheckOptions, History, Operation, RegisterModel, Status};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use support::register_simulation::{simulate_register, RegisterSimulation};

const HISTORIES: u64 = 300;

fn written_value(operation: &Operation) -> Option<&str> {
    if operation.status != Status::Ok {
        return None;
    }
    match operation.op.as_str() {
        "write" => operation.input["value"].as_str(),
        "cas" => operation.input["to"].as_str(),
        _ => None,
    }
}

fn read_value(operation: &Operation) -> Option<&str> {
    if operation.op == "read" && operation.status == Status::Ok {
        operation.output.as_ref()?["value"].as_str()
    } else {
        None
    }
}

fn key(operation: &Operation) -> &str {
    operation.input["key"].as_str().expect("key")
}

/// A read `r` made to return the value of a write `w1` that a later write `w2` overwrote
/// before `r` was called. Values are unique, so nothing else could have written it.
fn stale_read_mutant(history: &History) -> Option<History> {
    let operations = &history.operations;
    for (read_index, read) in operations.iter().enumerate() {
        if read.op != "read" || read.status != Status::Ok {
            continue;
        }
        for first in operations {
            let (Some(stale_value), Some(first_return)) = (written_value(first), first.return_ns) else {
                continue;
            };
            if key(first) != key(read) || read_value(read) == Some(stale_value) {
                continue;
            }
            let overwritten = operations.iter().any(|second| {
                written_value(second).is_some()
                    && key(second) == key(read)
                    && first_return < second.call_ns
                    && second
                        .return_ns
                        .is_some_and(|second_return| second_return < read.call_ns)
            });
            if overwritten {
                let mut mutant = history.clone();
                mutant.operations[read_index].output = Some(json!({ "value": stale_value }));
                return Some(mutant);
            }
        }
    }
    None
}

/// A read `r` that observed the value of write `w` while overlapping it, with `r`'s return
/// moved to just before `w`'s call.
fn early_return_mutant(history: &History) -> Option<History> {
    let operations = &history.operations;
    for (read_index, read) in operations.iter().enumerate() {
        let Some(value) = read_value(read) else {
            continue;
        };
        // Indeterminate writers are skipped: their value may be read at any later time.
        let Some(writer) = operations
            .iter()
            .find(|operation| written_value(operation) == Some(value) && key(operation) == key(read))
        else {
            continue;
        };
        if read.call_ns < writer.call_ns {
            let mut mutant = history.clone();
            mutant.operations[read_index].return_ns = Some(writer.call_ns - 1);
            return Some(mutant);
        }
    }
    None
}

#[test]
fn mutants_of_linearizable_histories_are_illegal() {
    let model = RegisterModel::new();
    let options = CheckOptions::default();
    let (mut stale_made, mut stale_caught) = (0, 0);
    let (mut early_made, mut early_caught) = (0, 0);
    let mut escaped = Vec::new();
    for seed in 0..HISTORIES {
        let mut rng = SmallRng::seed_from_u64(2_000_000 + seed);
        let simulation = RegisterSimulation {
            processes: rng.gen_range(2..=5),
            operations: rng.gen_range(10..=60),
            keys: rng.gen_range(1..=3),
            value_domain: None,
            info_probability: 0.05,
            ..RegisterSimulation::default()
        };
        let history = simulate_register(&mut rng, &simulation);
        history.validate().expect("simulated histories are well formed");
        let original = check(&model, &history, &options).expect("check");
        assert!(
            original.is_ok(),
            "seed {}: simulated history rejected:\n{}",
            2_000_000 + seed,
            original.verdict
        );

        if let Some(mutant) = stale_read_mutant(&history) {
            stale_made += 1;
            if check(&model, &mutant, &options).expect("check").verdict.is_illegal() {
                stale_caught += 1;
            } else {
                escaped.push(format!("stale read, seed {}", 2_000_000 + seed));
            }
        }
        if let Some(mutant) = early_return_mutant(&history) {
            early_made += 1;
            if check(&model, &mutant, &options).expect("check").verdict.is_illegal() {
                early_caught += 1;
            } else {
                escaped.push(format!("early return, seed {}", 2_000_000 + seed));
            }
        }
    }
    println!(
        "mutants: stale read {stale_caught}/{stale_made}, early return {early_caught}/{early_made}, total {}/{}",
        stale_caught + early_caught,
        stale_made + early_made
    );
    assert!(
        stale_made >= 100 && early_made >= 100,
        "too few mutants: {stale_made} stale, {early_made} early"
    );
    assert!(escaped.is_empty(), "mutants judged linearizable: {escaped:?}");
}
