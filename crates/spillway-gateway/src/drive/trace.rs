//! The request's spans, from the same end as its metrics and audit record: what
//! [`crate::telemetry`] needs, read from the request's context and its exchange's record.
use std::time::{Duration, SystemTime};

use spillway_exchange::TryResult;

use super::ctx::RequestCtx;
use super::finish::Ending;
use crate::error::Api;
use crate::state::AppState;
use crate::telemetry::{AttemptEnd, RequestEnd};
use crate::upstream::Protocol;

/// Hand the request's spans to the exporter (nothing when telemetry is off).
pub(super) fn export(app: &AppState, ctx: &RequestCtx, ending: &Ending<'_>, outcome: &str) {
    if !app.telemetry.is_on() {
        return;
    }
    let cfg = &app.cfg;
    // The record's times are on the core's clock; the spans' on the wall clock.
    let (wall_now, core_now) = (SystemTime::now(), app.now());
    let wall = |at: Duration| wall_now - core_now.saturating_sub(at);
    let mut end = RequestEnd {
        operation: match ctx.api {
            Api::Embeddings => "embeddings",
            _ => "chat",
        },
        requested_model: bounded(&ctx.model_name),
        response_model: None,
        usage: None,
        source_region: cfg.region_name(ctx.source),
        serving_region: None,
        route_reason: None,
        tenant: ctx.tenant.map(|t| cfg.tenants[t].name.as_str()),
        outcome,
        profile: ctx
            .target
            .as_ref()
            .and_then(|t| t.profile)
            .map(|p| cfg.profiles[p].id.as_str())
            .or(ctx.profile_arn.as_deref()),
        started: wall_now - ctx.started.elapsed(),
        ended: wall_now,
        attempts: Vec::new(),
    };
    if let Ending::Exchange { record: r, .. } = ending {
        end.serving_region = r.served_in.map(|s| cfg.region_name(s));
        end.route_reason = r.reason.map(|x| x.as_str());
        let served = r.tries.iter().rposition(|t| Some(t.region) == r.served_in);
        if served.is_some() {
            let u = r.usage;
            end.usage = Some((u.prompt_tokens, u.completion_tokens));
            end.response_model = ctx.target.as_ref().map(|t| cfg.models[t.model].id.as_str());
        }
        end.attempts = r
            .tries
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let target = &app.targets[t.deployment.0 as usize];
                AttemptEnd {
                    attempt: t.attempt,
                    region: cfg.region_name(t.region),
                    route_reason: t.reason.as_str(),
                    model: &target.model,
                    provider: match target.protocol {
                        Protocol::OpenAi => "openai",
                        Protocol::Bedrock { .. } => "aws.bedrock",
                    },
                    server: target.server(),
                    started: wall(t.sent_at),
                    ended: wall(t.ended_at),
                    error: match t.result {
                        TryResult::Succeeded => None,
                        TryResult::Failed(kind) => Some(kind.as_str()),
                        TryResult::Cancelled => Some("cancelled"),
                    },
                    served: served == Some(i),
                }
            })
            .collect();
    }
    app.telemetry.request_ended(&ctx.trace, &end);
}

/// The longest model name a span carries (the client's text, before it was resolved).
const MAX_MODEL_NAME: usize = 256;

/// `name`, cut to at most [`MAX_MODEL_NAME`] bytes at a character boundary.
fn bounded(name: &str) -> &str {
    let mut end = name.len().min(MAX_MODEL_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_model_name_is_cut_at_a_character_boundary() {
        assert_eq!(super::bounded("us.m"), "us.m");
        let long = "é".repeat(200);
        let cut = super::bounded(&long);
        assert!(cut.len() <= super::MAX_MODEL_NAME && cut.len() >= super::MAX_MODEL_NAME - 1);
        assert!(long.starts_with(cut));
    }
}
