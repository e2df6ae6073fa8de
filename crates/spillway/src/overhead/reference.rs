//! `bench overhead`'s reference comparison: Spillway beside nginx, the proxy its users already
//! run, on the same upstream, in the same run.
//!
//! # Topology
//!
//! The upstream of every path is a static mock of the OpenAI API (nginx answering every
//! request with one fixed chat completion, so the upstream costs almost nothing and the proxies'
//! own costs show). Four paths reach it: **direct**, through **nginx** as a plain reverse proxy
//! (kept-alive upstream connections, no access log), through **hyper**, the floor of Spillway's
//! own HTTP stack (a pass-through proxy on the same hyper server and client, in process:
//! [`super::floor`]), and through **Spillway** (the in-process gateway with its memory state,
//! the tenant's key checked, the request routed, metered and logged at `warn`), all non-streamed
//! chat completions with the same body and key.
//!
//! # What is measured
//!
//! * **Latency at a fixed rate**: the open-loop generator of [`spillway_bench::overhead`] sends
//!   `--rps` requests per second to each of the paths at once for `--seconds`, on its own
//!   thread; `added` is a path's percentile minus the direct path's.
//! * **Max rps**: `wrk` (closed loop, `--wrk-connections` connections on `--wrk-threads`
//!   threads, `--wrk-seconds`), one path after the other, as the first measurement did;
//!   wrk is a separate process and shares the cores with the proxy under test, as a load
//!   generator on the same machine does.
//!
//! The ratios a reader wants are printed last: Spillway's max rps over nginx's, Spillway's
//! added p99 over nginx's, and Spillway's added p50; then the floor's max rps over nginx's (the
//! most a gateway on this stack could reach here) and Spillway's over the floor's (the share its
//! own work leaves).
//!
//! With `--state redis://…` a fifth path, **spillway-redis**, is a second gateway the same in
//! every way but `[state] kind = "redis"`; both gateways then give the tenant a quota of
//! 6,000,000 requests a minute (the Redis one leases it in chunks of `--lease-fraction`), and
//! its max rps is also given as a ratio to the memory gateway's.
//!
//! nginx and wrk are found on `PATH` (and in `/usr/sbin`); with `--reference auto` (the
//! default) a missing one skips the comparison with a line that says so, with
//! `--reference nginx` it is an error.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use spillway_bench::overhead::{self as load, Bytes, Endpoint, Load, Stats};
use spillway_embedded::Stack;
use spillway_gateway::Config;

use super::config::{UpstreamAt, gateway_config};
use super::floor;
use super::nginx::{self, Nginx, Role};
use super::state;
use super::wrk::{self, WrkFigures};
use super::{API_KEY, OverheadArgs, REGION};

/// Whether to run the comparison with nginx.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// When nginx and wrk are on `PATH`.
    Auto,
    /// Always (an error when nginx or wrk is missing).
    Nginx,
    /// Never.
    None,
}

