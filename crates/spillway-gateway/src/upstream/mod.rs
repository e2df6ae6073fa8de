//! Upstream clients: where each deployment's requests go, how they are authenticated, and the
//! one place where an upstream answer is classified as success, retryable or not.
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use bytes::Bytes;
use spillway_core::FailureKind;

use spillway_proto::ChatRequest;

use crate::config::{Config, Upstream, UpstreamAuth};
use crate::sigv4::sign::AwsCredentials;

/// How the AWS SDKs encode a model id in a runtime path: everything but unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`), so `:` is `%3A` and an ARN's `/` is `%2F`.
const MODEL_ID_ENCODE_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where one deployment's chat completions go.
#[derive(Debug, Clone)]
pub struct UpstreamTarget {
    /// `…/chat/completions` for OpenAI-compatible upstreams; the runtime base URL for Bedrock.
    pub url: String,
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

impl UpstreamTarget {
    /// `{base}/model/{encoded model id}/{op}` on a Bedrock runtime endpoint.
    fn runtime_url(&self, op: &str) -> String {
        let id = percent_encoding::utf8_percent_encode(&self.model, MODEL_ID_ENCODE_SET);
        format!("{}/model/{id}/{op}", self.url)
    }

    /// The URL and body of one attempt for `req` (the canonical request; its `model` is replaced
    /// by the upstream's own name).
    pub fn request(
        &self,
        req: &ChatRequest,
        passthrough: Option<&Bytes>,
    ) -> Result<(String, Bytes), String> {
        match (&self.protocol, passthrough) {
            (Protocol::Bedrock { .. }, Some(body)) => {
                let op = if req.is_stream() {
                    "invoke-with-response-stream"
                } else {
                    "invoke"
                };
                return Ok((self.runtime_url(op), body.clone()));
            }
            (_, Some(_)) => {
                return Err("a native InvokeModel body can only go to a bedrock upstream".into());
            }
            _ => {}
        }
        match &self.protocol {
            Protocol::OpenAi => {
                let mut req = req.clone();
                req.model = self.model.clone();
                let body = serde_json::to_vec(&req).map_err(|e| e.to_string())?;
                Ok((self.url.clone(), Bytes::from(body)))
            }
            Protocol::Bedrock { .. } => {
                let (converse, stream) =
                    spillway_proto::bedrock::chat_to_converse(req).map_err(|e| e.to_string())?;
                let body = serde_json::to_vec(&converse).map_err(|e| e.to_string())?;
                let op = if stream {
                    "converse-stream"
                } else {
                    "converse"
                };
                Ok((self.runtime_url(op), Bytes::from(body)))
            }
        }
    }
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
                            url: format!("{base_url}/chat/completions"),
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
                        url: base_url.clone(),
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
                            url: format!("{base}/chat/completions"),
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
    http: &reqwest::Client,
    target: &UpstreamTarget,
    url: String,
    body: Bytes,
    request_id: &str,
) -> Result<reqwest::Response, UpstreamFailure> {
    let mut req = http
        .post(url)
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .header("x-spillway-request-id", request_id)
        .body(body);
    if let Some((name, value)) = &target.auth {
        req = req.header(name, value);
    }
    let mut req = match req.build() {
        Ok(r) => r,
        Err(_) => return Err(failure(FailureKind::ClientError, None)),
    };
    if let Protocol::Bedrock {
        signing_region,
        credentials,
    } = &target.protocol
        && let Err(e) = crate::sigv4::sign::sign_request(
            &mut req,
            credentials,
            signing_region,
            "bedrock",
            SystemTime::now(),
        )
    {
        tracing::error!(error = %e, "cannot sign the Bedrock upstream request");
        return Err(failure(FailureKind::ServerError, None));
    }
    let resp = match http.execute(req).await {
        Err(e) => return Err(failure(classify_transport(&e), None)),
        Ok(r) => r,
    };
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let kind = classify_status(status, resp.headers());
    // Keep a bounded amount of the error body: enough to relay a 4xx, never a whole stream.
    let body = match resp.bytes().await {
        Ok(b) if b.len() <= 64 * 1024 => b,
        _ => Bytes::new(),
    };
    Err(UpstreamFailure {
        kind,
        status: Some(status),
        body,
    })
}

fn failure(kind: FailureKind, status: Option<StatusCode>) -> UpstreamFailure {
    UpstreamFailure {
        kind,
        status,
        body: Bytes::new(),
    }
}

/// Transport errors: connect failures and timeouts are the deployment's; anything else broke
/// the exchange midway and counts as a server error.
pub fn classify_transport(e: &reqwest::Error) -> FailureKind {
    if e.is_connect() {
        FailureKind::Connect
    } else if e.is_timeout() {
        FailureKind::Timeout
    } else {
        FailureKind::ServerError
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
