//! `spillway`: serve, demo, bench, sim, check-config, tls-cert, usage report.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use spillway_embedded::Stack;
use spillway_gateway::Config;

mod bench_cmd;
mod demo;
mod midstream;
mod output;
mod overhead;
mod signals;
mod tls_cmd;
mod usage;

#[derive(Parser)]
#[command(
    name = "spillway",
    version,
    about = "A self-hostable cross-region inference router for LLM serving"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: the embedded default (six simulated regions, 127.0.0.1:8080 as
    /// us-east-1, demo key `spillway-demo-key`) or a configuration file.
    Serve {
        /// A TOML configuration file; without it, the embedded default runs.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print the embedded default configuration and exit.
        #[arg(long)]
        print_default_config: bool,
        /// Listen here instead of the configured address (only for a configuration with one
        /// listener, such as the embedded default); `127.0.0.1:0` picks a free port.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Serve the admin routes (`/dashboard`, `/metrics`, `/healthz`, `/readyz`, `/admin/reload`) here
        /// instead of the configured `[admin] bind` (default 127.0.0.1:9090).
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// Serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN) on the only listener with this PEM
        /// certificate chain (`spillway tls-cert` makes one for trying it).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key of `--tls-cert`, PEM.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Reload a running gateway's configuration file (as SIGHUP does), through its admin
    /// listener; prints what was reloaded, or every error (the running configuration is kept).
    Reload {
        /// The gateway's admin address.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: SocketAddr,
        /// An environment variable holding the admin token (`[admin] token_env`).
        #[arg(long)]
        token_env: Option<String>,
    },
    /// Show cross-region inference at work: a burst at about twice one region's capacity, run
    /// in-region, cross-region, and cross-region with a region taken down mid-run.
    Demo(demo::DemoArgs),
    /// Compare routing policies side by side on the same arrivals (a trace replay, Poisson or
    /// gamma bursts) against the oracle bound; `bench overhead` measures the gateway's own cost.
    Bench(Box<bench_cmd::BenchArgs>),
    /// Run one simulated region (an OpenAI-compatible LLM backend with a capacity model and
    /// fault injection).
    Sim(SimArgs),
    /// Write a throw-away CA (ca.pem) and a server certificate it signed (cert.pem, key.pem),
    /// for trying a TLS listener locally.
    TlsCert(tls_cmd::TlsCertArgs),
    /// Usage from the audit log: `usage report` adds up requests, tokens and cost (at the
    /// source region's price) per tenant, tag, region, model, profile or outcome.
    Usage(usage::UsageArgs),
    /// Validate a configuration file and print the resolved inference profiles.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
}

#[derive(clap::Args)]
struct SimArgs {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// The region this simulator stands for.
    #[arg(long)]
    region: String,
    /// Concurrent sequences (continuous-batching slots).
    #[arg(long, default_value_t = 8)]
    concurrency: u32,
    /// Waiting requests beyond which it answers 429.
    #[arg(long, default_value_t = 16)]
    queue_limit: u32,
    /// Prefill speed, input tokens per second.
    #[arg(long, default_value_t = 4000.0)]
    prefill_tps: f64,
    /// Decode speed per sequence, output tokens per second.
    #[arg(long, default_value_t = 50.0)]
    decode_tps: f64,
    /// Injected network round trip, milliseconds.
    #[arg(long, default_value_t = 0.0)]
    rtt_ms: f64,
    /// Service times are divided by this (30 replays an hour in two minutes).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// The model's text seed: answers depend on it and on the prompt (give every region of a
    /// model the same one). Without it every answer is the same fixed word cycle.
    #[arg(long)]
    text_seed: Option<u64>,
    /// Prefix (KV) cache capacity in 512-token blocks: a prompt's cached leading blocks are
    /// not prefilled again and usage reports them as `prompt_tokens_details.cached_tokens`.
    /// 0 turns the cache off.
    #[arg(long, default_value_t = 0)]
    prefix_cache_blocks: u64,
}

#[cfg(all(feature = "alloc-mimalloc", not(feature = "alloc-jemalloc")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "alloc-jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc gives freed pages back to the OS as they decay (10 s); without a background thread
/// that happens only when the process allocates again, so an idle gateway would keep a flood's
/// memory. One thread, not one per CPU: it is enough, and the thread count stays flat.
#[cfg(feature = "alloc-jemalloc")]
fn allocator_setup() {
    let threads = tikv_jemalloc_ctl::max_background_threads::write(1)
        .and_then(|()| tikv_jemalloc_ctl::background_thread::write(true));
    if let Err(e) = threads {
        eprintln!(
            "spillway: jemalloc background thread not started ({e}); memory is returned on allocation only"
        );
    }
}

#[cfg(not(feature = "alloc-jemalloc"))]
fn allocator_setup() {}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    allocator_setup();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The error and its causes, one line each; no backtrace (RUST_BACKTRACE or not):
            // these are the user's mistakes and the world's, not the program's.
            eprintln!("spillway: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // The demo prints its own progress and table; the server logs every request.
    let default_filter = match cli.command {
        Command::Demo(_) | Command::Bench(_) | Command::Usage(_) => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SPILLWAY_LOG")
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve {
            config,
            print_default_config,
            listen,
            admin,
            tls_cert,
            tls_key,
        } => {
            if print_default_config {
                print!("{}", spillway_gateway::config::embedded::DEFAULT_TOML);
                return Ok(());
            }
            let tls = tls_cert.zip(tls_key);
            serve(config, listen, admin, tls).await
        }
        Command::Reload { admin, token_env } => reload(admin, token_env).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Bench(args) => bench_cmd::run(*args).await,
        Command::Sim(args) => sim(args).await,
        Command::CheckConfig { file } => check_config(&file),
        Command::TlsCert(args) => tls_cmd::run(&args),
        Command::Usage(args) => usage::run(args),
    }
}

async fn serve(
    config: Option<PathBuf>,
    listen: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    tls: Option<(PathBuf, PathBuf)>,
) -> anyhow::Result<()> {
    let mut cfg = match &config {
        Some(path) => Config::load(path)?,
        None => Config::embedded_default()?,
    };
    if let Some(addr) = listen {
        cfg.override_listen(addr)?;
    }
    if let Some(addr) = admin {
        cfg.override_admin(addr);
    }
    let plain = tls.is_none();
    if let Some((cert, key)) = tls {
        tls_cmd::serve_tls(&mut cfg, cert, key)?;
    }
    let grace = cfg.shutdown_grace;
    let stack = Stack::start(cfg).await.context("starting the gateway")?;
    let running = stack.gateway().config();
    for ((region, addr), l) in stack
        .gateway()
        .listeners()
        .into_iter()
        .zip(&running.listeners)
    {
        let scheme = if l.tls.is_some() { "https" } else { "http" };
        eprintln!("spillway: listening on {scheme}://{addr} as {region}");
    }
    eprintln!(
        "spillway: admin on http://{} (/dashboard, /metrics, /healthz, /readyz, POST /admin/reload)",
        stack.gateway().admin_addr()
    );
    if config.is_none() && listen.is_none() && plain {
        eprintln!(
            "spillway: embedded default; try:\n  curl -s http://127.0.0.1:8080/v1/chat/completions -H 'Authorization: Bearer spillway-demo-key' -H 'content-type: application/json' -d '{{\"model\":\"us.demo.chat-small-v1:0\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello\"}}]}}'"
        );
    }
    let stop = signals::until_stop(stack.gateway()).await;
    let clean = match stop {
        signals::Stop::Interrupt => {
            eprintln!(
                "spillway: stopping; letting in-flight requests finish (up to {}s)",
                grace.as_secs()
            );
            stack.shutdown(grace).await
        }
        signals::Stop::Terminate => {
            let delay = stack.gateway().config().edge.drain_delay;
            eprintln!(
                "spillway: draining: /readyz fails now, new connections stop in {}s, in-flight requests get up to {}s",
                delay.as_secs_f64(),
                grace.as_secs()
            );
            stack.drain(delay, grace).await
        }
    };
    if !clean {
        eprintln!("spillway: shutdown deadline reached; remaining requests were cut off");
    }
    Ok(())
}

/// `spillway reload`: `POST /admin/reload` on a running gateway.
async fn reload(admin: SocketAddr, token_env: Option<String>) -> anyhow::Result<()> {
    let mut req = reqwest::Client::new().post(format!("http://{admin}/admin/reload"));
    if let Some(var) = token_env {
        let token = std::env::var(&var).with_context(|| format!("reading {var}"))?;
        req = req.bearer_auth(token);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("no gateway admin listener answers on {admin}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status.is_success() {
        print!("{text}");
        Ok(())
    } else {
        anyhow::bail!("{}", text.trim_end())
    }
}

async fn sim(a: SimArgs) -> anyhow::Result<()> {
    let cfg = spillway_sim::SimConfig {
        region: a.region.clone(),
        concurrency: a.concurrency,
        queue_limit: a.queue_limit,
        prefill_tokens_per_sec: a.prefill_tps,
        decode_tokens_per_sec: a.decode_tps,
        rtt: Duration::from_secs_f64(a.rtt_ms.max(0.0) / 1000.0),
        time_scale: a.time_scale,
        text_seed: a.text_seed,
        prefix_cache_blocks: a.prefix_cache_blocks,
        ..spillway_sim::SimConfig::default()
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(a.host, a.port))
        .await
        .with_context(|| format!("binding {}:{}", a.host, a.port))?;
    let handle = spillway_sim::spawn(cfg, listener).await?;
    // One line on stdout with the address, for scripts that start it on port 0.
    println!(
        "spillway-sim {} listening on http://{}",
        a.region,
        handle.addr()
    );
    signals::shutdown_signal().await;
    handle.shutdown();
    Ok(())
}

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let cfg = Config::load(file)?;
    println!("{}: OK", file.display());
    println!(
        "{} regions, {} models, {} deployments, {} tenants, {} listeners",
        cfg.regions.len(),
        cfg.models.len(),
        cfg.deployments.len(),
        cfg.tenants.len(),
        cfg.listeners.len()
    );
    println!("\ninference profiles (source region -> destination set, in preference order):");
    for p in &cfg.profiles {
        println!("  {}", p.id);
        let mut sources: Vec<_> = p.destinations.iter().collect();
        sources.sort_by_key(|(s, _)| s.0);
        for (s, dests) in sources {
            let d: Vec<&str> = dests.iter().map(|r| cfg.region_name(*r)).collect();
            println!("    {:<16} -> {}", cfg.region_name(*s), d.join(", "));
        }
    }
    Ok(())
}
