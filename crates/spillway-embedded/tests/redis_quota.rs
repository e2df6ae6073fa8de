//! Tenant quotas shared through a real `redis-server` (`[state] kind = "redis"`): several
//! instances never over-admit beyond the documented bound (`limit × (1 + w / 60 s) + N × chunk`),
//! settles' refunds make room again, and losing Redis under load fails no request (each
//! instance serves on its share, `/readyz` degraded, the gauge 0) until it comes back.
mod common;
mod redis_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use redis_support::RedisServer;
use spillway_core::RegionIx;
use spillway_embedded::Stack;
use spillway_gateway::Config;
use spillway_gateway::state::AppState;
use spillway_gateway::state::quota_book::QuotaKey;

/// `[state]` for `url`, prepended to the harness's configuration.
fn gateway_config(url: &str, instances: u32, fraction: f64, tenant: Tenant) -> Config {
    let mut spec = Spec::standard();
    spec.tenants = vec![tenant];
    let toml = format!(
        "[state]\nkind = \"redis\"\nurl = {url:?}\ninstances = {instances}\nlease_fraction = {fraction}\n\n{}",
        spec.to_toml()
    );
    Config::parse(&toml, "<test>").unwrap_or_else(|e| panic!("config rejected: {e}\n{toml}"))
}

async fn gateway(url: &str, instances: u32, fraction: f64, tenant: Tenant) -> Stack {
    Stack::start(gateway_config(url, instances, fraction, tenant))
        .await
        .expect("gateway starts")
}

/// The in-region quota of tenant `acme` for `M` from us-east-1.
fn key(state: &AppState) -> QuotaKey {
    let cfg = &state.cfg;
    QuotaKey {
        tenant: spillway_gateway::config::TenantIx(0),
        model: cfg.model_ix(M).expect("model"),
        source: RegionIx(
            cfg.regions
                .iter()
                .position(|r| r.name == "us-east-1")
                .expect("region") as u16,
        ),
        cross_region: false,
    }
}

/// The Redis key of that quota (`:` in the model id is escaped).
fn redis_key() -> String {
    format!(
        "spillway:{{q:acme:{}:us-east-1:in}}:b",
        M.replace(':', "%3A")
    )
}

