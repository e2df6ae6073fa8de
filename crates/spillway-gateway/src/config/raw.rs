//! The configuration file as written: plain serde structs, unknown keys rejected.
//!
//! Nothing here is trusted; [`super::validate`] turns a [`RawConfig`] into the immutable
//! [`super::Config`] the gateway runs on, checking every cross-reference.
use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub state: RawState,
    #[serde(default)]
    pub regions: Vec<RawRegion>,
    #[serde(default)]
    pub rtt: Vec<RawRtt>,
    #[serde(default)]
    pub models: Vec<RawModel>,
    #[serde(default)]
    pub deployments: Vec<RawDeployment>,
    #[serde(default)]
    pub profiles: Vec<RawProfile>,
    #[serde(default)]
    pub tenants: Vec<RawTenant>,
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub prices: Vec<RawPrice>,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub telemetry: RawTelemetry,
}

/// `[telemetry]`: OpenTelemetry traces over OTLP/HTTP (`config::telemetry`, docs/TELEMETRY.md).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// Export traces (default false).
    pub enabled: Option<bool>,
    /// The collector's OTLP/HTTP base URL (default `http://localhost:4318`).
    pub endpoint: Option<String>,
    pub service_name: Option<String>,
    pub sampling_ratio: Option<f64>,
    pub export_interval_ms: Option<u64>,
    pub export_timeout_ms: Option<u64>,
}

/// Where the audit log (one JSON line per request) goes.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// `"stdout"`, `"off"` (default), or a file path to append to.
    pub sink: Option<String>,
}

/// A model's on-demand price in one region, per million tokens. Usage is billed at the source
/// region's price, whichever region served it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub model: String,
    pub region: String,
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Largest accepted request body (default 4 MiB).
    pub max_body_bytes: Option<usize>,
    /// How long in-flight requests may run on after SIGINT/SIGTERM (default 30 s).
    pub shutdown_grace_secs: Option<u64>,
    /// The client-side limits (`config::edge`, defaults there).
    pub header_read_timeout_ms: Option<u64>,
    pub body_read_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub max_headers: Option<usize>,
    pub max_uri_bytes: Option<usize>,
    pub stream_stall_timeout_ms: Option<u64>,
    pub allow_unsigned_payload: Option<bool>,
    /// After SIGTERM, how long `/readyz` fails while new connections are still served.
    pub drain_delay_ms: Option<u64>,
    /// HTTP/2: streams (requests) one connection may have open at once (default 100).
    pub h2_max_concurrent_streams: Option<u32>,
}

