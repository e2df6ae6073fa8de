//! The measuring client: sends one OpenAI chat-completions request (streaming) and records what
//! the user saw: status, serving region, time to first token, end to end, whether the stream
//! completed and, for a client made [`LoadClient::with_transcripts`], the answer's text and when
//! each of its content chunks arrived ([`Transcript`]: what a mid-stream failover is judged by,
//! the text against the unbroken answer and the longest gap the client saw).
//!
//! A request's prompt is one user message: its own text, or a synthetic one of the asked size
//! ([`synth_prompt`]), or, for a trace request with prefix-block ids, text built from them
//! ([`hashed_prompt`]) so that requests share a KV-cacheable prefix exactly where the trace
//! says they do.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use spillway_proto::sse::{DONE, SseDecoder};

mod hashed;
pub use hashed::hashed_prompt;

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
    /// The user message; `None`: [`hashed_prompt`] of `hash_ids` if set, else
    /// [`synth_prompt`], of `prompt_tokens`.
    pub prompt: Option<String>,
    /// The trace's prefix-block ids of this request's input (see [`hashed_prompt`]).
    pub hash_ids: Option<Arc<[u64]>>,
}

impl RequestSpec {
    /// The request's `messages`, exactly as sent (built when sent, so a long run does not hold
    /// every prompt at once).
    pub fn messages(&self) -> serde_json::Value {
        let content = match &self.prompt {
            Some(p) => p.clone(),
            None => prompt_text(self.hash_ids.as_deref(), self.prompt_tokens),
        };
        serde_json::json!([{"role": "user", "content": content}])
    }
}

/// The user message the bench sends for a prompt of `tokens` tokens: [`hashed_prompt`] of the
/// trace's prefix ids when it has them, else [`synth_prompt`].
pub fn prompt_text(hash_ids: Option<&[u64]>, tokens: u64) -> String {
    match hash_ids {
        Some(ids) => hashed_prompt(ids, tokens),
        None => synth_prompt(tokens),
    }
}

/// What a stream's client received, kept by a client made [`LoadClient::with_transcripts`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transcript {
    /// The answer's text: every content delta of choice 0, in order.
    pub text: String,
    /// When each content chunk (a non-empty delta) arrived, since the request was sent.
    pub chunk_at: Vec<Duration>,
    /// The stream carried an error event.
    pub error_event: bool,
}

impl Transcript {
    /// The gaps between consecutive content chunks, in order.
    pub fn gaps(&self) -> impl Iterator<Item = Duration> + '_ {
        self.chunk_at.windows(2).map(|w| w[1].saturating_sub(w[0]))
    }

    /// The longest gap between consecutive content chunks (`None` with fewer than two).
    pub fn longest_gap(&self) -> Option<Duration> {
        self.gaps().max()
    }

    /// Note one SSE event's data (neither `[DONE]` nor an error) that arrived at `at`.
    fn note(&mut self, data: &str, at: Duration) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
            return;
        };
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str()
            && !t.is_empty()
        {
            self.text.push_str(t);
            self.chunk_at.push(at);
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestResult {
    pub id: String,
    pub source: String,
    /// HTTP status; 0 when no response arrived.
    pub status: u16,
    /// `x-spillway-region` of the response.
    pub served_region: Option<String>,
    /// `x-spillway-route-reason` of the response (`local`, `spill:capacity`, `spill:cache`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_reason: Option<String>,
    pub ttft: Option<Duration>,
    pub e2e: Duration,
    pub output_chunks: u64,
    /// The stream completed with `[DONE]` and no error event.
    pub complete: bool,
    /// How long after its due time the request was handed to the HTTP client (the load
    /// generator falling behind: a sign that the machine, not the system under test, is the
    /// bottleneck). Zero when sent with [`LoadClient::one`].
    pub late: Duration,
    /// What the stream carried, for a client made [`LoadClient::with_transcripts`] (once the
    /// response was 200).
    #[serde(skip)]
    pub transcript: Option<Transcript>,
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
    /// Keep each stream's [`Transcript`].
    transcripts: bool,
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
            transcripts: false,
        })
    }

    /// The same client, keeping each stream's text and chunk times ([`RequestResult::transcript`]).
    pub fn with_transcripts(mut self) -> LoadClient {
        self.transcripts = true;
        self
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
            route_reason: None,
            ttft: None,
            e2e: Duration::ZERO,
            output_chunks: 0,
            complete: false,
            late: Duration::ZERO,
            transcript: None,
        };
        let body = serde_json::json!({
            "model": spec.model,
            "messages": spec.messages(),
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
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        result.served_region = header("x-spillway-region");
        result.route_reason = header("x-spillway-route-reason");
        if result.status != 200 {
            let _ = resp.bytes().await;
            result.e2e = started.elapsed();
            return result;
        }
        let mut transcript = self.transcripts.then(Transcript::default);
        read_stream(resp, started, &mut result, transcript.as_mut()).await;
        result.transcript = transcript;
        result.e2e = started.elapsed();
        result
    }
}

