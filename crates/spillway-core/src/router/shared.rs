//! Deployment state shared by several gateway instances, sans-IO.
//!
//! Each gateway instance keeps its own [`Router`]. When instances share a store (the gateway's
//! `[state] kind = "redis"`), a background task of each instance exchanges three things with
//! the others, and the router offers one method per direction:
//!
//! * **Load out** — [`Router::local_load`]: this instance's requests in flight on a deployment
//!   and its requests and tokens over the last 60 s (a sliding window of one-second slots; the
//!   tokens are settled to the actual usage when an attempt ends).
//! * **Load in** — [`Router::set_remote_load`]: the sum of the *other* instances' [`Load`]. The
//!   admission and the planner then see the global figures: a deployment has in-flight headroom
//!   while `local + remote < limit`, RPM/TPM headroom while `local window + remote window + need
//!   <= limit` (and its local bucket has room), and the expected-TTFT score counts the global
//!   utilisation. Remote load is as fresh as the last sync: the bound is eventually consistent,
//!   and what it can be exceeded by is written down by the gateway, which knows the sync period.
//! * **Health out** — with [`Router::record_events`] on, [`Router::release`] records a
//!   [`DeploymentEvent`] whenever an outcome ejects a deployment, starts a cooldown (an upstream
//!   429) or ends an ejection (a half-open probe succeeded); [`Router::take_events`] hands them
//!   to the gateway to publish. Changes learned from other instances record nothing (no echo).
//! * **Health in** — [`Router::eject_until`] and [`Router::cool_until`] apply another instance's
//!   ejection or cooldown until the same instant (the half-open probe then happens locally), and
//!   [`Router::end_ejection`] applies another instance's recovery to ejections that began
//!   before the news was asked for (see [`Health::end_ejection`](crate::Health::end_ejection)).
//!
//! Without a store none of this is called: remote load stays zero and the router behaves
//! exactly as a single instance.
use std::time::Duration;

use super::deployment::Deployment;
use super::{DeploymentIx, Router};

/// Recorded events beyond this many (nobody takes them) are dropped.
const MAX_EVENTS: usize = 4096;

/// Requests in flight on a deployment and its usage over the last 60 s: one instance's own
/// ([`Router::local_load`]) or the sum over the other instances ([`Router::set_remote_load`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    pub in_flight: u32,
    /// Requests admitted in the last 60 s.
    pub requests: u64,
    /// Tokens used (estimated while in flight, actual once settled) in the last 60 s.
    pub tokens: u64,
}

/// A health change decided by this instance, for the other instances to learn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentEvent {
    /// The circuit opened (or a failed probe re-opened it) until `until`.
    Ejected {
        deployment: DeploymentIx,
        until: Duration,
    },
    /// An upstream 429: nothing is to be sent before `until`.
    CoolingDown {
        deployment: DeploymentIx,
        until: Duration,
    },
    /// The deployment is back in service (a half-open probe succeeded).
    Recovered { deployment: DeploymentIx },
}

impl Router {
    /// Record [`DeploymentEvent`]s from now on (`false`: stop, and drop what was recorded).
    pub fn record_events(&mut self, on: bool) {
        self.events = on.then(|| self.events.take().unwrap_or_default());
    }

    /// The events recorded since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<DeploymentEvent> {
        self.events.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// This instance's own load on `d`: in flight now, requests and tokens over the last 60 s.
    pub fn local_load(&mut self, d: DeploymentIx, now: Duration) -> Load {
        let Some(d) = self.deployments.get_mut(d.0 as usize) else {
            return Load::default();
        };
        let (requests, tokens) = d.window.totals(now);
        Load {
            in_flight: d.in_flight,
            requests,
            tokens,
        }
    }

    /// The other instances' load on `d` (replaces the previous figure; zero: local only).
    pub fn set_remote_load(&mut self, d: DeploymentIx, load: Load) {
        if let Some(d) = self.deployments.get_mut(d.0 as usize) {
            d.remote = load;
        }
    }

    /// The other instances' load on `d`, as last set.
    pub fn remote_load(&self, d: DeploymentIx) -> Load {
        self.deployments
            .get(d.0 as usize)
            .map_or(Load::default(), |d| d.remote)
    }

    /// Another instance ejected `d` until `until`; true if this changed our state.
    pub fn eject_until(&mut self, d: DeploymentIx, until: Duration, now: Duration) -> bool {
        self.deployments
            .get_mut(d.0 as usize)
            .is_some_and(|d| d.health.eject_until(until, now))
    }

