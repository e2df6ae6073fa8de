//! The one place a request ends. Every request — refused at the edge before it had an
//! exchange, or ended by its exchange's [`Record`] — goes through [`end`] exactly once: the
//! tenant's reservation settles, and the metrics, the trace spans, the log line and the audit
//! record are written from the same figures, and the live dashboard counts it.
use std::time::Duration;

use spillway_core::{Reason, RegionIx};
use spillway_exchange::{Outcome, Record, Refusal, Settle, TryResult};
use spillway_proto::Usage;

use super::ctx::RequestCtx;
use crate::audit::{AuditLeg, AuditRecord, Cost};
use crate::error::EdgeError;
use crate::metrics::Ended;
use crate::metrics::ended::{Attempt, Throttle, covered};
use crate::state::AppState;
use crate::state::quota_book::Ticket;

/// How a request ended.
pub enum Ending<'a> {
    /// Refused before it had an exchange (authentication, parsing, resolution, quota).
    Edge(&'a EdgeError),
    /// Its exchange finished; `ticket` is the reservation it held.
    Exchange {
        record: &'a Record,
        ticket: Option<Ticket>,
    },
}

/// What one ending writes, whichever way it came.
struct Summary<'a> {
    outcome: &'a str,
    served_in: Option<RegionIx>,
    reason: Option<Reason>,
    usage: Usage,
    attempts: usize,
    cost: Option<Cost>,
    /// A streamed answer's first byte, after the request's arrival (TTFT as the client sees
    /// it; the metrics and the dashboard show this one figure).
    stream_ttft: Option<Duration>,
}

/// End the request: settle its reservation, and write its metrics, log line and audit record.
pub fn end(app: &AppState, ctx: &RequestCtx, ending: Ending<'_>) {
    let summary = match ending {
        Ending::Edge(e) => Summary {
            outcome: e.outcome(),
            served_in: None,
            reason: None,
            usage: Usage::default(),
            attempts: 0,
            cost: None,
            stream_ttft: None,
        },
        Ending::Exchange { record: r, ticket } => {
            let used = match r.settle {
                Settle::Cancel => None,
                Settle::Used(tokens) => Some(tokens),
            };
            app.settle(ticket, used);
            Summary {
                outcome: r.outcome.as_str(),
                served_in: r.served_in,
                reason: r.reason,
                usage: r.usage,
                attempts: r.tries.len(),
                cost: r.cost.map(|c| Cost {
                    currency: "USD",
                    input: c.input,
                    output: c.output,
                    total: c.total,
                }),
                stream_ttft: r
                    .timings
                    .first_byte
                    .filter(|_| ctx.stream)
                    .map(|at| at.saturating_sub(app.clock_of(ctx.started))),
            }
        }
    };
    count(app, ctx, &summary, &ending);
    super::trace::export(app, ctx, &ending, summary.outcome);
    log(app, ctx, &summary, &ending);
    audit(app, ctx, &summary, &ending);
    show(app, ctx, &summary, matches!(ending, Ending::Edge(_)));
}

/// The profile label: the system profile the request named (an application profile counts as
/// the one it copies), else empty.
fn profile_label<'a>(app: &'a AppState, ctx: &RequestCtx) -> &'a str {
    ctx.target
        .as_ref()
        .and_then(|t| t.profile)
        .map(|p| app.cfg.profiles[p].id.as_str())
        .unwrap_or("")
}

/// The canonical model the request resolved to (bounded), else empty.
fn model_label<'a>(app: &'a AppState, ctx: &RequestCtx) -> &'a str {
    let cfg = &app.cfg;
    ctx.target
        .as_ref()
        .map(|t| t.model)
        .or_else(|| cfg.model_ix(&ctx.model_name))
        .map(|m| cfg.models[m].id.as_str())
        .unwrap_or("")
}

