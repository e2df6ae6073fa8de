//! The background task: publishes health changes every [`EVENT_TICK`], and every
//! [`SYNC_EVERY`] publishes this instance's load and applies the others' (and the health
//! records) to the core. The router lock is taken only to copy figures out and apply them,
//! never across a Redis call.
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use spillway_core::{DeploymentEvent, DeploymentIx, Load, Router};

use super::lua::{Change, Synced};
use super::{EVENT_TICK, LIVE_TTL, SYNC_EVERY, SharedDeployments, local_only, lock};
use crate::state::RouterCell;

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
    loop {
        tick.tick().await;
        let Some(cell) = router.upgrade() else {
            return;
        };
        if !sd.link.is_up() {
            // Local only: forget the others' load once, and drop events nobody can publish.
            let mut c = lock(&cell);
            if !local {
                local_only(&mut c.router);
                local = true;
            }
            c.router.take_events();
            continue;
        }
        let generation = sd.link.generation();
        let changes = {
            let mut c = lock(&cell);
            let t = now();
            if published == Some(generation) {
                c.router
                    .take_events()
                    .into_iter()
                    .filter_map(|e| change_of(e, t))
                    .collect()
            } else {
                // (Re)connected: what the core knows now supersedes the events.
                c.router.take_events();
                running(&mut c.router, t)
            }
        };
        if !publish(&sd, changes).await {
            continue;
        }
        published = Some(generation);
        if Instant::now() < next_sync {
            continue;
        }
        next_sync = Instant::now() + SYNC_EVERY;
        if sync(&sd, &cell, &now).await {
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
        match r {
            Ok(s) => apply(&mut c.router, DeploymentIx(i as u32), s, issued, now()),
            Err(_) => all = false,
        }
    }
    all
}

/// Apply one deployment's sync answer. `issued`: when it was asked for (the answer describes
/// Redis at some instant after it); `now`: after the answer arrived.
fn apply(router: &mut Router, d: DeploymentIx, s: Synced, issued: Duration, now: Duration) {
    router.set_remote_load(d, s.remote);
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
            router.eject_until(d, until, issued);
        }
    }
    if s.cool_left_ms > 0 {
        router.cool_until(d, issued + Duration::from_millis(s.cool_left_ms));
    }
    if let Some(ago) = s.cleared_ago_ms {
        // The recovery happened no earlier than this in our clock.
        router.end_ejection(d, issued.saturating_sub(Duration::from_millis(ago)));
    }
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

/// Every ejection and cooldown running in the core, as changes to (re)publish.
fn running(router: &mut Router, t: Duration) -> Vec<(DeploymentIx, Change)> {
    let mut out = Vec::new();
    for i in 0..router.deployment_count() {
        let d = DeploymentIx(i as u32);
        let view = router.view(d, t);
        if let Some(until) = view.ejected_until {
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
            running(&mut r, ms(100)),
            [
                (D, Change::Eject { ms: 900 }),
                (D, Change::Cool { ms: 300 })
            ]
        );
    }
}
