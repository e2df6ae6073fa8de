//! The background task: publishes health changes every [`EVENT_TICK`], and every
//! [`SYNC_EVERY`] publishes this instance's load and applies the others' (and the health
//! records) to the core. The router lock is taken only to copy figures out and apply them,
//! never across a Redis call.
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use spillway_core::{DeploymentEvent, DeploymentIx, Load, Router};

use super::lua::{Change, Synced};
use super::{EVENT_TICK, LIVE_TTL, SYNC_EVERY, SharedDeployments, local_only, lock};
use crate::state::routing::RouterCell;

/// A learned ejection that ends within this of what the core already has is the same one
/// (ours, read back with the latency of two calls): applying it would restart a probe.
const SLACK: Duration = Duration::from_millis(50);

pub(super) async fn background(
    sd: Arc<SharedDeployments>,
    router: Weak<Mutex<RouterCell>>,
    epoch: Instant,
) {
    let now = move || epoch.elapsed();
    let mut tick = tokio::time::interval(EVENT_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_sync = Instant::now();
    // The link generation the core's health was last published under.
    let mut published: Option<u64> = None;
    let mut local = false;
    // Per deployment: when the core last recorded a recovery not yet published (`None` once an
    // ejection follows it), republished when the link comes back.
    let mut recovered: Vec<Option<Duration>> = Vec::new();
    // Per deployment: the end of the last ejection learned from another instance, which that
    // instance republishes itself (re-dating it here would outlive a recovery seen there).
    let mut learned: Vec<Option<Duration>> = Vec::new();
    loop {
        tick.tick().await;
        let Some(cell) = router.upgrade() else {
            return;
        };
        if !sd.link.is_up() {
            // Local only: forget the others' load once; events cannot be published, but a
            // recovery is remembered, to republish on return.
            let mut c = lock(&cell);
            if !local {
                local_only(&sd, &mut c.router);
                local = true;
            }
            let t = now();
            for e in c.router.take_events() {
                note(&mut recovered, e, t);
            }
            continue;
        }
        let generation = sd.link.generation();
        let changes = {
            let mut c = lock(&cell);
            let t = now();
            let events = c.router.take_events();
            for e in &events {
                note(&mut recovered, *e, t);
            }
            if published == Some(generation) {
                events.into_iter().filter_map(|e| change_of(e, t)).collect()
            } else {
                // (Re)connected: what the core knows now supersedes the events.
                let mut all = running(&mut c.router, &learned, t);
                all.extend(recoveries(&mut c.router, &recovered, t));
                all
            }
        };
        if !publish(&sd, changes).await {
            continue;
        }
        recovered.iter_mut().for_each(|r| *r = None);
        published = Some(generation);
        if Instant::now() < next_sync {
            continue;
        }
        next_sync = Instant::now() + SYNC_EVERY;
        if sync(&sd, &cell, &now, &mut learned).await {
            local = false;
        }
    }
}

/// Publish health changes, in order; false if Redis did not take them all.
async fn publish(sd: &SharedDeployments, changes: Vec<(DeploymentIx, Change)>) -> bool {
    for (d, change) in changes {
        let Some(keys) = sd.keys(d) else { continue };
        let scripts = &sd.scripts;
        let done = sd
            .link
            .call(async |c| scripts.publish(c, &keys.health, change).await)
            .await;
        if done.is_err() {
            return false;
        }
    }
    true
}

/// Publish this instance's load on every deployment and apply what the others published;
/// true if every deployment synced.
async fn sync(
    sd: &SharedDeployments,
    cell: &Mutex<RouterCell>,
    now: &(dyn Fn() -> Duration + Sync),
    learned: &mut Vec<Option<Duration>>,
) -> bool {
    let issued = now();
    let loads: Vec<Load> = {
        let mut c = lock(cell);
        (0..c.router.deployment_count())
            .map(|d| c.router.local_load(DeploymentIx(d as u32), issued))
            .collect()
    };
    let ttl = u64::try_from(LIVE_TTL.as_millis()).unwrap_or(u64::MAX);
    let calls = loads.iter().zip(&sd.keys).map(|(own, keys)| {
        let (scripts, instance) = (&sd.scripts, sd.instance.as_str());
        sd.link
            .call(async move |c| scripts.sync(c, keys, instance, ttl, *own).await)
    });
    let results = futures_util::future::join_all(calls).await;
    let mut c = lock(cell);
    let mut all = true;
    for (i, r) in results.into_iter().enumerate() {
        let d = DeploymentIx(i as u32);
        match r {
            Ok(s) => {
                sd.show_remote_in_flight(d, s.remote.in_flight);
                if apply(&mut c.router, d, s, issued, now()) {
                    sd.count_learned_ejection(d);
                    if learned.len() <= i {
                        learned.resize(i + 1, None);
                    }
                    learned[i] = c.router.view(d, now()).ejected_until;
                }
            }
            Err(_) => all = false,
        }
    }
    all
}

/// Apply one deployment's sync answer. `issued`: when it was asked for (the answer describes
/// Redis at some instant after it); `now`: after the answer arrived. True if it applied an
/// ejection the core did not have (learned from another instance).
fn apply(router: &mut Router, d: DeploymentIx, s: Synced, issued: Duration, now: Duration) -> bool {
    router.set_remote_load(d, s.remote);
    let mut learned = false;
    if s.eject_left_ms > 0 {
        // A lower bound of the end in our clock: never longer than it was decided.
        let until = issued + Duration::from_millis(s.eject_left_ms);
        let view = router.view(d, now);
        let known = match view.ejected_until {
            Some(u) => u + SLACK >= until,
            // Half-open (probing, or free to probe) right at the end of the same ejection.
            None => !view.healthy && until <= now + SLACK,
        };
        if !known {
            learned = router.eject_until(d, until, issued);
        }
    }
    if s.cool_left_ms > 0 {
        router.cool_until(d, issued + Duration::from_millis(s.cool_left_ms));
    }
    if let Some(ago) = s.cleared_ago_ms {
        // The recovery happened no earlier than this in our clock.
        router.end_ejection(d, issued.saturating_sub(Duration::from_millis(ago)));
    }
    learned
}

/// Remember when `d` last recovered (`t`: the core's clock when the event was taken); a later
/// ejection forgets it.
fn note(recovered: &mut Vec<Option<Duration>>, e: DeploymentEvent, t: Duration) {
    let (d, at) = match e {
        DeploymentEvent::Recovered { deployment } => (deployment, Some(t)),
        DeploymentEvent::Ejected { deployment, .. } => (deployment, None),
        DeploymentEvent::CoolingDown { .. } => return,
    };
    let i = d.0 as usize;
    if recovered.len() <= i {
        recovered.resize(i + 1, None);
    }
    recovered[i] = at;
}

/// The recoveries not yet published of deployments still not ejected, as tombstones dated
/// when they happened (republished after a reconnection).
fn recoveries(
    router: &mut Router,
    recovered: &[Option<Duration>],
    t: Duration,
) -> Vec<(DeploymentIx, Change)> {
    let mut out = Vec::new();
    for (i, at) in recovered.iter().enumerate() {
        let (Some(at), d) = (*at, DeploymentIx(i as u32)) else {
            continue;
        };
        if i < router.deployment_count() && router.view(d, t).ejected_until.is_none() {
            let ago_ms = u64::try_from(t.saturating_sub(at).as_millis()).unwrap_or(u64::MAX);
            out.push((d, Change::Recovered { ago_ms }));
        }
    }
    out
}

/// A recorded event as a change to publish (`t`: the core's clock now).
fn change_of(e: DeploymentEvent, t: Duration) -> Option<(DeploymentIx, Change)> {
    let left = |until: Duration| {
        let ms = u64::try_from(until.saturating_sub(t).as_millis()).unwrap_or(u64::MAX);
        (ms > 0).then_some(ms)
    };
    match e {
        DeploymentEvent::Ejected { deployment, until } => {
            left(until).map(|ms| (deployment, Change::Eject { ms }))
        }
        DeploymentEvent::CoolingDown { deployment, until } => {
            left(until).map(|ms| (deployment, Change::Cool { ms }))
        }
        DeploymentEvent::Recovered { deployment } => Some((deployment, Change::Clear)),
    }
}

/// Every ejection and cooldown running in the core, as changes to (re)publish, but for the
/// ejections learned from other instances (`learned`: their ends, per deployment).
fn running(
    router: &mut Router,
    learned: &[Option<Duration>],
    t: Duration,
) -> Vec<(DeploymentIx, Change)> {
    let mut out = Vec::new();
    for i in 0..router.deployment_count() {
        let d = DeploymentIx(i as u32);
        let view = router.view(d, t);
        if let Some(until) = view.ejected_until
            && learned.get(i).copied().flatten() != Some(until)
        {
            out.extend(change_of(
                DeploymentEvent::Ejected {
                    deployment: d,
                    until,
                },
                t,
            ));
        }
        if let Some(until) = view.cooldown_until {
            out.extend(change_of(
                DeploymentEvent::CoolingDown {
                    deployment: d,
                    until,
                },
                t,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_core::{DeploymentSpec, FailureKind, Outcome, RegionIx, RouterConfig};

    const D: DeploymentIx = DeploymentIx(0);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn router() -> Router {
        let spec = DeploymentSpec {
            region: RegionIx(0),
            max_in_flight: 4,
            rpm: None,
            tpm: None,
        };
        let mut r = Router::new(RouterConfig::default(), vec![spec]);
        r.record_events(true);
        r
    }

    fn synced(eject_left_ms: u64, cleared_ago_ms: Option<u64>) -> Synced {
        Synced {
            remote: Load {
                in_flight: 2,
                requests: 5,
                tokens: 70,
            },
            eject_left_ms,
            cool_left_ms: 0,
            cleared_ago_ms,
        }
    }

    /// Eject `D` by its own failures at `t` (1 s, the base ejection).
    fn fail_three_times(r: &mut Router, t: Duration) {
        for _ in 0..3 {
            let a = r.try_acquire(D, 1, t).unwrap();
            r.release(a, Outcome::Failure(FailureKind::Connect), t);
        }
    }

    #[test]
    fn learned_load_ejection_and_cooldown_apply_from_when_they_were_asked_for() {
        let mut r = router();
        let s = Synced {
            cool_left_ms: 300,
            ..synced(700, None)
        };
        apply(&mut r, D, s, ms(1_000), ms(1_010));
        assert_eq!(r.remote_load(D), s.remote);
        let view = r.view(D, ms(1_010));
        assert_eq!(
            view.ejected_until,
            Some(ms(1_700)),
            "a lower bound: issued + left"
        );
        assert_eq!(view.cooldown_until, Some(ms(1_300)));
        assert!(r.take_events().is_empty(), "not echoed");
    }

    #[test]
    fn our_own_ejection_read_back_is_not_applied_again() {
        let mut r = router();
        fail_three_times(&mut r, ms(0));
        // Read back a few milliseconds longer (two calls' latency): the same ejection.
        apply(&mut r, D, synced(1_020, None), ms(10), ms(12));
        assert_eq!(r.view(D, ms(12)).ejected_until, Some(ms(1_000)));
        // At its end the probe may go, even though Redis still says "ejected" for 20 ms.
        apply(&mut r, D, synced(20, None), ms(1_005), ms(1_006));
        assert_eq!(r.view(D, ms(1_006)).ejected_until, None);
        assert!(r.try_acquire(D, 1, ms(1_006)).is_ok(), "the probe");
    }

    #[test]
    fn recoveries_end_only_ejections_that_began_before_them() {
        let mut r = router();
        fail_three_times(&mut r, ms(500));
        // Cleared 600 ms before a read issued at 1 s: before our ejection began.
        apply(&mut r, D, synced(0, Some(600)), ms(1_000), ms(1_001));
        assert!(r.view(D, ms(1_001)).ejected_until.is_some());
        // Cleared 400 ms before it: after.
        apply(&mut r, D, synced(0, Some(400)), ms(1_000), ms(1_001));
        assert!(r.view(D, ms(1_001)).healthy);
    }

    #[test]
    fn events_become_changes_relative_to_now() {
        let t = ms(1_000);
        let ejected = DeploymentEvent::Ejected {
            deployment: D,
            until: ms(1_250),
        };
        assert_eq!(change_of(ejected, t), Some((D, Change::Eject { ms: 250 })));
        assert_eq!(change_of(ejected, ms(1_250)), None, "already over");
        let cooling = DeploymentEvent::CoolingDown {
            deployment: D,
            until: ms(2_000),
        };
        assert_eq!(change_of(cooling, t), Some((D, Change::Cool { ms: 1_000 })));
        let recovered = DeploymentEvent::Recovered { deployment: D };
        assert_eq!(change_of(recovered, t), Some((D, Change::Clear)));
        // Republishing after a reconnection: what runs in the core.
        let mut r = router();
        fail_three_times(&mut r, ms(0));
        r.cool_until(D, ms(400));
        assert_eq!(
            running(&mut r, &[], ms(100)),
            [
                (D, Change::Eject { ms: 900 }),
                (D, Change::Cool { ms: 300 })
            ]
        );
    }

    #[test]
    fn after_an_outage_recoveries_are_republished_and_learned_ejections_are_not() {
        let mut r = router();
        let mut recovered = Vec::new();
        // Ejected, then recovered at 1.2 s (seen while Redis was down).
        fail_three_times(&mut r, ms(0));
        for e in r.take_events() {
            note(&mut recovered, e, ms(10));
        }
        assert_eq!(recovered, [None]);
        note(
            &mut recovered,
            DeploymentEvent::Recovered { deployment: D },
            ms(1_200),
        );
        assert_eq!(
            recoveries(&mut r, &recovered, ms(1_500)),
            [(D, Change::Recovered { ago_ms: 300 })]
        );
        // Not while ejected again.
        assert!(r.eject_until(D, ms(9_000), ms(1_400)));
        assert!(recoveries(&mut r, &recovered, ms(1_500)).is_empty());
        // That ejection was learned: its decider republishes it, not us.
        assert!(running(&mut r, &[Some(ms(9_000))], ms(1_500)).is_empty());
        assert_eq!(
            running(&mut r, &[], ms(1_500)),
            [(D, Change::Eject { ms: 7_500 })]
        );
    }
}
