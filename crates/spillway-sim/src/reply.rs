//! JSON answers of the simulator's routes, shared by the OpenAI surface, its streams and the
//! admin routes.
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use spillway_proto::{OpenAiErrorBody, Usage};

/// JSON of a value whose serialisation cannot fail (structs of strings and numbers).
pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| {
        tracing::error!(error = %e, "spillway-sim: serialising a response failed");
        "{}".to_string()
    })
}

pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub(crate) fn openai_error(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: &str,
) -> Response {
    json_response(status, OpenAiErrorBody::new(message, kind, code).to_json())
}

/// 429 with `Retry-After` in whole seconds (at least 1) and, as Azure OpenAI does,
/// `retry-after-ms` with the unrounded estimate.
pub(crate) fn throttled(retry_after: Duration) -> Response {
    let res = openai_error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_error",
        Some("rate_limit_exceeded"),
        "the engine's queue is full; retry later",
    );
    with_retry_after(res, retry_after)
}

fn with_retry_after(mut res: Response, retry_after: Duration) -> Response {
    let ms = retry_after.as_millis().max(1);
    let secs = ms.div_ceil(1000).max(1);
    let h = res.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from(secs as u64));
    h.insert(
        HeaderName::from_static("retry-after-ms"),
        HeaderValue::from(ms as u64),
    );
    res
}

/// The `throttle` fault's 429: with `Retry-After` when the fault names one, else without.
pub(crate) fn storm(retry_after_ms: Option<u64>) -> Response {
    let res = openai_error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_error",
        Some("rate_limit_exceeded"),
        "rate limit reached (injected)",
    );
    match retry_after_ms {
        Some(ms) => with_retry_after(res, Duration::from_millis(ms)),
        None => res,
    }
}

pub(crate) fn unavailable(message: &str) -> Response {
    openai_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        Some("service_unavailable"),
        message,
    )
}

/// A response whose body fails on its first poll: hyper then closes the connection before the
/// buffered head is flushed, so the client sees the connection drop with no response at all.
pub(crate) fn aborted_response(why: &str) -> Response {
    let err = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, why.to_string());
    let body = futures_util::stream::once(async move { Err::<Bytes, _>(err) });
    Response::new(Body::from_stream(body))
}

/// A response's `usage`. With a prefix cache (`cached` is `Some`) it also carries
/// `prompt_tokens_details.cached_tokens`, as OpenAI and vLLM report cached prompt tokens;
/// without one the usage is byte for byte what it was before the cache existed.
pub(crate) fn usage(prompt: u64, completion: u64, cached: Option<u64>) -> Usage {
    Usage {
        prompt_tokens_details: cached
            .map(|cached_tokens| spillway_proto::PromptTokensDetails { cached_tokens }),
        ..Usage::new(prompt, completion)
    }
}
