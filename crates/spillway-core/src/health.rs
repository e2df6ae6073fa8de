//! Health state machine per deployment: a circuit breaker with exponential back-off.
//!
//! ```text
//!            failure_threshold consecutive failures
//!   Closed ─────────────────────────────────────────▶ Open { until = now + ejection }
//!     ▲                                                 │ now >= until
//!     │ probe succeeds                                  ▼
//!     │ (ejection reset to base)                     HalfOpen: one probe may go
//!     └─────────────────────────────────────────────── │ probe fails
//!                                                       ▼
//!                                   Open { until = now + min(2 × ejection, max_ejection) }
//! ```
//!
//! An ejected deployment is skipped by the router, so a dead region costs at most
//! `failure_threshold` failed attempts per ejection period instead of one per request. After the
//! ejection one request — the probe — is let through; until it finishes nothing else is. A
//! region that keeps failing is probed ever more rarely (the back-off doubles up to
//! `max_ejection`), and one that recovers is back in full service after a single good probe.
//!
//! The transition from Open to HalfOpen is lazy: it is decided by comparing `now` with the end
//! of the ejection, so no timer is needed. Outcomes of requests that were already in flight when
//! the circuit opened ("stragglers") do not move an ejection that is still running.
//!
//! # Ejections learned from other gateway instances
//!
//! With shared state, an ejection decided by another instance reaches this one as
//! [`Health::eject_until`]: the circuit opens until the same instant (an ejection that already
//! runs longer is kept), and the half-open probe then happens locally, as for an ejection of our
//! own. The remaining length seeds the back-off, so a probe that fails here doubles from it. A
//! recovery seen elsewhere (another instance's probe succeeded) arrives as
//! [`Health::end_ejection`], which closes the circuit only if its ejection began before the
//! news was asked for: an ejection this instance decided afterwards is newer evidence and stays.
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Consecutive failures that eject a deployment (open the circuit).
    pub failure_threshold: u32,
    /// First ejection length; doubles on each failed half-open probe, up to `max_ejection`.
    pub base_ejection: Duration,
    pub max_ejection: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    /// Ejected until `until`; from then on half-open with the probe slot free.
    Open {
        until: Duration,
    },
    /// Half-open with the probe in flight.
    Probing,
}

/// Closed (serving) → Open (ejected until t) → HalfOpen (one probe in flight) → Closed | Open.
#[derive(Debug, Clone)]
pub struct Health {
    state: State,
    /// Length of the last ejection; `None` when the next ejection is the base one.
    ejection: Option<Duration>,
    /// When the current (or last) ejection began.
    ejected_at: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    pub fn new() -> Self {
        Health {
            state: State::Closed { failures: 0 },
            ejection: None,
            ejected_at: Duration::ZERO,
        }
    }

    /// May a request be sent now? In half-open, true only while no probe is in flight.
    pub fn is_available(&self, now: Duration) -> bool {
        match self.state {
            State::Closed { .. } => true,
            State::Open { until } => now >= until,
            State::Probing => false,
        }
    }