async fn get(client: &reqwest::Client, url: String) -> (u16, String) {
    let r = client.get(url).send().await.expect("gateway answers");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

async fn wait_for(what: &str, deadline: Duration, mut cond: impl AsyncFnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !cond().await {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `/readyz` and the gauge agree that the shared state is `up`.
async fn shared_state_is(gw: &Stack, client: &reqwest::Client, up: bool) -> bool {
    let base = format!("http://{}", gw.gateway().admin_addr());
    let (status, body) = get(client, format!("{base}/readyz")).await;
    let (_, metrics) = get(client, format!("{base}/metrics")).await;
    let gauge = format!("spillway_shared_state_up {}", i32::from(up));
    let ready = if up {
        status == 200 && body == "ready"
    } else {
        status == 503 && body == "degraded: shared state unreachable"
    };
    ready && metrics.lines().any(|l| l == gauge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_and_many_tasks_never_over_admit() {
    let redis = RedisServer::start();
    const RPM: u64 = 600;
    let fraction = 0.005;
    let chunk = ((RPM as f64 * fraction) as u64).max(1);
    let tenant = Tenant::new("acme", KEY).quota(M, Some(RPM), Some(1_000_000));
    let mut gws = Vec::new();
    for _ in 0..3 {
        gws.push(gateway(&redis.url(), 3, fraction, tenant.clone()).await);
    }
    let admitted = Arc::new(AtomicU64::new(0));
    let window = Duration::from_millis(1500);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for gw in &gws {
        for _ in 0..16 {
            let state = gw.gateway().state().clone();
            let admitted = admitted.clone();
            tasks.push(tokio::spawn(async move {
                let k = key(&state);
                let mut failed_open = 0u64;
                while start.elapsed() < window {
                    match state.reserve(k, 50).await {
                        Ok(ticket) => {
                            state.settle(ticket, Some(50));
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            failed_open += 1;
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }
                }
                failed_open
            }));
        }
    }
    let mut denied = 0;
    for t in tasks {
        denied += t.await.expect("task");
    }
    let elapsed = start.elapsed();
    let admitted = admitted.load(Ordering::Relaxed);
    for gw in &gws {
        assert!(gw.gateway().state().shared_state_up(), "Redis stayed up");
    }
    // The bucket's own bound (a full minute's limit plus its refill over the window), plus what
    // three leases may hold: the documented overshoot.
    let refill = RPM as f64 * elapsed.as_secs_f64() / 60.0;
    let bucket_bound = RPM as f64 + refill;
    let bound = bucket_bound + 3.0 * chunk as f64;
    let overshoot = (admitted as f64 - bucket_bound).max(0.0) / RPM as f64;
    println!(
        "3 instances x 16 tasks, rpm {RPM}, {elapsed:?}: admitted {admitted}, denied {denied}, \
         bucket bound {bucket_bound:.1}, documented bound {bound:.1}, overshoot {:.2}% of the limit",
        overshoot * 100.0
    );
    assert!(
        admitted as f64 <= bound,
        "admitted {admitted} > bound {bound:.1}"
    );
    assert!(overshoot <= 0.02, "overshoot {overshoot} above 2%");
    assert!(denied > 0, "the quota was exhausted");
    // Leases strand at most 3 chunks: nearly the whole limit was admitted.
    assert!(
        admitted + 3 * chunk >= RPM,
        "admitted only {admitted} of {RPM}"
    );
    for gw in gws {
        gw.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settle_refunds_make_room_again() {
    let redis = RedisServer::start();
    const TPM: u64 = 10_000;
    const EST: u64 = 1_000;
    let tenant = Tenant::new("acme", KEY).quota(M, None, Some(TPM));
    let mut gws = Vec::new();
    for _ in 0..3 {
        gws.push(gateway(&redis.url(), 3, 0.005, tenant.clone()).await);
    }
    let states: Vec<Arc<AppState>> = gws.iter().map(|g| g.gateway().state().clone()).collect();
    let k = key(&states[0]);
    // Reserve 1,000-token estimates round robin until every instance is denied.
    let mut holds = Vec::new();
    let mut denied_in_a_row = 0;
    let mut i = 0;
    while denied_in_a_row < 3 {
        match states[i % 3].reserve(k, EST).await {
            Ok(h) => {
                holds.push((i % 3, h));
                denied_in_a_row = 0;
            }
            Err(d) => {
                assert!(d.retry_after > Duration::ZERO);
                denied_in_a_row += 1;
            }
        }
        i += 1;
    }
    let first = holds.len() as u64;
    assert!(
        (9..=11).contains(&first),
        "{first} reservations of {EST} from {TPM} TPM"
    );
    // Each used a tenth of its estimate: 900 tokens each come back.
    for (i, t) in holds.drain(..) {
        states[i].settle(t, Some(100));
    }
    let mut again = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while again < 7 && Instant::now() < until {
        match states[again % 3].reserve(k, EST).await {
            Ok(h) => {
                holds.push((again % 3, h));
                again += 1;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(
        again >= 7,
        "refunds made room for {again} more (refill alone: ~1)"
    );
    drop(holds);
    for gw in gws {
        gw.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_under_load_fails_nothing_and_resynchronises() {
    let mut redis = RedisServer::start();
    const RPM: u64 = 6_000;
    let tenant = Tenant::new("acme", KEY).quota(M, Some(RPM), None);
    let gw = gateway(&redis.url(), 3, 0.01, tenant).await;
    let client = reqwest::Client::new();
    assert!(shared_state_is(&gw, &client, true).await);
    let url = format!(
        "http://{}/v1/chat/completions",
        gw.gateway().addr("us-east-1").expect("listener")
    );

    // Load: 8 clients back to back, counting every answer that is not a 200.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (client, url) = (client.clone(), url.clone());
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = client
                    .post(&url)
                    .bearer_auth(KEY)
                    .json(&body(M, 2))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = ok.load(Ordering::Relaxed);
    redis.kill();
    wait_for("readyz degraded and gauge 0", DEADLINE, async || {
        shared_state_is(&gw, &client, false).await
    })
    .await;
    let detected = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = ok.load(Ordering::Relaxed) - before;
    redis.restart();
    wait_for("readyz ready and gauge 1", DEADLINE, async || {
        shared_state_is(&gw, &client, true).await
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.expect("load task");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "outage: {ok} served ({during} while Redis was down, detected after {detected:?}), {failed} failed"
    );
    assert_eq!(failed, 0, "no client request fails because Redis is down");
    assert!(during > 0, "requests were served while Redis was down");

    // Resynchronised: the quota lives in the restarted Redis again and is enforced globally.
    // Drain the global bucket by hand; the lease (at most one chunk of 60) and the refill
    // (100 per second) are all that may be admitted now.
    let reply = redis.command(&["HSET", &redis_key(), "r", "0"]);
    assert!(reply.starts_with(':'), "HSET answered {reply:?}");
    let start = Instant::now();
    let (mut served, mut throttled) = (0u64, 0u64);
    for _ in 0..25 {
        let batch: Vec<_> = (0..8)
            .map(|_| client.post(&url).bearer_auth(KEY).json(&body(M, 2)).send())
            .collect();
        for r in futures_util::future::join_all(batch).await {
            match r.expect("gateway answers").status().as_u16() {
                200 => served += 1,
                429 => throttled += 1,
                s => panic!("unexpected status {s}"),
            }
        }
    }
    let allowed = 60.0 + 100.0 * start.elapsed().as_secs_f64() + 1.0;
    println!("after resync: {served} served, {throttled} throttled, allowed {allowed:.0}");
    assert!(throttled > 0, "the global limit is enforced again");
    assert!(served as f64 <= allowed, "{served} served > {allowed:.0}");
    gw.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_at_start_serves_on_the_local_share() {
    let mut redis = RedisServer::not_started();
    // 6 RPM shared by 3 instances: 2 each while Redis is unreachable.
    let tenant = Tenant::new("acme", KEY).quota(M, Some(6), None);
    let t0 = Instant::now();
    let gw = gateway(&redis.url(), 3, 0.005, tenant).await;
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "start does not wait for Redis"
    );
    let client = reqwest::Client::new();
    assert!(shared_state_is(&gw, &client, false).await);
    let url = format!(
        "http://{}/v1/chat/completions",
        gw.gateway().addr("us-east-1").expect("listener")
    );
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = client
            .post(&url)
            .bearer_auth(KEY)
            .json(&body(M, 2))
            .send()
            .await
            .expect("gateway answers");
        statuses.push(r.status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 200, 429],
        "the local share is limit / instances"
    );

    redis.restart();
    wait_for("readyz ready and gauge 1", DEADLINE, async || {
        shared_state_is(&gw, &client, true).await
    })
    .await;
    // Resynchronised: the global bucket (6, untouched so far) now decides.
    let mut served = 0;
    for _ in 0..8 {
        let r = client
            .post(&url)
            .bearer_auth(KEY)
            .json(&body(M, 2))
            .send()
            .await
            .expect("gateway answers");
        if r.status() == 200 {
            served += 1;
        }
    }
    assert!(
        (6..=7).contains(&served),
        "{served} served: the global limit (6 + refill), not the local share"
    );
    gw.shutdown(Duration::from_secs(1)).await;
}

#[test]
fn state_config_errors_name_the_key() {
    let base = Spec::standard().to_toml();
    let err = |state: &str| {
        Config::parse(&format!("[state]\n{state}\n\n{base}"), "<test>")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(err("kind = \"etcd\"").contains("state.kind"));
    assert!(err("kind = \"redis\"").contains("state.url"));
    assert!(err("kind = \"redis\"\nurl = \"http://x\"").contains("state.url"));
    assert!(
        err("kind = \"redis\"\nurl_env = \"SPILLWAY_TEST_UNSET_REDIS_URL\"")
            .contains("state.url_env")
    );
    let redis = "kind = \"redis\"\nurl = \"redis://127.0.0.1:6379\"";
    assert!(err(&format!("{redis}\ninstances = 0")).contains("state.instances"));
    assert!(err(&format!("{redis}\nlease_fraction = 0.5")).contains("state.lease_fraction"));
    assert!(err(&format!("{redis}\nkey_prefix = \"a{{b}}\"")).contains("state.key_prefix"));
    assert!(err("url = \"redis://127.0.0.1:6379\"").contains("state.url"));
    assert_eq!(err(&format!("{redis}\ninstances = 3")), "");
}
