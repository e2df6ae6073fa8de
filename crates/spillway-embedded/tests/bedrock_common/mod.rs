//! What the Bedrock API tests share: two tenants with SigV4 key pairs and account ids, AWS SDK
//! clients pointed at a listener, request tagging (so the simulators' records can be checked for
//! residency), the four runtime operations through the SDK, raw requests signed with `aws-sigv4`
//! directly, Bedrock's error shape, and the audit log reader.
//!
//! Used next to `common` (`mod common; mod bedrock_common;` in the test file).
#![allow(dead_code)]
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sdk_bedrockruntime::config::http::HttpRequest;
use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_sdk_bedrockruntime::config::{BehaviorVersion, Region};
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ContentBlockDelta, ConversationRole, ConverseStreamOutput,
    InferenceConfiguration, Message, ResponseStream, StopReason, TokenUsage,
};
use serde_json::{Value, json};

use crate::common::{DEADLINE, Harness, KEY, Reply, Spec, Tenant};

pub const ACCOUNT: &str = "123456789012";
pub const AK: &str = "AKIATESTACME00000001";
pub const SECRET: &str = "acme/Secret+Key0";
pub const KEY2: &str = "sk-test-other";
pub const AK2: &str = "AKIATESTOTHER0000001";
pub const SECRET2: &str = "other/Secret+Key0";
pub const ACCOUNT2: &str = "210987654321";
/// A second model (more system profiles to page through).
pub const L: &str = "demo.chat-large-v1:0";
/// A model callable only through a profile.
pub const PO: &str = "demo.chat-profile-only-v1:0";

/// [`Spec::standard`] with SigV4 pairs for two tenants (`acme`: `KEY`/`AK`, `other`:
/// `KEY2`/`AK2`), and the models `L` and `PO` (profile-only) next to `M`.
pub fn spec() -> Spec {
    let mut s = Spec::standard();
    s.tenants = vec![
        Tenant::new("acme", KEY)
            .access_key(AK, SECRET)
            .account(ACCOUNT),
        Tenant::new("other", KEY2)
            .access_key(AK2, SECRET2)
            .account(ACCOUNT2),
    ];
    s.add_model(L, false, None);
    s.add_model(PO, true, None);
    s
}

/// The official SDK's runtime client for `region`'s listener (no retries: every answer is the
/// gateway's own).
pub fn runtime(
    h: &Harness,
    region: &str,
    ak: &str,
    secret: &str,
) -> aws_sdk_bedrockruntime::Client {
    let conf = aws_sdk_bedrockruntime::Config::builder()
        .endpoint_url(h.url(region, ""))
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new(ak, secret, None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .behavior_version(BehaviorVersion::latest())
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(conf)
}

/// The official SDK's control-plane client for `region`'s listener.
pub fn control(h: &Harness, region: &str, ak: &str, secret: &str) -> aws_sdk_bedrock::Client {
    let conf = aws_sdk_bedrock::Config::builder()
        .endpoint_url(h.url(region, ""))
        .region(aws_sdk_bedrock::config::Region::new(region.to_string()))
        .credentials_provider(Credentials::new(ak, secret, None, None, "test"))
        .retry_config(aws_sdk_bedrock::config::retry::RetryConfig::disabled())
        .behavior_version(aws_sdk_bedrock::config::BehaviorVersion::latest())
        .build();
    aws_sdk_bedrock::Client::from_conf(conf)
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A fresh request id, registered with the harness as sent from `source` for `model` (the id
/// or profile id the request's destination set is judged by).
pub fn tag(h: &Harness, source: &str, key: &str, model: &str) -> String {
    let id = format!("b{}", NEXT.fetch_add(1, Ordering::Relaxed));
    h.register(&id, source, key, model);
    id
}

/// For `.customize().mutate_request(..)`: sends `x-request-id: <id>`.
pub fn with_id(id: &str) -> impl Fn(&mut HttpRequest) + Send + Sync + 'static {
    let id = id.to_string();
    move |r: &mut HttpRequest| {
        r.headers_mut().insert("x-request-id", id.clone());
    }
}

pub fn user_hi() -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text("hi".into()))
        .build()
        .expect("message")
}

pub fn max_tokens(n: i32) -> InferenceConfiguration {
    InferenceConfiguration::builder().max_tokens(n).build()
}

/// A non-streamed Converse answer.
#[derive(Debug)]
pub struct Conversed {
    pub text: String,
    pub stop: StopReason,
    pub usage: TokenUsage,
    pub latency_ms: i64,
}

pub async fn converse(
    c: &aws_sdk_bedrockruntime::Client,
    id: &str,
    model_id: &str,
    n: i32,
) -> Conversed {
    let out = c
        .converse()
        .model_id(model_id)
        .messages(user_hi())
        .inference_config(max_tokens(n))
        .customize()
        .mutate_request(with_id(id))
        .send()
        .await
        .unwrap_or_else(|e| panic!("converse {model_id}: {e:?}"));
    let msg = out
        .output()
        .and_then(|o| o.as_message().ok())
        .expect("a message");
    assert_eq!(msg.role(), &ConversationRole::Assistant);
    Conversed {
        text: msg
            .content()
            .iter()
            .filter_map(|b| b.as_text().ok())
            .cloned()
            .collect(),
        stop: out.stop_reason().clone(),
        usage: out.usage().expect("usage").clone(),
        latency_ms: out.metrics().expect("metrics").latency_ms(),
    }
}

