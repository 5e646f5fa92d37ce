//! Proves the architecture rules of DESIGN.md hold in the source tree: the
//! Raft core stays pure, time and randomness come only through their seams,
//! `cfg(madsim)` stays in sim/, and `unsafe` stays in its two files.

use std::path::{Path, PathBuf};

fn rust_files(directory: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(directory) else {
        return files;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Source lines with comments stripped, so prose may mention banned words.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .enumerate()
        .map(|(number, line)| (number + 1, line.split("//").next().unwrap_or("").to_string()))
        .collect()
}

/// Whether `word` occurs in `line` as a whole word (`unsafe`, not
/// `unsafe_no_fsync` or the flag name `unsafe-no-fsync`).
fn contains_word(line: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    line.match_indices(word).any(|(start, _)| {
        let before = line[..start].chars().next_back();
        let after = line[start + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

fn violations(files: &[PathBuf], banned: &[&str], allowed: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(root()).unwrap().to_string_lossy().replace('\\', "/");
        if allowed.iter().any(|allowed| relative == *allowed) {
            continue;
        }
        for (number, line) in code_lines(file) {
            for word in banned {
                let whole_word = word.chars().all(|c| c.is_alphanumeric() || c == '_');
                let hit = if whole_word {
                    contains_word(&line, word)
                } else {
                    line.contains(word)
                };
                if hit {
                    found.push(format!("{relative}:{number}: `{word}` in: {}", line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn raft_core_is_pure() {
    let files = rust_files(&root().join("src/raft"));
    assert!(!files.is_empty(), "src/raft has no files");
    let banned = [
        "tokio",
        "madsim",
        "async ",
        ".await",
        "std::time",
        "Instant",
        "SystemTime",
        "thread_rng",
        "rand::random",
        "getrandom",
        "tonic",
        "prost",
        "braid_proto",
        "std::fs",
        "std::net",
        "std::thread",
        "std::io",
        "crate::io",
        "crate::wal",
        "crate::btree",
        "crate::mvcc",
        "crate::server",
        "crate::api",
        "println!",
        "eprintln!",
    ];
    let found = violations(&files, &banned, &[]);
    assert!(found.is_empty(), "the Raft core must stay pure:\n{}", found.join("\n"));
}

#[test]
fn time_and_randomness_come_through_their_seams() {
    let mut files = rust_files(&root().join("src"));
    files.extend(rust_files(&root().join("proto/src")));
    let banned = [
        "thread_rng",
        "rand::random",
        "getrandom",
        "Instant::now",
        "SystemTime::now",
    ];
    let found = violations(&files, &banned, &["src/io/clock.rs"]);
    assert!(
        found.is_empty(),
        "determinism bans (DESIGN.md invariant 7):\n{}",
        found.join("\n")
    );
}

#[test]
fn cfg_madsim_lives_only_in_sim() {
    let mut files = rust_files(&root().join("src"));
    files.extend(rust_files(&root().join("proto/src")));
    files.extend(rust_files(&root().join("tests")));
    let banned = ["cfg(madsim)", "cfg(not(madsim))"];
    // Real-network test files may opt out of the simulation build.
    let found: Vec<String> = violations(&files, &banned, &["tests/tidy.rs"])
        .into_iter()
        .filter(|line| !line.contains("#![cfg(not(madsim))]"))
        .collect();
    assert!(found.is_empty(), "cfg(madsim) outside sim/:\n{}", found.join("\n"));
}

#[test]
fn unsafe_only_in_mmap_and_io_uring() {
    let mut files = rust_files(&root().join("src"));
    files.extend(rust_files(&root().join("proto/src")));
    let found = violations(&files, &["unsafe"], &["src/io/mmap.rs", "src/io/uring.rs"]);
    assert!(found.is_empty(), "unsafe outside its two files:\n{}", found.join("\n"));
}
