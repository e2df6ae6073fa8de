//! Configuration: the TOML file ([`raw`]), its validation ([`validate`]) into the immutable
//! [`Config`] the gateway runs on, and the embedded default ([`embedded`]).
//!
//! Everything is resolved to indices at load time (regions, models, deployments, profiles,
//! tenants), so the request path does map look-ups by string once (the model name the client
//! sent) and then works on small integers.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use spillway_core::{Candidate, DeploymentIx, QuotaLimits, RegionIx, RouterConfig};

mod edge;
pub mod embedded;
mod error;
mod operations;
mod profiles;
pub mod raw;
mod read;
mod routing;
mod state;
mod telemetry;
mod tenants;
mod upstreams;
mod validate;

pub use edge::{AdminListener, EdgeLimits, Listener, ListenerTls};
pub use error::ConfigError;
pub use telemetry::TelemetryConfig;
pub use validate::{DEMO_ACCESS_KEY_ID, DEMO_API_KEY, from_raw, sha256};

/// A secret (upstream API key, SigV4 secret access key) whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Index newtypes: a model, tenant or system profile by its position in the validated config,
/// so that one kind of index cannot be passed where another is meant.
macro_rules! index_newtype {
    ($(#[$doc:meta] $name:ident indexes $item:ident;)*) => {$(
        #[$doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);

        impl $name {
            /// The position in the config's list.
            pub fn ix(self) -> usize {
                self.0 as usize
            }

            /// The index of the `i`th item of a validated list (lists are far below `u32::MAX`).
            pub(crate) fn nth(i: usize) -> Self {
                Self(u32::try_from(i).unwrap_or(u32::MAX))
            }
        }

        impl std::ops::Index<$name> for [$item] {
            type Output = $item;
            fn index(&self, ix: $name) -> &$item {
                &self[ix.ix()]
            }
        }

        impl std::ops::Index<$name> for Vec<$item> {
            type Output = $item;
            fn index(&self, ix: $name) -> &$item {
                &self[ix.ix()]
            }
        }
    )*};
}

index_newtype! {
    /// A model of `[[models]]`.
    ModelIx indexes Model;
    /// A tenant of `[[tenants]]`.
    TenantIx indexes Tenant;
    /// A system inference profile.
    ProfileIx indexes Profile;
}

#[derive(Debug, Clone)]
pub struct Region {
    pub name: String,
    pub geography: String,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub id: String,
    pub profile_only: bool,
    pub output_burndown: f64,
    pub default_max_tokens: u64,
    /// The most output tokens one request may ask for (`max_output_tokens`), if limited.
    pub max_output_tokens: Option<u64>,
    pub kind: raw::ModelKind,
    /// Mid-stream failover is on for the model's streams.
    pub midstream_failover: bool,
    /// How the model's profiles weigh where a prompt's prefix is cached.
    pub cache_affinity: spillway_core::CacheAffinity,
}

#[derive(Debug, Clone)]
pub enum Upstream {
    OpenAi {
        base_url: String,
        model: String,
        api_key: Option<Secret>,
        auth: UpstreamAuth,
    },
    /// A regional Bedrock runtime endpoint, SigV4-signed.
    Bedrock {
        base_url: String,
        model: String,
        signing_region: String,
        credentials: BedrockCredentials,
    },
    /// A simulator: external (`base_url`), or (`base_url` None) one that whoever embeds the
    /// gateway starts with `params` and whose URL it passes to
    /// [`Gateway::start_with_sims`](crate::Gateway::start_with_sims): the gateway itself never
    /// starts simulators (DESIGN §2.1).
    Sim {
        base_url: Option<String>,
        params: SimParams,
    },
}

/// A simulator's parameters as configured under `upstream` (`kind = "sim"`): what the embedded
/// stack (`spillway-embedded`) starts a simulator with, in the deployment's region. A plain copy
/// of the simulator's own knobs, so that the gateway does not depend on the simulator.
#[derive(Debug, Clone, PartialEq)]
pub struct SimParams {
    /// Concurrent sequences (continuous-batching slots), at least 1.
    pub concurrency: u32,
    /// Requests allowed to wait for a slot.
    pub queue_limit: u32,
    pub prefill_tokens_per_sec: f64,
    /// Output tokens per second, per sequence.
    pub decode_tokens_per_sec: f64,
    /// Injected network round trip (`rtt_ms`).
    pub rtt: Duration,
    /// Service times are divided by this.
    pub time_scale: f64,
    /// Seed of the generated text (`None`: the fixed word cycle).
    pub text_seed: Option<u64>,
    /// Prefix (KV) cache capacity in 512-token blocks (0: no cache).
    pub prefix_cache_blocks: u64,
}

impl Default for SimParams {
    /// The simulator's own defaults (`spillway-embedded` checks that they agree).
    fn default() -> Self {
        SimParams {
            concurrency: 8,
            queue_limit: 16,
            prefill_tokens_per_sec: 4000.0,
            decode_tokens_per_sec: 50.0,
            rtt: Duration::ZERO,
            time_scale: 1.0,
            text_seed: None,
            prefix_cache_blocks: 0,
        }
    }
}

