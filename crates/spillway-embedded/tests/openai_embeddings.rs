//! `/v1/embeddings` end to end: routed by profile like chat (source first, spill when the
//! source is full), the four input forms, float and base64 vectors, `dimensions`, errors in
//! OpenAI's shape, and residency from the simulators' own records.
mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use serde_json::{Value, json};
use spillway_proto::embeddings::{EmbeddingInput, EmbeddingVector, EmbeddingsRequest};
use spillway_sim::Fault;

const E: &str = "demo.embed-v1:0";

/// The standard spec plus the embedding model `E` on a simulator in every region.
fn spec_with(upstream: Upstream) -> Spec {
    let mut spec = Spec::standard();
    for (r, _) in spec.regions.clone() {
        spec.deployments.push(Dep {
            model: E.into(),
            region: r,
            max_in_flight: 32,
            rpm: None,
            tpm: None,
            upstream: upstream.clone(),
            continuation: None,
        });
    }
    spec
}

/// `[[models]]` for `E` (the spec's own TOML knows no model kinds).
const EMBED_MODEL: &str = "[[models]]\nid = \"demo.embed-v1:0\"\nkind = \"embedding\"\n\n";

static NEXT: AtomicU64 = AtomicU64::new(0);

/// POST `body` to `path` on `source`'s listener with a fresh request id, registered for the
/// residency check.
async fn call(h: &Harness, source: &str, path: &str, key: Option<&str>, body: Value) -> Reply {
    let id = format!("e{}", NEXT.fetch_add(1, Ordering::Relaxed));
    if let Some(m) = body["model"].as_str() {
        h.register(&id, source, key.unwrap_or(KEY), m);
    }
    let mut req = h
        .client
        .post(h.url(source, path))
        .header("x-request-id", &id)
        .json(&body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.expect("gateway answers");
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

async fn embed(h: &Harness, source: &str, body: Value) -> Reply {
    call(h, source, "/v1/embeddings", Some(KEY), body).await
}

fn floats(v: &Value) -> Vec<f32> {
    match v {
        Value::String(s) => EmbeddingVector::Base64(s.clone())
            .floats()
            .expect("base64 of little-endian f32s"),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_f64().expect("a float") as f32)
            .collect(),
        other => panic!("not a vector: {other}"),
    }
}

/// What the simulators report as input tokens for `input`: the shared estimate.
fn tokens_of(input: Value) -> u64 {
    let req = EmbeddingsRequest {
        model: E.into(),
        input: serde_json::from_value::<EmbeddingInput>(input).expect("input"),
        encoding_format: None,
        dimensions: None,
        user: None,
        extra: Default::default(),
    };
    req.input_tokens()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_are_served_in_the_source_in_every_input_form_and_encoding() {
    let h = Harness::start_with(spec_with(Upstream::Sim), EMBED_MODEL).await;
    let input = json!(["the quick brown fox", "jumps"]);
    let r = embed(
        &h,
        "us-east-1",
        json!({"model": format!("us.{E}"), "input": input}),
    )
    .await;
    r.assert_ok_in("us-east-1", "local");
    assert_eq!(r.json["object"], "list");
    let data = r.json["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    let first = floats(&data[0]["embedding"]);
    assert_eq!(first.len(), 256, "the simulator's default length");
    let norm: f32 = first.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3, "{norm}");
    assert_eq!(
        (data[0]["index"].clone(), data[1]["index"].clone()),
        (json!(0), json!(1))
    );
    assert_ne!(first, floats(&data[1]["embedding"]));
    let tokens = tokens_of(input.clone());
    assert_eq!(r.json["usage"]["prompt_tokens"], tokens);
    let recs = h.records_for(&r.id);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(
        (recs[0].region.as_str(), recs[0].model.as_str()),
        ("us-east-1", E)
    );
    assert_eq!(
        (recs[0].prompt_tokens, recs[0].completion_tokens),
        (tokens, 0)
    );

    // base64 with `dimensions`, from an eu source: the same item gives the same vector.
    let b = embed(
        &h,
        "eu-west-1",
        json!({"model": format!("eu.{E}"), "input": "jumps",
        "encoding_format": "base64", "dimensions": 8}),
    )
    .await;
    b.assert_ok_in("eu-west-1", "local");
    let v = &b.json["data"][0]["embedding"];
    assert!(v.is_string(), "{b:?}");
    let f = embed(
        &h,
        "us-east-2",
        json!({"model": format!("us.{E}"), "input": ["jumps"], "dimensions": 8}),
    )
    .await;
    assert_eq!(floats(v), floats(&f.json["data"][0]["embedding"]));
    assert_eq!(floats(v).len(), 8);

    // Token ids, one array and a list of them; a plain model id is served in the source.
    let t = embed(
        &h,
        "us-west-2",
        json!({"model": E, "input": [[1, 2, 3], [4]]}),
    )
    .await;
    t.assert_ok_in("us-west-2", "local");
    assert_eq!(t.json["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(t.json["usage"]["total_tokens"], 4);
    let t = embed(&h, "eu-central-1", json!({"model": E, "input": [5, 6]})).await;
    t.assert_ok_in("eu-central-1", "local");
    assert_eq!(h.assert_residency(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_source_spills_embeddings_within_the_geography() {
    // One slot per region, slow prefill: a held request fills the source.
    let mut spec = spec_with(Upstream::SimPrefill(1000.0)).routing("source_queue", "0");
    for (r, _) in spec.regions.clone() {
        spec.dep(E, &r).max_in_flight = 1;
    }
    let h = Harness::start_with(spec, EMBED_MODEL).await;
    let source = h.sim_of(E, "us-east-1");
    source.set_fault(Fault {
        slow_factor: 500.0,
        ..Fault::default()
    });
    let held = {
        let h = &h;
        async move {
            embed(
                h,
                "us-east-1",
                json!({"model": format!("us.{E}"), "input": "hold the only slot"}),
            )
            .await
        }
    };
    let spilled = async {
        eventually("the held request is in the source's engine", || {
            source.in_flight() == 1
        })
        .await;
        let r = embed(
            &h,
            "us-east-1",
            json!({"model": format!("us.{E}"), "input": "spill me"}),
        )
        .await;
        source.set_fault(Fault::default());
        r
    };
    let (held, r) = tokio::join!(held, spilled);
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    assert_eq!(r.reason(), Some("spill:capacity"), "{r:?}");
    let region = r.region().expect("a serving region").to_string();
    assert!(
        US.contains(&region.as_str()) && region != "us-east-1",
        "{r:?}"
    );
    assert_eq!(h.records_for(&r.id)[0].region, region);
    held.assert_ok_in("us-east-1", "local");
    // A plain id cannot spill: throttled while its only region is full.
    source.set_fault(Fault {
        slow_factor: 500.0,
        ..Fault::default()
    });
    let held = embed(
        &h,
        "us-east-1",
        json!({"model": E, "input": "hold it again"}),
    );
    let refused = async {
        eventually("held again", || source.in_flight() == 1).await;
        let r = embed(&h, "us-east-1", json!({"model": E, "input": "no room"})).await;
        source.set_fault(Fault::default());
        r
    };
    let (held, r) = tokio::join!(held, refused);
    held.assert_ok_in("us-east-1", "local");
    r.assert_throttled();
    assert!(h.records_for(&r.id).is_empty());
    // The two held requests and the spilled one; the throttled one reached no simulator.
    assert_eq!(h.assert_residency(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_kinds_and_bad_input_are_refused_in_openais_shape() {
    let h = Harness::start_with(spec_with(Upstream::Sim), EMBED_MODEL).await;
    let param = |r: &Reply| r.json["error"]["param"].as_str().map(str::to_string);
    // Embeddings on a chat model, chat and Responses on an embedding model.
    let r = embed(
        &h,
        "us-east-1",
        json!({"model": format!("us.{M}"), "input": "x"}),
    )
    .await;
    r.assert_error(400, "invalid_request_error");
    assert_eq!(param(&r).as_deref(), Some("model"));
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("chat model"),
        "{r:?}"
    );
    let r = call(
        &h,
        "us-east-1",
        "/v1/chat/completions",
        Some(KEY),
        body(&format!("us.{E}"), 4),
    )
    .await;
    r.assert_error(400, "invalid_request_error");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("embedding model"),
        "{r:?}"
    );
    let r = call(
        &h,
        "us-east-1",
        "/v1/responses",
        Some(KEY),
        json!({"model": E, "input": "hi"}),
    )
    .await;
    r.assert_error(400, "invalid_request_error");
    assert_eq!(param(&r).as_deref(), Some("model"));
    // Bad input, each naming its parameter.
    for (b, p) in [
        (json!({"model": E, "input": []}), "input"),
        (json!({"model": E, "input": ["a", ""]}), "input"),
        (
            json!({"model": E, "input": "a", "encoding_format": "hex"}),
            "encoding_format",
        ),
        (
            json!({"model": E, "input": "a", "dimensions": 0}),
            "dimensions",
        ),
    ] {
        let r = embed(&h, "us-east-1", b).await;
        r.assert_error(400, "invalid_request_error");
        assert_eq!(param(&r).as_deref(), Some(p), "{r:?}");
    }
    let r = embed(&h, "us-east-1", json!({"model": E, "input": [1, "a"]})).await;
    r.assert_error(400, "invalid_request_error");
    let r = embed(&h, "us-east-1", json!({"model": E})).await;
    r.assert_error(400, "invalid_request_error");
    let r = embed(
        &h,
        "us-east-1",
        json!({"model": "demo.nope-v1:0", "input": "a"}),
    )
    .await;
    r.assert_error(404, "invalid_request_error");
    let r = embed(
        &h,
        "us-east-1",
        json!({"model": format!("eu.{E}"), "input": "a"}),
    )
    .await;
    assert_eq!(
        r.status.as_u16(),
        400,
        "an eu profile from a us source: {r:?}"
    );
    let r = call(
        &h,
        "us-east-1",
        "/v1/embeddings",
        None,
        json!({"model": E, "input": "a"}),
    )
    .await;
    r.assert_error(401, "authentication_error");
    let r = call(
        &h,
        "us-east-1",
        "/v1/embeddings",
        Some("sk-wrong"),
        json!({"model": E, "input": "a"}),
    )
    .await;
    r.assert_error(401, "authentication_error");
    assert!(
        h.records().is_empty(),
        "no refused request reached a simulator"
    );
    assert_eq!(h.assert_residency(), 0);
}
