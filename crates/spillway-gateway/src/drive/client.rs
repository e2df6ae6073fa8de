//! The client's side of a request: its response head (sent once: an error, a whole answer, or
//! the head of a stream), then a stream's bytes through a bounded channel.
//!
//! A stream's bytes wait in an outbox until the client's connection takes them; while more
//! than [`OUTBOX_HIGH`] bytes wait, the driver stops reading the upstream (backpressure), and a
//! client that takes nothing for the stall timeout is reported stalled. A closed channel, before
//! or after the head, is the client gone.
use std::convert::Infallible;
use std::time::Duration;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use spillway_core::{Reason, RegionIx};
use spillway_exchange::{Event, Piece, Refusal};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::ctx::RequestCtx;
use crate::config::Config;
use crate::drive::codec::{ClientEncoder, render_completion, render_response};
use crate::error::{Api, EdgeError, shown};

/// Above this many bytes waiting for the client, the upstream is not read.
pub const OUTBOX_HIGH: usize = 64 * 1024;
/// Chunks of a stream in flight between the driver and the client's connection.
const CHANNEL: usize = 32;

pub enum Client {
    /// No head yet.
    Waiting(oneshot::Sender<Response>),
    Streaming(Outgoing),
    /// The client is gone; `told`: the exchange knows.
    Gone {
        told: bool,
    },
}

pub struct Outgoing {
    tx: mpsc::Sender<Bytes>,
    encoder: ClientEncoder,
    outbox: BytesMut,
    /// Since when the outbox has waited for the client, if it has bytes.
    waiting_since: Option<Instant>,
}

impl Client {
    pub fn new(head: oneshot::Sender<Response>) -> Client {
        Client::Waiting(head)
    }

    /// Whether the upstream may be read (the client keeps up).
    pub fn accepts_more(&self) -> bool {
        match self {
            Client::Streaming(out) => out.outbox.len() < OUTBOX_HIGH,
            _ => true,
        }
    }

    /// Send a response head (an error or a whole answer).
    pub fn respond(&mut self, resp: Response) {
        if let Client::Waiting(_) = self {
            let Client::Waiting(tx) = std::mem::replace(self, Client::Gone { told: false }) else {
                return;
            };
            if tx.send(resp).is_ok() {
                *self = Client::Gone { told: true };
            }
        }
    }

    /// Open the stream (once): its head goes out now, its bytes as they come.
    pub fn open_stream(&mut self, ctx: &RequestCtx, decorate: impl FnOnce(&mut Response)) {
        if !matches!(self, Client::Waiting(_)) {
            return;
        }
        let Client::Waiting(head) = std::mem::replace(self, Client::Gone { told: false }) else {
            return;
        };
        let encoder = ClientEncoder::new(ctx);
        let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL);
        let body = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, Infallible>);
        let mut resp = axum::body::Body::from_stream(body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(encoder.content_type()),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        decorate(&mut resp);
        if head.send(resp).is_ok() {
            *self = Client::Streaming(Outgoing {
                tx,
                encoder,
                outbox: BytesMut::new(),
                waiting_since: None,
            });
        }
    }

    /// Encode into the stream's outbox.
    pub fn write(&mut self, f: impl FnOnce(&mut ClientEncoder, &mut BytesMut)) {
        if let Client::Streaming(out) = self {
            f(&mut out.encoder, &mut out.outbox);
            if !out.outbox.is_empty() {
                out.waiting_since.get_or_insert_with(Instant::now);
            }
        }
    }

    /// Whether nothing waits to go out to the client.
    pub fn flushed(&self) -> bool {
        match self {
            Client::Streaming(out) => out.outbox.is_empty(),
            _ => true,
        }
    }

    /// Wait for the client to take waiting bytes, or for it to be gone or stalled: `None` when
    /// bytes went out, else the event for the exchange. Pending forever when there is nothing to
    /// report.
    pub async fn progress(&mut self, stall: Duration) -> Option<Event> {
        match self {
            Client::Waiting(tx) => {
                tx.closed().await;
                *self = Client::Gone { told: true };
                Some(Event::ClientGone)
            }
            Client::Gone { told: false } => {
                *self = Client::Gone { told: true };
                Some(Event::ClientGone)
            }
            Client::Gone { told: true } => std::future::pending().await,
            Client::Streaming(out) if out.outbox.is_empty() => {
                out.tx.closed().await;
                *self = Client::Gone { told: true };
                Some(Event::ClientGone)
            }
            Client::Streaming(out) => {
                let since = *out.waiting_since.get_or_insert_with(Instant::now);
                let ev = tokio::select! {
                    permit = out.tx.reserve() => match permit {
                        Ok(p) => {
                            p.send(out.outbox.split().freeze());
                            out.waiting_since = None;
                            return None;
                        }
                        Err(_) => Event::ClientGone,
                    },
                    () = tokio::time::sleep_until(since + stall) => Event::ClientStalled,
                };
                *self = Client::Gone { told: true };
                Some(ev)
            }
        }
    }
}

