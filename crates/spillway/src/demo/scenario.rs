//! One demo scenario: fresh simulators (one per region), fresh gateway instances pointed at
//! them, the load, the fault, and what the simulators recorded.
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use spillway_bench::client::{LoadClient, Progress, RequestSpec, tagged_prompt};
use spillway_bench::summary::{Summary, residency_violations};
use spillway_gateway::{Config, Gateway};
use spillway_sim::SimHandle;

pub use super::midstream::MidstreamFigures;
use super::midstream::{self, Schedule};
use super::shared::{self, QuotaPlan, Redis};
use super::{
    BACKGROUND_RPS, DECODE_TPS, DemoArgs, FIRST_BYTE_TIMEOUT_MS, Knobs,
    MIDSTREAM_FIRST_BYTE_TIMEOUT_MS, MODEL, PROMPT_TOKENS, SOURCE, TTFT_SLO, US, demo_config,
};

/// What goes wrong a third of the way in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// This region's simulator answers 503 from then on.
    RegionOutage(&'static str),
    /// Redis stops answering for a third of the run (`CLIENT PAUSE … ALL`).
    RedisPause,
    /// us-east-1 breaks streams after their first tokens for the middle third of the run
    /// ([`midstream`]).
    Midstream,
}

#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// A burst from us-east-1 at `rate`, and light local load in the other US regions.
    Burst { rate: f64 },
    /// Only from us-east-1, at `rate`.
    Single { rate: f64 },
}

pub struct Scenario {
    pub model: String,
    pub key: &'static str,
    pub load: Load,
    pub max_tokens: u64,
    pub fault: Fault,
}

/// What happened to Redis in a [`Fault::RedisPause`] run.
#[derive(Debug, Clone)]
pub struct PauseReport {
    /// Redis accepted the pause (else why not).
    pub paused: Result<(), String>,
    /// An instance reported the shared state down meanwhile.
    pub degraded_seen: bool,
    /// Every instance reported it up again after the run.
    pub recovered: bool,
}

impl Default for PauseReport {
    fn default() -> PauseReport {
        PauseReport {
            paused: Err("not paused yet".into()),
            degraded_seen: false,
            recovered: false,
        }
    }
}

pub struct Outcome {
    pub summary: Summary,
    /// Distinct request ids of the measured load that a simulator served completely.
    pub served_by_sims: u64,
    pub window: Duration,
    pub pause: Option<PauseReport>,
    /// For [`Fault::Midstream`]: the continued streams and the text check.
    pub midstream: Option<MidstreamFigures>,
}

pub async fn run(
    args: &DemoArgs,
    name: &str,
    s: &Scenario,
    redis: Option<&Redis>,
    quota: Option<&QuotaPlan>,
) -> anyhow::Result<Outcome> {
    let sims = super::start_sims(args.concurrency, DECODE_TPS).await?;
    let urls: Vec<(String, String)> = sims
        .iter()
        .map(|h| (h.region().to_string(), h.base_url()))
        .collect();
    // Every instance declares each region's full slots, as the example's configurations do
    // (where in-flight counts are not shared, the instances together can overfill a simulator,
    // whose queue then answers 429 and the gateway fails over). Splitting the slots between the
    // instances instead served about a third less of the bursts.
    let n = if redis.is_some() {
        shared::INSTANCES
    } else {
        1
    };
    let max_in_flight = args.concurrency;
    let prefix = redis.map(|r| format!("{}:{name}", r.prefix));
    let state = redis
        .zip(prefix.as_deref())
        .map(|(r, p)| (r.url.as_str(), p));
    let midstream = s.fault == Fault::Midstream;
    let knobs = Knobs {
        first_byte_timeout_ms: if midstream {
            MIDSTREAM_FIRST_BYTE_TIMEOUT_MS
        } else {
            FIRST_BYTE_TIMEOUT_MS
        },
        midstream_failover: true,
    };
    let toml = demo_config(&urls, max_in_flight, knobs, quota, state);
    let mut gateways = Vec::new();
    for _ in 0..n {
        let cfg = Config::parse(&toml, "<demo>")?;
        gateways.push(Gateway::start(cfg).await.context("starting a gateway")?);
    }
    let result = drive(args, name, s, redis, &gateways, &sims).await;
    for g in gateways {
        g.shutdown(Duration::from_secs(5)).await;
    }
    for h in &sims {
        h.shutdown();
    }
    result
}

