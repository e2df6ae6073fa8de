//! The Redis backend on a real Redis Cluster (three `redis-server --cluster-enabled yes`
//! primaries joined by `redis-cli --cluster create`; `[state] cluster = true`, the nodes as
//! seeds): tenant quota leases from two gateway instances stay within the documented bound,
//! application profiles created through one instance route on the other, and deployment
//! in-flight counts on one instance make the other spill. Every script's keys share one hash
//! tag, so each lives on one node.
mod bedrock_common;
mod common;
mod redis_support;
mod shared_profiles;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::M;
use redis_support::RedisCluster;
use shared_profiles::*;
use spillway_gateway::state::AppState;
use spillway_gateway::state::quota_book::QuotaKey;

/// Tenant `acme`'s in-region quota of `M` from us-east-1.
fn key(state: &AppState) -> QuotaKey {
    let cfg = &state.cfg;
    QuotaKey {
        tenant: spillway_gateway::config::TenantIx(0),
        model: cfg.model_ix(M).expect("model"),
        source: cfg.region_ix("us-east-1").expect("region"),
        cross_region: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quota_leases_on_a_cluster_stay_within_the_bound() {
    let cluster = RedisCluster::start();
    const RPM: u64 = 200;
    let fraction = 0.01;
    let chunk = ((RPM as f64 * fraction) as u64).max(1);
    let mut spec = bedrock_common::spec();
    spec.tenants[0] = spec.tenants[0].clone().quota(M, Some(RPM), Some(1_000_000));
    let state = format!(
        "{}lease_fraction = {fraction}\n",
        shared_profiles::cluster(&cluster.urls())
    );
    let gws = [
        gateway_on(&state, spec.clone()).await,
        gateway_on(&state, spec).await,
    ];
    for gw in &gws {
        assert!(
            gw.gateway().state().shared_state_up(),
            "connected to the cluster"
        );
    }
    let admitted = Arc::new(AtomicU64::new(0));
    let window = Duration::from_millis(1000);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for gw in &gws {
        for _ in 0..8 {
            let (state, admitted) = (gw.gateway().state().clone(), admitted.clone());
            tasks.push(tokio::spawn(async move {
                let k = key(&state);
                while start.elapsed() < window {
                    match state.reserve(k, 10).await {
                        Ok(ticket) => {
                            state.settle(ticket, Some(10));
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.expect("task");
    }
    let w = start.elapsed().as_secs_f64();
    let bound = (RPM as f64 * (1.0 + w / 60.0)).floor() as u64 + 2 * chunk;
    let n = admitted.load(Ordering::Relaxed);
    eprintln!("admitted {n} of {RPM}/min in {w:.2} s on the cluster (bound {bound})");
    assert!(n <= bound, "admitted {n} > bound {bound}");
    assert!(
        n >= RPM / 2,
        "the global bucket was drawn on: only {n} admitted"
    );
    for gw in &gws {
        assert!(
            gw.gateway().state().shared_state_up(),
            "no call to the cluster failed"
        );
    }
    // The bucket lives on the node owning its hash tag's slot.
    let bucket = format!(
        "spillway:{{q:acme:{}:us-east-1:in}}:b",
        M.replace(':', "%3A")
    );
    assert_eq!(
        cluster.owner(&bucket).command(&["EXISTS", &bucket]),
        ":1\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn application_profiles_are_shared_on_a_cluster() {
    let cluster = RedisCluster::start();
    let state = shared_profiles::cluster(&cluster.urls());
    let (a, b) = (gateway(&state).await, gateway(&state).await);
    let (ctl_a, _) = acme(&a);
    let (ctl_b, run_b) = acme(&b);
    let arn = create(&ctl_a, "on-a-cluster", Some("tok"))
        .await
        .expect("created on A");
    assert_eq!(
        create(&ctl_b, "on-a-cluster", Some("tok")).await,
        Ok(arn.clone())
    );
    converse(&run_b, &arn).await.expect("callable on B");
    assert_eq!(app_arns(&ctl_b).await, vec![arn.clone()]);
    // All of the profiles' keys are on one node (one hash tag).
    let owner = cluster.owner("spillway:{ap}:p");
    for k in ["p", "n", "t", "v"] {
        let key = format!("spillway:{{ap}}:{k}");
        assert_eq!(owner.command(&["EXISTS", &key]), ":1\r\n", "{key}");
    }
    delete(&ctl_a, &arn).await.expect("deleted on A");
    assert_eq!(
        get(&ctl_b, &arn).await,
        Err("ResourceNotFoundException".into())
    );
}

#[test]
fn cluster_config_errors_name_the_key() {
    let base = common::Spec::standard().to_toml();
    let parse = |state: &str| {
        spillway_gateway::Config::parse(&format!("[state]\n{state}\n\n{base}"), "<test>")
    };
    let err = |state: &str| {
        parse(state)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let seeds = "urls = [\"redis://127.0.0.1:7000\", \"redis://127.0.0.1:7001\"]";
    // Several URLs are seed nodes: only for a cluster.
    let e = err(&format!("kind = \"redis\"\n{seeds}"));
    assert!(
        e.contains("state.urls") && e.contains("cluster = true"),
        "{e}"
    );
    let e =
        err("kind = \"redis\"\ncluster = true\nurl = \"redis://a:1\"\nurls = [\"redis://b:2\"]");
    assert!(e.contains("one of url, urls or url_env"), "{e}");
    let e = err("kind = \"redis\"\ncluster = true\nurls = []");
    assert!(
        e.contains("state.urls") && e.contains("at least one"),
        "{e}"
    );
    let e = err("kind = \"redis\"\ncluster = true\nurls = [\"redis://127.0.0.1:7000/2\"]");
    assert!(e.contains("state.urls") && e.contains("database 0"), "{e}");
    let e = err(
        "kind = \"redis\"\ncluster = true\nurls = [\"redis://127.0.0.1:7000\", \"http://x:1\"]",
    );
    assert!(e.contains("state.urls") && e.contains("redis://"), "{e}");
    // Memory takes no options; unknown keys are refused.
    let e = err("cluster = true");
    assert!(e.contains("state.cluster"), "{e}");
    let e = err("kind = \"redis\"\nseeds = [\"redis://a:1\"]");
    assert!(e.contains("seeds"), "{e}");

    // Accepted: seed nodes, or one seed; passwords are not shown.
    let cfg = parse(&format!("kind = \"redis\"\ncluster = true\n{seeds}")).expect("seeds");
    let spillway_gateway::config::StateKind::Redis(r) = &cfg.state else {
        panic!("a redis state: {:?}", cfg.state);
    };
    assert!(r.cluster);
    assert_eq!(r.urls.len(), 2);
    let cfg = parse("kind = \"redis\"\ncluster = true\nurl = \"redis://:hunter2@127.0.0.1:7000\"")
        .expect("one seed");
    let shown = format!("{:?}", cfg.state);
    assert!(
        shown.contains("cluster: true") && !shown.contains("hunter2"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_a_cluster_node_fails_no_reservation() {
    let mut cluster = RedisCluster::start();
    let mut spec = bedrock_common::spec();
    spec.tenants[0] = spec.tenants[0].clone().quota(M, Some(60_000), None);
    let gw = gateway_on(&shared_profiles::cluster(&cluster.urls()), spec).await;
    let state = gw.gateway().state().clone();
    let k = key(&state);
    for _ in 0..50 {
        state
            .reserve(k, 1)
            .await
            .expect("served through the cluster");
    }
    let bucket = format!(
        "spillway:{{q:acme:{}:us-east-1:in}}:b",
        M.replace(':', "%3A")
    );
    let ix = cluster.owner_ix(&bucket);
    cluster.nodes[ix].kill();
    // Every reservation is answered (from the lease, or this instance's share once the link is
    // down), each within the call bound.
    let start = Instant::now();
    let mut n = 0;
    while state.shared_state_up() || n < 2_000 {
        let t = Instant::now();
        let hold = state.reserve(k, 1).await;
        assert!(
            hold.is_ok(),
            "reservation {n} failed with a cluster node down"
        );
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "took {:?}",
            t.elapsed()
        );
        n += 1;
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the link never noticed the node was gone"
        );
    }
    assert!(
        !gw.gateway().state().shared_state_up(),
        "degraded: a node is unreachable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deployment_in_flight_is_shared_on_a_cluster() {
    let cluster = RedisCluster::start();
    let mut spec = common::Spec::standard();
    spec.dep(M, "us-east-1").max_in_flight = 2;
    let state = format!("{}\n", shared_profiles::cluster(&cluster.urls()));
    let a = common::Harness::start_with(spec.clone(), &state).await;
    let b = common::Harness::start_with(spec, &state).await;
    for h in [&a, &b] {
        assert!(h.gw().state().shared_state_up(), "connected to the cluster");
    }
    let remote = |h: &common::Harness| {
        let cfg = h.gw().config();
        let d = cfg
            .model_ix(M)
            .zip(cfg.region_ix("us-east-1"))
            .and_then(|(m, r)| cfg.deployment(m, r))
            .expect("deployment");
        h.gw().state().router().router.remote_load(d).in_flight
    };
    // A fills the deployment's limit with open streams; B sees them through the cluster.
    let holds = vec![
        a.hold("us-east-1", M, "us-east-1").await,
        a.hold("us-east-1", M, "us-east-1").await,
    ];
    let start = Instant::now();
    while remote(&b) != 2 {
        assert!(
            start.elapsed() < common::DEADLINE,
            "B never saw A's 2 in flight"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // B spills a profile call to another region of the profile and sends nothing to us-east-1.
    let profile = format!("us.{M}");
    for _ in 0..3 {
        let r = b.chat("us-east-1", common::body(&profile, 2)).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_ne!(r.region(), Some("us-east-1"), "{r:?}");
        assert_eq!(r.reason(), Some("spill:capacity"), "{r:?}");
    }
    assert!(b.records_in("us-east-1").is_empty(), "B sent nothing there");
    // Both of the deployment's keys are on the node owning its hash tag.
    let tag = format!("spillway:{{d:{}:us-east-1}}", M.replace(':', "%3A"));
    let load = format!("{tag}:load");
    assert_eq!(cluster.owner(&load).command(&["EXISTS", &load]), ":1\r\n");
    assert_eq!(
        cluster.owner_ix(&load),
        cluster.owner_ix(&format!("{tag}:health"))
    );

    // A's streams end: B serves locally again.
    drop(holds);
    let start = Instant::now();
    while remote(&b) != 0 {
        assert!(
            start.elapsed() < common::DEADLINE,
            "B never saw A's streams end"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    b.chat("us-east-1", common::body(&profile, 2))
        .await
        .assert_ok_in("us-east-1", "local");
    for mut h in [a, b] {
        h.assert_residency();
        h.take_gateway().shutdown(Duration::from_secs(1)).await;
    }
}
