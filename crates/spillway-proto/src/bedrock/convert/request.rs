//! Requests: Converse → chat ([`converse_to_chat`]) and chat → Converse ([`chat_to_converse`]).
use serde_json::{Map, Value, json};

use super::{str_field, tool_use_to_call};
use crate::bedrock::converse::{
    ContentBlock, ConverseRequest, InferenceConfig, Message, SystemContentBlock,
};
use crate::bedrock::error::BedrockError;
use crate::openai::{ChatMessage, ChatRequest, MessageContent, StreamOptions};

/// Fields of [`ChatRequest`] itself: never taken from `additionalModelRequestFields`, which would
/// otherwise write them a second time through `extra`.
const CHAT_REQUEST_FIELDS: [&str; 6] = [
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
];

fn invalid(message: impl Into<String>) -> BedrockError {
    BedrockError::validation(message)
}

fn unsupported_block(at: &str, kind: &str) -> BedrockError {
    invalid(format!("{at}: content block type {kind} is not supported"))
}

/// One string, or text parts when there are several.
fn text_content(texts: Vec<String>) -> MessageContent {
    if texts.len() == 1 {
        MessageContent::Text(texts.into_iter().next().unwrap_or_default())
    } else {
        MessageContent::Parts(
            texts
                .into_iter()
                .map(|t| json!({ "type": "text", "text": t }))
                .collect(),
        )
    }
}

fn chat_message(role: &str, content: Option<MessageContent>) -> ChatMessage {
    ChatMessage {
        role: role.to_string(),
        content,
        extra: Map::new(),
    }
}

