//! The OpenAI API adapter: `POST /v1/chat/completions`.
//!
//! It only translates: authenticate (`Authorization: Bearer`), parse the body into the
//! canonical request, resolve the model or profile; then the request is the driver's
//! ([`crate::drive::serve`]), and every answer and error comes back in OpenAI's shape.
use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use spillway_core::RegionIx;
use spillway_proto::ChatRequest;

use crate::api::resolve::resolve;
use crate::config::TenantIx;
use crate::drive::ctx::Target;
use crate::drive::{self, RequestCtx};
use crate::error::{Api, EdgeError};
use crate::state::AppState;

/// `POST /v1/chat/completions` on the listener of region `source`.
pub async fn chat_completions(
    state: Arc<AppState>,
    source: RegionIx,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut ctx = RequestCtx::new(source, &headers, Api::OpenAi);
    let parsed = parse(&state, &mut ctx, &headers, body);
    drive::serve_parsed(state, ctx, parsed).await
}

/// Authenticate, parse and normalise, resolve.
fn parse(
    state: &AppState,
    ctx: &mut RequestCtx,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Target, ChatRequest), EdgeError> {
    let cfg = &state.cfg;
    ctx.tenant = Some(authenticate(state, headers)?);
    let body = body.map_err(|rej| match rej.status() {
        StatusCode::PAYLOAD_TOO_LARGE => EdgeError::PayloadTooLarge(cfg.max_body_bytes),
        _ => EdgeError::BadRequest(format!(
            "Could not read the request body: {}",
            rej.body_text()
        )),
    })?;
    let req: ChatRequest = serde_json::from_slice(&body)
        .map_err(|e| EdgeError::BadRequest(format!("Invalid request body: {e}")))?;
    ctx.model_name = req.model.clone();
    if req.messages.is_empty() {
        return Err(EdgeError::BadRequest(
            "`messages` must contain at least one message.".into(),
        ));
    }
    if req.output_cap() == Some(0) {
        return Err(EdgeError::BadRequest(
            "`max_tokens` must be at least 1.".into(),
        ));
    }
    let target = resolve(cfg, ctx.source, &req.model)?;
    crate::api::fields::check_chat(cfg, &target, &req)?;
    Ok((target, req))
}

pub(crate) fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<TenantIx, EdgeError> {
    // `Authorization: Bearer <key>`; the scheme name is case-insensitive (RFC 9110 §11.1).
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .filter(|k| !k.is_empty())
        .ok_or(EdgeError::Unauthorized)?;
    tenant_for_key(state, key)
}

/// The tenant an API key (as presented, trimmed) belongs to. Keys are stored as SHA-256
/// hashes; looking up the hash of the presented key reveals nothing about a stored key through
/// timing.
pub(crate) fn tenant_for_key(state: &AppState, key: &str) -> Result<TenantIx, EdgeError> {
    let hash = crate::config::sha256(key.as_bytes());
    state
        .cfg
        .tenant_by_key_hash(&hash)
        .ok_or(EdgeError::Unauthorized)
}
