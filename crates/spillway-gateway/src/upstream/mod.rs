//! Upstream clients: where each deployment's requests go, how they are authenticated, and the
//! one place where an upstream answer is classified as success, retryable or not.
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use bytes::Bytes;
use spillway_core::FailureKind;

use spillway_proto::ChatRequest;

use spillway_proto::canonical::Request as Canonical;

use crate::config::{Config, Upstream, UpstreamAuth};
use crate::sigv4::sign::AwsCredentials;
use http::Uri;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

pub mod client;
pub mod continuation;

pub use client::UpstreamClient;

/// How the AWS SDKs encode a model id in a runtime path: everything but unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`), so `:` is `%3A` and an ARN's `/` is `%2F`.
const MODEL_ID_ENCODE_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where one deployment's chat completions go. Its URLs are parsed once, when the
/// configuration is loaded: a per-request parse (with its IDNA pass) was a measurable part of
/// the hot path.
#[derive(Debug, Clone)]
pub struct UpstreamTarget {
    urls: Urls,
    /// The model name the upstream knows.
    pub model: String,
    auth: Option<(HeaderName, HeaderValue)>,
    pub protocol: Protocol,
}

/// The wire an upstream speaks.
#[derive(Debug, Clone)]
pub enum Protocol {
    /// OpenAI chat completions (and SSE).
    OpenAi,
    /// Bedrock Converse / ConverseStream, SigV4-signed.
    Bedrock {
        signing_region: String,
        credentials: AwsCredentials,
    },
}

/// A deployment's request URLs.
#[derive(Debug, Clone)]
enum Urls {
    /// `…/chat/completions` and `…/embeddings`.
    OpenAi { chat: Uri, embeddings: Uri },
    /// The model's runtime operations, by [`BedrockOp`] order.
    Bedrock(Box<[Uri; 4]>),
    /// A base URL that did not parse (the config's validation refuses those; kept so that a
    /// target can always be built): every request to it fails as the deployment's error.
    Invalid(String),
}

/// Bedrock runtime operations, in [`Urls::Bedrock`]'s order.
#[derive(Debug, Clone, Copy)]
enum BedrockOp {
    Converse = 0,
    ConverseStream = 1,
    Invoke = 2,
    InvokeStream = 3,
}

const BEDROCK_OPS: [&str; 4] = [
    "converse",
    "converse-stream",
    "invoke",
    "invoke-with-response-stream",
];

impl Urls {
    fn openai(base: &str) -> Urls {
        let url = format!("{base}/chat/completions");
        let parse = |u: &str| Uri::try_from(u).ok().filter(|u| u.host().is_some());
        match (parse(&url), parse(&format!("{base}/embeddings"))) {
            (Some(chat), Some(embeddings)) => Urls::OpenAi { chat, embeddings },
            _ => Urls::Invalid(url),
        }
    }

    /// `{base}/model/{encoded model id}/{op}` on a Bedrock runtime endpoint, for each op.
    fn bedrock(base: &str, model: &str) -> Urls {
        let id = percent_encoding::utf8_percent_encode(model, MODEL_ID_ENCODE_SET);
        let parsed: Result<Vec<Uri>, _> = BEDROCK_OPS
            .iter()
            .map(|op| Uri::try_from(format!("{base}/model/{id}/{op}")))
            .collect();
        let parsed = parsed
            .ok()
            .filter(|uris| uris.iter().all(|u| u.host().is_some()));
        match parsed.map(<[Uri; 4]>::try_from) {
            Some(Ok(urls)) => Urls::Bedrock(Box::new(urls)),
            _ => Urls::Invalid(base.to_string()),
        }
    }
}

