//! The OpenAI wire and the admin surface over real HTTP: response shapes, exact usage, the
//! stream's chunk sequence, request ids in the record, errors, shutdown.
#![allow(clippy::unwrap_used)]
mod common;

use common::*;
use serde_json::{Value, json};
use spillway_proto::sse::DONE;
use spillway_proto::{ChatChunk, ChatCompletion};
use spillway_sim::{ServedRecord, SimConfig, completion_text, token_text};
use std::time::Duration;

#[tokio::test]
async fn non_streaming_completion_has_exact_usage_and_predictable_text() {
    let sim = start(fast("us-east-1")).await;
    let resp = chat(
        &sim,
        json!({"model": MODEL, "messages": messages(), "max_tokens": 7}),
    )
    .header("x-spillway-request-id", "req-ns-1")
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-sim-region"], "us-east-1");
    let c: ChatCompletion = resp.json().await.unwrap();
    assert_eq!(c.object, "chat.completion");
    assert!(c.id.starts_with("chatcmpl-"), "{}", c.id);
    assert_eq!(c.model, MODEL);
    assert_eq!(c.choices.len(), 1);
    assert_eq!(c.choices[0].message.role, "assistant");
    assert_eq!(
        c.choices[0].message.content.as_deref(),
        Some(completion_text(7).as_str())
    );
    assert_eq!(c.choices[0].finish_reason.as_deref(), Some("length"));
    let usage = c.usage.unwrap();
    let p = expected_prompt_tokens();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (p, 7, p + 7)
    );

    let rec = record(&sim, "req-ns-1").await;
    assert_eq!(rec.outcome, "ok");
    assert_eq!(
        (rec.region.as_str(), rec.model.as_str(), rec.stream),
        ("us-east-1", MODEL, false)
    );
    assert_eq!((rec.prompt_tokens, rec.completion_tokens), (p, 7));
}