/// What ran out, for a 429.
fn throttle(ctx: &RequestCtx, ending: &Ending<'_>) -> Option<Throttle> {
    let cross_region = ctx.target.as_ref().is_some_and(|t| t.cross_region);
    match ending {
        Ending::Edge(EdgeError::Throttled { .. }) if cross_region => {
            Some(Throttle::TenantCrossRegion)
        }
        Ending::Edge(EdgeError::Throttled { .. }) => Some(Throttle::TenantInRegion),
        Ending::Exchange { record, .. } => match record.outcome {
            Outcome::Refused(Refusal::NoCapacity { .. }) => Some(Throttle::Capacity),
            Outcome::Refused(Refusal::Reserved { .. }) => Some(Throttle::Reserve),
            Outcome::Refused(Refusal::AllThrottled { .. }) => Some(Throttle::Upstream),
            _ => None,
        },
        Ending::Edge(_) => None,
    }
}

fn try_result(r: TryResult) -> &'static str {
    match r {
        TryResult::Succeeded => "ok",
        TryResult::Cancelled => "cancelled",
        TryResult::Failed(kind) => kind.as_str(),
    }
}

/// Write the request's metrics: one [`Ended`] from the same figures as the log and audit.
fn count(app: &AppState, ctx: &RequestCtx, s: &Summary<'_>, ending: &Ending<'_>) {
    let cfg = &app.cfg;
    let now = app.now();
    let arrived = app.clock_of(ctx.started);
    let total = now.saturating_sub(arrived);
    let (mut ttft, mut tpot, mut busy) = (None, None, Duration::ZERO);
    let mut attempts = Vec::new();
    if let Ending::Exchange { record: r, .. } = ending {
        let first_byte = r.timings.first_byte.filter(|_| ctx.stream);
        ttft = s.stream_ttft;
        if let Some(f) = first_byte
            && s.usage.completion_tokens >= 2
        {
            let after_first = r.timings.ended.saturating_sub(f);
            tpot =
                Some(after_first / (s.usage.completion_tokens - 1).min(u64::from(u32::MAX)) as u32);
        }
        let mut spans: Vec<_> = r.tries.iter().map(|t| (t.sent_at, t.ended_at)).collect();
        busy = covered(&mut spans);
        for t in &r.tries {
            if let TryResult::Failed(kind) = t.result {
                tracing::warn!(request_id = %ctx.id, destination = cfg.region_name(t.region), failure = kind.as_str(), "upstream attempt failed");
            }
            attempts.push(Attempt {
                destination: cfg.region_name(t.region),
                result: try_result(t.result),
                first_byte: t.first_piece_at.map(|f| f.saturating_sub(t.sent_at)),
                resumed: matches!(t.reason, Reason::Resume(_)).then(|| t.reason.as_str()),
            });
        }
    }
    app.metrics.request.observe(&Ended {
        tenant: ctx
            .tenant
            .map(|t| cfg.tenants[t].name.as_str())
            .unwrap_or(""),
        profile: profile_label(app, ctx),
        model: model_label(app, ctx),
        source: cfg.region_name(ctx.source),
        destination: s.served_in.map(|r| cfg.region_name(r)).unwrap_or(""),
        api: ctx.api.as_str(),
        outcome: s.outcome,
        reason: s.reason.map(|r| r.as_str()),
        throttle: throttle(ctx, ending),
        input_tokens: s.usage.prompt_tokens,
        output_tokens: s.usage.completion_tokens,
        cost_usd: s.cost.map(|c| c.total),
        total,
        ttft,
        tpot,
        overhead: total.saturating_sub(busy),
        attempts: &attempts,
    });
}

