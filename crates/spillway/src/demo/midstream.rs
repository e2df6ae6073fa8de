//! `cross-region-midstream`: us-east-1's fault schedule, and the figures of the streams it broke.
//!
//! From a third of the way in to two thirds, us-east-1 breaks every stream that starts there
//! after its first [`BREAK_AFTER`] tokens, and the kind of break turns through reset, error event
//! and stall on every tick of the scenario's watch (100 ms): a simulator applies one kind at a
//! time, and turning through them makes all three happen in one run. Before and after, it is
//! healthy. The fault is read when a request arrives at the simulator, so each stream breaks the
//! way the fault said when it started.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use spillway_bench::client::RequestResult;
use spillway_sim::SimHandle;

use super::{BREAK_AFTER, SOURCE};
use crate::midstream::{self, Kind};

/// What the scenario's streams came to.
#[derive(Debug, Clone, Default)]
pub struct MidstreamFigures {
    /// Measured streams that a simulator served as a continuation.
    pub failovers: u64,
    /// Measured streams whose text is not the unbroken answer ([`midstream::mismatch`]).
    pub text_mismatches: u64,
    /// `failovers` by the kind of break that preceded the continuation.
    pub by_kind: BTreeMap<&'static str, u64>,
}

/// The fault's state as the watch turns it.
#[derive(Debug, Default)]
pub struct Schedule {
    current: Option<Kind>,
    ended: bool,
}

impl Schedule {
    /// At `t` of `window`, on the watch's tick number `tick`: the fault us-east-1 should have now.
    pub fn tick(&mut self, t: Duration, window: Duration, tick: u64, sims: &[SimHandle]) {
        let Some(sim) = sims.iter().find(|h| h.region() == SOURCE) else {
            return;
        };
        let at = t.as_secs_f64();
        if t >= window * 2 / 3 {
            if !self.ended && self.current.is_some() {
                sim.set_fault(spillway_sim::Fault::default());
                eprintln!("  cross-region-midstream: {SOURCE} healthy again at {at:.1} s");
            }
            self.ended = true;
            return;
        }
        if t < window / 3 {
            return;
        }
        let kind = Kind::ALL[(tick % 3) as usize];
        if self.current.is_none() {
            eprintln!(
                "  cross-region-midstream: {SOURCE} breaks streams after {BREAK_AFTER} tokens from {at:.1} s (reset, error event, stall in turn)"
            );
        }
        if self.current != Some(kind) {
            sim.set_fault(kind.fault(BREAK_AFTER));
            self.current = Some(kind);
        }
    }
}

/// The figures of the measured streams `results`; `expected` is each one's unbroken answer, by
/// request id.
pub fn figures(
    sims: &[SimHandle],
    results: &[RequestResult],
    expected: &HashMap<String, String>,
) -> MidstreamFigures {
    let ids: HashSet<String> = results.iter().map(|r| r.id.clone()).collect();
    let continued = midstream::continued(sims, &ids);
    let mut by_kind = BTreeMap::new();
    for kind in continued.values() {
        let name = kind.map_or("unknown", Kind::name);
        *by_kind.entry(name).or_insert(0) += 1;
    }
    let text_mismatches = midstream::text_mismatches(results, expected);
    MidstreamFigures {
        failovers: continued.len() as u64,
        text_mismatches,
        by_kind,
    }
}
