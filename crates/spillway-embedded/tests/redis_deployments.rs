//! Deployment load and health shared by several gateway instances through a real
//! `redis-server`: in-flight requests and RPM usage on one instance count on the others, a
//! crashed instance's counts expire, an ejection on one instance is avoided by the others within
//! a second (and a recovery reaches them too), and losing Redis fails nothing and republishes
//! on return. Every test checks from the simulators' own records that no request was served
//! outside its destination set.
mod common;
mod redis_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use redis_support::RedisServer;
use spillway_core::{DeploymentIx, Load};
use spillway_gateway::state::shared_deployments::{LIVE_TTL, SYNC_EVERY};
use spillway_sim::Fault;

/// The profile of `M` in the `us` geography.
fn us_m() -> String {
    format!("us.{M}")
}

/// The standard spec with `M` in us-east-1 limited to `max_in_flight` and `rpm`.
fn spec(max_in_flight: u32, rpm: Option<u32>) -> Spec {
    let mut s = Spec::standard();
    let d = s.dep(M, "us-east-1");
    d.max_in_flight = max_in_flight;
    d.rpm = rpm;
    s
}

/// One gateway instance on the Redis at `url`.
async fn instance(url: &str, spec: Spec) -> Harness {
    let state = format!("[state]\nkind = \"redis\"\nurl = {url:?}\ninstances = 3\n\n");
    Harness::start_with(spec, &state).await
}

fn dep(h: &Harness, region: &str) -> DeploymentIx {
    let cfg = h.gw().config();
    let (m, r) = (cfg.model_ix(M), cfg.region_ix(region));
    m.zip(r)
        .and_then(|(m, r)| cfg.deployment(m, r))
        .expect("deployment")
}

/// The other instances' load on `M` in `region`, as `h`'s core sees it.
fn remote(h: &Harness, region: &str) -> Load {
    h.gw().state().router().router.remote_load(dep(h, region))
}

/// `h`'s own load on `M` in `region`.
fn local(h: &Harness, region: &str) -> Load {
    let state = h.gw().state();
    let now = state.now();
    state.router().router.local_load(dep(h, region), now)
}

fn view(h: &Harness, region: &str) -> spillway_core::DeploymentView {
    let state = h.gw().state();
    let now = state.now();
    state.router().router.view(dep(h, region), now)
}

/// Polls `cond` every 2 ms until it holds; fails after `deadline`. Returns how long it took.
async fn within(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    start.elapsed()
}

/// `h`'s `/metrics` (scraped from its admin listener).
async fn scrape(h: &Harness) -> String {
    h.client
        .get(format!("http://{}/metrics", h.gw().admin_addr()))
        .send()
        .await
        .expect("metrics answer")
        .text()
        .await
        .unwrap_or_default()
}

/// The value of `name{region,model=M}` in `h`'s `/metrics`, if it is there.
async fn metric(h: &Harness, name: &str, region: &str) -> Option<f64> {
    let series = format!("{name}{{region=\"{region}\",model=\"{M}\"}} ");
    let text = scrape(h).await;
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
}

