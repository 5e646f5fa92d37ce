//! Measures check times on large simulated histories (printed, not asserted: timing on a shared
//! machine is noise) and proves they are judged linearizable, as simulated.

mod support;

use braid_jepsen::{check, CheckOptions, EtcdModel, History, RegisterModel};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use support::etcd_simulation::{simulate_etcd, EtcdSimulation};
use support::register_simulation::{simulate_register, RegisterSimulation};

fn report(label: &str, seed: u64, history: &History, result: &braid_jepsen::CheckResult) {
    let (ok, fail, info) = history.status_counts();
    println!(
        "{label} (seed {seed}): {} operations (ok {ok}, fail {fail}, info {info}), {} partitions, largest {}, verdict {}, {:.1} ms",
        history.len(),
        result.statistics.partitions,
        result.statistics.largest_partition,
        result.verdict.label(),
        result.statistics.elapsed.as_secs_f64() * 1000.0
    );
}

#[test]
fn ten_thousand_operations_on_one_key() {
    let seed = 3_000_000;
    let mut rng = SmallRng::seed_from_u64(seed);
    let simulation = RegisterSimulation {
        processes: 5,
        operations: 10_000,
        keys: 1,
        value_domain: None,
        info_probability: 0.01,
        ..RegisterSimulation::default()
    };
    let history = simulate_register(&mut rng, &simulation);
    let result = check(&RegisterModel::new(), &history, &CheckOptions::default()).expect("check");
    report("register, 1 key", seed, &history, &result);
    assert!(result.is_ok(), "{}", result.verdict);
}

#[test]
fn ten_thousand_operations_on_ten_keys_with_small_values() {
    let seed = 3_000_001;
    let mut rng = SmallRng::seed_from_u64(seed);
    let simulation = RegisterSimulation {
        processes: 10,
        operations: 10_000,
        keys: 10,
        value_domain: Some(5),
        info_probability: 0.02,
        ..RegisterSimulation::default()
    };
    let history = simulate_register(&mut rng, &simulation);
    for threads in [1, 2] {
        let options = CheckOptions::default().with_threads(threads);
        let result = check(&RegisterModel::new(), &history, &options).expect("check");
        report(
            &format!("register, 10 keys, {threads} threads"),
            seed,
            &history,
            &result,
        );
        assert!(result.is_ok(), "{}", result.verdict);
    }
}

#[test]
fn two_thousand_operations_on_the_whole_store() {
    let seed = 3_000_002;
    let mut rng = SmallRng::seed_from_u64(seed);
    let simulation = EtcdSimulation {
        processes: 5,
        operations: 2_000,
        keys: 5,
        info_probability: 0.01,
        ..EtcdSimulation::default()
    };
    let history = simulate_etcd(&mut rng, &simulation);
    let result = check(&EtcdModel::new(), &history, &CheckOptions::default()).expect("check");
    report("etcd whole store", seed, &history, &result);
    assert!(result.is_ok(), "{}", result.verdict);
}
