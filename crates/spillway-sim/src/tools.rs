//! Tool calls: the simulator's deterministic rule for answering with one.
//!
//! A request gets a tool call instead of text when it offers `tools`, its `tool_choice` is not
//! `"none"`, and its last message is not a `tool` result (so a tool round trip ends with text:
//! call, result, answer). The tool called is the one `tool_choice` names
//! (`{"type": "function", "function": {"name"}}`), else the first of `tools`. Its arguments are
//! built from the tool's `parameters` schema: each of its `properties` with a value of its
//! `type` (`"spillway"` for strings, `1` for numbers and integers, `true`, `[]`, `{}`, else
//! `null`), in the schema's order.
//!
//! The arguments' JSON text is the output: one token per four characters, streamed as
//! `tool_calls` argument fragments of that size (the first carries the call's id and name), so
//! timing, caps and faults apply as to text. A cap below that length cuts the arguments and the
//! finish reason is `length`; otherwise it is `tool_calls`.
use serde_json::{Map, Value, json};
use spillway_proto::{ChatRequest, Delta};

/// The call the simulator answers with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments' JSON text, as characters (fragments are cut on character boundaries).
    arguments: Vec<char>,
}

impl ToolCall {
    /// The call for `req` under the rule above, if it gets one.
    pub(crate) fn pick(req: &ChatRequest) -> Option<ToolCall> {
        let tools = req.extra.get("tools")?.as_array()?;
        let choice = req.extra.get("tool_choice");
        if choice.and_then(Value::as_str) == Some("none")
            || req.messages.last().is_none_or(|m| m.role == "tool")
        {
            return None;
        }
        let named = choice
            .and_then(|c| c.get("function"))
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str);
        let function = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .find(|f| named.is_none_or(|n| f.get("name").and_then(Value::as_str) == Some(n)))?;
        let name = function.get("name")?.as_str()?.to_string();
        let arguments = arguments_for(function.get("parameters")).to_string();
        Some(ToolCall {
            id: format!("call_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]),
            name,
            arguments: arguments.chars().collect(),
        })
    }

    /// Output tokens of the whole call: one per four characters of the arguments.
    pub(crate) fn tokens(&self) -> u64 {
        (self.arguments.len() as u64).div_ceil(4).max(1)
    }

    /// The arguments of the first `tokens` tokens.
    fn arguments(&self, from: u64, to: u64) -> String {
        let at = |t: u64| (t.saturating_mul(4) as usize).min(self.arguments.len());
        self.arguments[at(from)..at(to)].iter().collect()
    }

    /// The finish reason after `produced` tokens.
    pub(crate) fn finish_reason(&self, produced: u64) -> &'static str {
        if produced >= self.tokens() {
            "tool_calls"
        } else {
            "length"
        }
    }

    /// The stream delta of token `i`: a fragment of the arguments (the first names the call).
    pub(crate) fn delta(&self, i: u64) -> Delta {
        let fragment = self.arguments(i, i + 1);
        let call = if i == 0 {
            json!({ "index": 0, "id": self.id, "type": "function",
                    "function": { "name": self.name, "arguments": fragment } })
        } else {
            json!({ "index": 0, "function": { "arguments": fragment } })
        };
        let mut d = Delta::default();
        d.extra.insert("tool_calls".into(), json!([call]));
        d
    }

    /// The message fields of a whole answer after `produced` tokens (`tool_calls`).
    pub(crate) fn message_extra(&self, produced: u64) -> Map<String, Value> {
        let call = json!({ "id": self.id, "type": "function",
            "function": { "name": self.name, "arguments": self.arguments(0, produced) } });
        let mut extra = Map::new();
        extra.insert("tool_calls".into(), json!([call]));
        extra
    }
}

/// Arguments for a JSON schema: each property with a value of its type.
fn arguments_for(schema: Option<&Value>) -> Value {
    let mut args = Map::new();
    if let Some(props) = schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
    {
        for (name, p) in props {
            let v = match p.get("type").and_then(Value::as_str) {
                Some("string") => json!("spillway"),
                Some("number" | "integer") => json!(1),
                Some("boolean") => json!(true),
                Some("array") => json!([]),
                Some("object") => json!({}),
                _ => Value::Null,
            };
            args.insert(name.clone(), v);
        }
    }
    Value::Object(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    fn tools() -> Value {
        json!([
            {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "get_weather", "parameters": {
                "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}
        ])
    }

    #[test]
    fn the_rule_picks_the_named_or_first_tool_and_stops_after_a_result() {
        let user = json!([{"role": "user", "content": "hi"}]);
        let named = json!({"type": "function", "function": {"name": "get_weather"}});
        let call = ToolCall::pick(&req(
            json!({"model": "m", "messages": user, "tools": tools(),
                                               "tool_choice": named}),
        ))
        .unwrap();
        assert_eq!(call.name, "get_weather");
        let args: String = call.arguments.iter().collect();
        assert_eq!(args, r#"{"city":"spillway","days":1}"#);
        let first = ToolCall::pick(&req(
            json!({"model": "m", "messages": user, "tools": tools()}),
        ));
        assert_eq!(first.unwrap().name, "a");
        assert!(
            ToolCall::pick(&req(
                json!({"model": "m", "messages": user, "tools": tools(),
                                           "tool_choice": "none"})
            ))
            .is_none()
        );
        let after = json!([{"role": "user", "content": "hi"},
                           {"role": "tool", "tool_call_id": "x", "content": "20C"}]);
        assert!(
            ToolCall::pick(&req(
                json!({"model": "m", "messages": after, "tools": tools()})
            ))
            .is_none()
        );
        assert!(ToolCall::pick(&req(json!({"model": "m", "messages": user}))).is_none());
    }

    #[test]
    fn fragments_add_up_to_the_arguments() {
        let call = ToolCall::pick(&req(json!({"model": "m", "tools": tools(),
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "messages": [{"role": "user", "content": "hi"}]})))
        .unwrap();
        let n = call.tokens();
        assert_eq!(n, 7, "28 characters");
        let joined: String = (0..n)
            .map(|i| {
                let d = call.delta(i);
                d.extra["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(joined, r#"{"city":"spillway","days":1}"#);
        assert_eq!(call.delta(0).extra["tool_calls"][0]["id"], call.id.as_str());
        assert_eq!(
            (call.finish_reason(n), call.finish_reason(n - 1)),
            ("tool_calls", "length")
        );
    }
}
