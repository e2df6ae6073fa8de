//! OpenTelemetry traces over OTLP/HTTP, off by default (`[telemetry]`, docs/TELEMETRY.md).
//!
//! Each request is one span (kind server) with a child span per upstream attempt (kind
//! client), named and attributed after the GenAI semantic conventions ([`spans`]). The spans
//! are not opened and closed around the work: like the metrics, the log line and the audit
//! record they are written once, from the request's end-of-life record (`drive::finish`), with
//! the times the record holds. Only the ids are fixed earlier ([`context`]): the request
//! span's when its first attempt is sent (its parent is the client's `traceparent`, if any),
//! and each attempt's as it is sent, so that the `traceparent` the upstream receives names the
//! span exported for that attempt.
//!
//! Sampling is decided once per request, at the same moment: a request with a client
//! `traceparent` follows its sampled flag; another is sampled by its trace id against
//! `sampling_ratio` (the SDK's `TraceIdRatioBased`). An unsampled request still propagates its
//! context (flag `00`) and exports nothing. Export never blocks a request ([`export`]).
//!
//! With telemetry off nothing here runs: no ids are made, no header is added.
mod context;
mod export;
mod spans;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use opentelemetry::InstrumentationScope;
use opentelemetry::trace::{SpanContext, SpanKind, TraceFlags, TraceState};
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample,
    SpanProcessor,
};
use spillway_exchange::AttemptId;

pub use context::RequestTrace;
pub use export::ExportSetupError;
pub use spans::{AttemptEnd, RequestEnd};

use crate::config::TelemetryConfig;

/// How long shutdown waits for the last batch to reach the collector.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The process's trace exporter, or nothing when telemetry is off.
#[derive(Debug, Default)]
pub struct Telemetry {
    on: Option<Arc<On>>,
}

#[derive(Debug)]
struct On {
    processor: BatchSpanProcessor,
    sampler: Sampler,
    ids: RandomIdGenerator,
    scope: InstrumentationScope,
}

impl Telemetry {
    /// Telemetry off: every call is a no-op.
    pub fn off() -> Telemetry {
        Telemetry::default()
    }

    /// Start exporting as `cfg` says (off unless `enabled`).
    pub fn start(cfg: &TelemetryConfig) -> Result<Telemetry, ExportSetupError> {
        if !cfg.enabled {
            return Ok(Telemetry::off());
        }
        let processor = export::processor(cfg)?;
        tracing::info!(collector = %cfg.traces_url, service = %cfg.service_name,
            sampling_ratio = cfg.sampling_ratio, "exporting OpenTelemetry traces over OTLP/HTTP");
        Ok(Telemetry {
            on: Some(Arc::new(On {
                processor,
                sampler: Sampler::TraceIdRatioBased(cfg.sampling_ratio),
                ids: RandomIdGenerator::default(),
                scope: InstrumentationScope::builder("spillway")
                    .with_version(env!("CARGO_PKG_VERSION"))
                    .build(),
            })),
        })
    }

    pub fn is_on(&self) -> bool {
        self.on.is_some()
    }

    /// An attempt is being sent: fix its span id (and the request span's, at the first one)
    /// and return the trace-context headers to send with it (empty when telemetry is off).
    pub fn attempt_sent(&self, trace: &mut RequestTrace, attempt: AttemptId) -> HeaderMap {
        let Some(on) = &self.on else {
            return HeaderMap::new();
        };
        let request = trace
            .span
            .get_or_insert_with(|| on.new_request_span(trace.parent.as_ref()))
            .clone();
        let span = SpanContext::new(
            request.trace_id(),
            on.ids.new_span_id(),
            request.trace_flags(),
            false,
            request.trace_state().clone(),
        );
        trace.attempts.push((attempt, span.span_id()));
        context::headers_for(&span)
    }

    /// The request ended: hand its spans to the exporter (if it is sampled).
    pub fn request_ended(&self, trace: &RequestTrace, end: &RequestEnd<'_>) {
        let Some(on) = &self.on else { return };
        // A request refused before any attempt gets its span's ids now.
        let request = trace
            .span
            .clone()
            .unwrap_or_else(|| on.new_request_span(trace.parent.as_ref()));
        if !request.is_sampled() {
            return;
        }
        let max_tokens = trace.max_tokens;
        let parent = trace.parent.as_ref();
        let span = spans::request_span(end, request.clone(), parent, max_tokens, &on.scope);
        on.processor.on_end(span);
        for a in &end.attempts {
            let Some(id) = trace.attempt_span(a.attempt) else {
                continue;
            };
            let ctx = SpanContext::new(
                request.trace_id(),
                id,
                request.trace_flags(),
                false,
                request.trace_state().clone(),
            );
            let span = spans::attempt_span(end, a, ctx, &request, max_tokens, &on.scope);
            on.processor.on_end(span);
        }
    }

    /// Send what is queued and stop (waits at most a few seconds, off the async workers).
    pub async fn shutdown(&self) {
        let Some(on) = self.on.clone() else { return };
        let flushed = tokio::task::spawn_blocking(move || {
            on.processor.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
        })
        .await;
        match flushed {
            Ok(Ok(())) => tracing::info!("telemetry stopped; no span left unsent at the end"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "telemetry stopped; the spans still queued were not all exported")
            }
            Err(e) => tracing::warn!(error = %e, "telemetry: the exporter did not stop cleanly"),
        }
    }
}

impl On {
    /// A request span's context: a child of the client's span if it sent one, else the root
    /// of a new trace; sampled as the module docs say.
    fn new_request_span(&self, parent: Option<&SpanContext>) -> SpanContext {
        let (trace_id, sampled, state) = match parent {
            Some(p) => (p.trace_id(), p.is_sampled(), p.trace_state().clone()),
            None => {
                let id = self.ids.new_trace_id();
                let decision = self
                    .sampler
                    .should_sample(None, id, "", &SpanKind::Server, &[], &[])
                    .decision;
                (
                    id,
                    decision == SamplingDecision::RecordAndSample,
                    TraceState::NONE,
                )
            }
        };
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanContext::new(trace_id, self.ids.new_span_id(), flags, false, state)
    }
}
