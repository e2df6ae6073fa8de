//! The request guard: the client-side limits checked on every API request before any adapter
//! runs, each refusal rendered in the API shape of the path the client called.
//!
//! In order, cheapest first and before a byte of the body is read:
//!
//! 1. the request target longer than `max_uri_bytes` → 414;
//! 2. more than `max_headers` header lines, or more than `max_header_bytes` of them → 431;
//! 3. an `Expect` other than `100-continue` → 417;
//! 4. a `Content-Length` above `max_body_bytes` → 413 at once. hyper sends `100 Continue` only
//!    when the body is first read, so a client that announced 10 GiB and waits for
//!    `100 Continue` gets the 413 instead, and nothing of its body is read.
//!
//! Then the body is read here, whole, within `body_read_timeout_ms` and `max_body_bytes`
//! (chunked bodies have no length to check up front): a slow body gets 408, an oversized one
//! 413, and the adapters get a body that is already in memory.
//!
//! The shape follows the path: `/v1/messages` and below it Anthropic's, the rest of `/v1/…`
//! OpenAI's, every other path Bedrock's (the runtime's `/model/…` and the control plane's paths
//! alike; see [`api_for_path`]).
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::{BodyExt, Limited};

use super::Lane;
use crate::config::EdgeLimits;
use crate::error::{Api, EdgeError};

/// The limits the guard applies: the current configuration's, so a reload changes them for
/// the next request.
struct Guard<'a> {
    limits: &'a EdgeLimits,
    max_body_bytes: usize,
}

/// The API whose error shape a path gets: Anthropic's for `/v1/messages`, OpenAI's for the
/// rest of `/v1/…`, Bedrock's for every other path. Every path boto3's `bedrock` and `bedrock-runtime` clients call is outside `/v1/`
/// (`/model/…`, `/foundation-models`, `/inference-profiles`, `/listTagsForResource`,
/// `/custom-models`, `/logging/modelinvocations`, `/async-invoke`, …), so an operation
/// Spillway does not serve is answered `UnknownOperationException` in Bedrock's shape, which
/// botocore raises as a `ClientError` with that code.
pub(super) fn api_for_path(path: &str) -> Api {
    if path == "/v1/messages" || path.starts_with("/v1/messages/") {
        Api::Anthropic
    } else if path.starts_with("/v1/") || path == "/v1" {
        Api::OpenAi
    } else {
        // The runtime and the control plane share Bedrock's error shape.
        Api::Converse
    }
}

/// The middleware: check the head, then read the body within its deadline.
pub(super) async fn guard(State(lane): State<Lane>, req: Request, next: Next) -> Response {
    let api = api_for_path(req.uri().path());
    let id = request_id(req.headers());
    let (app, _) = lane.now();
    let g = Guard {
        limits: &app.cfg.edge,
        max_body_bytes: app.cfg.max_body_bytes,
    };
    if let Err(e) = g.check_head(&req) {
        return refuse(e, api, id);
    }
    let (parts, body) = req.into_parts();
    match g.read_body(body).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(e) => refuse(e, api, id),
    }
}

/// The client's `x-request-id`, when it is a short printable token (it is echoed back).
fn request_id(headers: &axum::http::HeaderMap) -> Option<HeaderValue> {
    headers
        .get("x-request-id")
        .filter(|v| v.len() <= 128 && v.as_bytes().iter().all(|b| b.is_ascii_graphic()))
        .cloned()
}

/// A refusal in the caller's shape, with its request id echoed.
fn refuse(e: EdgeError, api: Api, id: Option<HeaderValue>) -> Response {
    tracing::debug!(outcome = e.outcome(), status = %e.status(), "refused at the edge");
    let mut resp = e.into_response_for(api);
    if let Some(id) = id {
        resp.headers_mut().insert("x-request-id", id);
    }
    resp
}

impl Guard<'_> {
    fn check_head(&self, req: &Request) -> Result<(), EdgeError> {
        let l = &self.limits;
        let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
        if target > l.max_uri_bytes {
            return Err(EdgeError::UriTooLong(l.max_uri_bytes));
        }
        let headers = req.headers();
        if headers.len() > l.max_headers {
            return Err(EdgeError::HeadersTooLarge(format!(
                "The request has {} header lines; the limit is {}.",
                headers.len(),
                l.max_headers
            )));
        }
        // name, ": ", value, CRLF
        let size: usize = headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum();
        if size > l.max_header_bytes {
            return Err(EdgeError::HeadersTooLarge(format!(
                "The request headers are {size} bytes; the limit is {}.",
                l.max_header_bytes
            )));
        }
        if let Some(expect) = headers.get(header::EXPECT)
            && !expect.as_bytes().eq_ignore_ascii_case(b"100-continue")
        {
            return Err(EdgeError::ExpectationFailed);
        }
        let announced = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if announced.is_some_and(|n| n > self.max_body_bytes as u64) {
            return Err(EdgeError::PayloadTooLarge(self.max_body_bytes));
        }
        Ok(())
    }

    async fn read_body(&self, body: Body) -> Result<bytes::Bytes, EdgeError> {
        let deadline = self.limits.body_read;
        let limited = Limited::new(body, self.max_body_bytes);
        match tokio::time::timeout(deadline, limited.collect()).await {
            Err(_) => Err(EdgeError::BodyTimeout(millis(deadline))),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                Err(EdgeError::PayloadTooLarge(self.max_body_bytes))
            }
            Ok(Err(e)) => Err(EdgeError::BadRequest(format!(
                "Could not read the request body: {e}"
            ))),
        }
    }
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}