fn log(app: &AppState, ctx: &RequestCtx, s: &Summary<'_>, ending: &Ending<'_>) {
    let cfg = &app.cfg;
    let source = cfg.region_name(ctx.source);
    let latency_ms = ctx.started.elapsed().as_millis() as u64;
    match ending {
        Ending::Edge(e) => {
            tracing::info!(request_id = %ctx.id, source, model = %ctx.model_name, api = ctx.api.as_str(),
                status = e.status().as_u16(), outcome = s.outcome, latency_ms, "request refused");
        }
        Ending::Exchange { record: r, .. } => {
            let tenant = ctx
                .tenant
                .map(|t| cfg.tenants[t].name.as_str())
                .unwrap_or("");
            let destination = s.served_in.map(|d| cfg.region_name(d)).unwrap_or("");
            let served = matches!(
                r.outcome,
                Outcome::Served
                    | Outcome::Broken(_)
                    | Outcome::ClientGone { .. }
                    | Outcome::Stalled
            );
            let what = if served {
                "request served"
            } else {
                "request refused"
            };
            tracing::info!(request_id = %ctx.id, tenant, api = ctx.api.as_str(), source, destination,
                model = %ctx.model_name, reason = s.reason.map(|r| r.as_str()).unwrap_or(""),
                cross_region = ctx.target.as_ref().is_some_and(|t| t.cross_region),
                attempts = s.attempts, tokens = s.usage.total_tokens, outcome = s.outcome, latency_ms, "{what}");
        }
    }
}

fn audit(app: &AppState, ctx: &RequestCtx, s: &Summary<'_>, ending: &Ending<'_>) {
    if !app.audit.is_on() {
        return;
    }
    let cfg = &app.cfg;
    let model = ctx
        .target
        .as_ref()
        .map(|t| t.model)
        .or_else(|| cfg.model_ix(&ctx.model_name));
    let rerouted = s.served_in.filter(|r| *r != ctx.source);
    app.audit.write(&AuditRecord {
        timestamp: crate::audit::now(),
        request_id: &ctx.id,
        tenant: ctx.tenant.map(|t| cfg.tenants[t].name.as_str()),
        api: ctx.api.as_str(),
        source_region: cfg.region_name(ctx.source),
        model_id: model.map(|m| cfg.models[m].id.as_str()),
        requested: &ctx.model_name,
        inference_profile_arn: ctx.profile_arn.as_deref(),
        tags: crate::audit::tags(&ctx.tags),
        inference_region: rerouted.map(|r| cfg.region_name(r)),
        route_reason: s.reason.map(|r| r.as_str()),
        input_tokens: s.usage.prompt_tokens,
        output_tokens: s.usage.completion_tokens,
        latency_ms: ctx.started.elapsed().as_millis() as u64,
        outcome: s.outcome,
        cost: s.cost,
        legs: legs(app, ending),
    });
}

/// The attempts of a stream continued after a break, for its audit record (none otherwise).
fn legs<'a>(app: &'a AppState, ending: &Ending<'_>) -> Vec<AuditLeg<'a>> {
    let Ending::Exchange { record, .. } = ending else {
        return Vec::new();
    };
    if !record
        .tries
        .iter()
        .any(|t| matches!(t.reason, Reason::Resume(_)))
    {
        return Vec::new();
    }
    let leg = |t: &spillway_exchange::Try| AuditLeg {
        region: app.cfg.region_name(t.region),
        reason: t.reason.as_str(),
        result: match t.result {
            TryResult::Failed(kind) => format!("failed:{}", kind.as_str()),
            other => try_result(other).to_string(),
        },
    };
    record.tries.iter().map(leg).collect()
}

/// Count the request on the live dashboard.
fn show(app: &AppState, ctx: &RequestCtx, s: &Summary<'_>, at_edge: bool) {
    let cfg = &app.cfg;
    app.dashboard.record(&crate::dashboard::Ended {
        source: cfg.region_name(ctx.source),
        served_in: s.served_in.map(|r| cfg.region_name(r)),
        reason: s.reason,
        outcome: s.outcome,
        at_edge,
        tenant: ctx.tenant.map(|t| cfg.tenants[t].name.as_str()),
        input_tokens: s.usage.prompt_tokens,
        output_tokens: s.usage.completion_tokens,
        cost: s.cost.map(|c| c.total),
        stream_ttft: s.stream_ttft.map(|d| d.as_secs_f64()),
    });
}
