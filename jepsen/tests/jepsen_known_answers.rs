//! Proves the checker agrees with the known verdicts on all 102 Jepsen etcd register histories.

use std::path::PathBuf;
use std::time::Duration;

use braid_jepsen::jepsen_log::parse_jepsen_etcd_log;
use braid_jepsen::{check, CheckOptions, History, RegisterModel, Verdict};

/// Where the Jepsen logs are: `$BRAID_TESTDATA` (the `testdata` directory, or the register
/// directory itself), else `shared/testdata` beside the repository.
fn testdata_directory() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(root) = std::env::var_os("BRAID_TESTDATA") {
        let root = PathBuf::from(root);
        candidates.push(root.join("jepsen-etcd-register"));
        candidates.push(root);
    }
    candidates.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/jepsen-etcd-register"));
    candidates
        .into_iter()
        .find(|candidate| candidate.join("expected.tsv").is_file())
}

fn load_expected(directory: &std::path::Path) -> Vec<(String, bool)> {
    let text = std::fs::read_to_string(directory.join("expected.tsv")).expect("read expected.tsv");
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (file, verdict) = line
                .split_once('\t')
                .unwrap_or_else(|| panic!("bad expected.tsv line {line:?}"));
            let linearizable = match verdict.trim() {
                "linearizable" => true,
                "not-linearizable" => false,
                other => panic!("unknown verdict {other:?} for {file}"),
            };
            (file.to_owned(), linearizable)
        })
        .collect()
}

fn load_history(directory: &std::path::Path, file: &str) -> History {
    let text = std::fs::read_to_string(directory.join(file)).unwrap_or_else(|error| panic!("read {file}: {error}"));
    let history = parse_jepsen_etcd_log(&text).unwrap_or_else(|error| panic!("parse {file}: {error}"));
    history
        .validate()
        .unwrap_or_else(|error| panic!("{file} converts to an invalid history: {error}"));
    history
}

#[test]
fn all_jepsen_histories_agree_with_known_verdicts() {
    let Some(directory) = testdata_directory() else {
        if std::env::var("BRAID_ALLOW_MISSING_TESTDATA").as_deref() == Ok("1") {
            eprintln!("jepsen-etcd-register testdata missing; skipped (BRAID_ALLOW_MISSING_TESTDATA=1)");
            return;
        }
        panic!(
            "jepsen-etcd-register testdata not found (set BRAID_TESTDATA, or \
             BRAID_ALLOW_MISSING_TESTDATA=1 to skip)"
        );
    };
    let expected = load_expected(&directory);
    assert_eq!(expected.len(), 102, "expected.tsv should list 102 histories");
    let linearizable_count = expected.iter().filter(|(_, linearizable)| *linearizable).count();
    assert_eq!(linearizable_count, 23, "expected.tsv should list 23 linearizable");

    let model = RegisterModel::new();
    let options = CheckOptions::default().with_budget(Duration::from_secs(20));
    let mut agreed = 0;
    let mut disagreements = Vec::new();
    let mut times_ms = Vec::new();
    for (file, linearizable) in &expected {
        let history = load_history(&directory, file);
        let result = check(&model, &history, &options).expect("check");
        let elapsed_ms = result.statistics.elapsed.as_secs_f64() * 1000.0;
        times_ms.push(elapsed_ms);
        let (ok, fail, info) = history.status_counts();
        println!(
            "{file}: {} operations (ok {ok}, fail {fail}, info {info}), expected {}, got {}, {elapsed_ms:.3} ms",
            history.len(),
            if *linearizable { "ok" } else { "illegal" },
            result.verdict.label()
        );
        let agrees = matches!(
            (&result.verdict, linearizable),
            (Verdict::Ok, true) | (Verdict::Illegal(_), false)
        );
        if agrees {
            agreed += 1;
        } else {
            disagreements.push(format!("{file}: {}", result.verdict.label()));
        }
    }
    times_ms.sort_by(f64::total_cmp);
    println!(
        "golden: {agreed}/{} agree; check time p50 {:.3} ms, max {:.3} ms, total {:.1} ms",
        expected.len(),
        times_ms[times_ms.len() / 2],
        times_ms[times_ms.len() - 1],
        times_ms.iter().sum::<f64>()
    );
    assert!(disagreements.is_empty(), "disagreements: {disagreements:?}");
}

#[test]
fn jsonl_round_trip_keeps_the_verdicts() {
    let Some(directory) = testdata_directory() else {
        if std::env::var("BRAID_ALLOW_MISSING_TESTDATA").as_deref() == Ok("1") {
            return;
        }
        panic!("jepsen-etcd-register testdata not found");
    };
    let model = RegisterModel::new();
    for (file, linearizable) in load_expected(&directory).iter().take(12) {
        let history = load_history(&directory, file);
        let reread = History::from_jsonl_str(&history.to_jsonl_string()).expect("reparse");
        assert_eq!(reread, history, "{file} changed in a JSONL round trip");
        let result = check(&model, &reread, &CheckOptions::default()).expect("check");
        assert_eq!(result.is_ok(), *linearizable, "{file}");
    }
}
