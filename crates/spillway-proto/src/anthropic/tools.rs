//! Tools: Anthropic's `tools` and `tool_choice` → OpenAI's function tools and `tool_choice`.
use serde_json::{Map, Value, json};

use super::error::AnthropicError;
use super::request::{block_type, invalid, str_field};

/// A client tool (`{name, description, input_schema}`) as an OpenAI function tool; server tools
/// (a `type` other than `custom`) are refused.
pub(super) fn tool_to_chat(i: usize, tool: &Value) -> Result<Value, AnthropicError> {
    let at = format!("tools[{i}]");
    let obj = tool
        .as_object()
        .ok_or_else(|| invalid(format!("{at}: must be an object")))?;
    if let Some(kind) = obj.get("type").filter(|t| !t.is_null())
        && kind.as_str() != Some("custom")
    {
        return Err(invalid(format!(
            "{at}.type: {kind} is not supported (only client tools)"
        )));
    }
    const KEYS: &[&str] = &[
        "type",
        "name",
        "description",
        "input_schema",
        "cache_control",
    ];
    if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(invalid(format!("{at}.{k}: not supported")));
    }
    let name = str_field(&at, tool, "name")?;
    let schema = obj
        .get("input_schema")
        .filter(|s| s.is_object())
        .ok_or_else(|| invalid(format!("{at}.input_schema: Field required (an object)")))?;
    let mut function = json!({ "name": name, "parameters": schema });
    if let Some(d) = obj.get("description").filter(|d| !d.is_null()) {
        function["description"] = d.clone();
    }
    Ok(json!({ "type": "function", "function": function }))
}

/// `tool_choice` `auto` / `any` / `tool{name}` / `none` → `auto` / `required` /
/// `{type: function, function: {name}}` / `none`; `disable_parallel_tool_use` →
/// `parallel_tool_calls: false`.
pub(super) fn tool_choice_to_chat(
    choice: &Value,
    extra: &mut Map<String, Value>,
) -> Result<(), AnthropicError> {
    let at = "tool_choice";
    let kind = block_type(at, choice, &["name", "disable_parallel_tool_use"])?;
    let mapped = match kind {
        "auto" => json!("auto"),
        "any" => json!("required"),
        "none" => json!("none"),
        "tool" => {
            let name = str_field(at, choice, "name")?;
            json!({ "type": "function", "function": { "name": name } })
        }
        other => return Err(invalid(format!("{at}.type: `{other}` is not supported"))),
    };
    if kind != "tool" && choice.get("name").is_some() {
        return Err(invalid(format!("{at}.name: only for type tool")));
    }
    extra.insert("tool_choice".into(), mapped);
    match choice.get("disable_parallel_tool_use") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => {
            extra.insert("parallel_tool_calls".into(), json!(false));
        }
        Some(_) => {
            return Err(invalid(format!(
                "{at}.disable_parallel_tool_use: must be a boolean"
            )));
        }
    }
    Ok(())
}
