//! The seed sweep: replays the committed regression seeds, then fresh seeds,
//! keeps going after failures, prints one reproducing line per failing seed
//! and ends with `N passed, M failed`. Also checks determinism: a sample of
//! seeds run twice must produce the same trace digest.
//!
//! Knobs (environment): `SWEEP_SEEDS` (fresh seeds, default 20), `SWEEP_FROM`
//! (first fresh seed, default from `MADSIM_TEST_SEED` or 1), `SWEEP_JOBS`
//! (worker threads, default 2), `SWEEP_DETERMINISM` (seeds run twice, default 3),
//! `SWEEP_SEED` (run exactly this one seed, verbosely).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::run::{run_seed, RunReport};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn regression_seeds() -> Vec<u64> {
    let text = include_str!("../regression-seeds.txt");
    text.lines()
        .filter_map(|line| line.split('#').next())
        .filter_map(|seed| seed.trim().parse().ok())
        .collect()
}

/// Runs a seed on a fresh OS thread (fresh hasher state), catching panics.
fn run_isolated(seed: u64) -> RunReport {
    let outcome = std::thread::Builder::new()
        .name(format!("seed-{seed}"))
        .spawn(move || run_seed(seed))
        .expect("spawn a seed thread")
        .join();
    outcome.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
            .unwrap_or_else(|| "panic".to_string());
        RunReport::failed(seed, format!("panicked: {message}"))
    })
}

/// Runs one seed in a child process of this test binary, so every seed starts
/// from fresh process state and the repro line replays exactly what the sweep
/// saw (in one process, state left by earlier seeds changed later traces).
fn run_in_child(seed: u64) -> RunReport {
    let mut report = RunReport::failed(seed, "the seed's process printed no report".to_string());
    let output = std::env::current_exe().and_then(|exe| {
        std::process::Command::new(exe)
            .args(["sweep::sweep", "--exact", "--nocapture"])
            .env("SWEEP_SEED", seed.to_string())
            .output()
    });
    let Ok(output) = output else { return report };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(line) = stdout.lines().find_map(|line| line.strip_prefix("seed-report ")) else {
        let panic = String::from_utf8_lossy(&output.stderr)
            .lines()
            .find(|line| line.contains("panicked"))
            .map(str::to_string);
        report.failure = Some(panic.unwrap_or_else(|| "the seed's process printed no report".to_string()));
        return report;
    };
    let (fields, failure) = line.split_once(" failure=").unwrap_or((line, "none"));
    for field in fields.split(' ') {
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        let number: u64 = value.parse().unwrap_or(0);
        match key {
            "hash" => report.trace_hash = number,
            "operations" => report.operations = number as usize,
            "ok" => report.ok_operations = number as usize,
            "workload" => {
                report.counters.insert(format!("workload-{value}"), 1);
            }
            _ => {
                report.counters.insert(key.to_string(), number);
            }
        }
    }
    report.failure = (failure != "none").then(|| failure.to_string());
    report
}

fn repro(seed: u64) -> String {
    let bug = std::env::var("BRAID_SIM_BUG")
        .map(|bug| format!("BRAID_SIM_BUG={bug} "))
        .unwrap_or_default();
    format!("repro: {bug}SWEEP_SEED={seed} sim/sweep")
}

#[test]
fn sweep() {
    if let Ok(seed) = std::env::var("SWEEP_SEED") {
        let seed: u64 = seed.parse().expect("SWEEP_SEED is a number");
        let report = run_isolated(seed);
        println!("{report:#?}");
        let mut fields = vec![
            format!("hash={}", report.trace_hash),
            format!("operations={}", report.operations),
            format!("ok={}", report.ok_operations),
        ];
        if let Some(workload) = report.workload {
            fields.push(format!("workload={}", format!("{workload:?}").to_lowercase()));
        }
        for (name, count) in report.faults.classes() {
            fields.push(format!("fault-{}={count}", name.replace(' ', "-")));
        }
        for (name, count) in &report.counters {
            fields.push(format!("{name}={count}"));
        }
        println!(
            "seed-report {} failure={}",
            fields.join(" "),
            report.failure.as_deref().unwrap_or("none").replace('\n', " ")
        );
        assert!(report.failure.is_none(), "seed {seed} failed: {:?}", report.failure);
        return;
    }
    let fresh = env_number("SWEEP_SEEDS", 20);
    let from = env_number("SWEEP_FROM", 1);
    let jobs = env_number("SWEEP_JOBS", 2).max(1) as usize;
    let mut seeds = regression_seeds();
    let regressions = seeds.len();
    seeds.extend(from..from + fresh);
    println!(
        "sweep: {} regression seeds, then {fresh} fresh seeds from {from}, {jobs} jobs",
        regressions
    );

    let next = Arc::new(AtomicUsize::new(0));
    let reports = Arc::new(Mutex::new(Vec::new()));
    let seeds = Arc::new(seeds);
    let workers: Vec<_> = (0..jobs)
        .map(|_| {
            let (next, reports, seeds) = (Arc::clone(&next), Arc::clone(&reports), Arc::clone(&seeds));
            std::thread::spawn(move || loop {
                let position = next.fetch_add(1, Ordering::SeqCst);
                let Some(&seed) = seeds.get(position) else { return };
                let report = run_in_child(seed);
                if let Some(failure) = &report.failure {
                    println!("FAILED seed {seed}: {failure}\n{}", repro(seed));
                }
                reports.lock().unwrap().push(report);
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let reports = std::mem::take(&mut *reports.lock().unwrap());

    // Determinism: the first passing seeds again, each in its own process,
    // compared by trace digest.
    let sample = env_number("SWEEP_DETERMINISM", 3) as usize;
    let mut nondeterministic = Vec::new();
    let mut checked = 0;
    for report in reports.iter().filter(|report| report.failure.is_none()).take(sample) {
        checked += 1;
        if run_in_child(report.seed).trace_hash != report.trace_hash {
            nondeterministic.push(report.seed);
        }
    }

    let failed: Vec<&RunReport> = reports.iter().filter(|report| report.failure.is_some()).collect();
    let mut totals: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for report in &reports {
        for (name, count) in &report.counters {
            *totals.entry(name.as_str()).or_default() += count;
        }
    }
    let faults: Vec<String> = totals
        .iter()
        .filter_map(|(name, count)| name.strip_prefix("fault-").map(|name| format!("{name} {count}")))
        .collect();
    println!("faults injected: {}", faults.join(", "));
    let others: Vec<String> = totals
        .iter()
        .filter(|(name, _)| !name.starts_with("fault-"))
        .map(|(name, count)| format!("{name} {count}"))
        .collect();
    println!("counted: {}", others.join(", "));
    let operations: usize = reports.iter().map(|report| report.operations).sum();
    let ok_operations: usize = reports.iter().map(|report| report.ok_operations).sum();
    println!(
        "histories checked {}, operations {operations} ({ok_operations} ok)",
        reports.len() - failed.len()
    );
    println!(
        "determinism: {}/{checked} seeds replayed with the same trace",
        checked - nondeterministic.len()
    );
    for seed in &nondeterministic {
        println!("NONDETERMINISTIC seed {seed}\n{}", repro(*seed));
    }
    for report in &failed {
        println!("{}", repro(report.seed));
    }
    println!(
        "{} passed, {} failed",
        reports.len() - failed.len(),
        failed.len() + nondeterministic.len()
    );
    assert!(
        failed.is_empty() && nondeterministic.is_empty(),
        "the sweep found failures"
    );
}
