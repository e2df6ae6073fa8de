//! Errors of the Anthropic Messages conversion, and Anthropic's error body.
//!
//! Anthropic answers a failed call with `{"type": "error", "error": {"type", "message"}}`; inside
//! a stream the same body is the data of an `event: error` server-sent event.
use serde::{Deserialize, Serialize};

/// A Messages request Spillway cannot serve: malformed, or asking for something the canonical
/// model cannot carry. The gateway answers 400 `invalid_request_error` with this message, which
/// always names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnthropicError {
    #[error("{0}")]
    InvalidRequest(String),
}

impl AnthropicError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        AnthropicError::InvalidRequest(message.into())
    }
}

/// `{"type": "error", "error": {"type": …, "message": …}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnthropicErrorBody {
    #[serde(rename = "type")]
    pub kind: String,
    pub error: AnthropicErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnthropicErrorDetail {
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `not_found_error`,
    /// `request_too_large`, `rate_limit_error`, `api_error`, `overloaded_error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

impl AnthropicErrorBody {
    pub fn new(kind: &str, message: impl Into<String>) -> Self {
        AnthropicErrorBody {
            kind: "error".to_string(),
            error: AnthropicErrorDetail {
                kind: kind.to_string(),
                message: message.into(),
            },
        }
    }

    pub fn to_json(&self) -> String {
        // A struct of strings always serialises; the fallback is never used.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","error":{"type":"api_error","message":"internal error"}}"#
                .to_string()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_is_anthropics() {
        let v: serde_json::Value =
            serde_json::from_str(&AnthropicErrorBody::new("not_found_error", "no").to_json())
                .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"error","error":{"type":"not_found_error","message":"no"}})
        );
    }
}
