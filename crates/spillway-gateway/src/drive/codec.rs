//! The two ends of a relayed response, around the canonical model (OpenAI chat chunks):
//!
//! * [`UpstreamDecoder`]: what an upstream streams (SSE from `openai`/`sim` upstreams,
//!   `application/vnd.amazon.eventstream` ConverseStream frames from `bedrock` upstreams) →
//!   canonical events;
//! * [`ClientEncoder`]: canonical events → what the client's API streams (OpenAI SSE, Bedrock
//!   ConverseStream frames, InvokeModelWithResponseStream `chunk` frames, or Anthropic's events
//!   through [`super::anthropic`]), including the error that ends a stream which broke after it
//!   started;
//! * [`render_completion`]: a whole non-streamed answer in the client's API.
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use spillway_proto::bedrock::{self, ChunksToConverse, ConverseToChunks, FrameDecoder};
use spillway_proto::responses::{self, ChunksToEvents};
use spillway_proto::sse::{self, SseDecoder};
use spillway_proto::{ChatChunk, ChatCompletion, OpenAiErrorBody};

use super::anthropic::AnthropicEncoder;
use super::ctx::RequestCtx;
pub use crate::error::Api;

/// One canonical event from an upstream stream.
#[derive(Debug)]
pub enum UpstreamEvent {
    /// A chunk, with the upstream's own JSON when it was OpenAI-shaped (relayed unchanged to
    /// OpenAI clients).
    Chunk(Box<ChatChunk>, Option<String>),
    Done,
    /// The upstream reported an error inside the stream.
    Error(String),
    /// An InvokeModelWithResponseStream frame relayed unchanged (Bedrock upstream, Invoke
    /// client), with the usage its `amazon-bedrock-invocationMetrics` carry, if any.
    Raw(Bytes, Option<spillway_proto::Usage>),
}

pub enum UpstreamDecoder {
    Sse(SseDecoder),
    EventStream(FrameDecoder, Box<ConverseToChunks>),
    /// InvokeModelWithResponseStream frames passed through; the stream's end is its end.
    Passthrough(FrameDecoder),
}

impl UpstreamDecoder {
    pub fn sse() -> Self {
        UpstreamDecoder::Sse(SseDecoder::new())
    }

    pub fn converse_stream(model: &str, id: &str, created: u64) -> Self {
        UpstreamDecoder::EventStream(
            FrameDecoder::new(),
            Box::new(ConverseToChunks::new(model, id, created)),
        )
    }

    /// Whether the end of the upstream body ends the stream normally (Invoke streams carry no
    /// end marker).
    pub fn ends_at_eof(&self) -> bool {
        matches!(self, UpstreamDecoder::Passthrough(_))
    }

    pub fn feed(&mut self, bytes: &[u8]) -> Vec<UpstreamEvent> {
        match self {
            UpstreamDecoder::Passthrough(frames) => match frames.feed(bytes) {
                Err(e) => vec![UpstreamEvent::Error(e.to_string())],
                Ok(frames) => frames
                    .into_iter()
                    .map(|f| match f.message_type() {
                        Some("exception") | Some("error") => {
                            UpstreamEvent::Error(f.exception_type().unwrap_or("error").to_string())
                        }
                        _ => {
                            let usage = bedrock::decode_invoke_chunk(&f.payload)
                                .ok()
                                .and_then(|b| invocation_usage(&b));
                            UpstreamEvent::Raw(f.encode(), usage)
                        }
                    })
                    .collect(),
            },
            UpstreamDecoder::Sse(d) => d
                .feed(bytes)
                .into_iter()
                .filter_map(|ev| {
                    if ev.data == sse::DONE {
                        return Some(UpstreamEvent::Done);
                    }
                    match serde_json::from_str::<ChatChunk>(&ev.data) {
                        Ok(c) => Some(UpstreamEvent::Chunk(Box::new(c), Some(ev.data))),
                        Err(_) if ev.data.contains("\"error\"") => {
                            Some(UpstreamEvent::Error(ev.data))
                        }
                        Err(_) => None,
                    }
                })
                .collect(),
            UpstreamDecoder::EventStream(frames, conv) => {
                let frames = match frames.feed(bytes) {
                    Ok(f) => f,
                    Err(e) => return vec![UpstreamEvent::Error(e.to_string())],
                };
                let mut out = Vec::new();
                for f in frames {
                    match f.message_type() {
                        Some("exception") | Some("error") => {
                            let kind = f
                                .exception_type()
                                .or(f.header(":error-code"))
                                .unwrap_or("error")
                                .to_string();
                            out.push(UpstreamEvent::Error(kind));
                        }
                        _ => {
                            let Some(t) = f.event_type() else { continue };
                            let Ok(ev) = bedrock::ConverseStreamEvent::from_frame(t, &f.payload)
                            else {
                                continue;
                            };
                            let is_metadata =
                                matches!(ev, bedrock::ConverseStreamEvent::Metadata { .. });
                            for c in conv.on_event(&ev) {
                                out.push(UpstreamEvent::Chunk(Box::new(c), None));
                            }
                            // Bedrock ends a ConverseStream with `metadata`.
                            if is_metadata {
                                out.push(UpstreamEvent::Done);
                            }
                        }
                    }
                }
                out
            }
        }
    }
}

