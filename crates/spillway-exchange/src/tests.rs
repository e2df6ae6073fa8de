//! Tests of the exchange over virtual time, with the real routing core as its capacity.
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use spillway_core::{
    Admission, Candidate, Demand, DeploymentIx, DeploymentSpec, Outcome as CoreOutcome, Plan,
    RegionIx, RouteRequest, Router, RouterConfig,
};
use spillway_proto::{ChatChunk, ChunkChoice, Delta, Usage};

use crate::{Action, Capacity, Event, Exchange, Facts, Limits, Piece, Record, ResumePolicy};

mod drain;
mod paths;
mod props;
mod resume;
mod whole;

pub(crate) const PROMPT: u64 = 100;
pub(crate) const FIRST_BYTE: Duration = Duration::from_secs(4);
pub(crate) const REQUEST: Duration = Duration::from_secs(6);
pub(crate) const TOTAL: Duration = Duration::from_secs(10);

pub(crate) fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// The real router, counting admissions out and in so a test can see each released once.
pub(crate) struct Counted {
    pub router: Router,
    pub outstanding: i64,
    pub releases: Vec<(DeploymentIx, CoreOutcome, u64)>,
    /// Per release: the cached prompt tokens the upstream reported.
    pub reported_cached: Vec<Option<u64>>,
}

impl Capacity for Counted {
    fn admit_next(
        &mut self,
        plan: &Plan,
        from: usize,
        demand: Demand,
        now: Duration,
    ) -> Option<(usize, Admission)> {
        let got = Capacity::admit_next(&mut self.router, plan, from, demand, now);
        self.outstanding += i64::from(got.is_some());
        got
    }

    fn try_retry(&mut self, now: Duration) -> bool {
        Capacity::try_retry(&mut self.router, now)
    }

    fn release(&mut self, admission: Admission, outcome: CoreOutcome, charge: u64, now: Duration) {
        self.outstanding -= 1;
        self.releases.push((admission.deployment, outcome, charge));
        self.reported_cached.push(admission.reported_cached);
        Capacity::release(&mut self.router, admission, outcome, charge, now);
    }
}

/// Three regions, one deployment each (region `i` is deployment `i`); region 0 is the source.
pub(crate) struct World {
    pub cap: Counted,
    /// `Limits::drain` of the exchanges it admits (zero unless a test sets it).
    pub drain: Duration,
    /// Whether a non-streamed request's attempts stream from the upstream (`Facts`).
    pub upstream_stream: bool,
    /// Mid-stream failover of the streams it admits (`Facts::resume`); off unless set.
    pub resume: Option<ResumePolicy>,
    pub candidates: Vec<Candidate>,
    pub actions: Vec<Action>,
}

impl World {
    pub fn new(regions: u16) -> World {
        World::with(regions, RouterConfig::default())
    }

    pub fn with(regions: u16, cfg: RouterConfig) -> World {
        let spec = |r| DeploymentSpec {
            region: RegionIx(r),
            max_in_flight: 8,
            rpm: None,
            tpm: None,
        };
        let router = Router::new(cfg, (0..3).map(spec).collect());
        let candidates = (0..regions)
            .map(|r| Candidate {
                deployment: DeploymentIx(u32::from(r)),
                region: RegionIx(r),
                rtt: ms(1 + 20 * u64::from(r)),
            })
            .collect();
        World {
            cap: Counted {
                router,
                outstanding: 0,
                releases: Vec::new(),
                reported_cached: Vec::new(),
            },
            candidates,
            drain: Duration::ZERO,
            upstream_stream: false,
            resume: None,
            actions: Vec::new(),
        }
    }

