//! A `bedrock` upstream: us-east-1's deployment of `M` is a local stand-in for a regional
//! Bedrock runtime that verifies SigV4 on every request (`spillway_gateway::sigv4::verify`,
//! service `bedrock`, region us-east-1, a secret only it and the test environment know), answers
//! Converse and ConverseStream (event-stream frames, delivered in odd-sized pieces) and records
//! what it received. OpenAI clients (and Bedrock ones) are served there and get their own shapes
//! back; with wrong upstream credentials the stand-in refuses (403) and the gateway fails over
//! or answers an error of its own, without the upstream's body.
//!
//! The gateway reads the upstream credentials from environment variables, and tests may not set
//! variables in their own process (`unsafe` is forbidden): each test re-runs itself, alone, in a
//! child process of this test binary with the variables set.
mod bedrock_common;
mod bedrock_stand_in;
mod common;

use bedrock_common::*;
use bedrock_stand_in::*;
use common::*;
use serde_json::{Value, json};

#[test]
fn openai_and_bedrock_clients_are_served_by_a_bedrock_upstream() {
    if !in_child(
        "openai_and_bedrock_clients_are_served_by_a_bedrock_upstream",
        UP_SECRET,
    ) {
        return;
    }
    block_on(async {
        let (url, log) = stand_in(false).await;
        let h = start(&url).await;

        // Non-streamed: translated back to an OpenAI chat completion with usage.
        let mut sent = Vec::new();
        let r = h.chat("us-east-1", body(M, 16)).await;
        sent.push(r.id.clone());
        r.assert_ok_in("us-east-1", "local");
        assert_eq!(r.json["object"], "chat.completion", "{r:?}");
        assert_eq!(r.json["choices"][0]["message"]["content"], ANSWER, "{r:?}");
        assert_eq!(r.json["choices"][0]["finish_reason"], "stop", "{r:?}");
        assert_eq!(
            r.json["usage"],
            json!({"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}),
            "{r:?}"
        );
        let seen = log.lock().expect("lock").clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(
            seen[0].verified,
            Ok(UP_AK.to_string()),
            "SigV4 checks out: {seen:?}"
        );
        // A whole answer too is asked as a stream, and assembled by the gateway.
        assert!(seen[0].path.ends_with("/converse-stream"), "{seen:?}");
        assert_eq!(seen[0].request_id.as_deref(), Some(r.id.as_str()));
        assert_eq!(seen[0].body["inferenceConfig"]["maxTokens"], 16, "{seen:?}");
        assert_eq!(
            seen[0].body["messages"],
            json!([{"role": "user", "content": [{"text": "hi"}]}]),
            "{seen:?}"
        );

        // Streamed: OpenAI chunks, the text, a usage chunk, [DONE].
        let mut b = stream_body(M, 16);
        b["stream_options"] = json!({"include_usage": true});
        let (id, resp) = h.stream("us-east-1", b).await;
        sent.push(id);
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.headers()["x-spillway-region"], "us-east-1");
        let events = Sse::new(resp).rest().await;
        assert_eq!(content_of(&events), ANSWER, "{events:?}");
        assert_eq!(
            events.last().map(String::as_str),
            Some("[DONE]"),
            "{events:?}"
        );
        let usage: Vec<Value> = events
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .filter(|v| !v["usage"].is_null())
            .collect();
        assert_eq!(usage.len(), 1, "{events:?}");
        assert_eq!(usage[0]["usage"]["completion_tokens"], 4, "{events:?}");
        assert_eq!(usage[0]["usage"]["total_tokens"], 11, "{events:?}");
        let seen = log.lock().expect("lock").clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(
            seen[1].path.ends_with("/converse-stream") && seen[1].verified.is_ok(),
            "{seen:?}"
        );

        // A Bedrock client through the gateway to the Bedrock upstream, both ways.
        let c = runtime(&h, "us-east-1", AK, SECRET);
        let cid = tag(&h, "us-east-1", KEY, M);
        sent.push(cid.clone());
        assert_eq!(converse(&c, &cid, M, 16).await.text, ANSWER);
        let sid = tag(&h, "us-east-1", KEY, M);
        sent.push(sid.clone());
        let s = converse_stream(&c, &sid, M, 16).await;
        assert_eq!(s.text, ANSWER, "{s:?}");
        assert_eq!(
            s.usage.as_ref().map(|u| u.output_tokens()),
            Some(4),
            "{s:?}"
        );

        assert_eq!(log.lock().expect("lock").len(), 4);
        assert_stand_in_residency(&h, &log, &sent);
    });
}

/// An upstream failure the client cannot fix: 5xx, or 429 (nothing eligible left).
fn refused(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || status == 429
}

#[test]
fn wrong_upstream_credentials_fail_over_or_fail_without_leaking() {
    if !in_child(
        "wrong_upstream_credentials_fail_over_or_fail_without_leaking",
        "not-the-upstream-secret",
    ) {
        return;
    }
    block_on(async {
        let (url, log) = stand_in(false).await;
        let h = start(&url).await;
        let profile = format!("us.{M}");

        // The profile fails over to another us region.
        let r = h.chat("us-east-1", body(&profile, 8)).await;
        let first = r.id.clone();
        assert_eq!(r.status.as_u16(), 200, "{r:?}");
        let served = r.region().expect("region").to_string();
        assert!(
            ["us-east-2", "us-west-2"].contains(&served.as_str()),
            "{r:?}"
        );
        assert!(
            r.reason().is_some_and(|x| x.starts_with("failover")),
            "{r:?}"
        );
        assert_eq!(h.records_for(&r.id)[0].region, served);
        let seen = log.lock().expect("lock").clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(
            seen[0]
                .verified
                .as_ref()
                .is_err_and(|e| e.contains("signature")),
            "{seen:?}"
        );

        // The plain id has nowhere else to go: an error of the gateway's own (5xx, or 429 once
        // the failing deployment is ejected and nothing eligible is left).
        let plain = h.chat("us-east-1", body(M, 8)).await;
        assert!(refused(plain.status), "{plain:?}");
        assert!(plain.json["error"]["message"].is_string(), "{plain:?}");
        assert!(
            !plain.text.contains(MARKER) && !plain.text.contains("signature"),
            "leaked: {plain:?}"
        );

        // Streaming, and the Bedrock API, alike.
        let (sid, resp) = h.stream("us-east-1", stream_body(M, 8)).await;
        assert!(refused(resp.status()), "{resp:?}");
        let text = resp.text().await.expect("body");
        assert!(!text.contains(MARKER), "leaked: {text}");
        let bearer = format!("Bearer {KEY}");
        let bid = tag(&h, "us-east-1", KEY, M);
        let r = RawReq::converse(M, 8, Auth::Header(&bearer))
            .id(&bid)
            .send(&h, "us-east-1")
            .await;
        assert!(refused(r.status), "{r:?}");
        let kind = if r.status == 429 {
            "ThrottlingException"
        } else {
            "ServiceUnavailableException"
        };
        assert_bedrock_error(&r, r.status.as_u16(), kind);
        assert!(!r.text.contains(MARKER), "leaked: {r:?}");
        assert_stand_in_residency(&h, &log, &[first, plain.id.clone(), sid, bid]);
    });
}

#[test]
fn an_upstream_stream_error_ends_the_client_stream_with_an_error() {
    if !in_child(
        "an_upstream_stream_error_ends_the_client_stream_with_an_error",
        UP_SECRET,
    ) {
        return;
    }
    block_on(async {
        let (url, log) = stand_in(true).await;
        let h = start(&url).await;
        let (id, resp) = h.stream("us-east-1", stream_body(M, 8)).await;
        assert_eq!(resp.status().as_u16(), 200, "the stream had started");
        let events = Sse::new(resp).rest().await;
        assert_eq!(content_of(&events), ANSWER, "{events:?}");
        assert_ne!(
            events.last().map(String::as_str),
            Some("[DONE]"),
            "not a clean end: {events:?}"
        );
        assert!(
            events.last().is_some_and(|e| e.contains("\"error\"")),
            "{events:?}"
        );
        assert!(
            !events.iter().any(|e| e.contains(MARKER)),
            "leaked: {events:?}"
        );
        assert_stand_in_residency(&h, &log, &[id]);
    });
}

#[test]
fn an_upstream_validation_error_reaches_an_openai_client_in_openai_shape() {
    if !in_child(
        "an_upstream_validation_error_reaches_an_openai_client_in_openai_shape",
        UP_SECRET,
    ) {
        return;
    }
    block_on(async {
        let (url, log) = stand_in(false).await;
        let h = start(&url).await;
        // A 400 from the upstream is the request's own fault: relayed to a Bedrock client with
        // the upstream's message ...
        let bearer = format!("Bearer {KEY}");
        let id = tag(&h, "us-east-1", KEY, M);
        let b = RawReq::converse(M, STAND_IN_MAX_TOKENS + 1, Auth::Header(&bearer))
            .id(&id)
            .send(&h, "us-east-1")
            .await;
        assert_bedrock_error(&b, 400, "ValidationException");
        assert!(
            b.json["message"]
                .as_str()
                .is_some_and(|m| m.contains("maxTokens")),
            "{b:?}"
        );
        // ... and to an OpenAI client in OpenAI's shape.
        let r = h.chat("us-east-1", body(M, STAND_IN_MAX_TOKENS + 1)).await;
        assert_eq!(r.status.as_u16(), 400, "{r:?}");
        assert!(
            r.json["error"]["message"].is_string(),
            "OpenAI's error shape: {r:?}"
        );
        assert_eq!(r.json["error"]["type"], "invalid_request_error", "{r:?}");
        assert_stand_in_residency(&h, &log, &[r.id.clone(), id]);
    });
}

#[test]
fn the_upstream_model_id_is_encoded_as_the_aws_sdks_encode_it() {
    if !in_child(
        "the_upstream_model_id_is_encoded_as_the_aws_sdks_encode_it",
        UP_SECRET,
    ) {
        return;
    }
    block_on(async {
        let (url, log) = stand_in(false).await;
        let h = start(&url).await;
        let r = h.chat("us-east-1", body(M, 4)).await;
        assert_eq!(r.status.as_u16(), 200, "{r:?}");
        let seen = log.lock().expect("lock").clone();
        // What aws-sdk-bedrockruntime and boto3 send for this model id.
        assert_eq!(
            seen[0].path, "/model/demo.chat-small-v1%3A0/converse-stream",
            "{seen:?}"
        );
        assert_stand_in_residency(&h, &log, std::slice::from_ref(&r.id));
    });
}

#[test]
fn a_stream_broken_on_a_sim_is_continued_on_a_bedrock_upstream_by_assistant_prefill() {
    if !in_child(
        "a_stream_broken_on_a_sim_is_continued_on_a_bedrock_upstream_by_assistant_prefill",
        UP_SECRET,
    ) {
        return;
    }
    block_on(async {
        let (url, log) = stand_in(false).await;
        // The stream starts in us-east-2 (a simulator that drops the connection after three
        // tokens); the only other region the tenant may use is us-east-1, the Bedrock stand-in,
        // which takes continuations as an assistant prefill.
        let mut s = Spec::standard();
        s.models[0].midstream = true;
        s.tenants = vec![Tenant::new("acme", KEY)];
        s.tenants[0].denied = vec!["us-west-2".into()];
        let dep = s.dep(M, "us-east-1");
        dep.upstream = Upstream::Bedrock {
            base_url: url.clone(),
            access_key_id_env: AK_ENV.to_string(),
            secret_access_key_env: SK_ENV.to_string(),
        };
        dep.continuation = Some("assistant_prefill");
        let h = Harness::start(s).await;
        h.sim("us-east-2").set_fault(spillway_sim::Fault {
            break_after_tokens: Some(3),
            ..Default::default()
        });
        let (id, resp) = h
            .stream("us-east-2", stream_body(&format!("us.{M}"), 8))
            .await;
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.headers()["x-spillway-region"], "us-east-2");
        let events = Sse::new(resp).rest().await;
        assert_eq!(
            events.last().map(String::as_str),
            Some("[DONE]"),
            "{events:?}"
        );
        let prefix = spillway_sim::completion_text(3);
        assert_eq!(
            content_of(&events),
            format!("{prefix}{ANSWER}"),
            "{events:?}"
        );
        let seen = log.lock().expect("lock").clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].verified, Ok(UP_AK.to_string()), "{seen:?}");
        assert_eq!(seen[0].request_id.as_deref(), Some(id.as_str()));
        assert_eq!(
            seen[0].body["messages"],
            json!([
                {"role": "user", "content": [{"text": "hi"}]},
                {"role": "assistant", "content": [{"text": prefix}]},
            ]),
            "the text so far, as a final assistant message: {seen:?}"
        );
        assert_eq!(
            seen[0].body["inferenceConfig"]["maxTokens"], 5,
            "8 less the 3 sent"
        );
        assert!(seen[0].body.get("continue_final_message").is_none());
        assert_stand_in_residency(&h, &log, &[id]);
    });
}
