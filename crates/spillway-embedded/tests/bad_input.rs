//! Requests the gateway refuses itself: each answered in OpenAI's error shape, and none of them
//! reaches a simulator.
mod common;

use common::*;
use serde_json::{Value, json};

/// A model callable only through an inference profile.
const ONLY: &str = "demo.profile-only-v1:0";

async fn start() -> Harness {
    let mut spec = Spec::standard();
    spec.add_model(ONLY, true, None);
    spec.max_body_bytes = Some(2048);
    Harness::start(spec).await
}

/// Nothing reached any simulator (and the residency check agrees).
fn nothing_served(h: &Harness) {
    assert_eq!(h.assert_residency(), 0, "{:?}", h.records());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_incomplete_bodies_are_400() {
    let h = start().await;
    let raw = |b: &str| b.as_bytes().to_vec();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("malformed JSON", raw(r#"{"model": "x", "messages": ["#)),
        ("not JSON", raw("model=x")),
        ("missing messages", raw(&format!(r#"{{"model": "{M}"}}"#))),
        (
            "missing model",
            raw(r#"{"messages": [{"role": "user", "content": "hi"}]}"#),
        ),
        (
            "empty messages",
            raw(&format!(r#"{{"model": "{M}", "messages": []}}"#)),
        ),
        (
            "messages of the wrong type",
            raw(&format!(r#"{{"model": "{M}", "messages": "hi"}}"#)),
        ),
        (
            "max_tokens 0",
            serde_json::to_vec(&body(M, 0)).expect("json"),
        ),
    ];
    for (what, bytes) in cases {
        let (id, resp) = h.post("us-east-1", Some(KEY), bytes, None).await;
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 400, "{what}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{what}: {v}");
        assert!(v["error"]["message"].as_str().is_some(), "{what}: {v}");
        assert!(h.records_for(&id).is_empty(), "{what}");
    }
    nothing_served(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_models_profiles_of_another_geography_and_profile_only_ids() {
    let h = start().await;
    let r = h.chat("us-east-1", body("demo.nonexistent-v9:0", 2)).await;
    r.assert_error(404, "invalid_request_error");
    assert_eq!(r.json["error"]["code"], "model_not_found");

    for name in [format!("eu.{M}"), format!("apac.{M}"), format!("eu.{ONLY}")] {
        let r = h.chat("us-east-1", body(&name, 2)).await;
        assert!([400, 404].contains(&r.status.as_u16()), "{name}: {r:?}");
        if name.starts_with("eu.") {
            r.assert_error(400, "invalid_request_error");
        }
    }
    let r = h.chat("eu-west-1", body(&format!("us.{M}"), 2)).await;
    r.assert_error(400, "invalid_request_error");

    let r = h.chat("us-east-1", body(ONLY, 2)).await;
    r.assert_error(400, "invalid_request_error");
    assert_eq!(
        r.json["error"]["message"],
        format!(
            "Invocation of model ID {ONLY} with on-demand throughput isn't supported. Retry \
             your request with the ID or ARN of an inference profile that contains this model."
        )
    );
    nothing_served(&h);

    // The same model through its profile is served.
    let r = h.chat("us-east-1", body(&format!("us.{ONLY}"), 2)).await;
    r.assert_ok_in("us-east-1", "local");
    assert_eq!(h.assert_residency(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413() {
    let h = start().await;
    let mut b = body(M, 2);
    b["messages"][0]["content"] = json!("x".repeat(4096));
    let bytes = serde_json::to_vec(&b).expect("json");
    assert!(bytes.len() > 4096);
    let (id, resp) = h.post("us-east-1", Some(KEY), bytes, Some(M)).await;
    assert_eq!(resp.status().as_u16(), 413);
    let v: Value = resp.json().await.expect("json error");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert!(h.records_for(&id).is_empty());

    // Just under the limit is fine.
    b["messages"][0]["content"] = json!("x".repeat(1024));
    let r = h.chat("us-east-1", b).await;
    r.assert_ok_in("us-east-1", "local");
    assert_eq!(h.assert_residency(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_keys_are_401_on_every_route() {
    let h = start().await;
    for key in [None, Some("sk-wrong"), Some("")] {
        let r = h.chat_as("us-east-1", key, body(M, 2)).await;
        r.assert_error(401, "authentication_error");
    }
    let basic = h
        .client
        .post(h.url("us-east-1", "/v1/chat/completions"))
        .header("authorization", format!("Basic {KEY}"))
        .json(&body(M, 2))
        .send()
        .await
        .expect("answer");
    assert_eq!(basic.status().as_u16(), 401);

    for key in [None, Some("sk-wrong")] {
        let mut req = h.client.get(h.url("us-east-1", "/v1/models"));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.expect("answer");
        assert_eq!(resp.status().as_u16(), 401);
        let v: Value = resp.json().await.expect("json");
        assert_eq!(v["error"]["type"], "authentication_error", "{v}");
    }
    nothing_served(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_what_is_callable_from_the_listener_region() {
    let h = start().await;
    let list = |region: &'static str| {
        let h = &h;
        async move {
            let v: Value = h
                .client
                .get(h.url(region, "/v1/models"))
                .bearer_auth(KEY)
                .send()
                .await
                .expect("answer")
                .json()
                .await
                .expect("json");
            assert_eq!(v["object"], "list");
            v["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|m| m["id"].as_str().expect("id").to_string())
                .collect::<Vec<_>>()
        }
    };
    let us = list("us-east-1").await;
    for id in [
        M.to_string(),
        format!("us.{M}"),
        format!("global.{M}"),
        format!("us.{ONLY}"),
        format!("global.{ONLY}"),
    ] {
        assert!(us.contains(&id), "{id} missing from {us:?}");
    }
    assert!(
        !us.contains(&ONLY.to_string()),
        "profile-only id listed: {us:?}"
    );
    assert!(!us.iter().any(|id| id.starts_with("eu.")), "{us:?}");

    let eu = list("eu-west-1").await;
    assert!(eu.contains(&format!("eu.{M}")), "{eu:?}");
    assert!(!eu.iter().any(|id| id.starts_with("us.")), "{eu:?}");

    let resp = h
        .client
        .get(h.url("us-east-1", "/v1/nope"))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status().as_u16(), 404);
    let v: Value = resp.json().await.expect("json");
    assert!(v["error"]["type"].is_string(), "{v}");
    nothing_served(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_scheme_is_case_insensitive_on_every_route() {
    let h = start().await;
    h.register("lowercase-scheme", "us-east-1", KEY, M);
    let chat = h
        .client
        .post(h.url("us-east-1", "/v1/chat/completions"))
        .header("x-request-id", "lowercase-scheme")
        .header("authorization", format!("bearer {KEY}"))
        .json(&body(M, 2))
        .send()
        .await
        .expect("answer");
    assert_eq!(chat.status().as_u16(), 200);
    let models = h
        .client
        .get(h.url("us-east-1", "/v1/models"))
        .header("authorization", format!("bearer {KEY}"))
        .send()
        .await
        .expect("answer");
    assert_eq!(models.status().as_u16(), 200);
    h.assert_residency();
}