impl UpstreamTarget {
    /// The upstream's host and port (`server.address`, `server.port` of an attempt's span).
    pub fn server(&self) -> Option<(String, u16)> {
        let uri = match &self.urls {
            Urls::OpenAi { chat, .. } => chat,
            Urls::Bedrock(urls) => &urls[0],
            Urls::Invalid(_) => return None,
        };
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
        let default = if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        };
        Some((host.to_string(), uri.port_u16().unwrap_or(default)))
    }

    fn runtime_url(&self, op: BedrockOp) -> Result<Uri, String> {
        match &self.urls {
            Urls::Bedrock(urls) => Ok(urls[op as usize].clone()),
            Urls::OpenAi { .. } => Err("not a Bedrock upstream".into()),
            Urls::Invalid(base) => Err(format!("the upstream URL {base:?} is not valid")),
        }
    }

    fn chat_url(&self, embeddings: bool) -> Result<Uri, String> {
        match &self.urls {
            Urls::OpenAi { embeddings: e, .. } if embeddings => Ok(e.clone()),
            Urls::OpenAi { chat, .. } => Ok(chat.clone()),
            Urls::Bedrock(_) => Err("not an OpenAI-compatible upstream".into()),
            Urls::Invalid(base) => Err(format!("the upstream URL {base:?} is not valid")),
        }
    }

    /// The URL and body of one attempt for `req` (the canonical request; its `model` is replaced
    /// by the upstream's own name); with `as_stream`, asked as a stream with the final usage
    /// chunk whatever the client asked (see `drive::attempt`).
    pub fn request(
        &self,
        req: &Canonical,
        passthrough: Option<&Bytes>,
        as_stream: bool,
    ) -> Result<(Uri, Bytes), String> {
        let req = match req {
            Canonical::Chat(c) => c,
            Canonical::Embed(e) => return self.embeddings(e),
        };
        match (&self.protocol, passthrough) {
            (Protocol::Bedrock { .. }, Some(body)) => {
                let op = if req.is_stream() {
                    BedrockOp::InvokeStream
                } else {
                    BedrockOp::Invoke
                };
                return Ok((self.runtime_url(op)?, body.clone()));
            }
            (_, Some(_)) => {
                return Err("a native InvokeModel body can only go to a bedrock upstream".into());
            }
            _ => {}
        }
        match &self.protocol {
            Protocol::OpenAi => {
                let body = serde_json::to_vec(&req.for_upstream(&self.model, as_stream))
                    .map_err(|e| e.to_string())?;
                Ok((self.chat_url(false)?, Bytes::from(body)))
            }
            Protocol::Bedrock { .. } => {
                let streamed;
                let req = if as_stream {
                    streamed = as_stream_request(req);
                    &streamed
                } else {
                    req
                };
                let (converse, stream) =
                    spillway_proto::bedrock::chat_to_converse(req).map_err(|e| e.to_string())?;
                let body = serde_json::to_vec(&converse).map_err(|e| e.to_string())?;
                let op = if stream {
                    BedrockOp::ConverseStream
                } else {
                    BedrockOp::Converse
                };
                Ok((self.runtime_url(op)?, Bytes::from(body)))
            }
        }
    }
}

impl UpstreamTarget {
    /// An embeddings request to an OpenAI-compatible upstream's `/embeddings`. Bedrock upstreams
    /// are refused (configuration validation already keeps embedding models off them).
    fn embeddings(
        &self,
        req: &spillway_proto::embeddings::EmbeddingsRequest,
    ) -> Result<(Uri, Bytes), String> {
        match &self.protocol {
            Protocol::OpenAi => {
                let body = req.for_upstream(&self.model).map_err(|e| e.to_string())?;
                Ok((self.chat_url(true)?, Bytes::from(body)))
            }
            Protocol::Bedrock { .. } => {
                Err("embeddings are not served through Bedrock's Converse".into())
            }
        }
    }
}

/// `req` asked as a stream, with the final usage chunk.
fn as_stream_request(req: &ChatRequest) -> ChatRequest {
    let mut req = req.clone();
    req.stream = Some(true);
    req.stream_options
        .get_or_insert_with(spillway_proto::StreamOptions::default)
        .include_usage = Some(true);
    req
}

