//! The Bedrock runtime API on every listener: `POST /model/{modelId}/converse`,
//! `/converse-stream`, `/invoke` and `/invoke-with-response-stream`, for the unchanged AWS SDKs.
//!
//! The edge phases are Bedrock's own (SigV4 or Bedrock API key, `modelId` as a model id, a
//! profile id or an ARN, Converse bodies translated to the canonical request); from quota on,
//! the request goes through the same driver as an OpenAI one (`drive::serve`), and the answer
//! and every error come back in Bedrock's shape.
use std::sync::Arc;
use std::time::SystemTime;

use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use bytes::Bytes;
use spillway_proto::ChatRequest;
use spillway_proto::bedrock::{ConverseRequest, ModelRef, converse_to_chat};

use crate::api::resolve::{model_ref, resolve};
use crate::config::TenantIx;
use crate::drive::ctx::Target;
use crate::drive::{self, RequestCtx};
use crate::error::Api;
use crate::error::{EdgeError, shown};
use crate::state::AppState;
use crate::state::app_profiles::CopySource;
use spillway_core::RegionIx;

/// Which runtime operation a route is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Converse,
    ConverseStream,
    Invoke,
    InvokeStream,
}

impl Operation {
    fn api(self) -> Api {
        match self {
            Operation::Converse | Operation::ConverseStream => Api::Converse,
            Operation::Invoke | Operation::InvokeStream => Api::Invoke,
        }
    }
    fn stream(self) -> bool {
        matches!(self, Operation::ConverseStream | Operation::InvokeStream)
    }
}

/// One request from the incoming HTTP exchange, as the handlers get it: SigV4 needs the method,
/// the raw URI, the headers as received and the exact body bytes.
pub struct Incoming {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Result<Bytes, axum::extract::rejection::BytesRejection>,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Incoming {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let (method, uri, headers) = (
            parts.method.clone(),
            parts.uri.clone(),
            parts.headers.clone(),
        );
        // The body limit travels in the parts' extensions, so it still applies here.
        let body =
            Bytes::from_request(axum::extract::Request::from_parts(parts, body), state).await;
        Ok(Incoming {
            method,
            uri,
            headers,
            body,
        })
    }
}

/// `POST /model/{modelId}/<operation>` on the listener of region `source`.
pub async fn runtime(
    state: Arc<AppState>,
    source: RegionIx,
    op: Operation,
    model_id: String,
    inc: Incoming,
) -> Response {
    let mut ctx = RequestCtx::new(source, &inc.headers, op.api());
    let parsed = parse(&state, &mut ctx, op, &model_id, &inc).await;
    drive::serve_parsed(state, ctx, parsed).await
}

/// Authenticate (SigV4 over the exact bytes received, or a Bedrock API key), parse the body
/// into the canonical request, and resolve `modelId`.
async fn parse(
    state: &Arc<AppState>,
    ctx: &mut RequestCtx,
    op: Operation,
    model_id: &str,
    inc: &Incoming,
) -> Result<(Target, ChatRequest), EdgeError> {
    let body = read_body(state, &inc.body)?;
    let tenant = authenticate(state, ctx.source, inc, &body)?;
    ctx.tenant = Some(tenant);
    // An application profile created through another instance: known here before resolving.
    state.app_profiles.prefetch(model_id).await;
    ctx.model_name = percent_encoding::percent_decode_str(model_id)
        .decode_utf8_lossy()
        .into_owned();
    if matches!(op, Operation::Invoke | Operation::InvokeStream) {
        // Resolve first for Invoke: a model served only by Bedrock upstreams takes its own
        // native body, passed through unchanged.
        let target = resolve_ref(state, ctx, tenant, model_id)?;
        let req = invoke_request(state, ctx, &target, &body, op.stream())?;
        return Ok((target, req));
    }
    // InvokeModel bodies are whatever the model takes (the SDKs may label them
    // application/octet-stream); Converse is always JSON.
    require_json(&inc.headers)?;
    let conv: ConverseRequest = serde_json::from_slice(&body)
        .map_err(|e| EdgeError::BadRequest(format!("Malformed input request: {e}")))?;
    let req = converse_to_chat(&ctx.model_name, &conv, op.stream())
        .map_err(|e| EdgeError::BadRequest(e.to_string()))?;
    if req.messages.is_empty() {
        return Err(EdgeError::BadRequest(
            "The request must contain at least one message.".into(),
        ));
    }
    if req.output_cap() == Some(0) {
        return Err(EdgeError::BadRequest(
            "maxTokens must be at least 1.".into(),
        ));
    }
    let target = resolve_ref(state, ctx, tenant, model_id)?;
    crate::api::fields::check_converse(&state.cfg, &target, &conv)?;
    Ok((target, req))
}

