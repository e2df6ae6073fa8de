//! Fields one API has and the canonical (OpenAI chat) model has no place for: which they are,
//! and how they still reach an upstream that can honour them. The rule (no silent drops): a
//! request field is either carried to an upstream that honours it or refused by the gateway,
//! naming it, before anything is sent.
//!
//! * Converse → a `bedrock` upstream: `guardrailConfig`, `performanceConfig`,
//!   `promptVariables`, `requestMetadata`, `additionalModelResponseFieldPaths` (every top-level
//!   field the conversion does not map), `additionalModelRequestFields` as sent, and `system`
//!   blocks other than text (`guardContent`) ride in [`ChatRequest::bedrock_only`] and are put
//!   back into the Converse request ([`carry_to_converse`]). [`bedrock_only_fields`] names those
//!   an OpenAI-compatible upstream cannot take, for the gateway to refuse.
//! * OpenAI chat → a `bedrock` upstream: [`converse_cannot_carry`] names the fields Converse has
//!   no place for (`seed`, `logprobs`, `response_format`, `n` > 1, …) when set to anything but
//!   their default; `metadata` (string pairs) becomes Converse's `requestMetadata`, and `user`,
//!   an end-user id for the caller's abuse monitoring, is not sent.
use serde_json::{Map, Value};

use crate::bedrock::converse::ConverseRequest;
use crate::openai::ChatRequest;

/// The Converse fields a `bedrock` upstream is given back (see the module documentation).
pub fn bedrock_only(req: &ConverseRequest) -> Map<String, Value> {
    let mut out = req.extra.clone();
    if let Some(fields) = &req.additional_model_request_fields {
        out.insert("additionalModelRequestFields".into(), fields.clone());
    }
    if let Some(system) = &req.system
        && system
            .iter()
            .any(|b| b.extra.keys().any(|k| k != "cachePoint"))
    {
        out.insert(
            "system".into(),
            serde_json::to_value(system).unwrap_or(Value::Null),
        );
    }
    out
}

/// The fields of a Converse request only a `bedrock` upstream can honour, by name (empty when
/// any upstream serves it as well). `additionalModelRequestFields` is not among them: an
/// OpenAI-compatible upstream gets its fields at the request's top level.
pub fn bedrock_only_fields(req: &ConverseRequest) -> Vec<String> {
    let mut names: Vec<String> = req.extra.keys().cloned().collect();
    for (i, b) in req.system.iter().flatten().enumerate() {
        for k in b.extra.keys().filter(|k| *k != "cachePoint") {
            names.push(format!("system[{i}].{k}"));
        }
    }
    names.sort();
    names
}

