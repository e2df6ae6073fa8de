//! `spillway bench --self-contained` (and the topology `--peer` shares): routing policies side
//! by side on the same arrivals, and the oracle bound.
//!
//! # Topology
//!
//! Five simulated regions run in-process on loopback: three in the `us` geography (us-east-1,
//! us-east-2, us-west-2), the sources, and two in `eu` (eu-west-1, eu-central-1) that no request
//! may reach and that must stay idle. Each region has one deployment of the model with the same
//! capacity: `--concurrency` slots, prefill at 4,000 tokens/s and decode at 50 tokens/s per
//! sequence, service times divided by `--time-scale`; the gateway lets at most `concurrency`
//! requests in flight per deployment. The simulators inject no RTT (an in-process simulator has
//! one RTT for every source, while a source's RTT depends on where it is served); the report
//! adds DESIGN §7's RTT between source and serving region to each latency, uncompressed (see
//! [`spillway_bench::report`]). The gateway is told those RTTs divided by the time scale, so
//! that its routing weighs network against service time in the same ratio as it would in real
//! time (service times are compressed X-fold, so the RTTs it plans with are too). The tenant's
//! quotas are far above the load, so only capacity limits what is served.
//!
//! # Capacity
//!
//! Without `--concurrency`, each region gets the fewest slots at which a source region alone,
//! refusing whatever finds every slot busy, would turn away at most `--overflow` (10 %) of its
//! requests ([`spillway_bench::sizing`]): a single source's bursts then exceed its own region by
//! about a tenth of its traffic, whatever the trace, while the three regions together absorb
//! them. A region completes `concurrency / mean service time` requests per second: the capacity
//! the oracle uses.
//!
//! # Policies
//!
//! Each policy runs against a fresh gateway and fresh simulators, with the same arrivals:
//! `in-region` (the plain model id: never leaves the source), and through the `us.` profile
//! `round-robin`, `least-loaded` and `spillway` (`[routing] policy`, Spillway's defaults), and on
//! request the variants `spillway-queue` (`source_queue = 0.5`: wait in the source rather than be
//! throttled), `spillway-nowait` (`source_wait = 0`: spill as soon as the source is full) and
//! `spillway:KEY=VALUE:…` (any of `source_wait`, `source_wait_ttft`, `source_queue`,
//! `cache_min_locality`, `spill_reserve`, `tail_budget`; `spillway-cache:KEY=VALUE:…` with cache affinity
//! `on`). A
//! `--peer` runs last, on its own fresh simulators with the same capacity ([`super::peer`]).
//!
//! Every policy routes cache-blind (`[[models]] cache_affinity = "off"`) but `spillway-cache`
//! (`on`) and `spillway-prefer` (`prefer-source`). With `--prefix-cache-blocks` each simulated
//! region has a prefix cache, the oracle counts each request's prefill past what an earlier
//! request carried ([`spillway_bench::oracle::cached_jobs`]), and the report gives each
//! policy's hit rate and prompt tokens prefilled, against the floor of the requests it served
//! ([`spillway_bench::prefill_floor`]: no router prefills less for them). Each source's copy
//! of a trace stands for its own users (its prefix ids are its own) unless `--shared-prefixes`.
//!
//! With `--state redis://…` each policy's gateway shares its state through that Redis, and with
//! `--instances N` N gateway instances serve it together ([`super::instances`]).
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::Context as _;
use spillway_bench::client::{LoadClient, RequestResult};
use spillway_bench::oracle::{self, Topology, oracle};
use spillway_bench::prefill_floor::{self, Prompt};
use spillway_bench::report::{
    self, BenchReport, Context, PolicyReport, PrefixFigures, Scale, Setup,
};
use spillway_bench::sizing::size_for_overflow;
use spillway_bench::summary::residency_violations;
use spillway_bench::workload::{self, Workload};
use spillway_embedded::Stack;
use spillway_gateway::Config;

