//! Replays a trace through the real routing core in virtual time: the same arrivals, regions,
//! RTTs and engine model as `spillway bench --self-contained`, without HTTP, clocks or noise.
//! It takes seconds where the bench takes ten minutes, so a policy's trades can be swept
//! before the bench confirms the chosen point (see `docs/BENCHMARKS.md`).
//!
//! ```sh
//! cargo run --release --example policy_replay -- TRACE SLOTS [--release-lag-ms MS] \
//!     [--ttft-overhead-ms MS] [VARIANT …]
//! # SLOTS: a number, or `auto` for the bench's own sizing (`--overflow 10`)
//! # VARIANT: round-robin, least-loaded, spillway, or spillway:KEY=VALUE:… with KEY among
//! # source_wait, source_wait_ttft, source_queue, spill_reserve, tail_budget
//! ```
//!
//! Each region's engine is the simulator's: `SLOTS` continuous-batching slots, a FIFO queue of
//! `SLOTS` more, 429 beyond; prefill at 4,000 tokens/s, decode at 50 tokens/s. The gateway's
//! part is the pipeline's: route (plan and admit the first step that has headroom), fall over
//! along the plan on a 429 within the retry budget, release with the outcome when the request
//! completes. TTFT is reported as the bench reports it: the engine's plus the RTT between
//! source and server.
//! `--release-lag-ms` makes the router learn of each completion that long after the engine
//! freed the slot (trace time), as a gateway does that hears of the end of a stream a little
//! after the engine sent it: at `--time-scale 30` each ms of wall clock is 30 ms here.
//! `--ttft-overhead-ms` makes the router learn each TTFT as the gateway measures it: the
//! engine's, plus the round trip to the serving region, plus that fixed overhead (trace time),
//! which the engine's slot times do not include. The bench's gateway, its simulators and its
//! client share one 2-core machine and add about 3 ms of wall clock to each TTFT, 90 ms of
//! trace time at `--time-scale 30` (the bench's TTFT p50 of round-robin less this replay's);
//! a deployment adds a millisecond or two against a TTFT of a second. Without the flag the
//! router learns the engine's TTFT.
//! `good/s` is the bench's goodput: requests served within a TTFT of 2,000 ms (the default SLO;
//! TPOT is the engine's 20 ms here) per second of the arrivals' span.
#![forbid(unsafe_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::path::Path;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use spillway_bench::sizing::{OVERFLOW, size_for_overflow};
use spillway_bench::summary::percentile;
use spillway_bench::topology::{DECODE_TPS, PREFILL_TPS, REGIONS, SOURCES, parse_variant, rtt_ms};
use spillway_bench::workload::{Arrivals, Workload, WorkloadSpec};
use spillway_core::{
    Admission, Candidate, Demand, DeploymentIx, DeploymentSpec, FailureKind, Outcome, Policy,
    RegionIx, RouteRequest, Routed, Router, RouterConfig,
};

/// RTT (ms) between the bench's source regions, `[source][serving]`.
fn rtt_matrix() -> Result<Vec<Vec<f64>>, String> {
    let names = &REGIONS[..SOURCES];
    names
        .iter()
        .map(|(a, _)| {
            names
                .iter()
                .map(|(b, _)| rtt_ms(a, b).ok_or(format!("no RTT between {a} and {b}")))
                .collect()
        })
        .collect()
}

/// One region's engine: running sequences and a bounded FIFO queue.
struct Engine {
    running: u32,
    queue: VecDeque<usize>,
}

