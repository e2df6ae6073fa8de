use std::time::Duration;

use proptest::prelude::*;

use super::*;

const D0: DeploymentIx = DeploymentIx(0);
const D1: DeploymentIx = DeploymentIx(1);

fn index(capacity: &[u64], max_entries: usize) -> PrefixIndex {
    PrefixIndex::new(PrefixConfig {
        max_entries,
        ttl: Duration::from_secs(600),
        capacity_blocks: capacity.to_vec(),
    })
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn a_recorded_prompt_is_held_where_it_went_only() {
    let mut ix = index(&[100, 100], 1_000);
    ix.record(D0, &[1, 2, 3], secs(0));
    assert_eq!(ix.cached_blocks(D0, &[1, 2, 3, 4], secs(1)), 3);
    assert_eq!(ix.cached_blocks(D1, &[1, 2, 3, 4], secs(1)), 0);
}

#[test]
fn only_a_leading_run_counts() {
    let mut ix = index(&[100], 1_000);
    ix.record(D0, &[1, 2, 3], secs(0));
    // Block 9 is not held, so block 3 after it cannot be reused.
    assert_eq!(ix.cached_blocks(D0, &[1, 9, 3], secs(1)), 1);
    assert_eq!(ix.cached_blocks(D0, &[9, 1, 2], secs(1)), 0);
}

#[test]
fn blocks_beyond_the_capacity_are_evicted_least_recent_first() {
    let mut ix = index(&[4], 1_000);
    ix.record(D0, &[1, 2], secs(0));
    ix.record(D0, &[10, 11], secs(1));
    // Four inserted in a cache of four: all held. Touch 1 and 2 (no new insertion).
    ix.record(D0, &[1, 2], secs(2));
    assert_eq!(ix.cached_blocks(D0, &[10, 11], secs(2)), 2);
    // Two more: the least recently used, 10 and 11, are out; 1 and 2 stay.
    ix.record(D0, &[20, 21], secs(3));
    assert_eq!(ix.cached_blocks(D0, &[10, 11], secs(3)), 0);
    assert_eq!(ix.cached_blocks(D0, &[1, 2], secs(3)), 2);
    assert_eq!(ix.cached_blocks(D0, &[20, 21], secs(3)), 2);
}

#[test]
fn entries_expire_after_the_ttl() {
    let mut ix = index(&[100], 1_000);
    ix.record(D0, &[1], secs(0));
    assert_eq!(ix.cached_blocks(D0, &[1], secs(600)), 1);
    assert_eq!(ix.cached_blocks(D0, &[1], secs(601)), 0);
}

#[test]
fn a_deployment_without_a_cache_holds_nothing() {
    let mut ix = index(&[0, 100], 1_000);
    ix.record(D0, &[1, 2], secs(0));
    assert_eq!(ix.cached_blocks(D0, &[1, 2], secs(0)), 0);
    assert_eq!(ix.entries(), 0);
    // An index beyond the table is no deployment with a cache either.
    ix.record(DeploymentIx(7), &[1], secs(0));
    assert_eq!(ix.cached_blocks(DeploymentIx(7), &[1], secs(0)), 0);
}

#[test]
fn two_deployments_may_hold_the_same_block() {
    let mut ix = index(&[100, 100], 1_000);
    ix.record(D0, &[1, 2], secs(0));
    ix.record(D1, &[1], secs(1));
    assert_eq!(ix.cached_blocks(D0, &[1, 2], secs(2)), 2);
    assert_eq!(ix.cached_blocks(D1, &[1, 2], secs(2)), 1);
}

#[test]
fn memory_stays_within_the_entry_budget() {
    let mut ix = index(&[1_000_000], 100);
    for b in 0..10_000u64 {
        ix.record(D0, &[b], secs(0));
        assert!(ix.entries() <= 100, "{} entries after {b}", ix.entries());
    }
    assert_eq!(ix.cached_blocks(D0, &[9_999], secs(0)), 1);
    assert_eq!(ix.cached_blocks(D0, &[9_900], secs(0)), 1);
    assert_eq!(ix.cached_blocks(D0, &[9_899], secs(0)), 0);
}

#[test]
fn under_eviction_a_prefix_keeps_its_head() {
    let mut ix = index(&[3], 1_000);
    ix.record(D0, &[1, 2, 3], secs(0));
    ix.record(D0, &[7], secs(1));
    // The tail (3) went first: 1 and 2 are still a reusable prefix.
    assert_eq!(ix.cached_blocks(D0, &[1, 2, 3], secs(1)), 2);
}

proptest! {
    /// Against a real LRU per deployment (a list, most recent last): the estimate never counts
    /// more leading blocks than the LRU holds, and with an entry budget large enough to keep
    /// everything it counts exactly as many.
    #[test]
    fn the_estimate_is_an_lru(
        ops in proptest::collection::vec((0u32..2, proptest::collection::vec(0u64..12, 1..6)), 1..60),
        capacity in 1u64..10,
        probe in proptest::collection::vec(0u64..12, 1..6),
    ) {
        let mut ix = index(&[capacity, capacity], 1_000_000);
        let mut lru: Vec<Vec<u64>> = vec![Vec::new(), Vec::new()];
        for (t, (d, blocks)) in ops.iter().enumerate() {
            ix.record(DeploymentIx(*d), blocks, secs(t as u64));
            let list = &mut lru[*d as usize];
            for b in blocks.iter().rev() {
                list.retain(|x| x != b);
                list.push(*b);
                if list.len() as u64 > capacity {
                    list.remove(0);
                }
            }
        }
        for d in 0..2u32 {
            let truth = probe.iter().take_while(|b| lru[d as usize].contains(b)).count();
            let got = ix.cached_blocks(DeploymentIx(d), &probe, secs(ops.len() as u64));
            prop_assert_eq!(got, truth, "deployment {}", d);
        }
    }
}

#[test]
fn the_log_holds_what_was_recorded_here_not_what_was_learned() {
    let mut ix = index(&[100, 0], 1_000);
    assert!(ix.take_log().is_empty(), "no log kept by default");
    ix.record(D0, &[1, 2], secs(0));
    assert!(ix.take_log().is_empty());
    ix.keep_log(true);
    ix.record(D0, &[1, 2], secs(1));
    ix.record(D1, &[5], secs(1)); // no cache there: nothing to tell
    ix.learn(D0, &[7], secs(1));
    assert_eq!(ix.take_log(), vec![(D0, vec![1, 2])]);
    assert!(ix.take_log().is_empty(), "taken");
    // Learned blocks are held like recorded ones, from when they were sent.
    assert_eq!(ix.cached_blocks(D0, &[7], secs(2)), 1);
    assert_eq!(ix.cached_blocks(D0, &[7], secs(602)), 0);
    for b in 0..(LOG_CAP as u64 + 5) {
        ix.record(D0, &[b], secs(3));
    }
    let log = ix.take_log();
    assert_eq!(log.len(), LOG_CAP);
    assert_eq!(log[0], (D0, vec![5]), "the oldest are dropped");
}