use super::instances::{self, Instances};
use super::{BUCKET, BenchArgs, TIMELINE_BUCKETS};

pub(super) const MODEL: &str = "bench.chat-v1:0";
const KEY: &str = "spillway-demo-key";
const KEY_SHA256: &str = "4c632e7135929907209e422fd8a878aca2a19f7a3ed1089e7c3e1c53c44bfa69";
pub(super) use spillway_bench::topology::{DECODE_TPS, PREFILL_TPS, REGIONS, SOURCES};
use spillway_bench::topology::{LOCAL_RTT_MS, RTT_MS};
/// The policies a run can compare; the first four run by default. The `spillway-…` variants
/// are Spillway's policy with other trades (`[routing] source_queue`, `source_wait`).
const POLICIES: [&str; 8] = [
    "in-region",
    "round-robin",
    "least-loaded",
    "spillway",
    "spillway-queue",
    "spillway-nowait",
    "spillway-cache",
    "spillway-prefer",
];
const DEFAULT_POLICIES: usize = 4;

fn source_names() -> Vec<String> {
    REGIONS[..SOURCES].iter().map(|r| r.0.to_string()).collect()
}

/// The RTTs the report adds to latencies (see [`spillway_bench::report`]).
pub(super) fn scale(time_scale: f64) -> Scale {
    Scale {
        time_scale,
        rtt_ms: RTT_MS
            .iter()
            .map(|(a, b, ms)| ((a.to_string(), b.to_string()), *ms))
            .collect(),
        local_rtt_ms: LOCAL_RTT_MS,
    }
}

/// `--self-contained`, `--peer`, or both: the simulated topology, its policies and/or the peer.
pub(super) async fn run(args: &BenchArgs) -> anyhow::Result<BenchReport> {
    let policies = selected_policies(args)?;
    instances::check(args)?;
    let w = super::workload(args, SOURCES)?;
    let service = w.mean_service_secs(PREFILL_TPS, DECODE_TPS);
    let (concurrency, concurrency_from) = slots(args, &w)?;
    // The peer's simulators first: a busy port or a peer that never answers fails fast.
    let peer = start_peer(args, concurrency).await?;
    let capacity = f64::from(concurrency) / service.max(1e-9);
    let window_secs = w.buckets(BUCKET) as f64 * BUCKET.as_secs_f64();
    let jobs = if args.prefix_cache_blocks > 0 {
        let block = spillway_proto::prefix::BLOCK_TOKENS;
        oracle::cached_jobs(&w, PREFILL_TPS, DECODE_TPS, block)
    } else {
        oracle::jobs(&w, PREFILL_TPS, DECODE_TPS)
    };
    let bound = oracle(
        &topology_of(concurrency, args.slo.ttft_ms),
        &jobs,
        window_secs,
    );
    let setup = Setup {
        arrivals: w.description.clone(),
        sources: source_names(),
        regions: REGIONS.iter().map(|r| r.0.to_string()).collect(),
        concurrency,
        concurrency_from,
        region_capacity_rps: (capacity * 100.0).round() / 100.0,
        mean_service_ms: (service * 1000.0).round(),
        time_scale: args.time_scale,
        window_secs,
        slo_ttft_ms: args.slo.ttft_ms,
        slo_tpot_ms: args.slo.tpot_ms,
        max_input_tokens: workload::MAX_INPUT_TOKENS,
        max_output_tokens: workload::MAX_OUTPUT_TOKENS,
        rtt_added: true,
    };
    super::announce(
        &w,
        window_secs,
        args.time_scale,
        &format!("{concurrency} slots per region = {capacity:.1} req/s each"),
        Some(bound.goodput_rps),
    );
    let sent = super::sent_by_id(&w, &setup.sources);
    let cx = Context {
        sent: &sent,
        window_secs,
        slo: args.slo,
        scale: scale(args.time_scale),
        oracle_rps: bound.goodput_rps,
        regions: setup.regions.clone(),
        timeline_buckets: TIMELINE_BUCKETS,
    };
    // The prompts each request sends, for the prefill floor (only with prefix caches).
    let prompts: Vec<Prompt> = if args.prefix_cache_blocks > 0 {
        w.requests.iter().map(Prompt::of).collect()
    } else {
        Vec::new()
    };
    let mut reports = Vec::new();
    for name in &policies {
        reports.push(run_policy(name, &w, args, concurrency, &cx, &prompts).await?);
    }
    let mut notes = Vec::new();
    notes.extend(instances::note(args));
    if let Some(p) = peer {
        reports.push(p.run(&w, args, &cx, &mut notes).await?);
        p.shutdown().await;
    }
    Ok(BenchReport {
        policies: reports,
        oracle: Some(bound),
        setup,
        notes,
    })
}

