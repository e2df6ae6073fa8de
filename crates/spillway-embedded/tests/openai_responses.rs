//! `/v1/responses` end to end: converted to the canonical chat request, routed by profile
//! (source first, spill when the source is full), answered as a Response object or as the
//! typed Responses stream events; function calls from an OpenAI-compatible upstream; fields
//! that do not map refused by name; a stream that breaks ends with `response.failed`.
//! Residency is checked from the simulators' records.
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{Value, json};
use spillway_sim::{Fault, completion_text};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// POST a Responses request on `source`'s listener with a fresh id (registered for residency).
async fn send(h: &Harness, source: &str, body: &Value) -> (String, reqwest::Response) {
    let id = format!("r{}", NEXT.fetch_add(1, Ordering::Relaxed));
    if let Some(m) = body["model"].as_str() {
        h.register(&id, source, KEY, m);
    }
    let resp = h
        .client
        .post(h.url(source, "/v1/responses"))
        .header("x-request-id", &id)
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .expect("gateway answers");
    (id, resp)
}

async fn create(h: &Harness, source: &str, body: Value) -> Reply {
    let (id, resp) = send(h, source, &body).await;
    let (status, headers) = (resp.status(), resp.headers().clone());
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        id,
        status,
        headers,
        text,
        json,
    }
}

/// A streamed create: the head's headers and every event's JSON.
async fn stream(
    h: &Harness,
    source: &str,
    mut body: Value,
) -> (String, reqwest::header::HeaderMap, Vec<Value>) {
    body["stream"] = json!(true);
    let (id, resp) = send(h, source, &body).await;
    assert_eq!(resp.status().as_u16(), 200);
    let mut sse = Sse::new(resp);
    let headers = sse.headers.clone();
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let events = sse
        .rest()
        .await
        .iter()
        .map(|e| serde_json::from_str(e).expect("JSON events"))
        .collect();
    (id, headers, events)
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?"))
        .collect()
}

