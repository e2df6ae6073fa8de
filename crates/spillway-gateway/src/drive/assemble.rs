//! A non-streamed answer assembled from a streamed one: the chunks of a chat-completions stream
//! (the canonical model, whichever upstream sent them) folded into the chat completion the
//! upstream would have answered had it not been asked to stream.
//!
//! The gateway asks every upstream that can stream for a stream, also for a client that wants a
//! whole answer (see `drive::attempt`): so the first-byte timeout means the first token for every
//! request, an upstream that stops mid-answer is noticed at once and the request fails over
//! (nothing reached the client yet), and the usage is the upstream's own final report.
//!
//! Folding, per choice (by `index`): `content` deltas are concatenated (`null` when none came),
//! the first `role` is kept (`assistant` by default), the last `finish_reason` wins;
//! `tool_calls` deltas are merged by their `index` (id, type and name from the first that has
//! them, `arguments` concatenated); other string fields of the deltas (`refusal`,
//! `reasoning_content`, …) are concatenated, other values replaced; `logprobs.content` arrays
//! are concatenated. The completion's `id`, `created`, `model` and other top-level fields
//! (`system_fingerprint`, …) come from the chunks, `usage` from the usage chunk.
use std::collections::BTreeMap;

use serde_json::{Map, Value};
use spillway_proto::{ChatChunk, ChatCompletion, Choice, ResponseMessage, Usage};

/// The chunks seen so far.
#[derive(Debug, Default)]
pub struct Assembly {
    id: String,
    created: u64,
    model: String,
    extra: Map<String, Value>,
    choices: BTreeMap<u32, Folded>,
    usage: Option<Usage>,
}

/// One choice, folded.
#[derive(Debug, Default)]
struct Folded {
    role: Option<String>,
    content: Option<String>,
    finish_reason: Option<String>,
    /// Tool calls by their `index`.
    tool_calls: BTreeMap<u64, Map<String, Value>>,
    /// The message's other fields.
    message: Map<String, Value>,
    /// The choice's own fields (`logprobs`, …).
    choice: Map<String, Value>,
}

impl Assembly {
    pub fn new() -> Assembly {
        Assembly::default()
    }

    /// Fold one chunk in.
    pub fn add(&mut self, c: &ChatChunk) {
        if self.id.is_empty() {
            self.id.clone_from(&c.id);
            self.created = c.created;
        }
        if self.model.is_empty() {
            self.model.clone_from(&c.model);
        }
        for (k, v) in &c.extra {
            self.extra.insert(k.clone(), v.clone());
        }
        if c.usage.is_some() {
            self.usage = c.usage;
        }
        for choice in &c.choices {
            let f = self.choices.entry(choice.index).or_default();
            if f.role.is_none() {
                f.role.clone_from(&choice.delta.role);
            }
            if let Some(text) = &choice.delta.content {
                f.content.get_or_insert_with(String::new).push_str(text);
            }
            if choice.finish_reason.is_some() {
                f.finish_reason.clone_from(&choice.finish_reason);
            }
            for (k, v) in &choice.delta.extra {
                match (k.as_str(), v) {
                    ("tool_calls", Value::Array(calls)) => f.tool_calls(calls),
                    _ => merge(&mut f.message, k, v),
                }
            }
            for (k, v) in &choice.extra {
                f.choice_field(k, v);
            }
        }
    }

    /// The whole answer.
    pub fn finish(self) -> ChatCompletion {
        let choices = self
            .choices
            .into_iter()
            .map(|(index, f)| f.into_choice(index))
            .collect();
        ChatCompletion {
            id: self.id,
            object: "chat.completion".to_string(),
            created: self.created,
            model: self.model,
            choices,
            usage: self.usage,
            extra: self.extra,
        }
    }
}

impl Folded {
    fn tool_calls(&mut self, calls: &[Value]) {
        for call in calls {
            let Some(obj) = call.as_object() else {
                continue;
            };
            let index = obj.get("index").and_then(Value::as_u64).unwrap_or(0);
            let into = self.tool_calls.entry(index).or_default();
            for (k, v) in obj {
                match (k.as_str(), v) {
                    ("index", _) => {}
                    ("function", Value::Object(func)) => {
                        let target = into
                            .entry("function")
                            .or_insert_with(|| Value::Object(Map::new()));
                        if let Value::Object(target) = target {
                            for (fk, fv) in func {
                                merge(target, fk, fv);
                            }
                        }
                    }
                    _ if v.is_null() => {}
                    _ => {
                        into.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
        }
    }

    fn choice_field(&mut self, k: &str, v: &Value) {
        let more = v.get("content").and_then(Value::as_array);
        if let (true, Some(Value::Object(have)), Some(more)) =
            (k == "logprobs", self.choice.get_mut(k), more)
        {
            match have.get_mut("content") {
                Some(Value::Array(items)) => items.extend(more.iter().cloned()),
                _ => {
                    have.insert("content".into(), Value::Array(more.clone()));
                }
            }
        } else if !(v.is_null() && self.choice.contains_key(k)) {
            self.choice.insert(k.to_string(), v.clone());
        }
    }

    fn into_choice(mut self, index: u32) -> Choice {
        if !self.tool_calls.is_empty() {
            let calls = self.tool_calls.into_values().map(Value::Object).collect();
            self.message
                .insert("tool_calls".into(), Value::Array(calls));
        }
        Choice {
            index,
            message: ResponseMessage {
                role: self.role.unwrap_or_else(|| "assistant".to_string()),
                content: self.content,
                extra: self.message,
            },
            finish_reason: self.finish_reason,
            extra: self.choice,
        }
    }
}

/// Strings add up across deltas; `null` changes nothing; anything else replaces.
fn merge(into: &mut Map<String, Value>, k: &str, v: &Value) {
    match (into.get_mut(k), v) {
        (_, Value::Null) => {}
        (Some(Value::String(have)), Value::String(more)) => have.push_str(more),
        _ => {
            into.insert(k.to_string(), v.clone());
        }
    }
}

#[cfg(test)]
#[path = "assemble_tests.rs"]
mod tests;