    /// Admit a request at `now` (plan and first admission in one step of the core).
    pub fn admit(&mut self, now: Duration, stream: bool) -> Exchange {
        let demand = Demand {
            est_tokens: PROMPT + 50,
            input_tokens: PROMPT,
        };
        let req = RouteRequest {
            source: RegionIx(0),
            candidates: &self.candidates,
            est_tokens: demand.est_tokens,
            input_tokens: demand.input_tokens,
            prefix: spillway_core::Prefix::NONE,
        };
        let routed = self
            .cap
            .router
            .route(&req, now, &mut SmallRng::seed_from_u64(1));
        self.cap.outstanding += i64::from(routed.first.is_some());
        let facts = Facts {
            source: RegionIx(0),
            stream,
            upstream_stream: stream || self.upstream_stream,
            prompt_tokens: PROMPT,
            demand,
            candidates: self.candidates.len(),
            reserved_tokens: Some(demand.est_tokens),
            price: Some(crate::Price {
                input_per_mtok: 1.0,
                output_per_mtok: 4.0,
            }),
            resume: self.resume.clone().filter(|_| stream),
        };
        let limits = Limits {
            first_byte: FIRST_BYTE,
            request: REQUEST,
            total: TOTAL,
            drain: self.drain,
        };
        let mut x = Exchange::new(now, facts, limits, routed.plan, routed.first);
        self.drain(&mut x);
        x
    }

    pub fn feed(&mut self, x: &mut Exchange, now: Duration, ev: Event) {
        x.handle(now, ev, &mut self.cap);
        self.drain(x);
    }

    fn drain(&mut self, x: &mut Exchange) {
        while let Some(a) = x.poll_action() {
            self.actions.push(a);
        }
    }

    /// The attempts sent so far, in order: (attempt id, region).
    pub fn sends(&self) -> Vec<(crate::AttemptId, RegionIx)> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Send {
                    attempt, region, ..
                } => Some((*attempt, *region)),
                _ => None,
            })
            .collect()
    }

    /// The invariants every finished exchange keeps; returns its record.
    pub fn check_finished(&self) -> Record {
        let finished: Vec<&Record> = self
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Finished(r) => Some(&**r),
                _ => None,
            })
            .collect();
        assert_eq!(
            finished.len(),
            1,
            "exactly one Finished: {:?}",
            self.actions
        );
        assert!(
            matches!(self.actions.last(), Some(Action::Finished(_))),
            "Finished is the last action"
        );
        assert_eq!(self.cap.outstanding, 0, "every admission released once");
        for (_, region) in self.sends() {
            assert!(
                self.candidates.iter().any(|c| c.region == region),
                "sent to {region:?}, outside the destination set"
            );
        }
        let first_emit = self
            .actions
            .iter()
            .position(|a| matches!(a, Action::Emit(_)));
        let last_send = self
            .actions
            .iter()
            .rposition(|a| matches!(a, Action::Send { resume: None, .. }));
        if let (Some(e), Some(s)) = (first_emit, last_send) {
            assert!(
                s < e,
                "no new attempt after the first byte, only continuations"
            );
        }
        let continuations: Vec<&Action> = self
            .actions
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::Send {
                        resume: Some(_),
                        ..
                    }
                )
            })
            .collect();
        if let Some(p) = &self.resume {
            assert!(continuations.len() <= p.max_resumes as usize);
        } else {
            assert!(
                continuations.is_empty(),
                "a continuation without the feature"
            );
        }
        for a in continuations {
            let Action::Send {
                deployment, reason, ..
            } = a
            else {
                continue;
            };
            assert!(matches!(reason, spillway_core::Reason::Resume(_)));
            let allowed = self.resume.as_ref().map(|p| &p.deployments);
            assert!(allowed.is_some_and(|d| d.iter().any(|(a, _)| a == deployment)));
        }
        let record = finished[0].clone();
        match record.settle {
            crate::Settle::Used(t) => assert_eq!(t, record.usage.total_tokens),
            crate::Settle::Cancel => assert_eq!(record.usage, Usage::default()),
        }
        record
    }
}

/// A streamed chunk with `text` (empty: a role-only or usage-only chunk).
pub(crate) fn chunk(text: &str, usage: Option<Usage>) -> Piece {
    let choices = if usage.is_some() && text.is_empty() {
        Vec::new()
    } else {
        vec![ChunkChoice {
            index: 0,
            delta: Delta {
                role: None,
                content: (!text.is_empty()).then(|| text.to_string()),
                extra: Default::default(),
            },
            finish_reason: None,
            extra: Default::default(),
        }]
    };
    Piece::Chunk {
        chunk: Box::new(ChatChunk {
            id: "c".into(),
            object: "chat.completion.chunk".into(),
            created: 0,
            model: "m".into(),
            choices,
            usage,
            extra: Default::default(),
        }),
        raw: None,
    }
}

pub(crate) fn usage(prompt: u64, completion: u64) -> Usage {
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        prompt_tokens_details: None,
    }
}
