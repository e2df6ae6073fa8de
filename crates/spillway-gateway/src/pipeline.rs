//! The request pipeline for `POST /v1/chat/completions`, as phases in one function:
//!
//! authenticate → parse & normalise → resolve model/profile → reserve quota → route (core) →
//! call upstream, failing over along the plan while nothing has been sent to the client →
//! respond (JSON, or SSE relayed as it arrives) → settle quota and record (on completion, error
//! or disconnect, through the holds' `Drop`).
//!
//! Per-request state lives in [`RequestCtx`]; shared state in [`AppState`]. The routing core only
//! decides; this module does the I/O and reports each attempt's outcome back to it.
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use spillway_core::{Demand, FailureKind, Plan, Reason, RegionIx, RouteRequest};
use spillway_proto::{ChatRequest, StreamOptions};

use crate::attempt::Attempt;
use crate::codec::Api;
use crate::config::TenantIx;
use crate::error::EdgeError;
use crate::metrics::{AttemptLabels, RequestLabels};
use crate::relay::RelayInfo;
use crate::resolve::{Target, resolve};
use crate::state::{AppState, AttemptHold, QuotaKey};
use crate::upstream::UpstreamFailure;

/// Everything known about one request as it moves through the phases.
pub struct RequestCtx {
    pub id: String,
    pub started: Instant,
    pub source: RegionIx,
    pub tenant: Option<TenantIx>,
    pub model_name: String,
    pub served_in: Option<RegionIx>,
    pub reason: Option<Reason>,
    pub attempts: u32,
    /// The API the client called (errors and answers are rendered in its shape).
    pub api: Api,
    /// For the audit record: the profile ARN the request named, and its application profile's
    /// tags.
    pub profile_arn: Option<String>,
    pub tags: Vec<(String, String)>,
    /// An InvokeModel body passed through unchanged to Bedrock upstreams.
    pub invoke_passthrough: Option<Bytes>,
}

impl RequestCtx {
    pub fn new(source: RegionIx, headers: &HeaderMap, api: Api) -> Self {
        // Keep a caller's request id when it is short and printable; otherwise make one.
        let id = headers
            .get("x-request-id")
            .or_else(|| headers.get("x-amzn-requestid"))
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        RequestCtx {
            id,
            started: Instant::now(),
            source,
            tenant: None,
            model_name: String::new(),
            served_in: None,
            reason: None,
            attempts: 0,
            api,
            profile_arn: None,
            tags: Vec::new(),
            invoke_passthrough: None,
        }
    }
}

/// `POST /v1/chat/completions` on the listener of region `source`.
pub async fn chat_completions(
    state: Arc<AppState>,
    source: RegionIx,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut ctx = RequestCtx::new(source, &headers, Api::OpenAi);
    let result = run(&state, &mut ctx, &headers, body).await;
    finish(&state, &ctx, result)
}