/// Read a 200 stream to its end into `result` (and `transcript`).
async fn read_stream(
    resp: reqwest::Response,
    started: Instant,
    result: &mut RequestResult,
    mut transcript: Option<&mut Transcript>,
) {
    let mut stream = resp.bytes_stream();
    let mut decoder = SseDecoder::new();
    let mut errored = false;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            break;
        };
        for ev in decoder.feed(&chunk) {
            let at = started.elapsed();
            result.ttft.get_or_insert(at);
            if ev.data == DONE {
                result.complete = !errored;
            } else if ev.data.starts_with("{\"error\"") {
                errored = true;
                if let Some(t) = transcript.as_deref_mut() {
                    t.error_event = true;
                }
            } else {
                if ev.data.contains("\"content\":\"") && !ev.data.contains("\"content\":\"\"") {
                    result.output_chunks += 1;
                }
                if let Some(t) = transcript.as_deref_mut() {
                    t.note(&ev.data, at);
                }
            }
        }
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

/// A prompt of `tokens` tokens like [`synth_prompt`]'s that begins with `tag` and a space: the
/// same size, a different conversation for each tag (so a model that answers by the prompt, as
/// the simulator with a text seed does, gives each its own answer). [`synth_prompt`] itself
/// when the prompt is too short to hold the tag.
pub fn tagged_prompt(tag: &str, tokens: u64) -> String {
    let base = synth_prompt(tokens);
    let head = format!("{tag} ");
    match base.get(head.len()..) {
        Some(rest) if !rest.is_empty() => head + rest,
        _ => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_prompts_keep_the_size_and_differ() {
        let (a, b) = (tagged_prompt("req-1", 200), tagged_prompt("req-2", 200));
        assert_eq!(a.len(), synth_prompt(200).len());
        assert_ne!(a, b);
        assert!(a.starts_with("req-1 "));
        assert_eq!(tagged_prompt("a-very-long-tag", 3), synth_prompt(3));
    }

    #[test]
    fn a_transcript_keeps_content_and_its_gaps() {
        let mut t = Transcript::default();
        let chunk =
            |c: &str| format!(r#"{{"choices":[{{"index":0,"delta":{{"content":{c:?}}}}}]}}"#);
        t.note(&chunk(" the"), Duration::from_millis(10));
        t.note(
            r#"{"choices":[{"index":0,"delta":{"role":"assistant"}}]}"#,
            Duration::from_millis(11),
        );
        t.note(&chunk(""), Duration::from_millis(12));
        t.note(&chunk(" sea"), Duration::from_millis(40));
        t.note(&chunk(" was"), Duration::from_millis(50));
        assert_eq!(t.text, " the sea was");
        assert_eq!(t.longest_gap(), Some(Duration::from_millis(30)));
        assert_eq!(t.gaps().count(), 2);
    }

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
