//! `spillway demo`: cross-region inference at work, in one process.
//!
//! Six simulated regions in two geographies and a gateway with a listener for each US region
//! run on loopback. A burst from us-east-1 at about twice that region's capacity runs three
//! times, against a fresh gateway each time, while us-east-2 and us-west-2 carry a light local
//! load:
//!
//! * `in-region`: the plain model id, served in us-east-1 only (what a client gets without a
//!   profile): about half the burst is throttled;
//! * `cross-region`: the `us.` profile: the burst spills to the other US regions;
//! * `cross-region-outage`: the same, with us-east-2 taken down a third of the way in: its new
//!   requests fail over, and nothing fails.
//!
//! Residency is judged from the simulators' own records (which region saw which request id),
//! not from the gateway's headers.
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use spillway_bench::client::{LoadClient, RequestSpec};
use spillway_bench::summary::{Summary, residency_violations};
use spillway_gateway::{Config, Gateway};

const MODEL: &str = "demo.chat-small-v1:0";
const KEY: &str = "spillway-demo-key";
const SOURCE: &str = "us-east-1";
const US: [&str; 3] = ["us-east-1", "us-east-2", "us-west-2"];

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
    /// Seconds of burst per scenario.
    #[arg(long, default_value_t = 15)]
    pub seconds: u64,
    /// Concurrent sequences per region (its capacity).
    #[arg(long, default_value_t = 8)]
    pub concurrency: u32,
    /// Burst rate as a multiple of the source region's capacity.
    #[arg(long, default_value_t = 2.0)]
    pub burst: f64,
    /// Seed of the arrival process.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// Request shape: prompt and output tokens, and the simulated engine's speeds.
const PROMPT_TOKENS: u64 = 200;
const MAX_TOKENS: u64 = 24;
const PREFILL_TPS: f64 = 4000.0;
const DECODE_TPS: f64 = 40.0;
const BACKGROUND_RPS: f64 = 2.0;
const TTFT_SLO: Duration = Duration::from_secs(1);

fn demo_config(concurrency: u32) -> String {
    let mut t = String::from("[routing]\nmax_attempts = 3\nfirst_byte_timeout_ms = 5000\n\n");
    let regions = [
        ("us-east-1", "us", 1),
        ("us-east-2", "us", 12),
        ("us-west-2", "us", 70),
        ("eu-central-1", "eu", 90),
        ("eu-west-1", "eu", 80),
        ("eu-west-3", "eu", 85),
    ];
    for (r, g, _) in regions {
        t += &format!("[[regions]]\nname = \"{r}\"\ngeography = \"{g}\"\n\n");
    }
    for (r, _, ms) in regions.iter().skip(1) {
        t += &format!("[[rtt]]\nbetween = [\"us-east-1\", \"{r}\"]\nms = {ms}\n\n");
    }
    t += "[[rtt]]\nbetween = [\"us-east-2\", \"us-west-2\"]\nms = 50\n\n";
    t += &format!("[[models]]\nid = \"{MODEL}\"\n\n");
    for (r, _, ms) in regions {
        t += &format!(
            "[[deployments]]\nmodel = \"{MODEL}\"\nregion = \"{r}\"\nmax_in_flight = {concurrency}\n\
             upstream = {{ kind = \"sim\", concurrency = {concurrency}, queue_limit = 4, prefill_tokens_per_sec = {PREFILL_TPS:.1}, decode_tokens_per_sec = {DECODE_TPS:.1}, rtt_ms = {ms} }}\n\n"
        );
    }
    t += "[[tenants]]\nname = \"demo\"\napi_keys = [{ sha256 = \"4c632e7135929907209e422fd8a878aca2a19f7a3ed1089e7c3e1c53c44bfa69\" }]\n\n";
    t += &format!("[[tenants.quotas]]\nmodel = \"{MODEL}\"\nrpm = 100000\ntpm = 100000000\n\n");
    for r in US {
        t += &format!("[[listeners]]\nbind = \"127.0.0.1:0\"\nregion = \"{r}\"\n\n");
    }
    t
}

/// Requests per second one region can serve: slots / time per request.
fn region_capacity_rps(concurrency: u32) -> f64 {
    let service = PROMPT_TOKENS as f64 / PREFILL_TPS + MAX_TOKENS as f64 / DECODE_TPS;
    f64::from(concurrency) / service
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let capacity = region_capacity_rps(args.concurrency);
    let rate = capacity * args.burst;
    eprintln!(
        "spillway demo: {SOURCE} serves about {capacity:.1} req/s ({} slots, {PROMPT_TOKENS} prompt + {MAX_TOKENS} output tokens); \
         bursting {rate:.1} req/s at it for {} s, with {BACKGROUND_RPS} req/s of local load in us-east-2 and us-west-2.",
        args.concurrency, args.seconds
    );
    let scenarios = [
        ("in-region", MODEL.to_string(), false),
        ("cross-region", format!("us.{MODEL}"), false),
        ("cross-region-outage", format!("us.{MODEL}"), true),
    ];
    let mut summaries = Vec::new();
    for (name, model, outage) in scenarios {
        summaries.push(scenario(&args, name, &model, outage, rate).await?);
    }
    print_table(&summaries);
    if args.json {
        println!("{}", serde_json::json!({ "scenarios": summaries }));
    }
    Ok(())
}

