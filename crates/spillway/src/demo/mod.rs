//! `spillway demo`: cross-region inference at work, in one process.
//!
//! Six simulated regions in two geographies and a gateway with a listener for each US region
//! run on loopback. A burst from us-east-1 at about twice that region's capacity runs three
//! times, against fresh simulators and a fresh gateway each time, while us-east-2 and us-west-2
//! carry a light local load:
//!
//! * `in-region`: the plain model id, served in us-east-1 only (what a client gets without a
//!   profile): about half the burst is throttled;
//! * `cross-region`: the `us.` profile: the burst spills to the other US regions;
//! * `cross-region-outage`: the same, with us-east-2 taken down a third of the way in: its new
//!   requests fail over, and nothing fails;
//! * `cross-region-midstream`: the same `us.` profile burst, streamed, with mid-stream failover
//!   on (as in the embedded default) and us-east-1 breaking streams after their first [`BREAK_AFTER`] tokens from a third of the way
//!   in to two thirds: the fault turns through a connection reset, an SSE error event and a stall
//!   every 100 ms (the simulator takes one at a time), so all three kinds happen; a stall is
//!   noticed after `first_byte_timeout_ms`, 1 s in this scenario. Each broken stream is continued
//!   in us-east-2 or us-west-2 and the client sees one answer: nothing fails. Every simulator
//!   writes the same seeded text ([`crate::midstream`]) and each request has a prompt of its own,
//!   so `text_mismatches` counts streams whose text is not the unbroken answer to their prompt;
//!   `midstream_failovers` counts the streams a simulator served as a continuation (from its
//!   records), by kind of break in `midstream_kinds`. The set is full at times during the burst
//!   (new requests are throttled); a continuation still gets in, to a short wait in a
//!   destination's queue (the exchange's `resume`), so no broken stream is lost to a full set.
//!
//! With `--state redis://HOST:PORT` every scenario runs on **three gateway instances** sharing
//! that Redis (replicas behind a load balancer: each has the three US listeners, and requests
//! are spread over them in turn), and two scenarios are added ([`shared`]): `shared-quota`
//! measures how far the instances together admit beyond a tenant's cross-region quota
//! (`quota_overshoot`), and `redis-outage` makes Redis unavailable for a third of the run
//! (`CLIENT PAUSE … ALL` through a connection of its own) and counts the requests that failed
//! (`redis_outage_failed`).
//!
//! Residency is judged from the simulators' own records (which region saw which request id),
//! not from the gateway's headers. Every load is streamed (OpenAI chat completions with
//! `stream: true`).
use std::time::Duration;

use serde_json::{Value, json};
use spillway_bench::summary::Summary;
use spillway_sim::SimHandle;

mod midstream;
pub(crate) mod scenario;
mod shared;

use scenario::{Fault, Load, Scenario};

const MODEL: &str = "demo.chat-small-v1:0";
const KEY: &str = "spillway-demo-key";
const SOURCE: &str = "us-east-1";
const US: [&str; 3] = ["us-east-1", "us-east-2", "us-west-2"];
/// Region, geography and RTT from us-east-1 in milliseconds.
const REGIONS: [(&str, &str, u32); 6] = [
    ("us-east-1", "us", 1),
    ("us-east-2", "us", 12),
    ("us-west-2", "us", 70),
    ("eu-central-1", "eu", 90),
    ("eu-west-1", "eu", 80),
    ("eu-west-3", "eu", 85),
];

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
    /// Run on three gateway instances sharing this Redis (`redis://HOST:PORT`), and add the
    /// shared-quota and Redis-outage scenarios. Keys go under a prefix of their own; the outage
    /// pauses every client of that Redis for a third of a scenario.
    #[arg(long, value_name = "URL")]
    pub state: Option<String>,
    /// Run only these scenarios (comma-separated names; default: all).
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,
}

/// Request shape: prompt and output tokens, and the simulated engine's speeds.
const PROMPT_TOKENS: u64 = 200;
const MAX_TOKENS: u64 = 24;
const PREFILL_TPS: f64 = 4000.0;
const DECODE_TPS: f64 = 40.0;
const BACKGROUND_RPS: f64 = 2.0;
const TTFT_SLO: Duration = Duration::from_secs(1);
/// Tokens a broken stream of `cross-region-midstream` delivers before it breaks.
pub const BREAK_AFTER: u64 = 3;
/// `first_byte_timeout_ms` (also the longest silence between two chunks of a stream): 5 s, or
/// 1 s where streams stall, so that a stall is noticed within a second.
const FIRST_BYTE_TIMEOUT_MS: u64 = 5000;
const MIDSTREAM_FIRST_BYTE_TIMEOUT_MS: u64 = 1000;

