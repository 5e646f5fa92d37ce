//! Proves the checker agrees with a brute-force permutation oracle on hundreds of random small
//! histories, for the register model (against independent register semantics) and the etcd
//! model (against the model's own step, so this tests the search).

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use braid_jepsen::models::register::{RegisterInput, RegisterOutput};
use braid_jepsen::{check, CheckOptions, EtcdModel, Model, RegisterModel};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use support::etcd_simulation::{corrupt_etcd_history, simulate_etcd, EtcdSimulation};
use support::register_simulation::{corrupt_register_history, simulate_register, RegisterSimulation};

const REGISTER_SEEDS: u64 = 3000;
const ETCD_SEEDS: u64 = 1500;
const REVISION_SEEDS: u64 = 1500;

type Registers = BTreeMap<String, Option<Arc<str>>>;

/// Register semantics written independently of `RegisterModel::step`. An indeterminate write
/// or cas forks: it took effect or it did not.
fn reference_register_step(state: &Registers, operation: &(RegisterInput, RegisterOutput)) -> Vec<Registers> {
    let (input, output) = operation;
    let current = state.get(input.key()).cloned().flatten();
    let with = |value: &Arc<str>| {
        let mut next = state.clone();
        next.insert(input.key().to_owned(), Some(Arc::clone(value)));
        next
    };
    match (input, output) {
        (RegisterInput::Read { .. }, RegisterOutput::Read { value, .. }) => {
            if *value == current {
                vec![state.clone()]
            } else {
                vec![]
            }
        }
        (RegisterInput::Write { value, .. }, RegisterOutput::Written { .. }) => vec![with(value)],
        (RegisterInput::Write { value, .. }, RegisterOutput::Unknown) => {
            vec![with(value), state.clone()]
        }
        (RegisterInput::Cas { from, to, .. }, RegisterOutput::Written { .. }) => {
            if current.as_ref() == Some(from) {
                vec![with(to)]
            } else {
                vec![]
            }
        }
        (RegisterInput::Cas { from, .. }, RegisterOutput::CasFailed) => {
            if current.as_ref() == Some(from) {
                vec![]
            } else {
                vec![state.clone()]
            }
        }
        (RegisterInput::Cas { from, to, .. }, RegisterOutput::Unknown) => {
            if current.as_ref() == Some(from) {
                vec![with(to), state.clone()]
            } else {
                vec![state.clone()]
            }
        }
        other => panic!("unexpected pair {other:?}"),
    }
}

