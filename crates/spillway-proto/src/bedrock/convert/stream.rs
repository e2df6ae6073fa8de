//! Streams, both ways: OpenAI chunks → ConverseStream events ([`ChunksToConverse`]) and
//! ConverseStream events → OpenAI chunks ([`ConverseToChunks`]).
use serde_json::{Map, Value, json};

use super::{finish_reason_to_stop_reason, reasoning_text, stop_reason_to_finish_reason};
use crate::bedrock::converse::{ConverseMetrics, ConverseStreamEvent, TokenUsage};
use crate::openai::{ChatChunk, ChunkChoice, Delta, Usage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Reasoning,
    /// A tool call, by its OpenAI `index`.
    Tool(u64),
}

/// Turns an OpenAI chat stream (choice 0) into ConverseStream events.
///
/// Bedrock's order is `messageStart`, then per content block an optional `contentBlockStart`
/// (tool use only; text and reasoning blocks start with their first delta), its
/// `contentBlockDelta`s and a `contentBlockStop`, then `messageStop` and last `metadata` with
/// usage and latency. The finish chunk closes the open block and sends `messageStop`; the usage
/// chunk that follows it is remembered for `metadata`, which [`ChunksToConverse::finish`] sends.
#[derive(Debug, Default)]
pub struct ChunksToConverse {
    started: bool,
    stopped: bool,
    finished: bool,
    next_index: u32,
    open: Option<(BlockKind, u32)>,
    /// OpenAI tool-call index, its id, and the content block it became.
    tools: Vec<(u64, String, u32)>,
    usage: Option<Usage>,
}

impl ChunksToConverse {
    pub fn new() -> Self {
        Self::default()
    }

    /// The usage the stream reported so far (its usage chunk), if any.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Sets the usage `metadata` will report (e.g. an estimate when the upstream sent none).
    pub fn set_usage(&mut self, usage: Usage) {
        self.usage = Some(usage);
    }

    /// The events one chunk produces.
    pub fn on_chunk(&mut self, c: &ChatChunk) -> Vec<ConverseStreamEvent> {
        let mut out = Vec::new();
        if let Some(u) = c.usage {
            self.usage = Some(u);
        }
        if self.finished {
            return out;
        }
        for choice in c.choices.iter().filter(|ch| ch.index == 0) {
            self.start(&mut out);
            if self.stopped {
                continue;
            }
            let d = &choice.delta;
            if let Some(r) = d
                .extra
                .get("reasoning_content")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
            {
                let index = self.block(BlockKind::Reasoning, &mut out);
                out.push(ConverseStreamEvent::ContentBlockDelta {
                    content_block_index: index,
                    delta: json!({ "reasoningContent": { "text": r } }),
                });
            }
            if let Some(t) = d.content.as_deref().filter(|t| !t.is_empty()) {
                let index = self.block(BlockKind::Text, &mut out);
                out.push(ConverseStreamEvent::ContentBlockDelta {
                    content_block_index: index,
                    delta: json!({ "text": t }),
                });
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
                out.push(ConverseStreamEvent::MessageStop {
                    stop_reason: finish_reason_to_stop_reason(Some(reason)).to_string(),
                });
                self.stopped = true;
            }
        }
        out
    }

    /// The events that end the stream: whatever was not sent yet (`messageStart`, the open
    /// block's stop, `messageStop` with `end_turn`) and `metadata` with the usage (zero when the
    /// upstream reported none) and `latency_ms`. A second call returns nothing.
    pub fn finish(&mut self, latency_ms: u64) -> Vec<ConverseStreamEvent> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.start(&mut out);
        if !self.stopped {
            self.close(&mut out);
            out.push(ConverseStreamEvent::MessageStop {
                stop_reason: "end_turn".to_string(),
            });
            self.stopped = true;
        }
        out.push(ConverseStreamEvent::Metadata {
            usage: self.usage.map(TokenUsage::from).unwrap_or_default(),
            metrics: ConverseMetrics { latency_ms },
        });
        self.finished = true;
        out
    }

    fn start(&mut self, out: &mut Vec<ConverseStreamEvent>) {
        if !self.started {
            out.push(ConverseStreamEvent::MessageStart {
                role: "assistant".to_string(),
            });
            self.started = true;
        }
    }

    fn close(&mut self, out: &mut Vec<ConverseStreamEvent>) {
        if let Some((_, index)) = self.open.take() {
            out.push(ConverseStreamEvent::ContentBlockStop {
                content_block_index: index,
            });
        }
    }

    /// The index of the open block of `kind`, opening one (and closing the other) if needed.
    fn block(&mut self, kind: BlockKind, out: &mut Vec<ConverseStreamEvent>) -> u32 {
        match self.open {
            Some((k, index)) if k == kind => index,
            _ => {
                self.close(out);
                let index = self.next_index;
                self.next_index += 1;
                self.open = Some((kind, index));
                index
            }
        }
    }

    fn tool_call(&mut self, call: &Value, out: &mut Vec<ConverseStreamEvent>) {
        let tool = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let id = call.get("id").and_then(Value::as_str);
        let function = call.get("function");
        let known = self
            .tools
            .iter()
            .rev()
            .find(|(t, known_id, _)| *t == tool && id.is_none_or(|id| id == known_id))
            .map(|(_, _, index)| *index);
        let index = match known {
            Some(index) => index,
            None => {
                self.close(out);
                let index = self.next_index;
                self.next_index += 1;
                self.open = Some((BlockKind::Tool(tool), index));
                let id = id.unwrap_or_default().to_string();
                let name = function
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                out.push(ConverseStreamEvent::ContentBlockStart {
                    content_block_index: index,
                    start: json!({ "toolUse": { "toolUseId": id, "name": name } }),
                });
                self.tools.push((tool, id, index));
                index
            }
        };
        if let Some(args) = function
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        {
            out.push(ConverseStreamEvent::ContentBlockDelta {
                content_block_index: index,
                delta: json!({ "toolUse": { "input": args } }),
            });
        }
    }
}

