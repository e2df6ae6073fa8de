//! What a test's gateway looks like, as data, and its TOML.
use std::fmt::Write as _;

use super::{EU, KEY, M, US};

#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub id: String,
    pub profile_only: bool,
    pub burndown: Option<f64>,
    pub default_max_tokens: Option<u64>,
    /// `midstream_failover = true`.
    pub midstream: bool,
}

#[derive(Debug, Clone)]
pub enum Upstream {
    /// An in-process simulator: fast (prefill ~0, 10k tokens/s), 64 slots.
    Sim,
    /// An in-process simulator whose prefill takes time: this many prompt tokens per second
    /// (decode 1,000 tokens/s), with the deployment's `max_in_flight` as its slots and as many
    /// queue places.
    SimPrefill(f64),
    /// [`Upstream::SimPrefill`] with no queue: a request beyond its slots gets 429 (an upstream
    /// whose `max_in_flight` is a hard cap).
    SimCapped(f64),
    /// An OpenAI-compatible server at this base URL (`.../v1`).
    OpenAi(String),
    /// A regional Bedrock runtime at `base_url`, with SigV4 credentials read from these
    /// environment variables.
    Bedrock {
        base_url: String,
        access_key_id_env: String,
        secret_access_key_env: String,
    },
}

#[derive(Debug, Clone)]
pub struct Dep {
    pub model: String,
    pub region: String,
    pub max_in_flight: u32,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub upstream: Upstream,
    /// `continuation` (`"continue_final_message"` or `"assistant_prefill"`), if set.
    pub continuation: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct Quota {
    pub model: String,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: String,
    pub key: String,
    pub multiplier: Option<f64>,
    pub denied: Vec<String>,
    pub quotas: Vec<Quota>,
    /// SigV4 access key pairs (id, secret) for the Bedrock API.
    pub access_keys: Vec<(String, String)>,
    /// The 12-digit account id of the tenant's ARNs.
    pub account_id: Option<String>,
}

/// A model's price in one region, per million tokens.
#[derive(Debug, Clone)]
pub struct Price {
    pub model: String,
    pub region: String,
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

impl Tenant {
    pub fn new(name: &str, key: &str) -> Tenant {
        Tenant {
            name: name.into(),
            key: key.into(),
            multiplier: None,
            denied: Vec::new(),
            quotas: Vec::new(),
            access_keys: Vec::new(),
            account_id: None,
        }
    }

    /// Adds a SigV4 access key pair.
    pub fn access_key(mut self, id: &str, secret: &str) -> Tenant {
        self.access_keys.push((id.into(), secret.into()));
        self
    }

    pub fn account(mut self, account_id: &str) -> Tenant {
        self.account_id = Some(account_id.into());
        self
    }

    pub fn quota(mut self, model: &str, rpm: Option<u64>, tpm: Option<u64>) -> Tenant {
        self.quotas.push(Quota {
            model: model.into(),
            rpm,
            tpm,
        });
        self
    }
}

/// What a test's gateway looks like; [`Spec::standard`] is three `us` and two `eu` regions, `M`
/// deployed everywhere with room to spare, one tenant (`KEY`) without quotas.
#[derive(Debug, Clone)]
pub struct Spec {
    pub regions: Vec<(String, String)>,
    pub models: Vec<ModelSpec>,
    pub deployments: Vec<Dep>,
    pub tenants: Vec<Tenant>,
    pub routing: Vec<(String, String)>,
    pub max_body_bytes: Option<usize>,
    pub prices: Vec<Price>,
    /// `[audit] sink` (`"stdout"`, `"off"` or a file path); absent = not written.
    pub audit: Option<String>,
    /// `text_seed` of every in-process simulator (the same in every region).
    pub text_seed: Option<u64>,
    /// `prefix_cache_blocks` of every in-process simulator (`Upstream::Sim`).
    pub prefix_cache_blocks: Option<u64>,
    /// `prefix_cache_blocks` of every deployment: the cache the routing models there, which
    /// otherwise is its simulator's own.
    pub modelled_cache_blocks: Option<u64>,
}

impl Spec {
    pub fn standard() -> Spec {
        let mut s = Spec {
            regions: US
                .iter()
                .map(|r| (r.to_string(), "us".to_string()))
                .chain(EU.iter().map(|r| (r.to_string(), "eu".to_string())))
                .collect(),
            models: Vec::new(),
            deployments: Vec::new(),
            tenants: vec![Tenant::new("acme", KEY)],
            routing: Vec::new(),
            max_body_bytes: None,
            prices: Vec::new(),
            audit: None,
            text_seed: None,
            prefix_cache_blocks: None,
            modelled_cache_blocks: None,
        };
        s.add_model(M, false, None);
        s
    }

