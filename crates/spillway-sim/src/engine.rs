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

/// The generated text is made of these words, one token each, cycled in order. Each is three
/// letters, so a chunk (`" " + word`) is exactly four characters, which is one token by
/// [`spillway_proto::tokens::text_tokens`]: the estimate of the text equals the reported count.
const VOCAB: [&str; 16] = [
    "the", "sea", "was", "red", "and", "all", "our", "old", "map", "got", "wet", "yet", "one",
    "sun", "new", "day",
];

/// The content chunk of output token `i` (0-based): `" " + word`.
pub fn token_text(i: u64) -> String {
    let word = VOCAB[usize::try_from(i % VOCAB.len() as u64).unwrap_or(0)];
    format!(" {word}")
}

/// The whole completion text for `n` output tokens (the concatenation of the stream's chunks).
pub fn completion_text(n: u64) -> String {
    (0..n).map(token_text).collect()
}

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
}

impl Plan {
    pub(crate) fn new(
        cfg: &SimConfig,
        fault: &Fault,
        cap: Option<u64>,
        prompt_tokens: u64,
    ) -> Self {
        let scale = fault.service_multiplier() / cfg.time_scale;
        let output_tokens = cap.unwrap_or(cfg.default_max_tokens).min(MAX_OUTPUT_TOKENS);
        Plan {
            output_tokens,
            capped: cap.is_some(),
            prefill: secs(prompt_tokens as f64 / cfg.prefill_tokens_per_sec * scale),
            per_token_secs: scale / cfg.decode_tokens_per_sec,
            break_after: fault.break_after_tokens.filter(|k| *k <= output_tokens),
        }
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

    /// Gives back request `id`'s slot or its place in the queue, whichever it holds.
    fn release(&mut self, id: u64, now: Instant) {
        if let Some(end) = self.running.remove(&id) {
            self.hand_over(end.min(now));
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
    in_flight: InFlight,
}

impl Slot {
    /// When the sequence got its slot: its prefill starts here.
    pub(crate) fn start(&self) -> Instant {
        self.start
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let engine = &self.in_flight.0;
        engine.lock().release(self.id, Instant::now());
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

/// Sleep until `deadline`, but not at all when it has passed: tokio rounds every sleep up to its
/// next 1 ms tick, which would put a 1 ms floor under a zero service time.
pub(crate) async fn sleep_until(deadline: tokio::time::Instant) {
    if deadline > tokio::time::Instant::now() {
        tokio::time::sleep_until(deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(concurrency: u32, queue_limit: u32) -> SimConfig {
        SimConfig {
            concurrency,
            queue_limit,
            ..SimConfig::default()
        }
    }

    #[test]
    fn text_is_one_estimated_token_per_word() {
        let text = completion_text(37);
        assert_eq!(spillway_proto::tokens::text_tokens(&text), 37);
        assert_eq!(completion_text(3), " the sea was");
        assert_eq!(token_text(16), token_text(0));
    }

    #[test]
    fn plan_times_scale_with_input_output_slowness_and_time_scale() {
        let c = SimConfig {
            time_scale: 2.0,
            ..SimConfig::default()
        };
        let p = Plan::new(&c, &Fault::default(), None, 4000);
        assert_eq!(p.prefill, Duration::from_millis(500));
        assert_eq!(p.output_tokens, 16);
        assert_eq!(p.finish_reason(), "stop");
        assert_eq!(p.decode_time(16), Duration::from_millis(160));
        let slow = Fault {
            slow_factor: 3.0,
            ..Fault::default()
        };
        let p = Plan::new(&c, &slow, Some(5), 4000);
        assert_eq!(p.prefill, Duration::from_millis(1500));
        assert_eq!(p.service_time(), Duration::from_millis(1500 + 150));
        assert_eq!(p.finish_reason(), "length");
    }

    #[test]
    fn break_only_when_the_response_reaches_it() {
        let c = SimConfig::default();
        let f = |k| Fault {
            break_after_tokens: Some(k),
            ..Fault::default()
        };
        assert_eq!(Plan::new(&c, &f(3), Some(5), 1).break_after, Some(3));
        assert_eq!(Plan::new(&c, &f(5), Some(5), 1).break_after, Some(5));
        assert_eq!(Plan::new(&c, &f(6), Some(5), 1).break_after, None);
    }

    #[test]
    fn absurd_numbers_do_not_panic() {
        assert_eq!(secs(f64::NAN), Duration::ZERO);
        assert_eq!(secs(-1.0), Duration::ZERO);
        assert_eq!(secs(f64::INFINITY), MAX_WAIT);
        let c = SimConfig {
            time_scale: f64::INFINITY,
            ..SimConfig::default()
        };
        let p = Plan::new(&c, &Fault::default(), Some(u64::MAX), u64::MAX);
        assert_eq!(p.output_tokens, MAX_OUTPUT_TOKENS);
        assert_eq!(p.service_time(), Duration::ZERO);
    }

    #[tokio::test]
    async fn queue_then_throttle_with_retry_after_from_earliest_end() {
        let e = Engine::new(&cfg(1, 1));
        let first = e.admit(Duration::from_secs(10)).await.unwrap();
        assert_eq!(e.in_flight(), 1);
        let e2 = e.clone();
        let queued = tokio::spawn(async move { e2.admit(Duration::from_secs(1)).await.is_ok() });
        while e.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(e.in_flight(), 2);
        let refused = e.admit(Duration::from_secs(1)).await.err().unwrap();
        assert!(refused.retry_after > Duration::from_secs(9), "{refused:?}");
        assert_eq!(e.in_flight(), 2, "a refused request is not in flight");
        drop(first);
        assert!(queued.await.unwrap());
        assert_eq!(e.in_flight(), 0);
        assert_eq!(e.waiting(), 0);
    }

    #[tokio::test]
    async fn a_waiter_that_goes_away_gives_back_its_place() {
        let e = Engine::new(&cfg(1, 1));
        let _first = e.admit(Duration::from_secs(1)).await.unwrap();
        let e2 = e.clone();
        let queued = tokio::spawn(async move { e2.admit(Duration::from_secs(1)).await.is_ok() });
        while e.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        queued.abort();
        let _ = queued.await;
        assert_eq!(e.waiting(), 0);
        assert_eq!(e.in_flight(), 1);
    }

    /// A sequence's slot is free at its planned end, whether or not its body has finished
    /// writing (the tokio timer wakes it up to a tick late, more on a busy runtime).
    #[tokio::test(start_paused = true)]
    async fn a_slot_is_free_at_its_planned_end_before_the_body_lets_go() {
        let e = Engine::new(&cfg(1, 0));
        let first = e.admit(Duration::from_millis(10)).await.unwrap();
        assert!(e.admit(Duration::from_millis(10)).await.is_err(), "full");
        tokio::time::advance(Duration::from_millis(10)).await;
        let second = e.admit(Duration::from_millis(10)).await.unwrap();
        assert_eq!(second.start(), first.start() + Duration::from_millis(10));
        assert_eq!(e.in_flight(), 2, "the first body is still writing");
        drop(first);
        assert!(
            e.admit(Duration::from_millis(10)).await.is_err(),
            "the second runs"
        );
    }

    /// A queued request starts when the slot freed, not when the body that held it let go;
    /// one whose holder went away early starts then.
    #[tokio::test(start_paused = true)]
    async fn a_queued_request_starts_when_its_slot_freed() {
        let e = Engine::new(&cfg(1, 2));
        let t0 = Instant::now();
        let first = e.admit(Duration::from_millis(10)).await.unwrap();
        let (e2, e3) = (e.clone(), e.clone());
        let second = tokio::spawn(async move { e2.admit(Duration::from_secs(10)).await });
        let third = tokio::spawn(async move { e3.admit(Duration::from_secs(1)).await });
        while e.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        tokio::time::advance(Duration::from_millis(15)).await;
        drop(first);
        let second = second.await.unwrap().unwrap();
        assert_eq!(second.start(), t0 + Duration::from_millis(10));
        tokio::time::advance(Duration::from_millis(5)).await;
        drop(second);
        let third = third.await.unwrap().unwrap();
        assert_eq!(
            third.start(),
            t0 + Duration::from_millis(20),
            "freed early, at the drop"
        );
        assert_eq!((e.waiting(), e.in_flight()), (0, 1));
    }

    #[test]
    fn tokens_due_agrees_with_the_deadlines() {
        let c = SimConfig {
            time_scale: 30.0,
            ..SimConfig::default()
        };
        let p = Plan::new(&c, &Fault::default(), Some(200), 10);
        let start = Instant::now();
        for k in [0u64, 1, 2, 3, 99, 150, 199, 200] {
            let at = start + p.decode_time(k);
            assert_eq!(p.tokens_due(start, at), k, "at token {k}'s deadline");
            if k > 0 {
                let before = at - Duration::from_nanos(1);
                assert_eq!(p.tokens_due(start, before), k - 1, "just before token {k}");
            }
        }
        assert_eq!(p.tokens_due(start, start + Duration::from_secs(9)), 200);
        assert_eq!(p.tokens_due(start + Duration::from_secs(1), start), 0);
        let instant = SimConfig {
            time_scale: f64::INFINITY,
            ..SimConfig::default()
        };
        let p = Plan::new(&instant, &Fault::default(), Some(7), 10);
        assert_eq!(p.tokens_due(start, start), 7);
    }

    /// A non-streamed 200-token decode at 50 tokens/s and time scale 30: 133.3 ms, one sleep.
    #[tokio::test(start_paused = true)]
    async fn non_streamed_decode_keeps_the_configured_rate() {
        let c = SimConfig {
            time_scale: 30.0,
            ..SimConfig::default()
        };
        let p = Plan::new(&c, &Fault::default(), Some(200), 10);
        let start = Instant::now();
        decode(&p, start, 200).await;
        let took = start.elapsed();
        assert!(
            took >= Duration::from_micros(133_333) && took <= Duration::from_millis(135),
            "decode took {took:?}"
        );
    }
}
