//! What the soak's clients saw, by kind of client.
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// The kinds of client the soak runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// OpenAI chat completion, not streamed.
    Chat,
    /// OpenAI chat completion, streamed (SSE), read to `[DONE]`.
    ChatStream,
    /// Bedrock Converse.
    Converse,
    /// Bedrock ConverseStream (event stream), read to its end.
    ConverseStream,
    /// A streamed chat completion whose client goes away after the first bytes of the body.
    Disconnect,
    /// A long streamed chat completion whose client reads the head, then nothing for a while.
    SlowReader,
    /// A connection that never sends a request.
    Idle,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Chat,
        Kind::ChatStream,
        Kind::Converse,
        Kind::ConverseStream,
        Kind::Disconnect,
        Kind::SlowReader,
        Kind::Idle,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Chat => "chat",
            Kind::ChatStream => "chat-stream",
            Kind::Converse => "converse",
            Kind::ConverseStream => "converse-stream",
            Kind::Disconnect => "disconnect",
            Kind::SlowReader => "slow-reader",
            Kind::Idle => "idle",
        }
    }
}

/// How one request (or idle connection) ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Answered in full (a disconnecting client: it got the first bytes before leaving).
    Ok,
    /// Cut by the gateway, as it should be: a slow reader's stream ended early (stall
    /// deadline), an idle connection was closed (header-read timeout) after this long.
    Cut(Option<Duration>),
    /// 429 / `ThrottlingException`.
    Throttled,
    /// Anything else, with why.
    Failed(String),
}

/// The counts of one kind.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Counts {
    pub ok: u64,
    /// Slow readers cut by the gateway; idle connections closed by the gateway.
    pub cut: u64,
    pub throttled: u64,
    pub failed: u64,
    /// Idle connections: seconds from connect to the gateway's close, least and most.
    pub cut_after_min_secs: Option<f64>,
    pub cut_after_max_secs: Option<f64>,
    /// Failures by reason (the first [`REASONS`] distinct reasons; the rest as "other").
    pub failures: BTreeMap<String, u64>,
}

/// Distinct failure reasons kept per kind.
const REASONS: usize = 12;

impl Counts {
    fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Ok => self.ok += 1,
            Outcome::Cut(after) => {
                self.cut += 1;
                if let Some(d) = after {
                    let s = d.as_secs_f64();
                    self.cut_after_min_secs = Some(self.cut_after_min_secs.map_or(s, |m| m.min(s)));
                    self.cut_after_max_secs = Some(self.cut_after_max_secs.map_or(s, |m| m.max(s)));
                }
            }
            Outcome::Throttled => self.throttled += 1,
            Outcome::Failed(why) => {
                self.failed += 1;
                let key = if self.failures.len() < REASONS || self.failures.contains_key(&why) {
                    why
                } else {
                    "other".to_string()
                };
                *self.failures.entry(key).or_default() += 1;
            }
        }
    }
}

/// Counts of every kind, shared by the clients.
#[derive(Debug, Default)]
pub struct Tally(Mutex<BTreeMap<Kind, Counts>>);

impl Tally {
    pub fn add(&self, kind: Kind, o: Outcome) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind)
            .or_default()
            .add(o);
    }

    /// Every kind's counts (kinds that saw nothing as zeros), in [`Kind::ALL`] order.
    pub fn snapshot(&self) -> Vec<(Kind, Counts)> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Kind::ALL
            .iter()
            .map(|k| (*k, map.get(k).cloned().unwrap_or_default()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_outcome_and_keeps_few_reasons() {
        let t = Tally::default();
        t.add(Kind::Idle, Outcome::Cut(Some(Duration::from_secs(3))));
        t.add(Kind::Idle, Outcome::Cut(Some(Duration::from_secs(2))));
        for i in 0..20 {
            t.add(Kind::Chat, Outcome::Failed(format!("status {i}")));
        }
        t.add(Kind::Chat, Outcome::Throttled);
        let s = t.snapshot();
        assert_eq!(s.len(), Kind::ALL.len());
        let idle = &s[6].1;
        assert_eq!((idle.cut, idle.cut_after_min_secs), (2, Some(2.0)));
        assert_eq!(idle.cut_after_max_secs, Some(3.0));
        let chat = &s[0].1;
        assert_eq!((chat.failed, chat.throttled), (20, 1));
        assert_eq!(chat.failures.len(), REASONS + 1);
        assert_eq!(chat.failures["other"], 8);
    }
}
