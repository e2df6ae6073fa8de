//! The edge error: everything a client can be told, rendered in the caller's API shape.
//!
//! Issue-specific detail stays in the message; nothing secret goes in (no keys, no upstream
//! URLs, no upstream credentials). Upstream 4xx answers other than 429 are relayed as they came.
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use spillway_proto::OpenAiErrorBody;

/// The API a client called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    OpenAi,
    Converse,
    Invoke,
}

impl Api {
    pub fn as_str(&self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Converse => "converse",
            Api::Invoke => "invoke",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("Missing or invalid API key. Pass it as `Authorization: Bearer <key>`.")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    ModelNotFound(String),
    #[error("{0}")]
    NotCallableHere(String),
    #[error(
        "Invocation of model ID {0} with on-demand throughput isn't supported. Retry your request with the ID or ARN of an inference profile that contains this model."
    )]
    ProfileOnly(String),
    #[error("Request body is larger than the limit of {0} bytes.")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    Throttled {
        message: String,
        retry_after: Duration,
    },
    #[error("{}", upstream_message(body))]
    UpstreamClient { status: StatusCode, body: Bytes },
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Timeout(String),
    /// A SigV4 or Bedrock API key failure, with Bedrock's error type.
    #[error("{message}")]
    AwsAuth {
        error_type: &'static str,
        message: String,
    },
    /// A control-plane resource that does not exist (or is not the caller's).
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A path no API serves (the path as echoed is already shortened).
    #[error("Unknown operation {0}.")]
    UnknownRoute(String),
    #[error("Method {0} is not allowed on this path.")]
    MethodNotAllowed(String),
    #[error("The request target is longer than the limit of {0} bytes.")]
    UriTooLong(usize),
    #[error("{0}")]
    HeadersTooLarge(String),
    #[error("Only `Expect: 100-continue` is supported.")]
    ExpectationFailed,
    #[error("The request body did not arrive within {0} ms.")]
    BodyTimeout(u128),
}

/// The message of an upstream's error body, in OpenAI's or Bedrock's shape.
fn upstream_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Bedrock {
        message: String,
    }
    serde_json::from_slice::<OpenAiErrorBody>(body)
        .map(|b| b.error.message)
        .or_else(|_| serde_json::from_slice::<Bedrock>(body).map(|b| b.message))
        .unwrap_or_else(|_| "The model rejected the request.".to_string())
}

impl EdgeError {
    pub fn status(&self) -> StatusCode {
        match self {
            EdgeError::Unauthorized => StatusCode::UNAUTHORIZED,
            EdgeError::BadRequest(_)
            | EdgeError::NotCallableHere(_)
            | EdgeError::ProfileOnly(_) => StatusCode::BAD_REQUEST,
            EdgeError::ModelNotFound(_) => StatusCode::NOT_FOUND,
            EdgeError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            EdgeError::Forbidden(_) => StatusCode::FORBIDDEN,
            EdgeError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            EdgeError::UpstreamClient { status, .. } => *status,
            EdgeError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            EdgeError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            EdgeError::AwsAuth { .. } => StatusCode::UNAUTHORIZED,
            EdgeError::NotFound(_) => StatusCode::NOT_FOUND,
            EdgeError::Conflict(_) => StatusCode::CONFLICT,
            EdgeError::UnknownRoute(_) => StatusCode::NOT_FOUND,
            EdgeError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            EdgeError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            EdgeError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            EdgeError::ExpectationFailed => StatusCode::EXPECTATION_FAILED,
            EdgeError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// A short label for logs and metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            EdgeError::Unauthorized => "unauthorized",
            EdgeError::BadRequest(_)
            | EdgeError::NotCallableHere(_)
            | EdgeError::ProfileOnly(_) => "bad_request",
            EdgeError::ModelNotFound(_) => "not_found",
            EdgeError::PayloadTooLarge(_) => "too_large",
            EdgeError::Forbidden(_) => "forbidden",
            EdgeError::Throttled { .. } => "throttled",
            EdgeError::UpstreamClient { .. } => "upstream_client_error",
            EdgeError::Unavailable(_) => "unavailable",
            EdgeError::Timeout(_) => "timeout",
            EdgeError::AwsAuth { .. } => "unauthorized",
            EdgeError::NotFound(_) => "not_found",
            EdgeError::Conflict(_) => "conflict",
            EdgeError::UnknownRoute(_) => "not_found",
            EdgeError::MethodNotAllowed(_) => "method_not_allowed",
            EdgeError::UriTooLong(_) | EdgeError::HeadersTooLarge(_) => "too_large",
            EdgeError::ExpectationFailed => "bad_request",
            EdgeError::BodyTimeout(_) => "client_timeout",
        }
    }

