//! Token counting shared by the gateway (quota estimates) and the simulator (reported usage).
//!
//! Real tokenizers differ per model; a gateway cannot run them all on the hot path. The estimate
//! is the usual rule of thumb, one token per four characters, plus a small per-message overhead
//! for the role and separators. The simulator reports exactly this count as `prompt_tokens`, so
//! tests can check that quota settles to what the upstream reported.
use crate::openai::{ChatMessage, MessageContent};

/// Tokens added per message for the role and the chat template's separators.
pub const PER_MESSAGE_OVERHEAD: u64 = 4;

/// Tokens in a piece of text: ceil(chars / 4).
pub fn text_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// The text of a message that counts: its string content, or each of its text parts in order
/// (`{"type":"text","text":…}`); other parts (images, audio) have none. [`prompt_tokens`] counts
/// these pieces and the `prefix` module hashes them, so both see the same text.
pub fn text_parts(m: &ChatMessage) -> impl Iterator<Item = &str> {
    let (text, parts): (Option<&str>, &[serde_json::Value]) = match &m.content {
        Some(MessageContent::Text(t)) => (Some(t.as_str()), &[]),
        Some(MessageContent::Parts(parts)) => (None, parts.as_slice()),
        None => (None, &[]),
    };
    text.into_iter().chain(
        parts
            .iter()
            .filter_map(|p| p.get("text").and_then(|t| t.as_str())),
    )
}

/// Tokens in a list of chat messages (text content and text parts; other parts count 0).
pub fn prompt_tokens(messages: &[ChatMessage]) -> u64 {
    messages
        .iter()
        .map(|m| PER_MESSAGE_OVERHEAD + text_parts(m).map(text_tokens).sum::<u64>())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_chars_a_token() {
        assert_eq!(text_tokens(""), 0);
        assert_eq!(text_tokens("abcd"), 1);
        assert_eq!(text_tokens("abcde"), 2);
        assert_eq!(text_tokens("ééééé"), 2, "characters, not bytes");
    }

    #[test]
    fn messages_add_overhead() {
        let msgs: Vec<ChatMessage> = serde_json::from_str(
            r#"[{"role":"system","content":"abcd"},{"role":"user","content":[{"type":"text","text":"abcdefgh"},{"type":"image_url","image_url":{"url":"x"}}]}]"#,
        )
        .unwrap();
        assert_eq!(prompt_tokens(&msgs), 4 + 1 + 4 + 2);
    }
}
