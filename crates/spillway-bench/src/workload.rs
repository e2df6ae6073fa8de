//! The offered load of a bench run: every request of every source region, in trace time.
//!
//! Each source region gets its own arrivals: a trace replayed from a per-region offset
//! (region `k` starts `k × shift` into the trace and wraps around, so the regions' bursts do
//! not coincide), or a Poisson or gamma process with its own seed. Token counts come from the
//! trace, capped at [`MAX_INPUT_TOKENS`] and [`MAX_OUTPUT_TOKENS`] so a replay stays quick, or
//! are fixed for the synthetic processes. A request limit keeps the first `N` requests of all
//! regions together, in arrival order.
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::traces::Trace;

/// Prompt tokens of a trace request are capped at this.
pub const MAX_INPUT_TOKENS: u64 = 4096;
/// Output tokens of a trace request are capped at this.
pub const MAX_OUTPUT_TOKENS: u64 = 512;

/// Where arrivals come from.
#[derive(Debug, Clone)]
pub enum Arrivals {
    /// A trace, named for the report.
    Trace {
        trace: Trace,
        name: String,
    },
    Poisson {
        rate: f64,
    },
    Gamma {
        rate: f64,
        cv: f64,
    },
}

/// How to build a workload.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    pub arrivals: Arrivals,
    /// Number of source regions.
    pub sources: usize,
    /// Span of a synthetic process (trace time); a trace runs its whole length.
    pub duration: Duration,
    /// Per-region offset into the trace; `None`: the trace's period over the number of sources.
    pub shift: Option<Duration>,
    pub limit: Option<usize>,
    /// Token counts of synthetic requests.
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub seed: u64,
    /// A trace's prefix ids are the same in every source's copy (the same prompts reach every
    /// region, a while apart), rather than each source's own ([`own_users`]).
    pub shared_prefixes: bool,
}

/// One request to offer.
#[derive(Debug, Clone, PartialEq)]
pub struct Offered {
    /// Index of the source region.
    pub source: usize,
    /// Arrival in trace time.
    pub at: Duration,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The trace's prefix-block ids of the input, if it has them (uncapped: the prompt uses
    /// those that fit in `input_tokens`, see [`crate::client::hashed_prompt`]).
    pub hash_ids: Option<Arc<[u64]>>,
}

impl Offered {
    /// How long this request holds a slot in an engine with these speeds (trace time).
    pub fn service_secs(&self, prefill_tps: f64, decode_tps: f64) -> f64 {
        self.input_tokens as f64 / prefill_tps + self.output_tokens as f64 / decode_tps
    }
}

/// All requests of a run, sorted by arrival time, and a description of where they came from.
#[derive(Debug, Clone)]
pub struct Workload {
    pub requests: Vec<Offered>,
    pub description: String,
}

impl Workload {
    pub fn build(spec: &WorkloadSpec) -> Workload {
        let mut requests = Vec::new();
        let description = match &spec.arrivals {
            Arrivals::Trace { trace, name } => {
                let n = spec.sources.max(1) as u32;
                let shift = spec.shift.unwrap_or(trace.period() / n);
                for k in 0..spec.sources {
                    let offset = shift.saturating_mul(k as u32);
                    requests.extend(trace.shifted(offset).into_iter().map(|r| {
                        let r = r.capped(MAX_INPUT_TOKENS, MAX_OUTPUT_TOKENS);
                        Offered {
                            source: k,
                            at: r.at,
                            input_tokens: r.input_tokens,
                            output_tokens: r.output_tokens,
                            hash_ids: r.hash_ids.map(|ids| match spec.shared_prefixes {
                                true => ids,
                                false => own_users(&ids, k),
                            }),
                        }
                    }));
                }
                format!(
                    "trace {name} ({} requests, {:.0} s), shifted {:.0} s per region",
                    trace.requests.len(),
                    trace.span().as_secs_f64(),
                    shift.as_secs_f64()
                )
            }
            Arrivals::Poisson { rate } => {
                for k in 0..spec.sources {
                    let mut rng = SmallRng::seed_from_u64(spec.seed.wrapping_add(k as u64));
                    let times = crate::arrivals::poisson(*rate, spec.duration, &mut rng);
                    requests.extend(times.into_iter().map(|at| synthetic(spec, k, at)));
                }
                format!("poisson {rate}/s per region")
            }
            Arrivals::Gamma { rate, cv } => {
                for k in 0..spec.sources {
                    let mut rng = SmallRng::seed_from_u64(spec.seed.wrapping_add(k as u64));
                    let times = crate::arrivals::gamma(*rate, *cv, spec.duration, &mut rng);
                    requests.extend(times.into_iter().map(|at| synthetic(spec, k, at)));
                }
                format!("gamma {rate}/s per region, CV {cv}")
            }
        };
        requests.sort_by_key(|r| (r.at, r.source));
        if let Some(n) = spec.limit {
            requests.truncate(n);
        }
        Workload {
            requests,
            description,
        }
    }

