//! Upstream clients: where each deployment's requests go, how they are authenticated, and the
//! one place where an upstream answer is classified as success, retryable or not.
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use bytes::Bytes;
use spillway_core::FailureKind;

use crate::config::{Config, Upstream, UpstreamAuth};

/// Where one deployment's chat completions go.
#[derive(Debug, Clone)]
pub struct UpstreamTarget {
    pub url: String,
    /// The model name the upstream knows.
    pub model: String,
    auth: Option<(HeaderName, HeaderValue)>,
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
                            UpstreamAuth::Bearer => HeaderValue::from_str(&format!("Bearer {k}"))
                                .ok()
                                .map(|v| (axum::http::header::AUTHORIZATION, v)),
                            UpstreamAuth::ApiKeyHeader => HeaderValue::from_str(k)
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
                        }
                    }
                    Upstream::Sim { base_url, .. } => {
                        let base = base_url
                            .clone()
                            .or_else(|| sim_urls.get(i).cloned().flatten())
                            .unwrap_or_default();
                        UpstreamTarget {
                            url: format!("{base}/chat/completions"),
                            model: model_id,
                            auth: None,
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

/// Send one attempt; returns the response once its headers arrived with a 2xx status.
pub async fn send(
    http: &reqwest::Client,
    target: &UpstreamTarget,
    body: Bytes,
    request_id: &str,
    first_byte_timeout: Duration,
) -> Result<reqwest::Response, UpstreamFailure> {
    let mut req = http
        .post(&target.url)
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .header("x-spillway-request-id", request_id)
        .body(body);
    if let Some((name, value)) = &target.auth {
        req = req.header(name, value);
    }
    let resp = match tokio::time::timeout(first_byte_timeout, req.send()).await {
        Err(_) => return Err(failure(FailureKind::Timeout, None)),
        Ok(Err(e)) => return Err(failure(classify_transport(&e), None)),
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let kind = classify_status(status, resp.headers());
    // Keep a bounded amount of the error body: enough to relay a 4xx, never a whole stream.
    let body = match tokio::time::timeout(first_byte_timeout, resp.bytes()).await {
        Ok(Ok(b)) if b.len() <= 64 * 1024 => b,
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