/// Canonical events → the client's stream format.
pub enum ClientEncoder {
    OpenAi {
        wants_usage: bool,
    },
    Converse(Box<ChunksToConverse>),
    /// InvokeModelWithResponseStream `chunk` frames; the usage chunk also carries Bedrock's
    /// `amazon-bedrock-invocationMetrics` (token counts and latencies, in milliseconds since
    /// `started`).
    Invoke {
        wants_usage: bool,
        started: std::time::Instant,
        first_byte_ms: Option<u64>,
    },
    /// `/v1/messages`, or an Anthropic body on InvokeModelWithResponseStream.
    Anthropic(Box<AnthropicEncoder>),
    /// The Responses API's typed events.
    Responses(Box<ChunksToEvents>),
}

impl ClientEncoder {
    /// The encoder of the API `ctx`'s client called, for its stream opened now.
    pub fn new(ctx: &RequestCtx) -> Self {
        let wants_usage = ctx.wants_usage;
        match (ctx.api, &ctx.echo) {
            (Api::Responses, Some(echo)) => {
                ClientEncoder::Responses(Box::new(ChunksToEvents::new((**echo).clone())))
            }
            (Api::OpenAi | Api::Responses | Api::Embeddings, _) => {
                ClientEncoder::OpenAi { wants_usage }
            }
            (Api::Converse, _) => ClientEncoder::Converse(Box::new(ChunksToConverse::new())),
            (Api::Invoke, _) => ClientEncoder::Invoke {
                wants_usage,
                started: ctx.started,
                first_byte_ms: None,
            },
            (Api::Anthropic | Api::InvokeAnthropic, _) => {
                ClientEncoder::Anthropic(Box::new(AnthropicEncoder::new(ctx)))
            }
        }
    }

    pub fn content_type(&self) -> &'static str {
        match self {
            ClientEncoder::OpenAi { .. } | ClientEncoder::Responses(_) => "text/event-stream",
            ClientEncoder::Anthropic(a) => a.content_type(),
            _ => "application/vnd.amazon.eventstream",
        }
    }

    /// Encode one chunk (nothing for a usage-only chunk the client did not ask for).
    /// Relay a passed-through frame unchanged.
    pub fn raw(&mut self, frame: &[u8], out: &mut BytesMut) {
        out.extend_from_slice(frame);
    }

    pub fn chunk(&mut self, c: &ChatChunk, raw: Option<&str>, out: &mut BytesMut) {
        let usage_only = c.choices.is_empty() && c.usage.is_some();
        match self {
            ClientEncoder::OpenAi { wants_usage } if usage_only && !*wants_usage => {}
            ClientEncoder::Responses(conv) => responses::stream::encode(&conv.on_chunk(c), out),
            ClientEncoder::OpenAi { .. } => match raw {
                Some(r) => out.extend_from_slice(&sse::encode_data(r)),
                None => out.extend_from_slice(&sse::encode_data(&json(c))),
            },
            ClientEncoder::Invoke {
                started,
                first_byte_ms,
                ..
            } => {
                let now = started.elapsed().as_millis() as u64;
                let first = *first_byte_ms.get_or_insert(now);
                let body = raw.map(|r| r.to_string()).unwrap_or_else(|| json(c));
                // The usage chunk (the stream's last) goes out whether or not the client asked
                // for usage: it carries the invocation metrics Bedrock's last chunk carries.
                let body = match c.usage {
                    Some(u) => with_invocation_metrics(&body, u, now, first),
                    None => body,
                };
                out.extend_from_slice(&bedrock::encode_invoke_chunk(body.as_bytes()));
            }
            ClientEncoder::Anthropic(a) => a.chunk(c, out),
            ClientEncoder::Converse(conv) => {
                for ev in conv.on_chunk(c) {
                    out.extend_from_slice(&bedrock::encode_event(
                        ev.event_type(),
                        ev.payload().to_string().as_bytes(),
                    ));
                }
            }
        }
    }

    /// The end of a complete stream.
    pub fn done(&mut self, latency_ms: u64, out: &mut BytesMut) {
        match self {
            ClientEncoder::OpenAi { .. } => out.extend_from_slice(&sse::encode_data(sse::DONE)),
            ClientEncoder::Invoke { .. } => {}
            ClientEncoder::Anthropic(a) => a.done(latency_ms, out),
            ClientEncoder::Responses(conv) => responses::stream::encode(&conv.finish(), out),
            ClientEncoder::Converse(conv) => {
                for ev in conv.finish(latency_ms) {
                    out.extend_from_slice(&bedrock::encode_event(
                        ev.event_type(),
                        ev.payload().to_string().as_bytes(),
                    ));
                }
            }
        }
    }

    /// The end of a stream that broke after it started.
    pub fn error(&mut self, message: &str) -> Bytes {
        match self {
            ClientEncoder::OpenAi { .. } => {
                let body =
                    OpenAiErrorBody::new(message, "server_error", Some("upstream_stream_error"));
                sse::encode_data(&body.to_json())
            }
            ClientEncoder::Anthropic(a) => a.error(message),
            ClientEncoder::Responses(conv) => responses::stream::encode_bytes(&conv.fail(message)),
            ClientEncoder::Converse(_) | ClientEncoder::Invoke { .. } => {
                bedrock::encode_exception("modelStreamErrorException", message)
            }
        }
    }
}

