//! The audit log: one JSON line per request, written in the source region like Bedrock's
//! invocation logs, to stdout or appended to a file (`[audit] sink`).
//!
//! A record carries the request id, tenant, API, source region, model, the profile ARN the
//! request named and its application profile's tags, tokens, latency, outcome, and the cost at
//! the **source region's** price (no routing surcharge, whichever region served it).
//! `inferenceRegion` is present only when the request was served outside its source region.
//!
//! Lines go through an unbounded channel to one writer task, so the request path never waits
//! on the disk.
use std::time::SystemTime;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use serde::Serialize;
use serde_json::{Map, Value};
use spillway_proto::Usage;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::config::{AuditSink, Config, ModelIx};
use crate::pipeline::RequestCtx;
use crate::relay::RelayInfo;
use crate::state::AppState;

/// The sending half of the audit log.
pub struct AuditLog {
    tx: Option<mpsc::UnboundedSender<String>>,
}

impl AuditLog {
    /// Start the writer task for `sink` (must run inside a tokio runtime unless the sink is off).
    pub fn start(sink: &AuditSink) -> AuditLog {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let sink = sink.clone();
        match sink {
            AuditSink::Off => return AuditLog { tx: None },
            AuditSink::Stdout => {
                tokio::spawn(async move {
                    let mut out = tokio::io::stdout();
                    while let Some(line) = rx.recv().await {
                        if out.write_all(line.as_bytes()).await.is_err() {
                            break;
                        }
                        let _ = out.flush().await;
                    }
                });
            }
            AuditSink::File(path) => {
                tokio::spawn(async move {
                    let file = tokio::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .await;
                    let mut file = match file {
                        Ok(f) => f,
                        Err(e) => {
                            tracing::error!(path = %path.display(), error = %e, "cannot open the audit log; audit records are dropped");
                            return;
                        }
                    };
                    while let Some(line) = rx.recv().await {
                        if let Err(e) = file.write_all(line.as_bytes()).await {
                            tracing::error!(error = %e, "cannot write the audit log");
                        }
                    }
                });
            }
        }
        AuditLog { tx: Some(tx) }
    }

    pub fn is_on(&self) -> bool {
        self.tx.is_some()
    }

    fn write(&self, record: &AuditRecord<'_>) {
        if let Some(tx) = &self.tx
            && let Ok(mut line) = serde_json::to_string(record)
        {
            line.push('\n');
            let _ = tx.send(line);
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuditRecord<'a> {
    timestamp: String,
    request_id: &'a str,
    tenant: Option<&'a str>,
    api: &'a str,
    source_region: &'a str,
    model_id: Option<&'a str>,
    requested: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    inference_profile_arn: Option<&'a str>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    tags: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inference_region: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route_reason: Option<&'a str>,
    input_tokens: u64,
    output_tokens: u64,
    latency_ms: u64,
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost: Option<Cost>,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    pub currency: &'static str,
    pub input: f64,
    pub output: f64,
    pub total: f64,
}

/// The cost of `usage` at the source region's price for `model`, if one is configured.
pub fn cost(
    cfg: &Config,
    model: ModelIx,
    source: spillway_core::RegionIx,
    usage: &Usage,
) -> Option<Cost> {
    let p = cfg.price(model, source)?;
    let input = usage.prompt_tokens as f64 * p.input_per_mtok / 1e6;
    let output = usage.completion_tokens as f64 * p.output_per_mtok / 1e6;
    Some(Cost {
        currency: "USD",
        input,
        output,
        total: input + output,
    })
}

fn now() -> String {
    DateTime::from(SystemTime::now())
        .fmt(Format::DateTime)
        .unwrap_or_default()
}

fn tags(t: &[(String, String)]) -> Map<String, Value> {
    t.iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

/// A request that reached an upstream: served, broken or cancelled.
pub fn served(state: &AppState, info: &RelayInfo, outcome: &str, usage: &Usage) {
    if !state.audit.is_on() {
        return;
    }
    let cfg = &state.cfg;
    let rerouted = info.served_in != info.source;
    state.audit.write(&AuditRecord {
        timestamp: now(),
        request_id: &info.id,
        tenant: info.tenant.map(|t| cfg.tenants[t].name.as_str()),
        api: info.api.as_str(),
        source_region: cfg.region_name(info.source),
        model_id: Some(&cfg.models[info.model].id),
        requested: &info.model_name,
        inference_profile_arn: info.profile_arn.as_deref(),
        tags: tags(&info.tags),
        inference_region: rerouted.then(|| cfg.region_name(info.served_in)),
        route_reason: Some(info.reason.as_str()),
        input_tokens: usage.prompt_tokens,
        output_tokens: usage.completion_tokens,
        latency_ms: info.request_started.elapsed().as_millis() as u64,
        outcome,
        cost: cost(cfg, info.model, info.source, usage),
    });
}

/// A request answered with an error before or instead of being served.
pub fn refused(state: &AppState, ctx: &RequestCtx, outcome: &str) {
    if !state.audit.is_on() {
        return;
    }
    let cfg = &state.cfg;
    state.audit.write(&AuditRecord {
        timestamp: now(),
        request_id: &ctx.id,
        tenant: ctx.tenant.map(|t| cfg.tenants[t].name.as_str()),
        api: ctx.api.as_str(),
        source_region: cfg.region_name(ctx.source),
        model_id: cfg
            .model_ix(&ctx.model_name)
            .map(|m| cfg.models[m].id.as_str()),
        requested: &ctx.model_name,
        inference_profile_arn: ctx.profile_arn.as_deref(),
        tags: tags(&ctx.tags),
        inference_region: None,
        route_reason: ctx.reason.map(|r| r.as_str()),
        input_tokens: 0,
        output_tokens: 0,
        latency_ms: ctx.started.elapsed().as_millis() as u64,
        outcome,
        cost: None,
    });
}
