//! Every [`EdgeError`] in Anthropic's shape: the status Anthropic uses and
//! `{"type": "error", "error": {"type", "message"}}`.
//!
//! | EdgeError | status | `error.type` |
//! | --- | --- | --- |
//! | bad key (`Unauthorized`, `AwsAuth`) | 401 | `authentication_error` |
//! | `BadRequest`, `InvalidParam`, `NotCallableHere`, `ProfileOnly`, `Conflict`, limits of the head | 400 (or the limit's own 409/414/417/431) | `invalid_request_error` |
//! | `Forbidden` (a denied region) | 403 | `permission_error` |
//! | `ModelNotFound`, `NotFound`, `UnknownRoute` | 404 | `not_found_error` |
//! | `MethodNotAllowed` | 405 | `invalid_request_error` |
//! | `BodyTimeout` | 408 | `timeout_error` |
//! | `PayloadTooLarge` | 413 | `request_too_large` |
//! | `Throttled` | 429 (with `retry-after`) | `rate_limit_error` |
//! | `Unavailable` (every region failed) | 529 | `overloaded_error` |
//! | `Timeout` | 504 | `timeout_error` |
//! | `UpstreamClient` | the upstream's status | by that status; the upstream's message |
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use spillway_proto::anthropic::AnthropicErrorBody;

use super::{EdgeError, MAX_MESSAGE, cut, upstream_message};

/// Anthropic's "overloaded" status.
pub const OVERLOADED: u16 = 529;

/// The `error.type` Anthropic uses for a status.
fn kind_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        408 | 504 => "timeout_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        OVERLOADED | 503 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

impl EdgeError {
    /// Anthropic's status and `error.type`.
    pub fn anthropic_type(&self) -> (StatusCode, &'static str) {
        let status = match self {
            EdgeError::Unauthorized | EdgeError::AwsAuth { .. } => StatusCode::UNAUTHORIZED,
            EdgeError::Unavailable(_) => {
                StatusCode::from_u16(OVERLOADED).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            }
            EdgeError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            other => other.status(),
        };
        (status, kind_for_status(status))
    }

    /// The message for an Anthropic client (keys are `x-api-key` there).
    fn anthropic_message(&self) -> String {
        match self {
            EdgeError::Unauthorized => {
                "invalid x-api-key: pass a tenant key as `x-api-key` or `Authorization: Bearer`."
                    .to_string()
            }
            EdgeError::UpstreamClient { body, .. } => upstream_message(body),
            other => other.to_string(),
        }
    }

    /// The error body of an Anthropic stream's `event: error` or of a whole answer.
    pub fn anthropic_body(&self) -> AnthropicErrorBody {
        let (_, kind) = self.anthropic_type();
        AnthropicErrorBody::new(kind, cut(&self.anthropic_message(), MAX_MESSAGE))
    }

    /// Render in Anthropic's shape.
    pub fn into_anthropic_response(self) -> Response {
        let (status, _) = self.anthropic_type();
        let mut resp = (status, self.anthropic_body().to_json()).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            "x-should-retry",
            HeaderValue::from_static(retry_hint(status)),
        );
        if let EdgeError::Throttled { retry_after, .. } = &self {
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            h.insert(
                "retry-after-ms",
                HeaderValue::from(retry_after.as_millis().max(1) as u64),
            );
        }
        resp
    }
}

/// `x-should-retry`, which the Anthropic SDKs obey over their own status rules.
fn retry_hint(status: StatusCode) -> &'static str {
    match status.as_u16() {
        408 | 409 | 429 | 500..=599 => "true",
        _ => "false",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn body_of(r: Response) -> serde_json::Value {
        let b = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        serde_json::from_slice(&b).unwrap()
    }

    #[tokio::test]
    async fn each_error_has_anthropics_status_and_type() {
        let cases = [
            (EdgeError::Unauthorized, 401, "authentication_error"),
            (
                EdgeError::BadRequest("x".into()),
                400,
                "invalid_request_error",
            ),
            (EdgeError::ModelNotFound("m".into()), 404, "not_found_error"),
            (
                EdgeError::UnknownRoute("/v1/messages/x".into()),
                404,
                "not_found_error",
            ),
            (
                EdgeError::MethodNotAllowed("GET".into()),
                405,
                "invalid_request_error",
            ),
            (EdgeError::PayloadTooLarge(10), 413, "request_too_large"),
            (EdgeError::Forbidden("no".into()), 403, "permission_error"),
            (
                EdgeError::Throttled {
                    message: "busy".into(),
                    retry_after: Duration::from_millis(1500),
                },
                429,
                "rate_limit_error",
            ),
            (
                EdgeError::Unavailable("down".into()),
                529,
                "overloaded_error",
            ),
            (EdgeError::Timeout("slow".into()), 504, "timeout_error"),
        ];
        for (e, status, kind) in cases {
            let throttled = matches!(e, EdgeError::Throttled { .. });
            let r = e.into_anthropic_response();
            assert_eq!(r.status().as_u16(), status, "{kind}");
            if throttled {
                assert_eq!(r.headers()[header::RETRY_AFTER], "2");
            }
            let v = body_of(r).await;
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], kind, "{status}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
    }

    #[tokio::test]
    async fn an_upstream_rejection_keeps_its_status_and_message() {
        let e = EdgeError::UpstreamClient {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: bytes::Bytes::from_static(br#"{"message":"bad schema"}"#),
        };
        let r = e.into_anthropic_response();
        assert_eq!(r.status().as_u16(), 422);
        let v = body_of(r).await;
        assert_eq!(v["error"]["message"], "bad schema");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
}
