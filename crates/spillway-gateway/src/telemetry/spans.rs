//! One request's spans, written at its end from what the request record holds: the request
//! span (kind server) and one child span per upstream attempt (kind client), named and
//! attributed after the OpenTelemetry GenAI semantic conventions, with Spillway's routing
//! attributes (`spillway.*`). No prompt or answer text is ever an attribute.
use std::borrow::Cow;
use std::time::SystemTime;

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use spillway_exchange::AttemptId;

/// What the end of a request tells its span.
#[derive(Debug, Clone)]
pub struct RequestEnd<'a> {
    /// `gen_ai.operation.name`: `chat` or `embeddings`.
    pub operation: &'static str,
    /// The model or profile id as the client named it.
    pub requested_model: &'a str,
    /// The model of the deployment that answered, if one did.
    pub response_model: Option<&'a str>,
    /// Input and output tokens of the answer, if it had any.
    pub usage: Option<(u64, u64)>,
    pub source_region: &'a str,
    pub serving_region: Option<&'a str>,
    pub route_reason: Option<&'a str>,
    pub tenant: Option<&'a str>,
    /// `ok`, or why not (the same label as the metrics' and the audit record's).
    pub outcome: &'a str,
    /// The inference profile the client named, if any.
    pub profile: Option<&'a str>,
    pub started: SystemTime,
    pub ended: SystemTime,
    pub attempts: Vec<AttemptEnd<'a>>,
}

/// What one upstream attempt tells its span.
#[derive(Debug, Clone)]
pub struct AttemptEnd<'a> {
    pub attempt: AttemptId,
    pub region: &'a str,
    pub route_reason: &'a str,
    /// The model name the upstream was asked for.
    pub model: &'a str,
    /// `gen_ai.provider.name`: `openai` (OpenAI-compatible upstreams and simulators) or
    /// `aws.bedrock`.
    pub provider: &'static str,
    /// The upstream's host and port.
    pub server: Option<(String, u16)>,
    pub started: SystemTime,
    pub ended: SystemTime,
    /// `None` when it succeeded; else the failure's kind, or `cancelled`.
    pub error: Option<&'a str>,
    /// Its answer is the one the client got (it carries the usage and response model).
    pub served: bool,
}

/// The request span: `spillway.*` attributes and the GenAI ones a caller would see.
pub(super) fn request_span(
    end: &RequestEnd<'_>,
    span: SpanContext,
    parent: Option<&SpanContext>,
    max_tokens: Option<u64>,
    scope: &InstrumentationScope,
) -> SpanData {
    let mut attrs = vec![
        KeyValue::new("gen_ai.operation.name", end.operation),
        KeyValue::new("gen_ai.request.model", end.requested_model.to_string()),
        KeyValue::new("spillway.source_region", end.source_region.to_string()),
        KeyValue::new("spillway.outcome", end.outcome.to_string()),
        KeyValue::new("spillway.attempts", end.attempts.len() as i64),
    ];
    let optional = [
        ("gen_ai.response.model", end.response_model),
        ("spillway.serving_region", end.serving_region),
        ("spillway.route_reason", end.route_reason),
        ("spillway.tenant", end.tenant),
        ("spillway.profile", end.profile),
    ];
    for (key, value) in optional {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            attrs.push(KeyValue::new(key, v.to_string()));
        }
    }
    push_numbers(&mut attrs, max_tokens, end.usage);
    let error = (end.outcome != "ok").then_some(end.outcome);
    SpanData {
        span_context: span,
        parent_span_id: parent.map_or(SpanId::INVALID, SpanContext::span_id),
        parent_span_is_remote: parent.is_some(),
        span_kind: SpanKind::Server,
        name: span_name(end.operation, end.requested_model),
        start_time: end.started,
        end_time: end.ended.max(end.started),
        attributes: with_error(attrs, error),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: status(error),
        instrumentation_scope: scope.clone(),
    }
}

/// An attempt's span, a child of the request span.
pub(super) fn attempt_span(
    end: &RequestEnd<'_>,
    attempt: &AttemptEnd<'_>,
    span: SpanContext,
    parent: &SpanContext,
    max_tokens: Option<u64>,
    scope: &InstrumentationScope,
) -> SpanData {
    let mut attrs = vec![
        KeyValue::new("gen_ai.operation.name", end.operation),
        KeyValue::new("gen_ai.provider.name", attempt.provider),
        KeyValue::new("gen_ai.request.model", attempt.model.to_string()),
        KeyValue::new("spillway.source_region", end.source_region.to_string()),
        KeyValue::new("spillway.serving_region", attempt.region.to_string()),
        KeyValue::new("spillway.route_reason", attempt.route_reason.to_string()),
        KeyValue::new(
            "spillway.outcome",
            attempt.error.unwrap_or("ok").to_string(),
        ),
    ];
    if let Some((host, port)) = &attempt.server {
        attrs.push(KeyValue::new("server.address", host.clone()));
        attrs.push(KeyValue::new("server.port", i64::from(*port)));
    }
    if let Some(t) = end.tenant {
        attrs.push(KeyValue::new("spillway.tenant", t.to_string()));
    }
    if let Some(p) = end.profile {
        attrs.push(KeyValue::new("spillway.profile", p.to_string()));
    }
    let usage = if attempt.served {
        attrs.push(KeyValue::new(
            "gen_ai.response.model",
            attempt.model.to_string(),
        ));
        end.usage
    } else {
        None
    };
    push_numbers(&mut attrs, max_tokens, usage);
    SpanData {
        span_context: span,
        parent_span_id: parent.span_id(),
        parent_span_is_remote: false,
        span_kind: SpanKind::Client,
        name: span_name(end.operation, attempt.model),
        start_time: attempt.started,
        end_time: attempt.ended.max(attempt.started),
        attributes: with_error(attrs, attempt.error),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: status(attempt.error),
        instrumentation_scope: scope.clone(),
    }
}

/// `{gen_ai.operation.name} {gen_ai.request.model}`, as the conventions name a GenAI span.
fn span_name(operation: &str, model: &str) -> Cow<'static, str> {
    if model.is_empty() {
        Cow::Owned(operation.to_string())
    } else {
        Cow::Owned(format!("{operation} {model}"))
    }
}

fn push_numbers(attrs: &mut Vec<KeyValue>, max_tokens: Option<u64>, usage: Option<(u64, u64)>) {
    let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    if let Some(m) = max_tokens {
        attrs.push(KeyValue::new("gen_ai.request.max_tokens", int(m)));
    }
    if let Some((input, output)) = usage {
        attrs.push(KeyValue::new("gen_ai.usage.input_tokens", int(input)));
        attrs.push(KeyValue::new("gen_ai.usage.output_tokens", int(output)));
    }
}

fn with_error(mut attrs: Vec<KeyValue>, error: Option<&str>) -> Vec<KeyValue> {
    if let Some(e) = error {
        attrs.push(KeyValue::new("error.type", e.to_string()));
    }
    attrs
}

fn status(error: Option<&str>) -> Status {
    match error {
        Some(e) => Status::error(e.to_string()),
        None => Status::Unset,
    }
}