async fn scenario(
    args: &DemoArgs,
    name: &str,
    model: &str,
    outage: bool,
    rate: f64,
) -> anyhow::Result<Summary> {
    let cfg = Config::parse(&demo_config(args.concurrency), "<demo>")?;
    let gateway = Gateway::start(cfg).await?;
    let window = Duration::from_secs(args.seconds);
    let mut rng = SmallRng::seed_from_u64(args.seed);
    let mut specs = Vec::new();
    let url = |r: &str| {
        gateway
            .addr(r)
            .map(|a| format!("http://{a}"))
            .unwrap_or_default()
    };
    for (i, at) in spillway_bench::poisson(rate, window, &mut rng)
        .into_iter()
        .enumerate()
    {
        specs.push(RequestSpec {
            id: format!("{name}-burst-{i}"),
            at,
            base_url: url(SOURCE),
            source: SOURCE.into(),
            model: model.into(),
            prompt_tokens: PROMPT_TOKENS,
            max_tokens: MAX_TOKENS,
        });
    }
    let burst = specs.len();
    for r in &US[1..] {
        for (i, at) in spillway_bench::poisson(BACKGROUND_RPS, window, &mut rng)
            .into_iter()
            .enumerate()
        {
            specs.push(RequestSpec {
                id: format!("{name}-bg-{r}-{i}"),
                at,
                base_url: url(r),
                source: (*r).into(),
                model: MODEL.into(),
                prompt_tokens: PROMPT_TOKENS,
                max_tokens: MAX_TOKENS,
            });
        }
    }
    let source_of: HashMap<String, String> = specs
        .iter()
        .map(|s| (s.id.clone(), s.source.clone()))
        .collect();
    let client = LoadClient::new(KEY)?;
    let progress = client.progress.clone();
    let run = tokio::spawn({
        let client = client.clone();
        async move { client.run(specs).await }
    });
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut outage_done = !outage;
    while !run.is_finished() {
        tick.tick().await;
        let t = started.elapsed();
        if !outage_done && t >= window / 3 {
            if let Some(sim) = gateway.sim(MODEL, "us-east-2") {
                sim.set_fault(spillway_sim::Fault {
                    outage: true,
                    ..Default::default()
                });
                eprintln!("  {name}: us-east-2 taken down at {:.1} s", t.as_secs_f64());
            }
            outage_done = true;
        }
        let done = (t.as_secs_f64() / window.as_secs_f64()).min(1.0);
        let bar = (done * 30.0) as usize;
        eprintln!(
            "  {name:<20} [{}{}] {:>3.0}%  all traffic: sent {:>4}  ok {:>4}  throttled {:>4}  failed {:>3}",
            "#".repeat(bar),
            ".".repeat(30 - bar),
            done * 100.0,
            progress.sent.load(Ordering::Relaxed),
            progress.ok.load(Ordering::Relaxed),
            progress.throttled.load(Ordering::Relaxed),
            progress.failed.load(Ordering::Relaxed),
        );
    }
    let results = run.await?;
    // Residency from the simulators' own records: every request id any region saw.
    let mut seen = Vec::new();
    for sim in gateway.sims() {
        for rec in sim.served() {
            if let Some(id) = rec.request_id {
                seen.push((id, rec.region.clone()));
            }
        }
    }
    let allowed = allowed_sets(gateway.config(), model);
    let violations = residency_violations(&seen, &source_of, &allowed);
    gateway.shutdown(Duration::from_secs(5)).await;
    let burst_results: Vec<_> = results.into_iter().take(burst).collect();
    Ok(Summary::of(
        name,
        &burst_results,
        window,
        TTFT_SLO,
        violations,
    ))
}

/// For each source region: where `model` may be served from it (the profile's destination set,
/// or the source alone for a plain model id). Background requests use the plain model id.
fn allowed_sets(cfg: &Config, model: &str) -> HashMap<String, HashSet<String>> {
    let mut out = HashMap::new();
    for r in US {
        let set: HashSet<String> = match (model == MODEL || r != SOURCE, cfg.profile_ix(model)) {
            (false, Some(p)) => cfg
                .region_ix(r)
                .and_then(|s| cfg.profiles[p].destinations.get(&s))
                .map(|d| d.iter().map(|x| cfg.region_name(*x).to_string()).collect())
                .unwrap_or_default(),
            _ => HashSet::from([r.to_string()]),
        };
        out.insert(r.to_string(), set);
    }
    out
}

fn print_table(rows: &[Summary]) {
    println!();
    println!(
        "{:<20} {:>7} {:>7} {:>9} {:>6} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10}",
        "scenario",
        "offered",
        "served",
        "throttled",
        "failed",
        "goodput/s",
        "TTFT p50",
        "TTFT p99",
        "locality",
        "spilled",
        "residency"
    );
    for s in rows {
        println!(
            "{:<20} {:>7} {:>7} {:>9} {:>6} {:>9.1} {:>7.0}ms {:>7.0}ms {:>8.1}% {:>7.1}% {:>10}",
            s.name,
            s.offered,
            s.served,
            s.throttled,
            s.failed,
            s.goodput_rps,
            s.ttft_p50_ms,
            s.ttft_p99_ms,
            s.locality * 100.0,
            s.spilled * 100.0,
            s.residency_violations
        );
    }
    if let [inr, cross, ..] = rows
        && inr.served > 0
    {
        println!(
            "\ncross-region served {:.2}x what in-region served; residency violations are counted from the simulators' own records.",
            cross.served as f64 / inr.served as f64
        );
    }
}