/// The events are numbered from 0, start with created/in_progress and end with `last`.
fn assert_framing(events: &[Value], last: &str) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], json!(i), "{e}");
    }
    let t = types(events);
    assert_eq!(
        &t[..2],
        ["response.created", "response.in_progress"],
        "{t:?}"
    );
    assert_eq!(t.last(), Some(&last), "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_is_created_whole_and_streamed_in_the_source() {
    let h = Harness::start(Spec::standard()).await;
    let profile = format!("us.{M}");
    let r = create(
        &h,
        "us-east-2",
        json!({"model": profile, "input": "hi", "instructions": "be brief",
        "max_output_tokens": 5, "metadata": {"k": "v"}}),
    )
    .await;
    r.assert_ok_in("us-east-2", "local");
    let j = &r.json;
    assert_eq!(
        (j["object"].as_str(), j["status"].as_str()),
        (Some("response"), Some("incomplete")),
        "{j}"
    );
    assert_eq!(j["incomplete_details"]["reason"], "max_output_tokens");
    assert!(j["id"].as_str().is_some_and(|id| id.starts_with("resp_")));
    assert_eq!(j["output"][0]["type"], "message");
    assert_eq!(j["output"][0]["content"][0]["text"], completion_text(5));
    assert_eq!(j["metadata"], json!({"k": "v"}));
    assert_eq!(j["instructions"], "be brief");
    let rec = &h.records_for(&r.id)[0];
    assert_eq!(
        j["usage"]["input_tokens"], rec.prompt_tokens,
        "the upstream's usage"
    );
    assert_eq!(j["usage"]["output_tokens"], 5);
    let msgs: Vec<spillway_proto::ChatMessage> = serde_json::from_value(json!([
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]))
    .unwrap();
    assert_eq!(
        rec.prompt_tokens,
        spillway_proto::tokens::prompt_tokens(&msgs),
        "instructions went upstream"
    );

    // Not capped: completed.
    let r = create(
        &h,
        "eu-west-1",
        json!({"model": format!("eu.{M}"), "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "hello"}]}]}),
    )
    .await;
    r.assert_ok_in("eu-west-1", "local");
    assert_eq!(r.json["status"], "completed", "{:?}", r.json);

    // Streamed: the typed events, whose deltas make the text.
    let (id, headers, events) = stream(
        &h,
        "us-east-1",
        json!({"model": profile, "input": "hi", "max_output_tokens": 4}),
    )
    .await;
    assert_eq!(
        headers
            .get("x-spillway-region")
            .and_then(|v| v.to_str().ok()),
        Some("us-east-1")
    );
    assert_framing(&events, "response.incomplete");
    let t = types(&events);
    let deltas: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(deltas, completion_text(4));
    for kind in [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ] {
        assert_eq!(
            t.iter().filter(|k| **k == kind).count(),
            1,
            "{kind} in {t:?}"
        );
    }
    let done = events
        .iter()
        .find(|e| e["type"] == "response.output_text.done")
        .unwrap();
    assert_eq!(done["text"], completion_text(4));
    let last = &events.last().unwrap()["response"];
    assert_eq!(last["output"][0]["content"][0]["text"], completion_text(4));
    assert_eq!(last["usage"]["output_tokens"], 4);
    assert_eq!(h.records_for(&id)[0].region, "us-east-1");
    assert_eq!(h.assert_residency(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_source_spills_responses_and_a_broken_stream_ends_failed() {
    let mut spec = Spec::standard().routing("source_queue", "0");
    spec.dep(M, "us-east-1").max_in_flight = 1;
    let h = Harness::start(spec).await;
    let profile = format!("us.{M}");
    let hold = h.hold("us-east-1", &profile, "us-east-1").await;
    let r = create(
        &h,
        "us-east-1",
        json!({"model": profile, "input": "hi", "max_output_tokens": 3}),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    assert_eq!(r.reason(), Some("spill:capacity"), "{r:?}");
    let region = r.region().expect("served").to_string();
    assert!(region == "us-east-2" || region == "us-west-2", "{region}");
    drop(hold);

    // The upstream breaks after 2 tokens of a stream that reached the client.
    h.sim("us-west-2").set_fault(Fault {
        break_after_tokens: Some(2),
        ..Fault::default()
    });
    let (_, _, events) = stream(
        &h,
        "us-west-2",
        json!({"model": M, "input": "hi", "max_output_tokens": 6}),
    )
    .await;
    assert_framing(&events, "response.failed");
    let last = &events.last().unwrap()["response"];
    assert_eq!(last["status"], "failed");
    assert_eq!(last["error"]["code"], "server_error");
    assert!(
        types(&events).contains(&"response.output_text.delta"),
        "{:?}",
        types(&events)
    );
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_that_do_not_map_are_refused_by_name() {
    let h = Harness::start(Spec::standard()).await;
    for (extra, param) in [
        (
            json!({"previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (json!({"store": true}), "store"),
        (json!({"background": true}), "background"),
        (json!({"reasoning": {"effort": "high"}}), "reasoning"),
        (json!({"tools": [{"type": "web_search"}]}), "tools[0].type"),
        (
            json!({"input": [{"type": "item_reference", "id": "x"}]}),
            "input[0].type",
        ),
        (json!({"max_output_tokens": 0}), "max_output_tokens"),
        (json!({"no_such_field": 1}), "no_such_field"),
    ] {
        let mut body = json!({"model": format!("us.{M}"), "input": "hi"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = create(&h, "us-east-1", body).await;
        r.assert_error(400, "invalid_request_error");
        assert_eq!(r.json["error"]["param"], param, "{r:?}");
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains(param.split('[').next().unwrap()),
            "{r:?}"
        );
    }
    let r = create(&h, "us-east-1", json!({"model": format!("us.{M}")})).await;
    r.assert_error(400, "invalid_request_error");
    let r = create(
        &h,
        "us-east-1",
        json!({"model": "demo.nope-v1:0", "input": "hi"}),
    )
    .await;
    r.assert_error(404, "invalid_request_error");
    assert_eq!(
        h.assert_residency(),
        0,
        "no refused request reached a simulator"
    );
}

/// An OpenAI-compatible upstream that streams one function call, and keeps each request body.
async fn tool_upstream() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let bodies = seen.clone();
    let chunks = [
        json!({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}}]}),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        json!({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}),
    ];
    let mut sse = String::new();
    for mut c in chunks {
        c["id"] = json!("chatcmpl-1");
        c["object"] = json!("chat.completion.chunk");
        c["created"] = json!(1);
        c["model"] = json!("tools");
        sse.push_str(&format!("data: {c}\n\n"));
    }
    sse.push_str("data: [DONE]\n\n");
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |body: axum::body::Bytes| {
            let (bodies, sse) = (bodies.clone(), sse.clone());
            async move {
                bodies
                    .lock()
                    .expect("lock")
                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                ([("content-type", "text/event-stream")], sse)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/v1"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_call_round_trips() {
    let (url, seen) = tool_upstream().await;
    let mut spec = Spec::standard();
    spec.dep(M, "us-east-1").upstream = Upstream::OpenAi(url);
    let h = Harness::start(spec).await;
    let tools = json!([{"type": "function", "name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let r = create(
        &h,
        "us-east-1",
        json!({"model": M, "input": "weather in Paris?", "tools": tools, "tool_choice": "auto"}),
    )
    .await;
    r.assert_ok_in("us-east-1", "local");
    let call = &r.json["output"][0];
    assert_eq!(
        (call["type"].as_str(), call["status"].as_str()),
        (Some("function_call"), Some("completed")),
        "{:?}",
        r.json
    );
    assert_eq!(
        (call["call_id"].as_str(), call["name"].as_str()),
        (Some("call_1"), Some("get_weather"))
    );
    assert_eq!(call["arguments"], "{\"city\":\"Paris\"}");
    let sent = seen.lock().unwrap()[0].clone();
    assert_eq!(
        sent["tools"][0]["function"]["name"], "get_weather",
        "chat's tool shape upstream: {sent}"
    );
    assert_eq!(sent["tool_choice"], "auto");

    // Streamed: the call's argument deltas and their done event.
    let (_, _, events) = stream(
        &h,
        "us-east-1",
        json!({"model": M, "input": "weather?", "tools": tools}),
    )
    .await;
    assert_framing(&events, "response.completed");
    let args: String = events
        .iter()
        .filter(|e| e["type"] == "response.function_call_arguments.delta")
        .map(|e| e["delta"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(args, "{\"city\":\"Paris\"}");
    let done = events
        .iter()
        .find(|e| e["type"] == "response.function_call_arguments.done")
        .expect("done");
    assert_eq!(done["arguments"], args);
    assert_eq!(
        events.last().unwrap()["response"]["usage"]["total_tokens"],
        12
    );

    // The client sends the call and its output back: they reach the upstream as chat messages.
    let r = create(&h, "us-east-1", json!({"model": M, "tools": tools, "input": [
        {"role": "user", "content": "weather in Paris?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "{\"temp\":21}"}]})).await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    let sent = seen.lock().unwrap()[2].clone();
    let m = &sent["messages"];
    assert_eq!(m[1]["tool_calls"][0]["id"], "call_1", "{sent}");
    assert_eq!(
        m[2],
        json!({"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\":21}"})
    );
    h.assert_residency();
}
