//! Per-deployment state and the checks the planner and the admission share.
use std::time::Duration;

use super::{DeploymentSpec, MINUTE, Rejection};
use crate::{AdaptiveLimit, Health, TokenBucket};

/// Per-deployment state.
#[derive(Debug, Clone)]
pub(super) struct Deployment {
    pub(super) spec: DeploymentSpec,
    pub(super) health: Health,
    /// No new request before this (from an upstream 429's Retry-After).
    pub(super) cooldown_until: Duration,
    pub(super) in_flight: u32,
    pub(super) limit: AdaptiveLimit,
    pub(super) rpm: Option<TokenBucket>,
    pub(super) tpm: Option<TokenBucket>,
    /// EWMA time to first token, in nanoseconds, as seen by the gateway (includes the RTT).
    pub(super) ewma_ttft: Option<f64>,
    /// EWMA time per output token, in nanoseconds.
    pub(super) ewma_tpot: Option<f64>,
}

impl Deployment {
    pub(super) fn new(spec: DeploymentSpec) -> Self {
        Deployment {
            health: Health::new(),
            cooldown_until: Duration::ZERO,
            in_flight: 0,
            limit: AdaptiveLimit::new(spec.max_in_flight),
            rpm: spec
                .rpm
                .map(|c| TokenBucket::new(u64::from(c), MINUTE, Duration::ZERO)),
            tpm: spec
                .tpm
                .map(|c| TokenBucket::new(c, MINUTE, Duration::ZERO)),
            ewma_ttft: None,
            ewma_tpot: None,
            spec,
        }
    }

    /// Headroom check: health, cooldown, in-flight vs. adaptive limit, RPM, TPM (in that order).
    pub(super) fn check(&mut self, est_tokens: u64, now: Duration) -> Result<(), Rejection> {
        if !self.health.is_available(now) || now < self.cooldown_until {
            Err(Rejection::Unavailable)
        } else if self.in_flight >= self.limit.current() {
            Err(Rejection::InFlight)
        } else if self.rpm.as_mut().is_some_and(|b| b.available(now) < 1) {
            Err(Rejection::Rpm)
        } else if self
            .tpm
            .as_mut()
            .is_some_and(|b| b.available(now) < est_tokens)
        {
            Err(Rejection::Tpm)
        } else {
            Ok(())
        }
    }

    /// When every obstacle to admitting `est_tokens` is expected to be gone (from now).
    pub(super) fn wait(&mut self, est_tokens: u64, now: Duration) -> Duration {
        let mut wait = self.cooldown_until.saturating_sub(now);
        if let Some(until) = self.health.ejected_until(now) {
            wait = wait.max(until.saturating_sub(now));
        }
        if self.health.is_probing() || self.in_flight >= self.limit.current() {
            // Bound by requests in flight: we cannot know when they end; guess a second.
            wait = wait.max(Duration::from_secs(1));
        }
        if let Some(b) = self.rpm.as_mut() {
            wait = wait.max(b.time_until(1, now));
        }
        if let Some(b) = self.tpm.as_mut() {
            wait = wait.max(b.time_until(est_tokens, now));
        }
        wait
    }

    /// Expected time to first token from the source (ns), and the utilisation behind it.
    pub(super) fn score(&self, rtt: Duration, prior_ns: f64) -> (f64, f64) {
        let rtt = rtt.as_nanos() as f64;
        let service = self.ewma_ttft.map_or(prior_ns, |t| (t - rtt).max(0.0));
        let util = f64::from(self.in_flight) / f64::from(self.limit.current().max(1));
        (rtt + service * (1.0 + util), util)
    }
}

/// An eligible candidate while planning.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    /// Position in `req.candidates`.
    pub(super) pos: usize,
    pub(super) score: f64,
    pub(super) util: f64,
    pub(super) local: bool,
}

pub(super) fn ewma(slot: &mut Option<f64>, x: Duration, alpha: f64) {
    let x = x.as_nanos() as f64;
    *slot = Some(match *slot {
        Some(prev) => prev + alpha * (x - prev),
        None => x,
    });
}
