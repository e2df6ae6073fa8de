//! Canonical chat chunks → the Responses API's typed stream events.
//!
//! A Responses stream is a sequence of named SSE events (`event: <type>` with the same `type`
//! in the JSON), numbered by `sequence_number` from 0:
//!
//! ```text
//! response.created, response.in_progress
//!   per output item: response.output_item.added
//!     message:       response.content_part.added, response.output_text.delta*,
//!                    response.output_text.done, response.content_part.done
//!     function call: response.function_call_arguments.delta*,
//!                    response.function_call_arguments.done
//!   response.output_item.done
//! response.completed | response.incomplete | response.failed
//! ```
//!
//! Chat chunks carry text and tool-call deltas for one open item at a time; an item is opened
//! by its first delta and closed when a delta for another one arrives or the stream ends. The
//! last event carries the whole Response object, with the usage of the stream's usage chunk.
use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};

use super::Echo;
use super::output::{self, State};
use crate::openai::{ChatChunk, Usage};

/// An item being streamed.
enum Open {
    Message {
        index: usize,
        id: String,
        text: String,
    },
    Call {
        index: usize,
        id: String,
        /// The chat tool call's `index`.
        chat_index: u64,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// The converter of one stream.
pub struct ChunksToEvents {
    echo: Echo,
    seq: u64,
    started: bool,
    model: String,
    output: Vec<Value>,
    open: Option<Open>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

/// One event: its type and its JSON (which has the type and the sequence number).
pub type Event = (&'static str, Value);

impl ChunksToEvents {
    pub fn new(echo: Echo) -> Self {
        ChunksToEvents {
            echo,
            seq: 0,
            started: false,
            model: String::new(),
            output: Vec::new(),
            open: None,
            finish_reason: None,
            usage: None,
        }
    }

    fn push(&mut self, out: &mut Vec<Event>, kind: &'static str, mut body: Value) {
        if let Some(o) = body.as_object_mut() {
            o.insert("type".into(), Value::String(kind.into()));
            o.insert("sequence_number".into(), json!(self.seq));
        }
        self.seq += 1;
        out.push((kind, body));
    }

    fn snapshot(&self, status: &str, incomplete: Value, error: Value) -> Value {
        output::response(
            &self.echo,
            State {
                model: &self.model,
                status,
                output: self.output.clone(),
                usage: self.usage.as_ref(),
                incomplete_details: incomplete,
                error,
            },
        )
    }

    fn start(&mut self, out: &mut Vec<Event>) {
        if self.started {
            return;
        }
        self.started = true;
        let r = self.snapshot("in_progress", Value::Null, Value::Null);
        self.push(out, "response.created", json!({"response": r}));
        let r = self.snapshot("in_progress", Value::Null, Value::Null);
        self.push(out, "response.in_progress", json!({"response": r}));
    }

    /// The events of one chunk.
    pub fn on_chunk(&mut self, c: &ChatChunk) -> Vec<Event> {
        let mut out = Vec::new();
        if self.model.is_empty() {
            self.model = c.model.clone();
        }
        self.start(&mut out);
        if let Some(u) = c.usage {
            self.usage = Some(u);
        }
        let Some(choice) = c.choices.iter().find(|ch| ch.index == 0) else {
            return out;
        };
        if let Some(text) = choice.delta.content.as_deref().filter(|t| !t.is_empty()) {
            self.text(&mut out, text);
        }
        if let Some(calls) = choice
            .delta
            .extra
            .get("tool_calls")
            .and_then(Value::as_array)
        {
            for call in calls {
                self.call(&mut out, call);
            }
        }
        if let Some(r) = &choice.finish_reason {
            self.finish_reason = Some(r.clone());
        }
        out
    }

    fn text(&mut self, out: &mut Vec<Event>, delta: &str) {
        if !matches!(self.open, Some(Open::Message { .. })) {
            self.close(out);
            self.open_message(out);
        }
        let Some(Open::Message { index, id, text }) = &mut self.open else {
            return;
        };
        text.push_str(delta);
        let body = json!({"item_id": id, "output_index": index, "content_index": 0, "delta": delta, "logprobs": []});
        self.push(out, "response.output_text.delta", body);
    }

    fn open_message(&mut self, out: &mut Vec<Event>) {
        let index = self.output.len();
        let id = output::item_id(&self.echo, "msg", index);
        let item = json!({"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []});
        self.push(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
        );
        let part = output::output_text("");
        let body = json!({"item_id": id, "output_index": index, "content_index": 0, "part": part});
        self.push(out, "response.content_part.added", body);
        self.open = Some(Open::Message {
            index,
            id,
            text: String::new(),
        });
    }

    fn call(&mut self, out: &mut Vec<Event>, call: &Value) {
        let chat_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let same = matches!(&self.open, Some(Open::Call { chat_index: i, .. }) if *i == chat_index);
        let f = &call["function"];
        if !same {
            self.close(out);
            let index = self.output.len();
            let id = output::item_id(&self.echo, "fc", index);
            let call_id = call["id"].as_str().unwrap_or_default().to_string();
            let name = f["name"].as_str().unwrap_or_default().to_string();
            let item = output::function_call_item(&id, &call_id, &name, "", "in_progress");
            self.push(
                out,
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
            );
            self.open = Some(Open::Call {
                index,
                id,
                chat_index,
                call_id,
                name,
                arguments: String::new(),
            });
        }
        let Some(delta) = f["arguments"].as_str().filter(|a| !a.is_empty()) else {
            return;
        };
        let Some(Open::Call {
            index,
            id,
            arguments,
            ..
        }) = &mut self.open
        else {
            return;
        };
        arguments.push_str(delta);
        let body = json!({"item_id": id, "output_index": index, "delta": delta});
        self.push(out, "response.function_call_arguments.delta", body);
    }

    /// Close the open item, if any.
    fn close(&mut self, out: &mut Vec<Event>) {
        match self.open.take() {
            None => {}
            Some(Open::Message { index, id, text }) => {
                let body = json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []});
                self.push(out, "response.output_text.done", body);
                let body = json!({"item_id": id, "output_index": index, "content_index": 0, "part": output::output_text(&text)});
                self.push(out, "response.content_part.done", body);
                let item = output::message_item(&id, &text, "completed");
                self.output.push(item.clone());
                self.push(
                    out,
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                );
            }
            Some(Open::Call {
                index,
                id,
                call_id,
                name,
                arguments,
                ..
            }) => {
                let body = json!({"item_id": id, "output_index": index, "name": name, "arguments": arguments});
                self.push(out, "response.function_call_arguments.done", body);
                let item =
                    output::function_call_item(&id, &call_id, &name, &arguments, "completed");
                self.output.push(item.clone());
                self.push(
                    out,
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                );
            }
        }
    }

    /// The events that end a complete stream: the open item's end, then `response.completed`
    /// (or `response.incomplete` when the output was cut).
    pub fn finish(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        self.start(&mut out);
        if self.output.is_empty() && self.open.is_none() {
            self.open_message(&mut out);
        }
        self.close(&mut out);
        let (status, incomplete) = output::status_of(self.finish_reason.as_deref());
        let r = self.snapshot(status, incomplete, Value::Null);
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.push(&mut out, kind, json!({"response": r}));
        out
    }

    /// The event that ends a stream which broke: `response.failed`, with what was produced.
    pub fn fail(&mut self, message: &str) -> Vec<Event> {
        let mut out = Vec::new();
        self.start(&mut out);
        let error = json!({"code": "server_error", "message": message});
        let r = self.snapshot("failed", Value::Null, error);
        self.push(&mut out, "response.failed", json!({"response": r}));
        out
    }
}

/// Events as SSE: `event: <type>` and `data: <json>` each.
pub fn encode(events: &[Event], out: &mut BytesMut) {
    for (kind, body) in events {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(body.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
    }
}

/// [`encode`] into new bytes.
pub fn encode_bytes(events: &[Event]) -> Bytes {
    let mut b = BytesMut::new();
    encode(events, &mut b);
    b.freeze()
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
