//! The record of what the simulator served: the evidence that tests use to prove where every
//! request went.
//!
//! A [`Ticket`] is opened when a request reaches the handler and travels with it (into the
//! response body, for a stream). It is closed with an outcome when the request ends; if it is
//! dropped before that (the client went away, the handler future or the body stream was dropped),
//! its `Drop` records the request as `cancelled`, so no request is ever missing from the record.
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// One request that reached the chat-completions handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServedRecord {
    /// The `x-spillway-request-id` request header, else `x-request-id`.
    pub request_id: Option<String>,
    pub region: String,
    /// The request's `model` (empty when the body did not parse).
    pub model: String,
    pub stream: bool,
    pub prompt_tokens: u64,
    /// Output tokens produced (all of them for `ok`; those produced before the end otherwise).
    pub completion_tokens: u64,
    /// See [`Outcome`]: `ok`, `throttled`, `outage`, `error`, `broken`, `reset`,
    /// `cancelled`, `invalid`.
    pub outcome: String,
    /// Milliseconds since the simulator started, when the request arrived.
    pub at_ms: u64,
    /// The W3C `traceparent` request header, if the caller sent one (trace-context tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// A continuation (`continue_final_message`): the tokens of the answer its final assistant
    /// message already held, from which this response went on. `None` for any other request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continued_from: Option<u64>,
    /// With a prefix cache (`SimConfig::prefix_cache_blocks`): the prompt tokens read from it
    /// (`usage.prompt_tokens_details.cached_tokens`), once the request got a slot. `None` with
    /// the cache off or before a slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served completely.
    Ok,
    /// 429: the waiting queue was full.
    Throttled,
    /// 503: the region is in an outage (or shutting down).
    Outage,
    /// 500: injected error; or an engine error part-way (`error_event_after_tokens`: an SSE
    /// error event in a stream, a 500 otherwise).
    Error,
    /// Aborted by `break_after_tokens`.
    Broken,
    /// Closed without a response by the `reset` fault.
    Reset,
    /// The client went away first (hang, queue, prefill or mid-stream).
    Cancelled,
    /// 400: the body was not a chat-completions request.
    Invalid,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Throttled => "throttled",
            Outcome::Outage => "outage",
            Outcome::Error => "error",
            Outcome::Broken => "broken",
            Outcome::Reset => "reset",
            Outcome::Cancelled => "cancelled",
            Outcome::Invalid => "invalid",
        }
    }
}

/// The list of records and the clock they are stamped with.
pub(crate) struct Recorder {
    started: Instant,
    records: Mutex<Vec<ServedRecord>>,
}

impl Recorder {
    pub(crate) fn new() -> Self {
        Recorder {
            started: Instant::now(),
            records: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn push(&self, rec: ServedRecord) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(rec);
    }

    pub(crate) fn snapshot(&self) -> Vec<ServedRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn clear(&self) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// An open record; see the module docs.
pub(crate) struct Ticket {
    recorder: std::sync::Arc<Recorder>,
    rec: Option<ServedRecord>,
}

impl Ticket {
    /// Opens a record; `rec.outcome` is overwritten when the ticket is closed or dropped.
    pub(crate) fn open(recorder: std::sync::Arc<Recorder>, rec: ServedRecord) -> Self {
        Ticket {
            recorder,
            rec: Some(rec),
        }
    }

    /// Sets the number of output tokens produced so far.
    pub(crate) fn set_completion_tokens(&mut self, n: u64) {
        if let Some(rec) = self.rec.as_mut() {
            rec.completion_tokens = n;
        }
    }

    /// Sets the prompt tokens read from the prefix cache.
    pub(crate) fn set_cached_tokens(&mut self, n: Option<u64>) {
        if let Some(rec) = self.rec.as_mut() {
            rec.cached_tokens = n;
        }
    }

    /// Closes the record with `outcome` (a second close is ignored).
    pub(crate) fn close(&mut self, outcome: Outcome) {
        if let Some(mut rec) = self.rec.take() {
            rec.outcome = outcome.as_str().to_string();
            self.recorder.push(rec);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.close(Outcome::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn rec() -> ServedRecord {
        ServedRecord {
            request_id: Some("r1".into()),
            region: "us-east-1".into(),
            model: "m".into(),
            stream: false,
            prompt_tokens: 5,
            completion_tokens: 0,
            outcome: String::new(),
            at_ms: 0,
            traceparent: None,
            continued_from: None,
            cached_tokens: None,
        }
    }

    #[test]
    fn closed_ticket_records_its_outcome_once() {
        let r = Arc::new(Recorder::new());
        let mut t = Ticket::open(r.clone(), rec());
        t.set_completion_tokens(3);
        t.close(Outcome::Ok);
        t.close(Outcome::Error);
        drop(t);
        let s = r.snapshot();
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].outcome.as_str(), s[0].completion_tokens), ("ok", 3));
    }

    #[test]
    fn dropped_ticket_is_cancelled() {
        let r = Arc::new(Recorder::new());
        drop(Ticket::open(r.clone(), rec()));
        assert_eq!(r.snapshot()[0].outcome, "cancelled");
        r.clear();
        assert!(r.snapshot().is_empty());
    }
}
