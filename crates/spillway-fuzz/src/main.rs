//! `spillway-fuzz`: runs the fuzz targets on the stable toolchain (see the library's docs and
//! docs/FUZZING.md).
//!
//! ```sh
//! cargo run --release -p spillway-fuzz -- --iterations 20000            # every target
//! cargo run --release -p spillway-fuzz -- --iterations 100000 sse config # some
//! cargo run -p spillway-fuzz -- --reproduce crates/spillway-fuzz/crashes/sse-0123abcd4567ef89
//! ```
//!
//! Exits 1 when a target panicked (after running the others), 2 on a usage or I/O error.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use spillway_fuzz::runner::{self, Options};
use spillway_fuzz::{TARGETS, Target, find_target};

#[derive(Parser)]
#[command(about = "Fuzz Spillway's parsers and codecs (stable toolchain, deterministic)")]
struct Args {
    /// Mutated inputs per target after its corpus, times the target's weight (10, or 1 for the
    /// slow `config`).
    #[arg(long, default_value_t = 10_000)]
    iterations: u64,
    /// The RNG seed (the same seed gives the same inputs).
    #[arg(long)]
    seed: Option<u64>,
    /// Targets run at once (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Runs one saved input without catching its panic (the target is named by the file name,
    /// `<target>-<hash>`, or by the single TARGET given).
    #[arg(long, value_name = "FILE")]
    reproduce: Option<PathBuf>,
    /// Lists the targets.
    #[arg(long)]
    list: bool,
    /// Targets to run (default: all).
    #[arg(value_name = "TARGET")]
    targets: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for t in TARGETS {
            println!("{}", t.name);
        }
        return ExitCode::SUCCESS;
    }
    let targets: Vec<&'static Target> = if args.targets.is_empty() {
        TARGETS.iter().collect()
    } else {
        let mut found = Vec::new();
        for name in &args.targets {
            let Some(t) = find_target(name) else {
                eprintln!("unknown target `{name}`; `--list` shows them");
                return ExitCode::from(2);
            };
            found.push(t);
        }
        found
    };
    match &args.reproduce {
        Some(file) => reproduce(file, &args.targets, &targets),
        None => fuzz(&args, &targets),
    }
}

/// Runs the saved input once; a panic propagates (exit 101, with the usual message).
fn reproduce(file: &PathBuf, named: &[String], targets: &[&'static Target]) -> ExitCode {
    let target = match named {
        [_] => targets.first().copied(),
        [] => runner::target_of_crash_file(file),
        _ => None,
    };
    let Some(target) = target else {
        eprintln!(
            "cannot tell the target of {}: name the file <target>-<hash> or give one TARGET",
            file.display()
        );
        return ExitCode::from(2);
    };
    let input = match std::fs::read(file) {
        Ok(input) => input,
        Err(e) => {
            eprintln!("cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    eprintln!("running `{}` on {} bytes", target.name, input.len());
    (target.run)(&input);
    eprintln!("no panic");
    ExitCode::SUCCESS
}

fn fuzz(args: &Args, targets: &[&'static Target]) -> ExitCode {
    let mut opts = Options::new(args.iterations);
    if let Some(seed) = args.seed {
        opts.seed = seed;
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    opts.jobs = args.jobs.unwrap_or(cores);
    let outcomes = match runner::fuzz_all(targets, &opts) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fuzz: {e}");
            return ExitCode::from(2);
        }
    };
    let crashes: Vec<_> = outcomes.iter().filter(|o| o.crash.is_some()).collect();
    let runs: u64 = outcomes.iter().map(|o| o.runs).sum();
    println!(
        "fuzz: {} targets, {runs} inputs, seed {:#x}, {} crashing",
        outcomes.len(),
        opts.seed,
        crashes.len()
    );
    for o in &crashes {
        let Some(crash) = &o.crash else { continue };
        println!("\n== target `{}` panicked:\n{}", o.target, crash.message);
        println!(
            "input ({} bytes, minimised): \"{}\"",
            crash.input.len(),
            escape(&crash.input)
        );
        if let Some(file) = &crash.file {
            println!("written to {}", file.display());
            println!(
                "reproduce: cargo run -p spillway-fuzz -- --reproduce {}",
                file.display()
            );
        }
    }
    if crashes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The input as a Rust-style byte string, cut at 2000 characters.
fn escape(input: &[u8]) -> String {
    let s: String = input.escape_ascii().to_string();
    match s.char_indices().nth(2000) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}
