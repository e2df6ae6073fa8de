//! `spillway bench --peer URL --peer-model NAME`: another gateway measured with the same
//! instrument.
//!
//! The five simulated regions of `--self-contained` (same capacity, same speeds, same time
//! scale) listen on fixed ports from `--sim-base-port` on, printed with an example LiteLLM
//! configuration. Once the peer answers `GET {URL}/v1/models`, the arrivals of the three us
//! source regions are replayed through it, all to `URL` (a peer gateway has one address; the
//! source region is the request's label), with `model = NAME` and each request's id in
//! `x-request-id`.
//!
//! The serving region of a request is the simulator that recorded it with outcome `ok`, matched
//! by request id: the simulators record `x-spillway-request-id`, else `x-request-id`, so the
//! peer must forward that header (LiteLLM does with `forward_client_headers_to_llm_api: true`).
//! A served request no simulator recorded under its id is reported as `unattributed` (not
//! local) and counted in a note. Residency is judged as for Spillway's policies: a request is a
//! violation if any simulator outside the us geography recorded it; a record without an id in
//! an eu simulator is a violation too (it cannot have been allowed for any source).
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use spillway_bench::client::LoadClient;
use spillway_bench::report::{self, Context, PolicyReport};
use spillway_bench::summary::residency_violations;
use spillway_bench::workload::Workload;
use spillway_sim::{SimConfig, SimHandle};

use super::BenchArgs;
use super::local::{DECODE_TPS, MODEL, PREFILL_TPS, REGIONS, SOURCES};

/// The key sent when neither `--api-key` nor `$SPILLWAY_API_KEY` is set.
const NO_KEY: &str = "sk-spillway-bench";
/// The serving region of a served request no simulator recorded under its id.
const UNATTRIBUTED: &str = "unattributed";

pub(super) struct Peer {
    url: String,
    model: String,
    name: String,
    key: String,
    timeout: Duration,
    sims: Vec<SimHandle>,
}

impl Peer {
    /// Starts the simulators on their fixed ports and prints where they are.
    pub(super) async fn start(args: &BenchArgs, concurrency: u32) -> anyhow::Result<Peer> {
        let raw = args.peer.as_deref().unwrap_or_default();
        let url = super::base_url(raw).map_err(|e| anyhow::anyhow!("--peer: {e}"))?;
        let model = args.peer_model.clone().context(
            "--peer needs --peer-model NAME (the model name the peer routes over the us simulators)",
        )?;
        anyhow::ensure!(
            args.peer_timeout.is_finite() && args.peer_timeout > 0.0,
            "--peer-timeout must be a positive number of seconds"
        );
        let mut sims = Vec::new();
        for (i, (region, _)) in REGIONS.iter().enumerate() {
            let port = u16::try_from(i)
                .ok()
                .and_then(|i| args.sim_base_port.checked_add(i))
                .filter(|p| *p != 0)
                .context("--sim-base-port: the simulators' ports must be between 1 and 65535")?;
            let listener = tokio::net::TcpListener::bind((args.sim_host, port))
                .await
                .with_context(|| {
                    format!(
                        "binding the {region} simulator to {}:{port} (in use? choose another --sim-base-port)",
                        args.sim_host
                    )
                })?;
            let cfg = SimConfig {
                region: region.to_string(),
                concurrency,
                queue_limit: concurrency,
                prefill_tokens_per_sec: PREFILL_TPS,
                decode_tokens_per_sec: DECODE_TPS,
                rtt: Duration::ZERO,
                time_scale: args.time_scale,
                ..SimConfig::default()
            };
            sims.push(spillway_sim::spawn(cfg, listener).await?);
        }
        let peer = Peer {
            url,
            model,
            name: args.peer_name.clone(),
            key: super::api_key(args).unwrap_or_else(|| NO_KEY.to_string()),
            timeout: Duration::from_secs_f64(args.peer_timeout),
            sims,
        };
        peer.print_setup(concurrency);
        Ok(peer)
    }

    fn print_setup(&self, concurrency: u32) {
        eprintln!(
            "spillway bench: simulators for the peer ({concurrency} slots each, any model name):"
        );
        for (sim, (_, geo)) in self.sims.iter().zip(REGIONS) {
            let idle = if geo == "us" {
                ""
            } else {
                "  (other geography: must stay idle)"
            };
            eprintln!("  {:<13} {}{idle}", sim.region(), sim.base_url());
        }
        eprintln!(
            "spillway bench: an example LiteLLM config over them (`litellm --config FILE`):\n\
             model_list:"
        );
        for sim in &self.sims[..SOURCES] {
            eprintln!(
                "  - model_name: {}\n    litellm_params: {{ model: \"openai/{MODEL}\", api_base: \"{}\", api_key: \"none\" }}",
                self.model,
                sim.base_url()
            );
        }
        eprintln!(
            "router_settings:\n  routing_strategy: simple-shuffle   # or least-busy, latency-based-routing\n\
             general_settings:\n  forward_client_headers_to_llm_api: true   # x-request-id: how the bench attributes requests"
        );
    }

