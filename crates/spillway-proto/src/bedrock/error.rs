//! Errors of the Bedrock codecs and Bedrock's error body.
//!
//! Bedrock answers a failed call with the error type in the `x-amzn-ErrorType` header and a body
//! of `{"message": "..."}`; inside an event stream the same body is the payload of an
//! `exception` message (see [`super::encode_exception`]).
use serde::{Deserialize, Serialize};

/// What went wrong while parsing, converting or framing Bedrock traffic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BedrockError {
    /// The request (or a model reference, or a content block) is not something Spillway can
    /// serve; the gateway answers HTTP 400 `ValidationException` with this message.
    #[error("{0}")]
    Validation(String),
    /// A malformed `application/vnd.amazon.eventstream` frame or event payload.
    #[error("event stream: {0}")]
    EventStream(String),
}

impl BedrockError {
    /// `Validation` from anything printable.
    pub fn validation(message: impl Into<String>) -> Self {
        BedrockError::Validation(message.into())
    }

    /// `EventStream` from anything printable.
    pub fn event_stream(message: impl Into<String>) -> Self {
        BedrockError::EventStream(message.into())
    }

    /// The Bedrock error type a gateway would send for this error (`x-amzn-ErrorType`, or the
    /// `:exception-type` of a stream exception).
    pub fn error_type(&self) -> &'static str {
        match self {
            BedrockError::Validation(_) => "ValidationException",
            BedrockError::EventStream(_) => "ModelStreamErrorException",
        }
    }

    /// The message without the variant's prefix.
    pub fn message(&self) -> &str {
        match self {
            BedrockError::Validation(m) | BedrockError::EventStream(m) => m,
        }
    }
}

/// Bedrock's error body: `{"message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BedrockErrorBody {
    pub message: String,
}

impl BedrockErrorBody {
    pub fn new(message: impl Into<String>) -> Self {
        BedrockErrorBody {
            message: message.into(),
        }
    }

    /// The body as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::json!({ "message": self.message }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape_is_bedrocks() {
        let body = BedrockErrorBody::new("Too many requests, please wait before trying again.");
        let v: serde_json::Value = serde_json::from_str(&body.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"message": "Too many requests, please wait before trying again."})
        );
        let back: BedrockErrorBody = serde_json::from_value(v).unwrap();
        assert_eq!(back, body);
    }

    #[test]
    fn display_and_types() {
        let e = BedrockError::validation("bad model id");
        assert_eq!(e.to_string(), "bad model id");
        assert_eq!(e.error_type(), "ValidationException");
        let e = BedrockError::event_stream("prelude checksum mismatch");
        assert_eq!(e.to_string(), "event stream: prelude checksum mismatch");
        assert_eq!(e.message(), "prelude checksum mismatch");
    }
}