/// A Converse request (to the model `model`) as a chat request; `stream` asks for a stream with
/// its final usage chunk.
pub fn converse_to_chat(
    model: &str,
    req: &ConverseRequest,
    stream: bool,
) -> Result<ChatRequest, BedrockError> {
    if req.messages.is_empty() {
        return Err(invalid("messages must not be empty"));
    }
    let mut messages = Vec::new();
    if let Some(system) = &req.system {
        let texts: Vec<String> = system.iter().filter_map(|b| b.text.clone()).collect();
        if !texts.is_empty() {
            messages.push(chat_message("system", Some(text_content(texts))));
        }
    }
    for (i, m) in req.messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        match m.role.as_str() {
            "user" => user_to_chat(&at, m, &mut messages)?,
            "assistant" => messages.push(assistant_to_chat(&at, m)?),
            other => {
                return Err(invalid(format!(
                    "{at}: role `{other}` is not supported (expected user or assistant)"
                )));
            }
        }
    }

    let mut extra = Map::new();
    let mut max_tokens = None;
    if let Some(cfg) = &req.inference_config {
        max_tokens = cfg.max_tokens;
        if let Some(t) = cfg.temperature {
            extra.insert("temperature".into(), json!(t));
        }
        if let Some(p) = cfg.top_p {
            extra.insert("top_p".into(), json!(p));
        }
        if let Some(stop) = &cfg.stop_sequences {
            extra.insert("stop".into(), json!(stop));
        }
    }
    if let Some(tool_config) = &req.tool_config {
        tools_to_chat(tool_config, &mut extra)?;
    }
    match &req.additional_model_request_fields {
        None | Some(Value::Null) => {}
        Some(Value::Object(fields)) => {
            for (k, v) in fields {
                if !CHAT_REQUEST_FIELDS.contains(&k.as_str()) {
                    extra.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        Some(_) => {
            return Err(invalid(
                "additionalModelRequestFields must be a JSON object",
            ));
        }
    }

    Ok(ChatRequest {
        model: model.to_string(),
        messages,
        stream: stream.then_some(true),
        stream_options: stream.then(|| StreamOptions {
            include_usage: Some(true),
            extra: Map::new(),
        }),
        max_tokens,
        max_completion_tokens: None,
        extra,
        bedrock_only: super::carry::bedrock_only(req),
    })
}

/// A user turn: its tool results become `tool` messages (first, as OpenAI wants them right after
/// the assistant's calls), its text one user message.
fn user_to_chat(at: &str, m: &Message, out: &mut Vec<ChatMessage>) -> Result<(), BedrockError> {
    let mut texts = Vec::new();
    let mut results = 0;
    for block in &m.content {
        match block {
            ContentBlock::Text(t) => texts.push(t.clone()),
            ContentBlock::ToolResult(r) => {
                out.push(tool_result_to_chat(at, r)?);
                results += 1;
            }
            ContentBlock::ToolUse(_) => {
                return Err(invalid(format!(
                    "{at}: toolUse blocks belong in assistant messages"
                )));
            }
            other if other.kind() == "cachePoint" => {}
            other => return Err(unsupported_block(at, other.kind())),
        }
    }
    if !texts.is_empty() {
        out.push(chat_message("user", Some(text_content(texts))));
    } else if results == 0 {
        return Err(invalid(format!("{at}: the message has no content")));
    }
    Ok(())
}

fn tool_result_to_chat(at: &str, result: &Value) -> Result<ChatMessage, BedrockError> {
    let id =
        str_field(result, "toolUseId").map_err(|e| invalid(format!("{at}: toolResult {e}")))?;
    let mut texts = Vec::new();
    for part in result
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(t) = part.get("text").and_then(Value::as_str) {
            texts.push(t.to_string());
        } else if let Some(j) = part.get("json") {
            texts.push(j.to_string());
        } else {
            let kind = part
                .as_object()
                .and_then(|o| o.keys().next())
                .map_or("unknown", String::as_str);
            return Err(invalid(format!(
                "{at}: toolResult content block type {kind} is not supported"
            )));
        }
    }
    let content = if texts.is_empty() {
        MessageContent::Text(String::new())
    } else {
        text_content(texts)
    };
    let mut msg = chat_message("tool", Some(content));
    msg.extra.insert("tool_call_id".into(), json!(id));
    Ok(msg)
}

fn assistant_to_chat(at: &str, m: &Message) -> Result<ChatMessage, BedrockError> {
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    for block in &m.content {
        match block {
            ContentBlock::Text(t) => texts.push(t.clone()),
            ContentBlock::ToolUse(u) => {
                calls.push(tool_use_to_call(u).map_err(|e| invalid(format!("{at}: toolUse {e}")))?)
            }
            ContentBlock::ToolResult(_) => {
                return Err(invalid(format!(
                    "{at}: toolResult blocks belong in user messages"
                )));
            }
            other if matches!(other.kind(), "cachePoint" | "reasoningContent") => {}
            other => return Err(unsupported_block(at, other.kind())),
        }
    }
    let content = if !texts.is_empty() {
        Some(text_content(texts))
    } else if calls.is_empty() {
        Some(MessageContent::Text(String::new()))
    } else {
        None
    };
    let mut msg = chat_message("assistant", content);
    if !calls.is_empty() {
        msg.extra.insert("tool_calls".into(), Value::Array(calls));
    }
    Ok(msg)
}

/// `toolConfig` → `tools` and `tool_choice`.
fn tools_to_chat(tool_config: &Value, extra: &mut Map<String, Value>) -> Result<(), BedrockError> {
    let mut tools = Vec::new();
    for (j, tool) in tool_config
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(spec) = tool.get("toolSpec") {
            let name = str_field(spec, "name")
                .map_err(|e| invalid(format!("toolConfig.tools[{j}].toolSpec: {e}")))?;
            let parameters = spec
                .get("inputSchema")
                .and_then(|s| s.get("json"))
                .cloned()
                .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
            let mut function = json!({ "name": name, "parameters": parameters });
            if let Some(d) = spec.get("description") {
                function["description"] = d.clone();
            }
            tools.push(json!({ "type": "function", "function": function }));
        } else if tool.get("cachePoint").is_none() {
            return Err(invalid(format!(
                "toolConfig.tools[{j}]: only toolSpec tools are supported"
            )));
        }
    }
    if !tools.is_empty() {
        extra.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = tool_config.get("toolChoice") {
        let mapped = if choice.get("auto").is_some() {
            json!("auto")
        } else if choice.get("any").is_some() {
            json!("required")
        } else if let Some(name) = choice.get("tool").and_then(|t| t.get("name")) {
            json!({ "type": "function", "function": { "name": name } })
        } else {
            return Err(invalid(
                "toolConfig.toolChoice must be {\"auto\": {}}, {\"any\": {}} or {\"tool\": {\"name\"}}",
            ));
        };
        extra.insert("tool_choice".into(), mapped);
    }
    Ok(())
}

/// The texts of OpenAI content (a string, or `text` parts); other parts are refused.
fn content_texts(at: &str, content: &Option<MessageContent>) -> Result<Vec<String>, BedrockError> {
    match content {
        None => Ok(Vec::new()),
        Some(MessageContent::Text(t)) => Ok(vec![t.clone()]),
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => p
                    .get("text")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| invalid(format!("{at}: a text part has no text"))),
                other => Err(invalid(format!(
                    "{at}: content part type {} is not supported",
                    other.unwrap_or("unknown")
                ))),
            })
            .collect(),
    }
}