/// The policies to run (`--policies`, else the default ones with `--self-contained`, else
/// none), each checked to be one this topology knows.
fn selected_policies(args: &BenchArgs) -> anyhow::Result<Vec<String>> {
    let policies: Vec<String> = match &args.policies {
        Some(p) => p.clone(),
        None if args.self_contained => POLICIES[..DEFAULT_POLICIES]
            .iter()
            .map(|p| p.to_string())
            .collect(),
        None => Vec::new(),
    };
    for p in &policies {
        if let Some(options) = variant_of(p) {
            variant_options(options).with_context(|| format!("policy {p:?}"))?;
        } else {
            anyhow::ensure!(
                POLICIES.contains(&p.as_str()),
                "unknown policy {p:?} (expected some of {}, or spillway:KEY=VALUE:…)",
                POLICIES.join(", ")
            );
        }
    }
    Ok(policies)
}

/// Each region's slots and where that number came from: `--concurrency`, else sized for
/// `--overflow` on these arrivals (see the module docs).
fn slots(args: &BenchArgs, w: &Workload) -> anyhow::Result<(u32, String)> {
    match args.concurrency {
        Some(c) if c > 0 => Ok((c, "--concurrency".to_string())),
        Some(_) => anyhow::bail!("--concurrency must be at least 1"),
        None => {
            anyhow::ensure!(
                (0.0..100.0).contains(&args.overflow),
                "--overflow must be a percentage, at least 0 and below 100"
            );
            let (slots, refused) = size_for_overflow(
                &w.requests,
                SOURCES,
                args.overflow / 100.0,
                PREFILL_TPS,
                DECODE_TPS,
            );
            let how = format!(
                "sized: the fewest slots at which a source region alone, without a queue, \
                 refuses at most {}% of its requests ({:.1}%)",
                args.overflow,
                refused * 100.0
            );
            Ok((slots, how))
        }
    }
}

/// With `--peer`: its simulators started and the peer answering.
async fn start_peer(
    args: &BenchArgs,
    concurrency: u32,
) -> anyhow::Result<Option<super::peer::Peer>> {
    match &args.peer {
        Some(_) => {
            let p = super::peer::Peer::start(args, concurrency).await?;
            p.wait_ready().await?;
            Ok(Some(p))
        }
        None => Ok(None),
    }
}

/// The topology as the oracle sees it: every region has `concurrency` slots, a source reaches
/// the regions of its geography, and DESIGN §7's RTTs are added to the TTFT, as the report does.
fn topology_of(concurrency: u32, ttft_slo_ms: f64) -> Topology {
    let rtt = |a: &str, b: &str| spillway_bench::topology::rtt_ms(a, b).unwrap_or(0.0) / 1000.0;
    Topology {
        slots: vec![f64::from(concurrency); REGIONS.len()],
        reach: REGIONS
            .iter()
            .map(|(_, ga)| REGIONS.iter().map(|(_, gb)| ga == gb).collect())
            .collect(),
        rtt_secs: REGIONS
            .iter()
            .map(|(a, _)| REGIONS.iter().map(|(b, _)| rtt(a, b)).collect())
            .collect(),
        ttft_slo_secs: ttft_slo_ms / 1000.0,
    }
}

