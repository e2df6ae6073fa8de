//! W3C trace context: the client's `traceparent`/`tracestate` read once, and the ids of one
//! request's spans fixed as its attempts are sent, so that each upstream receives a
//! `traceparent` naming the very span that is exported for its attempt at the request's end.
use http::HeaderMap;
use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use spillway_exchange::AttemptId;

/// One request's trace: its parent from the client, its own span and its attempts' spans.
#[derive(Debug, Default)]
pub struct RequestTrace {
    /// The client's span, from a valid `traceparent` (and its `tracestate`).
    pub(super) parent: Option<SpanContext>,
    /// This request's span, fixed at its first attempt (or at its end, if it had none).
    pub(super) span: Option<SpanContext>,
    /// Each attempt's span id, fixed when it was sent.
    pub(super) attempts: Vec<(AttemptId, SpanId)>,
    /// The output cap the client asked for (`gen_ai.request.max_tokens`).
    pub(super) max_tokens: Option<u64>,
}

impl RequestTrace {
    /// The client's trace context, if its headers carry a valid one; a malformed
    /// `traceparent` is ignored (the request starts a trace of its own), as the W3C
    /// recommendation says.
    pub fn from_headers(headers: &HeaderMap) -> RequestTrace {
        if !headers.contains_key("traceparent") {
            return RequestTrace::default();
        }
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let parent = cx.span().span_context().clone();
        RequestTrace {
            parent: parent.is_valid().then_some(parent),
            ..RequestTrace::default()
        }
    }

    /// Notes what the request asked for (before it is admitted, so that a refusal has it too).
    pub fn note_request(&mut self, max_tokens: Option<u64>) {
        self.max_tokens = max_tokens;
    }

    /// The span id fixed for `attempt`, if it was sent while telemetry was on.
    pub(super) fn attempt_span(&self, attempt: AttemptId) -> Option<SpanId> {
        self.attempts
            .iter()
            .find(|(a, _)| *a == attempt)
            .map(|(_, s)| *s)
    }
}

/// The `traceparent` (and `tracestate`) headers naming `span`.
pub(super) fn headers_for(span: &SpanContext) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let cx = Context::new().with_remote_span_context(span.clone());
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut headers));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{TraceFlags, TraceId, TraceState};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn a_client_traceparent_becomes_the_parent() {
        let t = RequestTrace::from_headers(&headers(&[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "vendor=abc"),
        ]));
        let p = t.parent.expect("parent");
        assert_eq!(p.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.span_id().to_string(), "00f067aa0ba902b7");
        assert!(p.is_sampled() && p.is_remote());
        assert_eq!(p.trace_state().get("vendor"), Some("abc"));
    }

    #[test]
    fn a_malformed_or_absent_traceparent_is_no_parent() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "garbage",
        ] {
            let t = RequestTrace::from_headers(&headers(&[("traceparent", bad)]));
            assert!(t.parent.is_none(), "{bad}");
        }
        assert!(
            RequestTrace::from_headers(&HeaderMap::new())
                .parent
                .is_none()
        );
    }

    #[test]
    fn headers_name_the_span_with_its_sampled_flag_and_state() {
        let state: TraceState = "k=v".parse().expect("state");
        let span = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("id"),
            SpanId::from_hex("0102030405060708").expect("id"),
            TraceFlags::SAMPLED,
            false,
            state,
        );
        let h = headers_for(&span);
        assert_eq!(
            h.get("traceparent").and_then(|v| v.to_str().ok()),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01")
        );
        assert_eq!(
            h.get("tracestate").and_then(|v| v.to_str().ok()),
            Some("k=v")
        );
    }
}
