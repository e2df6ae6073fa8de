//! The streamed (`stream: true`) response body: SSE chunks produced as the tokens are decoded.
//!
//! The body owns the request's [`Slot`] and [`Ticket`]. If the client disconnects, hyper drops
//! the body, which frees the slot at once and records the request as `cancelled`. A
//! `stall_after_tokens` fault makes the body pend (holding its slot) after that many tokens
//! until then, or until the simulator shuts down; `break_after_tokens` ends it with an error
//! (hyper then aborts the connection); `error_event_after_tokens` ends it cleanly after one SSE
//! error event, as vLLM does when the engine fails part-way.
use std::io;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use serde_json::Map;
use spillway_proto::sse::{DONE, encode_data};
use spillway_proto::{ChatChunk, ChunkChoice, Delta, OpenAiErrorBody, Usage};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::engine::{Cut, HALF_TICK, Plan, Slot};
use crate::record::{Outcome, Ticket};
use crate::text::Text;
use crate::tools::ToolCall;

/// Most tokens sent in one write, so that a stream with no decode time (infinite time scale)
/// does not build its whole output in one buffer.
const MAX_TOKENS_PER_WRITE: u64 = 256;

/// What one completion's chunks share.
pub(crate) struct ChunkMeta {
    pub id: String,
    pub model: String,
    pub created: u64,
    pub prompt_tokens: u64,
    /// Prompt tokens read from the prefix cache (`None`: no cache, no usage details).
    pub cached_tokens: Option<u64>,
    pub include_usage: bool,
    /// The tool call streamed instead of text (see `tools`).
    pub tool: Option<ToolCall>,
    /// The words the content tokens are.
    pub text: Text,
}

impl ChunkMeta {
    fn chunk(&self, choices: Vec<ChunkChoice>, usage: Option<Usage>) -> Bytes {
        let chunk = ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".to_string(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
            extra: Map::new(),
        };
        encode_data(&crate::reply::to_json(&chunk))
    }

    fn delta(&self, delta: Delta, finish_reason: Option<&str>) -> Bytes {
        let choice = ChunkChoice {
            index: 0,
            delta,
            finish_reason: finish_reason.map(str::to_string),
            extra: Map::new(),
        };
        self.chunk(vec![choice], None)
    }
}

enum Phase {
    Role,
    /// Content tokens sent so far.
    Tokens(u64),
    Finish,
    Usage,
    Done,
    End,
}

struct State {
    meta: ChunkMeta,
    plan: Plan,
    /// When decode started (the end of prefill); token `i` is due at `start + decode_time(i+1)`.
    start: Instant,
    /// Held until the last token is produced.
    slot: Option<Slot>,
    ticket: Ticket,
    phase: Phase,
    /// Ends a stall when the simulator shuts down.
    shutdown: watch::Receiver<bool>,
}

impl State {
    async fn step(&mut self) -> Option<Result<Bytes, io::Error>> {
        let cut = self.plan.cut();
        if matches!(self.phase, Phase::Tokens(sent) if sent >= self.plan.output_tokens
            && cut.is_none_or(|(k, _)| k != sent))
        {
            self.phase = Phase::Finish;
        }
        if let Phase::Tokens(sent) = self.phase
            && let Some((k, why)) = cut.filter(|(k, _)| *k == sent)
        {
            return Some(match why {
                Cut::Break => Err(self.broken(k).await),
                Cut::ErrorEvent => Ok(self.error_event(k)),
                Cut::Stall => Err(self.stalled().await),
            });
        }
        self.proceed().await
    }

    /// The next step of a stream that no fault cuts short here.
    async fn proceed(&mut self) -> Option<Result<Bytes, io::Error>> {
        match self.phase {
            Phase::Role => Some(Ok(self.role())),
            Phase::Tokens(sent) => Some(Ok(self.tokens(sent).await)),
            Phase::Finish => Some(Ok(self.finish())),
            Phase::Usage => Some(Ok(self.usage())),
            Phase::Done => {
                self.phase = Phase::End;
                self.ticket.close(Outcome::Ok);
                Some(Ok(encode_data(DONE)))
            }
            Phase::End => None,
        }
    }

    /// The first chunk: the assistant role with empty content.
    fn role(&mut self) -> Bytes {
        self.phase = Phase::Tokens(0);
        let delta = Delta {
            role: Some("assistant".into()),
            content: Some(String::new()),
            ..Delta::default()
        };
        self.meta.delta(delta, None)
    }

