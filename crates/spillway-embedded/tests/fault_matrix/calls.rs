//! One client call in each API the matrix covers, and what the client saw of it ([`Seen`]):
//! OpenAI chat completions (plain and streamed) and Bedrock Converse / ConverseStream (raw
//! HTTP with the tenant's Bedrock API key, so the response head is visible too).
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use spillway_proto::bedrock::FrameDecoder;

use crate::bedrock_common::{Auth, RawReq, encode_segment, tag};
use crate::common::{DEADLINE, Harness, KEY, Sse, body, content_of, stream_body};

/// The client API of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Chat,
    ChatStream,
    Converse,
    ConverseStream,
}

impl Api {
    pub const ALL: [Api; 4] = [
        Api::Chat,
        Api::ChatStream,
        Api::Converse,
        Api::ConverseStream,
    ];

    pub fn is_stream(self) -> bool {
        matches!(self, Api::ChatStream | Api::ConverseStream)
    }

    pub fn is_bedrock(self) -> bool {
        matches!(self, Api::Converse | Api::ConverseStream)
    }
}

/// How the response body ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The whole answer: a JSON body, `[DONE]`, or ConverseStream's `metadata`.
    Complete,
    /// An error response (not 200): OpenAI's `error.type` or Bedrock's `x-amzn-ErrorType`.
    ErrorBody(String),
    /// A stream that started and ended with an error event (OpenAI `error.type`) or exception
    /// frame (Bedrock `:exception-type`).
    ErrorEvent(String),
    /// The connection broke: never acceptable from the gateway.
    Broken,
    /// The body ended cleanly without a last event: never acceptable either.
    Truncated,
}

/// What the client saw of one call.
#[derive(Debug, Clone)]
pub struct Seen {
    pub id: String,
    pub api: Api,
    pub source: String,
    pub model: String,
    pub status: u16,
    pub headers: HeaderMap,
    /// The answer's text (streamed: the text deltas received).
    pub content: String,
    pub end: End,
    /// The error body's JSON (not 200).
    pub json: Value,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `x-spillway-region`: where it was served.
    pub fn region(&self) -> Option<&str> {
        self.header("x-spillway-region")
    }

    /// `x-spillway-route-reason`.
    pub fn reason(&self) -> Option<&str> {
        self.header("x-spillway-route-reason")
    }
}

