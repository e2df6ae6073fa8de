//! The request a continuation sends (mid-stream failover: the exchange's `resume` module
//! decides when and where): the original request plus the text the client already has, as a
//! final assistant message the upstream continues, with the output cap reduced to what is left.
//!
//! Two forms, per deployment (`continuation` in the configuration):
//!
//! * `continue_final_message` (vLLM, the simulator): the assistant message, plus
//!   `continue_final_message: true` and `add_generation_prompt: false`, so the chat template
//!   leaves the message open instead of starting a new turn.
//! * `assistant_prefill` (Anthropic models, Converse on Bedrock): a trailing assistant message
//!   is continued as it is. Anthropic refuses a prefill that ends in whitespace; the text is
//!   then not sent, and the stream ends with its error event as without mid-stream failover.
use serde_json::Value;
use spillway_exchange::Continuation;
use spillway_proto::{ChatMessage, ChatRequest, MessageContent};

use crate::config::raw::ContinuationForm;

/// `req` continued after `c.text`, in `form`.
pub fn continued(
    req: &ChatRequest,
    c: &Continuation,
    form: ContinuationForm,
) -> Result<ChatRequest, String> {
    if form == ContinuationForm::AssistantPrefill && c.text.ends_with(char::is_whitespace) {
        return Err("an assistant prefill cannot end in whitespace".into());
    }
    let mut next = req.clone();
    next.messages.push(ChatMessage {
        role: "assistant".into(),
        content: Some(MessageContent::Text(c.text.clone())),
        extra: serde_json::Map::new(),
    });
    if let Some(left) = c.max_tokens {
        // The cap the client set, in the field it set it in.
        if next.max_completion_tokens.is_some() {
            next.max_completion_tokens = Some(left);
        }
        if next.max_tokens.is_some() {
            next.max_tokens = Some(left);
        }
    }
    if form == ContinuationForm::ContinueFinalMessage {
        next.extra
            .insert("continue_final_message".into(), Value::Bool(true));
        next.extra
            .insert("add_generation_prompt".into(), Value::Bool(false));
    }
    Ok(next)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    fn cont(text: &str, left: Option<u64>) -> Continuation {
        Continuation {
            text: text.into(),
            output_tokens: 3,
            max_tokens: left,
        }
    }

    #[test]
    fn continue_final_message_appends_the_text_and_the_vllm_flags() {
        let req = request(
            json!({"model": "m", "stream": true, "max_completion_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}]}),
        );
        let next = continued(
            &req,
            &cont(" the sea", Some(7)),
            ContinuationForm::ContinueFinalMessage,
        )
        .unwrap();
        let v = serde_json::to_value(&next).unwrap();
        assert_eq!(
            v["messages"][1],
            json!({"role": "assistant", "content": " the sea"})
        );
        assert_eq!(v["max_completion_tokens"], 7);
        assert!(
            v.get("max_tokens").is_none(),
            "no cap field the client did not set"
        );
        assert_eq!(v["continue_final_message"], true);
        assert_eq!(v["add_generation_prompt"], false);
        assert_eq!(req.messages.len(), 1, "the original is unchanged");
    }

    #[test]
    fn a_prefill_has_no_vllm_flags_and_refuses_trailing_whitespace() {
        let req = request(json!({"model": "m", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}]}));
        let next = continued(
            &req,
            &cont(" the", Some(9)),
            ContinuationForm::AssistantPrefill,
        )
        .unwrap();
        let v = serde_json::to_value(&next).unwrap();
        assert_eq!(v["max_tokens"], 9);
        assert!(v.get("continue_final_message").is_none());
        let refused = continued(
            &req,
            &cont(" the ", Some(9)),
            ContinuationForm::AssistantPrefill,
        );
        assert!(refused.is_err());
        let uncapped = request(json!({"model": "m", "messages": []}));
        let next = continued(
            &uncapped,
            &cont(" a", None),
            ContinuationForm::AssistantPrefill,
        )
        .unwrap();
        assert_eq!((next.max_tokens, next.max_completion_tokens), (None, None));
    }
}
