//! A real OTLP/HTTP trace receiver for the tests: an HTTP server on 127.0.0.1:0 that decodes
//! each `POST /v1/traces` body as an `ExportTraceServiceRequest` (protobuf), keeps its spans
//! and answers as a collector does.
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// What the receiver got: every export request, decoded.
#[derive(Clone, Default)]
pub struct Received {
    exports: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

impl Received {
    /// How many export requests arrived.
    pub fn exports(&self) -> usize {
        self.exports.lock().expect("lock").len()
    }

    /// Every span received, with its resource's `service.name`.
    pub fn spans(&self) -> Vec<(String, Span)> {
        let exports = self.exports.lock().expect("lock");
        let mut out = Vec::new();
        for e in exports.iter() {
            for rs in &e.resource_spans {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                    .and_then(|kv| kv.value.as_ref()?.value.clone())
                    .map(|v| match v {
                        Value::StringValue(s) => s,
                        other => format!("{other:?}"),
                    })
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    out.extend(ss.spans.iter().map(|s| (service.clone(), s.clone())));
                }
            }
        }
        out
    }
}

/// Starts a receiver; returns its base URL (`http://127.0.0.1:<port>`) and what it gets.
pub async fn receiver() -> (String, Received) {
    let received = Received::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let store = store.clone();
            async move {
                match ExportTraceServiceRequest::decode(body) {
                    Ok(req) => {
                        store.exports.lock().expect("lock").push(req);
                        let ok = ExportTraceServiceResponse::default().encode_to_vec();
                        (
                            StatusCode::OK,
                            [("content-type", "application/x-protobuf")],
                            ok,
                        )
                    }
                    Err(_) => (
                        StatusCode::BAD_REQUEST,
                        [("content-type", "text/plain")],
                        b"not an ExportTraceServiceRequest".to_vec(),
                    ),
                }
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
    (format!("http://{addr}"), received)
}

/// A span attribute as text (strings as they are, numbers in decimal).
pub fn attr(span: &Span, key: &str) -> Option<String> {
    let v = span.attributes.iter().find(|kv| kv.key == key)?;
    Some(match v.value.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(i) => i.to_string(),
        Value::BoolValue(b) => b.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}
