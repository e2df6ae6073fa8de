//! Relaying an upstream SSE stream to the client as it arrives.
//!
//! The relay decodes the upstream's events only to learn usage (for the quota settle and the
//! routing core's latency figures) and re-encodes each event as it came, dropping the final usage
//! chunk when the client did not ask for it (the gateway always asks upstream, to settle
//! exactly). If the upstream stream breaks after bytes have reached the client, the request can
//! no longer move: the stream ends with an error event in OpenAI's shape. If the client goes
//! away, dropping the relay releases the deployment slot and settles the quota to the tokens
//! seen so far.
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use spillway_core::{FailureKind, Outcome, Reason, RegionIx};
use spillway_proto::Usage;

use crate::codec::{ClientEncoder, UpstreamDecoder, UpstreamEvent};

use crate::config::TenantIx;
use crate::pipeline::{RequestCtx, record_served};
use crate::resolve::Target;
use crate::state::{AppState, AttemptHold, QuotaHold};

/// What the relay needs to know about the request, owned (the stream outlives the handler).
#[derive(Debug, Clone)]
pub struct RelayInfo {
    pub api: crate::codec::Api,
    pub model: crate::config::ModelIx,
    pub profile_arn: Option<String>,
    pub tags: Vec<(String, String)>,
    pub id: String,
    pub source: RegionIx,
    pub served_in: RegionIx,
    pub reason: Reason,
    pub tenant: Option<TenantIx>,
    pub model_name: String,
    pub cross_region: bool,
    pub attempts: u32,
    pub request_started: Instant,
    pub wants_usage: bool,
    pub prompt_tokens: u64,
    pub attempt_started: Instant,
    pub ttft: Duration,
}

impl RelayInfo {
    pub fn new(
        ctx: &RequestCtx,
        target: &Target,
        wants_usage: bool,
        prompt_tokens: u64,
        attempt_started: Instant,
        ttft: Duration,
    ) -> Self {
        RelayInfo {
            api: ctx.api,
            model: target.model,
            profile_arn: ctx.profile_arn.clone(),
            tags: ctx.tags.clone(),
            id: ctx.id.clone(),
            source: ctx.source,
            served_in: ctx.served_in.unwrap_or(ctx.source),
            reason: ctx.reason.unwrap_or(Reason::Local),
            tenant: ctx.tenant,
            model_name: ctx.model_name.clone(),
            cross_region: target.cross_region,
            attempts: ctx.attempts,
            request_started: ctx.started,
            wants_usage,
            prompt_tokens,
            attempt_started,
            ttft,
        }
    }
}

pub struct Relay {
    state: Arc<AppState>,
    upstream: BoxStream<'static, reqwest::Result<Bytes>>,
    pending: Option<Bytes>,
    decoder: UpstreamDecoder,
    encoder: ClientEncoder,
    hold: Option<AttemptHold>,
    quota: QuotaHold,
    info: RelayInfo,
    output_tokens: u64,
    usage: Option<Usage>,
    last_token_at: Option<Instant>,
    first_token_at: Option<Instant>,
    done: bool,
}

impl Relay {
    pub fn new(
        state: Arc<AppState>,
        upstream: BoxStream<'static, reqwest::Result<Bytes>>,
        first: Bytes,
        hold: AttemptHold,
        quota: QuotaHold,
        info: RelayInfo,
        decoder: UpstreamDecoder,
    ) -> Relay {
        let encoder = ClientEncoder::new(info.api, info.wants_usage);
        Relay {
            state,
            upstream,
            pending: Some(first),
            decoder,
            encoder,
            hold: Some(hold),
            quota,
            info,
            output_tokens: 0,
            usage: None,
            last_token_at: None,
            first_token_at: None,
            done: false,
        }
    }