/// Polls `name{region,model=M}` on `h` until `ok` holds; fails after [`DEADLINE`].
async fn metric_until(h: &Harness, name: &str, region: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let start = Instant::now();
    loop {
        let v = metric(h, name, region).await;
        if let Some(v) = v.filter(|v| ok(*v)) {
            return v;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out: {name} for {region} is {v:?}\n{}",
            scrape(h).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn shutdown(hs: Vec<Harness>) {
    for mut h in hs {
        h.assert_residency();
        h.take_gateway().shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_flight_on_one_instance_counts_on_the_others() {
    let redis = RedisServer::start();
    let a = instance(&redis.url(), spec(3, None)).await;
    let b = instance(&redis.url(), spec(3, None)).await;
    let mut holds = Vec::new();
    for _ in 0..3 {
        holds.push(a.hold("us-east-1", M, "us-east-1").await);
    }
    let seen = within("B to see A's 3 in flight", DEADLINE, || {
        remote(&b, "us-east-1").in_flight == 3
    })
    .await;
    println!("B saw A's in-flight requests after {seen:?}");
    assert!(seen < Duration::from_secs(1), "{seen:?}");
    assert_eq!(
        remote(&a, "us-east-1").in_flight,
        0,
        "A does not count itself"
    );
    // The others' in-flight is exported on each instance.
    const REMOTE: &str = "spillway_deployment_remote_in_flight";
    metric_until(&b, REMOTE, "us-east-1", |v| v == 3.0).await;
    metric_until(&a, REMOTE, "us-east-1", |v| v == 0.0).await;
    metric_until(&b, REMOTE, "us-west-2", |v| v == 0.0).await;

    // The global limit is full: B spills a profile call to another region of the profile.
    for _ in 0..4 {
        let r = b.chat("us-east-1", body(&us_m(), 2)).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_ne!(r.region(), Some("us-east-1"), "{r:?}");
        assert_eq!(r.reason(), Some("spill:capacity"), "{r:?}");
    }
    assert!(b.records_in("us-east-1").is_empty(), "B sent nothing there");

    // A's requests end: B serves locally again.
    drop(holds);
    within("A's requests to end and B to see it", DEADLINE, || {
        local(&a, "us-east-1").in_flight == 0 && remote(&b, "us-east-1").in_flight == 0
    })
    .await;
    b.chat("us-east-1", body(&us_m(), 2))
        .await
        .assert_ok_in("us-east-1", "local");
    metric_until(&b, REMOTE, "us-east-1", |v| v == 0.0).await;
    shutdown(vec![a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rpm_usage_on_one_instance_counts_on_the_others() {
    let redis = RedisServer::start();
    let a = instance(&redis.url(), spec(32, Some(6))).await;
    let b = instance(&redis.url(), spec(32, Some(6))).await;
    for _ in 0..4 {
        a.chat("us-east-1", body(M, 2))
            .await
            .assert_ok_in("us-east-1", "local");
    }
    within("B to see A's 4 requests", DEADLINE, || {
        remote(&b, "us-east-1").requests == 4
    })
    .await;
    // 4 at A + 2 at B = the 6 RPM; then both instances are out.
    for _ in 0..2 {
        b.chat("us-east-1", body(M, 2))
            .await
            .assert_ok_in("us-east-1", "local");
    }
    b.chat("us-east-1", body(M, 2)).await.assert_throttled();
    within("A to see B's 2 requests", DEADLINE, || {
        remote(&a, "us-east-1").requests == 2
    })
    .await;
    a.chat("us-east-1", body(M, 2)).await.assert_throttled();
    let r = a.chat("us-east-1", body(&us_m(), 2)).await;
    assert_eq!(
        (r.status.as_u16(), r.reason()),
        (200, Some("spill:capacity"))
    );
    shutdown(vec![a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_instance_counts_expire() {
    let redis = RedisServer::start();
    let a = instance(&redis.url(), spec(3, None)).await;
    let b = instance(&redis.url(), spec(3, None)).await;
    let holds = vec![
        a.hold("us-east-1", M, "us-east-1").await,
        a.hold("us-east-1", M, "us-east-1").await,
    ];
    within("B to see A's 2 in flight", DEADLINE, || {
        remote(&b, "us-east-1").in_flight == 2
    })
    .await;
    // A "crashes": it stops heart-beating and withdraws nothing.
    let state = a.gw().state();
    let sd = state.shared_deployments().expect("shared");
    let id = sd.instance().to_string();
    sd.stop_heartbeat();
    let crashed = Instant::now();
    let gone = within(
        "A's counts to expire",
        LIVE_TTL + Duration::from_secs(2),
        || remote(&b, "us-east-1").in_flight == 0,
    )
    .await;
    println!("a crashed instance's counts expired after {gone:?} (LIVE_TTL {LIVE_TTL:?})");
    assert!(
        gone + SYNC_EVERY >= LIVE_TTL - 2 * SYNC_EVERY,
        "expired by its TTL, not by a release ({gone:?})"
    );
    assert_eq!(
        local(&a, "us-east-1").in_flight,
        2,
        "A's requests still run"
    );
    // The expired entry is gone from Redis, not only ignored.
    let key = format!("spillway:{{d:{}:us-east-1}}:load", M.replace(':', "%3A"));
    let entries = redis.command(&["HGETALL", &key]);
    assert!(!entries.contains(&id), "{entries:?} still holds {id}");
    assert!(crashed.elapsed() < LIVE_TTL + Duration::from_secs(2));
    // B may use the whole limit again.
    let b_holds = vec![
        b.hold("us-east-1", M, "us-east-1").await,
        b.hold("us-east-1", M, "us-east-1").await,
        b.hold("us-east-1", M, "us-east-1").await,
    ];
    drop((holds, b_holds));
    shutdown(vec![a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ejection_on_one_instance_is_avoided_by_the_others_within_a_second() {
    let redis = RedisServer::start();
    let a = instance(&redis.url(), spec(32, None)).await;
    let b = instance(&redis.url(), spec(32, None)).await;
    let c = instance(&redis.url(), spec(32, None)).await;
    // us-east-1 fails for A only (A's own simulator there is down).
    a.sim("us-east-1").set_fault(Fault {
        outage: true,
        ..Fault::default()
    });
    let mut ejected = None;
    for _ in 0..10 {
        let r = a.chat("us-east-1", body(&us_m(), 2)).await;
        assert_eq!(r.status, 200, "failed over: {r:?}");
        assert_ne!(r.region(), Some("us-east-1"));
        if view(&a, "us-east-1").ejected_until.is_some() {
            ejected = Some(Instant::now());
            break;
        }
    }
    let t0 = ejected.expect("A ejected us-east-1");
    let mut delays = Vec::new();
    for other in [&b, &c] {
        within("the ejection to reach the others", DEADLINE, || {
            view(other, "us-east-1").ejected_until.is_some()
        })
        .await;
        delays.push(t0.elapsed());
    }
    println!("ejection on A reached B and C after {delays:?}");
    assert!(
        delays.iter().all(|d| *d < Duration::from_secs(1)),
        "{delays:?}"
    );
    // B's own us-east-1 is healthy, but B avoids it while the ejection runs.
    let r = b.chat("us-east-1", body(&us_m(), 2)).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_ne!(r.region(), Some("us-east-1"), "{r:?}");
    assert_eq!(r.reason(), Some("spill:unhealthy"), "{r:?}");
    assert!(b.records_in("us-east-1").is_empty(), "B sent nothing there");

    // A recovers: its probe after the ejection succeeds, and the others close their circuit
    // without probing themselves.
    a.sim("us-east-1").set_fault(Fault::default());
    within("A's ejection to end", DEADLINE, || {
        view(&a, "us-east-1").ejected_until.is_none()
    })
    .await;
    a.chat("us-east-1", body(&us_m(), 2))
        .await
        .assert_ok_in("us-east-1", "local");
    let recovered = Instant::now();
    assert!(view(&a, "us-east-1").healthy);
    for other in [&b, &c] {
        within("the recovery to reach the others", DEADLINE, || {
            view(other, "us-east-1").healthy
        })
        .await;
    }
    println!(
        "recovery on A reached B and C after {:?}",
        recovered.elapsed()
    );
    assert!(recovered.elapsed() < Duration::from_secs(1));
    b.chat("us-east-1", body(&us_m(), 2))
        .await
        .assert_ok_in("us-east-1", "local");
    shutdown(vec![a, b, c]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_serves_locally_and_republishes_on_return() {
    let mut redis = RedisServer::start();
    let a = instance(&redis.url(), spec(3, None)).await;
    let b = instance(&redis.url(), spec(3, None)).await;
    let holds = vec![
        a.hold("us-east-1", M, "us-east-1").await,
        a.hold("us-east-1", M, "us-east-1").await,
    ];
    within("B to see A's 2 in flight", DEADLINE, || {
        remote(&b, "us-east-1").in_flight == 2
    })
    .await;

    // Load on both instances throughout: not one request may fail.
    let stop = AtomicBool::new(false);
    let load = async |h: &Harness| {
        let (mut ok, mut failed) = (0u64, 0u64);
        while !stop.load(Ordering::Relaxed) {
            let r = h.chat("us-east-1", body(&us_m(), 2)).await;
            if r.status == 200 {
                ok += 1;
            } else {
                eprintln!("failed: {r:?}");
                failed += 1;
            }
        }
        (ok, failed)
    };
    let us_west = dep(&a, "us-west-2");
    let control = async {
        redis.kill();
        within("B to fall back to local counts", DEADLINE, || {
            !b.gw().state().shared_state_up() && remote(&b, "us-east-1").in_flight == 0
        })
        .await;
        // An ejection decided on A while Redis is down reaches B once it is back.
        {
            let state = a.gw().state();
            let now = state.now();
            let until = now + Duration::from_secs(30);
            assert!(state.router().router.eject_until(us_west, until, now));
        }
        tokio::time::sleep(Duration::from_millis(300)).await; // serve on local state a while
        assert!(!b.gw().state().shared_state_up(), "still down");
        redis.restart();
        let t = Instant::now();
        within("A's counts to be republished", DEADLINE, || {
            b.gw().state().shared_state_up() && remote(&b, "us-east-1").in_flight >= 2
        })
        .await;
        within("A's ejection to be republished", DEADLINE, || {
            view(&b, "us-west-2").ejected_until.is_some()
        })
        .await;
        println!("republished {:?} after the restart", t.elapsed());
        stop.store(true, Ordering::Relaxed);
    };
    let ((), (ok_a, failed_a), (ok_b, failed_b)) = tokio::join!(control, load(&a), load(&b));
    println!("served {ok_a} on A and {ok_b} on B, failed {failed_a} and {failed_b}");
    assert_eq!(
        failed_a + failed_b,
        0,
        "nothing fails because Redis is down"
    );
    assert!(ok_a > 0 && ok_b > 0);
    drop(holds);
    within("A's requests to end", DEADLINE, || {
        remote(&b, "us-east-1").in_flight == 0
    })
    .await;
    shutdown(vec![a, b]).await;
}

/// Waits until neither instance reaches Redis.
async fn both_down(a: &Harness, b: &Harness) {
    within("both instances to lose Redis", DEADLINE, || {
        !a.gw().state().shared_state_up() && !b.gw().state().shared_state_up()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recovery_seen_while_redis_is_down_is_republished_on_return() {
    let mut redis = RedisServer::start();
    let a = instance(&redis.url(), spec(32, None)).await;
    let b = instance(&redis.url(), spec(32, None)).await;
    let us_west = dep(&a, "us-west-2");
    const EJECTIONS: &str = "spillway_deployment_remote_ejections_total";
    metric_until(&b, EJECTIONS, "us-west-2", |v| v == 0.0).await;

    // A long ejection decided on A (during a first outage) reaches B once Redis is back.
    redis.kill();
    both_down(&a, &b).await;
    {
        let state = a.gw().state();
        let now = state.now();
        assert!(
            state
                .router()
                .router
                .eject_until(us_west, now + Duration::from_secs(60), now)
        );
    }
    redis.restart();
    within("A's ejection to reach B", DEADLINE, || {
        view(&b, "us-west-2").ejected_until.is_some()
    })
    .await;
    metric_until(&b, EJECTIONS, "us-west-2", |v| v >= 1.0).await;
    metric_until(&a, EJECTIONS, "us-west-2", |v| v == 0.0).await;

    // Redis goes away again (and comes back empty); meanwhile A's deployment recovers: its
    // ejection ends early and a probe succeeds.
    redis.kill();
    both_down(&a, &b).await;
    {
        let state = a.gw().state();
        let now = state.now();
        let mut cell = state.router();
        assert!(cell.router.end_ejection(us_west, now));
        assert!(
            cell.router
                .eject_until(us_west, now + Duration::from_millis(1), now)
        );
    }
    within("A's short ejection to run out", DEADLINE, || {
        view(&a, "us-west-2").ejected_until.is_none()
    })
    .await;
    {
        let state = a.gw().state();
        let now = state.now();
        let mut cell = state.router();
        let probe = cell.router.try_acquire(us_west, 1, now).expect("the probe");
        cell.router.release(
            probe,
            spillway_core::Outcome::Success {
                ttft: Duration::from_millis(5),
                tpot: None,
                tokens: 1,
            },
            now,
        );
    }
    assert!(view(&a, "us-west-2").healthy, "A closed its circuit");
    assert!(
        view(&b, "us-west-2").ejected_until.is_some(),
        "B still holds the ejection it learned"
    );
    redis.restart();
    let t = Instant::now();
    let took = within("A's recovery to reach B", DEADLINE, || {
        view(&b, "us-west-2").healthy
    })
    .await;
    println!("a recovery seen during the outage reached B {took:?} after the restart");
    assert!(t.elapsed() < Duration::from_secs(30), "not by running out");
    // And stays: B did not republish the ejection it had learned.
    let settle = Instant::now() + 3 * SYNC_EVERY;
    while Instant::now() < settle {
        assert!(view(&b, "us-west-2").healthy, "ejected again");
        assert!(view(&a, "us-west-2").healthy, "ejected again on A");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.chat("us-west-2", body(M, 2))
        .await
        .assert_ok_in("us-west-2", "local");
    shutdown(vec![a, b]).await;
}
