//! Every fuzz target over its checked-in corpus plus a few hundred mutations, so that
//! `cargo test --workspace` runs them all cheaply (the long runs are `cargo run --release -p
//! spillway-fuzz`, in CI's fuzz step); and the runner's own behaviour on a panicking target.
#![allow(clippy::unwrap_used)]
use std::path::Path;

use spillway_fuzz::runner::{self, Options};
use spillway_fuzz::{TARGETS, Target, find_target};

/// Mutations per target in a test run (times its weight; debug build): together well under
/// 20 s on 2 cores.
const TEST_ITERATIONS: u64 = 200;

fn fuzz_briefly(name: &str) {
    let target = find_target(name).unwrap();
    let outcome = runner::fuzz_target(target, &Options::new(TEST_ITERATIONS)).unwrap();
    assert!(outcome.seeds > 0, "`{name}` has no seeds");
    if let Some(crash) = outcome.crash {
        let file = crash
            .file
            .map(|f| f.display().to_string())
            .unwrap_or_default();
        panic!(
            "`{name}` panicked: {}\ninput: \"{}\"\nreproduce: cargo run -p spillway-fuzz -- \
             --reproduce {file}",
            crash.message,
            crash.input.escape_ascii()
        );
    }
}

macro_rules! corpus_tests {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { fuzz_briefly(stringify!($name)); })*

        #[test]
        fn every_target_is_tested_here() {
            let tested = [$(stringify!($name)),*];
            let listed: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
            assert_eq!(listed, tested);
        }
    };
}

corpus_tests!(
    config,
    chat_request,
    converse,
    invoke,
    eventstream,
    sse,
    sigv4_verify,
    sigv4_roundtrip,
    model_ref,
    anthropic,
    responses_request,
    embeddings_request,
);

#[test]
fn every_corpus_folder_names_a_target() {
    let dir = runner::crate_dir().join("corpus");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(find_target(&name).is_some(), "corpus/{name} is no target");
    }
}

fn panics_on_two_bangs(data: &[u8]) {
    if data.windows(2).any(|w| w == b"!!") {
        panic!("two bangs");
    }
}

const PANICKY: Target = Target {
    name: "panicky",
    run: panics_on_two_bangs,
    builtin_seeds: &[b"hello, world", b"a!b!c"],
    dictionary: &[b"!"],
    max_len: 64,
    weight: 1,
};

#[test]
fn a_panic_is_caught_minimised_and_written() {
    let crash_dir = std::env::temp_dir().join(format!("spillway-fuzz-test-{}", std::process::id()));
    let mut opts = Options::new(100_000);
    opts.corpus_dir = crash_dir.join("no-corpus");
    opts.crash_dir = Some(crash_dir.clone());
    let outcome = runner::fuzz_target(&PANICKY, &opts).unwrap();
    let crash = outcome.crash.expect("the mutator finds two bangs");
    assert_eq!(crash.input, b"!!");
    assert!(crash.message.contains("two bangs"), "{}", crash.message);
    let file = crash.file.unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), b"!!");
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("panicky-") && name.len() == "panicky-".len() + 16);
    std::fs::remove_dir_all(crash_dir).unwrap();
}

#[test]
fn a_run_is_repeatable() {
    let run = || {
        let mut opts = Options::new(2000);
        opts.corpus_dir = Path::new("/nonexistent").to_path_buf();
        opts.crash_dir = None;
        let o = runner::fuzz_target(&PANICKY, &opts).unwrap();
        (o.runs, o.crash.map(|c| c.input))
    };
    assert_eq!(run(), run());
}

#[test]
fn crash_files_name_their_target() {
    let t = runner::target_of_crash_file(Path::new("crashes/sigv4_verify-0123456789abcdef"));
    assert_eq!(t.map(|t| t.name), Some("sigv4_verify"));
    assert!(runner::target_of_crash_file(Path::new("crashes/nothing")).is_none());
}

#[test]
fn a_target_without_seeds_is_an_error_not_a_pass() {
    let mut opts = Options::new(10);
    opts.corpus_dir = Path::new("/nonexistent").to_path_buf();
    opts.crash_dir = None;
    let err = runner::fuzz_target(find_target("sse").unwrap(), &opts).unwrap_err();
    assert!(err.to_string().contains("has no seeds"), "{err}");
}
