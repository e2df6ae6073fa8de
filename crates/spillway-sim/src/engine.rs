//! The capacity model of one LLM engine, and the timing and content of one request.
//!
//! # Why this model
//!
//! A modern inference engine (vLLM, SGLang, TGI, llama.cpp server) does *continuous batching*: it
//! decodes a fixed number of sequences together, one token of each per step, and admits a waiting
//! request into the batch as soon as a sequence finishes. What a gateway observes from outside
//! follows from that, and is what this module reproduces:
//!
//! * **Slots.** At most `concurrency` sequences run at once. A request holds its slot from the
//!   start of prefill until its last token is due (see [`Engine`] for why not until its body
//!   has written it).
//! * **Prefill ∝ input.** Before the first output token the engine reads the whole prompt:
//!   `prompt_tokens / prefill_tokens_per_sec`. Long prompts have a long time-to-first-token.
//!   With a prefix cache (`prefix_cache.rs`) only the tokens it does not hold are read.
//! * **Decode per token.** Each sequence then produces `decode_tokens_per_sec` tokens per second
//!   independently of the others, so the time per output token does not depend on load (the
//!   batch absorbs it) while the time-to-first-token does (queueing).
//! * **Bounded queue → 429.** A request that finds every slot busy waits (FIFO) for one; when
//!   `queue_limit` requests are already waiting the engine refuses at once with 429 and a
//!   `Retry-After` estimated from the running sequence that will finish first, which is when a
//!   queue position opens. This is the back-pressure signal the gateway's routing and its
//!   adaptive limits learn capacity from.
//!
//! Service times are multiplied by the brown-out factor ([`crate::Fault::slow_factor`]) and
//! divided by `time_scale`, so a trace recorded over an hour replays in a minute with the same
//! shape. Token deadlines are computed from the start of decode (`start + i × per_token`) rather
//! than by sleeping per token, so timer granularity does not accumulate when a token takes less
//! than a millisecond (tokio's timer ticks every 1 ms; at 50 tokens/s and time scale 30 a token
//! is due every 0.67 ms): each wake-up emits every token that has come due, in one write
//! ([`Plan::tokens_due`]), and a non-streamed response sleeps once, to the end of its decode.
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::{Fault, SimConfig};

/// Longest output a request can ask for (a context window of sorts), so that a huge `max_tokens`
/// cannot make the simulator allocate without bound.
pub const MAX_OUTPUT_TOKENS: u64 = 1_000_000;

/// Longest single wait the model computes (30 days); keeps `Instant` arithmetic from overflowing.
const MAX_WAIT: Duration = Duration::from_secs(30 * 24 * 3600);

pub use crate::text::{completion_text, token_text};

/// Seconds as a `Duration`, clamped to `[0, MAX_WAIT]`; NaN is zero.
fn secs(s: f64) -> Duration {
    if s.is_nan() || s <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(s).map_or(MAX_WAIT, |d| d.min(MAX_WAIT))
}

/// The timing and length of one request, fixed when it is admitted.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Output tokens to produce.
    pub output_tokens: u64,
    /// Whether the client set the cap (`finish_reason` is then `length`, else `stop`).
    pub capped: bool,
    pub prefill: Duration,
    /// Seconds per output token, scaled.
    per_token_secs: f64,
    /// Abort after this many content tokens (only set when the response would reach them).
    pub break_after: Option<u64>,
    /// Hang after this many content tokens (only set when the response would reach them).
    pub stall_after: Option<u64>,
    /// End with an error (an SSE error event, or a 500) after this many content tokens (only
    /// set when the response would reach them).
    pub error_after: Option<u64>,
}

/// How a response is cut short by a fault, at the point [`Plan::cut`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// `break_after_tokens`: the connection is aborted.
    Break,
    /// `error_event_after_tokens`: an error ends the response cleanly.
    ErrorEvent,
    /// `stall_after_tokens`: no more bytes.
    Stall,
}

impl Plan {
    /// The plan of a request whose output is `cap` tokens if set, else `default_max_tokens`.
    pub(crate) fn new(
        cfg: &SimConfig,
        fault: &Fault,
        cap: Option<u64>,
        prompt_tokens: u64,
    ) -> Self {
        Plan::with_default(cfg, fault, cap, cfg.default_max_tokens, prompt_tokens)
    }

    /// The plan of a request whose output is `cap` tokens if set, else `uncapped` (a
    /// continuation writes what is left of `default_max_tokens`).
    pub(crate) fn with_default(
        cfg: &SimConfig,
        fault: &Fault,
        cap: Option<u64>,
        uncapped: u64,
        prompt_tokens: u64,
    ) -> Self {
        let scale = fault.service_multiplier() / cfg.time_scale;
        let output_tokens = cap.unwrap_or(uncapped).min(MAX_OUTPUT_TOKENS);
        Plan {
            output_tokens,
            capped: cap.is_some(),
            prefill: secs(prompt_tokens as f64 / cfg.prefill_tokens_per_sec * scale),
            per_token_secs: scale / cfg.decode_tokens_per_sec,
            break_after: fault.break_after_tokens.filter(|k| *k <= output_tokens),
            stall_after: fault.stall_after_tokens.filter(|k| *k <= output_tokens),
            error_after: fault
                .error_event_after_tokens
                .filter(|k| *k <= output_tokens),
        }
    }

