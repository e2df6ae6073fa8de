//! The one context of a request, from its first byte to its record.
use std::time::Instant;

use axum::http::HeaderMap;
use bytes::Bytes;
use spillway_core::RegionIx;

use crate::config::{ModelIx, ProfileIx, TenantIx};
use crate::error::Api;
use crate::telemetry::RequestTrace;

/// What the client named, resolved by the adapter (`api::resolve`): the model, the profile if
/// one was named, and the destination set for the listener's region.
#[derive(Debug, Clone)]
pub struct Target {
    pub model: ModelIx,
    pub profile: Option<ProfileIx>,
    /// Ordered destination regions (before the tenant's denied regions are removed).
    pub destinations: Vec<RegionIx>,
    pub cross_region: bool,
}

/// Everything the gateway knows about one request, filled in as its phases learn it.
#[derive(Debug)]
pub struct RequestCtx {
    /// The client's request id when it sent a short printable one, else a new UUID.
    pub id: String,
    /// The API the client called (answers and errors are rendered in its shape).
    pub api: Api,
    /// The region whose listener the request arrived on.
    pub source: RegionIx,
    pub started: Instant,
    pub tenant: Option<TenantIx>,
    /// The model or profile id as the client named it (decoded).
    pub model_name: String,
    /// What `model_name` resolved to.
    pub target: Option<Target>,
    /// For the audit record: the profile ARN the request named, and its application profile's
    /// tags.
    pub profile_arn: Option<String>,
    pub tags: Vec<(String, String)>,
    /// An InvokeModel body passed through unchanged to Bedrock upstreams.
    pub invoke_passthrough: Option<Bytes>,
    /// The client asked for a stream (known once admitted).
    pub stream: bool,
    /// Whether a streaming client asked for the final usage chunk.
    pub wants_usage: bool,
    /// The prompt's token estimate, once admitted (an Anthropic stream's `message_start`
    /// reports it).
    pub prompt_tokens: u64,
    /// A Responses API request: what its answer echoes (the Response's id, instructions,
    /// tools, …).
    pub echo: Option<Box<spillway_proto::responses::Echo>>,
    /// Its trace: the client's `traceparent`, and the span ids fixed as attempts are sent.
    pub trace: RequestTrace,
}

impl RequestCtx {
    pub fn new(source: RegionIx, headers: &HeaderMap, api: Api) -> Self {
        // Keep a caller's request id when it is short and printable; otherwise make one.
        let id = headers
            .get("x-request-id")
            .or_else(|| headers.get("x-amzn-requestid"))
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        RequestCtx {
            id,
            api,
            source,
            started: Instant::now(),
            tenant: None,
            model_name: String::new(),
            target: None,
            profile_arn: None,
            tags: Vec::new(),
            invoke_passthrough: None,
            stream: false,
            wants_usage: false,
            prompt_tokens: 0,
            echo: None,
            trace: RequestTrace::from_headers(headers),
        }
    }
}