/// Requests per second one region can serve: slots / time per request.
fn region_capacity_rps(concurrency: u32, max_tokens: u64) -> f64 {
    let service = PROMPT_TOKENS as f64 / PREFILL_TPS + max_tokens as f64 / DECODE_TPS;
    f64::from(concurrency) / service
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let capacity = region_capacity_rps(args.concurrency, MAX_TOKENS);
    let rate = capacity * args.burst;
    let redis = args
        .state
        .as_deref()
        .map(shared::Redis::parse)
        .transpose()?;
    eprintln!(
        "spillway demo: {SOURCE} serves about {capacity:.1} req/s ({} slots, {PROMPT_TOKENS} prompt + {MAX_TOKENS} output tokens); \
         bursting {rate:.1} req/s at it for {} s, with {BACKGROUND_RPS} req/s of local load in us-east-2 and us-west-2.",
        args.concurrency, args.seconds,
    );
    if let Some(r) = &redis {
        eprintln!(
            "  on {} gateway instances sharing {} (keys under {}:*)",
            shared::INSTANCES,
            r.display(),
            r.prefix
        );
    }
    let mut scenarios = single_gateway_scenarios(rate);
    let quota = redis.as_ref().map(|_| shared::QuotaPlan::new(args.seconds));
    if let Some(q) = &quota {
        scenarios.push(("shared-quota", q.scenario(Fault::None)));
        scenarios.push(("redis-outage", q.scenario(Fault::RedisPause)));
    }
    let names: Vec<&str> = scenarios.iter().map(|(n, _)| *n).collect();
    if let Some(bad) = args.scenarios.iter().find(|n| !names.contains(&n.as_str())) {
        anyhow::bail!(
            "--scenarios: no scenario {bad:?} (expected some of {}{})",
            names.join(", "),
            if redis.is_none() {
                "; shared-quota and redis-outage need --state"
            } else {
                ""
            }
        );
    }
    scenarios.retain(|(n, _)| args.scenarios.is_empty() || args.scenarios.iter().any(|a| a == n));
    let mut summaries = Vec::new();
    let mut rows = Vec::new();
    let mut extra = shared::Findings::default();
    for (name, s) in scenarios {
        let out = scenario::run(&args, name, &s, redis.as_ref(), quota.as_ref()).await?;
        extra.note(name, &out, quota.as_ref());
        rows.push(scenario_json(&out)?);
        summaries.push((out.summary, out.midstream));
    }
    print_table(&summaries);
    if let (Some(r), Some(q)) = (&redis, &quota) {
        extra.print(r, q);
    }
    if args.json {
        let mut v = json!({ "scenarios": rows });
        if let (Some(q), Some(obj)) = (&quota, v.as_object_mut()) {
            extra.add_to(obj, q);
        }
        println!("{v}");
    }
    Ok(())
}

/// The scenarios of one gateway: the burst at `rate` on the plain model id, on the profile, on
/// the profile with an outage, and on the profile with mid-stream breaks.
fn single_gateway_scenarios(rate: f64) -> Vec<(&'static str, Scenario)> {
    let burst = |rate, model: String, fault| Scenario {
        model,
        key: KEY,
        load: Load::Burst { rate },
        max_tokens: MAX_TOKENS,
        fault,
    };
    let profile = format!("us.{MODEL}");
    vec![
        ("in-region", burst(rate, MODEL.to_string(), Fault::None)),
        ("cross-region", burst(rate, profile.clone(), Fault::None)),
        (
            "cross-region-outage",
            burst(rate, profile.clone(), Fault::RegionOutage("us-east-2")),
        ),
        (
            "cross-region-midstream",
            burst(rate, profile, Fault::Midstream),
        ),
    ]
}

/// A scenario's row of `--json`: its summary, and for `cross-region-midstream` its figures.
fn scenario_json(out: &scenario::Outcome) -> anyhow::Result<Value> {
    let mut v = serde_json::to_value(&out.summary)?;
    if let (Some(m), Some(obj)) = (&out.midstream, v.as_object_mut()) {
        obj.insert("midstream_failovers".into(), json!(m.failovers));
        obj.insert("text_mismatches".into(), json!(m.text_mismatches));
        obj.insert("midstream_kinds".into(), json!(m.by_kind));
    }
    Ok(v)
}

/// One simulator per region of [`REGIONS`] on loopback, with `concurrency` slots, a queue of 4,
/// the demo's request speeds but `decode_tps`, and the model's seeded text.
pub(crate) async fn start_sims(
    concurrency: u32,
    decode_tps: f64,
) -> anyhow::Result<Vec<SimHandle>> {
    let mut sims = Vec::new();
    for (region, _, ms) in REGIONS {
        let cfg = spillway_sim::SimConfig {
            region: region.to_string(),
            concurrency,
            queue_limit: 4,
            prefill_tokens_per_sec: PREFILL_TPS,
            decode_tokens_per_sec: decode_tps,
            rtt: Duration::from_millis(u64::from(ms)),
            text_seed: Some(crate::midstream::TEXT_SEED),
            ..spillway_sim::SimConfig::default()
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        sims.push(spillway_sim::spawn(cfg, listener).await?);
    }
    Ok(sims)
}

/// What a gateway instance's configuration turns on beyond the sims and the tenants.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Knobs {
    /// `routing.first_byte_timeout_ms`.
    pub first_byte_timeout_ms: u64,
    /// The model's `midstream_failover`.
    pub midstream_failover: bool,
}

