//! The Anthropic client ends of a response (beside [`super::codec`]'s OpenAI and Bedrock ones):
//!
//! * [`AnthropicEncoder`]: canonical chunks → Anthropic Messages stream events, either as SSE
//!   with `event:` lines (`/v1/messages`) or each event's JSON as an InvokeModelWithResponseStream
//!   `chunk` frame (an Anthropic body on Bedrock), whose `message_stop` carries
//!   `amazon-bedrock-invocationMetrics` as Bedrock's does;
//! * [`render_message`]: a whole answer as the Messages response JSON.
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};
use spillway_proto::ChatCompletion;
use spillway_proto::anthropic::{ChunksToAnthropic, chat_completion_to_message, encode_sse_event};
use spillway_proto::bedrock;

use super::ctx::RequestCtx;
use crate::error::{Api, EdgeError};

/// The stream encoder of an Anthropic client.
#[derive(Debug)]
pub struct AnthropicEncoder {
    inner: ChunksToAnthropic,
    /// Events go out as InvokeModelWithResponseStream `chunk` frames, not SSE.
    invoke: bool,
    /// When the stream's head went out, from the request's start.
    first_byte_ms: u64,
}

impl AnthropicEncoder {
    /// The encoder of `ctx`'s stream, opened now.
    pub fn new(ctx: &RequestCtx) -> Self {
        let id = format!("msg_{}", ctx.id.replace('-', ""));
        AnthropicEncoder {
            inner: ChunksToAnthropic::new(&id, &ctx.model_name, ctx.prompt_tokens),
            invoke: ctx.api == Api::InvokeAnthropic,
            first_byte_ms: ctx.started.elapsed().as_millis() as u64,
        }
    }

    pub fn content_type(&self) -> &'static str {
        if self.invoke {
            "application/vnd.amazon.eventstream"
        } else {
            "text/event-stream"
        }
    }

    pub fn chunk(&mut self, c: &spillway_proto::ChatChunk, out: &mut BytesMut) {
        let events = self.inner.on_chunk(c);
        self.write(events, out);
    }

    /// The end of a complete stream (`message_delta`, `message_stop`).
    pub fn done(&mut self, latency_ms: u64, out: &mut BytesMut) {
        let mut events = self.inner.finish();
        if self.invoke {
            let usage = self.inner.final_usage();
            if let Some(stop) = events.last_mut().filter(|e| e["type"] == "message_stop") {
                stop["amazon-bedrock-invocationMetrics"] = json!({
                    "inputTokenCount": usage.input_tokens,
                    "outputTokenCount": usage.output_tokens,
                    "invocationLatency": latency_ms,
                    "firstByteLatency": self.first_byte_ms,
                });
            }
        }
        self.write(events, out);
    }

    /// The end of a stream that broke after it started: Anthropic's `event: error`, or
    /// Bedrock's `modelStreamErrorException` for an Invoke client.
    pub fn error(&mut self, message: &str) -> Bytes {
        if self.invoke {
            return bedrock::encode_exception("modelStreamErrorException", message);
        }
        encode_sse_event(&ChunksToAnthropic::error_event("api_error", message))
    }

    fn write(&self, events: Vec<Value>, out: &mut BytesMut) {
        for ev in events {
            if self.invoke {
                // Bedrock sends no pings in an Anthropic model's stream.
                if ev["type"] != "ping" {
                    out.extend_from_slice(&bedrock::encode_invoke_chunk(ev.to_string().as_bytes()));
                }
            } else {
                out.extend_from_slice(&encode_sse_event(&ev));
            }
        }
    }
}

/// A whole answer as the Messages response (for `/v1/messages` and an Anthropic Invoke body);
/// an Invoke answer also carries Bedrock's token-count and latency headers.
pub fn render_message(
    ctx: &RequestCtx,
    parsed: Option<&ChatCompletion>,
    latency_ms: u64,
) -> Response {
    let Some(c) = parsed else {
        return EdgeError::Unavailable("The model's answer could not be read.".into())
            .into_response_for(ctx.api);
    };
    let message = chat_completion_to_message(c, &ctx.model_name);
    let body = serde_json::to_vec(&message).unwrap_or_default();
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if ctx.api == Api::InvokeAnthropic {
        let u = message.usage;
        h.insert(
            "x-amzn-bedrock-input-token-count",
            HeaderValue::from(u.input_tokens),
        );
        h.insert(
            "x-amzn-bedrock-output-token-count",
            HeaderValue::from(u.output_tokens),
        );
        h.insert(
            "x-amzn-bedrock-invocation-latency",
            HeaderValue::from(latency_ms),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;
    use spillway_core::RegionIx;
    use spillway_proto::bedrock::{FrameDecoder, decode_invoke_chunk};

    use super::*;

    fn chunk(v: Value) -> spillway_proto::ChatChunk {
        serde_json::from_value(v).unwrap()
    }

    fn stream(api: Api) -> BytesMut {
        let mut ctx = RequestCtx::new(RegionIx(0), &HeaderMap::new(), api);
        ctx.model_name = "us.m".into();
        let mut enc = AnthropicEncoder::new(&ctx);
        let mut out = BytesMut::new();
        let base =
            json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "x"});
        let mut text = base.clone();
        text["choices"] =
            json!([{"index": 0, "delta": {"content": "Hi"}, "finish_reason": "stop"}]);
        let mut usage = base;
        usage["choices"] = json!([]);
        usage["usage"] = json!({"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4});
        enc.chunk(&chunk(text), &mut out);
        enc.chunk(&chunk(usage), &mut out);
        enc.done(12, &mut out);
        out
    }

    #[test]
    fn sse_events_carry_their_names() {
        let text = String::from_utf8(stream(Api::Anthropic).to_vec()).unwrap();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(
            text.contains(r#""usage":{"input_tokens":3,"output_tokens":1}"#),
            "{text}"
        );
    }

    #[test]
    fn invoke_events_are_chunk_frames_and_message_stop_has_the_metrics() {
        let out = stream(Api::InvokeAnthropic);
        let frames = FrameDecoder::new().feed(&out).unwrap();
        let events: Vec<Value> = frames
            .iter()
            .map(|f| serde_json::from_slice(&decode_invoke_chunk(&f.payload).unwrap()).unwrap())
            .collect();
        assert!(frames.iter().all(|f| f.event_type() == Some("chunk")));
        assert_eq!(events.len(), 6, "no ping");
        let stop = &events[5];
        assert_eq!(stop["type"], "message_stop");
        let m = &stop["amazon-bedrock-invocationMetrics"];
        assert_eq!(
            (
                m["inputTokenCount"].as_u64(),
                m["outputTokenCount"].as_u64()
            ),
            (Some(3), Some(1))
        );
        assert_eq!(m["invocationLatency"], 12);
    }
}
