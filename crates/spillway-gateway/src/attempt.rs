//! Phase "call upstream" of the pipeline: one attempt on one deployment, non-streaming or
//! streaming. A streaming attempt waits for the upstream's first chunk before it commits, so a
//! failure up to that point can still move to the next destination of the plan.
use std::sync::Arc;
use std::time::Instant;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use spillway_core::{FailureKind, Outcome, RegionIx};
use spillway_proto::{ChatCompletion, ChatRequest};

use crate::metrics::RouteLabels;
use crate::pipeline::{RequestCtx, record_served};
use crate::relay::{Relay, RelayInfo};
use crate::resolve::Target;
use crate::state::{AppState, AttemptHold, QuotaHold};
use crate::upstream::{self, UpstreamFailure};

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
        req: &mut ChatRequest,
        stream: bool,
        wants_usage: bool,
        prompt_tokens: u64,
        quota: QuotaHold,
    ) -> Result<Response, (UpstreamFailure, QuotaHold)> {
        let state = self.state;
        let cfg = &state.cfg;
        let Some(d) = self.hold.deployment() else {
            return Err((
                UpstreamFailure {
                    kind: FailureKind::ServerError,
                    status: None,
                    body: Bytes::new(),
                },
                quota,
            ));
        };
        let upstream = &state.targets[d.0 as usize];
        let client_model = std::mem::replace(&mut req.model, upstream.model.clone());
        let body = serde_json::to_vec(&*req).map(Bytes::from);
        req.model = client_model;
        let Ok(body) = body else {
            return Err((
                UpstreamFailure {
                    kind: FailureKind::ClientError,
                    status: None,
                    body: Bytes::new(),
                },
                quota,
            ));
        };
        let resp = match upstream::send(
            &state.http,
            upstream,
            body,
            &self.ctx.id,
            // A non-streamed answer's headers come only when generation is complete.
            if stream {
                cfg.timeouts.first_byte
            } else {
                cfg.timeouts.request
            },
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
            let relay = Relay::new(
                state.clone(),
                body,
                first,
                self.hold,
                quota,
                RelayInfo::new(
                    self.ctx,
                    self.target,
                    wants_usage,
                    prompt_tokens,
                    self.started,
                    ttft,
                ),
            );
            let mut resp = axum::body::Body::from_stream(relay.into_stream()).into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            return Ok(resp);
        }
        let bytes = match tokio::time::timeout(cfg.timeouts.request, resp.bytes()).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return Err(self.fail(upstream::classify_transport(&e), quota)),
            Err(_) => return Err(self.fail(FailureKind::Timeout, quota)),
        };
        let ttft = self.observe_ttft(&labels);
        let usage = serde_json::from_slice::<ChatCompletion>(&bytes)
            .ok()
            .and_then(|c| c.usage);
        let tokens = usage.map(|u| u.total_tokens).unwrap_or(prompt_tokens);
        let mut quota = quota;
        quota.set_used(tokens);
        self.hold.finish(Outcome::Success {
            ttft,
            tpot: None,
            tokens,
        });
        drop(quota);
        record_served(
            state,
            &RelayInfo::new(
                self.ctx,
                self.target,
                false,
                prompt_tokens,
                self.started,
                ttft,
            ),
            "ok",
            tokens,
        );
        let mut resp = (StatusCode::OK, bytes).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok(resp)
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