/// An InvokeModel body: passed through when every destination is a Bedrock upstream, else
/// converted from an Anthropic Messages body (one with `anthropic_version`), else read as an
/// OpenAI-style body.
pub(crate) fn invoke_request(
    state: &AppState,
    ctx: &mut RequestCtx,
    target: &Target,
    body: &Bytes,
    stream: bool,
) -> Result<ChatRequest, EdgeError> {
    if crate::api::fields::kinds(&state.cfg, target).all_bedrock {
        ctx.invoke_passthrough = Some(body.clone());
        native_invoke_request(&ctx.model_name, body, stream)
    } else if crate::api::anthropic::is_messages_body(body) {
        // An Anthropic Messages body (`AnthropicBedrock`): converted, answered as Anthropic's.
        ctx.api = Api::InvokeAnthropic;
        let req = crate::api::anthropic::invoke_request(&ctx.model_name, body, stream)?;
        crate::api::fields::check_chat(&state.cfg, target, &req)?;
        Ok(req)
    } else {
        let req = invoke_body(&ctx.model_name, body, stream)?;
        crate::api::fields::check_chat(&state.cfg, target, &req)?;
        Ok(req)
    }
}

pub(crate) fn read_body(
    state: &AppState,
    body: &Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Bytes, EdgeError> {
    match body {
        Ok(b) => Ok(b.clone()),
        Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(EdgeError::PayloadTooLarge(state.cfg.max_body_bytes))
        }
        Err(rej) => Err(EdgeError::BadRequest(format!(
            "Could not read the request body: {}",
            rej.body_text()
        ))),
    }
}

fn require_json(headers: &HeaderMap) -> Result<(), EdgeError> {
    match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        None => Ok(()),
        Some(ct)
            if ct
                .trim()
                .to_ascii_lowercase()
                .starts_with("application/json") =>
        {
            Ok(())
        }
        Some(ct) => Err(EdgeError::BadRequest(format!(
            "Unsupported content type {ct:?}; expected application/json."
        ))),
    }
}

/// InvokeModel bodies are OpenAI chat requests here (the model comes from the path).
fn invoke_body(model: &str, body: &[u8], stream: bool) -> Result<ChatRequest, EdgeError> {
    let mut v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| EdgeError::BadRequest(format!("Malformed input request: {e}")))?;
    let Some(obj) = v.as_object_mut() else {
        return Err(EdgeError::BadRequest(
            "Malformed input request: expected a JSON object.".into(),
        ));
    };
    obj.insert("model".into(), serde_json::Value::String(model.to_string()));
    obj.insert("stream".into(), serde_json::Value::Bool(stream));
    let req: ChatRequest = serde_json::from_value(v)
        .map_err(|e| EdgeError::BadRequest(format!("Malformed input request: {e}")))?;
    if req.messages.is_empty() || req.output_cap() == Some(0) {
        return Err(EdgeError::BadRequest(
            "The request must contain at least one message, and max_tokens must be at least 1."
                .into(),
        ));
    }
    Ok(req)
}

/// The canonical stand-in for a native Invoke body (it is sent as it came): its size estimates
/// the input tokens, and a `max_tokens`-like field, if the model family has one, the output.
fn native_invoke_request(model: &str, body: &[u8], stream: bool) -> Result<ChatRequest, EdgeError> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| EdgeError::BadRequest(format!("Malformed input request: {e}")))?;
    let cap = [
        "max_tokens",
        "maxTokens",
        "max_gen_len",
        "max_new_tokens",
        "maxTokenCount",
    ]
    .iter()
    .find_map(|k| {
        v.get(*k)
            .or_else(|| v.get("textGenerationConfig").and_then(|c| c.get(*k)))
            .and_then(|x| x.as_u64())
    });
    let text = String::from_utf8_lossy(body).into_owned();
    let mut req: ChatRequest = serde_json::from_value(serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "stream": stream,
    }))
    .map_err(|e| EdgeError::BadRequest(e.to_string()))?;
    req.max_tokens = cap;
    Ok(req)
}

/// SigV4 (`AWS4-HMAC-SHA256`, scoped to this listener's region and the `bedrock` signing name)
/// or a Bedrock API key (`Authorization: Bearer`). A SigV4 request that leaves its body out of
/// the signature (`x-amz-content-sha256: UNSIGNED-PAYLOAD`) is refused with 403 unless
/// `[server] allow_unsigned_payload`: its body could be replaced on the way without the
/// signature noticing, and the AWS SDKs sign the body by default.
pub(crate) fn authenticate(
    state: &AppState,
    source: RegionIx,
    inc: &Incoming,
    body: &[u8],
) -> Result<TenantIx, EdgeError> {
    let cfg = &state.cfg;
    let auth = inc
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth.starts_with("AWS4-HMAC-SHA256") {
        let unsigned = inc
            .headers
            .get_all("x-amz-content-sha256")
            .iter()
            .any(|v| v.as_bytes() == b"UNSIGNED-PAYLOAD");
        if unsigned && !cfg.edge.allow_unsigned_payload {
            return Err(EdgeError::AwsAuth {
                error_type: "AccessDeniedException",
                message: "This endpoint does not accept unsigned payloads \
                          (x-amz-content-sha256: UNSIGNED-PAYLOAD): sign the request body, as \
                          the AWS SDKs do by default."
                    .into(),
            });
        }
        let verified = crate::sigv4::verify(
            &inc.method,
            &inc.uri,
            &inc.headers,
            body,
            SystemTime::now(),
            cfg.region_name(source),
            "bedrock",
            |id| {
                cfg.access_key(id)
                    .map(|(_, secret)| secret.expose().to_string())
            },
        )
        .map_err(|e| EdgeError::AwsAuth {
            error_type: e.error_type(),
            message: e.to_string(),
        })?;
        return cfg
            .access_key(&verified.access_key_id)
            .map(|(t, _)| t)
            .ok_or(EdgeError::AwsAuth {
                error_type: "UnrecognizedClientException",
                message: "The security token included in the request is invalid.".into(),
            });
    }
    if auth.is_empty() {
        return Err(EdgeError::AwsAuth {
            error_type: "MissingAuthenticationTokenException",
            message: "Missing Authentication Token".into(),
        });
    }
    crate::api::openai::authenticate(state, &inc.headers).map_err(|_| EdgeError::AwsAuth {
        error_type: "UnrecognizedClientException",
        message: "The security token included in the request is invalid.".into(),
    })
}

