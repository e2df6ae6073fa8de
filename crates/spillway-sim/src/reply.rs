//! JSON answers of the simulator's routes, shared by the OpenAI surface, its streams and the
//! admin routes.
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use spillway_proto::OpenAiErrorBody;

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
