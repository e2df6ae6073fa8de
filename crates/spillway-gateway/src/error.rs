//! The edge error: everything a client can be told, rendered in the caller's API shape.
//!
//! Issue-specific detail stays in the message; nothing secret goes in (no keys, no upstream
//! URLs, no upstream credentials). Upstream 4xx answers other than 429 are relayed as they came.
//!
//! What a client sent is echoed bounded: ids (model, profile, ARN) through [`shown`], at most
//! [`MAX_ECHOED_ID`] characters, and every message rendered here is cut at [`MAX_MESSAGE`]
//! characters (parser errors quote the input), so an error body never grows with the request.
//!
//! Each API has its shape: OpenAI's here, Bedrock's here, Anthropic's in [`anthropic`].
use std::borrow::Cow;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use spillway_proto::OpenAiErrorBody;

pub mod anthropic;

/// The longest id echoed whole in an error message.
pub const MAX_ECHOED_ID: usize = 128;
/// The longest message of an error body (an upstream's own body relayed as it came excepted).
pub const MAX_MESSAGE: usize = 1024;

/// An id the client sent, as an error message may echo it: control characters escaped
/// (never echoed as they came), whole when it has at most [`MAX_ECHOED_ID`] characters, else
/// its first ones and `…`.
pub fn shown(id: &str) -> Cow<'_, str> {
    if id.chars().any(char::is_control) {
        let escaped = spillway_proto::bedrock::escape_controls(id);
        return Cow::Owned(cut(&escaped, MAX_ECHOED_ID).into_owned());
    }
    cut(id, MAX_ECHOED_ID)
}

/// `s` with at most `max` characters: cut with `…` in the last place when longer.
fn cut(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some(_) => {
            let keep = s
                .char_indices()
                .nth(max.saturating_sub(1))
                .map_or(s.len(), |(i, _)| i);
            Cow::Owned(format!("{}…", &s[..keep]))
        }
    }
}

/// The API a client called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI chat completions.
    OpenAi,
    Converse,
    Invoke,
    /// Anthropic Messages at `/v1/messages` (Anthropic's error shape).
    Anthropic,
    /// InvokeModel(WithResponseStream) with an Anthropic Messages body, converted (answers in
    /// Anthropic's shape, errors in Bedrock's).
    InvokeAnthropic,
    /// OpenAI Responses (`/v1/responses`).
    Responses,
    /// OpenAI embeddings (`/v1/embeddings`).
    Embeddings,
}