async fn drive(
    args: &DemoArgs,
    name: &str,
    s: &Scenario,
    redis: Option<&Redis>,
    gateways: &[Gateway],
    sims: &[SimHandle],
) -> anyhow::Result<Outcome> {
    let window = Duration::from_secs(args.seconds);
    let (specs, measured) = requests(args, name, s, gateways, window);
    let source_of: HashMap<String, String> = specs
        .iter()
        .map(|s| (s.id.clone(), s.source.clone()))
        .collect();
    let measured_ids: HashSet<String> = specs.iter().take(measured).map(|s| s.id.clone()).collect();
    let midstream = s.fault == Fault::Midstream;
    let expected: HashMap<String, String> = specs
        .iter()
        .take(if midstream { measured } else { 0 })
        .map(|s| (s.id.clone(), crate::midstream::unbroken(s)))
        .collect();
    let client = LoadClient::new(s.key)?;
    let client = if midstream {
        client.with_transcripts()
    } else {
        client
    };
    let progress = client.progress.clone();
    let run = tokio::spawn({
        let client = client.clone();
        async move { client.run(specs).await }
    });
    let watch = Watch {
        name,
        s,
        window,
        redis,
        gateways,
        sims,
        progress: &progress,
    };
    let mut pause = watch.until_finished(&run).await;
    let results = run.await?;
    if let Some(p) = pause.as_mut() {
        p.recovered = recovered(gateways, Duration::from_secs(10)).await;
    }
    let (served, violations) = residency(sims, gateways, &s.model, &source_of, &measured_ids);
    let measured_results: Vec<_> = results.into_iter().take(measured).collect();
    let midstream = midstream.then(|| midstream::figures(sims, &measured_results, &expected));
    Ok(Outcome {
        summary: Summary::of(name, &measured_results, window, TTFT_SLO, violations),
        served_by_sims: served,
        window,
        pause,
        midstream,
    })
}

/// The scenario's requests, measured ones first: the load from [`SOURCE`] on the scenario's
/// model, then (for a burst) the background load of the other US regions on the plain model
/// id. Also how many are measured.
fn requests(
    args: &DemoArgs,
    name: &str,
    s: &Scenario,
    gateways: &[Gateway],
    window: Duration,
) -> (Vec<RequestSpec>, usize) {
    let mut rng = SmallRng::seed_from_u64(args.seed);
    // Instance `i % n` takes the i-th request of each source: a round-robin load balancer.
    let url = |r: &str, i: usize| {
        gateways[i % gateways.len()]
            .addr(r)
            .map(|a| format!("http://{a}"))
            .unwrap_or_default()
    };
    let spec = |id: String, at, source: &str, model: &str, i| RequestSpec {
        at,
        base_url: url(source, i),
        source: source.into(),
        model: model.into(),
        prompt_tokens: PROMPT_TOKENS,
        max_tokens: s.max_tokens,
        prompt: Some(tagged_prompt(&id, PROMPT_TOKENS)),
        hash_ids: None,
        id,
    };
    let (rate, background) = match s.load {
        Load::Burst { rate } => (rate, true),
        Load::Single { rate } => (rate, false),
    };
    let mut specs: Vec<RequestSpec> = spillway_bench::poisson(rate, window, &mut rng)
        .into_iter()
        .enumerate()
        .map(|(i, at)| spec(format!("{name}-burst-{i}"), at, SOURCE, &s.model, i))
        .collect();
    let measured = specs.len();
    if background {
        for r in &US[1..] {
            for (i, at) in spillway_bench::poisson(BACKGROUND_RPS, window, &mut rng)
                .into_iter()
                .enumerate()
            {
                specs.push(spec(format!("{name}-bg-{r}-{i}"), at, r, MODEL, i));
            }
        }
    }
    (specs, measured)
}

/// What a scenario watches while its load runs: when to inject the fault, whether the
/// instances saw the shared state down, and the progress line.
struct Watch<'a> {
    name: &'a str,
    s: &'a Scenario,
    window: Duration,
    redis: Option<&'a Redis>,
    gateways: &'a [Gateway],
    sims: &'a [SimHandle],
    progress: &'a Progress,
}