/// One path's figures.
#[derive(Debug, Clone, Serialize)]
pub struct PathFigures {
    pub name: &'static str,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub added_p50_ms: f64,
    pub added_p99_ms: f64,
    pub errors: usize,
    pub open_loop: Stats,
    pub wrk: WrkFigures,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReferenceReport {
    pub rps: f64,
    pub seconds: f64,
    pub wrk_connections: u32,
    pub wrk_threads: u32,
    pub wrk_seconds: f64,
    /// direct, nginx, hyper, spillway (and spillway-redis with `--state`).
    pub paths: Vec<PathFigures>,
    /// Spillway's max rps over nginx's.
    pub max_rps_vs_nginx: f64,
    /// The hyper floor's max rps over nginx's: what a gateway on Spillway's HTTP stack that
    /// does nothing but forward reaches here.
    pub hyper_vs_nginx: f64,
    /// Spillway's max rps over the hyper floor's: the share its own work leaves.
    pub max_rps_vs_hyper: f64,
    /// The hyper floor's added p99 over nginx's.
    pub hyper_added_p99_vs_nginx: f64,
    /// Spillway's added p99 over nginx's.
    pub added_p99_vs_nginx: f64,
    /// Spillway's added p50 over the direct path, ms.
    pub spillway_added_p50_ms: f64,
    /// With `--state`: the Redis-backed gateway (the `spillway-redis` path) against the memory
    /// one, both with the same tenant quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisReference>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RedisReference {
    /// The Redis, without credentials.
    pub state: String,
    pub quota_rpm: u64,
    pub lease_fraction: f64,
    /// Its max rps over the memory gateway's.
    pub max_rps_vs_memory: f64,
    /// Its p50 minus the memory gateway's, ms.
    pub added_p50_over_memory_ms: f64,
}

/// The binaries, or why the comparison is skipped.
fn tools(reference: Reference) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
    if reference == Reference::None {
        return Ok(None);
    }
    match (nginx::on_path("nginx"), nginx::on_path("wrk")) {
        (Some(n), Some(w)) => Ok(Some((n, w))),
        (n, w) => {
            let missing: Vec<&str> = [(n.is_none(), "nginx"), (w.is_none(), "wrk")]
                .into_iter()
                .filter_map(|(gone, name)| gone.then_some(name))
                .collect();
            let why = format!(
                "{} not on PATH: the comparison with nginx is skipped (Debian: apt-get install nginx-light wrk)",
                missing.join(" and ")
            );
            if reference == Reference::Nginx {
                bail!("{why}");
            }
            eprintln!("spillway bench overhead: {why}");
            Ok(None)
        }
    }
}

/// Run the comparison, unless `--reference` or the machine says not to.
pub async fn run(args: &OverheadArgs) -> anyhow::Result<Option<ReferenceReport>> {
    let Some((nginx_bin, wrk_bin)) = tools(args.reference)? else {
        return Ok(None);
    };
    let (mock, proxy) = tokio::task::spawn_blocking(move || start_nginx(&nginx_bin)).await??;
    let mock_base = format!("http://{}/v1", mock.addr);
    let quota = args.state.as_ref().map(|_| REDIS_QUOTA_RPM);
    let cfg = Config::parse(
        &gateway_config(quota, UpstreamAt::OpenAi(&mock_base), None),
        "<bench overhead --reference>",
    )?;
    let floor = floor::start(mock.addr).await?;
    let stack = Stack::start(cfg).await.context("starting the gateway")?;
    let redis = match &args.state {
        Some(url) => {
            let upstream = UpstreamAt::OpenAi(&mock_base);
            match state::start(url, REDIS_QUOTA_RPM, args.lease_fraction, upstream).await {
                Ok(g) => Some(g),
                Err(e) => {
                    stack.shutdown(Duration::from_secs(5)).await;
                    return Err(e);
                }
            }
        }
        None => None,
    };
    let mut urls = vec![
        format!("{mock_base}/chat/completions"),
        format!("http://{}/v1/chat/completions", proxy.addr),
        format!("http://{}/v1/chat/completions", floor.addr),
    ];
    let gateways =
        std::iter::once(stack.gateway().addr(REGION)).chain(redis.as_ref().map(|g| g.addr(REGION)));
    for addr in gateways {
        let addr = addr.context("the gateway has no listener")?;
        urls.push(format!("http://{addr}/v1/chat/completions"));
    }
    let result = measure(args, &urls, &wrk_bin, quota).await;
    stack.shutdown(Duration::from_secs(5)).await;
    if let Some(g) = redis {
        g.shutdown(Duration::from_secs(5)).await;
    }
    drop((mock, proxy, floor));
    result.map(Some)
}

/// With `--state`: the tenant's quota in both gateways, requests per minute. Far above any rate
/// this machine reaches (so wrk measures the gateway, not the quota), as for a tenant well
/// inside its limits: the Redis gateway leases it in chunks of `--lease-fraction` of it.
const REDIS_QUOTA_RPM: u64 = 6_000_000;