    /// The trace time the run covers: whole buckets up to the last arrival.
    pub fn buckets(&self, bucket: Duration) -> usize {
        let last = self.requests.last().map_or(Duration::ZERO, |r| r.at);
        (last.as_nanos() / bucket.as_nanos().max(1)) as usize + 1
    }

    /// `demand[bucket][source]`: requests arriving from each source in each bucket, with
    /// `regions` columns (sources are the first regions).
    pub fn demand(&self, regions: usize, bucket: Duration) -> Vec<Vec<f64>> {
        let mut d = vec![vec![0.0; regions]; self.buckets(bucket)];
        for r in &self.requests {
            let b = (r.at.as_nanos() / bucket.as_nanos().max(1)) as usize;
            if let Some(cell) = d.get_mut(b).and_then(|row| row.get_mut(r.source)) {
                *cell += 1.0;
            }
        }
        d
    }

    /// Mean time a request holds a slot in an engine with these speeds (trace time).
    pub fn mean_service_secs(&self, prefill_tps: f64, decode_tps: f64) -> f64 {
        if self.requests.is_empty() {
            return 0.0;
        }
        let total: f64 = self
            .requests
            .iter()
            .map(|r| r.service_secs(prefill_tps, decode_tps))
            .sum();
        total / self.requests.len() as f64
    }
}

fn synthetic(spec: &WorkloadSpec, source: usize, at: Duration) -> Offered {
    Offered {
        source,
        at,
        input_tokens: spec.input_tokens,
        output_tokens: spec.output_tokens.max(1),
        hash_ids: None,
    }
}