    /// Another instance was told to cool down on `d` until `until`; true if this extended ours.
    pub fn cool_until(&mut self, d: DeploymentIx, until: Duration) -> bool {
        match self.deployments.get_mut(d.0 as usize) {
            Some(d) if until > d.cooldown_until => {
                d.cooldown_until = until;
                true
            }
            _ => false,
        }
    }

    /// Another instance saw `d` recover: end our ejection of it if it began at or before
    /// `ejected_before`; true if this changed our state.
    pub fn end_ejection(&mut self, d: DeploymentIx, ejected_before: Duration) -> bool {
        self.deployments
            .get_mut(d.0 as usize)
            .is_some_and(|d| d.health.end_ejection(ejected_before))
    }
}

/// After a release: record what changed in `d` since `before` (closed, ejected until,
/// cooldown until).
pub(super) fn note(
    events: &mut Vec<DeploymentEvent>,
    deployment: DeploymentIx,
    d: &Deployment,
    before: (bool, Option<Duration>, Duration),
    now: Duration,
) {
    let (was_closed, was_ejected, was_cooling) = before;
    let mut push = |e| {
        if events.len() < MAX_EVENTS {
            events.push(e);
        }
    };
    let ejected = d.health.ejected_until(now);
    if let Some(until) = ejected
        && ejected != was_ejected
    {
        push(DeploymentEvent::Ejected { deployment, until });
    }
    if d.cooldown_until > was_cooling && d.cooldown_until > now {
        push(DeploymentEvent::CoolingDown {
            deployment,
            until: d.cooldown_until,
        });
    }
    if !was_closed && d.health.is_closed() {
        push(DeploymentEvent::Recovered { deployment });
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn router(max_in_flight: u32, rpm: Option<u32>, tpm: Option<u64>) -> Router {
        let spec = |r| DeploymentSpec {
            region: RegionIx(r),
            max_in_flight,
            rpm,
            tpm,
        };
        Router::new(RouterConfig::default(), vec![spec(0), spec(1)])
    }

    const D0: DeploymentIx = DeploymentIx(0);
    const CANDIDATES: [Candidate; 2] = [
        Candidate {
            deployment: DeploymentIx(0),
            region: RegionIx(0),
            rtt: Duration::from_millis(1),
        },
        Candidate {
            deployment: DeploymentIx(1),
            region: RegionIx(1),
            rtt: Duration::from_millis(20),
        },
    ];

    fn first_step(r: &mut Router, now: Duration) -> Option<Step> {
        let req = RouteRequest {
            source: RegionIx(0),
            candidates: &CANDIDATES,
            est_tokens: 10,
            input_tokens: 0,
            prefix: crate::Prefix::NONE,
        };
        r.plan(&req, now, &mut SmallRng::seed_from_u64(1))
            .steps
            .first()
            .copied()
    }

    fn success(tokens: u64) -> Outcome {
        Outcome::Success {
            ttft: ms(50),
            tpot: None,
            tokens,
        }
    }

    #[test]
    fn remote_in_flight_counts_against_the_limit() {
        let mut r = router(4, None, None);
        let now = Duration::ZERO;
        r.set_remote_load(
            D0,
            Load {
                in_flight: 3,
                ..Load::default()
            },
        );
        assert_eq!(r.remote_load(D0).in_flight, 3);
        let a = r.try_acquire(D0, 10, now).unwrap();
        assert_eq!(r.try_acquire(D0, 10, now).unwrap_err(), Rejection::InFlight);
        // The planner spills for capacity, as if the other instances' requests were ours.
        let step = first_step(&mut r, now).unwrap();
        assert_eq!(
            (step.deployment, step.reason),
            (DeploymentIx(1), Reason::SpillCapacity)
        );
        r.set_remote_load(D0, Load::default());
        assert_eq!(first_step(&mut r, now).unwrap().reason, Reason::Local);
        r.release(a, success(10), now);
        assert_eq!(r.local_load(D0, now).in_flight, 0);
    }

    #[test]
    fn remote_usage_counts_against_rpm_and_tpm_over_the_window() {
        let mut r = router(100, Some(10), Some(1_000));
        let mut now = Duration::ZERO;
        for _ in 0..4 {
            let a = r.try_acquire(D0, 100, now).unwrap();
            r.release(a, success(40), now);
        }
        assert_eq!(
            r.local_load(D0, now),
            Load {
                in_flight: 0,
                requests: 4,
                tokens: 160
            },
            "tokens settled to the actual usage"
        );
        // 4 here + 5 elsewhere + 1 = 10 requests: one more fits, then RPM is out.
        let remote = Load {
            in_flight: 0,
            requests: 5,
            tokens: 0,
        };
        r.set_remote_load(D0, remote);
        let a = r.try_acquire(D0, 100, now).unwrap();
        r.release(a, Outcome::Failure(FailureKind::Connect), now);
        assert_eq!(r.try_acquire(D0, 100, now).unwrap_err(), Rejection::Rpm);
        // Tokens: 160 here + 700 elsewhere; 140 more fit, 141 do not.
        r.set_remote_load(
            D0,
            Load {
                tokens: 700,
                ..Load::default()
            },
        );
        assert_eq!(r.try_acquire(D0, 141, now).unwrap_err(), Rejection::Tpm);
        let a = r.try_acquire(D0, 140, now).unwrap();
        r.release(a, success(140), now);
        // A minute later the local window is empty again.
        now += Duration::from_secs(61);
        assert_eq!(r.local_load(D0, now), Load::default());
        r.set_remote_load(D0, remote);
        assert!(r.try_acquire(D0, 100, now).is_ok());
    }

    #[test]
    fn events_report_ejections_cooldowns_and_recoveries() {
        let mut r = router(8, None, None);
        let now = Duration::ZERO;
        let fail = |r: &mut Router, kind, now| {
            let a = r.try_acquire(D0, 1, now).unwrap();
            r.release(a, Outcome::Failure(kind), now);
        };
        fail(&mut r, FailureKind::Connect, now);
        assert!(r.take_events().is_empty(), "not recorded unless asked for");
        r.record_events(true);
        fail(&mut r, FailureKind::Connect, now);
        fail(&mut r, FailureKind::Connect, now);
        let until = now + Duration::from_secs(1);
        assert_eq!(
            r.take_events(),
            [DeploymentEvent::Ejected {
                deployment: D0,
                until
            }]
        );
        assert!(r.take_events().is_empty());
        // Probe at the end of the ejection: throttled, so a cooldown and a longer ejection.
        fail(
            &mut r,
            FailureKind::Throttled {
                retry_after: Some(ms(500)),
            },
            until,
        );
        assert_eq!(
            r.take_events(),
            [
                DeploymentEvent::Ejected {
                    deployment: D0,
                    until: until + Duration::from_secs(2)
                },
                DeploymentEvent::CoolingDown {
                    deployment: D0,
                    until: until + ms(500)
                }
            ]
        );
        let later = until + Duration::from_secs(2);
        let a = r.try_acquire(D0, 1, later).unwrap();
        r.release(a, success(1), later);
        assert_eq!(
            r.take_events(),
            [DeploymentEvent::Recovered { deployment: D0 }]
        );
        r.record_events(false);
        fail(&mut r, FailureKind::Connect, later);
        assert!(r.take_events().is_empty());
    }

    #[test]
    fn learned_ejections_and_recoveries_apply_without_echo() {
        let mut r = router(8, None, None);
        r.record_events(true);
        let now = ms(100);
        assert!(r.eject_until(D0, now + ms(700), now));
        assert!(!r.eject_until(D0, now + ms(300), now), "no shortening");
        let step = first_step(&mut r, now).unwrap();
        assert_eq!(
            (step.deployment, step.reason),
            (DeploymentIx(1), Reason::SpillUnhealthy)
        );
        assert_eq!(r.view(D0, now).ejected_until, Some(now + ms(700)));
        // A recovery asked for before the ejection began does not end it; a later one does.
        assert!(!r.end_ejection(D0, ms(50)));
        assert!(r.end_ejection(D0, now));
        assert_eq!(first_step(&mut r, now).unwrap().reason, Reason::Local);
        // Cooldowns only ever extend.
        assert!(r.cool_until(D0, now + ms(400)));
        assert!(!r.cool_until(D0, now + ms(200)));
        assert_eq!(r.view(D0, now).cooldown_until, Some(now + ms(400)));
        assert_eq!(
            first_step(&mut r, now).unwrap().reason,
            Reason::SpillUnhealthy
        );
        assert!(r.take_events().is_empty(), "learned changes are not echoed");
        // Unknown deployments are ignored.
        let nowhere = DeploymentIx(9);
        assert!(!r.eject_until(nowhere, now + ms(1), now));
        assert!(!r.cool_until(nowhere, now + ms(1)));
        assert!(!r.end_ejection(nowhere, now));
        r.set_remote_load(nowhere, Load::default());
        assert_eq!(r.local_load(nowhere, now), Load::default());
    }
}