/// The gateway's configuration for one policy (`spillway` also for `in-region`; the variants
/// add their `[routing]` options to it).
fn topology(
    policy: &str,
    concurrency: u32,
    time_scale: f64,
    seed: u64,
    prefix_blocks: u64,
) -> String {
    // Every policy is cache-blind but the two cache variants (`spillway-cache:…` included).
    let affinity = match policy.split(':').next() {
        Some("spillway-cache") => "on",
        Some("spillway-prefer") => "prefer-source",
        _ => "off",
    };
    let (routing, options) = match policy {
        "in-region" | "spillway" | "spillway-cache" | "spillway-prefer" => {
            ("spillway", String::new())
        }
        "spillway-queue" => ("spillway", "source_queue = 0.5\n".into()),
        "spillway-nowait" => ("spillway", "source_wait = 0.0\n".into()),
        other => match variant_of(other).map(variant_options) {
            Some(Ok(options)) => ("spillway", options),
            _ => (other, String::new()),
        },
    };
    let mut t = format!(
        "[routing]\npolicy = \"{routing}\"\n{options}max_attempts = 3\nseed = {seed}\n\n[server]\nshutdown_grace_secs = 10\n\n"
    );
    for (r, g) in REGIONS {
        t += &format!("[[regions]]\nname = \"{r}\"\ngeography = \"{g}\"\n\n");
    }
    for (a, b, ms) in RTT_MS {
        let ms = ms / time_scale;
        t += &format!("[[rtt]]\nbetween = [\"{a}\", \"{b}\"]\nms = {ms:?}\n\n");
    }
    t += &format!("[[models]]\nid = \"{MODEL}\"\ncache_affinity = \"{affinity}\"\n\n");
    for (r, _) in REGIONS {
        t += &format!(
            "[[deployments]]\nmodel = \"{MODEL}\"\nregion = \"{r}\"\nmax_in_flight = {concurrency}\n\
             upstream = {{ kind = \"sim\", concurrency = {concurrency}, queue_limit = {concurrency}, prefill_tokens_per_sec = {PREFILL_TPS:.1}, decode_tokens_per_sec = {DECODE_TPS:.1}, rtt_ms = 0, time_scale = {time_scale:?}, prefix_cache_blocks = {prefix_blocks} }}\n\n"
        );
    }
    t +=
        &format!("[[tenants]]\nname = \"bench\"\napi_keys = [{{ sha256 = \"{KEY_SHA256}\" }}]\n\n");
    t += &format!(
        "[[tenants.quotas]]\nmodel = \"{MODEL}\"\nrpm = 1000000000\ntpm = 1000000000000\n\n"
    );
    for (r, _) in &REGIONS[..SOURCES] {
        t += &format!("[[listeners]]\nbind = \"127.0.0.1:0\"\nregion = \"{r}\"\n\n");
    }
    t += "[admin]\nbind = \"127.0.0.1:0\"\n\n";
    t
}

/// The `KEY=VALUE:…` part of a variant's name (`spillway:…`, or `spillway-cache:…` with cache
/// affinity `on`).
fn variant_of(policy: &str) -> Option<&str> {
    ["spillway:", "spillway-cache:"]
        .iter()
        .find_map(|prefix| policy.strip_prefix(prefix))
}

/// The `[routing]` lines of a variant named `spillway:KEY=VALUE:…`: Spillway's policy with
/// some of its numeric trades set, for tuning them side by side on the same arrivals. The
/// gateway's own validation judges the values.
fn variant_options(options: &str) -> anyhow::Result<String> {
    let settings = spillway_bench::topology::parse_variant(options).map_err(anyhow::Error::msg)?;
    Ok(settings
        .iter()
        .map(|(k, v)| format!("{k} = {}\n", spillway_bench::topology::toml_value(k, *v)))
        .collect())
}

