//! Reloading the configuration of a running gateway (issue 15): a new tenant, model and
//! deployment take effect; requests in flight finish on the configuration they started with;
//! an invalid file or one that changes what cannot change is refused and the running
//! configuration keeps serving; and reloads under load lose no request.
mod common;
mod redis_support;

use std::sync::Arc;

use common::*;
use spillway_gateway::Config;

const OTHER: &str = "demo.other-v1:0";

fn config(spec: &Spec) -> Config {
    let toml = spec.to_toml();
    Config::parse(&toml, "<test>").unwrap_or_else(|e| panic!("rejected: {e}\n{toml}"))
}

/// The standard spec plus a tenant `beta` and a model deployed in us-east-1 on the
/// us-east-1 simulator (as an OpenAI-compatible upstream).
fn grown(h: &Harness) -> Spec {
    let mut spec = h.spec.clone();
    spec.tenants.push(Tenant::new("beta", "sk-test-beta"));
    spec.models.push(ModelSpec {
        id: OTHER.into(),
        profile_only: false,
        burndown: None,
        default_max_tokens: None,
        midstream: false,
    });
    spec.deployments.push(Dep {
        model: OTHER.into(),
        region: "us-east-1".into(),
        max_in_flight: 8,
        rpm: None,
        tpm: None,
        upstream: Upstream::OpenAi(h.sim("us-east-1").base_url()),
        continuation: None,
    });
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tenant_model_and_deployment_take_effect_and_streams_in_flight_finish() {
    let mut h = Harness::start(Spec::standard()).await;
    let mut held = h.hold_n("us-east-1", M, "us-east-1", 10).await;
    let before = h
        .chat_as("us-east-1", Some("sk-test-beta"), body(M, 3))
        .await;
    before.assert_error(401, "authentication_error");

    let spec = grown(&h);
    let summary = h.gw().reload(config(&spec)).await.expect("reloaded");
    assert!(summary.contains("2 tenants"), "{summary}");
    h.spec = spec;

    let r = h
        .chat_as("us-east-1", Some("sk-test-beta"), body(M, 3))
        .await;
    assert_eq!(r.status, 200, "the new tenant: {r:?}");
    let r = h.chat("us-east-1", body(OTHER, 3)).await;
    r.assert_ok_in("us-east-1", "local");
    // The stream that started before the reload ends normally.
    let rest = held.rest().await;
    assert!(rest.last().is_some_and(|e| e == "[DONE]"), "{rest:?}");
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_is_refused_with_every_error_and_the_old_config_serves() {
    let spec = Spec::standard();
    let dir = std::env::temp_dir().join(format!("spillway-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("gateway.toml");
    std::fs::write(&file, spec.to_toml()).expect("write");
    let stack = spillway_embedded::Stack::start(Config::load(&file).expect("valid"))
        .await
        .expect("starts");
    let gw = stack.gateway();
    let url = format!(
        "http://{}/v1/chat/completions",
        gw.addr("us-east-1").expect("listener")
    );
    let call = async |key: &str| {
        reqwest::Client::new()
            .post(&url)
            .bearer_auth(key)
            .json(&body(M, 3))
            .send()
            .await
            .expect("answer")
            .status()
            .as_u16()
    };

    // A file that does not parse is refused with its error, and nothing changes.
    let bad = spec
        .to_toml()
        .replace("[routing]\nseed = 7", "[routing]\nseed = 7\nbogus = 1");
    std::fs::write(&file, bad).expect("write");
    let e = gw.reload_from_file().await.expect_err("refused");
    assert!(e.to_string().contains("not reloaded"), "{e}");
    assert!(e.to_string().contains("bogus"), "{e}");
    assert_eq!(call(KEY).await, 200, "the running config serves");

    // A file with several mistakes is refused with every one of them.
    let bad = spec.to_toml().replace(
        "[routing]\nseed = 7",
        "[routing]\nseed = 7\nmax_attempts = 0\nconnect_timeout_ms = 0",
    );
    std::fs::write(&file, bad).expect("write");
    let e = gw.reload_from_file().await.expect_err("refused");
    let shown = e.to_string();
    assert!(shown.contains("not reloaded: 2 errors"), "{shown}");
    assert!(shown.contains("routing.max_attempts"), "{shown}");
    assert!(shown.contains("routing.connect_timeout_ms"), "{shown}");
    assert_eq!(call(KEY).await, 200, "the running config serves");

    // A file that moves a listener needs a restart, and says so.
    let moved = spec.to_toml().replacen("127.0.0.1:0", "127.0.0.1:1", 1);
    std::fs::write(&file, moved).expect("write");
    let e = gw.reload_from_file().await.expect_err("refused");
    assert!(e.to_string().contains("restart"), "{e}");

    // A valid edit takes effect.
    let mut grown = spec.clone();
    grown.tenants.push(Tenant::new("beta", "sk-test-beta"));
    std::fs::write(&file, grown.to_toml()).expect("write");
    assert_eq!(call("sk-test-beta").await, 401, "not yet");
    gw.reload_from_file().await.expect("reloaded");
    assert_eq!(call("sk-test-beta").await, 200, "the new tenant");
    assert_eq!(call(KEY).await, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_lose_no_request() {
    let h = Arc::new(Harness::start(Spec::standard()).await);
    let plain = config(&h.spec);
    let mut wider = h.spec.clone();
    wider.tenants.push(Tenant::new("beta", "sk-test-beta"));
    let wider = config(&wider);
    let load: Vec<_> = (0..4)
        .map(|i| {
            let h = h.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for n in 0..30 {
                    let b = if (i + n) % 2 == 0 {
                        body(&format!("us.{M}"), 4)
                    } else {
                        stream_body(&format!("us.{M}"), 4)
                    };
                    let r = h.chat("us-east-1", b).await;
                    statuses.push(r.status.as_u16());
                }
                statuses
            })
        })
        .collect();
    for i in 0..6 {
        let next = if i % 2 == 0 {
            wider.clone()
        } else {
            plain.clone()
        };
        h.gw().reload(next).await.expect("reloaded");
        tokio::task::yield_now().await;
    }
    let mut total = 0;
    for task in load {
        let statuses = task.await.expect("load task");
        total += statuses.len();
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
    assert_eq!(total, 120);
    h.assert_residency();
}

/// With Redis state, a reload builds new shared-state clients from the new file; quotas and
/// application profiles live in Redis under names, so a new tenant is served at once and the
/// old generation's leases go back when its last request ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_redis_state_serves_the_new_tenant() {
    let redis = redis_support::RedisServer::start();
    let state = format!("[state]\nkind = \"redis\"\nurl = {:?}\n\n", redis.url());
    let mut h = Harness::start_with(Spec::standard(), &state).await;
    let mut spec = h.spec.clone();
    spec.tenants
        .push(Tenant::new("beta", "sk-test-beta").quota(M, Some(100), None));
    let toml = format!("{state}{}", spec.to_toml());
    let cfg = Config::parse(&toml, "<test>").expect("valid");
    h.gw().reload(cfg).await.expect("reloaded");
    h.spec = spec;
    for _ in 0..3 {
        let r = h
            .chat_as(
                "us-east-1",
                Some("sk-test-beta"),
                body(&format!("us.{M}"), 3),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    let r = h.chat("us-east-1", body(M, 3)).await;
    r.assert_ok_in("us-east-1", "local");
    h.assert_residency();
}