/// SigV4 credentials for a Bedrock upstream, read from the environment at load.
#[derive(Debug, Clone)]
pub struct BedrockCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamAuth {
    Bearer,
    ApiKeyHeader,
}

#[derive(Debug, Clone)]
pub struct Deployment {
    pub model: ModelIx,
    pub region: RegionIx,
    pub max_in_flight: u32,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub upstream: Upstream,
    /// How the upstream continues a partial answer; `None`: it is never sent a continuation.
    pub continuation: Option<raw::ContinuationForm>,
    /// Its prefix cache in 512-token blocks (0: not modelled).
    pub prefix_cache_blocks: u64,
}

/// A system inference profile with its destination set per source region.
#[derive(Debug, Clone)]
pub struct Profile {
    pub id: String,
    /// `None` for `global.` profiles.
    pub geography: Option<String>,
    pub model: ModelIx,
    /// Source region → ordered destination set (regions with a deployment of the model).
    pub destinations: HashMap<RegionIx, Vec<RegionIx>>,
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: String,
    /// SHA-256 of each accepted API key.
    pub key_hashes: Vec<[u8; 32]>,
    pub cross_region_multiplier: f64,
    pub denied_regions: Vec<RegionIx>,
    /// (model, source region) → in-region limits. Absent: no limit.
    pub quotas: HashMap<(ModelIx, RegionIx), QuotaLimits>,
    /// The 12-digit account id in this tenant's ARNs.
    pub account_id: String,
}

/// A model's price in a region, per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSink {
    Off,
    Stdout,
    File(std::path::PathBuf),
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub request: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StateKind {
    Memory,
    /// Tenant quotas shared by several instances through Redis (see the `shared_quota` module).
    Redis(RedisState),
}

/// `[state] kind = "redis"`.
#[derive(Clone, PartialEq)]
pub struct RedisState {
    /// The (first) URL: the server, or the first Cluster seed node.
    pub url: String,
    /// A Redis Cluster: `urls` are its seed nodes.
    pub cluster: bool,
    /// Every URL given (one unless `cluster`).
    pub urls: Vec<String>,
    /// How many instances share the quotas: while Redis is unreachable each serves
    /// `limit / instances` (rounded up).
    pub instances: u32,
    /// Lease chunk as a fraction of each per-minute limit (at least 1 request or token).
    pub lease_fraction: f64,
    pub key_prefix: String,
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URLs may carry a password: show only what follows the last '@'.
        let shown: Vec<String> = self
            .urls
            .iter()
            .map(|url| {
                let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
                let host = rest.rsplit('@').next().unwrap_or_default();
                format!("{scheme}://{host}")
            })
            .collect();
        f.debug_struct("RedisState")
            .field("url", &format_args!("{}", shown.join(",")))
            .field("cluster", &self.cluster)
            .field("instances", &self.instances)
            .field("lease_fraction", &self.lease_fraction)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

/// Which parts of a configuration `spillway serve`'s command line set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommandLine {
    pub listen: bool,
    pub admin: bool,
    pub tls: bool,
}

/// The validated, immutable configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source_name: String,
    /// What `spillway serve` set from its command line over the file (`--listen`, `--admin`,
    /// `--tls-cert`): a reload of the file keeps it.
    pub command_line: CommandLine,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    /// Client-side limits of the API listeners.
    pub edge: EdgeLimits,
    /// The operations listener.
    pub admin: AdminListener,
    pub router: RouterConfig,
    /// How long a prompt's blocks are expected in a deployment's cache after their last use.
    pub prefix_cache_ttl: Duration,
    pub timeouts: Timeouts,
    pub seed: u64,
    pub state: StateKind,
    pub regions: Vec<Region>,
    /// `rtt[a][b]`, symmetric; 1 ms inside a region when not configured.
    pub rtt: Vec<Vec<Duration>>,
    pub models: Vec<Model>,
    pub deployments: Vec<Deployment>,
    pub profiles: Vec<Profile>,
    pub tenants: Vec<Tenant>,
    pub listeners: Vec<Listener>,
    pub prices: HashMap<(ModelIx, RegionIx), Price>,
    pub audit: AuditSink,
    /// `[telemetry]`: OpenTelemetry traces (off by default).
    pub telemetry: TelemetryConfig,
    pub(crate) model_by_id: HashMap<String, ModelIx>,
    pub(crate) profile_by_id: HashMap<String, ProfileIx>,
    pub(crate) deployment_by: HashMap<(ModelIx, RegionIx), DeploymentIx>,
    pub(crate) tenant_by_key: HashMap<[u8; 32], TenantIx>,
    /// SigV4 access key id → (tenant, secret access key).
    pub(crate) tenant_by_access_key: HashMap<String, (TenantIx, Secret)>,
}

