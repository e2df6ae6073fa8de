//! How many slots the self-contained bench gives each region when `--concurrency` is not set.
//!
//! The comparison the bench exists for needs regions that a single source's bursts overflow
//! while the regions together hold them: with too many slots every policy serves everything in
//! its source and the table says nothing; with too few no router can keep traffic local, since
//! what a source's region cannot hold has to go elsewhere (the oracle's `local_share`).
//!
//! The rule: each region gets the fewest slots at which a source region *alone*, refusing every
//! request that finds all its slots busy (no queue, no other region), would turn away at most
//! `overflow` of its requests ([`OVERFLOW`], 10 %, by default). That is simulated on the run's
//! own arrivals and service times (prefill and decode at the simulator's speeds), source by
//! source; the share is over all sources' requests together. The share a region alone refuses
//! is the part of the traffic that has to leave its source or wait there, so it fixes the
//! regime directly: about a tenth of the requests are burst overflow whatever the trace's rate,
//! burstiness or request length.
//!
//! An earlier rule, the 99th percentile of the pooled arrivals per second split over the
//! regions × the mean service time, did that on the Azure code trace (a region alone refused
//! 14 % there) but not on traces whose requests hold a slot for several seconds: there a slot
//! spans many one-second buckets, the rule gave 42 and 76 slots on the conversation and merged
//! JSONL traces, and a region alone refused 0.2 and 0.3 % of its requests. Counting refusals on
//! the arrivals themselves has no bucket to get wrong.
//!
//! Why 10 %: locality asks how much of a source's traffic a router keeps at home, and at full
//! goodput at most what the source could serve alone stays there unless requests wait for it.
//! Overflow of about a tenth leaves in-region well behind a router that spills (4–6.5 points of
//! goodput on the Azure traces in `docs/BENCHMARKS.md`, its engine's queue absorbing the rest)
//! while 90 % locality remains within reach of a router that does not make requests wait long.
//! `--overflow` chooses another share; `--concurrency` sets the slots outright.
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use crate::workload::Offered;

/// The default share of a source's requests its region alone may refuse (see the module docs).
pub const OVERFLOW: f64 = 0.10;

/// The share of `requests` (sorted by arrival) that their source region alone, with `slots`
/// slots and no queue, refuses because every slot is busy. A request holds its slot for its
/// [`Offered::service_secs`].
pub fn refused_share(
    requests: &[Offered],
    sources: usize,
    slots: u32,
    prefill_tps: f64,
    decode_tps: f64,
) -> f64 {
    if requests.is_empty() {
        return 0.0;
    }
    // Per source: the times its busy slots free up, earliest first.
    let mut busy: Vec<BinaryHeap<Reverse<Duration>>> = vec![BinaryHeap::new(); sources];
    let mut refused = 0usize;
    for r in requests {
        let Some(heap) = busy.get_mut(r.source) else {
            continue;
        };
        while heap.peek().is_some_and(|Reverse(free)| *free <= r.at) {
            heap.pop();
        }
        if heap.len() < slots as usize {
            let hold = Duration::try_from_secs_f64(r.service_secs(prefill_tps, decode_tps))
                .unwrap_or(Duration::MAX);
            heap.push(Reverse(r.at.saturating_add(hold)));
        } else {
            refused += 1;
        }
    }
    refused as f64 / requests.len() as f64
}

/// The fewest slots per region at which [`refused_share`] is at most `overflow`, and that share.
/// Terminates: with as many slots as requests nothing is refused.
pub fn size_for_overflow(
    requests: &[Offered],
    sources: usize,
    overflow: f64,
    prefill_tps: f64,
    decode_tps: f64,
) -> (u32, f64) {
    let most = u32::try_from(requests.len()).unwrap_or(u32::MAX).max(1);
    let mut slots = 1;
    loop {
        let share = refused_share(requests, sources, slots, prefill_tps, decode_tps);
        if share <= overflow || slots >= most {
            return (slots, share);
        }
        slots += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(source: usize, at_ms: u64, input_tokens: u64, output_tokens: u64) -> Offered {
        Offered {
            source,
            at: Duration::from_millis(at_ms),
            input_tokens,
            output_tokens,
            hash_ids: None,
        }
    }

    #[test]
    fn a_region_alone_refuses_what_finds_every_slot_busy() {
        // Prefill 1,000 tokens/s, decode 10 tokens/s: 1,000 input + 10 output holds 2 s.
        let burst: Vec<Offered> = (0..4).map(|i| req(0, i * 100, 1000, 10)).collect();
        assert_eq!(refused_share(&burst, 1, 1, 1000.0, 10.0), 0.75);
        assert_eq!(refused_share(&burst, 1, 2, 1000.0, 10.0), 0.5);
        assert_eq!(refused_share(&burst, 1, 4, 1000.0, 10.0), 0.0);
        // A slot is free again at its holder's end: the same four, 2 s apart, need one slot.
        let spaced: Vec<Offered> = (0..4).map(|i| req(0, i * 2000, 1000, 10)).collect();
        assert_eq!(refused_share(&spaced, 1, 1, 1000.0, 10.0), 0.0);
        assert_eq!(refused_share(&[], 1, 1, 1000.0, 10.0), 0.0);
    }

    #[test]
    fn each_source_is_alone_in_its_region() {
        // Two sources with a simultaneous burst of two each: one slot refuses one of each.
        let w = vec![
            req(0, 0, 1000, 10),
            req(1, 0, 1000, 10),
            req(0, 10, 1000, 10),
            req(1, 10, 1000, 10),
        ];
        assert_eq!(refused_share(&w, 2, 1, 1000.0, 10.0), 0.5);
        assert_eq!(refused_share(&w, 2, 2, 1000.0, 10.0), 0.0);
    }

    #[test]
    fn sizing_takes_the_fewest_slots_within_the_overflow() {
        // Ten at once, then quiet: k slots refuse (10 - k) / 10.
        let burst: Vec<Offered> = (0..10).map(|i| req(0, i, 1000, 10)).collect();
        assert_eq!(size_for_overflow(&burst, 1, 0.10, 1000.0, 10.0), (9, 0.1));
        assert_eq!(size_for_overflow(&burst, 1, 0.35, 1000.0, 10.0), (7, 0.3));
        assert_eq!(size_for_overflow(&burst, 1, 0.0, 1000.0, 10.0), (10, 0.0));
        assert_eq!(size_for_overflow(&[], 3, 0.1, 1000.0, 10.0), (1, 0.0));
    }
}