fn start_nginx(binary: &Path) -> anyhow::Result<(Nginx, Nginx)> {
    let mock = nginx::start(binary, Role::Mock, "mock").context("starting the nginx mock")?;
    let proxy = nginx::start(binary, Role::Proxy(&mock.addr), "proxy")
        .context("starting nginx as a proxy")?;
    Ok((mock, proxy))
}

const NAMES: [&str; 5] = ["direct", "nginx", "hyper", "spillway", "spillway-redis"];
/// Where each path is in [`NAMES`] and in the report's `paths`.
const NGINX: usize = 1;
const FLOOR: usize = 2;
const SPILLWAY: usize = 3;
const SPILLWAY_REDIS: usize = 4;

async fn measure(
    args: &OverheadArgs,
    urls: &[String],
    wrk_bin: &Path,
    quota_rpm: Option<u64>,
) -> anyhow::Result<ReferenceReport> {
    let body = super::request_body(args, false);
    let names = &NAMES[..urls.len()];
    eprintln!(
        "  reference      side by side: {} requests/s to each of {} for {} s",
        args.rps,
        names.join(", "),
        args.seconds
    );
    let open = open_loop(args, urls, body.clone()).await?;
    let mut paths = Vec::new();
    for (i, &name) in names.iter().enumerate() {
        eprintln!(
            "  reference      wrk -c{} -t{} {} s: {name}",
            args.wrk_connections, args.wrk_threads, args.wrk_seconds
        );
        let run = wrk::Run {
            binary: wrk_bin.to_path_buf(),
            url: urls[i].clone(),
            body: body.clone(),
            api_key: API_KEY.to_string(),
            connections: args.wrk_connections,
            threads: args.wrk_threads,
            seconds: args.wrk_seconds,
        };
        let figures = tokio::task::spawn_blocking(move || wrk::run(&run)).await??;
        let stats = open.stats(i);
        paths.push(PathFigures {
            name,
            p50_ms: round3(stats.p50_ms),
            p99_ms: round3(stats.p99_ms),
            added_p50_ms: 0.0,
            added_p99_ms: 0.0,
            errors: stats.errors,
            open_loop: stats,
            wrk: figures,
        });
    }
    let (d50, d99) = (paths[0].p50_ms, paths[0].p99_ms);
    for p in &mut paths {
        p.added_p50_ms = round3(p.p50_ms - d50);
        p.added_p99_ms = round3(p.p99_ms - d99);
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { round3(a / b) } else { f64::NAN };
    Ok(ReferenceReport {
        rps: args.rps,
        seconds: args.seconds,
        wrk_connections: args.wrk_connections,
        wrk_threads: args.wrk_threads,
        wrk_seconds: args.wrk_seconds,
        max_rps_vs_nginx: ratio(paths[SPILLWAY].wrk.rps, paths[NGINX].wrk.rps),
        hyper_vs_nginx: ratio(paths[FLOOR].wrk.rps, paths[NGINX].wrk.rps),
        max_rps_vs_hyper: ratio(paths[SPILLWAY].wrk.rps, paths[FLOOR].wrk.rps),
        hyper_added_p99_vs_nginx: ratio(paths[FLOOR].added_p99_ms, paths[NGINX].added_p99_ms),
        added_p99_vs_nginx: ratio(paths[SPILLWAY].added_p99_ms, paths[NGINX].added_p99_ms),
        spillway_added_p50_ms: paths[SPILLWAY].added_p50_ms,
        redis: paths.get(SPILLWAY_REDIS).map(|r| RedisReference {
            state: args
                .state
                .as_deref()
                .map(state::without_password)
                .unwrap_or_default(),
            quota_rpm: quota_rpm.unwrap_or_default(),
            lease_fraction: args.lease_fraction,
            max_rps_vs_memory: ratio(r.wrk.rps, paths[SPILLWAY].wrk.rps),
            added_p50_over_memory_ms: round3(r.p50_ms - paths[SPILLWAY].p50_ms),
        }),
        paths,
    })
}

/// The fixed-rate run of every path at once, on the generator's own thread and runtime.
async fn open_loop(
    args: &OverheadArgs,
    urls: &[String],
    body: Bytes,
) -> anyhow::Result<load::Outcome> {
    let endpoints: Vec<Endpoint> = urls
        .iter()
        .map(|url| Endpoint {
            url: url.clone(),
            api_key: API_KEY.to_string(),
        })
        .collect();
    let (rps, seconds, warmup) = (args.rps, args.seconds, args.warmup);
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench-reference".into())
        .spawn(move || {
            let run = || -> anyhow::Result<load::Outcome> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async {
                    let client = load::client(4096)?;
                    let load_for = |secs: f64| Load {
                        endpoints: endpoints.clone(),
                        rps,
                        duration: Duration::from_secs_f64(secs),
                        body: body.clone(),
                        stream: false,
                        timeout: Duration::from_secs(10),
                        max_outstanding: None,
                        seed: secs.to_bits() ^ 0x5eed,
                    };
                    if warmup > 0.0 {
                        load::run(&client, &load_for(warmup)).await;
                    }
                    Ok(load::run(&client, &load_for(seconds)).await)
                })
            };
            let _ = tx.send(run());
        })
        .context("starting the load generator's thread")?;
    rx.await
        .context("the load generator's thread ended without a result")?
}