impl Config {
    /// Load and validate a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            file: file.clone(),
            error,
        })?;
        Self::parse(&text, &file)
    }

    /// Parse and validate TOML text; `file` names it in errors. Every mistake is reported
    /// (see [`read`]): the keys that could not be read, then what validation found in the rest.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        read::parse(text, file)
    }

    /// Keep what the running configuration took from the command line (a reload re-reads only
    /// the file; the addresses and certificate given to `spillway serve` stay for the process).
    pub fn keep_command_line(&mut self, running: &Config) {
        let kept = running.command_line;
        if let ([mine], [theirs]) = (self.listeners.as_mut_slice(), running.listeners.as_slice()) {
            if kept.listen {
                mine.bind = theirs.bind;
            }
            if kept.tls {
                mine.tls = theirs.tls.clone();
            }
        }
        if kept.admin {
            self.admin.bind = running.admin.bind;
        }
        self.command_line = kept;
    }

    /// Move the admin listener to `addr` (`spillway serve --admin`).
    pub fn override_admin(&mut self, addr: SocketAddr) {
        self.admin.bind = addr;
        self.command_line.admin = true;
    }

    /// Move the only listener to `addr` (`spillway serve --listen`). Loopback only while the
    /// documented demo key is configured.
    pub fn override_listen(&mut self, addr: SocketAddr) -> Result<(), ConfigError> {
        let err = |message: String| ConfigError::Invalid {
            file: self.source_name.clone(),
            key: "listeners".into(),
            message,
            line: None,
        };
        if self.listeners.len() != 1 {
            return Err(err(format!(
                "--listen needs exactly one listener in the configuration, found {}",
                self.listeners.len()
            )));
        }
        let demo = sha256(DEMO_API_KEY.as_bytes());
        let demo_in_use = self.tenants.iter().any(|t| t.key_hashes.contains(&demo))
            || self.tenant_by_access_key.contains_key(DEMO_ACCESS_KEY_ID);
        if !addr.ip().is_loopback() && demo_in_use {
            return Err(err(format!(
                "the documented demo key {DEMO_API_KEY:?} (or access key {DEMO_ACCESS_KEY_ID}) is configured, so the listener must stay on loopback, not {addr}"
            )));
        }
        self.listeners[0].bind = addr;
        self.command_line.listen = true;
        Ok(())
    }

    /// The embedded default of DESIGN §6.
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Self::parse(embedded::DEFAULT_TOML, "<embedded default>")
    }

    pub fn region_ix(&self, name: &str) -> Option<RegionIx> {
        self.regions
            .iter()
            .position(|r| r.name == name)
            .map(|i| RegionIx(i as u16))
    }

    pub fn region(&self, r: RegionIx) -> &Region {
        &self.regions[r.0 as usize]
    }

    pub fn region_name(&self, r: RegionIx) -> &str {
        &self.regions[r.0 as usize].name
    }

    pub fn model_ix(&self, id: &str) -> Option<ModelIx> {
        self.model_by_id.get(id).copied()
    }

    pub fn profile_ix(&self, id: &str) -> Option<ProfileIx> {
        self.profile_by_id.get(id).copied()
    }

    pub fn deployment(&self, model: ModelIx, region: RegionIx) -> Option<DeploymentIx> {
        self.deployment_by.get(&(model, region)).copied()
    }

    pub fn tenant_by_key_hash(&self, hash: &[u8; 32]) -> Option<TenantIx> {
        self.tenant_by_key.get(hash).copied()
    }

    /// The tenant and secret of a SigV4 access key id.
    pub fn access_key(&self, id: &str) -> Option<(TenantIx, &Secret)> {
        self.tenant_by_access_key.get(id).map(|(t, s)| (*t, s))
    }

    /// The price of `model` in `region`, if configured.
    pub fn price(&self, model: ModelIx, region: RegionIx) -> Option<Price> {
        self.prices.get(&(model, region)).copied()
    }

    /// The `kind = "sim"` deployments without `base_url`, with their parameters: the simulators
    /// to start before [`Gateway::start_with_sims`](crate::Gateway::start_with_sims).
    pub fn embedded_sims(&self) -> impl Iterator<Item = (DeploymentIx, &SimParams)> {
        self.deployments
            .iter()
            .enumerate()
            .filter_map(|(i, d)| match &d.upstream {
                Upstream::Sim {
                    base_url: None,
                    params,
                } => Some((DeploymentIx(i as u32), params)),
                _ => None,
            })
    }

    pub fn rtt(&self, a: RegionIx, b: RegionIx) -> Duration {
        self.rtt[a.0 as usize][b.0 as usize]
    }

    /// Candidates for a destination list seen from `source`, minus `denied` regions.
    pub fn candidates(
        &self,
        model: ModelIx,
        source: RegionIx,
        destinations: &[RegionIx],
        denied: &[RegionIx],
    ) -> Vec<Candidate> {
        destinations
            .iter()
            .filter(|r| !denied.contains(r))
            .filter_map(|&region| {
                self.deployment(model, region).map(|deployment| Candidate {
                    deployment,
                    region,
                    rtt: self.rtt(source, region),
                })
            })
            .collect()
    }
}