/// The gateway configuration of one instance: every region's simulator at `sims` (region, base
/// URL), the demo tenant, the quota tenant when `quota` is given, a listener per US region, and
/// `[state]` when `state` is given (`(url, key_prefix)`).
pub(crate) fn demo_config(
    sims: &[(String, String)],
    max_in_flight: u32,
    knobs: Knobs,
    quota: Option<&shared::QuotaPlan>,
    state: Option<(&str, &str)>,
) -> String {
    let mut t = String::new();
    if let Some((url, prefix)) = state {
        t += &format!(
            "[state]\nkind = \"redis\"\nurl = {url:?}\ninstances = {}\nkey_prefix = {prefix:?}\n\n",
            shared::INSTANCES
        );
    }
    t += &format!(
        "[routing]\nmax_attempts = 3\nfirst_byte_timeout_ms = {}\n\n",
        knobs.first_byte_timeout_ms
    );
    for (r, g, _) in REGIONS {
        t += &format!("[[regions]]\nname = \"{r}\"\ngeography = \"{g}\"\n\n");
    }
    for (r, _, ms) in REGIONS.iter().skip(1) {
        t += &format!("[[rtt]]\nbetween = [\"us-east-1\", \"{r}\"]\nms = {ms}\n\n");
    }
    t += "[[rtt]]\nbetween = [\"us-east-2\", \"us-west-2\"]\nms = 50\n\n";
    t += &format!(
        "[[models]]\nid = \"{MODEL}\"\nmidstream_failover = {}\n\n",
        knobs.midstream_failover
    );
    for (r, url) in sims {
        t += &format!(
            "[[deployments]]\nmodel = \"{MODEL}\"\nregion = \"{r}\"\nmax_in_flight = {max_in_flight}\n\
             upstream = {{ kind = \"sim\", base_url = \"{url}\" }}\n\n"
        );
    }
    t += "[[tenants]]\nname = \"demo\"\napi_keys = [{ sha256 = \"4c632e7135929907209e422fd8a878aca2a19f7a3ed1089e7c3e1c53c44bfa69\" }]\n\n";
    t += &format!("[[tenants.quotas]]\nmodel = \"{MODEL}\"\nrpm = 100000\ntpm = 100000000\n\n");
    if let Some(q) = quota {
        t += &q.tenant_toml();
    }
    for r in US {
        t += &format!("[[listeners]]\nbind = \"127.0.0.1:0\"\nregion = \"{r}\"\n\n");
    }
    t += "[admin]\nbind = \"127.0.0.1:0\"\n\n";
    t
}

fn print_table(rows: &[(Summary, Option<scenario::MidstreamFigures>)]) {
    println!();
    println!(
        "{:<22} {:>7} {:>7} {:>9} {:>6} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10}",
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
    for (s, _) in rows {
        println!(
            "{:<22} {:>7} {:>7} {:>9} {:>6} {:>9.1} {:>7.0}ms {:>7.0}ms {:>8.1}% {:>7.1}% {:>10}",
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
    if let [(inr, _), (cross, _), ..] = rows
        && inr.name == "in-region"
        && cross.name == "cross-region"
        && inr.served > 0
    {
        println!(
            "\ncross-region served {:.2}x what in-region served; residency violations are counted from the simulators' own records.",
            cross.served as f64 / inr.served as f64
        );
    }
    for (s, m) in rows {
        if let Some(m) = m {
            let kinds: Vec<String> = m.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
            println!(
                "{}: {} streams broke in {SOURCE} after {BREAK_AFTER} tokens and were continued elsewhere ({}); \
                 {} failed; text mismatches against the unbroken answers: {}.",
                s.name,
                m.failovers,
                kinds.join(", "),
                s.failed,
                m.text_mismatches
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_valid_with_and_without_state() {
        let sims: Vec<(String, String)> = REGIONS
            .iter()
            .map(|(r, _, _)| (r.to_string(), "http://127.0.0.1:1".to_string()))
            .collect();
        let knobs = Knobs {
            first_byte_timeout_ms: FIRST_BYTE_TIMEOUT_MS,
            midstream_failover: true,
        };
        let plain = demo_config(&sims, 8, knobs, None, None);
        let cfg = spillway_gateway::Config::parse(&plain, "<test>").unwrap();
        assert_eq!(cfg.listeners.len(), 3);
        assert!(cfg.models[0].midstream_failover);
        let q = shared::QuotaPlan::new(15);
        let with = demo_config(
            &sims,
            3,
            knobs,
            Some(&q),
            Some(("redis://127.0.0.1:1", "p")),
        );
        let cfg = spillway_gateway::Config::parse(&with, "<test>").unwrap();
        assert_eq!(cfg.tenants.len(), 2);
    }
}