/// `[admin]`: the operations listener.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub bind: Option<String>,
    pub token_env: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// `spillway` (default), or the baselines `round-robin` and `least-loaded`.
    pub policy: Option<String>,
    pub max_attempts: Option<usize>,
    pub connect_timeout_ms: Option<u64>,
    pub first_byte_timeout_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub failure_threshold: Option<u32>,
    pub base_ejection_ms: Option<u64>,
    pub max_ejection_ms: Option<u64>,
    pub retry_budget_ratio: Option<f64>,
    pub retry_min_per_sec: Option<f64>,
    /// How far beyond its in-flight limit the source may queue requests when no destination has
    /// headroom, as a fraction of the limit (0 to 1, default 0: throttle instead).
    pub source_queue: Option<f64>,
    /// `spillway` policy: while the source's queue is shorter than this fraction of its limit,
    /// a request waits there rather than spill (0 to 1, default 0.2; 0 spills as soon as the
    /// source is full; see `source_wait_ttft`).
    pub source_wait: Option<f64>,
    /// With `source_wait`: wait only while the request's expected TTFT in the source (wait for
    /// a slot + its prefill) is within this multiple of the source's mean TTFT (default 1.5).
    pub source_wait_ttft: Option<f64>,
    /// `spillway` policy: free slots each deployment keeps for its own region's requests; a
    /// request from another region takes one only while more are free (unset: 1 on a
    /// deployment of 16 slots or more, 0 on a smaller one).
    pub spill_reserve: Option<u32>,
    /// `spillway` policy: the share of each region's requests that may wait in their full
    /// source when no other region can take them, rather than be throttled (0 to 1, default
    /// 0.01).
    pub tail_budget: Option<f64>,
    /// Cache affinity: a prompt's blocks are not expected in a deployment's cache this long
    /// after they were last sent there (default 600 s).
    pub prefix_cache_ttl_secs: Option<u64>,
    /// Cache affinity `on`: the least share of the requests that find room in their source that
    /// stay there (0 to 1, default 0.9).
    pub cache_min_locality: Option<f64>,
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// `memory` (default) or `redis`.
    pub kind: Option<String>,
    /// `redis://[user:pass@]host:port[/db]` (kind = "redis"), or ...
    pub url: Option<String>,
    /// ... the environment variable holding it (with `cluster`: one or more, comma-separated), or
    /// (with `cluster`) several seed nodes.
    pub url_env: Option<String>,
    pub urls: Option<Vec<String>>,
    /// The URLs name nodes of a Redis Cluster (seed nodes; the rest are discovered).
    pub cluster: Option<bool>,
    /// How many gateway instances share the quotas (each one's share while Redis is down).
    pub instances: Option<u32>,
    /// Lease chunk as a fraction of each per-minute limit (at least 1).
    pub lease_fraction: Option<f64>,
    /// Prefix of every Redis key (default `spillway`).
    pub key_prefix: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegion {
    pub name: String,
    pub geography: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRtt {
    pub between: [String; 2],
    pub ms: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub id: String,
    #[serde(default)]
    pub profile_only: bool,
    /// Output-token burndown: `max_tokens` is reserved at this factor (default 1.0).
    pub output_burndown: Option<f64>,
    /// Output tokens reserved when a request sets no `max_tokens` (default 1024).
    pub default_max_tokens: Option<u64>,
    /// The most output tokens the model can generate for one request (none: no limit); a
    /// request asking for more is refused with 400.
    pub max_output_tokens: Option<u64>,
    /// `"chat"` (default) or `"embedding"`: which OpenAI endpoint serves the model.
    #[serde(default)]
    pub kind: ModelKind,
    /// Mid-stream failover: a stream that breaks after its first text is continued in another
    /// region of its profile, on a deployment with a `continuation` form (default false).
    #[serde(default)]
    pub midstream_failover: bool,
    /// How the model's inference profiles weigh where a prompt's prefix is cached:
    /// `prefer-source` (default), `on` or `off` (see docs/ROUTING.md, cache affinity).
    #[serde(default)]
    pub cache_affinity: RawCacheAffinity,
}

/// `[[models]] cache_affinity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RawCacheAffinity {
    /// Cache-blind routing.
    Off,
    /// The source keeps what it has headroom for; spills go where the prefix is cached.
    #[default]
    PreferSource,
    /// As `prefer-source`, and a request may leave a source with headroom for a region that
    /// holds its prefix and is expected to answer clearly sooner.
    On,
}

/// How an upstream continues a partial assistant message (mid-stream failover).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContinuationForm {
    /// vLLM's: the text as a final assistant message with `continue_final_message: true` and
    /// `add_generation_prompt: false` (OpenAI-compatible and sim upstreams).
    ContinueFinalMessage,
    /// A final assistant message the model continues (Anthropic-style prefill; Converse on
    /// Bedrock, or an OpenAI-compatible upstream that treats a trailing assistant message so).
    AssistantPrefill,
}

/// What a model does: chat completions (and Converse, Responses), or embeddings. A request to
/// the other kind's endpoint is refused with 400; an embedding model cannot have a Bedrock
/// upstream (Converse does not serve embeddings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    #[default]
    Chat,
    Embedding,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    pub model: String,
    pub region: String,
    pub max_in_flight: u32,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub upstream: RawUpstream,
    /// The continuation form this upstream accepts, if any (default: `continue_final_message`
    /// for a sim upstream, none otherwise). A deployment without one is never sent a
    /// continuation.
    pub continuation: Option<ContinuationForm>,
    /// What the upstream's prefix (KV) cache holds, in 512-token blocks, for cache-aware
    /// routing (default: a sim upstream's own `prefix_cache_blocks`, else 0: not modelled).
    pub prefix_cache_blocks: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RawUpstream {
    Openai(RawOpenAiUpstream),
    Sim(RawSimUpstream),
    Bedrock(RawBedrockUpstream),
}