/// A ConverseStream answer: the reassembled text, the event kinds in order, the stop reason
/// and the `metadata` event's usage.
#[derive(Debug)]
pub struct Streamed {
    pub text: String,
    pub kinds: Vec<&'static str>,
    pub stop: Option<StopReason>,
    pub usage: Option<TokenUsage>,
}

pub async fn converse_stream(
    c: &aws_sdk_bedrockruntime::Client,
    id: &str,
    model_id: &str,
    n: i32,
) -> Streamed {
    let mut out = c
        .converse_stream()
        .model_id(model_id)
        .messages(user_hi())
        .inference_config(max_tokens(n))
        .customize()
        .mutate_request(with_id(id))
        .send()
        .await
        .unwrap_or_else(|e| panic!("converse_stream {model_id}: {e:?}"));
    let mut s = Streamed {
        text: String::new(),
        kinds: Vec::new(),
        stop: None,
        usage: None,
    };
    loop {
        let ev = tokio::time::timeout(DEADLINE, out.stream.recv())
            .await
            .expect("a stream event in time")
            .unwrap_or_else(|e| panic!("stream of {model_id}: {e:?}"));
        let Some(ev) = ev else { break };
        s.kinds.push(match ev {
            ConverseStreamOutput::MessageStart(_) => "messageStart",
            ConverseStreamOutput::ContentBlockStart(_) => "contentBlockStart",
            ConverseStreamOutput::ContentBlockDelta(d) => {
                if let Some(ContentBlockDelta::Text(t)) = d.delta() {
                    s.text.push_str(t);
                }
                "contentBlockDelta"
            }
            ConverseStreamOutput::ContentBlockStop(_) => "contentBlockStop",
            ConverseStreamOutput::MessageStop(m) => {
                s.stop = Some(m.stop_reason().clone());
                "messageStop"
            }
            ConverseStreamOutput::Metadata(m) => {
                s.usage = m.usage().cloned();
                "metadata"
            }
            _ => "unknown",
        });
    }
    s
}

/// An OpenAI chat body for InvokeModel (the model comes from the path).
pub fn invoke_body(n: u64, stream_usage: bool) -> Blob {
    let mut b = json!({ "messages": [{"role": "user", "content": "hi"}], "max_tokens": n });
    if stream_usage {
        b["stream_options"] = json!({ "include_usage": true });
    }
    Blob::new(serde_json::to_vec(&b).expect("json"))
}

/// InvokeModel: the response body as JSON.
pub async fn invoke(c: &aws_sdk_bedrockruntime::Client, id: &str, model_id: &str, n: u64) -> Value {
    let out = c
        .invoke_model()
        .model_id(model_id)
        .content_type("application/json")
        .accept("application/json")
        .body(invoke_body(n, false))
        .customize()
        .mutate_request(with_id(id))
        .send()
        .await
        .unwrap_or_else(|e| panic!("invoke_model {model_id}: {e:?}"));
    assert_eq!(out.content_type(), "application/json");
    serde_json::from_slice(out.body().as_ref()).expect("a JSON body")
}

/// InvokeModelWithResponseStream (usage asked for): every chunk's payload as JSON.
pub async fn invoke_stream(
    c: &aws_sdk_bedrockruntime::Client,
    id: &str,
    model_id: &str,
    n: u64,
) -> Vec<Value> {
    let mut out = c
        .invoke_model_with_response_stream()
        .model_id(model_id)
        .content_type("application/json")
        .body(invoke_body(n, true))
        .customize()
        .mutate_request(with_id(id))
        .send()
        .await
        .unwrap_or_else(|e| panic!("invoke_model_with_response_stream {model_id}: {e:?}"));
    let mut chunks = Vec::new();
    loop {
        let ev = tokio::time::timeout(DEADLINE, out.body.recv())
            .await
            .expect("a chunk in time")
            .unwrap_or_else(|e| panic!("chunks of {model_id}: {e:?}"));
        match ev {
            None => break,
            Some(ResponseStream::Chunk(p)) => {
                let bytes = p.bytes().expect("chunk bytes");
                chunks.push(serde_json::from_slice(bytes.as_ref()).expect("a JSON chunk"));
            }
            Some(other) => panic!("unexpected event {other:?}"),
        }
    }
    chunks
}

/// The content of OpenAI chunks, concatenated.
pub fn chunk_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// SigV4's URI encoding of one path segment (what the SDKs send: `:` as `%3A`, `/` as `%2F`).
pub fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// How to sign a raw request.
pub struct Signer<'a> {
    pub ak: &'a str,
    pub secret: &'a str,
    pub region: &'a str,
    pub time: SystemTime,
}

impl<'a> Signer<'a> {
    pub fn new(ak: &'a str, secret: &'a str, region: &'a str) -> Self {
        Signer {
            ak,
            secret,
            region,
            time: SystemTime::now(),
        }
    }

