//! Streams: canonical chat chunks → Anthropic Messages stream events ([`ChunksToAnthropic`]).
//!
//! Anthropic's order is `message_start` (the message with empty `content` and the input
//! tokens), a `ping`, then per content block `content_block_start`, its `content_block_delta`s
//! (`text_delta`, `input_json_delta` for a tool's input, `thinking_delta`) and
//! `content_block_stop`, with block indexes 0, 1, 2, …; then `message_delta` with the
//! `stop_reason`, `stop_sequence` and the final usage, and `message_stop`. Each event is a JSON
//! object whose `type` is also its SSE event name ([`encode_sse_event`]).
use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};

use super::response::MessagesUsage;
use super::stop_reason;
use crate::openai::{ChatChunk, Usage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Thinking,
    /// A tool call, by its OpenAI `index`.
    Tool(u64),
}

/// The stateful encoder of one stream. `on_chunk` per canonical chunk, then `finish` once.
#[derive(Debug)]
pub struct ChunksToAnthropic {
    id: String,
    model: String,
    input_estimate: u64,
    started: bool,
    finished: bool,
    /// The stop reason and sequence, once the finish chunk came.
    stop: Option<(&'static str, Option<String>)>,
    next_index: u32,
    open: Option<(BlockKind, u32)>,
    /// OpenAI tool-call index and id of each tool block opened so far.
    tools: Vec<(u64, String)>,
    usage: Option<Usage>,
}

/// `event: <type>\ndata: <json>\n\n`.
pub fn encode_sse_event(event: &Value) -> Bytes {
    let name = event
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    let data = event.to_string();
    let mut b = BytesMut::with_capacity(data.len() + name.len() + 16);
    b.extend_from_slice(b"event: ");
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(b"\ndata: ");
    b.extend_from_slice(data.as_bytes());
    b.extend_from_slice(b"\n\n");
    b.freeze()
}

impl ChunksToAnthropic {
    /// An encoder for the message `id` of `model`; `input_estimate` is the input tokens
    /// `message_start` reports (the final usage, in `message_delta`, is the upstream's).
    pub fn new(id: &str, model: &str, input_estimate: u64) -> Self {
        ChunksToAnthropic {
            id: id.to_string(),
            model: model.to_string(),
            input_estimate,
            started: false,
            finished: false,
            stop: None,
            next_index: 0,
            open: None,
            tools: Vec::new(),
            usage: None,
        }
    }

    /// The usage the stream reported so far (its usage chunk), if any.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The usage `message_delta` will report, as the upstream's or else the estimate.
    pub fn final_usage(&self) -> MessagesUsage {
        self.usage
            .map(MessagesUsage::from)
            .unwrap_or(MessagesUsage {
                input_tokens: self.input_estimate,
                cache_read_input_tokens: None,
                output_tokens: 0,
            })
    }

    /// The events one chunk produces.
    pub fn on_chunk(&mut self, c: &ChatChunk) -> Vec<Value> {
        let mut out = Vec::new();
        if let Some(u) = c.usage {
            self.usage = Some(u);
        }
        if self.finished {
            return out;
        }
        for choice in c.choices.iter().filter(|ch| ch.index == 0) {
            self.start(&mut out);
            if self.stop.is_some() {
                continue;
            }
            let d = &choice.delta;
            if let Some(r) = d
                .extra
                .get("reasoning_content")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
            {
                let index = self.block(BlockKind::Thinking, &mut out);
                out.push(delta(
                    index,
                    json!({ "type": "thinking_delta", "thinking": r }),
                ));
            }
            if let Some(t) = d.content.as_deref().filter(|t| !t.is_empty()) {
                let index = self.block(BlockKind::Text, &mut out);
                out.push(delta(index, json!({ "type": "text_delta", "text": t })));
            }
            for call in d
                .extra
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                self.tool_call(call, &mut out);
            }
            if let Some(reason) = &choice.finish_reason {
                self.close(&mut out);
                self.stop = Some(stop_reason(Some(reason), &choice.extra));
            }
        }
        out
    }

    /// The events that end the stream: whatever was not sent yet (`message_start`, the open
    /// block's stop), `message_delta` (stop reason, `end_turn` when the upstream gave none;
    /// usage) and `message_stop`. A second call returns nothing.
    pub fn finish(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.start(&mut out);
        self.close(&mut out);
        let (reason, sequence) = self.stop.take().unwrap_or(("end_turn", None));
        let usage = self.final_usage();
        out.push(json!({
            "type": "message_delta",
            "delta": { "stop_reason": reason, "stop_sequence": sequence },
            "usage": { "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens },
        }));
        out.push(json!({ "type": "message_stop" }));
        self.finished = true;
        out
    }

    /// The event of a stream that broke after it started (`event: error`).
    pub fn error_event(kind: &str, message: &str) -> Value {
        json!({ "type": "error", "error": { "type": kind, "message": message } })
    }

    fn start(&mut self, out: &mut Vec<Value>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(json!({
            "type": "message_start",
            "message": {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": { "input_tokens": self.input_estimate, "output_tokens": 0 },
            },
        }));
        out.push(json!({ "type": "ping" }));
    }

    fn close(&mut self, out: &mut Vec<Value>) {
        if let Some((_, index)) = self.open.take() {
            out.push(json!({ "type": "content_block_stop", "index": index }));
        }
    }

    /// Opens a block (closing the open one) with its `content_block_start`.
    fn open(&mut self, kind: BlockKind, block: Value, out: &mut Vec<Value>) -> u32 {
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((kind, index));
        out.push(json!({ "type": "content_block_start", "index": index, "content_block": block }));
        index
    }

    /// The index of the open text or thinking block, opening one if needed.
    fn block(&mut self, kind: BlockKind, out: &mut Vec<Value>) -> u32 {
        match self.open {
            Some((k, index)) if k == kind => index,
            _ => {
                let block = match kind {
                    BlockKind::Thinking => {
                        json!({ "type": "thinking", "thinking": "", "signature": "" })
                    }
                    _ => json!({ "type": "text", "text": "" }),
                };
                self.open(kind, block, out)
            }
        }
    }

    fn tool_call(&mut self, call: &Value, out: &mut Vec<Value>) {
        let tool = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|i| !i.is_empty());
        let function = call.get("function");
        let known = self
            .tools
            .iter()
            .any(|(t, known)| *t == tool && id.is_none_or(|id| id == known));
        let index = match (known, self.open) {
            (true, Some((BlockKind::Tool(t), index))) if t == tool => index,
            // A fragment of a tool block that is closed already (see the module docs).
            (true, _) => return,
            (false, _) => {
                let id = id.unwrap_or_default().to_string();
                let name = function
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let block = json!({ "type": "tool_use", "id": id, "name": name, "input": {} });
                self.tools.push((tool, id));
                self.open(BlockKind::Tool(tool), block, out)
            }
        };
        if let Some(args) = function
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        {
            out.push(delta(
                index,
                json!({ "type": "input_json_delta", "partial_json": args }),
            ));
        }
    }
}

fn delta(index: u32, delta: Value) -> Value {
    json!({ "type": "content_block_delta", "index": index, "delta": delta })
}
