//! An upstream's report of the prompt tokens it read from its prefix cache reaches the client in
//! the client's own API: OpenAI's `usage.prompt_tokens_details.cached_tokens` (whole and
//! streamed), Anthropic's `usage.cache_read_input_tokens`, and Bedrock Converse's
//! `usage.cacheReadInputTokens` as the official AWS SDK reads it. The simulators have prefix
//! caches; each prompt is sent twice, so the second finds its blocks cached. Every request is
//! checked against its destination set from the simulators' own records.
mod bedrock_common;
mod common;

use bedrock_common::{AK, SECRET, runtime, tag, with_id};
use common::*;
use serde_json::{Value, json};

/// A prompt of `blocks` full 512-token blocks and a short tail.
fn long_text(seed: &str, blocks: usize) -> String {
    format!("{seed} ")
        .chars()
        .cycle()
        .take(2_048 * blocks + 100)
        .collect()
}

fn spec() -> Spec {
    let mut s = bedrock_common::spec();
    s.prefix_cache_blocks = Some(256);
    s
}

/// (prompt tokens, cached tokens) of an OpenAI usage object.
fn openai_cached(usage: &Value) -> (u64, u64) {
    let prompt = usage["prompt_tokens"].as_u64().expect("prompt_tokens");
    let cached = usage["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or_else(|| panic!("no cached_tokens in {usage}"));
    (prompt, cached)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_clients_see_the_cached_prompt_tokens_whole_and_streamed() {
    let h = Harness::start(spec()).await;
    let body = json!({
        "model": M,
        "messages": [{"role": "user", "content": long_text("openai whole", 3)}],
        "max_tokens": 4,
    });
    let first = h.chat("us-east-1", body.clone()).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let (prompt, cached) = openai_cached(&first.json["usage"]);
    assert_eq!(cached, 0, "nothing was cached yet");
    let second = h.chat("us-east-1", body).await;
    assert_eq!(second.status, 200, "{}", second.text);
    let (again, cached) = openai_cached(&second.json["usage"]);
    assert_eq!(again, prompt, "the prompt is counted whole");
    assert!(
        cached >= 1_024 && cached < prompt,
        "{}",
        second.json["usage"]
    );

    let streamed = json!({
        "model": M,
        "messages": [{"role": "user", "content": long_text("openai streamed", 3)}],
        "max_tokens": 4,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (_, resp) = h.stream("us-east-1", streamed.clone()).await;
        assert_eq!(resp.status(), 200);
        let events = Sse::new(resp).rest().await;
        let usage = events
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .find(|c| !c["usage"].is_null())
            .unwrap_or_else(|| panic!("no usage chunk in {events:?}"));
        seen.push(openai_cached(&usage["usage"]));
    }
    assert_eq!(seen[0].1, 0);
    assert!(seen[1].1 >= 1_024 && seen[1].1 < seen[1].0, "{seen:?}");
    assert_eq!(h.assert_residency(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_clients_see_cache_reads_apart_from_the_input() {
    let h = Harness::start(spec()).await;
    let body = json!({
        "model": M,
        "max_tokens": 4,
        "messages": [{"role": "user", "content": long_text("anthropic", 3)}],
    });
    let mut usages = Vec::new();
    for _ in 0..2 {
        let id = tag(&h, "us-east-1", KEY, M);
        let resp = h
            .client
            .post(h.url("us-east-1", "/v1/messages"))
            .header("x-request-id", &id)
            .header("x-api-key", KEY)
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
            .await
            .expect("gateway answers");
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.expect("JSON");
        usages.push(v["usage"].clone());
    }
    assert_eq!(usages[0]["cache_read_input_tokens"], 0, "{usages:?}");
    let read = usages[1]["cache_read_input_tokens"]
        .as_u64()
        .expect("a cache read");
    let input = usages[1]["input_tokens"].as_u64().expect("input_tokens");
    let whole = usages[0]["input_tokens"].as_u64().expect("input_tokens");
    // Anthropic counts the uncached input apart: the two add up to the whole prompt.
    assert!(read >= 1_024, "{usages:?}");
    assert_eq!(input + read, whole, "{usages:?}");
    assert_eq!(h.assert_residency(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_sdk_reads_cache_read_input_tokens_from_converse() {
    let h = Harness::start(spec()).await;
    let client = runtime(&h, "us-east-1", AK, SECRET);
    let profile = format!("us.{M}");
    let message = aws_sdk_bedrockruntime::types::Message::builder()
        .role(aws_sdk_bedrockruntime::types::ConversationRole::User)
        .content(aws_sdk_bedrockruntime::types::ContentBlock::Text(
            long_text("bedrock", 3),
        ))
        .build()
        .expect("message");
    let mut usages = Vec::new();
    for _ in 0..2 {
        let id = tag(&h, "us-east-1", KEY, &profile);
        let out = client
            .converse()
            .model_id(&profile)
            .messages(message.clone())
            .inference_config(bedrock_common::max_tokens(4))
            .customize()
            .mutate_request(with_id(&id))
            .send()
            .await
            .expect("converse");
        let u = out.usage().expect("usage").clone();
        usages.push(u);
    }
    assert_eq!(usages[0].cache_read_input_tokens(), Some(0), "{usages:?}");
    let read = usages[1].cache_read_input_tokens().unwrap_or_default();
    assert!(read >= 1_024, "{usages:?}");
    assert_eq!(
        usages[1].input_tokens() + read,
        usages[0].input_tokens(),
        "{usages:?}"
    );
    assert_eq!(h.assert_residency(), 2);
}