    /// The headers `aws-sigv4` adds (`authorization`, `x-amz-date`) for this request, signed the
    /// way the SDKs sign (double-encoded path, payload hash in the canonical request).
    pub fn headers(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Vec<(String, String)> {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        let identity = Credentials::new(self.ak, self.secret, None, None, "test").into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(self.region)
            .name("bedrock")
            .time(self.time)
            .settings(SigningSettings::default())
            .build()
            .expect("signing params")
            .into();
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .expect("signable");
        let (instructions, _) = sign(signable, &params).expect("signed").into_parts();
        let (headers, _) = instructions.into_parts();
        headers
            .into_iter()
            .map(|h| (h.name().to_string(), h.value().to_string()))
            .collect()
    }
}

/// How a raw request authenticates.
pub enum Auth<'a> {
    None,
    /// A literal `authorization` header.
    Header(&'a str),
    SigV4(&'a Signer<'a>),
}

/// A raw request to a listener: `content-type` and `x-request-id` (when given) are sent and
/// signed, then `auth` is added.
pub struct RawReq<'a> {
    pub method: &'a str,
    pub path: String,
    pub content_type: Option<&'a str>,
    pub body: Vec<u8>,
    pub id: Option<String>,
    pub auth: Auth<'a>,
}

impl<'a> RawReq<'a> {
    /// `POST /model/<model_id, encoded>/converse` with one user message and `n` max tokens.
    pub fn converse(model_id: &str, n: u64, auth: Auth<'a>) -> Self {
        let body = serde_json::to_vec(&json!({
            "messages": [{"role": "user", "content": [{"text": "hi"}]}],
            "inferenceConfig": {"maxTokens": n},
        }))
        .expect("json");
        RawReq {
            method: "POST",
            path: format!("/model/{}/converse", encode_segment(model_id)),
            content_type: Some("application/json"),
            body,
            id: None,
            auth,
        }
    }

    /// Tags the request (see [`tag`]).
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_string());
        self
    }

    pub async fn send(self, h: &Harness, region: &str) -> Reply {
        let url = h.url(region, &self.path);
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(ct) = self.content_type {
            headers.push(("content-type", ct));
        }
        if let Some(id) = &self.id {
            headers.push(("x-request-id", id));
        }
        let mut all = match self.auth {
            Auth::None => Vec::new(),
            Auth::Header(v) => vec![("authorization".to_string(), v.to_string())],
            Auth::SigV4(s) => s.headers(self.method, &url, &headers, &self.body),
        };
        all.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        let method = reqwest::Method::from_bytes(self.method.as_bytes()).expect("method");
        let mut req = h.client.request(method, &url).body(self.body.clone());
        for (n, v) in all {
            req = req.header(n, v);
        }
        let resp = req.send().await.expect("the gateway answers");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            id: self.id.unwrap_or_default(),
            status,
            headers,
            text,
            json,
        }
    }
}

/// Bedrock's error shape: this status, `x-amzn-ErrorType: <kind>`, `{"message": "..."}`.
pub fn assert_bedrock_error(r: &Reply, status: u16, kind: &str) {
    assert_eq!(r.status.as_u16(), status, "{r:?}");
    assert_eq!(r.header("x-amzn-errortype"), Some(kind), "{r:?}");
    assert!(
        r.json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{r:?}"
    );
    assert_eq!(
        r.json.as_object().map(|o| o.len()),
        Some(1),
        "only `message`: {r:?}"
    );
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
}

/// A fresh path for an audit log file (removed by [`remove`]).
pub fn audit_path(name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "spillway-audit-{name}-{}-{nanos}.jsonl",
        std::process::id()
    ))
}

pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// The audit record of request `id`, waiting (bounded) for the writer.
pub async fn audit_record(path: &Path, id: &str) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let found: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["requestId"] == id)
            .collect();
        if let Some(v) = found.first() {
            assert_eq!(found.len(), 1, "one audit record per request: {found:?}");
            return v.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no audit record for {id} in {}:\n{text}",
            path.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The error code of a failed SDK call (`ResourceNotFoundException`, …); panics if it succeeded.
pub fn code<T: std::fmt::Debug, E: aws_smithy_types::error::metadata::ProvideErrorMetadata>(
    r: Result<T, E>,
) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code().unwrap_or("<no code>").to_string(),
    }
}

/// The model ARNs of a profile, as a set.
pub fn model_arns(models: &[aws_sdk_bedrock::types::InferenceProfileModel]) -> BTreeSet<String> {
    models
        .iter()
        .filter_map(|m| m.model_arn())
        .map(str::to_string)
        .collect()
}

/// The model ARNs a profile should list for `profile` from `source`: one per region of its
/// destination set, by the rules (not by the gateway's own tables).
pub fn expected_model_arns(h: &Harness, source: &str, profile: &str) -> BTreeSet<String> {
    let base = h.spec.base_model(profile);
    h.spec
        .allowed(KEY, source, profile)
        .iter()
        .map(|r| format!("arn:aws:bedrock:{r}::foundation-model/{base}"))
        .collect()
}