/// A regional Bedrock runtime endpoint, called with SigV4.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawBedrockUpstream {
    /// Default `https://bedrock-runtime.<region>.amazonaws.com`.
    pub base_url: Option<String>,
    /// The model id (or ARN) Bedrock knows there (default: the model id).
    pub model: Option<String>,
    /// Signing region (default: the deployment's region).
    pub region: Option<String>,
    /// Environment variables holding the credentials (default `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
    pub access_key_id_env: Option<String>,
    pub secret_access_key_env: Option<String>,
    pub session_token_env: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOpenAiUpstream {
    /// e.g. `https://api.example.com/v1` (the gateway appends `/chat/completions`, or
    /// `/embeddings` for an embedding model).
    pub base_url: String,
    /// The model name the upstream knows (default: the model id).
    pub model: Option<String>,
    /// Environment variable holding the upstream's API key.
    pub api_key_env: Option<String>,
    /// `bearer` (Authorization: Bearer, default) or `api-key` (Azure's `api-key` header).
    pub auth: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSimUpstream {
    /// An external `spillway sim`; without it the gateway runs the simulator in-process.
    pub base_url: Option<String>,
    pub concurrency: Option<u32>,
    pub queue_limit: Option<u32>,
    pub prefill_tokens_per_sec: Option<f64>,
    pub decode_tokens_per_sec: Option<f64>,
    pub rtt_ms: Option<f64>,
    pub time_scale: Option<f64>,
    /// Seed of the generated text: with one, the answer is a deterministic function of the
    /// seed and the prompt (give every region of a model the same seed, as the same weights
    /// decode greedily to the same text); without, the simulator's fixed word cycle.
    pub text_seed: Option<u64>,
    /// Prefix (KV) cache capacity in 512-token blocks; 0 or absent: no cache.
    pub prefix_cache_blocks: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    /// `<geo>.<model-id>` or `global.<model-id>`.
    pub id: String,
    /// Destination set per source region, in preference order; replaces the derived ones for the
    /// sources it names.
    #[serde(default)]
    pub sources: BTreeMap<String, Vec<String>>,
    /// Source regions this profile may not be called from at all.
    #[serde(default)]
    pub disabled_sources: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    pub name: String,
    #[serde(default)]
    pub api_keys: Vec<RawApiKey>,
    pub cross_region_multiplier: Option<f64>,
    #[serde(default)]
    pub denied_regions: Vec<String>,
    #[serde(default)]
    pub quotas: Vec<RawQuota>,
    /// SigV4 access key pairs for the Bedrock API.
    #[serde(default)]
    pub access_keys: Vec<RawAccessKey>,
    /// The 12-digit account id in this tenant's ARNs (default 000000000000).
    pub account_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessKey {
    pub id: String,
    /// The secret access key itself, or ...
    pub secret: Option<String>,
    /// ... the environment variable holding it.
    pub secret_env: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum RawApiKey {
    /// Hex SHA-256 of the key.
    Sha256(String),
    /// Name of an environment variable holding the key.
    Env(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuota {
    pub model: String,
    /// Source region; absent = every source region.
    pub region: Option<String>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub bind: String,
    pub region: String,
    /// Serve HTTPS (ALPN `h2` and `http/1.1`) with these PEM files instead of plain HTTP.
    pub tls: Option<RawTls>,
}

/// `tls = { cert = "…", key = "…" }` on a listener: PEM files, relative to the working
/// directory unless absolute.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// The certificate chain, the server's certificate first.
    pub cert: String,
    /// The server certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
}