    /// Is the circuit closed (serving normally, neither ejected nor probing)?
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed { .. })
    }

    /// Is a half-open probe in flight?
    pub fn is_probing(&self) -> bool {
        self.state == State::Probing
    }

    /// Called when a request is actually sent (marks the half-open probe as taken).
    pub fn on_attempt(&mut self, now: Duration) {
        if matches!(self.state, State::Open { until } if now >= until) {
            self.state = State::Probing;
        }
    }

    pub fn on_success(&mut self, now: Duration) {
        match self.state {
            // A straggler's success does not cut a running ejection short.
            State::Open { until } if now < until => {}
            _ => {
                self.state = State::Closed { failures: 0 };
                self.ejection = None;
            }
        }
    }

    pub fn on_failure(&mut self, cfg: &HealthConfig, now: Duration) {
        let base = cfg.base_ejection.min(cfg.max_ejection);
        match self.state {
            State::Closed { failures } => {
                let failures = failures.saturating_add(1);
                if failures >= cfg.failure_threshold.max(1) {
                    self.eject(base, now);
                } else {
                    self.state = State::Closed { failures };
                }
            }
            // A straggler's failure does not extend a running ejection.
            State::Open { until } if now < until => {}
            // The probe (or a request in the half-open window) failed: back off.
            State::Open { .. } | State::Probing => {
                let next = self
                    .ejection
                    .map_or(base, |e| e.saturating_mul(2))
                    .min(cfg.max_ejection);
                self.eject(next, now);
            }
        }
    }

    /// The attempt ended with no verdict on the deployment (client error, client went away):
    /// a half-open probe slot it held is freed so another request can probe.
    pub fn on_neutral(&mut self, now: Duration) {
        if self.state == State::Probing {
            self.state = State::Open { until: now };
        }
    }

    /// Until when the deployment is ejected, if it is.
    pub fn ejected_until(&self, now: Duration) -> Option<Duration> {
        match self.state {
            State::Open { until } if now < until => Some(until),
            _ => None,
        }
    }

    /// Another instance ejected the deployment until `until`: open the circuit until then
    /// unless it is already open at least that long. Returns whether anything changed.
    pub fn eject_until(&mut self, until: Duration, now: Duration) -> bool {
        if until <= now || matches!(self.state, State::Open { until: u } if u >= until) {
            return false;
        }
        let length = until - now;
        self.ejection = Some(self.ejection.map_or(length, |e| e.max(length)));
        self.ejected_at = now;
        self.state = State::Open { until };
        true
    }

    /// Another instance's probe succeeded: close the circuit if it is open or probing and its
    /// ejection began at or before `ejected_before` (when the news was asked for). Returns
    /// whether anything changed.
    pub fn end_ejection(&mut self, ejected_before: Duration) -> bool {
        if self.is_closed() || self.ejected_at > ejected_before {
            return false;
        }
        self.state = State::Closed { failures: 0 };
        self.ejection = None;
        true
    }

    fn eject(&mut self, length: Duration, now: Duration) {
        self.ejection = Some(length);
        self.ejected_at = now;
        self.state = State::Open {
            until: now.saturating_add(length),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> HealthConfig {
        HealthConfig {
            failure_threshold: 3,
            base_ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(5),
        }
    }

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn ejects_after_threshold_consecutive_failures() {
        let mut h = Health::default();
        h.on_failure(&cfg(), s(0));
        h.on_failure(&cfg(), s(0));
        h.on_success(s(0)); // resets the count
        h.on_failure(&cfg(), s(0));
        h.on_failure(&cfg(), s(0));
        assert!(h.is_available(s(0)) && h.is_closed());
        h.on_failure(&cfg(), s(10));
        assert!(!h.is_available(s(10)));
        assert_eq!(h.ejected_until(s(10)), Some(s(11)));
        assert_eq!(h.ejected_until(s(11)), None);
    }

    #[test]
    fn half_open_lets_one_probe_through_and_backs_off() {
        let c = cfg();
        let mut h = Health::new();
        for _ in 0..3 {
            h.on_failure(&c, s(0));
        }
        assert!(!h.is_available(s(0)));
        assert!(h.is_available(s(1)));
        h.on_attempt(s(1));
        assert!(h.is_probing());
        assert!(!h.is_available(s(1)), "only one probe at a time");
        h.on_failure(&c, s(1));
        assert_eq!(h.ejected_until(s(1)), Some(s(3)), "doubled to 2 s");
        h.on_attempt(s(3));
        h.on_failure(&c, s(3));
        assert_eq!(h.ejected_until(s(3)), Some(s(7)), "doubled to 4 s");
        h.on_attempt(s(7));
        h.on_failure(&c, s(7));
        assert_eq!(h.ejected_until(s(7)), Some(s(12)), "capped at 5 s");
        h.on_attempt(s(12));
        h.on_success(s(12));
        assert!(h.is_closed() && h.is_available(s(12)));
        // Back to the base ejection after recovery.
        for _ in 0..3 {
            h.on_failure(&c, s(20));
        }
        assert_eq!(h.ejected_until(s(20)), Some(s(21)));
    }

    #[test]
    fn stragglers_do_not_move_a_running_ejection() {
        let c = cfg();
        let mut h = Health::new();
        for _ in 0..3 {
            h.on_failure(&c, s(0));
        }
        h.on_failure(&c, s(0));
        h.on_success(s(0));
        assert_eq!(h.ejected_until(s(0)), Some(s(1)));
    }

    #[test]
    fn neutral_outcome_frees_the_probe() {
        let c = cfg();
        let mut h = Health::new();
        for _ in 0..3 {
            h.on_failure(&c, s(0));
        }
        h.on_attempt(s(2));
        assert!(!h.is_available(s(2)));
        h.on_neutral(s(2));
        assert!(h.is_available(s(2)));
        assert_eq!(h.ejected_until(s(2)), None);
        // The next probe failing still backs off from the last ejection.
        h.on_attempt(s(2));
        h.on_failure(&c, s(2));
        assert_eq!(h.ejected_until(s(2)), Some(s(4)));
    }

    #[test]
    fn remote_ejection_opens_until_the_same_instant_and_probes_locally() {
        let c = cfg();
        let mut h = Health::new();
        assert!(!h.eject_until(s(1), s(1)), "already over");
        assert!(h.eject_until(s(4), s(1)));
        assert_eq!(h.ejected_until(s(1)), Some(s(4)));
        assert!(
            !h.eject_until(s(3), s(2)),
            "a shorter one does not shorten it"
        );
        assert!(h.eject_until(s(5), s(2)), "a longer one extends it");
        assert_eq!(h.ejected_until(s(2)), Some(s(5)));
        // Half-open locally at the same instant; a failed probe backs off from the 3 s learned.
        assert!(h.is_available(s(5)));
        h.on_attempt(s(5));
        assert!(h.is_probing());
        h.on_failure(&c, s(5));
        assert_eq!(h.ejected_until(s(5)), Some(s(10)), "min(2 x 3 s, max 5 s)");
    }

    #[test]
    fn remote_recovery_closes_only_older_ejections() {
        let c = cfg();
        let mut h = Health::new();
        assert!(!h.end_ejection(s(9)), "closed: nothing to end");
        for _ in 0..3 {
            h.on_failure(&c, s(2));
        }
        assert!(
            !h.end_ejection(s(1)),
            "ejected after the news was asked for"
        );
        assert_eq!(h.ejected_until(s(2)), Some(s(3)));
        assert!(h.end_ejection(s(2)));
        assert!(h.is_closed() && h.is_available(s(2)));
        // The back-off starts over: the next ejection is the base one.
        for _ in 0..3 {
            h.on_failure(&c, s(4));
        }
        assert_eq!(h.ejected_until(s(4)), Some(s(5)));
        // A probe in flight is ended too.
        h.on_attempt(s(5));
        assert!(h.end_ejection(s(5)) && h.is_closed());
    }

    #[test]
    fn zero_threshold_behaves_as_one() {
        let c = HealthConfig {
            failure_threshold: 0,
            ..cfg()
        };
        let mut h = Health::new();
        h.on_failure(&c, s(0));
        assert!(!h.is_available(s(0)));
    }
}