/// Turn a pipeline result into the client's response: errors in the client's API shape, and
/// the routing headers on every answer.
pub fn finish(state: &AppState, ctx: &RequestCtx, result: Result<Response, EdgeError>) -> Response {
    let cfg = &state.cfg;
    let source = ctx.source;
    let mut resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            record(state, ctx, e.outcome());
            tracing::info!(request_id = %ctx.id, source = cfg.region_name(source), model = %ctx.model_name,
                api = ctx.api.as_str(), status = e.status().as_u16(), outcome = e.outcome(), "request refused");
            crate::audit::refused(state, ctx, e.outcome());
            e.into_response_for(ctx.api)
        }
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ctx.id) {
        h.insert("x-request-id", v.clone());
        if ctx.api != Api::OpenAi {
            h.insert("x-amzn-RequestId", v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(cfg.region_name(source)) {
        h.insert("x-spillway-source-region", v);
    }
    if let Some(r) = ctx.served_in
        && let Ok(v) = HeaderValue::from_str(cfg.region_name(r))
    {
        h.insert("x-spillway-region", v);
    }
    if let Some(reason) = ctx.reason {
        h.insert(
            "x-spillway-route-reason",
            HeaderValue::from_static(reason.as_str()),
        );
    }
    resp
}

async fn run(
    state: &Arc<AppState>,
    ctx: &mut RequestCtx,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, EdgeError> {
    let cfg = state.cfg.clone();

    // Phase 1: authenticate.
    let tenant = authenticate(state, headers)?;
    ctx.tenant = Some(tenant);

    // Phase 2: parse and normalise.
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

    // Phase 3: resolve the model or profile, and the candidate destinations.
    let target = resolve(&cfg, ctx.source, &req.model)?;
    serve(state, ctx, tenant, target, req).await
}

/// Phases 4 to 7, whatever API the request came in: reserve quota, route, call upstream with
/// failover, and answer (the answer is rendered for `ctx.api`).
pub async fn serve(
    state: &Arc<AppState>,
    ctx: &mut RequestCtx,
    tenant: TenantIx,
    target: Target,
    mut req: ChatRequest,
) -> Result<Response, EdgeError> {
    let cfg = state.cfg.clone();
    ctx.tenant = Some(tenant);
    let denied = &cfg.tenants[tenant].denied_regions;
    let candidates = cfg.candidates(target.model, ctx.source, &target.destinations, denied);
    if candidates.is_empty() {
        return Err(EdgeError::Forbidden(format!(
            "None of the regions that serve {} from {} is allowed for your account.",
            ctx.model_name,
            cfg.region_name(ctx.source)
        )));
    }
    // Phase 4: reserve tenant quota up front: input tokens + max_tokens x burndown.
    let model = &cfg.models[target.model];
    let prompt_tokens = spillway_proto::tokens::prompt_tokens(&req.messages);
    let output_cap = req.output_cap().unwrap_or(model.default_max_tokens);
    let est_tokens = prompt_tokens + (output_cap as f64 * model.output_burndown).ceil() as u64;
    let key = QuotaKey {
        tenant,
        model: target.model,
        source: ctx.source,
        cross_region: target.cross_region,
    };
    let mut quota = state.reserve(key, est_tokens).await.map_err(|d| EdgeError::Throttled {
        message: format!(
            "Too many requests or tokens for {} from {}; your {} quota is exhausted. Retry after the indicated time.",
            ctx.model_name,
            cfg.region_name(ctx.source),
            if target.cross_region { "cross-region" } else { "in-region" }
        ),
        retry_after: d.retry_after,
    })?;

    // Phase 5: route. Plan and admit the first step under one lock, so no other request takes
    // the headroom in between.
    let demand = Demand {
        est_tokens,
        input_tokens: prompt_tokens,
    };
    let (plan, first) = plan_and_admit(state, ctx.source, &candidates, demand);
    let Some((mut step_ix, mut hold)) = first else {
        return Err(EdgeError::Throttled {
            message: format!(
                "No region of {} has capacity for this request right now. Retry after the indicated time.",
                ctx.model_name
            ),
            retry_after: plan.retry_after.unwrap_or(Duration::from_secs(1)),
        });
    };

    // Phase 6: call upstream; on a retryable failure move along the plan.
    let stream = req.is_stream();
    let wants_usage = req.wants_stream_usage();
    if stream {
        // Always ask for usage, to settle quota exactly; the relay drops the usage chunk again
        // when the client did not ask for it.
        let opts = req
            .stream_options
            .get_or_insert_with(StreamOptions::default);
        opts.include_usage = Some(true);
    }
    let mut reason = plan.steps[step_ix].reason;
    let mut last: UpstreamFailure;
    loop {
        let step = plan.steps[step_ix];
        ctx.attempts += 1;
        quota.set_used(prompt_tokens);
        ctx.served_in = Some(step.region);
        ctx.reason = Some(reason);
        let attempt = Attempt {
            state,
            ctx,
            target: &target,
            deployment_region: step.region,
            hold,
            started: Instant::now(),
        };
        match attempt
            .run(&req, stream, wants_usage, prompt_tokens, quota)
            .await
        {
            Ok(resp) => return Ok(resp),
            Err((failure, q)) => {
                ctx.served_in = None;
                quota = q;
                state
                    .metrics
                    .attempts
                    .get_or_create(&AttemptLabels {
                        destination: cfg.region_name(step.region).to_string(),
                        model: model.id.clone(),
                        result: failure.kind.as_str().to_string(),
                    })
                    .inc();
                tracing::warn!(request_id = %ctx.id, destination = cfg.region_name(step.region),
                    failure = failure.kind.as_str(), status = failure.status.map(|s| s.as_u16()), "upstream attempt failed");
                if !failure.kind.is_retryable() {
                    quota.set_used(prompt_tokens);
                    return Err(final_error(failure, &ctx.model_name));
                }
                reason = Reason::Failover(failure.kind);
                last = failure;
            }
        }
        // Next step of the plan, within the global retry budget.
        let now = state.now();
        if !state.router().router.try_retry(now) {
            break;
        }
        match next_admitted(state, &plan, step_ix + 1, demand) {
            Some((i, h)) => {
                step_ix = i;
                hold = h;
            }
            None => break,
        }
    }
    // Nothing was served: the quota reservation is cancelled in full.
    quota.clear_used();
    // Destinations that were never tried lacked headroom: as Bedrock does, a request that no
    // destination can take is throttled (429), not failed.
    let untried = candidates.len() > ctx.attempts as usize;
    if untried && last.kind.is_retryable() {
        let retry_after = match last.kind {
            FailureKind::Throttled {
                retry_after: Some(d),
            } => d,
            _ => Duration::from_secs(1),
        };
        return Err(EdgeError::Throttled {
            message: format!(
                "No region of {} has capacity for this request right now. Retry after the indicated time.",
                ctx.model_name
            ),
            retry_after,
        });
    }
    Err(final_error(last, &ctx.model_name))
}

fn plan_and_admit(
    state: &Arc<AppState>,
    source: RegionIx,
    candidates: &[spillway_core::Candidate],
    demand: Demand,
) -> (Plan, Option<(usize, AttemptHold)>) {
    let now = state.now();
    let plan = {
        let mut cell = state.router();
        cell.router.record_request(now);
        let crate::state::RouterCell { router, rng } = &mut *cell;
        router.plan(
            &RouteRequest {
                source,
                candidates,
                est_tokens: demand.est_tokens,
                input_tokens: demand.input_tokens,
            },
            now,
            rng,
        )
    };
    let first = next_admitted(state, &plan, 0, demand);
    (plan, first)
}

/// The first step at or after `from` whose deployment admits the request now.
fn next_admitted(
    state: &Arc<AppState>,
    plan: &Plan,
    from: usize,
    demand: Demand,
) -> Option<(usize, AttemptHold)> {
    plan.steps
        .iter()
        .enumerate()
        .skip(from)
        .find_map(|(i, s)| state.acquire(s.deployment, demand).ok().map(|h| (i, h)))
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
    // Keys are stored as SHA-256 hashes; looking up the hash of the presented key reveals
    // nothing about a stored key through timing.
    let hash = crate::config::sha256(key.as_bytes());
    state
        .cfg
        .tenant_by_key_hash(&hash)
        .ok_or(EdgeError::Unauthorized)
}

/// The error for a request that no destination served.
fn final_error(f: UpstreamFailure, model: &str) -> EdgeError {
    match f.kind {
        FailureKind::ClientError => EdgeError::UpstreamClient {
            status: f.status.unwrap_or(StatusCode::BAD_REQUEST),
            body: f.body,
        },
        FailureKind::Throttled { retry_after } => EdgeError::Throttled {
            message: format!(
                "Every region that can serve {model} is at capacity. Retry after the indicated time."
            ),
            retry_after: retry_after.unwrap_or(Duration::from_secs(1)),
        },
        FailureKind::Timeout => {
            EdgeError::Timeout(format!("No region answered in time for {model}."))
        }
        FailureKind::Connect | FailureKind::ServerError | FailureKind::Cancelled => {
            EdgeError::Unavailable(format!(
                "No region could serve {model} right now; the upstreams failed."
            ))
        }
    }
}

pub(crate) fn record(state: &AppState, ctx: &RequestCtx, outcome: &str) {
    let cfg = &state.cfg;
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            source: cfg.region_name(ctx.source).to_string(),
            destination: ctx
                .served_in
                .map(|r| cfg.region_name(r).to_string())
                .unwrap_or_default(),
            model: if cfg.model_ix(&ctx.model_name).is_some()
                || cfg.profile_ix(&ctx.model_name).is_some()
            {
                ctx.model_name.clone()
            } else {
                String::new()
            },
            outcome: outcome.to_string(),
            reason: ctx.reason.map(|r| r.as_str()).unwrap_or("").to_string(),
        })
        .inc();
}

pub(crate) fn record_served(
    state: &AppState,
    info: &RelayInfo,
    outcome: &str,
    usage: &spillway_proto::Usage,
) {
    let cfg = &state.cfg;
    let (source, destination) = (
        cfg.region_name(info.source),
        cfg.region_name(info.served_in),
    );
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            source: source.to_string(),
            destination: destination.to_string(),
            model: info.model_name.clone(),
            outcome: outcome.to_string(),
            reason: info.reason.as_str().to_string(),
        })
        .inc();
    tracing::info!(request_id = %info.id, tenant = info.tenant.map(|t| cfg.tenants[t].name.as_str()).unwrap_or(""),
        api = info.api.as_str(), source, destination, model = %info.model_name, reason = info.reason.as_str(),
        cross_region = info.cross_region, attempts = info.attempts, tokens = usage.total_tokens, outcome,
        latency_ms = info.request_started.elapsed().as_millis() as u64, "request served");
    crate::audit::served(state, info, outcome, usage);
}
