//! The Bedrock control plane for inference profiles, as the `aws-sdk-bedrock` and boto3
//! `bedrock` clients call it: `GET /inference-profiles` (`type`, `maxResults`, `nextToken`),
//! `GET /inference-profiles/{id or ARN}`, `POST /inference-profiles` (CreateInferenceProfile) and
//! `DELETE /inference-profiles/{id or ARN}`.
//!
//! System profiles are listed as callable from this listener's region, each with one model ARN
//! per destination region; application profiles are the calling tenant's, in this region.
use std::sync::Arc;
use std::time::SystemTime;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use spillway_core::RegionIx;
use spillway_proto::bedrock::ModelRef;

use crate::api::bedrock::{Incoming, authenticate, read_body};
use crate::api::resolve::model_ref;
use crate::api::tags::{Resource, Tag, TagCall};
use crate::config::{Config, ProfileIx, TenantIx};
use crate::error::{EdgeError, shown};
use crate::state::AppState;
use crate::state::app_profiles::{AppProfile, CopySource, NewAppProfile};

/// Which control-plane call.
pub enum Call {
    List {
        query: Option<String>,
    },
    Get(String),
    Create,
    Delete(String),
    /// ListFoundationModels ([`crate::api::foundation`]).
    ListModels {
        query: Option<String>,
    },
    /// GetFoundationModel, by the raw path segment.
    GetModel(String),
    /// ListTagsForResource, TagResource, UntagResource ([`crate::api::tags`]).
    Tags(TagCall),
}

pub async fn handle(state: Arc<AppState>, source: RegionIx, call: Call, inc: Incoming) -> Response {
    let mut resp = match run(&state, source, call, &inc).await {
        Ok(resp) => resp,
        Err(e) => e.into_bedrock_response(),
    };
    if let Ok(v) = axum::http::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
    resp
}

async fn run(
    state: &AppState,
    source: RegionIx,
    call: Call,
    inc: &Incoming,
) -> Result<Response, EdgeError> {
    let body = read_body(state, &inc.body)?;
    let tenant = authenticate(state, source, inc, &body)?;
    let cfg = &state.cfg;
    match call {
        Call::List { query } => list(state, source, tenant, query.as_deref()).await,
        Call::Get(id) => {
            let v = match lookup(state, source, tenant, &id).await? {
                Found::System(p) => system_json(cfg, source, tenant, p, state.started_at),
                Found::App(a) => app_json(cfg, &a),
            };
            Ok(ok(StatusCode::OK, v))
        }
        Call::Create => create(state, source, tenant, &body).await,
        Call::ListModels { query } => {
            let pairs = url_pairs(query.as_deref().unwrap_or(""));
            Ok(ok(
                StatusCode::OK,
                crate::api::foundation::list(cfg, source, pairs)?,
            ))
        }
        Call::GetModel(id) => Ok(ok(
            StatusCode::OK,
            crate::api::foundation::get(cfg, source, &id)?,
        )),
        Call::Tags(call) => {
            let asked = crate::api::tags::parse(call, &body)?;
            let resource = match lookup(state, source, tenant, &asked.arn).await? {
                Found::System(_) => Resource::System,
                Found::App(a) => Resource::App(a),
            };
            let v = crate::api::tags::answer(state, tenant, asked, resource).await?;
            Ok(ok(StatusCode::OK, v))
        }
        Call::Delete(id) => match lookup(state, source, tenant, &id).await? {
            Found::System(_) => Err(EdgeError::BadRequest(
                "System-defined inference profiles cannot be deleted.".into(),
            )),
            Found::App(a) => {
                if !state.app_profiles.delete(tenant, &a.id).await? {
                    // Deleted through another instance meanwhile.
                    return Err(EdgeError::NotFound(format!(
                        "The inference profile {} does not exist.",
                        shown(&id)
                    )));
                }
                Ok(ok(StatusCode::OK, json!({})))
            }
        },
    }
}

fn ok(status: StatusCode, v: Value) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn ts(t: SystemTime) -> String {
    DateTime::from(t).fmt(Format::DateTime).unwrap_or_default()
}

fn geo_label(p: &crate::config::Profile) -> String {
    p.geography
        .as_deref()
        .unwrap_or("global")
        .to_ascii_uppercase()
}

