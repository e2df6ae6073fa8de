//! The shared state failing under load (`[state] kind = "redis"`, a real `redis-server` per
//! test): stopped (SIGSTOP: the socket stays open, nothing answers), killed (SIGKILL: refused
//! connections) and restarted empty. Quotas then come from the instance's local share; no call
//! fails, and every reservation settles exactly once where it was drawn.
use std::process::Command;
use std::time::{Duration, Instant};

use crate::calls::Api;
use crate::common::{DEADLINE, M};
use crate::redis_support::RedisServer;
use crate::support::{Matrix, TPM, spec, us};

async fn start(redis: &RedisServer, name: &str) -> Matrix {
    let prefix = format!(
        "[state]\nkind = \"redis\"\nurl = {:?}\ninstances = 1\n\n",
        redis.url()
    );
    let m = Matrix::start_with(spec(), name, &prefix).await;
    shared_state_is(&m, true).await;
    m
}

/// Waits (bounded) until the gateway sees the shared state up (or down).
async fn shared_state_is(m: &Matrix, up: bool) {
    let state = m.h.gw().state();
    let deadline = Instant::now() + DEADLINE;
    while state.shared_state_up() != up {
        assert!(
            Instant::now() < deadline,
            "the shared state never became up={up}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A load through the profile in every API, all served; returns the calls' ids.
async fn served_load(m: &Matrix, n: usize) -> Vec<String> {
    let seen = m.load(&Api::ALL, "us-east-1", &us(), n).await;
    for s in &seen {
        s.assert_served(&m.h);
    }
    seen.into_iter().map(|s| s.id).collect()
}

/// The global bucket in Redis has everything back but what the calls `ids` (drawn from it)
/// used and at most one lease chunk this instance may keep: nothing taken from it was lost.
async fn assert_bucket_back(redis: &RedisServer, m: &Matrix, ids: &[String]) {
    let used = m.settled(ids).await;
    let cap = 2 * TPM;
    let chunk = (cap as f64 * 0.005).floor() as u64;
    let want = (cap - used - chunk) as f64;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let level = bucket_level(redis);
        if level >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "TOKENS LOST from the global bucket: {level:.0} of {cap} where the calls drawn from \
             it used {used} (at least {want:.0} expected back)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The token level of the tenant's cross-region bucket for `M` from us-east-1 (absent: full).
fn bucket_level(redis: &RedisServer) -> f64 {
    let key = format!(
        "spillway:{{q:acme:{}:us-east-1:x}}:b",
        M.replace(':', "%3A")
    );
    let reply = redis.command(&["HGET", &key, "t"]);
    reply
        .lines()
        .nth(1)
        .and_then(|l| l.parse::<f64>().ok())
        .unwrap_or((2 * TPM) as f64)
}

/// Sends `signal` (`STOP`, `CONT`) to the test's own redis-server, by its process id.
fn signal(redis: &RedisServer, pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{signal} {pid} (redis on port {})", redis.port());
}

fn pid_of(redis: &RedisServer) -> u32 {
    let info = redis.command(&["INFO", "server"]);
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no process_id in INFO: {info}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_under_load_fails_nothing() {
    let redis = RedisServer::start();
    let pid = pid_of(&redis);
    let m = start(&redis, "redis-stopped").await;
    let mut from_redis = served_load(&m, 8).await;
    // The refunds are back in Redis before it stops (see the test below for why that matters).
    assert_bucket_back(&redis, &m, &from_redis).await;
    signal(&redis, pid, "STOP");
    let stopped = async {
        // Calls during the stop: the first ones wait out a Redis timeout, none fails.
        let load = served_load(&m, 8);
        let down = shared_state_is(&m, false);
        tokio::join!(load, down);
        served_load(&m, 8).await;
    };
    // Resume Redis even when an assertion failed, so that its drop can reap it.
    let outcome = tokio::time::timeout(DEADLINE * 2, stopped).await;
    signal(&redis, pid, "CONT");
    outcome.expect("the load while Redis was stopped ended");
    shared_state_is(&m, true).await;
    from_redis.extend(served_load(&m, 8).await);
    m.verify().await;
    assert_bucket_back(&redis, &m, &from_redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backed_refunds_are_there_for_the_next_calls() {
    // No fault at all: two loads back to back. Each call reserves ~165 tokens and uses 21; the
    // cross-region quota is 1,980 tokens. The memory book serves both loads.
    let redis = RedisServer::start();
    let m = start(&redis, "redis-refunds").await;
    let mut ids = served_load(&m, 8).await;
    ids.extend(served_load(&m, 8).await);
    m.verify().await;
    assert_bucket_back(&redis, &m, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_fails_nothing() {
    let mut redis = RedisServer::start();
    let m = start(&redis, "redis-killed").await;
    served_load(&m, 8).await;
    redis.kill();
    let load = served_load(&m, 8);
    let down = shared_state_is(&m, false);
    tokio::join!(load, down);
    served_load(&m, 8).await;
    m.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_under_load_fails_nothing() {
    let mut redis = RedisServer::start();
    let m = start(&redis, "redis-restarted").await;
    served_load(&m, 8).await;
    redis.kill();
    let load = served_load(&m, 8);
    let down = shared_state_is(&m, false);
    tokio::join!(load, down);
    redis.restart();
    let load = served_load(&m, 8);
    let up = shared_state_is(&m, true);
    let (during, ()) = tokio::join!(load, up);
    // Back on the (empty, so full) bucket. Its refunds first (the test above shows why).
    assert_bucket_back(&redis, &m, &during).await;
    served_load(&m, 8).await;
    m.verify().await;
}