impl UpstreamTarget {
    /// Targets for every deployment; `sim_urls[d]` is the base URL of the in-process simulator of
    /// deployment `d`, if the gateway started one.
    pub fn for_config(cfg: &Config, sim_urls: &[Option<String>]) -> Vec<UpstreamTarget> {
        cfg.deployments
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let model_id = cfg.models[d.model].id.clone();
                match &d.upstream {
                    Upstream::OpenAi {
                        base_url,
                        model,
                        api_key,
                        auth,
                    } => {
                        let auth = api_key.as_ref().and_then(|k| match auth {
                            UpstreamAuth::Bearer => {
                                HeaderValue::from_str(&format!("Bearer {}", k.expose()))
                                    .ok()
                                    .map(|v| (axum::http::header::AUTHORIZATION, v))
                            }
                            UpstreamAuth::ApiKeyHeader => HeaderValue::from_str(k.expose())
                                .ok()
                                .map(|v| (HeaderName::from_static("api-key"), v)),
                        });
                        let auth = auth.map(|(n, mut v)| {
                            v.set_sensitive(true);
                            (n, v)
                        });
                        UpstreamTarget {
                            urls: Urls::openai(base_url),
                            model: model.clone(),
                            auth,
                            protocol: Protocol::OpenAi,
                        }
                    }
                    Upstream::Bedrock {
                        base_url,
                        model,
                        signing_region,
                        credentials,
                    } => UpstreamTarget {
                        urls: Urls::bedrock(base_url, model),
                        model: model.clone(),
                        auth: None,
                        protocol: Protocol::Bedrock {
                            signing_region: signing_region.clone(),
                            credentials: AwsCredentials {
                                access_key_id: credentials.access_key_id.clone(),
                                secret_access_key: credentials
                                    .secret_access_key
                                    .expose()
                                    .to_string(),
                                session_token: credentials
                                    .session_token
                                    .as_ref()
                                    .map(|t| t.expose().to_string()),
                            },
                        },
                    },
                    Upstream::Sim { base_url, .. } => {
                        let base = base_url
                            .clone()
                            .or_else(|| sim_urls.get(i).cloned().flatten())
                            .unwrap_or_default();
                        UpstreamTarget {
                            urls: Urls::openai(&base),
                            model: model_id,
                            auth: None,
                            protocol: Protocol::OpenAi,
                        }
                    }
                }
            })
            .collect()
    }
}

/// Why an attempt did not produce a usable response.
#[derive(Debug)]
pub struct UpstreamFailure {
    pub kind: FailureKind,
    pub status: Option<StatusCode>,
    /// The upstream's body, kept for non-retryable 4xx (relayed to the client as is).
    pub body: Bytes,
}

/// Send one attempt; returns the response once its headers arrived with a 2xx status. No
/// deadline here: the request's exchange owns them, and drops this future when one passes.
pub async fn send(
    http: &UpstreamClient,
    target: &UpstreamTarget,
    uri: Uri,
    body: Bytes,
    request_id: &str,
    trace: &axum::http::HeaderMap,
) -> Result<Response<Incoming>, UpstreamFailure> {
    let mut req = Request::post(uri)
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .header("x-spillway-request-id", request_id);
    for (name, value) in trace {
        req = req.header(name, value);
    }
    if let Some((name, value)) = &target.auth {
        req = req.header(name, value);
    }
    let Ok(req) = req.body(()) else {
        return Err(failure(FailureKind::ClientError, None));
    };
    let (mut head, ()) = req.into_parts();
    if let Protocol::Bedrock {
        signing_region,
        credentials,
    } = &target.protocol
    {
        let url = head.uri.to_string();
        let signed_for = crate::sigv4::sign::Target {
            method: &head.method,
            url: &url,
            has_host: head.uri.host().is_some_and(|h| !h.is_empty()),
        };
        let signed = crate::sigv4::sign::sign_parts(
            &signed_for,
            &mut head.headers,
            &body,
            credentials,
            signing_region,
            "bedrock",
            SystemTime::now(),
        );
        if let Err(e) = signed {
            tracing::error!(error = %e, "cannot sign the Bedrock upstream request");
            return Err(failure(FailureKind::ServerError, None));
        }
    }
    let resp = match http.send(Request::from_parts(head, Full::new(body))).await {
        Err(kind) => return Err(failure(kind, None)),
        Ok(r) => r,
    };
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let kind = classify_status(status, resp.headers());
    // Keep a bounded amount of the error body: enough to relay a 4xx, never a whole stream.
    let body = match Limited::new(resp.into_body(), ERROR_BODY_LIMIT)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    Err(UpstreamFailure {
        kind,
        status: Some(status),
        body,
    })
}