/// Appends a turn, merging it into the previous one when the role repeats.
fn push_turn(messages: &mut Vec<Message>, role: &str, content: Vec<ContentBlock>) {
    if content.is_empty() {
        return;
    }
    match messages.last_mut() {
        Some(last) if last.role == role => last.content.extend(content),
        _ => messages.push(Message {
            role: role.to_string(),
            content,
        }),
    }
}

/// A chat request as a Converse request (for the `bedrock` upstream kind), and whether it streams.
/// The model goes in the URL, not the body.
pub fn chat_to_converse(req: &ChatRequest) -> Result<(ConverseRequest, bool), BedrockError> {
    if req.messages.is_empty() {
        return Err(invalid("messages must not be empty"));
    }
    if req.extra.get("n").and_then(Value::as_u64).unwrap_or(1) > 1 {
        return Err(invalid("n > 1 is not supported by Converse"));
    }
    let mut turns = Turns::default();
    for (i, m) in req.messages.iter().enumerate() {
        turns.add(&format!("messages[{i}]"), m)?;
    }
    let Turns { system, messages } = turns;
    if messages.is_empty() {
        return Err(invalid("messages must hold at least one user message"));
    }
    let cfg = inference_config(req);
    let mut converse = ConverseRequest {
        messages,
        system: (!system.is_empty()).then_some(system),
        inference_config: (cfg != InferenceConfig::default()).then_some(cfg),
        tool_config: tools_to_converse(req)?,
        additional_model_request_fields: None,
        extra: Map::new(),
    };
    super::carry::carry_to_converse(&mut converse, req);
    Ok((converse, req.is_stream()))
}

/// The chat messages sorted into Converse's system blocks and its alternating turns.
#[derive(Default)]
struct Turns {
    system: Vec<SystemContentBlock>,
    messages: Vec<Message>,
}

impl Turns {
    /// Adds the chat message `m` (at `at`, for errors): system and developer messages to the
    /// system blocks, the others as a turn of their role (tool results as a user turn).
    fn add(&mut self, at: &str, m: &ChatMessage) -> Result<(), BedrockError> {
        match m.role.as_str() {
            "system" | "developer" => {
                let texts = content_texts(at, &m.content)?;
                self.system
                    .extend(texts.into_iter().map(SystemContentBlock::text));
            }
            "user" => {
                let blocks = content_texts(at, &m.content)?
                    .into_iter()
                    .map(ContentBlock::Text)
                    .collect();
                push_turn(&mut self.messages, "user", blocks);
            }
            "assistant" => {
                let blocks = assistant_blocks(at, m)?;
                push_turn(&mut self.messages, "assistant", blocks);
            }
            "tool" => {
                let result = tool_result(at, m)?;
                push_turn(
                    &mut self.messages,
                    "user",
                    vec![ContentBlock::ToolResult(result)],
                );
            }
            other => {
                return Err(invalid(format!("{at}: role `{other}` is not supported")));
            }
        }
        Ok(())
    }
}