#[test]
fn register_checker_matches_brute_force() {
    let model = RegisterModel::new();
    let mut disagreements = Vec::new();
    let (mut linearizable, mut illegal) = (0, 0);
    for seed in 0..REGISTER_SEEDS {
        let mut rng = SmallRng::seed_from_u64(seed);
        let simulation = RegisterSimulation {
            processes: rng.gen_range(2..=4),
            operations: rng.gen_range(1..=12),
            keys: rng.gen_range(1..=2),
            value_domain: Some(3),
            info_probability: rng.gen_range(0.0..0.5),
            ..RegisterSimulation::default()
        };
        let mut history = simulate_register(&mut rng, &simulation);
        if rng.gen_bool(0.6) {
            corrupt_register_history(&mut rng, &mut history, 0.3, 3);
        }
        let operations = support::decode(&model, &history);
        let times: Vec<(u64, Option<u64>)> = operations
            .iter()
            .map(|operation| (operation.call_ns, operation.return_ns))
            .collect();
        let pairs: Vec<(RegisterInput, RegisterOutput)> = operations
            .iter()
            .map(|operation| (operation.input.clone(), operation.output.clone()))
            .collect();
        let oracle = support::brute_force_linearizable(&times, &pairs, Registers::new(), &reference_register_step);
        let verdict = check(&model, &history, &CheckOptions::default())
            .expect("check")
            .verdict;
        assert!(!verdict.is_unknown(), "seed {seed}: no budget was set");
        if oracle {
            linearizable += 1
        } else {
            illegal += 1
        }
        if verdict.is_ok() != oracle {
            disagreements.push(format!(
                "seed {seed}: oracle {oracle}, checker {}\n{}",
                verdict.label(),
                history.to_jsonl_string()
            ));
        }
    }
    println!(
        "register differential: {REGISTER_SEEDS} histories (seeds 0..{REGISTER_SEEDS}), {linearizable} linearizable, {illegal} not, {} disagreements",
        disagreements.len()
    );
    assert!(
        linearizable > 100 && illegal > 100,
        "the generator should produce both verdicts"
    );
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[test]
fn revision_aware_register_checker_matches_brute_force() {
    let model = RegisterModel::revision_aware();
    let mut disagreements = Vec::new();
    let (mut linearizable, mut illegal) = (0, 0);
    for seed in 0..REVISION_SEEDS {
        let mut rng = SmallRng::seed_from_u64(500_000 + seed);
        let simulation = RegisterSimulation {
            processes: rng.gen_range(2..=4),
            operations: rng.gen_range(1..=10),
            keys: rng.gen_range(1..=2),
            value_domain: Some(3),
            with_revisions: true,
            info_probability: rng.gen_range(0.0..0.5),
            ..RegisterSimulation::default()
        };
        let mut history = simulate_register(&mut rng, &simulation);
        let corrupted = rng.gen_bool(0.6);
        if corrupted {
            corrupt_register_history(&mut rng, &mut history, 0.3, 3);
        }
        let verdict = check(&model, &history, &CheckOptions::default())
            .expect("check")
            .verdict;
        // The model's state is per key, so the oracle runs per key too.
        let operations = support::decode(&model, &history);
        let mut oracle = true;
        for partition in model.partition(&operations) {
            let part: Vec<_> = partition.iter().map(|&index| operations[index].clone()).collect();
            oracle &= support::brute_force_with_model(&model, &part);
        }
        if !corrupted {
            assert!(verdict.is_ok(), "seed {}: clean history rejected", 500_000 + seed);
        }
        if oracle {
            linearizable += 1
        } else {
            illegal += 1
        }
        if verdict.is_ok() != oracle {
            disagreements.push(format!(
                "seed {}: oracle {oracle}, checker {}\n{}",
                500_000 + seed,
                verdict.label(),
                history.to_jsonl_string()
            ));
        }
    }
    println!(
        "revision-aware register differential: {REVISION_SEEDS} histories (seeds 500000..), {linearizable} linearizable, {illegal} not, {} disagreements",
        disagreements.len()
    );
    assert!(
        linearizable > 100 && illegal > 100,
        "the generator should produce both verdicts"
    );
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[test]
fn etcd_checker_matches_brute_force() {
    let model = EtcdModel::new();
    let mut disagreements = Vec::new();
    let (mut linearizable, mut illegal, mut clean_rejected) = (0, 0, Vec::new());
    for seed in 0..ETCD_SEEDS {
        let mut rng = SmallRng::seed_from_u64(1_000_000 + seed);
        let simulation = EtcdSimulation {
            processes: rng.gen_range(2..=4),
            operations: rng.gen_range(1..=10),
            keys: rng.gen_range(1..=3),
            info_probability: rng.gen_range(0.0..0.5),
            ..EtcdSimulation::default()
        };
        let mut history = simulate_etcd(&mut rng, &simulation);
        let corrupted = rng.gen_bool(0.5);
        if corrupted {
            corrupt_etcd_history(&mut rng, &mut history, 0.3);
        }
        let operations = support::decode(&model, &history);
        let oracle = support::brute_force_with_model(&model, &operations);
        let verdict = check(&model, &history, &CheckOptions::default())
            .expect("check")
            .verdict;
        if oracle {
            linearizable += 1
        } else {
            illegal += 1
        }
        if !corrupted && !verdict.is_ok() {
            clean_rejected.push(seed);
        }
        if verdict.is_ok() != oracle {
            disagreements.push(format!(
                "seed {}: oracle {oracle}, checker {}\n{}",
                1_000_000 + seed,
                verdict.label(),
                history.to_jsonl_string()
            ));
        }
    }
    println!(
        "etcd differential: {ETCD_SEEDS} histories (seeds 1000000..), {linearizable} linearizable, {illegal} not, {} disagreements",
        disagreements.len()
    );
    assert!(
        clean_rejected.is_empty(),
        "uncorrupted simulated histories rejected, seeds {clean_rejected:?}"
    );
    assert!(
        linearizable > 50 && illegal > 50,
        "the generator should produce both verdicts"
    );
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