    /// OpenAI's `{"error": {"message", "type", "param", "code"}}`.
    pub fn openai_body(&self) -> OpenAiErrorBody {
        let (kind, code) = match self {
            EdgeError::Unauthorized => ("authentication_error", Some("invalid_api_key")),
            EdgeError::BadRequest(_) => ("invalid_request_error", None),
            EdgeError::NotCallableHere(_) => (
                "invalid_request_error",
                Some("model_not_available_in_region"),
            ),
            EdgeError::ProfileOnly(_) => {
                ("invalid_request_error", Some("inference_profile_required"))
            }
            EdgeError::ModelNotFound(_) => ("invalid_request_error", Some("model_not_found")),
            EdgeError::PayloadTooLarge(_) => ("invalid_request_error", Some("request_too_large")),
            EdgeError::Forbidden(_) => ("permission_error", Some("region_denied")),
            EdgeError::Throttled { .. } => ("rate_limit_error", Some("rate_limit_exceeded")),
            EdgeError::UpstreamClient { .. } => ("invalid_request_error", None),
            EdgeError::Unavailable(_) => ("server_error", Some("service_unavailable")),
            EdgeError::Timeout(_) => ("server_error", Some("timeout")),
            EdgeError::AwsAuth { .. } => ("authentication_error", Some("invalid_api_key")),
            EdgeError::NotFound(_) => ("invalid_request_error", Some("not_found")),
            EdgeError::Conflict(_) => ("invalid_request_error", Some("conflict")),
            EdgeError::UnknownRoute(_) => ("invalid_request_error", Some("not_found")),
            EdgeError::MethodNotAllowed(_) => ("invalid_request_error", Some("method_not_allowed")),
            EdgeError::UriTooLong(_) => ("invalid_request_error", Some("uri_too_long")),
            EdgeError::HeadersTooLarge(_) => ("invalid_request_error", Some("headers_too_large")),
            EdgeError::ExpectationFailed => ("invalid_request_error", Some("expectation_failed")),
            EdgeError::BodyTimeout(_) => ("invalid_request_error", Some("request_timeout")),
        };
        OpenAiErrorBody::new(self.to_string(), kind, code)
    }

    /// Render in the shape of the API the client called.
    pub fn into_response_for(self, api: Api) -> Response {
        match api {
            Api::OpenAi => self.into_openai_response(),
            _ => self.into_bedrock_response(),
        }
    }

    /// Bedrock's status and `x-amzn-ErrorType`.
    pub fn bedrock_type(&self) -> (StatusCode, &'static str) {
        match self {
            EdgeError::Unauthorized => (StatusCode::FORBIDDEN, "UnrecognizedClientException"),
            EdgeError::AwsAuth { error_type, .. } => (StatusCode::FORBIDDEN, error_type),
            EdgeError::BadRequest(_)
            | EdgeError::NotCallableHere(_)
            | EdgeError::ProfileOnly(_) => (StatusCode::BAD_REQUEST, "ValidationException"),
            EdgeError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "ValidationException"),
            EdgeError::ModelNotFound(_) | EdgeError::NotFound(_) => {
                (StatusCode::NOT_FOUND, "ResourceNotFoundException")
            }
            EdgeError::Forbidden(_) => (StatusCode::FORBIDDEN, "AccessDeniedException"),
            EdgeError::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, "ThrottlingException"),
            EdgeError::UpstreamClient { status, .. } => (*status, "ValidationException"),
            EdgeError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
            ),
            EdgeError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "ModelTimeoutException"),
            EdgeError::Conflict(_) => (StatusCode::CONFLICT, "ConflictException"),
            EdgeError::UnknownRoute(_) => (StatusCode::NOT_FOUND, "UnknownOperationException"),
            EdgeError::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, "UnknownOperationException")
            }
            EdgeError::UriTooLong(_) => (StatusCode::URI_TOO_LONG, "ValidationException"),
            EdgeError::HeadersTooLarge(_) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "ValidationException",
            ),
            EdgeError::ExpectationFailed => (StatusCode::EXPECTATION_FAILED, "ValidationException"),
            EdgeError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "RequestTimeoutException"),
        }
    }

    /// Bedrock's shape: the status, `x-amzn-ErrorType`, and `{"message": ...}`. An upstream 4xx
    /// body is not relayed as is (it is in the upstream's shape); its message is.
    pub fn into_bedrock_response(self) -> Response {
        let (status, error_type) = self.bedrock_type();
        let message = match &self {
            EdgeError::ModelNotFound(m) => {
                format!("The model {m} does not exist or you do not have access to it.")
            }
            EdgeError::UpstreamClient { body, .. } => upstream_message(body),
            other => other.to_string(),
        };
        let body = serde_json::json!({ "message": message }).to_string();
        let mut resp = (status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert("x-amzn-ErrorType", HeaderValue::from_static(error_type));
        if let EdgeError::Throttled { retry_after, .. } = &self {
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }

    /// Render in OpenAI's shape (upstream 4xx bodies are relayed as they came).
    pub fn into_openai_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            // An OpenAI-shaped upstream error goes back as it came; any other shape (a Bedrock
            // upstream's `{"message"}`) is rewrapped in OpenAI's shape.
            EdgeError::UpstreamClient { body, .. }
                if serde_json::from_slice::<OpenAiErrorBody>(body).is_ok() =>
            {
                body.clone()
            }
            EdgeError::UpstreamClient { .. } => Bytes::from(
                OpenAiErrorBody::new(self.to_string(), "invalid_request_error", None).to_json(),
            ),
            _ => Bytes::from(self.openai_body().to_json()),
        };
        let mut resp = (status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_has_retry_after_in_whole_seconds() {
        let r = EdgeError::Throttled {
            message: "busy".into(),
            retry_after: Duration::from_millis(1200),
        }
        .into_openai_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        assert_eq!(r.headers()["retry-after-ms"], "1200");
    }

    #[test]
    fn profile_only_text_is_bedrocks() {
        let e = EdgeError::ProfileOnly("demo.x-v1:0".into());
        assert_eq!(
            e.to_string(),
            "Invocation of model ID demo.x-v1:0 with on-demand throughput isn't supported. Retry your request with the ID or ARN of an inference profile that contains this model."
        );
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }
}
