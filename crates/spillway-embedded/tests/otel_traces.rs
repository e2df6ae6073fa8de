//! OpenTelemetry traces, end to end: a gateway in front of simulators exports to a real
//! OTLP/HTTP receiver ([`otlp`]). A request that fails over is one server span with a client
//! span per attempt, GenAI and `spillway.*` attributes; each upstream saw a `traceparent`
//! naming its attempt's span; a client's trace id is kept. With telemetry off nothing is sent
//! and no header added; queued spans are sent at shutdown; an unreachable collector costs the
//! requests nothing.
mod common;
mod otlp;

use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as OtelStatus;
use otlp::{Received, attr, receiver};
use spillway_sim::Fault;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn telemetry(endpoint: &str, enabled: bool, extra: &str) -> String {
    format!(
        "[telemetry]\nenabled = {enabled}\nendpoint = {endpoint:?}\nservice_name = \"spillway-test\"\n{extra}\n"
    )
}

/// `us-east-1` in an outage: a `us.` request from there fails over to another `us` region.
fn failing_source(h: &Harness) {
    h.sim("us-east-1").set_fault(Fault {
        outage: true,
        ..Fault::default()
    });
}

/// A chat request of `us.M` from `us-east-1` with id `id`, with a client `traceparent` if
/// given; registered for the residency check.
async fn chat_traced(h: &Harness, id: &str, traceparent: Option<&str>) -> reqwest::Response {
    let model = format!("us.{M}");
    h.register(id, "us-east-1", KEY, &model);
    let mut req = h
        .client
        .post(h.url("us-east-1", "/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-request-id", id)
        .json(&body(&model, 2));
    if let Some(tp) = traceparent {
        req = req
            .header("traceparent", tp)
            .header("tracestate", "client=1");
    }
    let resp = req.send().await.expect("gateway answers");
    assert_eq!(resp.status().as_u16(), 200);
    resp
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The request span of the trace `trace` and its attempt spans (in start order).
fn spans_of(received: &Received, trace: &str) -> Option<(Span, Vec<Span>)> {
    let spans: Vec<Span> = received
        .spans()
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| hex(&s.trace_id) == trace)
        .collect();
    let request = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)?
        .clone();
    let mut attempts: Vec<Span> = spans
        .into_iter()
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    attempts.sort_by_key(|s| s.start_time_unix_nano);
    Some((request, attempts))
}

