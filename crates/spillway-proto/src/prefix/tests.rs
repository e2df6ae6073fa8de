use super::*;
use proptest::prelude::*;
use xxhash_rust::xxh3::xxh3_64;

fn msgs(json: &str) -> Vec<ChatMessage> {
    serde_json::from_str(json).unwrap()
}

/// The chain as the module docs write it, from the joined text (no streaming).
fn reference(text: &str) -> Vec<BlockHash> {
    let chars: Vec<char> = text.chars().collect();
    let mut parent = 0u64;
    chars
        .chunks_exact(BLOCK_CHARS)
        .map(|block| {
            let mut bytes = parent.to_le_bytes().to_vec();
            bytes.extend(block.iter().collect::<String>().as_bytes());
            parent = xxh3_64(&bytes);
            BlockHash(parent)
        })
        .collect()
}

#[test]
fn block_size_is_the_token_rule() {
    assert_eq!(BLOCK_CHARS as u64, BLOCK_TOKENS * 4);
}

#[test]
fn ids_follow_the_documented_chain() {
    let text: String = (0..3 * BLOCK_CHARS + 100)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let ids = text_block_hashes(&text);
    assert_eq!(ids.len(), 3);
    assert_eq!(ids, reference(&text));
    // Pinned: the gateway and every simulator must compute these same ids, across versions.
    assert_eq!(
        text_block_hashes(&"a".repeat(BLOCK_CHARS)),
        vec![BlockHash(PINNED_A_BLOCK)]
    );
}

/// The id of a block of 2048 `a`s (parent 0): `XXH3_64bits` of eight zero bytes and 2048 `a`s,
/// as the C reference library (libxxhash 0.8) computes it.
const PINNED_A_BLOCK: u64 = 14_477_713_882_389_156_639;

#[test]
fn only_full_blocks_get_an_id() {
    assert!(text_block_hashes("").is_empty());
    assert!(text_block_hashes(&"x".repeat(BLOCK_CHARS - 1)).is_empty());
    assert_eq!(text_block_hashes(&"x".repeat(BLOCK_CHARS)).len(), 1);
    assert_eq!(text_block_hashes(&"x".repeat(2 * BLOCK_CHARS - 1)).len(), 1);
}

#[test]
fn multi_byte_characters_count_as_characters() {
    // 'é' is 2 bytes, '€' 3, '𝄞' 4: a block is 2048 of them all the same.
    for c in ['é', '€', '𝄞'] {
        let s: String = std::iter::repeat_n(c, BLOCK_CHARS).collect();
        assert_eq!(text_block_hashes(&s).len(), 1, "{c}");
        assert!(text_block_hashes(&s[..s.len() - c.len_utf8()]).is_empty());
    }
    let mixed: String = "aé€𝄞".chars().cycle().take(2 * BLOCK_CHARS + 3).collect();
    assert_eq!(text_block_hashes(&mixed), reference(&mixed));
}

#[test]
fn canonical_text_is_role_newline_text_newline() {
    let m = msgs(
        r#"[{"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"ab"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"cd"}]},
            {"role":"assistant"}]"#,
    );
    assert_eq!(
        canonical_text(&m),
        "system\nbe brief\nuser\nabcd\nassistant\n\n"
    );
}

#[test]
fn message_hashes_are_the_canonical_texts() {
    let long = "word ".repeat(1000);
    let m = msgs(&format!(
        r#"[{{"role":"system","content":"{long}"}},{{"role":"user","content":[{{"type":"text","text":"{long}"}}]}}]"#
    ));
    let ids = block_hashes(&m);
    assert_eq!(ids.len(), (7 + 5000 + 1 + 5 + 5000 + 1) / BLOCK_CHARS);
    assert_eq!(ids, text_block_hashes(&canonical_text(&m)));
    // The role is part of the prompt.
    let as_user = msgs(&format!(
        r#"[{{"role":"user","content":"{long}"}},{{"role":"user","content":"{long}"}}]"#
    ));
    assert_ne!(block_hashes(&as_user)[0], ids[0]);
}

/// Texts of a few blocks over an alphabet with 1- to 4-byte characters.
fn text(max_chars: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!['a', 'b', ' ', 'é', '€', '𝄞']),
        0..max_chars,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_split_into_pieces_hashes_the_same(s in text(5 * BLOCK_CHARS), cuts in prop::collection::vec(0usize..20_000, 0..8)) {
        let mut at: Vec<usize> = cuts.into_iter().map(|c| c % (s.len() + 1)).filter(|c| s.is_char_boundary(*c)).collect();
        at.sort_unstable();
        let mut h = BlockHasher::new();
        let mut from = 0;
        for c in at.into_iter().chain(std::iter::once(s.len())) {
            h.update(&s[from..c]);
            from = c;
        }
        prop_assert_eq!(h.blocks().len(), s.chars().count() / BLOCK_CHARS);
        prop_assert_eq!(h.finish(), reference(&s));
    }

    #[test]
    fn a_shared_prefix_shares_its_leading_ids(p in text(4 * BLOCK_CHARS), a in text(2 * BLOCK_CHARS), b in text(2 * BLOCK_CHARS)) {
        let (x, y) = (text_block_hashes(&(p.clone() + &a)), text_block_hashes(&(p.clone() + &b)));
        let full = p.chars().count() / BLOCK_CHARS;
        prop_assert_eq!(&x[..full], &y[..full]);
    }

    #[test]
    fn a_change_in_block_k_changes_ids_from_k_on(s in text(6 * BLOCK_CHARS), pick in any::<prop::sample::Index>()) {
        let chars: Vec<char> = s.chars().collect();
        prop_assume!(!chars.is_empty());
        let i = pick.index(chars.len());
        let mut changed = chars.clone();
        changed[i] = if chars[i] == 'z' { 'y' } else { 'z' };
        let changed: String = changed.into_iter().collect();
        let (before, after) = (text_block_hashes(&s), text_block_hashes(&changed));
        prop_assert_eq!(before.len(), after.len());
        let k = i / BLOCK_CHARS;
        for j in 0..before.len() {
            if j < k {
                prop_assert_eq!(before[j], after[j], "block {} before the change at {}", j, k);
            } else {
                prop_assert_ne!(before[j], after[j], "block {} from the change at {}", j, k);
            }
        }
    }
}