/// An assistant message's blocks: its non-empty texts, then its tool calls as `toolUse`.
fn assistant_blocks(at: &str, m: &ChatMessage) -> Result<Vec<ContentBlock>, BedrockError> {
    let mut blocks: Vec<ContentBlock> = content_texts(at, &m.content)?
        .into_iter()
        .filter(|t| !t.is_empty())
        .map(ContentBlock::Text)
        .collect();
    for call in m
        .extra
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        blocks.push(ContentBlock::ToolUse(call_to_tool_use(at, call)?));
    }
    Ok(blocks)
}

/// A tool message as the inner object of a `toolResult` block.
fn tool_result(at: &str, m: &ChatMessage) -> Result<Value, BedrockError> {
    let id = m
        .extra
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{at}: a tool message needs tool_call_id")))?;
    let content: Vec<Value> = content_texts(at, &m.content)?
        .into_iter()
        .map(|t| json!({ "text": t }))
        .collect();
    Ok(json!({ "toolUseId": id, "content": content }))
}

/// The output cap, `temperature`, `top_p` and `stop` as Converse's inference configuration.
fn inference_config(req: &ChatRequest) -> InferenceConfig {
    let stop_sequences = match req.extra.get("stop") {
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Array(a)) => Some(
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect(),
        ),
        _ => None,
    };
    InferenceConfig {
        max_tokens: req.output_cap(),
        temperature: req.extra.get("temperature").and_then(Value::as_f64),
        top_p: req.extra.get("top_p").and_then(Value::as_f64),
        stop_sequences,
    }
}

/// An OpenAI tool call → the inner object of a `toolUse` block.
fn call_to_tool_use(at: &str, call: &Value) -> Result<Value, BedrockError> {
    let id = str_field(call, "id").map_err(|e| invalid(format!("{at}: tool call {e}")))?;
    let function = call.get("function").cloned().unwrap_or(Value::Null);
    let name = str_field(&function, "name").map_err(|e| invalid(format!("{at}: tool call {e}")))?;
    let arguments = function
        .get("arguments")
        .and_then(Value::as_str)
        .unwrap_or("{}");
    let input: Value = if arguments.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(arguments).map_err(|e| {
            invalid(format!(
                "{at}: the arguments of tool call {id} are not JSON: {e}"
            ))
        })?
    };
    Ok(json!({ "toolUseId": id, "name": name, "input": input }))
}

/// `tools` and `tool_choice` → `toolConfig`.
fn tools_to_converse(req: &ChatRequest) -> Result<Option<Value>, BedrockError> {
    let Some(tools) = req.extra.get("tools").and_then(Value::as_array) else {
        return Ok(None);
    };
    let mut specs = Vec::new();
    for (j, tool) in tools.iter().enumerate() {
        let function = tool
            .get("function")
            .filter(|_| tool.get("type").and_then(Value::as_str) == Some("function"))
            .ok_or_else(|| invalid(format!("tools[{j}]: only function tools are supported")))?;
        let name = str_field(function, "name").map_err(|e| invalid(format!("tools[{j}]: {e}")))?;
        let schema = function
            .get("parameters")
            .cloned()
            .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
        let mut spec = json!({ "name": name, "inputSchema": { "json": schema } });
        if let Some(d) = function.get("description") {
            spec["description"] = d.clone();
        }
        specs.push(json!({ "toolSpec": spec }));
    }
    if specs.is_empty() {
        return Ok(None);
    }
    let mut config = json!({ "tools": specs });
    match req.extra.get("tool_choice") {
        Some(Value::String(s)) if s == "auto" => config["toolChoice"] = json!({ "auto": {} }),
        Some(Value::String(s)) if s == "required" => config["toolChoice"] = json!({ "any": {} }),
        Some(Value::Object(o)) => {
            if let Some(name) = o.get("function").and_then(|f| f.get("name")) {
                config["toolChoice"] = json!({ "tool": { "name": name } });
            }
        }
        _ => {}
    }
    Ok(Some(config))
}
