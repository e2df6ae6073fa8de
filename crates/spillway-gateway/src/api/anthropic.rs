//! The Anthropic Messages adapter: `POST /v1/messages`, and the Anthropic body of an InvokeModel
//! call (what the Anthropic SDK's `AnthropicBedrock` client sends).
//!
//! It only translates: authenticate (`x-api-key: <tenant key>`, or `Authorization: Bearer`; the
//! `anthropic-version` header is accepted whatever its value), parse the Messages body and turn
//! it into the canonical request ([`MessagesRequest::to_chat`], which refuses with a 400 naming
//! the field whatever it cannot carry), resolve the model or profile as for OpenAI; then the
//! request is the driver's ([`crate::drive::serve`]) with its routing, quotas, metering and
//! audit, and the answer comes back as Anthropic's (`drive::anthropic`), every error in
//! Anthropic's shape (`error::anthropic`).
use std::sync::Arc;

use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use spillway_core::RegionIx;
use spillway_proto::ChatRequest;
use spillway_proto::anthropic::{Flavor, MessagesRequest};

use crate::api::resolve::resolve;
use crate::config::TenantIx;
use crate::drive::ctx::Target;
use crate::drive::{self, RequestCtx};
use crate::error::{Api, EdgeError};
use crate::state::AppState;

/// `POST /v1/messages` on the listener of region `source`.
pub async fn messages(
    state: Arc<AppState>,
    source: RegionIx,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut ctx = RequestCtx::new(source, &headers, Api::Anthropic);
    let parsed = parse(&state, &mut ctx, &headers, &body);
    drive::serve_parsed(state, ctx, parsed).await
}

/// Authenticate, parse and convert, resolve.
fn parse(
    state: &AppState,
    ctx: &mut RequestCtx,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Target, ChatRequest), EdgeError> {
    ctx.tenant = Some(authenticate(state, headers)?);
    let req = read(body)?;
    let model = req.model.clone().unwrap_or_default();
    ctx.model_name = model.clone();
    let chat = req
        .to_chat(Flavor::Api, &model, req.is_stream())
        .map_err(|e| EdgeError::BadRequest(e.to_string()))?;
    let target = resolve(&state.cfg, ctx.source, &model)?;
    // No silent drops: what a Bedrock destination could not carry is refused by name.
    crate::api::fields::check_chat(&state.cfg, &target, &chat)?;
    Ok((target, chat))
}

fn read(body: &[u8]) -> Result<MessagesRequest, EdgeError> {
    serde_json::from_slice(body)
        .map_err(|e| EdgeError::BadRequest(format!("Invalid request body: {e}")))
}

/// `x-api-key: <key>` (the Anthropic SDKs' header), else `Authorization: Bearer <key>`.
fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<TenantIx, EdgeError> {
    let Some(key) = headers.get("x-api-key") else {
        return crate::api::openai::authenticate(state, headers);
    };
    let key = key
        .to_str()
        .map(str::trim)
        .ok()
        .filter(|k| !k.is_empty())
        .ok_or(EdgeError::Unauthorized)?;
    crate::api::openai::tenant_for_key(state, key)
}

/// Whether an InvokeModel body is an Anthropic Messages body: a JSON object with
/// `anthropic_version` (what Bedrock's Anthropic models require), whatever the model id.
pub fn is_messages_body(body: &[u8]) -> bool {
    // A map only: serde would read a struct from a JSON array too.
    serde_json::from_slice::<std::collections::HashMap<String, serde::de::IgnoredAny>>(body)
        .is_ok_and(|m| m.contains_key("anthropic_version"))
}

/// An Anthropic InvokeModel body for `model` as the canonical request; the operation says
/// whether it streams. Errors are the caller's (Bedrock's shape).
pub fn invoke_request(model: &str, body: &[u8], stream: bool) -> Result<ChatRequest, EdgeError> {
    let req: MessagesRequest = serde_json::from_slice(body)
        .map_err(|e| EdgeError::BadRequest(format!("Malformed input request: {e}")))?;
    req.to_chat(Flavor::Bedrock, model, stream)
        .map_err(|e| EdgeError::BadRequest(format!("Malformed input request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anthropic_body_is_told_by_anthropic_version() {
        assert!(is_messages_body(
            br#"{"anthropic_version":"bedrock-2023-05-31","messages":[]}"#
        ));
        assert!(!is_messages_body(br#"{"messages":[],"max_tokens":3}"#));
        assert!(!is_messages_body(b"[1]"));
        assert!(!is_messages_body(b"not json"));
    }
}