    /// The `content-type` of the client's stream.
    pub fn content_type(&self) -> &'static str {
        self.encoder.content_type()
    }

    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
        futures_util::stream::unfold(self, |mut r| async move {
            loop {
                if r.done {
                    return None;
                }
                let next = match r.pending.take() {
                    Some(b) => Some(Ok(b)),
                    None => {
                        let deadline = r.state.cfg.timeouts.first_byte;
                        match tokio::time::timeout(deadline, r.upstream.next()).await {
                            Ok(n) => n,
                            Err(_) => {
                                let out = r.finish_broken(
                                    FailureKind::Timeout,
                                    "The upstream stopped sending.",
                                );
                                return Some((Ok(out), r));
                            }
                        }
                    }
                };
                match next {
                    Some(Ok(bytes)) => {
                        let out = r.relay_chunk(&bytes);
                        if !out.is_empty() {
                            return Some((Ok(out), r));
                        }
                    }
                    Some(Err(e)) => {
                        let kind = crate::upstream::classify_transport(&e);
                        let out = r.finish_broken(kind, "The upstream stream broke.");
                        return Some((Ok(out), r));
                    }
                    None => {
                        if r.done {
                            return None;
                        }
                        if r.decoder.ends_at_eof() {
                            r.finish_ok();
                            return None;
                        }
                        let out = r.finish_broken(
                            FailureKind::ServerError,
                            "The upstream stream ended early.",
                        );
                        return Some((Ok(out), r));
                    }
                }
            }
        })
    }

    fn relay_chunk(&mut self, bytes: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        for ev in self.decoder.feed(bytes) {
            if self.done {
                break;
            }
            match ev {
                UpstreamEvent::Done => {
                    self.finish_ok();
                    let latency = self.info.request_started.elapsed().as_millis() as u64;
                    self.encoder.done(latency, &mut out);
                }
                UpstreamEvent::Error(detail) => {
                    // The upstream reported an error inside the stream: end with an error.
                    tracing::warn!(request_id = %self.info.id, detail = %detail, "upstream error inside a stream");
                    self.finish_failed(FailureKind::ServerError);
                    out.extend_from_slice(&self.encoder.error("The model stopped with an error. The response is incomplete; retry the request."));
                }
                UpstreamEvent::Raw(frame, usage) => {
                    if let Some(u) = usage {
                        self.usage = Some(u);
                    }
                    self.output_tokens += 1;
                    let used = self.info.prompt_tokens + self.output_tokens;
                    self.quota.set_used(used);
                    if let Some(h) = self.hold.as_mut() {
                        h.set_used(used);
                    }
                    self.encoder.raw(&frame, &mut out);
                }
                UpstreamEvent::Chunk(chunk, raw) => {
                    if let Some(u) = chunk.usage {
                        self.usage = Some(u);
                    }
                    let has_text = chunk
                        .choices
                        .iter()
                        .any(|c| c.delta.content.as_deref().is_some_and(|t| !t.is_empty()));
                    if has_text {
                        let now = Instant::now();
                        self.first_token_at.get_or_insert(now);
                        self.last_token_at = Some(now);
                        self.output_tokens += 1;
                        let used = self.info.prompt_tokens + self.output_tokens;
                        self.quota.set_used(used);
                        if let Some(h) = self.hold.as_mut() {
                            h.set_used(used);
                        }
                    }
                    self.encoder.chunk(&chunk, raw.as_deref(), &mut out);
                }
            }
        }
        out.freeze()
    }

    fn usage(&self) -> Usage {
        self.usage.unwrap_or(Usage {
            prompt_tokens: self.info.prompt_tokens,
            completion_tokens: self.output_tokens,
            total_tokens: self.info.prompt_tokens + self.output_tokens,
        })
    }

    fn finish_ok(&mut self) {
        self.done = true;
        let tokens = self.usage().total_tokens;
        let tpot = match (self.first_token_at, self.last_token_at) {
            (Some(a), Some(b)) if self.output_tokens > 1 => {
                Some((b - a) / (self.output_tokens - 1) as u32)
            }
            _ => None,
        };
        self.quota.set_used(tokens);
        if let Some(h) = self.hold.take() {
            h.finish(Outcome::Success {
                ttft: self.info.ttft,
                tpot,
                tokens,
            });
        }
        record_served(&self.state, &self.info, "ok", &self.usage());
    }

    fn finish_failed(&mut self, kind: FailureKind) {
        self.done = true;
        self.quota.set_used(self.usage().total_tokens);
        if let Some(h) = self.hold.take() {
            h.finish(Outcome::Failure(kind));
        }
        record_served(&self.state, &self.info, "broken", &self.usage());
    }

    /// The upstream failed after the client got bytes: end with an error in the client's shape.
    fn finish_broken(&mut self, kind: FailureKind, message: &str) -> Bytes {
        self.finish_failed(kind);
        self.encoder.error(&format!(
            "{message} The response is incomplete; retry the request."
        ))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if !self.done {
            // The client went away mid-stream: the hold releases as cancelled, the quota settles
            // to the tokens seen so far.
            record_served(&self.state, &self.info, "cancelled", &self.usage());
        }
    }
}
