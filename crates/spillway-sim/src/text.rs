//! What the simulated model writes: the words of an answer, and how a continuation resumes one.
//!
//! # Tokens
//!
//! Every output token is `" " + word` with a three-letter word from `VOCAB`, so a token is
//! exactly four characters, one token by [`spillway_proto::tokens::text_tokens`]: the estimate
//! of the text equals the reported count, and a text's token count is its whitespace-split word
//! count.
//!
//! # Which words
//!
//! * Without a text seed ([`crate::SimConfig::text_seed`] `None`) token `i` is `VOCAB[i % 16]`
//!   whatever the prompt ([`token_text`], [`completion_text`]), the text the simulator always
//!   had.
//! * With a text seed `s` the words depend on the prompt, as a real model's do: token `i` of the
//!   answer to a prompt with fingerprint `p` ([`prompt_fingerprint`]) is
//!   `VOCAB[h(s, p, i) % 16]` ([`seeded_text`]). The text seed stands for the model's weights:
//!   every region of a model is given the same one, so any region gives the same answer to the
//!   same prompt (unlike [`crate::SimConfig::seed`], which samples faults per region).
//!
//! `h` and the fingerprint are written out here (SplitMix64's finalizer, FNV-1a 64) rather than
//! taken from `std`'s hashers, whose output may change between processes and releases: a test in
//! another crate, or another process, must compute the same text.
//!
//! # Continuations
//!
//! A request with `"continue_final_message": true` whose last message is the assistant's
//! continues that message, as vLLM does: a gateway that lost a stream part-way sends the text it
//! already relayed as that message to another region. The prefix holds `k` tokens (its word
//! count); the fingerprint is of the messages before it, and the answer is tokens `k, k+1, …`
//! of the unbroken answer, so prefix plus continuation is the unbroken text ([`Text`]).
use serde_json::Value;
use spillway_proto::{ChatMessage, ChatRequest, MessageContent};

/// The generated text is made of these words, one token each. Each is three letters, so a chunk
/// (`" " + word`) is exactly four characters, which is one token by
/// [`spillway_proto::tokens::text_tokens`]: the estimate of the text equals the reported count.
const VOCAB: [&str; 16] = [
    "the", "sea", "was", "red", "and", "all", "our", "old", "map", "got", "wet", "yet", "one",
    "sun", "new", "day",
];

fn chunk(word_ix: u64) -> String {
    let word = VOCAB[usize::try_from(word_ix % VOCAB.len() as u64).unwrap_or(0)];
    format!(" {word}")
}

/// The content chunk of output token `i` (0-based) without a text seed: `" " + VOCAB[i % 16]`.
pub fn token_text(i: u64) -> String {
    chunk(i)
}

/// The whole completion text for `n` output tokens without a text seed (the concatenation of
/// the stream's chunks).
pub fn completion_text(n: u64) -> String {
    (0..n).map(token_text).collect()
}

/// SplitMix64's output function: a bijective mix of all 64 bits into all 64 bits.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Token `i` of the answer to the prompt `fingerprint` under `text_seed`: the word index is
/// `splitmix64(splitmix64(splitmix64(text_seed) ^ fingerprint) ^ i) % 16`.
pub fn seeded_token(text_seed: u64, fingerprint: u64, i: u64) -> String {
    chunk(splitmix64(
        splitmix64(splitmix64(text_seed) ^ fingerprint) ^ i,
    ))
}

/// Tokens `from..to` of the answer to the prompt with fingerprint `prompt_fingerprint` (see
/// [`prompt_fingerprint`]) by a model with `text_seed`, concatenated: what a response that
/// starts at token `from` (0, or a continuation's prefix length) and produces `to - from` tokens
/// contains. Empty when `to <= from`.
pub fn seeded_text(text_seed: u64, prompt_fingerprint: u64, from: u64, to: u64) -> String {
    (from..to)
        .map(|i| seeded_token(text_seed, prompt_fingerprint, i))
        .collect()
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 over a conversation, fed one message at a time.
struct Fnv(u64);

impl Fnv {
    fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(FNV_PRIME);
        }
    }

    /// One message: its role, 0xFF, its text (parts concatenated), 0xFE. Neither separator
    /// byte occurs in UTF-8, so two different conversations never feed the same bytes.
    fn message<'a>(&mut self, role: &str, text: impl Iterator<Item = &'a str>) {
        self.bytes(role.as_bytes());
        self.bytes(&[0xFF]);
        for t in text {
            self.bytes(t.as_bytes());
        }
        self.bytes(&[0xFE]);
    }
}