    /// Adds a model deployed on a simulator in every region.
    pub fn add_model(&mut self, id: &str, profile_only: bool, burndown: Option<f64>) {
        self.models.push(ModelSpec {
            id: id.into(),
            profile_only,
            burndown,
            default_max_tokens: None,
            midstream: false,
        });
        for (r, _) in self.regions.clone() {
            self.deployments.push(Dep {
                model: id.into(),
                region: r,
                max_in_flight: 32,
                rpm: None,
                tpm: None,
                upstream: Upstream::Sim,
                continuation: None,
            });
        }
    }

    pub fn dep(&mut self, model: &str, region: &str) -> &mut Dep {
        self.deployments
            .iter_mut()
            .find(|d| d.model == model && d.region == region)
            .expect("no such deployment in the spec")
    }

    /// Sets the price of `model` in `region`, per million tokens.
    pub fn price(&mut self, model: &str, region: &str, input_per_mtok: f64, output_per_mtok: f64) {
        self.prices.push(Price {
            model: model.into(),
            region: region.into(),
            input_per_mtok,
            output_per_mtok,
        });
    }

    pub fn routing(mut self, key: &str, value: &str) -> Spec {
        self.routing.push((key.into(), value.into()));
        self
    }

    pub fn geography(&self, region: &str) -> &str {
        self.regions
            .iter()
            .find(|(r, _)| r == region)
            .map(|(_, g)| g.as_str())
            .expect("unknown region")
    }

    /// The regions a request may be served in, by the rules (not by the gateway's own tables):
    /// a plain id only in its source; `<geo>.` profiles only in that geography; `global.`
    /// anywhere; never in a region the tenant denied.
    pub fn allowed(&self, key: &str, source: &str, model: &str) -> Vec<String> {
        let denied: Vec<String> = self
            .tenants
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.denied.clone())
            .unwrap_or_default();
        let set: Vec<String> = match model.split_once('.') {
            Some(("global", _)) => self.regions.iter().map(|(r, _)| r.clone()).collect(),
            Some((geo, _)) if self.regions.iter().any(|(_, g)| g == geo) => self
                .regions
                .iter()
                .filter(|(_, g)| g == geo)
                .map(|(r, _)| r.clone())
                .collect(),
            _ => vec![source.to_string()],
        };
        set.into_iter().filter(|r| !denied.contains(r)).collect()
    }