struct Live {
    admission: Option<Admission>,
    sent_at: Duration,
    engine_ttft: Duration,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn config(variant: &str) -> Result<RouterConfig, String> {
    let mut cfg = RouterConfig::default();
    let (policy, options) = match variant.split_once(':') {
        Some((p, o)) => (p, Some(o)),
        None => (variant, None),
    };
    cfg.policy = match policy {
        "round-robin" => Policy::RoundRobin,
        "least-loaded" => Policy::LeastLoaded,
        "spillway" => Policy::Spillway,
        other => return Err(format!("unknown policy {other:?}")),
    };
    for (k, v) in options.map(parse_variant).transpose()?.unwrap_or_default() {
        match k {
            "source_wait" => cfg.source_wait = v,
            "source_wait_ttft" => cfg.source_wait_ttft = v,
            "source_queue" => cfg.source_queue = v,
            "tail_budget" => cfg.tail_budget = v,
            // Whole, non-negative and in range: the gateway's configuration reads a u32.
            "spill_reserve" if v >= 0.0 && v.fract() == 0.0 && v <= f64::from(u32::MAX) => {
                cfg.spill_reserve = Some(v as u32)
            }
            "spill_reserve" => {
                return Err(format!("spill_reserve: {v} is not a whole number of slots"));
            }
            other => return Err(format!("option {other:?} is not modelled here")),
        }
    }
    Ok(cfg)
}

#[derive(Default)]
struct Tally {
    served: usize,
    throttled: usize,
    local: usize,
    ttft_ms: Vec<f64>,
    /// Engine queue time (ms) of the requests that found every slot busy.
    queued_ms: Vec<f64>,
}

/// What the router hears, and when, besides the engine's own times.
#[derive(Clone, Copy)]
struct Hearing {
    /// How long after the engine frees a slot the router learns of it.
    release_lag: Duration,
    /// `Some`: the TTFT the router learns is the engine's plus the round trip plus this.
    ttft_overhead: Option<Duration>,
}

fn replay(w: &Workload, slots: u32, hear: Hearing, rtt: &[Vec<f64>], cfg: RouterConfig) -> Tally {
    let lag = hear.release_lag;
    let specs = (0..SOURCES)
        .map(|r| DeploymentSpec {
            region: RegionIx(r as u16),
            max_in_flight: slots,
            rpm: None,
            tpm: None,
        })
        .collect();
    let mut router = Router::new(cfg, specs);
    let mut rng = SmallRng::seed_from_u64(7);
    // As the gateway lists them: nearest first.
    let cands: Vec<Vec<Candidate>> = (0..SOURCES)
        .map(|s| {
            let mut c: Vec<Candidate> = (0..SOURCES)
                .map(|d| Candidate {
                    deployment: DeploymentIx(d as u32),
                    region: RegionIx(d as u16),
                    rtt: secs(rtt[s][d] / 1000.0),
                })
                .collect();
            c.sort_by_key(|c| c.rtt);
            c
        })
        .collect();
    let mut engines: Vec<Engine> = (0..SOURCES)
        .map(|_| Engine {
            running: 0,
            queue: VecDeque::new(),
        })
        .collect();
    let mut live: Vec<Live> = Vec::with_capacity(w.requests.len());
    let mut served_by = vec![usize::MAX; w.requests.len()];
    // Completions: (time, request).
    let mut done: BinaryHeap<Reverse<(Duration, usize)>> = BinaryHeap::new();
    let mut t = Tally::default();
    let service = |i: usize| {
        let r = &w.requests[i];
        let prefill = r.input_tokens as f64 / PREFILL_TPS;
        (prefill, prefill + r.output_tokens as f64 / DECODE_TPS)
    };
    let start = |i: usize, at: Duration, live: &mut Vec<Live>, done: &mut BinaryHeap<_>| {
        let (prefill, total) = service(i);
        live[i].engine_ttft = at - live[i].sent_at + secs(prefill);
        done.push(Reverse((at + secs(total), i)));
    };
    let mut arrivals = w.requests.iter().enumerate().peekable();
    // Releases the router has not heard of yet: (when it does, admission, outcome).
    let mut pending: VecDeque<(Duration, Admission, Outcome)> = VecDeque::new();
    loop {
        // Completions up to the next arrival (all of them after the last), in time order; each
        // frees a slot for the queue.
        let next_at = arrivals.peek().map_or(Duration::MAX, |(_, r)| r.at);
        while let Some(&Reverse((at, j))) = done.peek() {
            if at > next_at {
                break;
            }
            done.pop();
            let d = served_by[j];
            let e = &mut engines[d];
            e.running -= 1;
            if let Some(k) = e.queue.pop_front() {
                e.running += 1;
                start(k, at, &mut live, &mut done);
            }
            let tokens = w.requests[j].input_tokens + w.requests[j].output_tokens;
            let trip = rtt[w.requests[j].source][d];
            let heard = hear.ttft_overhead.map_or(live[j].engine_ttft, |o| {
                live[j].engine_ttft + secs(trip / 1000.0) + o
            });
            let outcome = Outcome::Success {
                ttft: heard,
                tpot: Some(secs(1.0 / DECODE_TPS)),
                tokens,
            };
            if let Some(a) = live[j].admission.take() {
                pending.push_back((at + lag, a, outcome));
            }
            t.served += 1;
            t.local += usize::from(d == w.requests[j].source);
            t.ttft_ms
                .push(live[j].engine_ttft.as_secs_f64() * 1000.0 + trip);
            let (prefill, _) = service(j);
            let queued = live[j].engine_ttft.as_secs_f64() - prefill;
            if queued > 1e-9 {
                t.queued_ms.push(queued * 1000.0);
            }
        }
        let Some((i, r)) = arrivals.next() else {
            break;
        };
        let now = r.at;
        while pending.front().is_some_and(|p| p.0 <= now) {
            if let Some((t0, a, o)) = pending.pop_front() {
                router.release(a, o, t0);
            }
        }
        live.push(Live {
            admission: None,
            sent_at: now,
            engine_ttft: Duration::ZERO,
        });
        let demand = Demand {
            est_tokens: r.input_tokens + r.output_tokens,
            input_tokens: r.input_tokens,
        };
        let Routed { plan, first } = router.route(
            &RouteRequest {
                source: RegionIx(r.source as u16),
                candidates: &cands[r.source],
                est_tokens: demand.est_tokens,
                input_tokens: demand.input_tokens,
                prefix: spillway_core::Prefix::NONE,
            },
            now,
            &mut rng,
        );
        let mut sent = false;
        let mut next = first;
        while let Some((ix, a)) = next {
            let d = plan.steps[ix].deployment;
            let e = &mut engines[d.0 as usize];
            if e.running < slots {
                e.running += 1;
                live[i].admission = Some(a);
                served_by[i] = d.0 as usize;
                start(i, now, &mut live, &mut done);
                sent = true;
                break;
            }
            if e.queue.len() < slots as usize {
                e.queue.push_back(i);
                live[i].admission = Some(a);
                served_by[i] = d.0 as usize;
                sent = true;
                break;
            }
            let retry_after = Some(Duration::from_millis(100));
            router.release(
                a,
                Outcome::Failure(FailureKind::Throttled { retry_after }),
                now,
            );
            if !router.try_retry(now) {
                break;
            }
            next = router.admit_next(&plan, ix + 1, demand, now);
        }
        t.throttled += usize::from(!sent);
    }
    t
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [trace, slots, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: policy_replay TRACE SLOTS [--release-lag-ms MS] [--ttft-overhead-ms MS] \
             [VARIANT …]"
                .into(),
        );
    };
    let mut hear = Hearing {
        release_lag: Duration::ZERO,
        ttft_overhead: None,
    };
    let mut variants = rest;
    while let [flag, ms, more @ ..] = variants {
        let slot = match flag.as_str() {
            "--release-lag-ms" => &mut hear.release_lag,
            "--ttft-overhead-ms" => hear.ttft_overhead.insert(Duration::ZERO),
            _ => break,
        };
        let ms: u64 = ms.parse().map_err(|_| format!("{flag}: milliseconds"))?;
        *slot = Duration::from_millis(ms);
        variants = more;
    }
    let rtt = rtt_matrix()?;
    let trace = spillway_bench::traces::load(Path::new(trace)).map_err(|e| e.to_string())?;
    let w = Workload::build(&WorkloadSpec {
        arrivals: Arrivals::Trace {
            trace,
            name: "trace".into(),
        },
        sources: SOURCES,
        duration: Duration::ZERO,
        shift: None,
        limit: None,
        input_tokens: 0,
        output_tokens: 0,
        seed: 7,
        shared_prefixes: false,
    });
    let slots: u32 = match slots.as_str() {
        "auto" => size_for_overflow(&w.requests, SOURCES, OVERFLOW, PREFILL_TPS, DECODE_TPS).0,
        n => n.parse().map_err(|_| "SLOTS: a number or auto")?,
    };
    let span = w
        .requests
        .last()
        .map_or(1.0, |r| r.at.as_secs_f64().max(1.0));
    let variants: Vec<&str> = if variants.is_empty() {
        vec!["round-robin", "least-loaded", "spillway"]
    } else {
        variants.iter().map(String::as_str).collect()
    };
    // Every variant is checked before anything runs.
    let cfgs = variants
        .iter()
        .map(|v| config(v))
        .collect::<Result<Vec<_>, _>>()?;
    println!(
        "{} requests, {slots} slots per region, release lag {} ms, TTFT overhead {}\n{:<52} {:>7} {:>6} {:>7} {:>7} {:>7} {:>7}  queued: n p50 p90 p99 ms",
        w.requests.len(),
        hear.release_lag.as_millis(),
        hear.ttft_overhead
            .map_or("none".to_string(), |o| format!("{} ms", o.as_millis())),
        "variant",
        "served",
        "thr %",
        "local %",
        "p50 ms",
        "p99 ms",
        "good/s",
    );
    for (v, cfg) in variants.iter().zip(cfgs) {
        let mut t = replay(&w, slots, hear, &rtt, cfg);
        t.ttft_ms.sort_by(f64::total_cmp);
        t.queued_ms.sort_by(f64::total_cmp);
        let n = w.requests.len() as f64;
        println!(
            "{v:<52} {:>7} {:>6.2} {:>7.2} {:>7.1} {:>7.1} {:>7.3}  {} {:.0} {:.0} {:.0}",
            t.served,
            100.0 * t.throttled as f64 / n,
            100.0 * t.local as f64 / t.served.max(1) as f64,
            percentile(&t.ttft_ms, 50.0),
            percentile(&t.ttft_ms, 99.0),
            t.ttft_ms.iter().filter(|&&x| x <= 2000.0).count() as f64 / span,
            t.queued_ms.len(),
            percentile(&t.queued_ms, 50.0),
            percentile(&t.queued_ms, 90.0),
            percentile(&t.queued_ms, 99.0)
        );
    }
    Ok(())
}