/// The routing headers every answer carries.
pub fn decorate(
    resp: &mut Response,
    cfg: &Config,
    ctx: &RequestCtx,
    route: Option<(Option<RegionIx>, Reason)>,
) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ctx.id) {
        h.insert("x-request-id", v.clone());
        match ctx.api {
            Api::OpenAi | Api::Responses | Api::Embeddings => {}
            Api::Anthropic => {
                h.insert("request-id", v);
            }
            _ => {
                h.insert("x-amzn-RequestId", v);
            }
        }
    }
    if let Ok(v) = HeaderValue::from_str(cfg.region_name(ctx.source)) {
        h.insert("x-spillway-source-region", v);
    }
    if let Some((served, reason)) = route {
        if let Some(r) = served
            && let Ok(v) = HeaderValue::from_str(cfg.region_name(r))
        {
            h.insert("x-spillway-region", v);
        }
        h.insert(
            "x-spillway-route-reason",
            HeaderValue::from_static(reason.as_str()),
        );
    }
}

/// A whole non-streamed answer in the client's API. An InvokeModel answer carries Bedrock's
/// `X-Amzn-Bedrock-Input-Token-Count`, `-Output-Token-Count` (when the upstream reported its
/// usage) and `-Invocation-Latency` headers.
pub fn answer(ctx: &RequestCtx, piece: Piece) -> Response {
    let latency_ms = ctx.started.elapsed().as_millis() as u64;
    if let Some(echo) = &ctx.echo {
        let parsed = match &piece {
            Piece::Answer { parsed, .. } => parsed.as_deref(),
            _ => None,
        };
        return render_response(echo, parsed);
    }
    if matches!(ctx.api, Api::Anthropic | Api::InvokeAnthropic) {
        let parsed = match &piece {
            Piece::Answer { parsed, .. } => parsed.as_deref(),
            _ => None,
        };
        return super::anthropic::render_message(ctx, parsed, latency_ms);
    }
    let usage = match &piece {
        Piece::Answer { usage, parsed, .. } => usage.or_else(|| parsed.as_ref()?.usage),
        _ => None,
    };
    let mut resp = match piece {
        Piece::Answer { raw, parsed, .. } => {
            render_completion(ctx.api, raw, parsed.as_deref(), latency_ms)
        }
        // A stream's piece never reaches a non-streamed request; answer what it carries.
        Piece::Chunk { raw, .. } => render_completion(
            ctx.api,
            raw.map(Bytes::from).unwrap_or_default(),
            None,
            latency_ms,
        ),
        Piece::Frame { bytes, .. } => render_completion(ctx.api, bytes, None, latency_ms),
    };
    if ctx.api == crate::error::Api::Invoke && resp.status().is_success() {
        let h = resp.headers_mut();
        if let Some(u) = usage {
            h.insert(
                "X-Amzn-Bedrock-Input-Token-Count",
                HeaderValue::from(u.prompt_tokens),
            );
            h.insert(
                "X-Amzn-Bedrock-Output-Token-Count",
                HeaderValue::from(u.completion_tokens),
            );
        }
        h.insert(
            "X-Amzn-Bedrock-Invocation-Latency",
            HeaderValue::from(latency_ms),
        );
    }
    resp
}

/// The client's error for an exchange's refusal.
pub fn refusal(model: &str, r: Refusal) -> EdgeError {
    let model = shown(model);
    match r {
        Refusal::NoCapacity { retry_after } => EdgeError::Throttled {
            message: format!(
                "No region of {model} has capacity for this request right now. Retry after the indicated time."
            ),
            retry_after,
        },
        Refusal::Reserved { retry_after } => EdgeError::Throttled {
            message: format!(
                "This region has no capacity for {model} right now, and the other regions keep theirs for their own traffic. Retry after the indicated time."
            ),
            retry_after,
        },
        Refusal::AllThrottled { retry_after } => EdgeError::Throttled {
            message: format!(
                "Every region that can serve {model} is at capacity. Retry after the indicated time."
            ),
            retry_after,
        },
        Refusal::Timeout => EdgeError::Timeout(format!("No region answered in time for {model}.")),
        Refusal::Unavailable => EdgeError::Unavailable(format!(
            "No region could serve {model} right now; the upstreams failed."
        )),
        Refusal::Rejected { status, body } => EdgeError::UpstreamClient {
            status: axum::http::StatusCode::from_u16(status)
                .unwrap_or(axum::http::StatusCode::BAD_REQUEST),
            body,
        },
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
