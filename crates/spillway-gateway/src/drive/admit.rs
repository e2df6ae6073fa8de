//! Admission: the phases between a parsed request and its exchange — the candidate
//! destinations, the tenant-quota reservation, and the route (plan and first admission in one
//! step of the core, so no other request can take the headroom or the queued wait in between).
use spillway_core::{Candidate, Demand, Prefix, RouteRequest};
use spillway_exchange::{Exchange, Facts, Limits, Price, ResumePolicy};
use spillway_proto::StreamOptions;

use super::ctx::RequestCtx;
use crate::config::raw::ModelKind;
use crate::config::{Config, Model};
use crate::drive::ctx::Target;
use crate::error::{Api, EdgeError, shown};
use crate::state::AppState;
use crate::state::quota_book::{QuotaKey, Ticket};
use crate::state::routing::RouterCell;
use spillway_proto::canonical::Request;

/// How long the attempt of a client that stalled or left is still read, after its deployment
/// was released, to bill what the upstream had generated (the exchange's `drain`). What a stall
/// held back in the sockets arrives within it: even the loopback's TCP, whose window reopens
/// late after a long stall, delivered it within a second in the tests; an upstream with more to
/// generate is cut at its end.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// A request admitted: its exchange, its quota reservation, and the canonical request to send.
pub struct Admitted {
    pub exchange: Exchange,
    pub ticket: Option<Ticket>,
    pub req: Request,
}

/// Reserve quota and route. An error here ends the request before it has an exchange.
pub async fn admit(
    app: &AppState,
    ctx: &mut RequestCtx,
    target: Target,
    mut req: Request,
) -> Result<Admitted, EdgeError> {
    let cfg = app.cfg.clone();
    let tenant = ctx.tenant.ok_or(EdgeError::Unauthorized)?;
    kind_matches(&cfg.models[target.model], ctx, &req)?;
    let denied = &cfg.tenants[tenant].denied_regions;
    let candidates = cfg.candidates(target.model, ctx.source, &target.destinations, denied);
    if candidates.is_empty() {
        return Err(EdgeError::Forbidden(format!(
            "None of the regions that serve {} from {} is allowed for your account.",
            shown(&ctx.model_name),
            cfg.region_name(ctx.source)
        )));
    }
    // Reserve tenant quota up front: input tokens + max_tokens x burndown.
    let est = Estimate::of(&cfg.models[target.model], &req);
    let (prompt_tokens, est_tokens) = (est.prompt, est.tokens);
    ctx.prompt_tokens = prompt_tokens;
    let key = QuotaKey {
        tenant,
        model: target.model,
        source: ctx.source,
        cross_region: target.cross_region,
    };
    never_admissible(app, ctx, &key, &candidates, &est)?;
    let ticket = app.reserve(key, est_tokens).await.map_err(|d| EdgeError::Throttled {
        message: format!(
            "Too many requests or tokens for {} from {}; your {} quota is exhausted. Retry after the indicated time.",
            shown(&ctx.model_name),
            cfg.region_name(ctx.source),
            if target.cross_region { "cross-region" } else { "in-region" }
        ),
        retry_after: d.retry_after,
    })?;
    let stream = req.is_stream();
    ask_usage(ctx, &mut req);
    let facts = Facts {
        source: ctx.source,
        stream,
        // Every attempt streams from the upstream but a native Invoke body's and an embeddings
        // request's, for a whole answer (see `drive::attempt`).
        upstream_stream: stream
            || (ctx.invoke_passthrough.is_none() && matches!(req, Request::Chat(_))),
        prompt_tokens,
        demand: Demand {
            est_tokens,
            input_tokens: prompt_tokens,
        },
        candidates: candidates.len(),
        reserved_tokens: ticket.map(|t| t.reservation.tokens),
        price: cfg.price(target.model, ctx.source).map(|p| Price {
            input_per_mtok: p.input_per_mtok,
            output_per_mtok: p.output_per_mtok,
        }),
        resume: resume_policy(
            app,
            cfg.models[target.model].midstream_failover,
            ctx,
            &candidates,
            &req,
        ),
    };
    let blocks = prefix_blocks(&cfg, &candidates, &req);
    let prefix = Prefix {
        blocks: &blocks,
        affinity: cfg.models[target.model].cache_affinity,
    };
    let exchange = route(app, &candidates, facts, prefix);
    ctx.target = Some(target);
    Ok(Admitted {
        exchange,
        ticket,
        req,
    })
}

