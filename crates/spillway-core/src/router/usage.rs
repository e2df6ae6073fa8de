//! A deployment's usage over the last minute ([`UsageWindow`]), which the remote limits of
//! the shared state are checked against.
use std::time::Duration;

/// Requests and tokens per second over the last 60 s: 60 one-second slots and running totals.
/// Late adjustments (a settle to the actual tokens, a refund) land in the current slot, so a
/// slot may be negative; the totals are reported clamped at zero.
#[derive(Debug, Clone)]
pub(super) struct UsageWindow {
    slots: [(i64, i64); 60],
    /// The second (since the epoch of `now`) the newest slot stands for.
    head: u64,
    totals: (i64, i64),
}

impl Default for UsageWindow {
    fn default() -> Self {
        UsageWindow {
            slots: [(0, 0); 60],
            head: 0,
            totals: (0, 0),
        }
    }
}

impl UsageWindow {
    /// Forget the slots older than 60 s.
    fn advance(&mut self, now: Duration) {
        let sec = now.as_secs();
        if sec <= self.head {
            return;
        }
        for s in (self.head + 1..=sec).take(60) {
            let slot = &mut self.slots[(s % 60) as usize];
            self.totals.0 -= slot.0;
            self.totals.1 -= slot.1;
            *slot = (0, 0);
        }
        self.head = sec;
    }

    /// Add (or, negative, take back) requests and tokens now.
    pub(super) fn add(&mut self, requests: i64, tokens: i64, now: Duration) {
        self.advance(now);
        let slot = &mut self.slots[(self.head % 60) as usize];
        slot.0 = slot.0.saturating_add(requests);
        slot.1 = slot.1.saturating_add(tokens);
        self.totals.0 = self.totals.0.saturating_add(requests);
        self.totals.1 = self.totals.1.saturating_add(tokens);
    }

    /// (requests, tokens) over the last 60 s.
    pub(super) fn totals(&mut self, now: Duration) -> (u64, u64) {
        self.advance(now);
        let clamp = |v: i64| u64::try_from(v).unwrap_or(0);
        (clamp(self.totals.0), clamp(self.totals.1))
    }
}

/// Tokens as a signed adjustment.
pub(super) fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