/// `body` (a chunk's JSON) with Bedrock's `amazon-bedrock-invocationMetrics` added, unless it
/// has them already.
fn with_invocation_metrics(
    body: &str,
    u: spillway_proto::Usage,
    latency_ms: u64,
    first_byte_ms: u64,
) -> String {
    let Ok(serde_json::Value::Object(mut v)) = serde_json::from_str(body) else {
        return body.to_string();
    };
    v.entry("amazon-bedrock-invocationMetrics")
        .or_insert_with(|| {
            serde_json::json!({
                "inputTokenCount": u.prompt_tokens,
                "outputTokenCount": u.completion_tokens,
                "invocationLatency": latency_ms,
                "firstByteLatency": first_byte_ms,
            })
        });
    serde_json::Value::Object(v).to_string()
}

/// `amazon-bedrock-invocationMetrics` in a native Invoke chunk or body: the usage Bedrock reports.
pub fn invocation_usage(json: &[u8]) -> Option<spillway_proto::Usage> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let m = v.get("amazon-bedrock-invocationMetrics")?;
    let input = m.get("inputTokenCount")?.as_u64()?;
    let output = m.get("outputTokenCount")?.as_u64()?;
    Some(spillway_proto::Usage {
        prompt_tokens: input,
        completion_tokens: output,
        total_tokens: input + output,
        prompt_tokens_details: None,
    })
}

fn json(c: &ChatChunk) -> String {
    serde_json::to_string(c).unwrap_or_default()
}

/// A whole non-streamed answer of a Responses request: the Response object.
pub fn render_response(echo: &responses::Echo, parsed: Option<&ChatCompletion>) -> Response {
    let Some(c) = parsed else {
        return crate::error::EdgeError::Unavailable(
            "The model's answer could not be read.".into(),
        )
        .into_response_for(Api::Responses);
    };
    let body = responses::response_object(echo, c).to_string();
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A whole non-streamed answer in the client's API. OpenAI and Invoke clients get the canonical
/// (OpenAI) body as the upstream sent it; Converse clients get Bedrock's Converse response.
pub fn render_completion(
    api: Api,
    raw: Bytes,
    parsed: Option<&ChatCompletion>,
    latency_ms: u64,
) -> Response {
    let body = match (api, parsed) {
        (Api::Converse, Some(c)) => {
            let conv = bedrock::chat_completion_to_converse(c, latency_ms);
            Bytes::from(serde_json::to_vec(&conv).unwrap_or_default())
        }
        (Api::Converse, None) => {
            return crate::error::EdgeError::Unavailable(
                "The model's answer could not be read.".into(),
            )
            .into_response_for(api);
        }
        _ => raw,
    };
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