impl Watch<'_> {
    /// Every 100 ms until `run` finishes: the fault a third of the way in, the shared state's
    /// health (for a Redis pause, whose report this returns), and every second the progress.
    async fn until_finished<T>(&self, run: &tokio::task::JoinHandle<T>) -> Option<PauseReport> {
        let started = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut fault_done = self.s.fault == Fault::None;
        let mut pause = (self.s.fault == Fault::RedisPause).then(PauseReport::default);
        let mut ticks = 0u64;
        let mut schedule = Schedule::default();
        while !run.is_finished() {
            tick.tick().await;
            ticks += 1;
            let t = started.elapsed();
            if self.s.fault == Fault::Midstream {
                schedule.tick(t, self.window, ticks, self.sims);
            } else if !fault_done && t >= self.window / 3 {
                fault_done = true;
                let (name, fault, window) = (self.name, self.s.fault, self.window);
                inject(
                    name,
                    fault,
                    t,
                    window,
                    self.redis,
                    self.sims,
                    pause.as_mut(),
                )
                .await;
            }
            if let Some(p) = pause.as_mut() {
                p.degraded_seen |= self.gateways.iter().any(|g| !g.state().shared_state_up());
            }
            if ticks.is_multiple_of(10) {
                self.print_progress(t);
            }
        }
        pause
    }

    fn print_progress(&self, t: Duration) {
        let done = (t.as_secs_f64() / self.window.as_secs_f64()).min(1.0);
        let bar = (done * 30.0) as usize;
        let progress = self.progress;
        eprintln!(
            "  {:<20} [{}{}] {:>3.0}%  all traffic: sent {:>4}  ok {:>4}  throttled {:>4}  failed {:>3}",
            self.name,
            "#".repeat(bar),
            ".".repeat(30 - bar),
            done * 100.0,
            progress.sent.load(Ordering::Relaxed),
            progress.ok.load(Ordering::Relaxed),
            progress.throttled.load(Ordering::Relaxed),
            progress.failed.load(Ordering::Relaxed),
        );
    }
}

/// Residency from the simulators' own records (every request id any region saw): how many
/// measured requests a simulator served completely, and the violations.
pub(crate) fn residency(
    sims: &[SimHandle],
    gateways: &[Gateway],
    model: &str,
    source_of: &HashMap<String, String>,
    measured_ids: &HashSet<String>,
) -> (u64, u64) {
    let mut seen = Vec::new();
    let mut served = HashSet::new();
    for sim in sims {
        for rec in sim.served() {
            if let Some(id) = rec.request_id {
                if rec.outcome == "ok" && measured_ids.contains(&id) {
                    served.insert(id.clone());
                }
                seen.push((id, rec.region.clone()));
            }
        }
    }
    let allowed = allowed_sets(&gateways[0].config(), model);
    let violations = residency_violations(&seen, source_of, &allowed);
    (served.len() as u64, violations)
}

async fn inject(
    name: &str,
    fault: Fault,
    t: Duration,
    window: Duration,
    redis: Option<&Redis>,
    sims: &[SimHandle],
    pause: Option<&mut PauseReport>,
) {
    let at = t.as_secs_f64();
    match fault {
        Fault::None | Fault::Midstream => {}
        Fault::RegionOutage(region) => {
            if let Some(sim) = sims.iter().find(|h| h.region() == region) {
                sim.set_fault(spillway_sim::Fault {
                    outage: true,
                    ..Default::default()
                });
                eprintln!("  {name}: {region} taken down at {at:.1} s");
            }
        }
        Fault::RedisPause => {
            let Some((redis, report)) = redis.zip(pause) else {
                return;
            };
            let ms = (window / 3).as_millis().max(1) as u64;
            report.paused = redis.pause_all(ms).await;
            match &report.paused {
                Ok(()) => eprintln!("  {name}: Redis paused (CLIENT PAUSE {ms} ALL) at {at:.1} s"),
                Err(e) => eprintln!("  {name}: could not pause Redis: {e}"),
            }
        }
    }
}

/// Every instance reports the shared state up, within `deadline`.
async fn recovered(gateways: &[Gateway], deadline: Duration) -> bool {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if gateways.iter().all(|g| g.state().shared_state_up()) {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// For each source region: where `model` may be served from it (the profile's destination set,
/// or the source alone for a plain model id). Background requests use the plain model id.
pub(crate) fn allowed_sets(cfg: &Config, model: &str) -> HashMap<String, HashSet<String>> {
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