#[tokio::test]
async fn default_length_stops_and_max_completion_tokens_wins() {
    let sim = start(SimConfig {
        default_max_tokens: 5,
        ..fast("eu-west-1")
    })
    .await;
    let c: ChatCompletion = chat(&sim, json!({"model": MODEL, "messages": messages()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(c.choices[0].finish_reason.as_deref(), Some("stop"));
    assert_eq!(c.usage.unwrap().completion_tokens, 5);

    let body = json!({"model": MODEL, "messages": messages(), "max_tokens": 9,
        "max_completion_tokens": 3});
    let c: ChatCompletion = chat(&sim, body).send().await.unwrap().json().await.unwrap();
    assert_eq!(c.usage.unwrap().completion_tokens, 3);
    assert_eq!(
        c.choices[0].message.content.as_deref(),
        Some(" the sea was")
    );
}

#[tokio::test]
async fn streaming_yields_role_tokens_finish_and_done_without_usage_unless_asked() {
    let sim = start(fast("us-east-2")).await;
    for include_usage in [false, true] {
        let mut body = json!({"model": MODEL, "messages": messages(), "max_tokens": 6,
            "stream": true});
        if include_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        let resp = chat(&sim, body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        assert_eq!(resp.headers()["x-sim-region"], "us-east-2");
        let events = sse_events(resp).await;
        assert_eq!(events.last().map(String::as_str), Some(DONE));
        let chunks: Vec<ChatChunk> = events[..events.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert!(
            chunks
                .iter()
                .all(|c| c.object == "chat.completion.chunk" && c.model == MODEL)
        );
        assert!(
            chunks.windows(2).all(|w| w[0].id == w[1].id),
            "one id per completion"
        );

        let first = &chunks[0].choices[0];
        assert_eq!(first.delta.role.as_deref(), Some("assistant"));
        assert_eq!(first.delta.content.as_deref(), Some(""));
        let content: Vec<&str> = chunks[1..7]
            .iter()
            .map(|c| c.choices[0].delta.content.as_deref().unwrap())
            .collect();
        assert_eq!(content, (0..6).map(token_text).collect::<Vec<_>>());
        let finish = &chunks[7].choices[0];
        assert_eq!(finish.finish_reason.as_deref(), Some("length"));
        assert_eq!(
            (finish.delta.role.as_ref(), finish.delta.content.as_ref()),
            (None, None)
        );

        if include_usage {
            assert_eq!(chunks.len(), 9);
            assert!(chunks[8].choices.is_empty());
            let u = chunks[8].usage.unwrap();
            let p = expected_prompt_tokens();
            assert_eq!(
                (u.prompt_tokens, u.completion_tokens, u.total_tokens),
                (p, 6, p + 6)
            );
        } else {
            assert_eq!(chunks.len(), 8);
            assert!(chunks.iter().all(|c| c.usage.is_none()));
        }
    }
    let served = sim.served();
    assert_eq!(served.len(), 2);
    assert!(
        served
            .iter()
            .all(|r| r.outcome == "ok" && r.stream && r.completion_tokens == 6)
    );
}

#[tokio::test]
async fn request_id_prefers_the_spillway_header() {
    let sim = start(fast("us-east-1")).await;
    let body = json!({"model": MODEL, "messages": messages(), "max_tokens": 1});
    chat(&sim, body.clone())
        .header("x-request-id", "generic")
        .header("x-spillway-request-id", "spillway")
        .send()
        .await
        .unwrap();
    chat(&sim, body.clone())
        .header("x-request-id", "only-generic")
        .send()
        .await
        .unwrap();
    chat(&sim, body).send().await.unwrap();
    let ids: Vec<Option<String>> = sim.served().into_iter().map(|r| r.request_id).collect();
    assert_eq!(
        ids,
        vec![Some("spillway".into()), Some("only-generic".into()), None]
    );
}

#[tokio::test]
async fn bad_json_is_a_400_in_openais_shape() {
    let sim = start(fast("us-east-1")).await;
    for body in ["{not json", r#"{"model":"m"}"#] {
        let resp = client()
            .post(format!("{}/chat/completions", sim.base_url()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        assert_eq!(resp.headers()["x-sim-region"], "us-east-1");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    assert!(sim.served().iter().all(|r| r.outcome == "invalid"));
}

#[tokio::test]
async fn admin_served_models_and_healthz() {
    let sim = start(fast("apac-1")).await;
    let base = format!("http://{}", sim.addr());
    let resp = client()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-sim-region"], "apac-1");
    assert_eq!(resp.text().await.unwrap(), "ok");

    let models: Value = client()
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models, json!({"object": "list", "data": []}));

    let body = json!({"model": MODEL, "messages": messages(), "max_tokens": 2});
    chat(&sim, body)
        .header("x-request-id", "x")
        .send()
        .await
        .unwrap();
    let models: Value = client()
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], MODEL);

    let served: Value = client()
        .get(format!("{base}/admin/served"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served["region"], "apac-1");
    let recs: Vec<ServedRecord> = serde_json::from_value(served["served"].clone()).unwrap();
    assert_eq!(recs, sim.served());
    assert_eq!(recs.len(), 1);

    let resp = client()
        .delete(format!("{base}/admin/served"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(sim.served().is_empty());

    let resp = client().get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-sim-region"], "apac-1");
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let sim = start(fast("us-east-1")).await;
    let addr = sim.addr();
    assert_eq!(
        client()
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // A hung request would keep a graceful shutdown waiting forever: it is answered 503.
    sim.set_fault(spillway_sim::Fault {
        hang: true,
        ..Default::default()
    });
    let hung = tokio::spawn(
        chat(&sim, json!({"model": MODEL, "messages": messages()}))
            .header("x-request-id", "hung")
            .send(),
    );
    reached_handler(&sim).await;
    sim.shutdown();
    tokio::time::timeout(Duration::from_secs(10), sim.stopped())
        .await
        .unwrap();
    assert_eq!(hung.await.unwrap().unwrap().status(), 503);
    assert_eq!(record(&sim, "hung").await.outcome, "outage");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn invalid_config_is_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cfg = SimConfig {
        concurrency: 0,
        ..SimConfig::default()
    };
    let err = spillway_sim::spawn(cfg, listener).await.unwrap_err();
    assert!(
        matches!(err, spillway_sim::SimError::InvalidConfig(_)),
        "{err}"
    );
}
