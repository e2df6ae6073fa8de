//! Bedrock's CountTokens: `POST /model/{modelId}/count-tokens` with
//! `{"input": {"converse": {messages, system, …}}}` or
//! `{"input": {"invokeModel": {"body": "<base64>"}}}` → `{"inputTokens": N}`.
//!
//! The count is the one the gateway reserves quota with for the same request
//! ([`spillway_proto::tokens::prompt_tokens`] over the canonical request the runtime would
//! build), so a client that counts first sees what it will be metered. The request is
//! authenticated and `modelId` resolved exactly as for the runtime call it stands for (an
//! unknown model is 404, a model not callable here 400), but nothing is sent upstream and no
//! quota is drawn.
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use spillway_core::RegionIx;
use spillway_proto::bedrock::{ConverseRequest, converse_to_chat};
use spillway_proto::tokens::prompt_tokens;

use crate::api::bedrock::{Incoming, authenticate, invoke_request, read_body, resolve_ref};
use crate::drive::RequestCtx;
use crate::error::{Api, EdgeError};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    input: Input,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
enum Input {
    Converse(ConverseRequest),
    InvokeModel(InvokeInput),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvokeInput {
    /// The InvokeModel body, base64-encoded (a blob in a JSON document).
    body: String,
}

/// `POST /model/{modelId}/count-tokens` on the listener of region `source`.
pub async fn count_tokens(
    state: Arc<AppState>,
    source: RegionIx,
    model_id: String,
    inc: Incoming,
) -> Response {
    let mut ctx = RequestCtx::new(source, &inc.headers, Api::Converse);
    let mut resp = match count(&state, &mut ctx, &model_id, &inc).await {
        Ok(n) => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            json!({ "inputTokens": n }).to_string(),
        )
            .into_response(),
        Err(e) => e.into_bedrock_response(),
    };
    if let Ok(v) = axum::http::HeaderValue::from_str(&ctx.id) {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
    resp
}

async fn count(
    state: &Arc<AppState>,
    ctx: &mut RequestCtx,
    model_id: &str,
    inc: &Incoming,
) -> Result<u64, EdgeError> {
    let body = read_body(state, &inc.body)?;
    let tenant = authenticate(state, ctx.source, inc, &body)?;
    ctx.tenant = Some(tenant);
    state.app_profiles.prefetch(model_id).await;
    ctx.model_name = percent_encoding::percent_decode_str(model_id)
        .decode_utf8_lossy()
        .into_owned();
    let parsed: Body = serde_json::from_slice(&body)
        .map_err(|e| EdgeError::BadRequest(format!("Malformed input request: {e}")))?;
    let target = resolve_ref(state, ctx, tenant, model_id)?;
    let req = match parsed.input {
        Input::Converse(conv) => converse_to_chat(&ctx.model_name, &conv, false)
            .map_err(|e| EdgeError::BadRequest(e.to_string()))?,
        Input::InvokeModel(InvokeInput { body }) => {
            let raw = aws_smithy_types::base64::decode(body.trim()).map_err(|_| {
                EdgeError::BadRequest("input.invokeModel.body must be base64-encoded.".into())
            })?;
            invoke_request(state, ctx, &target, &Bytes::from(raw), false)?
        }
    };
    Ok(prompt_tokens(&req.messages))
}

/// A CountTokens body parses into the canonical request's messages (for the tests).
#[cfg(test)]
fn converse_count(v: serde_json::Value) -> Result<u64, String> {
    let b: Body = serde_json::from_value(v).map_err(|e| e.to_string())?;
    match b.input {
        Input::Converse(c) => converse_to_chat("m", &c, false)
            .map(|r| prompt_tokens(&r.messages))
            .map_err(|e| e.to_string()),
        Input::InvokeModel(_) => Err("invoke".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converse_input_counts_like_the_meter() {
        let n = converse_count(json!({"input": {"converse": {
            "system": [{"text": "abcd"}],
            "messages": [{"role": "user", "content": [{"text": "abcdefgh"}]}],
        }}}))
        .unwrap();
        // system (4 + 1) and user (4 + 2), as `prompt_tokens` counts them.
        assert_eq!(n, 11);
    }

    #[test]
    fn malformed_inputs_are_refused() {
        assert!(converse_count(json!({"input": {}})).is_err());
        assert!(converse_count(json!({"input": {"converse": {"messages": []}}})).is_err());
        assert!(converse_count(json!({"input": {"other": {}}})).is_err());
        assert!(converse_count(json!({"nope": 1})).is_err());
    }
}