/// The most of an upstream's error body kept (and relayed for a 4xx).
const ERROR_BODY_LIMIT: usize = 64 * 1024;

fn failure(kind: FailureKind, status: Option<StatusCode>) -> UpstreamFailure {
    UpstreamFailure {
        kind,
        status,
        body: Bytes::new(),
    }
}

/// Non-2xx statuses: 429 (with Retry-After) and 5xx are retryable on another destination;
/// 408 counts as a timeout; 401 and 403 mean the upstream refused the gateway's own credentials
/// (the client was already authenticated here), which is the deployment's failure, not the
/// client's; any other 4xx is the request's own fault and is relayed as it came.
pub fn classify_status(status: StatusCode, headers: &HeaderMap) -> FailureKind {
    match status.as_u16() {
        429 => FailureKind::Throttled {
            retry_after: retry_after(headers),
        },
        408 => FailureKind::Timeout,
        401 | 403 => FailureKind::ServerError,
        500..=599 => FailureKind::ServerError,
        _ => FailureKind::ClientError,
    }
}

/// `Retry-After` in seconds (OpenAI-style `retry-after-ms` wins when present). HTTP dates are
/// ignored: a cooldown is short, and a wrong clock on either side would make it useless.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
    };
    let d = get("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| get("retry-after"))
        .filter(|s| s.is_finite() && *s >= 0.0)?;
    Some(Duration::from_secs_f64(d.min(3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_classify() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(
            classify_status(StatusCode::TOO_MANY_REQUESTS, &h),
            FailureKind::Throttled {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(
            classify_status(StatusCode::BAD_GATEWAY, &h),
            FailureKind::ServerError
        );
        assert_eq!(
            classify_status(StatusCode::BAD_REQUEST, &h),
            FailureKind::ClientError
        );
        assert_eq!(
            classify_status(StatusCode::UNAUTHORIZED, &h),
            FailureKind::ServerError,
            "an upstream refusing the gateway's credentials is the deployment's failure"
        );
        assert_eq!(
            classify_status(StatusCode::REQUEST_TIMEOUT, &h),
            FailureKind::Timeout
        );
    }

    #[test]
    fn urls_are_parsed_once_and_model_ids_encoded() {
        let urls = Urls::bedrock(
            "https://bedrock-runtime.us-east-1.amazonaws.com",
            "anthropic.claude-3:0",
        );
        let Urls::Bedrock(urls) = urls else {
            panic!("a valid base URL parses")
        };
        assert_eq!(
            urls[BedrockOp::ConverseStream as usize].to_string(),
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3%3A0/converse-stream"
        );
        assert_eq!(
            urls[BedrockOp::InvokeStream as usize].path(),
            "/model/anthropic.claude-3%3A0/invoke-with-response-stream"
        );
        let Urls::OpenAi { chat, embeddings } = Urls::openai("http://127.0.0.1:8000/v1") else {
            panic!("a valid base URL parses")
        };
        assert_eq!(
            chat.to_string(),
            "http://127.0.0.1:8000/v1/chat/completions"
        );
        assert_eq!(
            embeddings.to_string(),
            "http://127.0.0.1:8000/v1/embeddings"
        );
        assert!(matches!(Urls::openai("not a url"), Urls::Invalid(_)));
    }

    #[test]
    fn retry_after_ms_wins_and_garbage_is_ignored() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }
}