    /// Where a fault cuts the response short, if one does: the earliest of the three fault
    /// points; at equal counts a break wins over an error, and an error over a stall.
    pub(crate) fn cut(&self) -> Option<(u64, Cut)> {
        [
            (self.break_after, Cut::Break),
            (self.error_after, Cut::ErrorEvent),
            (self.stall_after, Cut::Stall),
        ]
        .into_iter()
        .filter_map(|(at, cut)| at.map(|k| (k, cut)))
        .min_by_key(|(k, _)| *k)
    }

    /// Time to decode the first `tokens` output tokens.
    pub(crate) fn decode_time(&self, tokens: u64) -> Duration {
        secs(tokens as f64 * self.per_token_secs)
    }

    /// Output tokens due by `now` when decode started at `start`: the largest `k` (at most
    /// `output_tokens`) with `start + decode_time(k) <= now`. Due times are always computed from
    /// `start`, never by adding up per-token sleeps, so a late wake-up (tokio's timer has a 1 ms
    /// tick; a token at 50 tokens/s and time scale 30 is due every 0.67 ms) delays tokens but
    /// never slows the decode down: the wake-up emits every token that has come due.
    pub(crate) fn tokens_due(&self, start: Instant, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(start);
        let n = self.output_tokens;
        if self.per_token_secs <= 0.0 || self.per_token_secs.is_nan() {
            return n;
        }
        // A guess from the division, then corrected against `decode_time` itself so that the
        // rounding agrees with the deadlines the stream sleeps to.
        let guess = (elapsed.as_secs_f64() / self.per_token_secs).floor();
        let mut k = if guess >= n as f64 { n } else { guess as u64 };
        while k > 0 && self.decode_time(k) > elapsed {
            k -= 1;
        }
        while k < n && self.decode_time(k + 1) <= elapsed {
            k += 1;
        }
        k
    }

    /// Prefill plus the whole decode: how long this request holds its slot.
    pub(crate) fn service_time(&self) -> Duration {
        self.prefill
            .saturating_add(self.decode_time(self.output_tokens))
    }

    pub(crate) fn finish_reason(&self) -> &'static str {
        if self.capped { "length" } else { "stop" }
    }
}

/// Refused: the waiting queue is full. `retry_after` estimates when a queue position opens.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Throttled {
    pub retry_after: Duration,
}

/// Slots, the waiting queue and the planned end of every running sequence.
///
/// A slot is free from its sequence's *planned* end (admission + prefill + decode), not from
/// the moment the response body next wakes up: tokio's timer fires on 1 ms ticks and a busy
/// runtime adds its own delay, which at time scale 30 would hold every slot some 30 ms of
/// modelled time too long and hand a queued request its slot late. So the engine keeps the
/// planned ends itself: a request that arrives after a sequence's planned end finds that slot
/// free even if the body has not finished writing, and a queued request that gets a freed slot
/// starts at the moment the slot freed (or when it arrived, if later), so its own prefill and
/// decode deadlines run from there and timer lateness never adds up along a queue.
pub(crate) struct Engine {
    concurrency: usize,
    queue_limit: usize,
    in_flight: AtomicU32,
    next_id: AtomicU64,
    slots: Mutex<Slots>,
}

/// Running sequences (id → planned end) and the FIFO of requests waiting for a slot.
#[derive(Default)]
struct Slots {
    running: HashMap<u64, Instant>,
    waiting: VecDeque<Waiter>,
}

struct Waiter {
    id: u64,
    service: Duration,
    since: Instant,
    start: oneshot::Sender<Instant>,
}

impl Slots {
    /// Frees every slot whose sequence's planned end has passed, in the order they ended.
    fn reap(&mut self, now: Instant) {
        while let Some((&id, &end)) = self
            .running
            .iter()
            .filter(|(_, end)| **end <= now)
            .min_by_key(|(_, end)| **end)
        {
            self.running.remove(&id);
            self.hand_over(end);
        }
    }

    /// A slot freed at `at`: the first waiter takes it and starts at `at` (or when it arrived).
    fn hand_over(&mut self, at: Instant) {
        while let Some(w) = self.waiting.pop_front() {
            let start = at.max(w.since);
            if w.start.send(start).is_ok() {
                self.running.insert(w.id, start + w.service);
                return;
            }
        }
    }

