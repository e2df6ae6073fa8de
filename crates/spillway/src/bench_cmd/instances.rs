//! `--state redis://… --instances N`: each policy served by N gateway instances of one
//! configuration that share one Redis (`[state] kind = "redis"`): the deployments' in-flight
//! counts and health, the tenant's quotas and, with prefix caches, where each instance sent
//! which prompt (the gateway's `shared_prefix` streams).
//!
//! The first instance is the [`Stack`] that starts the simulators; the others are started on
//! the same simulators' URLs, so every instance routes to the same regions. Each policy's run
//! has keys of its own (`key_prefix` names the process, the run and the policy), so no run
//! inherits an earlier one's loads or prefix estimates. The requests of each source region go
//! to the instances in turn, as a load balancer without session affinity spreads them: a
//! conversation's next turn usually reaches another instance than its last one, which is the
//! case the shared prefix estimate is for.
//!
//! What sharing costs is part of the figures: an instance admits against the others' in-flight
//! counts as of up to about 0.4 s ago (the `shared_deployments` bound), and it learns another
//! instance's prompts within about 0.1 s. Under `--time-scale X` both are X times longer in
//! trace time, so compare one instance and N at the same, modest scale.
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use spillway_bench::client::RequestSpec;
use spillway_embedded::Stack;
use spillway_gateway::{Config, Gateway};

/// The gateway instances of one policy's run.
pub(super) struct Instances {
    /// The first instance and the simulators every instance routes to.
    stack: Stack,
    /// Instances 2..=N.
    others: Vec<Gateway>,
}

impl Instances {
    /// `n` instances of the configuration `toml` (its simulators started once, by the first).
    pub(super) async fn start(toml: &str, n: usize) -> anyhow::Result<Instances> {
        let stack = Stack::start(Config::parse(toml, "<bench>")?)
            .await
            .context("starting the gateway")?;
        let mut running = Instances {
            stack,
            others: Vec::new(),
        };
        for k in 2..=n {
            let started = match Config::parse(toml, "<bench>") {
                Ok(cfg) => Gateway::start_with_sims(cfg, running.stack.sim_urls())
                    .await
                    .map_err(anyhow::Error::from),
                Err(e) => Err(e.into()),
            };
            match started {
                Ok(g) => running.others.push(g),
                Err(e) => {
                    running.shutdown(Duration::from_secs(1)).await;
                    return Err(e.context(format!("starting gateway instance {k}")));
                }
            }
        }
        Ok(running)
    }

    /// The first instance and the simulators.
    pub(super) fn stack(&self) -> &Stack {
        &self.stack
    }

    /// Per source region: each instance's `http://` base URL for it, in instance order.
    pub(super) fn urls(&self, sources: &[String]) -> anyhow::Result<HashMap<String, Vec<String>>> {
        let gateways = std::iter::once(self.stack.gateway()).chain(&self.others);
        let mut urls: HashMap<String, Vec<String>> = HashMap::new();
        for (k, g) in gateways.enumerate() {
            for source in sources {
                let addr = g
                    .addr(source)
                    .with_context(|| format!("instance {}: no listener for {source}", k + 1))?;
                urls.entry(source.clone())
                    .or_default()
                    .push(format!("http://{addr}"));
            }
        }
        Ok(urls)
    }

    /// Stop the other instances, then the first and the simulators; in-flight requests get
    /// `grace`.
    pub(super) async fn shutdown(self, grace: Duration) {
        for g in self.others {
            g.shutdown(grace).await;
        }
        self.stack.shutdown(grace).await;
    }
}

/// `--instances` and `--state` make sense together.
pub(super) fn check(args: &super::BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.instances >= 1, "--instances must be at least 1");
    anyhow::ensure!(
        args.instances == 1 || args.state.is_some(),
        "--instances {} needs --state redis://HOST:PORT for the instances to share",
        args.instances
    );
    Ok(())
}

/// The report's note on how the policies were served, with `--state`.
pub(super) fn note(args: &super::BenchArgs) -> Option<String> {
    args.state.as_ref().map(|url| {
        format!(
            "each policy ran on {} gateway instance(s) sharing the Redis at {url}, each source's \
             requests spread over them in turn",
            args.instances
        )
    })
}

/// The `[state]` section of one policy's run: `url`'s Redis, `instances` sharing it, and keys
/// of the run's own.
pub(super) fn state_section(url: &str, instances: usize, policy: &str) -> String {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    // A key prefix may not hold braces or spaces; a policy name holds neither.
    let prefix = format!("spillway-bench:{}:{started}:{policy}", std::process::id());
    format!(
        "[state]\nkind = \"redis\"\nurl = {url:?}\ninstances = {instances}\nkey_prefix = {prefix:?}\n\n"
    )
}

/// Send each source region's requests to its instances in turn (`urls` from
/// [`Instances::urls`]); with one instance this changes nothing.
pub(super) fn spread(specs: &mut [RequestSpec], urls: &HashMap<String, Vec<String>>) {
    let mut next: HashMap<&str, usize> = HashMap::new();
    for spec in specs {
        let Some((source, choices)) = urls
            .get_key_value(&spec.source)
            .filter(|(_, c)| !c.is_empty())
        else {
            continue;
        };
        let k = next.entry(source.as_str()).or_default();
        spec.base_url = choices[*k % choices.len()].clone();
        *k += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(source: &str) -> RequestSpec {
        RequestSpec {
            id: String::new(),
            at: Duration::ZERO,
            base_url: String::new(),
            source: source.into(),
            model: String::new(),
            prompt_tokens: 1,
            max_tokens: 1,
            prompt: None,
            hash_ids: None,
        }
    }

    #[test]
    fn each_source_goes_to_its_instances_in_turn() {
        let urls = HashMap::from([
            (
                "a".to_string(),
                vec!["a1".to_string(), "a2".into(), "a3".into()],
            ),
            (
                "b".to_string(),
                vec!["b1".to_string(), "b2".into(), "b3".into()],
            ),
        ]);
        let mut specs: Vec<_> = ["a", "b", "a", "a", "b", "a", "c"]
            .iter()
            .map(|s| spec(s))
            .collect();
        spread(&mut specs, &urls);
        let got: Vec<&str> = specs.iter().map(|s| s.base_url.as_str()).collect();
        assert_eq!(got, ["a1", "b1", "a2", "a3", "b2", "a1", ""]);
    }

    #[test]
    fn the_state_section_is_valid_and_names_the_policy() {
        let s = state_section("redis://127.0.0.1:6379", 3, "spillway:source_wait=0.3");
        assert!(s.contains("instances = 3\n"), "{s}");
        assert!(s.contains(":spillway:source_wait=0.3\""), "{s}");
        let cfg = format!(
            "{s}[[regions]]\nname = \"r\"\ngeography = \"g\"\n[[models]]\nid = \"m\"\n\
             [[deployments]]\nmodel = \"m\"\nregion = \"r\"\nmax_in_flight = 1\n\
             upstream = {{ kind = \"sim\" }}\n[[listeners]]\nbind = \"127.0.0.1:0\"\nregion = \"r\"\n"
        );
        Config::parse(&cfg, "<t>").expect("a valid configuration");
    }
}
