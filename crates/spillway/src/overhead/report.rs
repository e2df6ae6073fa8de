//! What `bench overhead` reports: the JSON figures and the tables it prints.
use serde::Serialize;
use spillway_bench::overhead::Stats;

use super::ramp::RampStep;
use super::{Case, reference, round3, state};

pub fn print_table(r: &Report) {
    if !r.cases.is_empty() {
        print_cases(r);
    }
    if let Some(reference) = &r.reference {
        super::reference::print_table(reference);
    }
}

fn print_cases(r: &Report) {
    println!();
    println!(
        "{:<14} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>7}",
        "case",
        "rps",
        "direct p50",
        "direct p99",
        "gw p50",
        "gw p99",
        "added p50",
        "added p99",
        "max rps",
        "errors"
    );
    for c in &r.cases {
        println!(
            "{:<14} {:>6.0} {:>7.3} ms {:>7.3} ms {:>7.3} ms {:>7.3} ms {:>7.3} ms {:>7.3} ms {:>9} {:>7}",
            c.name,
            c.rps,
            c.direct_p50_ms,
            c.direct_p99_ms,
            c.gateway_p50_ms,
            c.gateway_p99_ms,
            c.added_p50_ms,
            c.added_p99_ms,
            if c.ramp.is_empty() {
                "-".to_string()
            } else {
                format!(
                    "{}{:.0}",
                    if c.max_rps_is_ceiling { "≥" } else { "" },
                    c.max_rps
                )
            },
            c.errors
        );
    }
    println!(
        "\nrps is per path; latency is to the complete answer (non-streaming) or to [DONE] (streaming); \
         added = gateway − direct. max rps: the gateway path alone, no errors, p99 from the due time at most \
         {} ms over the side-by-side gateway p99 ({} s steps; load generator, gateway and simulator on the same {} cores).",
        r.settings.ramp_slack_ms, r.settings.ramp_seconds, r.settings.cores
    );
    if let (Some(url), Some(q)) = (&r.settings.state, r.settings.quota_rpm) {
        state::print_table(r.cases.iter().map(|c| (c.name, &c.redis)), url, q);
    }
}

/// The figures of one case: the keys of the issue, then the detail.
#[derive(Debug, Clone, Serialize)]
pub(super) struct CaseReport {
    pub(super) name: &'static str,
    pub(super) rps: f64,
    pub(super) direct_p50_ms: f64,
    pub(super) direct_p99_ms: f64,
    pub(super) gateway_p50_ms: f64,
    pub(super) gateway_p99_ms: f64,
    pub(super) added_p50_ms: f64,
    pub(super) added_p99_ms: f64,
    pub(super) max_rps: f64,
    /// No ramp step failed below the ceiling: `max_rps` is a lower bound.
    pub(super) max_rps_is_ceiling: bool,
    pub(super) errors: usize,
    pub(super) direct: Stats,
    pub(super) gateway: Stats,
    pub(super) ramp: Vec<RampStep>,
    /// The Redis-backed gateway against the memory one (`--state`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) redis: Option<state::RedisFigures>,
}

#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub(super) cases: Vec<CaseReport>,
    pub(super) settings: Settings,
    /// The comparison with nginx, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) reference: Option<reference::ReferenceReport>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Settings {
    pub(super) seconds: f64,
    pub(super) warmup: f64,
    pub(super) prompt_tokens: u64,
    pub(super) max_tokens: u64,
    pub(super) ramp_seconds: f64,
    pub(super) ramp_max_rps: f64,
    pub(super) ramp_slack_ms: f64,
    pub(super) client_threads: usize,
    pub(super) cores: usize,
    /// `--state`: the Redis (without credentials) and the tenant's quota, requests per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) quota_rpm: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) lease_fraction: Option<f64>,
}

pub(super) fn print_side_by_side(
    case: Case,
    direct: &Stats,
    gw: &Stats,
    redis: Option<&state::RedisFigures>,
) {
    eprintln!(
        "  {:<14} direct p50 {:.3} ms p99 {:.3} ms | gateway p50 {:.3} ms p99 {:.3} ms | errors {}",
        case.name(),
        direct.p50_ms,
        direct.p99_ms,
        gw.p50_ms,
        gw.p99_ms,
        direct.errors + gw.errors
    );
    if let Some(r) = redis {
        eprintln!(
            "  {:<14} redis gateway p50 {:.3} ms p99 {:.3} ms (added over memory: p50 {:.3} ms, p99 {:.3} ms) | errors {}",
            case.name(),
            r.gateway_p50_ms,
            r.gateway_p99_ms,
            r.added_p50_ms,
            r.added_p99_ms,
            r.gateway.errors
        );
    }
}

impl CaseReport {
    /// The figures of one case from its side-by-side run and its ramp (max rps, whether that
    /// is the ceiling, the steps).
    pub(super) fn new(
        case: Case,
        rps: f64,
        direct: Stats,
        gw: Stats,
        redis: Option<state::RedisFigures>,
        (max_rps, ceiling, ramp): (f64, bool, Vec<RampStep>),
    ) -> CaseReport {
        let errors = direct.errors + gw.errors + redis.as_ref().map_or(0, |r| r.gateway.errors);
        CaseReport {
            name: case.name(),
            rps,
            direct_p50_ms: round3(direct.p50_ms),
            direct_p99_ms: round3(direct.p99_ms),
            gateway_p50_ms: round3(gw.p50_ms),
            gateway_p99_ms: round3(gw.p99_ms),
            added_p50_ms: round3(gw.p50_ms - direct.p50_ms),
            added_p99_ms: round3(gw.p99_ms - direct.p99_ms),
            max_rps,
            max_rps_is_ceiling: ceiling,
            errors,
            direct,
            gateway: gw,
            ramp,
            redis,
        }
    }
}
