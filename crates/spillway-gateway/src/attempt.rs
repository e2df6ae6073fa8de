//! Phase "call upstream" of the pipeline: one attempt on one deployment, non-streaming or
//! streaming. A streaming attempt waits for the upstream's first chunk before it commits, so a
//! failure up to that point can still move to the next destination of the plan.
use std::sync::Arc;
use std::time::Instant;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use spillway_core::{FailureKind, Outcome, RegionIx};
use spillway_proto::bedrock::{ConverseResponse, converse_to_chat_completion};
use spillway_proto::{ChatCompletion, ChatRequest, Usage};

use crate::codec::{UpstreamDecoder, render_completion};

use crate::metrics::RouteLabels;
use crate::pipeline::{RequestCtx, record_served};
use crate::relay::{Relay, RelayInfo};
use crate::resolve::Target;
use crate::state::{AppState, AttemptHold, QuotaHold};
use crate::upstream::{self, Protocol, UpstreamFailure};

/// One upstream attempt; on failure gives the quota hold back for the next attempt.
pub(crate) struct Attempt<'a> {
    pub state: &'a Arc<AppState>,
    pub ctx: &'a RequestCtx,
    pub target: &'a Target,
    pub deployment_region: RegionIx,
    pub hold: AttemptHold,
    pub started: Instant,
}

impl Attempt<'_> {
    pub async fn run(
        self,
        req: &ChatRequest,
        stream: bool,
        wants_usage: bool,
        prompt_tokens: u64,
        quota: QuotaHold,
    ) -> Result<Response, (UpstreamFailure, QuotaHold)> {
        let state = self.state;
        let cfg = &state.cfg;
        let Some(d) = self.hold.deployment() else {
            return Err(self.fail(FailureKind::ServerError, quota));
        };
        let upstream = &state.targets[d.0 as usize];
        let passthrough = self.ctx.invoke_passthrough.as_ref();
        let (url, body) = match upstream.request(req, passthrough) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(request_id = %self.ctx.id, error = %e, "the request cannot be sent to this upstream");
                return Err(self.fail(FailureKind::ClientError, quota));
            }
        };
        // A non-streamed answer's headers come only when generation is complete.
        let header_timeout = if stream {
            cfg.timeouts.first_byte
        } else {
            cfg.timeouts.request
        };
        let resp = match upstream::send(
            &state.http,
            upstream,
            url,
            body,
            &self.ctx.id,
            header_timeout,
        )
        .await
        {
            Ok(r) => r,
            Err(f) => {
                self.hold.finish(Outcome::Failure(f.kind));
                return Err((f, quota));
            }
        };
        let labels = RouteLabels {
            source: cfg.region_name(self.ctx.source).to_string(),
            destination: cfg.region_name(self.deployment_region).to_string(),
        };
        let bedrock = matches!(upstream.protocol, Protocol::Bedrock { .. });
        if stream {
            let mut body = resp.bytes_stream().boxed();
            // Wait for the first chunk before committing: until then the request can still move.
            let first = match tokio::time::timeout(cfg.timeouts.first_byte, body.next()).await {
                Ok(Some(Ok(chunk))) => chunk,
                Ok(Some(Err(e))) => return Err(self.fail(upstream::classify_transport(&e), quota)),
                Ok(None) => return Err(self.fail(FailureKind::ServerError, quota)),
                Err(_) => return Err(self.fail(FailureKind::Timeout, quota)),
            };
            let ttft = self.observe_ttft(&labels);
            let decoder = if bedrock && passthrough.is_some() {
                UpstreamDecoder::Passthrough(spillway_proto::bedrock::FrameDecoder::new())
            } else if bedrock {
                UpstreamDecoder::converse_stream(&self.ctx.model_name, &self.ctx.id, unix_now())
            } else {
                UpstreamDecoder::sse()
            };
            let info = RelayInfo::new(
                self.ctx,
                self.target,
                wants_usage,
                prompt_tokens,
                self.started,
                ttft,
            );
            let relay = Relay::new(state.clone(), body, first, self.hold, quota, info, decoder);
            let content_type = relay.content_type();
            let mut resp = axum::body::Body::from_stream(relay.into_stream()).into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            return Ok(resp);
        }
        // A native Invoke answer reports its usage in headers.
        let header_count = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
        };
        let native_usage = match (
            header_count("x-amzn-bedrock-input-token-count"),
            header_count("x-amzn-bedrock-output-token-count"),
        ) {
            (Some(i), Some(o)) => Some(Usage {
                prompt_tokens: i,
                completion_tokens: o,
                total_tokens: i + o,
            }),
            _ => None,
        };
        let bytes = match tokio::time::timeout(cfg.timeouts.request, resp.bytes()).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return Err(self.fail(upstream::classify_transport(&e), quota)),
            Err(_) => return Err(self.fail(FailureKind::Timeout, quota)),
        };
        let ttft = self.observe_ttft(&labels);
        // The canonical answer: as the upstream sent it, or translated from Bedrock's Converse.
        let (raw, parsed) = if bedrock && passthrough.is_some() {
            (bytes, None)
        } else if bedrock {
            match serde_json::from_slice::<ConverseResponse>(&bytes) {
                Ok(c) => {
                    let canonical = converse_to_chat_completion(
                        &c,
                        &self.ctx.model_name,
                        &self.ctx.id,
                        unix_now(),
                    );
                    let raw = serde_json::to_vec(&canonical)
                        .map(Bytes::from)
                        .unwrap_or_default();
                    (raw, Some(canonical))
                }
                Err(_) => return Err(self.fail(FailureKind::ServerError, quota)),
            }
        } else {
            let parsed = serde_json::from_slice::<ChatCompletion>(&bytes).ok();
            (bytes, parsed)
        };
        let usage = parsed
            .as_ref()
            .and_then(|c| c.usage)
            .or(native_usage)
            .unwrap_or(Usage {
                prompt_tokens,
                completion_tokens: 0,
                total_tokens: prompt_tokens,
            });
        let mut quota = quota;
        quota.set_used(usage.total_tokens);
        self.hold.finish(Outcome::Success {
            ttft,
            tpot: None,
            tokens: usage.total_tokens,
        });
        drop(quota);
        let info = RelayInfo::new(
            self.ctx,
            self.target,
            false,
            prompt_tokens,
            self.started,
            ttft,
        );
        record_served(state, &info, "ok", &usage);
        let latency_ms = self.ctx.started.elapsed().as_millis() as u64;
        Ok(render_completion(
            self.ctx.api,
            raw,
            parsed.as_ref(),
            latency_ms,
        ))
    }

    /// Time to the upstream's first byte (streaming) or whole answer, into the TTFT histogram.
    fn observe_ttft(&self, labels: &RouteLabels) -> std::time::Duration {
        let ttft = self.started.elapsed();
        self.state
            .metrics
            .ttft
            .get_or_create(labels)
            .observe(ttft.as_secs_f64());
        ttft
    }

    fn fail(self, kind: FailureKind, quota: QuotaHold) -> (UpstreamFailure, QuotaHold) {
        self.hold.finish(Outcome::Failure(kind));
        (
            UpstreamFailure {
                kind,
                status: None,
                body: Bytes::new(),
            },
            quota,
        )
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