/// Put a Converse client's carried fields (and an OpenAI client's `metadata`) into the
/// Converse request built for a `bedrock` upstream.
pub fn carry_to_converse(converse: &mut ConverseRequest, req: &ChatRequest) {
    if let Some(Value::Object(m)) = req.extra.get("metadata")
        && m.values().all(Value::is_string)
        && !m.is_empty()
    {
        converse
            .extra
            .insert("requestMetadata".into(), Value::Object(m.clone()));
    }
    for (k, v) in &req.bedrock_only {
        match k.as_str() {
            "additionalModelRequestFields" => {
                converse.additional_model_request_fields = Some(v.clone());
            }
            "system" => {
                if let Ok(system) = serde_json::from_value(v.clone()) {
                    converse.system = Some(system);
                }
            }
            _ => {
                converse.extra.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Fields of a chat request Converse maps (or that are the request's own).
const CARRIED: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "tools",
    "tool_choice",
    "metadata",
    "user",
];

/// Whether `v` is the value OpenAI takes when `field` is not sent (so dropping it changes
/// nothing).
fn is_default(field: &str, v: &Value) -> bool {
    match (field, v) {
        (_, Value::Null) => true,
        ("n", v) => v.as_u64() == Some(1),
        ("logprobs" | "store", Value::Bool(b)) => !b,
        ("parallel_tool_calls", Value::Bool(b)) => *b,
        ("presence_penalty" | "frequency_penalty", v) => v.as_f64() == Some(0.0),
        ("response_format", v) => v.get("type").and_then(Value::as_str) == Some("text"),
        ("modalities", Value::Array(a)) => a.iter().all(|m| m.as_str() == Some("text")),
        ("service_tier", Value::String(s)) => s == "auto" || s == "default",
        _ => false,
    }
}

/// The fields of a chat request a Converse request cannot carry (set to anything but their
/// default), by name: what a `bedrock` upstream would silently lose.
pub fn converse_cannot_carry(req: &ChatRequest) -> Vec<String> {
    let mut names: Vec<String> = req
        .extra
        .iter()
        .filter(|(k, v)| !CARRIED.contains(&k.as_str()) && !is_default(k, v))
        .map(|(k, _)| k.clone())
        .collect();
    if let Some(Value::Object(m)) = req.extra.get("metadata")
        && !m.values().all(Value::is_string)
    {
        names.push("metadata".into());
    }
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::bedrock::convert::{chat_to_converse, converse_to_chat};

    fn converse(v: Value) -> ConverseRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn converse_only_fields_reach_a_bedrock_upstream() {
        let req = converse(json!({
            "messages": [{"role": "user", "content": [{"text": "hi"}]}],
            "system": [{"text": "be brief"}, {"guardContent": {"text": {"text": "x"}}}],
            "guardrailConfig": {"guardrailIdentifier": "g1", "guardrailVersion": "1"},
            "performanceConfig": {"latency": "optimized"},
            "promptVariables": {"v": {"text": "t"}},
            "requestMetadata": {"team": "a"},
            "additionalModelRequestFields": {"top_k": 5},
        }));
        assert_eq!(
            bedrock_only_fields(&req),
            [
                "guardrailConfig",
                "performanceConfig",
                "promptVariables",
                "requestMetadata",
                "system[1].guardContent"
            ]
        );
        let chat = converse_to_chat("m", &req, false).unwrap();
        let (back, _) = chat_to_converse(&chat).unwrap();
        for k in [
            "guardrailConfig",
            "performanceConfig",
            "promptVariables",
            "requestMetadata",
        ] {
            assert_eq!(back.extra.get(k), req.extra.get(k), "{k}");
        }
        assert_eq!(
            back.additional_model_request_fields,
            Some(json!({"top_k": 5}))
        );
        assert_eq!(back.system, req.system);
        // Never serialized towards an OpenAI-compatible upstream.
        let wire = serde_json::to_value(&chat).unwrap();
        assert!(wire.get("guardrailConfig").is_none() && wire.get("bedrock_only").is_none());
    }

    #[test]
    fn a_plain_converse_request_needs_no_bedrock_upstream() {
        let req = converse(json!({
            "messages": [{"role": "user", "content": [{"text": "hi"}]}],
            "system": [{"text": "s"}, {"cachePoint": {"type": "default"}}],
            "inferenceConfig": {"maxTokens": 5},
            "additionalModelRequestFields": {"top_k": 5},
        }));
        assert!(bedrock_only_fields(&req).is_empty());
    }

    #[test]
    fn chat_fields_converse_cannot_carry_are_named() {
        let chat: ChatRequest = serde_json::from_value(json!({
            "model": "m", "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.1, "n": 1, "logprobs": false, "user": "u1",
            "presence_penalty": 0, "response_format": {"type": "text"},
            "metadata": {"team": "a"},
        }))
        .unwrap();
        assert!(converse_cannot_carry(&chat).is_empty());
        let (c, _) = chat_to_converse(&chat).unwrap();
        assert_eq!(c.extra.get("requestMetadata"), Some(&json!({"team": "a"})));
        let chat: ChatRequest = serde_json::from_value(json!({
            "model": "m", "messages": [{"role": "user", "content": "hi"}],
            "seed": 7, "n": 2, "logprobs": true, "top_k": 3,
            "response_format": {"type": "json_object"}, "metadata": {"n": 1},
        }))
        .unwrap();
        assert_eq!(
            converse_cannot_carry(&chat),
            [
                "logprobs",
                "metadata",
                "n",
                "response_format",
                "seed",
                "top_k"
            ]
        );
    }
}
