//! The OpenAI embeddings adapter: `POST /v1/embeddings`.
//!
//! Like chat completions it only translates: authenticate (`Authorization: Bearer`), parse and
//! check the body (`input` as a string, strings, token ids or lists of them; `encoding_format`
//! `float` or `base64`; `dimensions`), resolve the model or profile; then the request is the
//! driver's ([`crate::drive::serve`]) as an embeddings [`crate::drive::Request`]: admitted
//! against the tenant's quota at its input tokens, routed across the profile's regions (source
//! first, spill when full, failover on failure), relayed whole to the upstream's `/embeddings`,
//! and audited like any request. A chat model named here is refused with 400 (the driver's
//! admission checks the model's kind).
use std::sync::Arc;

use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use spillway_core::RegionIx;
use spillway_proto::embeddings::EmbeddingsRequest;

use crate::api::openai::authenticate;
use crate::api::resolve::resolve;
use crate::drive::ctx::Target;
use crate::drive::{self, RequestCtx};
use crate::error::{Api, EdgeError};
use crate::state::AppState;

/// `POST /v1/embeddings` on the listener of region `source`.
pub async fn embeddings(
    state: Arc<AppState>,
    source: RegionIx,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut ctx = RequestCtx::new(source, &headers, Api::Embeddings);
    let parsed = parse(&state, &mut ctx, &headers, &body);
    drive::serve_parsed(state, ctx, parsed).await
}

/// Authenticate, parse and check, resolve.
fn parse(
    state: &AppState,
    ctx: &mut RequestCtx,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Target, EmbeddingsRequest), EdgeError> {
    ctx.tenant = Some(authenticate(state, headers)?);
    let req: EmbeddingsRequest = serde_json::from_slice(body)
        .map_err(|e| EdgeError::BadRequest(format!("Invalid request body: {e}")))?;
    ctx.model_name = req.model.clone();
    req.validate().map_err(|e| EdgeError::InvalidParam {
        message: e.message,
        param: e.param.into(),
    })?;
    let target = resolve(&state.cfg, ctx.source, &req.model)?;
    Ok((target, req))
}