    /// Gives back request `id`'s slot or its place in the queue, whichever it holds. A sequence
    /// that `finished` hands its slot over at its planned end even when the body let go of it
    /// up to half a tick before (see [`sleep_until`]), so that early wake-ups do not add up along
    /// a queue; one that was cut short hands it over now.
    fn release(&mut self, id: u64, now: Instant, finished: bool) {
        if let Some(end) = self.running.remove(&id) {
            self.hand_over(if finished { end } else { end.min(now) });
        } else {
            self.waiting.retain(|w| w.id != id);
        }
        self.reap(now);
    }
}

/// Counts a request as in flight (queued or running) while it lives.
struct InFlight(Arc<Engine>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running sequence (or, while [`Engine::admit`] waits, a place in the queue). Dropping it
/// frees the slot (at the end of decode, or as soon as the request future or the response body
/// is dropped because the client went away).
pub(crate) struct Slot {
    id: u64,
    start: Instant,
    finished: bool,
    in_flight: InFlight,
}

impl Slot {
    /// When the sequence got its slot: its prefill starts here.
    pub(crate) fn start(&self) -> Instant {
        self.start
    }

    /// The sequence produced its last token: the slot is given back as of its planned end.
    pub(crate) fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let engine = &self.in_flight.0;
        engine
            .lock()
            .release(self.id, Instant::now(), self.finished);
    }
}

impl Engine {
    pub(crate) fn new(cfg: &SimConfig) -> Arc<Self> {
        Arc::new(Engine {
            concurrency: cfg.concurrency as usize,
            queue_limit: cfg.queue_limit as usize,
            in_flight: AtomicU32::new(0),
            next_id: AtomicU64::new(0),
            slots: Mutex::new(Slots::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests running or waiting for a slot right now.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Requests waiting for a slot right now.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Gets a slot for a request that will hold it for `service`: at once if one is free, after
    /// waiting in the queue if the queue has room, otherwise [`Throttled`].
    pub(crate) async fn admit(self: &Arc<Self>, service: Duration) -> Result<Slot, Throttled> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let started = {
            let mut s = self.lock();
            s.reap(now);
            if s.running.len() < self.concurrency && s.waiting.is_empty() {
                s.running.insert(id, now + service);
                None
            } else if s.waiting.len() < self.queue_limit {
                let (tx, rx) = oneshot::channel();
                s.waiting.push_back(Waiter {
                    id,
                    service,
                    since: now,
                    start: tx,
                });
                Some(rx)
            } else {
                return Err(throttled(&s, now, service));
            }
        };
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        // From here the slot (or the place in the queue) is given back if this future is dropped.
        let mut slot = Slot {
            id,
            start: now,
            finished: false,
            in_flight: InFlight(self.clone()),
        };
        if let Some(rx) = started {
            // The sender lives in the queue until a slot is handed over, and the queue lives in
            // the engine this future holds: it cannot be dropped unsent.
            slot.start = rx.await.unwrap_or(now);
        }
        Ok(slot)
    }
}

/// Refused: a queue position opens when the running sequence that ends first ends; a request's
/// own service time if nothing is running (queue limit 0 with a free slot race).
fn throttled(s: &Slots, now: Instant, fallback: Duration) -> Throttled {
    let earliest = s.running.values().min().copied();
    let retry_after = earliest.map_or(fallback, |end| end.saturating_duration_since(now));
    Throttled { retry_after }
}

/// Waits until the first `tokens` output tokens of a decode that started at `start` are done
/// (a non-streamed response): one sleep to the absolute deadline, never one per token.
pub(crate) async fn decode(plan: &Plan, start: Instant, tokens: u64) {
    sleep_until(start + plan.decode_time(tokens)).await;
}

/// Half of tokio's 1 ms timer tick: how early [`sleep_until`] aims.
pub(crate) const HALF_TICK: Duration = Duration::from_micros(500);

/// Sleeps until about `deadline`, the error centred on zero.
///
/// Tokio fires a sleep at the first 1 ms tick at or after its deadline, so a plain sleep wakes
/// 0–1 ms late, half a tick on average, every time. That bias is small in wall time but the
/// simulator runs scaled traces: at `--time-scale 30` half a tick is 15 ms of trace time added to
/// every token event, every first token, and every slot the gateway sees freed — a queued
/// request looks queued for longer than the model it stands for would keep it. Aiming half a tick
/// early makes the wake-up fall within half a tick either side of the deadline instead. A deadline
/// within that half tick is not slept for at all (which also keeps a 1 ms floor off a zero
/// service time). Under tokio's paused clock, deadlines on whole milliseconds fire exactly on
/// them as before, since the paused clock also advances to the tick.
pub(crate) async fn sleep_until(deadline: Instant) {
    let aim = deadline.checked_sub(HALF_TICK).unwrap_or(deadline);
    if aim > Instant::now() {
        tokio::time::sleep_until(aim).await;
    }
}

#[cfg(test)]
mod tests;
