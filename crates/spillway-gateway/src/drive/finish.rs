//! The one place a request ends. Every request — refused at the edge before it had an
//! exchange, or ended by its exchange's [`Record`] — goes through [`end`] exactly once: the
//! tenant's reservation settles, and the metrics, the trace spans, the log line and the audit
//! record are written from the same figures.
use spillway_core::{Reason, RegionIx};
use spillway_exchange::{Outcome, Record, Settle, TryResult};
use spillway_proto::Usage;

use super::ctx::RequestCtx;
use crate::audit::{AuditRecord, Cost};
use crate::error::EdgeError;
use crate::metrics::{AttemptLabels, RequestLabels, RouteLabels};
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
        },
        Ending::Exchange { record: r, ticket } => {
            let used = match r.settle {
                Settle::Cancel => None,
                Settle::Used(tokens) => Some(tokens),
            };
            app.settle(ticket, used);
            observe_tries(app, ctx, r);
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
            }
        }
    };
    count(app, ctx, &summary);
    super::trace::export(app, ctx, &ending, summary.outcome);
    log(app, ctx, &summary, &ending);
    audit(app, ctx, &summary);
}

/// The model label: the id the client named when it is a known model or profile (bounded),
/// else empty.
fn model_label(app: &AppState, ctx: &RequestCtx) -> String {
    let cfg = &app.cfg;
    let known = ctx.target.is_some()
        || cfg.model_ix(&ctx.model_name).is_some()
        || cfg.profile_ix(&ctx.model_name).is_some();
    if known {
        ctx.model_name.clone()
    } else {
        String::new()
    }
}

fn count(app: &AppState, ctx: &RequestCtx, s: &Summary<'_>) {
    let cfg = &app.cfg;
    let labels = RequestLabels {
        source: cfg.region_name(ctx.source).to_string(),
        destination: s
            .served_in
            .map(|r| cfg.region_name(r).to_string())
            .unwrap_or_default(),
        model: model_label(app, ctx),
        outcome: s.outcome.to_string(),
        reason: s.reason.map(|r| r.as_str()).unwrap_or("").to_string(),
    };
    app.metrics.requests.get_or_create(&labels).inc();
}

/// Per attempt: failed attempts by destination and kind, and the time to the first byte of
/// each attempt that delivered one (streamed) or its whole answer.
fn observe_tries(app: &AppState, ctx: &RequestCtx, r: &Record) {
    let cfg = &app.cfg;
    let model = ctx
        .target
        .as_ref()
        .map(|t| cfg.models[t.model].id.clone())
        .unwrap_or_default();
    for t in &r.tries {
        let destination = cfg.region_name(t.region).to_string();
        if let TryResult::Failed(kind) = t.result {
            tracing::warn!(request_id = %ctx.id, destination, failure = kind.as_str(), "upstream attempt failed");
            let labels = AttemptLabels {
                destination,
                model: model.clone(),
                result: kind.as_str().to_string(),
            };
            app.metrics.attempts.get_or_create(&labels).inc();
        } else if let Some(first) = t.first_piece_at {
            let labels = RouteLabels {
                source: cfg.region_name(ctx.source).to_string(),
                destination,
            };
            let ttft = first.saturating_sub(t.sent_at).as_secs_f64();
            app.metrics.ttft.get_or_create(&labels).observe(ttft);
        }
    }
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

fn audit(app: &AppState, ctx: &RequestCtx, s: &Summary<'_>) {
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
    });
}