/// Turns ConverseStream events into OpenAI chunks (all with the given id, model and created).
///
/// `messageStart` → a role chunk; text and reasoning deltas → `content` / `reasoning_content`
/// chunks; a tool-use block → `tool_calls` chunks (its start carries id and name, its deltas the
/// argument fragments); `messageStop` → a chunk with `finish_reason`; `metadata` → a usage chunk
/// with empty `choices` (as with `stream_options.include_usage`).
#[derive(Debug)]
pub struct ConverseToChunks {
    id: String,
    model: String,
    created: u64,
    /// Content block index → OpenAI tool-call index.
    tools: Vec<(u32, u64)>,
}

impl ConverseToChunks {
    pub fn new(model: &str, id: &str, created: u64) -> Self {
        ConverseToChunks {
            id: id.to_string(),
            model: model.to_string(),
            created,
            tools: Vec::new(),
        }
    }

    /// The chunks one event produces (none for `contentBlockStop` and unknown deltas).
    pub fn on_event(&mut self, ev: &ConverseStreamEvent) -> Vec<ChatChunk> {
        match ev {
            ConverseStreamEvent::MessageStart { role } => vec![self.chunk(
                Delta {
                    role: Some(role.clone()),
                    content: Some(String::new()),
                    extra: Map::new(),
                },
                None,
            )],
            ConverseStreamEvent::ContentBlockStart {
                content_block_index,
                start,
            } => match start.get("toolUse") {
                Some(tool_use) => {
                    let n = self.tool_index(*content_block_index);
                    let call = json!({
                        "index": n,
                        "id": tool_use.get("toolUseId").cloned().unwrap_or(json!("")),
                        "type": "function",
                        "function": {
                            "name": tool_use.get("name").cloned().unwrap_or(json!("")),
                            "arguments": "",
                        },
                    });
                    vec![self.tool_chunk(call)]
                }
                None => Vec::new(),
            },
            ConverseStreamEvent::ContentBlockDelta {
                content_block_index,
                delta,
            } => self.delta(*content_block_index, delta),
            ConverseStreamEvent::ContentBlockStop { .. } => Vec::new(),
            ConverseStreamEvent::MessageStop { stop_reason } => vec![self.chunk(
                Delta::default(),
                Some(stop_reason_to_finish_reason(stop_reason).to_string()),
            )],
            ConverseStreamEvent::Metadata { usage, .. } => vec![ChatChunk {
                choices: Vec::new(),
                usage: Some((*usage).into()),
                ..self.chunk(Delta::default(), None)
            }],
        }
    }

    fn delta(&mut self, block: u32, delta: &Value) -> Vec<ChatChunk> {
        if let Some(t) = delta.get("text").and_then(Value::as_str) {
            if t.is_empty() {
                return Vec::new();
            }
            let d = Delta {
                content: Some(t.to_string()),
                ..Delta::default()
            };
            return vec![self.chunk(d, None)];
        }
        if let Some(input) = delta
            .get("toolUse")
            .and_then(|u| u.get("input"))
            .and_then(Value::as_str)
        {
            let n = self.tool_index(block);
            let call = json!({ "index": n, "function": { "arguments": input } });
            return vec![self.tool_chunk(call)];
        }
        if let Some(r) = delta.get("reasoningContent").and_then(reasoning_text) {
            let mut d = Delta::default();
            d.extra.insert("reasoning_content".into(), json!(r));
            return vec![self.chunk(d, None)];
        }
        Vec::new()
    }

    /// The OpenAI tool-call index of a content block, allocating the next one for a new block.
    fn tool_index(&mut self, block: u32) -> u64 {
        if let Some((_, n)) = self.tools.iter().find(|(b, _)| *b == block) {
            return *n;
        }
        let n = self.tools.len() as u64;
        self.tools.push((block, n));
        n
    }

    fn tool_chunk(&self, call: Value) -> ChatChunk {
        let mut d = Delta::default();
        d.extra.insert("tool_calls".into(), json!([call]));
        self.chunk(d, None)
    }

    fn chunk(&self, delta: Delta, finish_reason: Option<String>) -> ChatChunk {
        ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".to_string(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
                extra: Map::new(),
            }],
            usage: None,
            extra: Map::new(),
        }
    }
}
