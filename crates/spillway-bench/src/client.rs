//! The measuring client: sends one OpenAI chat-completions request (streaming) and records what
//! the user saw.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use spillway_proto::sse::{DONE, SseDecoder};

/// One request to send.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub id: String,
    /// Offset from the start of the run.
    pub at: Duration,
    /// `http://host:port` of the listener of the source region.
    pub base_url: String,
    pub source: String,
    pub model: String,
    pub prompt_tokens: u64,
    pub max_tokens: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestResult {
    pub id: String,
    pub source: String,
    /// HTTP status; 0 when no response arrived.
    pub status: u16,
    /// `x-spillway-region` of the response.
    pub served_region: Option<String>,
    pub ttft: Option<Duration>,
    pub e2e: Duration,
    pub output_chunks: u64,
    /// The stream completed with `[DONE]` and no error event.
    pub complete: bool,
    /// How long after its due time the request was handed to the HTTP client (the load
    /// generator falling behind: a sign that the machine, not the system under test, is the
    /// bottleneck). Zero when sent with [`LoadClient::one`].
    pub late: Duration,
}

impl RequestResult {
    pub fn ok(&self) -> bool {
        self.status == 200 && self.complete
    }
    pub fn throttled(&self) -> bool {
        self.status == 429
    }
    pub fn failed(&self) -> bool {
        !self.ok() && !self.throttled()
    }
}

/// Counters for a progress display.
#[derive(Debug, Default)]
pub struct Progress {
    pub sent: AtomicU64,
    pub ok: AtomicU64,
    pub throttled: AtomicU64,
    pub failed: AtomicU64,
}

#[derive(Clone)]
pub struct LoadClient {
    http: reqwest::Client,
    api_key: String,
    pub progress: Arc<Progress>,
}

impl LoadClient {
    pub fn new(api_key: &str) -> Result<LoadClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .tcp_nodelay(true)
            .build()?;
        Ok(LoadClient {
            http,
            api_key: api_key.to_string(),
            progress: Arc::default(),
        })
    }

    /// Send every request at its time (open loop) and collect the results in input order.
    pub async fn run(&self, specs: Vec<RequestSpec>) -> Vec<RequestResult> {
        let start = tokio::time::Instant::now();
        let handles: Vec<_> = specs
            .into_iter()
            .map(|spec| {
                let me = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(start + spec.at).await;
                    let late = start.elapsed().saturating_sub(spec.at);
                    me.progress.sent.fetch_add(1, Ordering::Relaxed);
                    let mut r = me.one(&spec).await;
                    r.late = late;
                    let counter = if r.ok() {
                        &me.progress.ok
                    } else if r.throttled() {
                        &me.progress.throttled
                    } else {
                        &me.progress.failed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    r
                })
            })
            .collect();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            if let Ok(r) = h.await {
                out.push(r);
            }
        }
        out
    }

    /// `GET {base_url}/v1/models` with the API key: the status, or the connection error (a
    /// readiness probe for a gateway started by someone else).
    pub async fn models_status(&self, base_url: &str) -> Result<u16, reqwest::Error> {
        let resp = self
            .http
            .get(format!("{base_url}/v1/models"))
            .bearer_auth(&self.api_key)
            .timeout(Duration::from_secs(5))
            .send()
            .await?;
        Ok(resp.status().as_u16())
    }

    /// One streaming request.
    pub async fn one(&self, spec: &RequestSpec) -> RequestResult {
        let started = Instant::now();
        let mut result = RequestResult {
            id: spec.id.clone(),
            source: spec.source.clone(),
            status: 0,
            served_region: None,
            ttft: None,
            e2e: Duration::ZERO,
            output_chunks: 0,
            complete: false,
            late: Duration::ZERO,
        };
        let body = serde_json::json!({
            "model": spec.model,
            "messages": [{"role": "user", "content": synth_prompt(spec.prompt_tokens)}],
            "max_tokens": spec.max_tokens,
            "stream": true,
        });
        let resp = self
            .http
            .post(format!("{}/v1/chat/completions", spec.base_url))
            .bearer_auth(&self.api_key)
            .header("x-request-id", &spec.id)
            .json(&body)
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(_) => {
                result.e2e = started.elapsed();
                return result;
            }
        };
        result.status = resp.status().as_u16();
        result.served_region = resp
            .headers()
            .get("x-spillway-region")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if result.status != 200 {
            let _ = resp.bytes().await;
            result.e2e = started.elapsed();
            return result;
        }
        let mut stream = resp.bytes_stream();
        let mut decoder = SseDecoder::new();
        let mut errored = false;
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else {
                break;
            };
            for ev in decoder.feed(&chunk) {
                result.ttft.get_or_insert_with(|| started.elapsed());
                if ev.data == DONE {
                    result.complete = !errored;
                } else if ev.data.starts_with("{\"error\"") {
                    errored = true;
                } else if ev.data.contains("\"content\":\"")
                    && !ev.data.contains("\"content\":\"\"")
                {
                    result.output_chunks += 1;
                }
            }
        }
        result.e2e = started.elapsed();
        result
    }
}

/// A prompt of about `tokens` tokens under the four-characters-a-token estimate.
pub fn synth_prompt(tokens: u64) -> String {
    const WORDS: [&str; 8] = [
        "route", "region", "spill", "quota", "token", "model", "burst", "local",
    ];
    let target = (tokens.saturating_sub(spillway_proto::tokens::PER_MESSAGE_OVERHEAD) * 4) as usize;
    let mut s = String::with_capacity(target + 8);
    let mut i = 0;
    while s.len() + 6 <= target {
        s.push_str(WORDS[i % WORDS.len()]);
        s.push(' ');
        i += 1;
    }
    while s.len() < target {
        s.push('.');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_prompt_has_the_asked_token_count() {
        for t in [5u64, 10, 100, 257] {
            let p = synth_prompt(t);
            assert_eq!(
                spillway_proto::tokens::text_tokens(&p)
                    + spillway_proto::tokens::PER_MESSAGE_OVERHEAD,
                t
            );
        }
    }
}