    /// The model id behind a profile id (`us.<id>` → `<id>`); a model id as it is.
    pub fn base_model<'a>(&self, name: &'a str) -> &'a str {
        match name.split_once('.') {
            Some((p, m)) if p == "global" || self.regions.iter().any(|(_, g)| g == p) => m,
            _ => name,
        }
    }

    pub fn to_toml(&self) -> String {
        let mut t = String::new();
        if let Some(b) = self.max_body_bytes {
            let _ = writeln!(t, "[server]\nmax_body_bytes = {b}\n");
        }
        let _ = writeln!(t, "[routing]\nseed = 7");
        for (k, v) in &self.routing {
            let _ = writeln!(t, "{k} = {v}");
        }
        for (name, geo) in &self.regions {
            let _ = writeln!(t, "\n[[regions]]\nname = {name:?}\ngeography = {geo:?}");
        }
        for m in &self.models {
            let _ = writeln!(
                t,
                "\n[[models]]\nid = {:?}\nprofile_only = {}",
                m.id, m.profile_only
            );
            if let Some(b) = m.burndown {
                let _ = writeln!(t, "output_burndown = {b:?}");
            }
            if let Some(n) = m.default_max_tokens {
                let _ = writeln!(t, "default_max_tokens = {n}");
            }
            if m.midstream {
                let _ = writeln!(t, "midstream_failover = true");
            }
        }
        for d in &self.deployments {
            let _ = writeln!(
                t,
                "\n[[deployments]]\nmodel = {:?}\nregion = {:?}\nmax_in_flight = {}",
                d.model, d.region, d.max_in_flight
            );
            if let Some(b) = self.modelled_cache_blocks {
                let _ = writeln!(t, "prefix_cache_blocks = {b}");
            }
            if let Some(v) = d.rpm {
                let _ = writeln!(t, "rpm = {v}");
            }
            if let Some(v) = d.tpm {
                let _ = writeln!(t, "tpm = {v}");
            }
            if let Some(form) = d.continuation {
                let _ = writeln!(t, "continuation = {form:?}");
            }
            let _ = match &d.upstream {
                Upstream::Sim => writeln!(
                    t,
                    "upstream = {{ kind = \"sim\", concurrency = 64, queue_limit = 64, \
                     prefill_tokens_per_sec = 1000000000.0, decode_tokens_per_sec = 10000.0{seed}{cache} }}",
                    seed = self
                        .text_seed
                        .map(|s| format!(", text_seed = {s}"))
                        .unwrap_or_default(),
                    cache = self
                        .prefix_cache_blocks
                        .map(|b| format!(", prefix_cache_blocks = {b}"))
                        .unwrap_or_default()
                ),
                Upstream::SimPrefill(tps) => writeln!(
                    t,
                    "upstream = {{ kind = \"sim\", concurrency = {n}, queue_limit = {n}, \
                     prefill_tokens_per_sec = {tps:?}, decode_tokens_per_sec = 1000.0 }}",
                    n = d.max_in_flight
                ),
                Upstream::SimCapped(tps) => writeln!(
                    t,
                    "upstream = {{ kind = \"sim\", concurrency = {n}, queue_limit = 0, \
                     prefill_tokens_per_sec = {tps:?}, decode_tokens_per_sec = 1000.0 }}",
                    n = d.max_in_flight
                ),
                Upstream::OpenAi(url) => {
                    writeln!(t, "upstream = {{ kind = \"openai\", base_url = {url:?} }}")
                }
                Upstream::Bedrock {
                    base_url,
                    access_key_id_env,
                    secret_access_key_env,
                } => writeln!(
                    t,
                    "upstream = {{ kind = \"bedrock\", base_url = {base_url:?}, \
                     access_key_id_env = {access_key_id_env:?}, \
                     secret_access_key_env = {secret_access_key_env:?} }}"
                ),
            };
        }
        for tn in &self.tenants {
            let hash: String = spillway_gateway::config::sha256(tn.key.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let _ = writeln!(
                t,
                "\n[[tenants]]\nname = {:?}\napi_keys = [{{ sha256 = {hash:?} }}]\ndenied_regions = {:?}",
                tn.name, tn.denied
            );
            if let Some(m) = tn.multiplier {
                let _ = writeln!(t, "cross_region_multiplier = {m:?}");
            }
            if !tn.access_keys.is_empty() {
                let keys: Vec<String> = tn
                    .access_keys
                    .iter()
                    .map(|(id, secret)| format!("{{ id = {id:?}, secret = {secret:?} }}"))
                    .collect();
                let _ = writeln!(t, "access_keys = [{}]", keys.join(", "));
            }
            if let Some(a) = &tn.account_id {
                let _ = writeln!(t, "account_id = {a:?}");
            }
            for q in &tn.quotas {
                let _ = writeln!(t, "\n[[tenants.quotas]]\nmodel = {:?}", q.model);
                if let Some(v) = q.rpm {
                    let _ = writeln!(t, "rpm = {v}");
                }
                if let Some(v) = q.tpm {
                    let _ = writeln!(t, "tpm = {v}");
                }
            }
        }
        for (name, _) in &self.regions {
            let _ = writeln!(
                t,
                "\n[[listeners]]\nbind = \"127.0.0.1:0\"\nregion = {name:?}"
            );
        }
        let _ = writeln!(t, "\n[admin]\nbind = \"127.0.0.1:0\"");
        for p in &self.prices {
            let _ = writeln!(
                t,
                "\n[[prices]]\nmodel = {:?}\nregion = {:?}\ninput_per_mtok = {:?}\noutput_per_mtok = {:?}",
                p.model, p.region, p.input_per_mtok, p.output_per_mtok
            );
        }
        if let Some(sink) = &self.audit {
            let _ = writeln!(t, "\n[audit]\nsink = {sink:?}");
        }
        t
    }
}