impl Api {
    pub fn as_str(&self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Converse => "converse",
            Api::Invoke => "invoke",
            Api::Anthropic => "anthropic",
            Api::InvokeAnthropic => "invoke_anthropic",
            Api::Responses => "responses",
            Api::Embeddings => "embeddings",
        }
    }

    /// Whether the API is OpenAI's (its errors in OpenAI's shape).
    pub fn is_openai(&self) -> bool {
        matches!(self, Api::OpenAi | Api::Responses | Api::Embeddings)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("Missing or invalid API key. Pass it as `Authorization: Bearer <key>`.")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    /// A request that names a bad value of one parameter (OpenAI's `param`), such as a
    /// `max_tokens` no quota or deployment can ever admit.
    #[error("{message}")]
    InvalidParam {
        message: String,
        param: Cow<'static, str>,
    },
    /// A request field no upstream that may serve the request can honour (see
    /// `api::fields`); OpenAI's `param` names it.
    #[error("{message}")]
    Unsupported { field: String, message: String },
    #[error("The model `{}` does not exist or you do not have access to it.", shown(.0))]
    ModelNotFound(String),
    #[error("{0}")]
    NotCallableHere(String),
    #[error(
        "Invocation of model ID {} with on-demand throughput isn't supported. Retry your request with the ID or ARN of an inference profile that contains this model.",
        shown(.0)
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
    /// A tag request that would leave a resource with more tags than it may carry.
    #[error("{0}")]
    TooManyTags(String),
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
            | EdgeError::InvalidParam { .. }
            | EdgeError::Unsupported { .. }
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
            EdgeError::TooManyTags(_) => StatusCode::BAD_REQUEST,
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
            | EdgeError::InvalidParam { .. }
            | EdgeError::Unsupported { .. }
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
            EdgeError::TooManyTags(_) => "bad_request",
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
            EdgeError::InvalidParam { .. } => ("invalid_request_error", Some("invalid_value")),
            EdgeError::Unsupported { .. } => {
                ("invalid_request_error", Some("unsupported_parameter"))
            }
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
            EdgeError::TooManyTags(_) => ("invalid_request_error", Some("too_many_tags")),
            EdgeError::UnknownRoute(_) => ("invalid_request_error", Some("not_found")),
            EdgeError::MethodNotAllowed(_) => ("invalid_request_error", Some("method_not_allowed")),
            EdgeError::UriTooLong(_) => ("invalid_request_error", Some("uri_too_long")),
            EdgeError::HeadersTooLarge(_) => ("invalid_request_error", Some("headers_too_large")),
            EdgeError::ExpectationFailed => ("invalid_request_error", Some("expectation_failed")),
            EdgeError::BodyTimeout(_) => ("invalid_request_error", Some("request_timeout")),
        };
        let mut body = OpenAiErrorBody::new(cut(&self.to_string(), MAX_MESSAGE), kind, code);
        match self {
            EdgeError::InvalidParam { param, .. } => body.error.param = Some((*param).to_string()),
            EdgeError::Unsupported { field, .. } => body.error.param = Some(shown(field).into()),
            _ => {}
        }
        body
    }

    /// Render in the shape of the API the client called.
    pub fn into_response_for(self, api: Api) -> Response {
        match api {
            Api::OpenAi | Api::Responses | Api::Embeddings => self.into_openai_response(),
            Api::Anthropic => self.into_anthropic_response(),
            Api::Converse | Api::Invoke | Api::InvokeAnthropic => self.into_bedrock_response(),
        }
    }

    /// Bedrock's status and `x-amzn-ErrorType`.
    pub fn bedrock_type(&self) -> (StatusCode, &'static str) {
        match self {
            EdgeError::Unauthorized => (StatusCode::FORBIDDEN, "UnrecognizedClientException"),
            EdgeError::AwsAuth { error_type, .. } => (StatusCode::FORBIDDEN, error_type),
            EdgeError::BadRequest(_)
            | EdgeError::InvalidParam { .. }
            | EdgeError::Unsupported { .. }
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
            EdgeError::TooManyTags(_) => (StatusCode::BAD_REQUEST, "TooManyTagsException"),
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
                let m = shown(m);
                format!("The model {m} does not exist or you do not have access to it.")
            }
            EdgeError::UpstreamClient { body, .. } => upstream_message(body),
            other => other.to_string(),
        };
        let message = cut(&message, MAX_MESSAGE);
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
                OpenAiErrorBody::new(
                    cut(&self.to_string(), MAX_MESSAGE),
                    "invalid_request_error",
                    None,
                )
                .to_json(),
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
    fn echoed_ids_and_messages_are_bounded() {
        assert_eq!(shown("demo.chat-small-v1:0"), "demo.chat-small-v1:0");
        let exact = "é".repeat(MAX_ECHOED_ID);
        assert_eq!(shown(&exact), exact.as_str());
        let long = format!("{exact}x");
        let s = shown(&long);
        assert_eq!(s.chars().count(), MAX_ECHOED_ID);
        assert!(s.ends_with('…') && s.starts_with("éé"));
        let e = EdgeError::ModelNotFound("m".repeat(10_000));
        let body = e.openai_body();
        assert!(body.error.message.len() < 300, "{}", body.error.message);
        let e = EdgeError::BadRequest("q".repeat(10_000));
        assert_eq!(e.openai_body().error.message.chars().count(), MAX_MESSAGE);
    }

    #[test]
    fn an_invalid_param_names_it_in_openais_shape_and_is_a_validation_exception() {
        let e = || EdgeError::InvalidParam {
            message: "too many".into(),
            param: "max_tokens".into(),
        };
        let b = e().openai_body();
        assert_eq!(
            (b.error.kind.as_str(), b.error.param.as_deref()),
            ("invalid_request_error", Some("max_tokens"))
        );
        assert_eq!(e().status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            e().bedrock_type(),
            (StatusCode::BAD_REQUEST, "ValidationException")
        );
        assert!(
            !e().into_openai_response()
                .headers()
                .contains_key(header::RETRY_AFTER)
        );
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