/// `modelId` → the target, recording the profile ARN and tags for the audit record.
pub(crate) fn resolve_ref(
    state: &AppState,
    ctx: &mut RequestCtx,
    tenant: TenantIx,
    raw: &str,
) -> Result<Target, EdgeError> {
    let cfg = &state.cfg;
    let src = cfg.region_name(ctx.source).to_string();
    let account = &cfg.tenants[tenant].account_id;
    let wrong_region = |region: &str| {
        EdgeError::BadRequest(format!(
            "The ARN names region {region}, but this endpoint is {src}; call the endpoint of {region} or use an ARN of {src}."
        ))
    };
    match model_ref(raw)? {
        ModelRef::Id(id) => {
            let target = resolve(cfg, ctx.source, &id)?;
            if target.profile.is_some() {
                ctx.profile_arn = Some(format!(
                    "arn:aws:bedrock:{src}:{account}:inference-profile/{id}"
                ));
            }
            Ok(target)
        }
        ModelRef::FoundationModelArn { region, model_id } => {
            if region != src {
                return Err(wrong_region(&region));
            }
            if cfg.profile_ix(&model_id).is_some() {
                return Err(EdgeError::BadRequest(format!(
                    "{model_id} is an inference profile, not a foundation model."
                )));
            }
            resolve(cfg, ctx.source, &model_id)
        }
        ModelRef::InferenceProfileArn {
            region,
            account: arn_account,
            profile_id,
        } => {
            if region != src {
                return Err(wrong_region(&region));
            }
            if &arn_account != account {
                return Err(EdgeError::Forbidden(format!(
                    "You are not authorized to use inference profiles of account {arn_account}."
                )));
            }
            if cfg.profile_ix(&profile_id).is_none() {
                return Err(EdgeError::ModelNotFound(profile_id));
            }
            ctx.profile_arn = Some(format!(
                "arn:aws:bedrock:{src}:{account}:inference-profile/{profile_id}"
            ));
            resolve(cfg, ctx.source, &profile_id)
        }
        ModelRef::ApplicationProfileArn {
            region,
            account: _,
            id,
        } => resolve_app_profile(state, ctx, tenant, &region, &id),
    }
}

/// An application profile's ARN → its target, recording its ARN and tags for the audit record.
fn resolve_app_profile(
    state: &AppState,
    ctx: &mut RequestCtx,
    tenant: TenantIx,
    region: &str,
    id: &str,
) -> Result<Target, EdgeError> {
    let cfg = &state.cfg;
    let src = cfg.region_name(ctx.source).to_string();
    let Some(app) = state.app_profiles.get(tenant, id) else {
        return Err(EdgeError::NotFound(format!(
            "The application inference profile {} does not exist.",
            shown(id)
        )));
    };
    if region != src || app.region != ctx.source {
        return Err(EdgeError::BadRequest(format!(
            "The ARN names region {region}, but this endpoint is {src}; call the endpoint of {region} or use an ARN of {src}."
        )));
    }
    ctx.profile_arn = Some(app.arn.clone());
    ctx.tags = app.tags.clone();
    match app.source {
        CopySource::Model { model, region } => {
            if cfg.deployment(model, region).is_none() {
                return Err(EdgeError::Unavailable(format!(
                    "{} is no longer served in {}.",
                    cfg.models[model].id,
                    cfg.region_name(region)
                )));
            }
            Ok(Target {
                model,
                profile: None,
                destinations: vec![region],
                cross_region: false,
            })
        }
        CopySource::Profile(p) => {
            let profile = &cfg.profiles[p];
            let destinations = profile
                .destinations
                .get(&ctx.source)
                .cloned()
                .ok_or_else(|| {
                    EdgeError::NotCallableHere(format!(
                        "The inference profile {} cannot be called from region {src}.",
                        profile.id
                    ))
                })?;
            Ok(Target {
                model: profile.model,
                profile: Some(p),
                destinations,
                cross_region: true,
            })
        }
    }
}