/// A stream always asks its upstream for usage, to settle quota exactly; the client's encoder
/// drops the usage chunk again when the client did not ask for it.
fn ask_usage(ctx: &mut RequestCtx, req: &mut Request) {
    if let Request::Chat(req) = req
        && req.is_stream()
    {
        ctx.wants_usage = req.wants_stream_usage();
        let opts = req
            .stream_options
            .get_or_insert_with(StreamOptions::default);
        opts.include_usage = Some(true);
    }
}

/// Continuations a stream may get (mid-stream failover): when its model has it on, to the
/// candidates whose deployment has a continuation form. Never for a native InvokeModel body
/// (its stream is relayed opaque) nor for a whole answer (it moves whole until it is done).
fn resume_policy(
    app: &AppState,
    on: bool,
    ctx: &RequestCtx,
    candidates: &[Candidate],
    req: &Request,
) -> Option<ResumePolicy> {
    let Request::Chat(chat) = req else {
        return None;
    };
    let cfg = &app.cfg;
    if !on || !chat.is_stream() || ctx.invoke_passthrough.is_some() {
        return None;
    }
    let deployments = candidates
        .iter()
        .filter(|c| {
            cfg.deployments[c.deployment.0 as usize]
                .continuation
                .is_some()
        })
        .map(|c| (c.deployment, c.region))
        .collect();
    Some(ResumePolicy {
        deployments,
        max_tokens: chat.output_cap(),
        max_resumes: MAX_RESUMES,
    })
}

/// Continuations one stream gets at most: a second region failing under the same stream is
/// rare; a third is more likely a request that breaks every engine, which should end.
const MAX_RESUMES: u32 = 2;

/// A chat request on an embedding model, or an embeddings request on a chat model, is refused
/// with 400 naming `model` (in the client's API: every chat API, and `/v1/embeddings`).
fn kind_matches(model: &Model, ctx: &RequestCtx, req: &Request) -> Result<(), EdgeError> {
    let name = shown(&ctx.model_name);
    let message = match (model.kind, req) {
        (ModelKind::Chat, Request::Embed(_)) => {
            format!("{name} is a chat model; /v1/embeddings serves only embedding models.")
        }
        (ModelKind::Embedding, Request::Chat(_)) => format!(
            "{name} is an embedding model; it generates no text. Call it on /v1/embeddings."
        ),
        _ => return Ok(()),
    };
    Err(EdgeError::InvalidParam {
        message,
        param: "model".into(),
    })
}

/// What a request reserves: its prompt, the output cap it asked for (if any) and the one it is
/// reserved at, and the tokens of both (the output at the model's burndown).
struct Estimate {
    prompt: u64,
    asked: Option<u64>,
    output_cap: u64,
    tokens: u64,
}

impl Estimate {
    fn of(model: &Model, req: &Request) -> Estimate {
        let prompt = req.prompt_tokens();
        let output_cap = match req {
            Request::Chat(c) => c.output_cap().unwrap_or(model.default_max_tokens),
            // An embedding has no output to reserve.
            Request::Embed(_) => 0,
        };
        Estimate {
            prompt,
            asked: req.output_cap(),
            output_cap,
            tokens: prompt + (output_cap as f64 * model.output_burndown).ceil() as u64,
        }
    }
}

