//! The stable fuzzing loop: the corpus first, then a fixed number of mutated inputs per target,
//! each run under [`std::panic::catch_unwind`]; the first panic of a target is minimised and
//! written to the crash folder.
//!
//! While a target runs, a panic hook keeps the panic's message and location for the report
//! instead of printing it (thousands of expected-looking panic lines would bury the one that
//! matters); outside the loop the previous hook prints as usual, so `--reproduce` shows the
//! panic and its backtrace the ordinary way.
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::mutate::Mutator;
use crate::targets::Target;

/// Where the crate's source was when it was compiled.
pub const CRATE_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// Where the crate's source is: the default corpus and crash folders are under it. `cargo run`
/// and `cargo test` say so at run time; that wins over [`CRATE_DIR`], because a target folder
/// shared between checkouts (as CI's is) can hand one checkout a binary compiled in another,
/// whose compiled-in path may be gone.
pub fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .filter(|d| d.join("corpus").is_dir())
        .unwrap_or_else(|| PathBuf::from(CRATE_DIR))
}

/// How far [`minimise`] goes: target runs spent shrinking one crash.
const MINIMISE_BUDGET: u32 = 4000;

/// How a run goes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Mutated inputs per target (after the corpus), times the target's weight.
    pub iterations: u64,
    /// The RNG seed; each target mixes its name in.
    pub seed: u64,
    /// Holds `<target>/` folders of seed files.
    pub corpus_dir: PathBuf,
    /// Crash inputs are written here as `<target>-<hash>`; `None` writes nothing.
    pub crash_dir: Option<PathBuf>,
    /// Targets run at once.
    pub jobs: usize,
}

impl Options {
    /// The checked-in corpus and crash folders of this crate.
    pub fn new(iterations: u64) -> Self {
        Options {
            iterations,
            seed: 0x5370_696c_6c77_6179,
            corpus_dir: crate_dir().join("corpus"),
            crash_dir: Some(crate_dir().join("crashes")),
            jobs: 1,
        }
    }
}

/// A panicking input.
#[derive(Debug, Clone)]
pub struct Crash {
    /// The (minimised) input.
    pub input: Vec<u8>,
    /// The panic's message and location.
    pub message: String,
    /// Where the input was written.
    pub file: Option<PathBuf>,
}

/// What one target's run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub target: &'static str,
    /// Corpus entries run.
    pub seeds: usize,
    /// Inputs run in all (corpus and mutations, not minimisation).
    pub runs: u64,
    pub elapsed: Duration,
    /// The slowest single input.
    pub slowest: Duration,
    pub crash: Option<Crash>,
}

thread_local! {
    /// Set while a target runs under the loop: the hook then records instead of printing.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) {
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `target` on `input`; a panic becomes `Err(message with location)`.
pub fn run_one(target: &Target, input: &[u8]) -> Result<(), String> {
    install_hook();
    CATCHING.with(|c| c.set(true));
    let result = catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    CATCHING.with(|c| c.set(false));
    result.map_err(|_| {
        LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| "panicked (no message)".to_owned())
    })
}

/// The target's built-in seeds, then the files of `corpus_dir/<target>/` sorted by name.
pub fn load_corpus(target: &Target, corpus_dir: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let mut seeds: Vec<Vec<u8>> = target.builtin_seeds.iter().map(|s| s.to_vec()).collect();
    let dir = corpus_dir.join(target.name);
    if dir.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        files.retain(|p| p.is_file());
        files.sort();
        for f in files {
            seeds.push(std::fs::read(f)?);
        }
    }
    Ok(seeds)
}

/// A target's own RNG seed: the run's seed with its name mixed in, so that adding a target
/// changes no other target's inputs.
fn target_seed(seed: u64, name: &str) -> u64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut word = [0u8; 8];
    word.copy_from_slice(&digest[..8]);
    seed ^ u64::from_le_bytes(word)
}

