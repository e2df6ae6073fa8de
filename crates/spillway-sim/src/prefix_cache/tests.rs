use super::*;

fn ids(xs: &[u64]) -> Vec<BlockHash> {
    xs.iter().map(|x| BlockHash(*x)).collect()
}

fn lookup_of(blocks: &[u64], prompt_tokens: u64) -> Lookup {
    Lookup {
        blocks: ids(blocks),
        hit: 0,
        cached_tokens: Some(0),
        prompt_tokens,
    }
}

/// The leading blocks of `blocks` the cache holds.
fn hit(cache: &PrefixCache, blocks: &[u64]) -> usize {
    let lru = cache.lru().unwrap();
    ids(blocks).iter().take_while(|b| lru.contains(b)).count()
}

#[test]
fn the_lru_evicts_the_least_recently_used_at_capacity() {
    let mut lru = Lru::new(2);
    lru.touch(BlockHash(1));
    lru.touch(BlockHash(2));
    lru.touch(BlockHash(1));
    lru.touch(BlockHash(3));
    assert!(lru.contains(&BlockHash(1)) && lru.contains(&BlockHash(3)));
    assert!(
        !lru.contains(&BlockHash(2)),
        "2 was the least recently used"
    );
    assert_eq!((lru.len(), lru.evicted), (2, 1));
    assert_eq!(lru.by_stamp.len(), 2, "no stale stamps are kept");
}

#[test]
fn a_prefix_loses_its_tail_first() {
    let cache = PrefixCache::new(3);
    cache.insert(&lookup_of(&[10, 11, 12], 2000));
    assert_eq!(hit(&cache, &[10, 11, 12]), 3);
    // One more block evicts the least recently used: the first prompt's last block.
    cache.insert(&lookup_of(&[20], 600));
    assert_eq!(hit(&cache, &[10, 11, 12]), 2);
    assert_eq!(hit(&cache, &[20]), 1);
    let s = cache.stats();
    assert_eq!(
        (s.capacity_blocks, s.resident_blocks, s.evicted_blocks),
        (3, 3, 1)
    );
}

#[test]
fn the_hit_is_the_leading_run_only() {
    let cache = PrefixCache::new(8);
    cache.insert(&lookup_of(&[1, 3], 1100));
    assert_eq!(hit(&cache, &[1, 2, 3]), 1, "3 is present but after a miss");
    assert_eq!(hit(&cache, &[2, 1]), 0);
}

#[test]
fn the_last_prompt_token_is_always_computed() {
    assert_eq!(cached_tokens(0, 1000), 0);
    assert_eq!(cached_tokens(1, 1000), 512);
    assert_eq!(
        cached_tokens(2, 1024),
        1023,
        "a whole cached prompt still prefills one token"
    );
    assert_eq!(cached_tokens(3, 1000), 999);
    assert_eq!(cached_tokens(1, 0), 0);
    assert_eq!(cached_tokens(usize::MAX, u64::MAX), u64::MAX - 1);
}

#[test]
fn off_hashes_nothing_and_counts_prefill_only() {
    let cache = PrefixCache::new(0);
    let msgs: Vec<ChatMessage> = serde_json::from_str(&format!(
        r#"[{{"role":"user","content":"{}"}}]"#,
        "a".repeat(5000)
    ))
    .unwrap();
    let l = cache.lookup(&msgs, 1254);
    assert!(l.blocks.is_empty());
    assert_eq!((l.cached_tokens(), l.prefill_tokens()), (None, 1254));
    cache.started(&l);
    cache.insert(&l);
    assert_eq!(
        cache.stats(),
        PrefixCacheStats {
            requests: 1,
            prefill_tokens: 1254,
            ..PrefixCacheStats::default()
        }
    );
}
