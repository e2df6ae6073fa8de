//! `spillway bench midstream`: streams that break after their first tokens, with mid-stream
//! failover on and off, side by side.
//!
//! # Run
//!
//! For each kind of break (`--kinds`: a connection reset, an SSE error event, a stall; see
//! [`crate::midstream`]) two runs, failover **on** then **off**, each on a fresh stack: the
//! demo's six simulated regions ([`crate::demo::start_sims`], `--concurrency` slots each, the
//! same seeded text everywhere) and an in-process gateway over them
//! ([`crate::demo::demo_config`]: the `us.` profile, three US listeners, `max_in_flight` equal to
//! the slots, `first_byte_timeout_ms` = `--stall-timeout-ms`, and `midstream_failover` on or
//! off).
//!
//! * **Load**: `--streams` streamed chat completions on the `us.` profile from us-east-1, one
//!   every `--seconds / --streams` (open loop, the same instants in both runs), each with a
//!   prompt of its own and `max_tokens = --max-tokens`. The slots are many, so the source serves
//!   them all unless it is ejected.
//! * **Fault schedule**: us-east-1 breaks the streams that start during the first `--fault-ms`
//!   of every `--fault-period-ms` (from the run's start, the same in both runs) after their
//!   first `--break-after` tokens; the rest of the time it is healthy. Short bursts of breaks
//!   between good streams keep the source under the gateway's three consecutive failures that
//!   eject it, as a flaky node would, so most streams still start there.
//!
//! # Figures (per run, [`report`])
//!
//! * **broken**: streams whose first leg us-east-1 recorded as broken this way (its own record);
//! * **lost**: streams that did not end with `[DONE]` (an error event, a cut, or no 200);
//! * **continued**: streams a simulator served as a continuation (its records);
//! * **text mismatches** and **residency violations** as in the demo (the unbroken seeded answer;
//!   the simulators' records against the profile's destination set);
//! * **the gap at the break**: for each continued stream, the longest gap between two consecutive
//!   content chunks its client received (the time to notice the break, then the new leg's time
//!   to first token), p50 and p99; and for reference the gaps between consecutive chunks of the
//!   streams that were not continued (the normal inter-token gap).
//!
//! `--json FILE` writes the setup and the rows.
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use spillway_bench::client::{LoadClient, RequestSpec, tagged_prompt};
use spillway_gateway::{Config, Gateway};
use spillway_sim::SimHandle;

use crate::demo::{Knobs, demo_config, scenario};
use crate::midstream::{self, Kind};

mod report;

use report::{Row, Setup};

const KEY: &str = "spillway-demo-key";
const MODEL: &str = "demo.chat-small-v1:0";
const SOURCE: &str = "us-east-1";
const PROMPT_TOKENS: u64 = 200;
const DECODE_TPS: f64 = 40.0;

#[derive(clap::Args, Debug, Clone)]
pub struct MidstreamArgs {
    /// Streams per run.
    #[arg(long, default_value_t = 300)]
    pub streams: usize,
    /// The streams start evenly over this many seconds.
    #[arg(long, default_value_t = 15.0)]
    pub seconds: f64,
    /// Tokens a broken stream delivers before it breaks.
    #[arg(long, default_value_t = 3)]
    pub break_after: u64,
    /// Output tokens of each stream (`max_tokens`).
    #[arg(long, default_value_t = 24)]
    pub max_tokens: u64,
    /// The kinds of break, one pair of runs each (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Kind::ALL)]
    pub kinds: Vec<Kind>,
    /// us-east-1 breaks the streams that start during the first this-many milliseconds …
    #[arg(long, default_value_t = 100)]
    pub fault_ms: u64,
    /// … of every this-many milliseconds.
    #[arg(long, default_value_t = 500)]
    pub fault_period_ms: u64,
    /// The gateway's `first_byte_timeout_ms`: how long a stalled stream goes without a chunk
    /// before the gateway gives up on it.
    #[arg(long, default_value_t = 1000)]
    pub stall_timeout_ms: u64,
    /// Slots of each simulated region, and the gateway's `max_in_flight` for it.
    #[arg(long, default_value_t = 64)]
    pub concurrency: u32,
    /// Output tokens per second of each stream.
    #[arg(long, default_value_t = DECODE_TPS)]
    pub decode_tps: f64,
    /// Write the setup and the rows as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

fn check(a: &MidstreamArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.streams > 0, "--streams must be at least 1");
    anyhow::ensure!(
        a.seconds.is_finite() && a.seconds > 0.0,
        "--seconds must be a positive number"
    );
    anyhow::ensure!(
        a.break_after > 0 && a.break_after < a.max_tokens,
        "--break-after must be at least 1 and below --max-tokens (a stream must break part-way)"
    );
    anyhow::ensure!(
        a.fault_ms > 0 && a.fault_ms <= a.fault_period_ms,
        "--fault-ms must be at least 1 and at most --fault-period-ms"
    );
    anyhow::ensure!(!a.kinds.is_empty(), "--kinds: give at least one kind");
    anyhow::ensure!(
        a.decode_tps.is_finite() && a.decode_tps > 0.0,
        "--decode-tps must be a positive number"
    );
    anyhow::ensure!(a.concurrency > 0, "--concurrency must be at least 1");
    Ok(())
}