    /// Polls `GET {URL}/v1/models` until it answers 2xx; refuses at once on 401/403.
    pub(super) async fn wait_ready(&self) -> anyhow::Result<()> {
        eprintln!(
            "spillway bench: waiting for an OpenAI-compatible gateway at {} (GET /v1/models, up to {:.0} s)",
            self.url,
            self.timeout.as_secs_f64()
        );
        let client = LoadClient::new(&self.key)?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let last = match client.models_status(&self.url).await {
                Ok(s) if (200..300).contains(&s) => break,
                Ok(s @ (401 | 403)) => anyhow::bail!(
                    "the peer at {} answered {s} to GET /v1/models: give its key with --api-key or $SPILLWAY_API_KEY",
                    self.url
                ),
                Ok(s) => format!("HTTP {s}"),
                Err(e) => e.to_string(),
            };
            anyhow::ensure!(
                Instant::now() < deadline,
                "no answer from the peer at {} within {:.0} s (--peer-timeout); last: {last}",
                self.url,
                self.timeout.as_secs_f64()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        eprintln!("spillway bench: the peer answers");
        Ok(())
    }

    /// Replays the arrivals through the peer; serving regions from the simulators' records.
    pub(super) async fn run(
        &self,
        w: &Workload,
        args: &BenchArgs,
        cx: &Context<'_>,
        notes: &mut Vec<String>,
    ) -> anyhow::Result<PolicyReport> {
        // Whatever the peer's health checks sent before the run is not part of it.
        for sim in &self.sims {
            sim.clear_served();
        }
        let sources: Vec<String> = REGIONS[..SOURCES].iter().map(|r| r.0.to_string()).collect();
        let urls = vec![self.url.clone(); SOURCES];
        let specs = super::specs(w, args.time_scale, &urls, &sources, &self.model);
        let mut results = super::drive(&self.name, LoadClient::new(&self.key)?, specs).await?;
        // A stream's record is closed just after its last chunk: let the last ones land.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let us: HashSet<String> = REGIONS
            .iter()
            .filter(|r| r.1 == "us")
            .map(|r| r.0.to_string())
            .collect();
        let mut seen = Vec::new();
        let mut served_in: HashMap<String, String> = HashMap::new();
        let (mut anonymous, mut anonymous_outside) = (0u64, 0u64);
        for sim in &self.sims {
            for rec in sim.served() {
                match rec.request_id {
                    Some(id) => {
                        if rec.outcome == "ok" {
                            served_in
                                .entry(id.clone())
                                .or_insert_with(|| rec.region.clone());
                        }
                        seen.push((id, rec.region));
                    }
                    None => {
                        anonymous += 1;
                        if !us.contains(&rec.region) {
                            anonymous_outside += 1;
                        }
                    }
                }
            }
        }
        let mut unattributed = 0u64;
        for r in results.iter_mut().filter(|r| r.ok()) {
            r.served_region = Some(served_in.get(&r.id).cloned().unwrap_or_else(|| {
                unattributed += 1;
                UNATTRIBUTED.to_string()
            }));
        }
        let source_of: HashMap<String, String> = cx
            .sent
            .iter()
            .map(|(id, s)| (id.clone(), s.source.clone()))
            .collect();
        let allowed: HashMap<String, HashSet<String>> =
            sources.iter().map(|s| (s.clone(), us.clone())).collect();
        let violations = residency_violations(&seen, &source_of, &allowed) + anonymous_outside;
        if unattributed > 0 {
            notes.push(format!(
                "{}: {unattributed} served requests were recorded by no simulator under their id (is x-request-id forwarded?); they count as '{UNATTRIBUTED}', not local",
                self.name
            ));
        }
        if anonymous > 0 {
            notes.push(format!(
                "{}: the simulators recorded {anonymous} requests without a request id ({anonymous_outside} of them outside the us, counted as residency violations)",
                self.name
            ));
        }
        Ok(report::policy_report(&self.name, &results, violations, cx))
    }

    pub(super) async fn shutdown(self) {
        for sim in &self.sims {
            sim.shutdown();
        }
        for sim in &self.sims {
            // The peer may hold connections open: do not wait for it forever.
            let _ = tokio::time::timeout(Duration::from_secs(5), sim.stopped()).await;
        }
    }
}
