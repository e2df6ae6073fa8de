//! Fuzz targets for the parsers and codecs of Spillway that read hostile input, and a runner
//! for them that works on the stable toolchain.
//!
//! Every target is a `fn(&[u8])` that must not panic on any input; most also check a property
//! that holds for every input (a decoder gives the same events however its input is split, a
//! parsed request serialises back to the same request, a request signed by the AWS signer
//! verifies, a random one does not). The list is [`targets::TARGETS`]; docs/FUZZING.md says
//! what each covers and how to run, reproduce and extend them.
//!
//! # Why the mutational loop is written here
//!
//! libFuzzer (through `cargo fuzz`) needs a nightly toolchain for its sanitizer-coverage
//! instrumentation, and there is no stable driver for it; AFL (`cargo afl`) needs its own
//! compiler wrapper and a long-running fork server, which is no fit for a bounded CI step. So
//! [`runner`] is a plain, deterministic, coverage-blind mutational loop: a seeded RNG, the
//! checked-in corpus of real inputs (`corpus/<target>/`), and byte-level mutations
//! ([`mutate`]: bit flips, inserts, deletes, splices of corpus entries, truncation, dictionary
//! tokens). What it lacks in guidance it makes up for by starting from real requests, frames
//! and configs and by running every target in `cargo test` and in CI. Structured inputs (the
//! SigV4 sign-then-verify target, the split points of the stream decoders) are built from the
//! raw bytes with the `arbitrary` crate, so the same targets would plug into `cargo fuzz`
//! unchanged on a machine that has nightly.
//!
//! Panics are caught with [`std::panic::catch_unwind`]; the input is minimised, written to
//! `crashes/<target>-<hash>` and can be replayed with `cargo run -p spillway-fuzz --
//! --reproduce FILE`. A hang or an abort (stack overflow, out of memory) is not caught: the
//! run then stops without a crash file, and the target's name is the last one printed.
#![forbid(unsafe_code)]

mod json_mutate;
pub mod mutate;
pub mod runner;
pub mod targets;

pub use targets::{TARGETS, Target, find_target};

/// The value of `r`, or a panic naming `what` (the harness's assertion for "this cannot fail").
pub(crate) fn must<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e:?}"),
    }
}