/// Source `k`'s copy of a trace's prefix ids: every source replays the whole trace, so its
/// copy stands for its own users, whose prompts share prefixes with each other as the trace
/// says but not with another source's copy of the same conversation (which would let a
/// cache-aware router find a "conversation" in a region that only replayed it).
fn own_users(ids: &[u64], k: usize) -> Arc<[u64]> {
    let base = (k as u64) << 40;
    ids.iter().map(|id| id.wrapping_add(base)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traces::TraceRequest;

    fn spec(arrivals: Arrivals) -> WorkloadSpec {
        WorkloadSpec {
            arrivals,
            sources: 3,
            duration: Duration::from_secs(10),
            shift: None,
            limit: None,
            input_tokens: 100,
            output_tokens: 10,
            seed: 1,
            shared_prefixes: false,
        }
    }

    fn trace() -> Trace {
        let requests = (0..6)
            .map(|i| TraceRequest {
                at: Duration::from_secs(i),
                input_tokens: 10_000,
                output_tokens: i,
                hash_ids: None,
            })
            .collect();
        Trace { requests }
    }

    #[test]
    fn a_trace_feeds_every_region_shifted_and_capped() {
        let w = Workload::build(&spec(Arrivals::Trace {
            trace: trace(),
            name: "t".into(),
        }));
        assert_eq!(w.requests.len(), 18);
        assert!(w.requests.windows(2).all(|p| p[0].at <= p[1].at));
        assert!(
            w.requests
                .iter()
                .all(|r| r.input_tokens == MAX_INPUT_TOKENS)
        );
        assert!(w.requests.iter().all(|r| r.output_tokens >= 1));
        // Period 5.83 s, shift 1.94 s: region 1 starts with the request at 2 s, region 2 at 4 s.
        let first = |k: usize| {
            w.requests
                .iter()
                .find(|r| r.source == k)
                .map(|r| r.output_tokens)
        };
        assert_eq!((first(0), first(1), first(2)), (Some(1), Some(2), Some(4)));
        let d = w.demand(5, Duration::from_secs(1));
        assert_eq!(d.len(), 6);
        assert!(d.iter().all(|row| row[3] == 0.0 && row[4] == 0.0));
        assert_eq!(d.iter().flatten().sum::<f64>(), 18.0);
    }

    #[test]
    fn each_source_replays_the_trace_for_its_own_users() {
        let mut t = trace();
        for r in &mut t.requests {
            r.hash_ids = Some(Arc::from([7u64, 8, 9].as_slice()));
        }
        let t2 = t.clone();
        let w = Workload::build(&spec(Arrivals::Trace {
            trace: t,
            name: "t".into(),
        }));
        let ids = |k: usize| -> Vec<Arc<[u64]>> {
            w.requests
                .iter()
                .filter(|r| r.source == k)
                .filter_map(|r| r.hash_ids.clone())
                .collect()
        };
        // Within a source the trace's sharing holds; across sources nothing is shared.
        let (a, b) = (ids(0), ids(1));
        assert_eq!(a.len(), 6);
        assert!(a.iter().all(|x| *x == a[0]) && b.iter().all(|x| *x == b[0]));
        assert!(a[0].iter().all(|x| !b[0].contains(x)), "{a:?} {b:?}");
        // Shared: every copy carries the trace's own ids.
        let mut s = spec(Arrivals::Trace {
            trace: t2,
            name: "t".into(),
        });
        s.shared_prefixes = true;
        let w = Workload::build(&s);
        assert!(
            w.requests
                .iter()
                .all(|r| r.hash_ids.as_deref() == Some(&[7u64, 8, 9][..]))
        );
    }

    #[test]
    fn the_limit_keeps_the_earliest_requests_of_all_regions() {
        let mut s = spec(Arrivals::Poisson { rate: 20.0 });
        s.limit = Some(30);
        let w = Workload::build(&s);
        assert_eq!(w.requests.len(), 30);
        for k in 0..3 {
            assert!(
                w.requests.iter().any(|r| r.source == k),
                "no request from {k}"
            );
        }
        let all = Workload::build(&spec(Arrivals::Poisson { rate: 20.0 }));
        assert_eq!(&all.requests[..30], &w.requests[..]);
    }

    #[test]
    fn regions_get_independent_synthetic_streams() {
        let w = Workload::build(&spec(Arrivals::Gamma { rate: 5.0, cv: 2.0 }));
        let times = |k: usize| -> Vec<Duration> {
            w.requests
                .iter()
                .filter(|r| r.source == k)
                .map(|r| r.at)
                .collect()
        };
        assert_ne!(times(0), times(1));
        assert!(
            w.requests
                .iter()
                .all(|r| (r.input_tokens, r.output_tokens) == (100, 10))
        );
    }

    #[test]
    fn mean_service_time_follows_the_engine_speeds() {
        let w = Workload {
            requests: vec![
                Offered {
                    source: 0,
                    at: Duration::ZERO,
                    input_tokens: 4000,
                    output_tokens: 50,
                    hash_ids: None,
                },
                Offered {
                    source: 0,
                    at: Duration::ZERO,
                    input_tokens: 0,
                    output_tokens: 150,
                    hash_ids: None,
                },
            ],
            description: String::new(),
        };
        // (1 + 1) and (0 + 3) seconds.
        assert!((w.mean_service_secs(4000.0, 50.0) - 2.5).abs() < 1e-12);
        assert_eq!(w.buckets(Duration::from_secs(1)), 1);
    }
}