pub fn print_table(r: &ReferenceReport) {
    println!(
        "\nnginx as the reference proxy (non-streamed chat completions; upstream: an nginx mock of the OpenAI API)"
    );
    println!(
        "{:<14} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10} {:>7}",
        "path", "p50", "p99", "added p50", "added p99", "max rps", "wrk p99", "errors"
    );
    for p in &r.paths {
        println!(
            "{:<14} {:>6.3} ms {:>6.3} ms {:>7.3} ms {:>7.3} ms {:>10.0} {:>7.3} ms {:>7}",
            p.name,
            p.p50_ms,
            p.p99_ms,
            p.added_p50_ms,
            p.added_p99_ms,
            p.wrk.rps,
            p.wrk.p99_ms,
            p.errors as u64 + p.wrk.errors
        );
    }
    println!(
        "\nspillway vs nginx: max rps {:.2}×, added p99 {}; spillway added p50 {:.3} ms \
         (p50/p99 at {} requests/s per path, side by side; max rps: wrk -c{} -t{} for {} s per path, one after the other)",
        r.max_rps_vs_nginx,
        times(r.added_p99_vs_nginx),
        r.spillway_added_p50_ms,
        r.rps,
        r.wrk_connections,
        r.wrk_threads,
        r.wrk_seconds
    );
    println!(
        "the floor of Spillway's HTTP stack (hyper, forwarding only): max rps {:.2}× nginx's, \
         added p50 {:.3} ms, added p99 {}; spillway's max rps {:.2}× the floor's",
        r.hyper_vs_nginx,
        r.paths[FLOOR].added_p50_ms,
        times(r.hyper_added_p99_vs_nginx),
        r.max_rps_vs_hyper
    );
    if let Some(redis) = &r.redis {
        println!(
            "spillway with Redis state ({}) vs memory: max rps {:.2}×, added p50 {:.3} ms (tenant quota {}/min in both, lease_fraction {})",
            redis.state,
            redis.max_rps_vs_memory,
            redis.added_p50_over_memory_ms,
            redis.quota_rpm,
            redis.lease_fraction
        );
    }
}

/// A ratio to nginx's added p99, or why there is none.
fn times(ratio: f64) -> String {
    if ratio.is_finite() {
        format!("{ratio:.2}× nginx's")
    } else {
        "n/a (nginx added none at p99 in this run)".to_string()
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