/// One policy against a fresh gateway: offer every request, then judge residency from the
/// simulators' records.
async fn run_policy(
    name: &str,
    w: &Workload,
    args: &BenchArgs,
    concurrency: u32,
    cx: &Context<'_>,
    prompts: &[Prompt],
) -> anyhow::Result<PolicyReport> {
    let mut toml = topology(
        name,
        concurrency,
        args.time_scale,
        args.seed,
        args.prefix_cache_blocks,
    );
    if let Some(url) = &args.state {
        toml = instances::state_section(url, args.instances, name) + &toml;
    }
    let running = Instances::start(&toml, args.instances).await?;
    let stack = running.stack();
    let gateway = stack.gateway();
    let model = if name == "in-region" {
        MODEL.to_string()
    } else {
        format!("us.{MODEL}")
    };
    let sources = source_names();
    let by_source = running.urls(&sources)?;
    let first: Vec<String> = sources.iter().map(|s| by_source[s][0].clone()).collect();
    let mut specs = super::specs(w, args.time_scale, &first, &sources, &model);
    instances::spread(&mut specs, &by_source);
    let results = super::drive(name, LoadClient::new(KEY)?, specs).await?;
    let mut seen = Vec::new();
    for sim in stack.sims() {
        for rec in sim.served() {
            if let Some(id) = rec.request_id {
                seen.push((id, rec.region.clone()));
            }
        }
    }
    let source_of: HashMap<String, String> = cx
        .sent
        .iter()
        .map(|(id, s)| (id.clone(), s.source.clone()))
        .collect();
    let violations =
        residency_violations(&seen, &source_of, &allowed_sets(&gateway.config(), &model));
    let prefix = prefix_figures(stack).map(|f| PrefixFigures {
        floor_tokens: served_floor(&results, prompts),
        ..f
    });
    running.shutdown(Duration::from_secs(10)).await;
    let mut rep = report::policy_report(name, &results, violations, cx);
    rep.prefix = prefix;
    Ok(rep)
}

/// The simulators' prefix caches summed, when they have one.
fn prefix_figures(stack: &Stack) -> Option<PrefixFigures> {
    let mut f = PrefixFigures::default();
    let mut cached = false;
    for sim in stack.sims() {
        let s = sim.stats();
        cached |= s.capacity_blocks > 0;
        f.hit_blocks += s.hit_blocks;
        f.miss_blocks += s.miss_blocks;
        f.prefill_tokens += s.prefill_tokens;
    }
    cached.then_some(f)
}

/// The prefill floor of the requests served (status 200: each took a slot somewhere), from
/// `prompts` by request index; `None` without prompts.
fn served_floor(results: &[RequestResult], prompts: &[Prompt]) -> Option<u64> {
    if prompts.is_empty() {
        return None;
    }
    let served = results
        .iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| prompts.get(super::request_index(&r.id)?));
    prefill_floor::floor(served)
}

/// For each source region: where `model` may be served from it (the profile's destination set,
/// or the source alone for a plain model id).
fn allowed_sets(cfg: &Config, model: &str) -> HashMap<String, HashSet<String>> {
    let profile = cfg.profile_ix(model);
    REGIONS[..SOURCES]
        .iter()
        .map(|(r, _)| {
            let set: HashSet<String> = match profile {
                Some(p) => cfg
                    .region_ix(r)
                    .and_then(|s| cfg.profiles[p].destinations.get(&s))
                    .map(|d| d.iter().map(|x| cfg.region_name(*x).to_string()).collect())
                    .unwrap_or_default(),
                None => HashSet::from([r.to_string()]),
            };
            (r.to_string(), set)
        })
        .collect()
}

#[cfg(test)]
mod tests;