/// Sends one call of `api` from `source` for `model` (`max_tokens` = `n`) and reads it to the end.
pub async fn call(h: &Harness, api: Api, source: &str, model: &str, n: u64) -> Seen {
    match api {
        Api::Chat => {
            let r = h.chat(source, body(model, n)).await;
            let end = if r.status == 200 {
                End::Complete
            } else {
                End::ErrorBody(r.json["error"]["type"].as_str().unwrap_or("").to_string())
            };
            let content = r.json["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or("")
                .to_string();
            seen(
                api,
                source,
                model,
                r.id,
                r.status.as_u16(),
                r.headers,
                content,
                end,
                r.json,
            )
        }
        Api::ChatStream => chat_stream(h, source, model, n).await,
        Api::Converse => {
            let id = tag(h, source, KEY, model);
            let bearer = format!("Bearer {KEY}");
            let r = RawReq::converse(model, n, Auth::Header(&bearer))
                .id(&id)
                .send(h, source)
                .await;
            let end = if r.status == 200 {
                End::Complete
            } else {
                End::ErrorBody(r.header("x-amzn-errortype").unwrap_or("").to_string())
            };
            let content = r.json["output"]["message"]["content"][0]["text"]
                .as_str()
                .unwrap_or("")
                .to_string();
            seen(
                api,
                source,
                model,
                id,
                r.status.as_u16(),
                r.headers,
                content,
                end,
                r.json,
            )
        }
        Api::ConverseStream => converse_stream(h, source, model, n).await,
    }
}

#[allow(clippy::too_many_arguments)]
fn seen(
    api: Api,
    source: &str,
    model: &str,
    id: String,
    status: u16,
    headers: HeaderMap,
    content: String,
    end: End,
    json: Value,
) -> Seen {
    Seen {
        id,
        api,
        source: source.to_string(),
        model: model.to_string(),
        status,
        headers,
        content,
        end,
        json,
    }
}

async fn chat_stream(h: &Harness, source: &str, model: &str, n: u64) -> Seen {
    let (id, resp) = h.stream(source, stream_body(model, n)).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    if status != 200 {
        let json: Value =
            serde_json::from_str(&resp.text().await.unwrap_or_default()).unwrap_or(Value::Null);
        let end = End::ErrorBody(json["error"]["type"].as_str().unwrap_or("").to_string());
        return seen(
            Api::ChatStream,
            source,
            model,
            id,
            status,
            headers,
            String::new(),
            end,
            json,
        );
    }
    let mut sse = Sse::new(resp);
    let events = sse.rest().await;
    let last: Value = events
        .last()
        .and_then(|e| serde_json::from_str(e).ok())
        .unwrap_or(Value::Null);
    let end = if sse.broken {
        End::Broken
    } else if events.last().is_some_and(|e| e == "[DONE]") {
        End::Complete
    } else if let Some(kind) = last["error"]["type"].as_str() {
        End::ErrorEvent(kind.to_string())
    } else {
        End::Truncated
    };
    let content = content_of(&events);
    assert_one_answer(&events);
    seen(
        Api::ChatStream,
        source,
        model,
        id,
        status,
        headers,
        content,
        end,
        json!(events),
    )
}

async fn converse_stream(h: &Harness, source: &str, model: &str, n: u64) -> Seen {
    let api = Api::ConverseStream;
    let id = tag(h, source, KEY, model);
    let path = format!("/model/{}/converse-stream", encode_segment(model));
    let body = json!({
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
        "inferenceConfig": {"maxTokens": n},
    });
    let resp = h
        .client
        .post(h.url(source, &path))
        .bearer_auth(KEY)
        .header("x-request-id", &id)
        .json(&body)
        .send()
        .await
        .expect("the gateway answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    if status != 200 {
        let json: Value =
            serde_json::from_str(&resp.text().await.unwrap_or_default()).unwrap_or(Value::Null);
        let kind = headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        return seen(
            api,
            source,
            model,
            id,
            status,
            headers,
            String::new(),
            End::ErrorBody(kind),
            json,
        );
    }
    let (content, end) = read_frames(resp.bytes_stream().boxed()).await;
    seen(
        api,
        source,
        model,
        id,
        status,
        headers,
        content,
        end,
        Value::Null,
    )
}

/// Reads a ConverseStream body: the text deltas, and how it ended.
async fn read_frames(mut body: BoxStream<'static, reqwest::Result<Bytes>>) -> (String, End) {
    let mut dec = FrameDecoder::new();
    let (mut text, mut last) = (String::new(), None::<String>);
    loop {
        let item = tokio::time::timeout(DEADLINE, body.next())
            .await
            .unwrap_or_else(|_| panic!("no ConverseStream bytes within {DEADLINE:?}"));
        let bytes = match item {
            None => break,
            Some(Err(_)) => return (text, End::Broken),
            Some(Ok(b)) => b,
        };
        for f in dec.feed(&bytes).expect("a well-formed event stream") {
            if let Some(kind) = f.exception_type() {
                return (text, End::ErrorEvent(kind.to_string()));
            }
            let payload: Value = serde_json::from_slice(&f.payload).unwrap_or(Value::Null);
            if let Some(t) = payload["delta"]["text"].as_str() {
                text.push_str(t);
            }
            last = f.event_type().map(str::to_string);
        }
    }
    let end = if dec.finish().is_ok() && last.as_deref() == Some("metadata") {
        End::Complete
    } else {
        End::Truncated
    };
    (text, end)
}

/// A stream is one answer, also when it was continued in another region after a break: every
/// chunk has the same id and model, and one role chunk opens it.
fn assert_one_answer(events: &[String]) {
    let chunks: Vec<Value> = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter(|v| v.get("choices").is_some())
        .collect();
    let ids: std::collections::HashSet<String> = chunks
        .iter()
        .map(|c| format!("{} {}", c["id"], c["model"]))
        .collect();
    assert!(ids.len() <= 1, "chunks of more than one answer: {ids:?}");
    let roles = chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"].get("role").is_some())
        .count();
    assert!(roles <= 1, "{roles} role chunks: {events:?}");
}