pub async fn run(args: MidstreamArgs) -> anyhow::Result<()> {
    check(&args)?;
    let setup = Setup::of(&args);
    eprintln!("spillway bench midstream: {}", setup.describe());
    let mut rows = Vec::new();
    for kind in &args.kinds {
        for failover in [true, false] {
            let row = one_run(&args, *kind, failover).await?;
            eprintln!("  {}", row.line());
            rows.push(row);
        }
    }
    println!("\n{}", report::table(&setup, &rows));
    if let Some(path) = &args.json {
        let v = serde_json::json!({ "setup": setup, "runs": rows });
        crate::output::write_json(path, &v, "spillway bench midstream")?;
    }
    Ok(())
}

/// One run on a fresh stack: the load, the fault schedule, the figures.
async fn one_run(args: &MidstreamArgs, kind: Kind, failover: bool) -> anyhow::Result<Row> {
    let sims = crate::demo::start_sims(args.concurrency, args.decode_tps).await?;
    let urls: Vec<(String, String)> = sims
        .iter()
        .map(|h| (h.region().to_string(), h.base_url()))
        .collect();
    let knobs = Knobs {
        first_byte_timeout_ms: args.stall_timeout_ms,
        midstream_failover: failover,
    };
    let toml = demo_config(&urls, args.concurrency, knobs, None, None);
    let gateway = Gateway::start(Config::parse(&toml, "<bench midstream>")?)
        .await
        .context("starting the gateway")?;
    let result = drive(args, kind, failover, &gateway, &sims).await;
    gateway.shutdown(Duration::from_secs(5)).await;
    for h in &sims {
        h.shutdown();
    }
    result
}

async fn drive(
    args: &MidstreamArgs,
    kind: Kind,
    failover: bool,
    gateway: &Gateway,
    sims: &[SimHandle],
) -> anyhow::Result<Row> {
    let base = gateway
        .addr(SOURCE)
        .map(|a| format!("http://{a}"))
        .context("the gateway has no us-east-1 listener")?;
    let specs = specs(args, &base, kind, failover);
    let expected: HashMap<String, String> = specs
        .iter()
        .map(|s| (s.id.clone(), midstream::unbroken(s)))
        .collect();
    let source_of: HashMap<String, String> = specs
        .iter()
        .map(|s| (s.id.clone(), s.source.clone()))
        .collect();
    let ids: HashSet<String> = expected.keys().cloned().collect();
    let span = specs.last().map_or(Duration::ZERO, |s| s.at);
    let source = sims
        .iter()
        .find(|h| h.region() == SOURCE)
        .context("no us-east-1 simulator")?
        .clone();
    let faults = tokio::spawn(schedule(source, kind, args.clone(), span));
    let name = format!("{} {}", kind.name(), if failover { "on" } else { "off" });
    let client = LoadClient::new(KEY)?.with_transcripts();
    let results = super::drive(&name, client, specs).await;
    faults.abort();
    let results = results?;
    let profile = format!("us.{MODEL}");
    let (_, violations) = scenario::residency(
        sims,
        std::slice::from_ref(gateway),
        &profile,
        &source_of,
        &ids,
    );
    let continued = midstream::continued(sims, &ids);
    let broken = broken_first_legs(sims, kind, &ids);
    Ok(Row::of(
        kind, failover, &results, &expected, &continued, broken, violations,
    ))
}

/// The streams: evenly spaced over `--seconds`, from us-east-1 on the profile, each with a
/// prompt of its own.
fn specs(args: &MidstreamArgs, base: &str, kind: Kind, failover: bool) -> Vec<RequestSpec> {
    let gap = Duration::from_secs_f64(args.seconds / args.streams as f64);
    let tag = format!("{}-{}", kind.name(), if failover { "on" } else { "off" });
    (0..args.streams)
        .map(|i| {
            let id = format!("midstream-{tag}-{i}");
            RequestSpec {
                at: gap * i as u32,
                base_url: base.to_string(),
                source: SOURCE.to_string(),
                model: format!("us.{MODEL}"),
                prompt_tokens: PROMPT_TOKENS,
                max_tokens: args.max_tokens,
                prompt: Some(tagged_prompt(&format!("stream-{i}"), PROMPT_TOKENS)),
                hash_ids: None,
                id,
            }
        })
        .collect()
}

/// us-east-1's fault: `kind` during the first `fault_ms` of every `fault_period_ms`, until the
/// last stream has started; healthy after.
async fn schedule(sim: SimHandle, kind: Kind, args: MidstreamArgs, span: Duration) {
    let start = tokio::time::Instant::now();
    let period = Duration::from_millis(args.fault_period_ms);
    let on_for = Duration::from_millis(args.fault_ms);
    let mut next = start;
    while next.duration_since(start) <= span {
        tokio::time::sleep_until(next).await;
        sim.set_fault(kind.fault(args.break_after));
        tokio::time::sleep_until(next + on_for).await;
        sim.set_fault(spillway_sim::Fault::default());
        next += period;
    }
}

/// Streams whose leg in us-east-1 ended the way `kind` breaks one (that simulator's records).
fn broken_first_legs(sims: &[SimHandle], kind: Kind, ids: &HashSet<String>) -> u64 {
    let broken: HashSet<String> = sims
        .iter()
        .filter(|h| h.region() == SOURCE)
        .flat_map(SimHandle::served)
        .filter(|r| Kind::of_outcome(&r.outcome) == Some(kind))
        .filter_map(|r| r.request_id)
        .filter(|id| ids.contains(id))
        .collect();
    broken.len() as u64
}
