//! Failover: retryable upstream failures before the first byte reached the client move the
//! request to the next region of the set; after the first byte the stream ends with an error
//! event; non-retryable 4xx are relayed as they came; failing regions get ejected.
mod common;

use common::*;
use spillway_sim::Fault;

/// The request was tried in the source (with `outcome` there) and then served in another `us`
/// region; returns that region.
fn tried_source_then_elsewhere(h: &Harness, id: &str, outcome: &str) -> String {
    let recs = h.records_for(id);
    assert_eq!(recs.len(), 2, "{recs:?}");
    let failed = recs
        .iter()
        .find(|r| r.region == "us-east-1")
        .expect("tried");
    assert_eq!(failed.outcome, outcome, "{recs:?}");
    let ok = recs
        .iter()
        .find(|r| r.region != "us-east-1")
        .expect("served");
    assert_eq!(ok.outcome, "ok", "{recs:?}");
    ok.region.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_over_to_another_region_of_the_set() {
    let h = Harness::start(Spec::standard()).await;
    h.sim("us-east-1").set_fault(Fault {
        outage: true,
        ..Fault::default()
    });
    let r = h.chat("us-east-1", body(&format!("us.{M}"), 2)).await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    assert_eq!(r.reason(), Some("failover:server_error"));
    let served = tried_source_then_elsewhere(&h, &r.id, "outage");
    assert_eq!(r.region(), Some(served.as_str()));

    // A plain id has nowhere else to go: 503 in OpenAI's shape.
    let r = h.chat("us-east-1", body(M, 2)).await;
    r.assert_error(503, "server_error");
    assert_eq!(h.records_for(&r.id).len(), 1);
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_errors_fail_over_also_when_streaming() {
    let h = Harness::start(Spec::standard()).await;
    h.sim("us-east-1").set_fault(Fault {
        error_rate: 1.0,
        ..Fault::default()
    });
    let r = h.chat("us-east-1", body(&format!("us.{M}"), 2)).await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    assert_eq!(r.reason(), Some("failover:server_error"));
    tried_source_then_elsewhere(&h, &r.id, "error");

    let (id, resp) = h
        .stream("us-east-1", stream_body(&format!("us.{M}"), 5))
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(
        header("x-spillway-route-reason").as_deref(),
        Some("failover:server_error")
    );
    let region = header("x-spillway-region").expect("region");
    let events = Sse::new(resp).rest().await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(content_of(&events), spillway_sim::completion_text(5));
    assert_eq!(tried_source_then_elsewhere(&h, &id, "error"), region);
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_region_times_out_and_fails_over() {
    // A hung stream is bounded by first_byte_timeout_ms, and so is a hung non-streamed call
    // (the gateway streams it from the upstream and assembles the answer; see first_byte.rs).
    let h = Harness::start(
        Spec::standard()
            .routing("first_byte_timeout_ms", "300")
            .routing("request_timeout_ms", "600"),
    )
    .await;
    h.sim("us-east-1").set_fault(Fault {
        hang: true,
        ..Fault::default()
    });
    let r = h.chat("us-east-1", body(&format!("us.{M}"), 2)).await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    assert_eq!(r.reason(), Some("failover:timeout"));
    assert_ne!(r.region(), Some("us-east-1"));

    let (id, resp) = h
        .stream("us-east-1", stream_body(&format!("us.{M}"), 3))
        .await;
    let reason = resp.headers().get("x-spillway-route-reason").cloned();
    assert_eq!(
        reason.as_ref().and_then(|v| v.to_str().ok()),
        Some("failover:timeout")
    );
    let events = Sse::new(resp).rest().await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));

    // The abandoned attempts are recorded as cancelled once the gateway hung up.
    for id in [&r.id, &id] {
        eventually("the hung attempt is recorded", || {
            h.records_for(id).len() == 2
        })
        .await;
        tried_source_then_elsewhere(&h, id, "cancelled");
    }
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_fails_over() {
    let (url, _bound) = closed_port_url();
    let mut spec = Spec::standard();
    spec.dep(M, "us-east-1").upstream = Upstream::OpenAi(url);
    let h = Harness::start(spec).await;
    for stream in [false, true] {
        let mut b = body(&format!("us.{M}"), 2);
        b["stream"] = stream.into();
        let r = h.chat("us-east-1", b).await;
        assert_eq!(r.status.as_u16(), 200, "{r:?}");
        assert_eq!(r.reason(), Some("failover:connect"), "{r:?}");
        let recs = h.records_for(&r.id);
        assert_eq!(recs.len(), 1, "{recs:?}");
        assert_eq!(Some(recs[0].region.as_str()), r.region());
    }
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_region_is_ejected_and_stops_receiving_requests() {
    let spec = Spec::standard()
        .routing("failure_threshold", "3")
        .routing("base_ejection_ms", "60000")
        .routing("max_ejection_ms", "60000");
    let h = Harness::start(spec).await;
    h.sim("us-east-1").set_fault(Fault {
        outage: true,
        ..Fault::default()
    });
    let mut reasons = Vec::new();
    for _ in 0..12 {
        let r = h.chat("us-east-1", body(&format!("us.{M}"), 2)).await;
        assert_eq!(r.status.as_u16(), 200, "{r:?}");
        assert_ne!(r.region(), Some("us-east-1"));
        reasons.push(r.reason().unwrap_or_default().to_string());
    }
    // Three failures, then the region is out: no more attempts there.
    assert_eq!(h.records_in("us-east-1").len(), 3);
    assert!(
        reasons[..3].iter().all(|r| r == "failover:server_error"),
        "{reasons:?}"
    );
    assert!(
        reasons[3..].iter().all(|r| r == "spill:unhealthy"),
        "{reasons:?}"
    );

    // The region is healthy again but stays ejected until its time is up; plain ids are
    // throttled with the ejection's Retry-After meanwhile.
    h.sim("us-east-1").set_fault(Fault::default());
    let r = h.chat("us-east-1", body(M, 2)).await;
    r.assert_throttled();
    let secs: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((2..=60).contains(&secs), "{r:?}");
    assert_eq!(h.records_in("us-east-1").len(), 3);
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_break_after_the_first_byte_ends_the_stream_with_an_error_event() {
    let h = Harness::start(Spec::standard()).await;
    h.sim("us-east-1").set_fault(Fault {
        break_after_tokens: Some(3),
        ..Fault::default()
    });
    let (id, resp) = h
        .stream("us-east-1", stream_body(&format!("us.{M}"), 10))
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let mut sse = Sse::new(resp);
    let events = sse.rest().await;
    assert!(!sse.broken, "the gateway ends the stream cleanly");
    assert_eq!(content_of(&events), spillway_sim::completion_text(3));
    let last: serde_json::Value =
        serde_json::from_str(events.last().expect("events")).expect("an error event");
    assert_eq!(last["error"]["type"], "server_error", "{last}");
    assert!(last["error"]["message"].as_str().is_some(), "{last}");
    assert!(!events.iter().any(|e| e == "[DONE]"));

    // No retry after bytes reached the client: one region only.
    let recs = h.records_for(&id);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(
        (recs[0].region.as_str(), recs[0].outcome.as_str()),
        ("us-east-1", "broken")
    );

    // Before the first byte (non-streamed: the connection drops) it is a retryable failure.
    let r = h.chat("us-east-1", body(&format!("us.{M}"), 10)).await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    assert_eq!(r.reason(), Some("failover:server_error"));
    tried_source_then_elsewhere(&h, &r.id, "broken");
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_client_errors_are_relayed_as_they_came_without_failover() {
    const BODY: &str = r#"{"error":{"message":"This model's maximum context length is 8 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
    let (url, hits) = mock_upstream(400, BODY, &[]).await;
    let mut spec = Spec::standard();
    spec.dep(M, "us-east-1").upstream = Upstream::OpenAi(url);
    let h = Harness::start(spec).await;
    for model in [format!("us.{M}"), M.to_string()] {
        let r = h.chat("us-east-1", body(&model, 2)).await;
        assert_eq!(r.status.as_u16(), 400, "{r:?}");
        assert_eq!(r.text, BODY);
        assert!(h.records_for(&r.id).is_empty(), "no other region was tried");
        let seen = hits.lock().expect("lock").last().cloned().expect("a hit");
        assert_eq!(
            seen.0.as_deref(),
            Some(r.id.as_str()),
            "request id sent upstream"
        );
        assert_ne!(seen.1.as_deref(), Some(format!("Bearer {KEY}").as_str()));
    }
    assert_eq!(hits.lock().expect("lock").len(), 2);
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_429_fails_over_and_cools_the_region_down() {
    let (url, hits) = mock_upstream(
        429,
        r#"{"error":{"message":"slow down","type":"rate_limit_error","code":"rate_limit_exceeded"}}"#,
        &[("retry-after", "30")],
    )
    .await;
    let mut spec = Spec::standard();
    spec.dep(M, "us-east-1").upstream = Upstream::OpenAi(url);
    let h = Harness::start(spec).await;
    let r = h.chat("us-east-1", body(&format!("us.{M}"), 2)).await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    assert_eq!(r.reason(), Some("failover:throttled"));
    // Cooling down: the next call goes elsewhere at once, the plain id is throttled.
    let r = h.chat("us-east-1", body(&format!("us.{M}"), 2)).await;
    assert_eq!(r.reason(), Some("spill:unhealthy"), "{r:?}");
    h.chat("us-east-1", body(M, 2)).await.assert_throttled();
    assert_eq!(hits.lock().expect("lock").len(), 1);
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_non_streamed_generation_is_not_a_first_byte_timeout() {
    // A healthy upstream needs ~0.5 s to generate 5000 tokens. The gateway streams a
    // non-streamed request from the upstream, so the first-byte timeout applies to its first
    // token and to the gap between tokens, never to the whole answer (bounded by
    // request_timeout_ms, 600 s).
    let h = Harness::start(Spec::standard().routing("first_byte_timeout_ms", "200")).await;
    let r = h.chat("us-east-1", body(M, 5000)).await;
    r.assert_ok_in("us-east-1", "local");
    let r = h.chat("us-east-1", body(&format!("us.{M}"), 5000)).await;
    r.assert_ok_in("us-east-1", "local");
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_rejecting_the_gateways_credentials_is_the_deployments_fault() {
    const BODY: &str = r#"{"error":{"message":"Incorrect API key provided: sk-upst**********wxyz.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
    let (url, _hits) = mock_upstream(401, BODY, &[]).await;
    let mut spec = Spec::standard();
    spec.dep(M, "us-east-1").upstream = Upstream::OpenAi(url);
    let h = Harness::start(spec).await;
    // Another region of the set can serve the profile call.
    let r = h.chat("us-east-1", body(&format!("us.{M}"), 2)).await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    assert_ne!(r.region(), Some("us-east-1"));
    // The plain id cannot move, but the client's key is fine: not a 401, and nothing of the
    // upstream's credential in the answer.
    let r = h.chat("us-east-1", body(M, 2)).await;
    assert!(r.status.is_server_error(), "{r:?}");
    assert!(!r.text.contains("sk-upst"), "{r:?}");
    h.assert_residency();
}
