//! Replays every committed fuzzing input through its entry point in
//! `tickcast::fuzzing`, on stable and without libFuzzer: the corpora
//! (`fuzz/corpus/<target>/`), the minimized crash inputs kept as regressions
//! (`fuzz/regressions/<target>/`) and whatever crash, leak, timeout or oom
//! files a local fuzzing run left in `fuzz/artifacts/<target>/`. A crash once
//! found and fixed stays fixed; a failure names the file.
//!
//! A regression whose fix has not landed yet is listed in [`OPEN`]: it must
//! still panic, so the list is trimmed in the commit that fixes it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Fewer corpus files than this for a target means the corpus was lost.
const MIN_CORPUS_FILES: usize = 20;

/// Crash inputs in `fuzz/regressions/<target>/` that still panic, with why
/// (fuzz/README.md, "Open findings"). Each is expected to panic until fixed;
/// once it does not, remove it here and it guards the fix like the others.
const OPEN: &[(&str, &str, &str)] = &[];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&keep))
        .collect();
    out.sort();
    out
}

fn replay(target: &str, entry: fn(&[u8])) {
    let dir = fuzz_dir();
    let corpus = files(&dir.join("corpus").join(target), |_| true);
    assert!(
        corpus.len() >= MIN_CORPUS_FILES,
        "fuzz/corpus/{target} has {} files (at least {MIN_CORPUS_FILES} expected): \
         regenerate the seeds with `python3 fuzz/seeds.py`",
        corpus.len()
    );
    let regressions = files(&dir.join("regressions").join(target), |n| {
        !n.starts_with('.') && n != "README.md"
    });
    let artifacts = files(&dir.join("artifacts").join(target), |n| {
        ["crash-", "leak-", "timeout-", "oom-", "slow-unit-"]
            .iter()
            .any(|p| n.starts_with(p))
    });
    let mut failures = Vec::new();
    let all: Vec<&PathBuf> = corpus
        .iter()
        .chain(&regressions)
        .chain(&artifacts)
        .collect();
    for path in &all {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let open = regressions.contains(path)
            && OPEN
                .iter()
                .any(|(t, file, _)| *t == target && *file == name);
        match catch_unwind(AssertUnwindSafe(|| entry(&data))) {
            Err(panic) if !open => {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(not a string)");
                failures.push(format!("{}: {message}", path.display()));
            }
            Ok(()) if open => failures.push(format!(
                "{}: no longer panics: remove it from OPEN in tests/fuzz_corpus.rs",
                path.display()
            )),
            _ => {}
        }
    }
    for (t, file, _) in OPEN.iter().filter(|(t, _, _)| *t == target) {
        if !regressions.iter().any(|p| p.ends_with(file)) {
            failures.push(format!(
                "fuzz/regressions/{t}/{file} is listed in OPEN but missing"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} of {} inputs panic:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[test]
fn frame_decoder_corpus() {
    replay("frame_decoder", tickcast::fuzzing::frame_decoder);
}

#[test]
fn client_message_corpus() {
    replay("client_message", tickcast::fuzzing::client_message);
}

#[test]
fn feed_line_corpus() {
    replay("feed_line", tickcast::fuzzing::feed_line);
}

#[test]
fn token_corpus() {
    replay("token", tickcast::fuzzing::token);
}

#[test]
fn upgrade_request_corpus() {
    replay("upgrade_request", tickcast::fuzzing::upgrade_request);
}