/// The text parts of an array of content parts (`{"type":"text","text":…}`; others have none).
fn text_parts(parts: &[Value]) -> impl Iterator<Item = &str> {
    parts
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
}

/// The fingerprint of a prompt given as the JSON array of a request's `messages`: FNV-1a 64 over
/// each message's `role` and text, in order. The text is the `content` string, or the
/// concatenation of its text parts (so `"hi"` and `[{"type":"text","text":"hi"}]` are the same
/// prompt); other parts, tool calls and other fields are not part of it. Anything that is not an
/// array is the empty conversation.
///
/// For a continuation pass the messages *before* its final assistant message: the messages of
/// the request whose answer it continues.
pub fn prompt_fingerprint(messages: &Value) -> u64 {
    let mut h = Fnv(FNV_OFFSET);
    for m in messages.as_array().map_or(&[][..], Vec::as_slice) {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        match m.get("content") {
            Some(Value::String(s)) => h.message(role, std::iter::once(s.as_str())),
            Some(Value::Array(parts)) => h.message(role, text_parts(parts)),
            _ => h.message(role, std::iter::empty()),
        }
    }
    h.0
}

/// [`prompt_fingerprint`] of parsed messages (the same value for the same conversation).
pub fn messages_fingerprint(messages: &[ChatMessage]) -> u64 {
    let mut h = Fnv(FNV_OFFSET);
    for m in messages {
        match &m.content {
            Some(MessageContent::Text(s)) => h.message(&m.role, std::iter::once(s.as_str())),
            Some(MessageContent::Parts(parts)) => h.message(&m.role, text_parts(parts)),
            None => h.message(&m.role, std::iter::empty()),
        }
    }
    h.0
}

/// Why a request asking to continue its final message cannot be continued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("continue_final_message needs a final assistant message with text content")]
pub(crate) struct NotContinuable;

/// The text one response writes: which answer, and from which of its tokens on. The default is
/// the unseeded answer from its first token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Text {
    /// `(text_seed, prompt fingerprint)`, or `None` for the unseeded VOCAB cycle.
    seeded: Option<(u64, u64)>,
    /// A continuation: the tokens of the answer already written (its prefix's word count).
    pub(crate) continued_from: Option<u64>,
}

impl Text {
    /// The text `req` is answered with by a model with `text_seed`, or why the continuation it
    /// asks for is impossible (`continue_final_message` without a final assistant message with
    /// text content).
    pub(crate) fn for_request(
        text_seed: Option<u64>,
        req: &ChatRequest,
    ) -> Result<Text, NotContinuable> {
        let continues = req.extra.get("continue_final_message") == Some(&Value::Bool(true));
        let (prompt, continued_from) = if continues {
            let (last, before) = req.messages.split_last().ok_or(NotContinuable)?;
            let prefix_words = match (&last.role[..], &last.content) {
                ("assistant", Some(MessageContent::Text(s))) => words(std::iter::once(s.as_str())),
                ("assistant", Some(MessageContent::Parts(p))) => words(text_parts(p)),
                _ => return Err(NotContinuable),
            };
            (before, Some(prefix_words))
        } else {
            (&req.messages[..], None)
        };
        Ok(Text {
            seeded: text_seed.map(|s| (s, messages_fingerprint(prompt))),
            continued_from,
        })
    }

    /// The content of this response's token `i`: token `i` of the answer, or `k + i` for a
    /// continuation of `k` tokens.
    pub(crate) fn token(&self, i: u64) -> String {
        let at = self.continued_from.unwrap_or(0).saturating_add(i);
        match self.seeded {
            Some((seed, fp)) => seeded_token(seed, fp, at),
            None => token_text(at),
        }
    }

    /// The content of this response's first `n` tokens.
    pub(crate) fn first(&self, n: u64) -> String {
        (0..n).map(|i| self.token(i)).collect()
    }
}

/// Words in a text given in pieces (concatenated first): a sim token is one word.
fn words<'a>(pieces: impl Iterator<Item = &'a str>) -> u64 {
    let text: String = pieces.collect();
    text.split_whitespace().count() as u64
}

#[cfg(test)]
mod tests;