/// A request that can never be admitted gets 400 in the client's API, not a 429 its client
/// would retry forever: it asks for more output tokens than the model's `max_output_tokens`, or
/// reserves more tokens than the tenant's per-minute token quota holds when full, or than every
/// deployment that could serve it takes in a minute (buckets never hold more than their limit).
fn never_admissible(
    app: &AppState,
    ctx: &RequestCtx,
    key: &QuotaKey,
    candidates: &[Candidate],
    est: &Estimate,
) -> Result<(), EdgeError> {
    let cfg = &app.cfg;
    let model = &cfg.models[key.model];
    let (param, prompt_param) = match ctx.api {
        Api::Converse => ("maxTokens", "messages"),
        Api::OpenAi | Api::Invoke | Api::Anthropic | Api::InvokeAnthropic => {
            ("max_tokens", "messages")
        }
        Api::Responses => ("max_output_tokens", "input"),
        Api::Embeddings => ("max_tokens", "input"),
    };
    if let (Some(asked), Some(max)) = (est.asked, model.max_output_tokens)
        && asked > max
    {
        return Err(EdgeError::InvalidParam {
            message: format!(
                "{param} is {asked}, but {} generates at most {max} output tokens per request.",
                shown(&ctx.model_name)
            ),
            param: param.into(),
        });
    }
    let quota = app.quota_limits(key).and_then(|l| l.tpm);
    let deployments = candidates
        .iter()
        .map(|c| cfg.deployments[c.deployment.0 as usize].tpm)
        .collect::<Option<Vec<u64>>>()
        .and_then(|tpms| tpms.into_iter().max());
    let (limit, whose) = match (quota, deployments) {
        (Some(q), _) if est.tokens > q => (q, "your quota for it allows"),
        (_, Some(d)) if est.tokens > d => (d, "any region that can serve it accepts"),
        _ => return Ok(()),
    };
    let (param, hint) = if est.prompt > limit {
        (prompt_param, "Shorten the prompt".to_string())
    } else {
        (param, format!("Lower {param}"))
    };
    Err(EdgeError::InvalidParam {
        message: format!(
            "This request can never be served: it reserves {} tokens ({} of prompt, up to {} of output), more than {whose} in a minute ({limit}) for {} from {}. {hint}.",
            est.tokens,
            est.prompt,
            est.output_cap,
            shown(&ctx.model_name),
            cfg.region_name(ctx.source)
        ),
        param: param.into(),
    })
}

/// The prompt's prefix-block hashes (`spillway_proto::prefix`) when a candidate deployment
/// models a prefix cache (none otherwise: hashing is then skipped).
fn prefix_blocks(cfg: &Config, candidates: &[Candidate], req: &Request) -> Vec<u64> {
    let cached = candidates
        .iter()
        .any(|c| cfg.deployments[c.deployment.0 as usize].prefix_cache_blocks > 0);
    match req {
        Request::Chat(chat) if cached => spillway_proto::prefix::block_hashes(&chat.messages)
            .into_iter()
            .map(|b| b.0)
            .collect(),
        _ => Vec::new(),
    }
}

/// Plan and admit the first step in one step of the core, and start the exchange.
fn route(app: &AppState, candidates: &[Candidate], facts: Facts, prefix: Prefix<'_>) -> Exchange {
    let cfg = &app.cfg;
    let now = app.now();
    let routed = {
        let mut cell = app.router();
        let RouterCell { router, rng } = &mut *cell;
        let route = RouteRequest {
            source: facts.source,
            candidates,
            est_tokens: facts.demand.est_tokens,
            input_tokens: facts.demand.input_tokens,
            prefix,
        };
        router.route(&route, now, rng)
    };
    // The time to the client's first byte across failovers: as long as every attempt the plan
    // allows may take.
    let attempts = u32::try_from(cfg.router.max_attempts.max(1)).unwrap_or(u32::MAX);
    let limits = Limits {
        first_byte: cfg.timeouts.first_byte,
        request: cfg.timeouts.request,
        total: cfg.timeouts.request.saturating_mul(attempts),
        drain: DRAIN,
    };
    Exchange::new(now, facts, limits, routed.plan, routed.first)
}