/// Runs one target over its corpus and `opts.iterations × weight` mutations; stops at its first
/// panic.
pub fn fuzz_target(target: &Target, opts: &Options) -> std::io::Result<Outcome> {
    let corpus = load_corpus(target, &opts.corpus_dir)?;
    if corpus.is_empty() {
        // Mutating nothing would look like a pass; a missing corpus is an error.
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "`{}` has no seeds: no built-in ones and nothing in {}",
                target.name,
                opts.corpus_dir.join(target.name).display()
            ),
        ));
    }
    let started = Instant::now();
    let mut outcome = Outcome {
        target: target.name,
        seeds: corpus.len(),
        runs: 0,
        elapsed: Duration::ZERO,
        slowest: Duration::ZERO,
        crash: None,
    };
    let mut mutator = Mutator::new(
        target_seed(opts.seed, target.name),
        &corpus,
        target.dictionary,
        target.max_len,
    );
    let total = corpus.len() as u64 + opts.iterations.saturating_mul(target.weight);
    while outcome.crash.is_none() && outcome.runs < total {
        let input = match usize::try_from(outcome.runs)
            .ok()
            .and_then(|i| corpus.get(i))
        {
            Some(seed) => seed.as_slice(),
            None => mutator.next_input(),
        };
        let t = Instant::now();
        let result = run_one(target, input);
        outcome.slowest = outcome.slowest.max(t.elapsed());
        outcome.runs += 1;
        if let Err(first) = result {
            let input = minimise(target, input.to_vec());
            // The minimised input's own panic (it may have shrunk to another one).
            let message = run_one(target, &input).err().unwrap_or(first);
            let file = match &opts.crash_dir {
                Some(dir) => Some(write_crash(dir, target.name, &input)?),
                None => None,
            };
            outcome.crash = Some(Crash {
                input,
                message,
                file,
            });
        }
    }
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}

/// Runs `targets` on `opts.jobs` threads (each target on one thread, in order of the list).
pub fn fuzz_all(targets: &[&'static Target], opts: &Options) -> std::io::Result<Vec<Outcome>> {
    let next = AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.clamp(1, targets.len().max(1)) {
            s.spawn(|| {
                while let Some(t) = targets.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let outcome = fuzz_target(t, opts);
                    report_progress(&outcome);
                    if let Ok(mut r) = results.lock() {
                        r.push(outcome);
                    }
                }
            });
        }
    });
    let mut outcomes = Vec::new();
    for r in results.into_inner().unwrap_or_default() {
        outcomes.push(r?);
    }
    outcomes.sort_by_key(|o| targets.iter().position(|t| t.name == o.target));
    Ok(outcomes)
}

fn report_progress(outcome: &std::io::Result<Outcome>) {
    match outcome {
        Ok(o) => eprintln!(
            "fuzz: {:<16} {:>8} inputs ({} seeds) in {:>6.2}s, slowest {:.1}ms{}",
            o.target,
            o.runs,
            o.seeds,
            o.elapsed.as_secs_f64(),
            o.slowest.as_secs_f64() * 1e3,
            if o.crash.is_some() { "  CRASH" } else { "" }
        ),
        Err(e) => eprintln!("fuzz: cannot read a corpus: {e}"),
    }
}

/// Shrinks a panicking input: removes ever smaller chunks while the target still panics,
/// within [`MINIMISE_BUDGET`] runs.
pub fn minimise(target: &Target, mut input: Vec<u8>) -> Vec<u8> {
    let mut budget = MINIMISE_BUDGET;
    let mut chunk = input.len().div_ceil(2).max(1);
    while budget > 0 && !input.is_empty() {
        let mut removed_any = false;
        let mut at = 0;
        while at < input.len() && budget > 0 {
            let end = (at + chunk).min(input.len());
            let mut candidate = input[..at].to_vec();
            candidate.extend_from_slice(&input[end..]);
            budget -= 1;
            if run_one(target, &candidate).is_err() {
                input = candidate;
                removed_any = true;
            } else {
                at = end;
            }
        }
        if chunk == 1 && !removed_any {
            break;
        }
        chunk = (chunk / 2).max(1);
    }
    input
}

/// Writes `input` to `dir/<target>-<first 16 hex digits of its SHA-256>`.
pub fn write_crash(dir: &Path, target: &str, input: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let hash = hex_prefix(&Sha256::digest(input));
    let file = dir.join(format!("{target}-{hash}"));
    std::fs::write(&file, input)?;
    Ok(file)
}

fn hex_prefix(digest: &[u8]) -> String {
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The target a crash file belongs to: its name up to the last `-`.
pub fn target_of_crash_file(file: &Path) -> Option<&'static Target> {
    let name = file.file_name()?.to_str()?;
    let (target, _hash) = name.rsplit_once('-')?;
    crate::targets::find_target(target)
}
