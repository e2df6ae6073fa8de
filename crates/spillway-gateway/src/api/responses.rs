//! The OpenAI Responses adapter: `POST /v1/responses` (create, streamed and not).
//!
//! A Responses request is converted into the canonical chat request
//! ([`spillway_proto::responses`]); a field that does not map is refused with 400 naming it.
//! What the answer must echo (its `resp_…` id, instructions, tools, metadata, …) goes with the
//! request's context, and the driver renders the answer as a Response object or as the typed
//! Responses stream events. Routing, quota, failover and audit are the chat request's.
use std::sync::Arc;

use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use spillway_core::RegionIx;
use spillway_proto::ChatRequest;
use spillway_proto::responses::ResponsesRequest;

use crate::api::openai::authenticate;
use crate::api::resolve::resolve;
use crate::drive::ctx::Target;
use crate::drive::{self, RequestCtx};
use crate::error::{Api, EdgeError};
use crate::state::AppState;

/// `POST /v1/responses` on the listener of region `source`.
pub async fn create(
    state: Arc<AppState>,
    source: RegionIx,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut ctx = RequestCtx::new(source, &headers, Api::Responses);
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
    let req: ResponsesRequest = serde_json::from_slice(body)
        .map_err(|e| EdgeError::BadRequest(format!("Invalid request body: {e}")))?;
    ctx.model_name = req.model.clone();
    if req.max_output_tokens == Some(0) {
        return Err(EdgeError::InvalidParam {
            message: "`max_output_tokens` must be at least 1.".into(),
            param: "max_output_tokens".into(),
        });
    }
    let chat = req.to_chat().map_err(|e| EdgeError::InvalidParam {
        message: e.message,
        param: e.param.into(),
    })?;
    let id = format!("resp_{}", uuid::Uuid::new_v4().simple());
    ctx.echo = Some(Box::new(req.echo(id, unix_now())));
    let target = resolve(&state.cfg, ctx.source, &req.model)?;
    // No silent drops: what a Bedrock destination could not carry is refused by name.
    crate::api::fields::check_chat(&state.cfg, &target, &chat)?;
    Ok((target, chat))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
