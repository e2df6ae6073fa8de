//! The label sets of Spillway's metric families. Every value is bounded by the configuration:
//! tenants, profiles, models and regions come from the validated config (an unknown or
//! unauthenticated caller's is the empty string), outcomes, reasons and kinds from fixed lists.
use prometheus_client::encoding::EncodeLabelSet;

/// One client request, by who asked, what for, where it came in and where it was served.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub tenant: String,
    /// The inference profile the request named (system profile id; an application profile
    /// counts as the system profile or model it copies), empty for a plain model id.
    pub profile: String,
    /// The canonical model id (never the raw id the client sent).
    pub model: String,
    pub source: String,
    /// The serving region; empty when no region served it.
    pub destination: String,
    pub api: String,
    pub outcome: String,
}

/// A request served outside its source region, and why (`spill:capacity`, `failover:…`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabels {
    pub source: String,
    pub destination: String,
    pub reason: String,
}

/// A 429 given to a client, by what ran out.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThrottleLabels {
    pub tenant: String,
    pub profile: String,
    pub source: String,
    /// `tenant_in_region`, `tenant_cross_region` (the tenant's quota), `capacity` (no
    /// destination had room), `upstream` (every destination tried answered 429).
    pub kind: String,
}

/// Tokens, by direction (`type` is `input` or `output`, as OpenTelemetry's
/// `gen_ai.token.type`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub tenant: String,
    pub profile: String,
    pub model: String,
    pub r#type: String,
}

/// Cost at the source region's price.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CostLabels {
    pub tenant: String,
    pub profile: String,
    pub model: String,
    pub source: String,
}

/// Source → serving region (TTFT, TPOT).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub source: String,
    pub destination: String,
}

/// End-to-end duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    pub source: String,
    pub destination: String,
    pub api: String,
}

/// The gateway's own time on a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub api: String,
}

/// One upstream attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub destination: String,
    pub model: String,
    /// `ok`, `cancelled`, or the failure kind (`connect`, `timeout`, `throttled`,
    /// `server_error`, `client_error`).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeploymentLabels {
    pub region: String,
    pub model: String,
}

/// One listener: its region and address.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub region: String,
    pub bind: String,
}
