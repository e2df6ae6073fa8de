use super::*;
use serde_json::json;
use spillway_proto::tokens::text_tokens;

fn convo(user: &str) -> Value {
    json!([
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": user}
    ])
}

fn request(body: Value) -> ChatRequest {
    serde_json::from_value(body).unwrap()
}

#[test]
fn the_hashes_are_the_published_functions() {
    // Published test vectors: SplitMix64's first output for seed 0, and FNV-1a 64 of "" and "a".
    assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
    let fnv = |s: &str| {
        let mut h = Fnv(FNV_OFFSET);
        h.bytes(s.as_bytes());
        h.0
    };
    assert_eq!(fnv(""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv("a"), 0xaf63_dc4c_8601_ec8c);
}

#[test]
fn seeded_text_is_one_estimated_token_per_word_and_spans_concatenate() {
    let fp = prompt_fingerprint(&convo("hello"));
    let text = seeded_text(7, fp, 0, 50);
    assert_eq!(text_tokens(&text), 50);
    assert_eq!(text.split_whitespace().count(), 50);
    assert!(
        text.split(' ').skip(1).all(|w| VOCAB.contains(&w)),
        "{text}"
    );
    for k in 0..=50 {
        let joined = seeded_text(7, fp, 0, k) + &seeded_text(7, fp, k, 50);
        assert_eq!(joined, text, "split at {k}");
    }
    assert_eq!(seeded_text(7, fp, 9, 3), "");
}

#[test]
fn seeded_text_depends_on_the_prompt_and_the_seed() {
    let a = prompt_fingerprint(&convo("where is capacity?"));
    let b = prompt_fingerprint(&convo("where is capacity"));
    assert_ne!(a, b);
    assert_ne!(seeded_text(1, a, 0, 32), seeded_text(1, b, 0, 32));
    assert_ne!(seeded_text(1, a, 0, 32), seeded_text(2, a, 0, 32));
    assert_ne!(
        seeded_text(1, a, 0, 32),
        completion_text(32),
        "not the VOCAB cycle"
    );
    assert_eq!(seeded_text(1, a, 0, 32), seeded_text(1, a, 0, 32));
}

#[test]
fn the_fingerprint_covers_roles_order_and_text_only() {
    let fp = |v: Value| prompt_fingerprint(&v);
    let base = fp(convo("hi"));
    // A string and the same text as parts (split anywhere, with a non-text part) are one prompt.
    let parts = json!([
        {"role": "system", "content": [{"type": "text", "text": "You are terse."}]},
        {"role": "user", "content": [{"type": "text", "text": "h"},
            {"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "i"}]}
    ]);
    assert_eq!(fp(parts.clone()), base);
    let parsed: Vec<ChatMessage> = serde_json::from_value(parts).unwrap();
    assert_eq!(
        messages_fingerprint(&parsed),
        base,
        "parsed agrees with JSON"
    );
    // Other fields are not the prompt.
    let mut named = convo("hi");
    named[1]["name"] = json!("alice");
    assert_eq!(fp(named), base);
    // The role, the order and the message boundaries are.
    assert_ne!(
        fp(json!([{"role": "system", "content": "You are terse."},
                  {"role": "assistant", "content": "hi"}])),
        base
    );
    assert_ne!(
        fp(json!([{"role": "user", "content": "hi"},
                  {"role": "system", "content": "You are terse."}])),
        base
    );
    assert_ne!(
        fp(json!([{"role": "user", "content": "ab"}])),
        fp(json!([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]))
    );
    assert_eq!(fp(json!({"not": "an array"})), fp(json!([])));
}

#[test]
fn a_plain_request_starts_its_answer_at_token_zero() {
    let mut body = json!({"model": "m", "messages": convo("hi")});
    for flag in [None, Some(false)] {
        if let Some(f) = flag {
            body["continue_final_message"] = json!(f);
        }
        let t = Text::for_request(Some(3), &request(body.clone())).unwrap();
        assert_eq!(t.continued_from, None);
        let fp = prompt_fingerprint(&convo("hi"));
        assert_eq!(t.first(6), seeded_text(3, fp, 0, 6));
    }
    let t = Text::for_request(None, &request(body)).unwrap();
    assert_eq!(t.first(6), completion_text(6));
}

#[test]
fn a_continuation_resumes_after_its_prefix_words() {
    let fp = prompt_fingerprint(&convo("hi"));
    for k in 0..8u64 {
        for (seed, whole) in [
            (Some(5), seeded_text(5, fp, 0, 12)),
            (None, completion_text(12)),
        ] {
            let prefix: String = whole.chars().take(4 * k as usize).collect();
            // The prefix as a string, and as text parts cut mid-word (the relayed deltas).
            let (a, b) = prefix.split_at(prefix.len() / 2);
            for content in [
                json!(prefix),
                json!([{"type":"text","text":a},{"type":"text","text":b}]),
            ] {
                let mut messages = convo("hi");
                messages
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"role": "assistant", "content": content}));
                let req = request(json!({"model": "m", "messages": messages,
                    "continue_final_message": true, "add_generation_prompt": false}));
                let t = Text::for_request(seed, &req).unwrap();
                assert_eq!(t.continued_from, Some(k));
                assert_eq!(prefix.clone() + &t.first(12 - k), whole, "k = {k}");
            }
        }
    }
}

#[test]
fn an_impossible_continuation_is_refused() {
    let with = |messages: Value| {
        let req = request(json!({"model": "m", "messages": messages,
            "continue_final_message": true, "add_generation_prompt": true}));
        Text::for_request(Some(1), &req)
    };
    assert_eq!(with(convo("hi")), Err(NotContinuable), "last is the user's");
    assert_eq!(with(json!([])), Err(NotContinuable), "no messages");
    assert_eq!(
        with(
            json!([{"role": "user", "content": "hi"}, {"role": "assistant",
            "tool_calls": [{"id": "c", "type": "function",
            "function": {"name": "f", "arguments": "{}"}}]}])
        ),
        Err(NotContinuable),
        "no text content"
    );
    assert!(
        with(json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]))
            .is_ok_and(|t| t.continued_from == Some(0)),
        "an empty prefix continues from the start"
    );
}