fn system_json(
    cfg: &Config,
    source: RegionIx,
    tenant: TenantIx,
    p: ProfileIx,
    started: SystemTime,
) -> Value {
    let profile = &cfg.profiles[p];
    let model = &cfg.models[profile.model].id;
    let src = cfg.region_name(source);
    let dests = profile
        .destinations
        .get(&source)
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = dests.iter().map(|r| cfg.region_name(*r)).collect();
    json!({
        "inferenceProfileName": format!("{} {model}", geo_label(profile)),
        "description": format!("Routes requests to {model} in {}.", names.join(", ")),
        "createdAt": ts(started),
        "updatedAt": ts(started),
        "inferenceProfileArn": format!("arn:aws:bedrock:{src}:{}:inference-profile/{}", cfg.tenants[tenant].account_id, profile.id),
        "models": names.iter().map(|r| json!({"modelArn": format!("arn:aws:bedrock:{r}::foundation-model/{model}")})).collect::<Vec<_>>(),
        "inferenceProfileId": profile.id,
        "status": "ACTIVE",
        "type": "SYSTEM_DEFINED",
    })
}

fn app_json(cfg: &Config, a: &AppProfile) -> Value {
    let (model, regions): (&str, Vec<RegionIx>) = match a.source {
        CopySource::Model { model, region } => (&cfg.models[model].id, vec![region]),
        CopySource::Profile(p) => {
            let prof = &cfg.profiles[p];
            (
                &cfg.models[prof.model].id,
                prof.destinations
                    .get(&a.region)
                    .cloned()
                    .unwrap_or_default(),
            )
        }
    };
    let mut v = json!({
        "inferenceProfileName": a.name,
        "createdAt": ts(a.created_at),
        "updatedAt": ts(a.created_at),
        "inferenceProfileArn": a.arn,
        "models": regions.iter().map(|r| json!({"modelArn": format!("arn:aws:bedrock:{}::foundation-model/{model}", cfg.region_name(*r))})).collect::<Vec<_>>(),
        "inferenceProfileId": a.id,
        "status": "ACTIVE",
        "type": "APPLICATION",
    });
    if let Some(d) = &a.description {
        v["description"] = json!(d);
    }
    v
}

enum Found {
    System(ProfileIx),
    App(AppProfile),
}

/// An id or ARN of a system profile callable here, or of the tenant's application profile.
async fn lookup(
    state: &AppState,
    source: RegionIx,
    tenant: TenantIx,
    raw: &str,
) -> Result<Found, EdgeError> {
    let cfg = &state.cfg;
    let not_found = || {
        EdgeError::NotFound(format!(
            "The inference profile {} does not exist.",
            shown(raw)
        ))
    };
    let system = |id: &str| {
        cfg.profile_ix(id)
            .filter(|p| cfg.profiles[*p].destinations.contains_key(&source))
    };
    match model_ref(raw)? {
        ModelRef::Id(id) => {
            if let Some(p) = system(&id) {
                return Ok(Found::System(p));
            }
            state
                .app_profiles
                .lookup(tenant, &id)
                .await
                .filter(|a| a.region == source)
                .map(Found::App)
                .ok_or_else(not_found)
        }
        ModelRef::InferenceProfileArn {
            region,
            account,
            profile_id,
        } if region == cfg.region_name(source) => {
            if account != cfg.tenants[tenant].account_id {
                return Err(EdgeError::Forbidden(format!(
                    "You are not authorized to use inference profiles of account {account}."
                )));
            }
            system(&profile_id).map(Found::System).ok_or_else(not_found)
        }
        ModelRef::ApplicationProfileArn {
            region,
            account,
            id,
        } if region == cfg.region_name(source) && account == cfg.tenants[tenant].account_id => {
            state
                .app_profiles
                .lookup(tenant, &id)
                .await
                .map(Found::App)
                .ok_or_else(not_found)
        }
        _ => Err(not_found()),
    }
}

async fn list(
    state: &AppState,
    source: RegionIx,
    tenant: TenantIx,
    query: Option<&str>,
) -> Result<Response, EdgeError> {
    let cfg = &state.cfg;
    let mut kind = None;
    let mut max = 100usize;
    let mut start = 0usize;
    for (k, v) in url_pairs(query.unwrap_or("")) {
        match k.as_str() {
            "type" => match v.as_str() {
                "SYSTEM_DEFINED" | "APPLICATION" => kind = Some(v),
                other => {
                    return Err(EdgeError::BadRequest(format!(
                        "Invalid type {other:?}; expected SYSTEM_DEFINED or APPLICATION."
                    )));
                }
            },
            "maxResults" => {
                max = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| {
                        EdgeError::BadRequest("maxResults must be between 1 and 1000.".into())
                    })?;
            }
            "nextToken" => {
                start = v
                    .parse()
                    .map_err(|_| EdgeError::BadRequest("Invalid nextToken.".into()))?;
            }
            _ => {}
        }
    }
    let mut all: Vec<Value> = Vec::new();
    if kind.as_deref() != Some("APPLICATION") {
        for (i, p) in cfg.profiles.iter().enumerate() {
            if p.destinations.contains_key(&source) {
                all.push(system_json(
                    cfg,
                    source,
                    tenant,
                    ProfileIx::nth(i),
                    state.started_at,
                ));
            }
        }
    }
    if kind.as_deref() != Some("SYSTEM_DEFINED") {
        all.extend(
            state
                .app_profiles
                .list(tenant, source)
                .await
                .iter()
                .map(|a| app_json(cfg, a)),
        );
    }
    let page: Vec<Value> = all.iter().skip(start).take(max).cloned().collect();
    let mut v = json!({ "inferenceProfileSummaries": page });
    if start + max < all.len() {
        v["nextToken"] = json!((start + max).to_string());
    }
    Ok(ok(StatusCode::OK, v))
}

fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    inference_profile_name: String,
    description: Option<String>,
    client_request_token: Option<String>,
    model_source: ModelSource,
    #[serde(default)]
    tags: Vec<Tag>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModelSource {
    copy_from: String,
}

impl CreateRequest {
    /// Bedrock's limits on the profile's name, description and tags.
    fn validate(&self) -> Result<(), EdgeError> {
        let name = &self.inference_profile_name;
        let name_ok = (1..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " _.:-".contains(c));
        if !name_ok {
            return Err(EdgeError::BadRequest(
                "inferenceProfileName must be 1 to 64 letters, digits, spaces, or _ . : -".into(),
            ));
        }
        if self.description.as_ref().is_some_and(|d| d.len() > 200) {
            return Err(EdgeError::BadRequest(
                "description must be at most 200 characters.".into(),
            ));
        }
        crate::api::tags::check_tags(&self.tags)?;
        if self.tags.len() > crate::state::app_profiles::MAX_TAGS {
            return Err(EdgeError::TooManyTags(format!(
                "An inference profile carries at most {} tags.",
                crate::state::app_profiles::MAX_TAGS
            )));
        }
        Ok(())
    }
}

/// What `modelSource.copyFrom` names: a foundation model served in the listener's region
/// `source`, or a system profile callable from it, by an ARN of the caller's own account
/// (`account`): another account's is refused with 403 `AccessDeniedException`, as the runtime
/// refuses to invoke it.
fn copy_source(
    cfg: &Config,
    source: RegionIx,
    account: &str,
    copy_from: &str,
) -> Result<CopySource, EdgeError> {
    let src = cfg.region_name(source);
    match model_ref(copy_from)? {
        ModelRef::FoundationModelArn { region, model_id } if region == src => {
            let m = cfg
                .model_ix(&model_id)
                .ok_or_else(|| EdgeError::ModelNotFound(model_id.clone()))?;
            if cfg.deployment(m, source).is_none() {
                return Err(EdgeError::BadRequest(format!(
                    "{model_id} is not served in {src}; copy an inference profile instead."
                )));
            }
            Ok(CopySource::Model {
                model: m,
                region: source,
            })
        }
        ModelRef::InferenceProfileArn {
            region,
            account: arn_account,
            profile_id,
        } if region == src => {
            if arn_account != account {
                return Err(EdgeError::Forbidden(format!(
                    "You are not authorized to copy inference profiles of account {arn_account}."
                )));
            }
            let p = cfg
                .profile_ix(&profile_id)
                .filter(|p| cfg.profiles[*p].destinations.contains_key(&source))
                .ok_or_else(|| EdgeError::ModelNotFound(profile_id.clone()))?;
            Ok(CopySource::Profile(p))
        }
        _ => Err(EdgeError::BadRequest(format!(
            "modelSource.copyFrom must be the ARN of a foundation model or a system inference profile in {src}."
        ))),
    }
}

async fn create(
    state: &AppState,
    source: RegionIx,
    tenant: TenantIx,
    body: &[u8],
) -> Result<Response, EdgeError> {
    let cfg = &state.cfg;
    let req: CreateRequest = serde_json::from_slice(body)
        .map_err(|e| EdgeError::BadRequest(format!("Malformed input request: {e}")))?;
    req.validate()?;
    let account = &cfg.tenants[tenant].account_id;
    let copy = copy_source(cfg, source, account, &req.model_source.copy_from)?;
    let src = cfg.region_name(source);
    let profile = state
        .app_profiles
        .create(NewAppProfile {
            name: req.inference_profile_name,
            description: req.description,
            tenant,
            account_id: cfg.tenants[tenant].account_id.clone(),
            region: source,
            region_name: src.to_string(),
            source: copy,
            tags: req.tags.into_iter().map(|t| (t.key, t.value)).collect(),
            client_request_token: req.client_request_token,
        })
        .await?;
    Ok(ok(
        StatusCode::CREATED,
        json!({ "inferenceProfileArn": profile.arn, "status": "ACTIVE" }),
    ))
}