    /// The `break_after_tokens` fault after `sent` tokens: the error that ends the stream.
    async fn broken(&mut self, sent: u64) -> io::Error {
        // Let hyper flush what it has buffered (headers, the role chunk, the tokens so
        // far) before the error makes it drop the connection: the fault is a failure
        // *after* the first byte reached the client.
        tokio::task::yield_now().await;
        self.phase = Phase::End;
        self.slot = None;
        self.ticket.close(Outcome::Broken);
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("spillway-sim: break_after_tokens fault after {sent} tokens"),
        )
    }

    /// The `error_event_after_tokens` fault after `sent` tokens: one SSE error event, then the
    /// stream ends cleanly (no finish chunk, no `[DONE]`); the slot is given back now.
    fn error_event(&mut self, sent: u64) -> Bytes {
        self.phase = Phase::End;
        self.slot = None;
        self.ticket.close(Outcome::Error);
        let message = format!("engine error after {sent} tokens (injected)");
        let body = OpenAiErrorBody::new(message, "server_error", Some("engine_error"));
        encode_data(&body.to_json())
    }

    /// The `stall_after_tokens` fault: no more bytes (the slot stays held) until the client goes
    /// away, which drops the body (`cancelled`), or the simulator shuts down, which ends it with
    /// an error so that graceful shutdown can finish (`outage`).
    async fn stalled(&mut self) -> io::Error {
        if self.shutdown.wait_for(|down| *down).await.is_err() {
            std::future::pending::<()>().await;
        }
        self.phase = Phase::End;
        self.slot = None;
        self.ticket.close(Outcome::Outage);
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "spillway-sim: shutting down during a stall",
        )
    }

    /// The content tokens from `sent` on that are due, once the next one is.
    async fn tokens(&mut self, sent: u64) -> Bytes {
        crate::engine::sleep_until(self.start + self.plan.decode_time(sent + 1)).await;
        // Every token due by the next half tick goes out in this wake-up, one SSE event
        // each, in one write: a token takes less than tokio's 1 ms timer tick at high
        // time scales, and wake-ups land within half a tick of their deadline.
        let end = self.plan.cut().map_or(self.plan.output_tokens, |(k, _)| k);
        let due = self
            .plan
            .tokens_due(self.start, Instant::now() + HALF_TICK)
            .clamp(sent + 1, end.max(sent + 1))
            .min(sent + MAX_TOKENS_PER_WRITE);
        let mut out = BytesMut::new();
        for i in sent..due {
            let delta = match &self.meta.tool {
                Some(t) => t.delta(i),
                None => Delta {
                    content: Some(self.meta.text.token(i)),
                    ..Delta::default()
                },
            };
            out.extend_from_slice(&self.meta.delta(delta, None));
        }
        self.phase = Phase::Tokens(due);
        self.ticket.set_completion_tokens(due);
        out.freeze()
    }

    /// The chunk with the finish reason; the slot is freed first.
    fn finish(&mut self) -> Bytes {
        // The sequence is done: its slot goes to the next request in the queue.
        if let Some(slot) = self.slot.take() {
            slot.finish();
        }
        self.phase = if self.meta.include_usage {
            Phase::Usage
        } else {
            Phase::Done
        };
        let reason = match &self.meta.tool {
            Some(t) => t.finish_reason(self.plan.output_tokens),
            None => self.plan.finish_reason(),
        };
        self.meta.delta(Delta::default(), Some(reason))
    }

    /// The usage chunk (`stream_options.include_usage`): no choices.
    fn usage(&mut self) -> Bytes {
        self.phase = Phase::Done;
        let n = self.plan.output_tokens;
        let usage = crate::reply::usage(self.meta.prompt_tokens, n, self.meta.cached_tokens);
        self.meta.chunk(Vec::new(), Some(usage))
    }
}

/// The body of a streamed completion whose prefill ended at `start`.
pub(crate) fn body(
    meta: ChunkMeta,
    plan: Plan,
    start: Instant,
    slot: Slot,
    ticket: Ticket,
    shutdown: watch::Receiver<bool>,
) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    let state = State {
        meta,
        plan,
        start,
        slot: Some(slot),
        ticket,
        phase: Phase::Role,
        shutdown,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        let item = st.step().await?;
        Some((item, st))
    })
}

#[cfg(test)]
mod tests;
