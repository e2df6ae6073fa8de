//! Cache affinity across gateway instances through a real `redis-server`: a prompt one
//! instance routed is known to another within a couple of seconds (so the other expects its
//! prefix where it went), an instance that starts later learns the recent routing from the
//! streams, and losing Redis fails no request and sharing resumes when it is back. Every test checks from the simulators' own
//! records that no request was served outside its destination set.
mod common;
mod redis_support;

use std::time::{Duration, Instant};

use common::*;
use redis_support::RedisServer;
use serde_json::json;
use spillway_core::DeploymentIx;

/// A prompt of `blocks` full 512-token blocks (2,048 characters each) and a short tail.
fn long_body(model: &str, seed: &str, blocks: usize) -> serde_json::Value {
    let text: String = format!("{seed} ")
        .chars()
        .cycle()
        .take(2_048 * blocks + 100)
        .collect();
    json!({
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 4,
    })
}

/// The prompt's block hashes, as the gateway computes them.
fn blocks_of(body: &serde_json::Value) -> Vec<u64> {
    let msgs: Vec<spillway_proto::ChatMessage> =
        serde_json::from_value(body["messages"].clone()).expect("messages");
    spillway_proto::prefix::block_hashes(&msgs)
        .into_iter()
        .map(|b| b.0)
        .collect()
}

fn spec() -> Spec {
    let mut s = Spec::standard();
    s.prefix_cache_blocks = Some(256);
    s
}

async fn instance(url: &str) -> Harness {
    let state = format!("[state]\nkind = \"redis\"\nurl = {url:?}\ninstances = 2\n\n");
    Harness::start_with(spec(), &state).await
}

fn dep(h: &Harness, region: &str) -> DeploymentIx {
    let cfg = h.gw().config();
    let (m, r) = (cfg.model_ix(M), cfg.region_ix(region));
    m.zip(r)
        .and_then(|(m, r)| cfg.deployment(m, r))
        .expect("deployment")
}

/// The leading blocks of `blocks` that `h` expects `M`'s deployment in `region` to hold.
fn expected(h: &Harness, region: &str, blocks: &[u64]) -> usize {
    let state = h.gw().state();
    let now = state.now();
    state
        .router()
        .router
        .cached_blocks(dep(h, region), blocks, now)
}

async fn within(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_routed_by_one_instance_is_expected_where_it_went_by_the_others() {
    let redis = RedisServer::start();
    let (a, b) = (instance(&redis.url()).await, instance(&redis.url()).await);
    let body = long_body(&format!("us.{M}"), "conversation one", 3);
    let blocks = blocks_of(&body);
    assert_eq!(blocks.len(), 3);
    let r = a.chat("us-east-1", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A routed it locally and expects its prefix in us-east-1; B learns it from Redis.
    assert_eq!(expected(&a, "us-east-1", &blocks), 3);
    let took = within("B learns A's prompt", Duration::from_secs(2), || {
        expected(&b, "us-east-1", &blocks) == 3
    })
    .await;
    eprintln!("learned after {took:?}");
    assert_eq!(expected(&b, "us-east-2", &blocks), 0, "only where it went");
    // An instance started later reads the streams from their start.
    let c = instance(&redis.url()).await;
    within(
        "C learns the recent routing",
        Duration::from_secs(2),
        || expected(&c, "us-east-1", &blocks) == 3,
    )
    .await;
    // And B's own prompt reaches A.
    let other = long_body(&format!("us.{M}"), "conversation two", 2);
    let r = b.chat("us-east-2", other.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let other_blocks = blocks_of(&other);
    within("A learns B's prompt", Duration::from_secs(2), || {
        expected(&a, "us-east-2", &other_blocks) == 2
    })
    .await;
    for h in [&a, &b, &c] {
        h.assert_residency();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_older_than_the_time_to_live_are_not_learned() {
    let redis = RedisServer::start();
    let a = instance(&redis.url()).await;
    // The stream of M in us-east-1 (the id's `:` escaped as the gateway does).
    let key = format!(
        "{}:{{d:{}:us-east-1}}:prefix",
        cfg_prefix(&a.gw().config()),
        M.replace(':', "%3A")
    );
    // An entry from another instance written an hour ago (ids are Redis's clock in ms), and
    // one written now; each one prompt of one block.
    let time = redis.command(&["TIME"]);
    let secs: u64 = time
        .lines()
        .nth(2)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("TIME answered {time:?}"));
    let old_id = format!("{}-0", (secs - 3_600) * 1_000);
    let packed = |b: u64| {
        let mut v = 1u16.to_le_bytes().to_vec();
        v.extend_from_slice(&b.to_le_bytes());
        String::from_utf8(v).expect("small ids pack to ASCII")
    };
    for (id, block) in [(old_id.as_str(), 11u64), ("*", 12)] {
        let p = packed(block);
        let reply = redis.command(&["XADD", &key, id, "i", "someone-else", "p", &p]);
        assert!(reply.starts_with('$'), "XADD answered {reply:?}");
    }
    // A new instance reads both and learns only the fresh one.
    let b = instance(&redis.url()).await;
    within("B learns the fresh entry", Duration::from_secs(2), || {
        expected(&b, "us-east-1", &[12]) == 1
    })
    .await;
    assert_eq!(
        expected(&b, "us-east-1", &[11]),
        0,
        "an hour-old entry is not trusted"
    );
}

/// The configured `[state] key_prefix`.
fn cfg_prefix(cfg: &spillway_gateway::Config) -> String {
    match &cfg.state {
        spillway_gateway::config::StateKind::Redis(r) => r.key_prefix.clone(),
        _ => panic!("not a Redis state"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_each_instance_routes_on_what_it_knows() {
    let mut redis = RedisServer::start();
    let (a, b) = (instance(&redis.url()).await, instance(&redis.url()).await);
    redis.kill();
    let body = long_body(&format!("us.{M}"), "while redis is down", 2);
    let blocks = blocks_of(&body);
    for _ in 0..3 {
        let r = a.chat("us-east-1", body.clone()).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(expected(&a, "us-east-1", &blocks), 2);
    // Back: prompts routed from then on are shared again (the link reconnects on its own
    // schedule, so A keeps sending until one gets through).
    redis.restart();
    let later = long_body(&format!("us.{M}"), "after redis is back", 2);
    let later_blocks = blocks_of(&later);
    let start = Instant::now();
    loop {
        let r = a.chat("us-east-1", later.clone()).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let learned = Instant::now();
        while learned.elapsed() < Duration::from_millis(500)
            && expected(&b, "us-east-1", &later_blocks) < 2
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if expected(&b, "us-east-1", &later_blocks) == 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "B never learned A's prompt"
        );
    }
    a.assert_residency();
    b.assert_residency();
}