/// The trace id of the request span whose attempts went to the simulators as `id`.
fn trace_of(h: &Harness, id: &str) -> String {
    let recs = h.records_for(id);
    let tp = recs
        .first()
        .and_then(|r| r.traceparent.clone())
        .unwrap_or_else(|| panic!("no traceparent reached the upstream: {recs:?}"));
    tp.split('-').nth(1).expect("a trace id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_over_request_is_one_server_span_with_an_attempt_span_per_region() {
    let (url, received) = receiver().await;
    let prefix = telemetry(&url, true, "export_interval_ms = 20");
    let h = Harness::start_with(Spec::standard(), &prefix).await;
    failing_source(&h);
    let client = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let resp = chat_traced(&h, "traced-1", Some(&client)).await;
    let served_in = resp.headers()["x-spillway-region"]
        .to_str()
        .expect("region")
        .to_string();
    assert_ne!(served_in, "us-east-1");
    let _ = resp.text().await;

    let mut found = None;
    eventually(
        "the request span and both attempt spans are exported",
        || {
            found = spans_of(&received, CLIENT_TRACE).filter(|(_, a)| a.len() == 2);
            found.is_some()
        },
    )
    .await;
    let (request, attempts) = found.expect("spans");
    let model = format!("us.{M}");

    // The request span: a child of the client's span, GenAI and routing attributes.
    assert_eq!(request.name, format!("chat {model}"));
    assert_eq!(hex(&request.parent_span_id), CLIENT_SPAN);
    assert_eq!(request.trace_state, "client=1");
    let want = [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.request.model", model.as_str()),
        ("gen_ai.response.model", M),
        ("gen_ai.request.max_tokens", "2"),
        ("gen_ai.usage.output_tokens", "2"),
        ("spillway.source_region", "us-east-1"),
        ("spillway.serving_region", served_in.as_str()),
        ("spillway.route_reason", "failover:server_error"),
        ("spillway.tenant", "acme"),
        ("spillway.outcome", "ok"),
        ("spillway.profile", model.as_str()),
    ];
    for (key, value) in want {
        assert_eq!(
            attr(&request, key).as_deref(),
            Some(value),
            "{key}: {request:?}"
        );
    }
    let input = prompt().to_string();
    assert_eq!(attr(&request, "gen_ai.usage.input_tokens"), Some(input));
    assert_eq!(attr(&request, "error.type"), None);
    let service: Vec<String> = received.spans().into_iter().map(|(s, _)| s).collect();
    assert!(service.iter().all(|s| s == "spillway-test"), "{service:?}");

    // One attempt span per region tried, children of the request span, inside it in time.
    let regions: Vec<Option<String>> = attempts
        .iter()
        .map(|a| attr(a, "spillway.serving_region"))
        .collect();
    assert_eq!(
        regions,
        [Some("us-east-1".to_string()), Some(served_in.clone())]
    );
    for a in &attempts {
        assert_eq!(a.parent_span_id, request.span_id, "{a:?}");
        assert_eq!(a.name, format!("chat {M}"));
        assert_eq!(attr(a, "gen_ai.provider.name").as_deref(), Some("openai"));
        assert_eq!(attr(a, "server.address").as_deref(), Some("127.0.0.1"));
        assert!(a.start_time_unix_nano >= request.start_time_unix_nano);
        assert!(a.end_time_unix_nano <= request.end_time_unix_nano);
    }
    let (failed, ok) = (&attempts[0], &attempts[1]);
    assert_eq!(attr(failed, "error.type").as_deref(), Some("server_error"));
    assert_eq!(
        failed.status.as_ref().map(|s| s.code),
        Some(OtelStatus::Error as i32)
    );
    assert_eq!(attr(failed, "gen_ai.usage.output_tokens"), None);
    assert_eq!(attr(ok, "error.type"), None);
    assert_eq!(attr(ok, "gen_ai.usage.output_tokens").as_deref(), Some("2"));
    assert_eq!(
        attr(ok, "spillway.route_reason").as_deref(),
        Some("failover:server_error")
    );
    let sim_port = h.sim(&served_in).base_url();
    let port = attr(ok, "server.port").expect("server.port");
    assert!(
        sim_port.contains(&format!(":{port}/")),
        "{sim_port} vs {port}"
    );

    // Each upstream saw a traceparent naming its attempt's span, in the client's trace.
    for a in &attempts {
        let region = attr(a, "spillway.serving_region").expect("region");
        let recs: Vec<_> = h
            .records_for("traced-1")
            .into_iter()
            .filter(|r| r.region == region)
            .collect();
        assert_eq!(recs.len(), 1, "{recs:?}");
        let want = format!("00-{CLIENT_TRACE}-{}-01", hex(&a.span_id));
        assert_eq!(recs[0].traceparent.as_deref(), Some(want.as_str()));
    }

    // Without a client traceparent the request starts a trace of its own (a root span).
    let _ = chat_traced(&h, "traced-2", None).await.text().await;
    let trace = trace_of(&h, "traced-2");
    assert_ne!(trace, CLIENT_TRACE);
    let mut root = None;
    eventually("the second request's spans are exported", || {
        root = spans_of(&received, &trace).filter(|(_, a)| a.len() == 2);
        root.is_some()
    })
    .await;
    let (request, _) = root.expect("spans");
    assert!(request.parent_span_id.is_empty(), "{request:?}");
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_still_queued_are_sent_at_shutdown() {
    let (url, received) = receiver().await;
    let audit = std::env::temp_dir().join(format!("spillway-otel-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&audit);
    let mut spec = Spec::standard();
    spec.audit = Some(audit.display().to_string());
    // Ten minutes between batches: only the shutdown can send them.
    let prefix = telemetry(&url, true, "export_interval_ms = 600000");
    let mut h = Harness::start_with(spec, &prefix).await;
    failing_source(&h);
    let _ = chat_traced(&h, "flushed-1", None).await.text().await;
    // The audit record is written after the spans were queued (drive::finish).
    eventually("the request ended", || {
        std::fs::read_to_string(&audit).is_ok_and(|t| t.contains("flushed-1"))
    })
    .await;
    assert_eq!(received.exports(), 0, "exported before the shutdown");
    let trace = trace_of(&h, "flushed-1");
    h.assert_residency();
    assert!(h.take_gateway().shutdown(Duration::from_secs(5)).await);
    let (request, attempts) = spans_of(&received, &trace).expect("sent at shutdown");
    assert_eq!(attr(&request, "spillway.outcome").as_deref(), Some("ok"));
    assert_eq!(attempts.len(), 2);
    let _ = std::fs::remove_file(&audit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_telemetry_off_nothing_is_sent_and_no_header_added() {
    let (url, received) = receiver().await;
    let prefix = telemetry(&url, false, "export_interval_ms = 20");
    let mut h = Harness::start_with(Spec::standard(), &prefix).await;
    failing_source(&h);
    let client = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let _ = chat_traced(&h, "off-1", Some(&client)).await.text().await;
    let _ = chat_traced(&h, "off-2", None).await.text().await;
    let recs: Vec<_> = ["off-1", "off-2"]
        .iter()
        .flat_map(|id| h.records_for(id))
        .collect();
    assert_eq!(recs.len(), 4, "{recs:?}");
    assert!(recs.iter().all(|r| r.traceparent.is_none()), "{recs:?}");
    h.assert_residency();
    assert!(h.take_gateway().shutdown(Duration::from_secs(5)).await);
    assert_eq!(received.exports(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_requests_propagate_their_context_and_export_nothing() {
    let (url, received) = receiver().await;
    let prefix = telemetry(&url, true, "export_interval_ms = 20\nsampling_ratio = 0.0");
    let h = Harness::start_with(Spec::standard(), &prefix).await;
    failing_source(&h);
    let _ = chat_traced(&h, "unsampled", None).await.text().await;
    for r in h.records_for("unsampled") {
        let tp = r.traceparent.expect("a traceparent");
        assert!(tp.ends_with("-00"), "not flagged unsampled: {tp}");
    }
    // A client that sampled its trace is followed, whatever the ratio.
    let client = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let _ = chat_traced(&h, "sampled", Some(&client)).await.text().await;
    eventually("the client-sampled trace is exported", || {
        spans_of(&received, CLIENT_TRACE).is_some_and(|(_, a)| a.len() == 2)
    })
    .await;
    let traces: Vec<String> = received
        .spans()
        .iter()
        .map(|(_, s)| hex(&s.trace_id))
        .collect();
    assert!(traces.iter().all(|t| t == CLIENT_TRACE), "{traces:?}");
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_costs_the_requests_nothing() {
    let (closed, _held) = closed_port_url();
    let endpoint = closed.trim_end_matches("/v1").to_string();
    let prefix = telemetry(&endpoint, true, "export_interval_ms = 10");
    let mut h = Harness::start_with(Spec::standard(), &prefix).await;
    failing_source(&h);
    for i in 0..5 {
        let id = format!("unreachable-{i}");
        let _ = chat_traced(&h, &id, None).await.text().await;
        // The first fails over; the next may skip the failing region (health).
        assert!(!h.records_for(&id).is_empty());
    }
    h.assert_residency();
    assert!(h.take_gateway().shutdown(Duration::from_secs(5)).await);
}
