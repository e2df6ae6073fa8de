//! Anthropic Messages end to end, over real HTTP on loopback: `POST /v1/messages` streamed and
//! not, a tool call round trip (tool_use, then tool_result, then text), Anthropic-shaped errors,
//! and InvokeModel(WithResponseStream) with an Anthropic body through the official AWS SDK.
//! Every routed request is checked against its profile's destination set, by the
//! `x-spillway-region` header and by the simulators' own records.
mod bedrock_common;
mod common;

use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::ResponseStream;
use bedrock_common::{AK, SECRET, runtime, spec, tag, with_id};
use common::*;
use serde_json::{Value, json};

fn profile() -> String {
    format!("us.{M}")
}

fn weather_tool() -> Value {
    json!([{"name": "get_weather", "description": "The weather in a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                             "required": ["city"]}}])
}

/// `POST /v1/messages` on `source` with `x-api-key` (when given), tagged with a fresh id that
/// is registered as sent for `body.model`.
async fn messages(h: &Harness, source: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
    let model = body["model"].as_str().unwrap_or_default();
    let id = tag(h, source, key.unwrap_or(KEY), model);
    let mut req = h
        .client
        .post(h.url(source, "/v1/messages"))
        .header("x-request-id", &id)
        .header("anthropic-version", "2023-06-01")
        .json(body);
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    req.send().await.expect("gateway answers")
}

/// The serving region, checked to be one of the us profile's destinations.
fn served_in_us(resp: &reqwest::Response) -> String {
    let region = resp
        .headers()
        .get("x-spillway-region")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no x-spillway-region: {resp:?}"))
        .to_string();
    assert!(US.contains(&region.as_str()), "served in {region}");
    region
}

async fn json_of(resp: reqwest::Response) -> Value {
    let text = resp.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// Every event of an Anthropic stream: (event name, data as JSON).
async fn events(resp: reqwest::Response) -> Vec<(String, Value)> {
    let text = resp.text().await.expect("body");
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let name = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_else(|| panic!("no event line: {block}"));
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or_else(|| panic!("no data line: {block}"));
            let v: Value = serde_json::from_str(data).expect("JSON data");
            assert_eq!(v["type"], name, "the event name is the data's type");
            (name.to_string(), v)
        })
        .collect()
}

fn user_hi(max_tokens: u64, stream: bool) -> Value {
    json!({"model": profile(), "max_tokens": max_tokens, "stream": stream,
           "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_answers_whole_and_streamed_inside_the_profile() {
    let h = Harness::start(spec()).await;
    let resp = messages(&h, "us-east-1", Some(KEY), &user_hi(7, false)).await;
    assert_eq!(resp.status().as_u16(), 200);
    served_in_us(&resp);
    assert!(resp.headers().contains_key("request-id"));
    let m = json_of(resp).await;
    assert_eq!(
        (m["type"].as_str(), m["role"].as_str()),
        (Some("message"), Some("assistant"))
    );
    assert!(
        m["id"].as_str().is_some_and(|id| id.starts_with("msg_")),
        "{m}"
    );
    assert_eq!(m["model"], profile());
    assert_eq!(
        m["content"],
        json!([{"type": "text", "text": spillway_sim::completion_text(7)}])
    );
    assert_eq!(m["stop_reason"], "max_tokens");
    assert_eq!(m["usage"]["output_tokens"], 7);
    assert!(m["usage"]["input_tokens"].as_u64().is_some_and(|n| n > 0));

    // `Authorization: Bearer` works as well as `x-api-key`.
    let id = tag(&h, "us-west-2", KEY, &profile());
    let resp = h
        .client
        .post(h.url("us-west-2", "/v1/messages"))
        .header("x-request-id", &id)
        .bearer_auth(KEY)
        .json(&user_hi(3, false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    served_in_us(&resp);

    let resp = messages(&h, "us-east-2", Some(KEY), &user_hi(5, true)).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    served_in_us(&resp);
    let ev = events(resp).await;
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["message_start", "ping", "content_block_start"]
            .into_iter()
            .chain(std::iter::repeat_n("content_block_delta", 5))
            .chain(["content_block_stop", "message_delta", "message_stop"])
            .collect::<Vec<_>>()
    );
    let text: String = ev
        .iter()
        .filter_map(|(_, v)| v["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, spillway_sim::completion_text(5));
    let delta = &ev[ev.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta["usage"]["output_tokens"], 5);
    assert_eq!(h.assert_residency(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_round_trips_streamed_and_not() {
    let h = Harness::start(spec()).await;
    let ask = json!({"model": profile(), "max_tokens": 64, "tools": weather_tool(),
                     "tool_choice": {"type": "tool", "name": "get_weather"},
                     "messages": [{"role": "user", "content": "Weather in Paris?"}]});
    let resp = messages(&h, "us-east-1", Some(KEY), &ask).await;
    assert_eq!(resp.status().as_u16(), 200);
    served_in_us(&resp);
    let m = json_of(resp).await;
    assert_eq!(m["stop_reason"], "tool_use", "{m}");
    let call = &m["content"][0];
    assert_eq!(
        (call["type"].as_str(), call["name"].as_str()),
        (Some("tool_use"), Some("get_weather"))
    );
    assert_eq!(call["input"], json!({"city": "spillway"}));
    let call_id = call["id"].as_str().expect("tool_use id").to_string();

    // Streamed: the same call, its input as input_json_delta fragments.
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    let resp = messages(&h, "us-east-1", Some(KEY), &streamed).await;
    served_in_us(&resp);
    let ev = events(resp).await;
    let start = ev
        .iter()
        .find(|(n, _)| n == "content_block_start")
        .expect("a block");
    assert_eq!(start.1["content_block"]["type"], "tool_use");
    assert_eq!(start.1["content_block"]["name"], "get_weather");
    let input: String = ev
        .iter()
        .filter_map(|(_, v)| v["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&input).unwrap(),
        json!({"city": "spillway"})
    );
    let delta = ev
        .iter()
        .find(|(n, _)| n == "message_delta")
        .expect("message_delta");
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");

    // The result goes back; the answer is text.
    let mut back = ask.clone();
    back["messages"] = json!([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "20C, sunny"}]}
    ]);
    back["max_tokens"] = json!(6);
    let resp = messages(&h, "us-west-2", Some(KEY), &back).await;
    assert_eq!(resp.status().as_u16(), 200);
    served_in_us(&resp);
    let m = json_of(resp).await;
    assert_eq!(
        m["content"],
        json!([{"type": "text", "text": spillway_sim::completion_text(6)}])
    );
    assert_eq!(h.assert_residency(), 3);
}

/// An error answer: its status, Anthropic's shape and type.
async fn assert_anthropic_error(resp: reqwest::Response, status: u16, kind: &str) -> String {
    assert_eq!(resp.status().as_u16(), status, "{resp:?}");
    let v = json_of(resp).await;
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], kind, "{v}");
    v["error"]["message"]
        .as_str()
        .expect("a message")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_come_in_anthropics_shape() {
    let mut s = spec();
    s.max_body_bytes = Some(4096);
    let h = Harness::start(s).await;
    let r = messages(&h, "us-east-1", Some("sk-wrong"), &user_hi(3, false)).await;
    let msg = assert_anthropic_error(r, 401, "authentication_error").await;
    assert!(!msg.contains("sk-wrong"), "the key is not echoed: {msg}");
    let r = messages(&h, "us-east-1", None, &user_hi(3, false)).await;
    assert_anthropic_error(r, 401, "authentication_error").await;

    let mut no_cap = user_hi(3, false);
    no_cap.as_object_mut().unwrap().remove("max_tokens");
    let r = messages(&h, "us-east-1", Some(KEY), &no_cap).await;
    let msg = assert_anthropic_error(r, 400, "invalid_request_error").await;
    assert!(msg.contains("max_tokens"), "{msg}");

    let mut thinking = user_hi(3, false);
    thinking["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    let r = messages(&h, "us-east-1", Some(KEY), &thinking).await;
    let msg = assert_anthropic_error(r, 400, "invalid_request_error").await;
    assert!(msg.contains("thinking"), "{msg}");

    let mut unknown = user_hi(3, false);
    unknown["model"] = json!("us.no-such-model");
    let r = messages(&h, "us-east-1", Some(KEY), &unknown).await;
    assert_anthropic_error(r, 404, "not_found_error").await;

    let mut big = user_hi(3, false);
    big["messages"][0]["content"] = json!("x".repeat(8192));
    let r = messages(&h, "us-east-1", Some(KEY), &big).await;
    assert_anthropic_error(r, 413, "request_too_large").await;

    let r = h
        .client
        .post(h.url("us-east-1", "/v1/messages/batches"))
        .header("x-api-key", KEY)
        .json(&user_hi(3, false))
        .send()
        .await
        .unwrap();
    assert_anthropic_error(r, 404, "not_found_error").await;
    let r = h
        .client
        .get(h.url("us-east-1", "/v1/messages"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "POST");
    assert_anthropic_error(r, 405, "invalid_request_error").await;
    assert_eq!(
        h.assert_residency(),
        0,
        "no refused request reached a simulator"
    );
}

fn anthropic_body(max_tokens: u64) -> Blob {
    let b = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": max_tokens,
                   "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]});
    Blob::new(serde_json::to_vec(&b).expect("json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_with_an_anthropic_body_answers_in_anthropics_shape() {
    let h = Harness::start(spec()).await;
    let c = runtime(&h, "us-east-1", AK, SECRET);
    let id = tag(&h, "us-east-1", KEY, &profile());
    let out = c
        .invoke_model()
        .model_id(profile())
        .content_type("application/json")
        .body(anthropic_body(4))
        .customize()
        .mutate_request(with_id(&id))
        .send()
        .await
        .expect("invoke_model");
    let m: Value = serde_json::from_slice(out.body().as_ref()).unwrap();
    assert_eq!(m["type"], "message", "{m}");
    assert_eq!(m["content"][0]["text"], spillway_sim::completion_text(4));
    assert_eq!(m["usage"]["output_tokens"], 4);
    let served = h.records_for(&id);
    assert_eq!(served.len(), 1);
    assert!(US.contains(&served[0].region.as_str()));

    let id = tag(&h, "us-east-1", KEY, &profile());
    let mut out = c
        .invoke_model_with_response_stream()
        .model_id(profile())
        .content_type("application/json")
        .body(anthropic_body(3))
        .customize()
        .mutate_request(with_id(&id))
        .send()
        .await
        .expect("invoke_model_with_response_stream");
    let mut ev = Vec::new();
    while let Some(e) = tokio::time::timeout(DEADLINE, out.body.recv())
        .await
        .unwrap()
        .unwrap()
    {
        let ResponseStream::Chunk(p) = e else {
            panic!("unexpected {e:?}")
        };
        ev.push(serde_json::from_slice::<Value>(p.bytes().unwrap().as_ref()).unwrap());
    }
    let types: Vec<&str> = ev.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types.first(), Some(&"message_start"));
    assert_eq!(types.last(), Some(&"message_stop"));
    let text: String = ev
        .iter()
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, spillway_sim::completion_text(3));
    let metrics = &ev.last().unwrap()["amazon-bedrock-invocationMetrics"];
    assert_eq!(metrics["outputTokenCount"], 3);
    assert!(metrics["inputTokenCount"].as_u64().is_some_and(|n| n > 0));

    // A field it cannot honour: Bedrock's ValidationException, naming it.
    let bad = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 3, "top_k": 1,
                     "thinking": {"type": "enabled", "budget_tokens": 2000},
                     "messages": [{"role": "user", "content": "hi"}]});
    let err = c
        .invoke_model()
        .model_id(profile())
        .body(Blob::new(serde_json::to_vec(&bad).unwrap()))
        .send()
        .await
        .expect_err("refused");
    let se = err.into_service_error();
    assert!(se.is_validation_exception(), "{se:?}");
    assert!(format!("{se:?}").contains("thinking"), "{se:?}");
    assert_eq!(h.assert_residency(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_broken_mid_answer_is_continued_as_one_anthropic_message() {
    let mut s = spec();
    s.models[0].midstream = true;
    s.text_seed = Some(41);
    let h = Harness::start(s).await;
    h.sim("us-east-1").set_fault(spillway_sim::Fault {
        error_event_after_tokens: Some(2),
        ..Default::default()
    });
    let resp = messages(&h, "us-east-1", Some(KEY), &user_hi(6, true)).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["x-spillway-region"], "us-east-1");
    let ev = events(resp).await;
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    // One message, as if nothing had happened: one start, six deltas, one stop.
    assert_eq!(
        names,
        ["message_start", "ping", "content_block_start"]
            .into_iter()
            .chain(std::iter::repeat_n("content_block_delta", 6))
            .chain(["content_block_stop", "message_delta", "message_stop"])
            .collect::<Vec<_>>()
    );
    let text: String = ev
        .iter()
        .filter_map(|(_, v)| v["delta"]["text"].as_str())
        .collect();
    let prompt = json!([{"role": "user", "content": "hi"}]);
    let unbroken = spillway_sim::seeded_text(41, spillway_sim::prompt_fingerprint(&prompt), 0, 6);
    assert_eq!(text, unbroken, "token for token the unbroken answer");
    let delta = &ev[ev.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta["usage"]["output_tokens"], 6, "both legs' output");
    let continued: Vec<_> = h
        .records()
        .into_iter()
        .filter(|r| r.continued_from.is_some())
        .collect();
    assert_eq!(continued.len(), 1, "{continued:?}");
    assert_eq!(continued[0].continued_from, Some(2));
    assert_ne!(continued[0].region, "us-east-1");
    h.assert_residency();
}
