//! What an upstream delivers and the exchange hands on to the client: [`Piece`], the canonical
//! model of a response (proto's OpenAI-shaped chunks and completions, which every client API is
//! rendered from), plus the one case that is relayed opaque: a native InvokeModel stream frame
//! from a Bedrock upstream to an InvokeModel client.
use bytes::Bytes;
use spillway_proto::{ChatChunk, ChatCompletion, Usage};

/// One unit of an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// One streamed chunk, with the upstream's own JSON when it was OpenAI-shaped (relayed
    /// unchanged to OpenAI clients).
    Chunk {
        chunk: Box<ChatChunk>,
        raw: Option<String>,
    },
    /// A native InvokeModelWithResponseStream frame, relayed unchanged, with the usage its
    /// `amazon-bedrock-invocationMetrics` carry, if any.
    Frame { bytes: Bytes, usage: Option<Usage> },
    /// A whole non-streamed answer: the upstream's body in the canonical shape, parsed when it
    /// could be, and the usage it reported (in the body or in headers).
    Answer {
        raw: Bytes,
        parsed: Option<Box<ChatCompletion>>,
        usage: Option<Usage>,
    },
}

impl Piece {
    /// Output tokens this piece adds to the answer as it streams: one per chunk that carries
    /// text, one per native frame (the same estimate the quota settles on when the upstream
    /// reports no usage), none for a whole answer (its usage says).
    pub fn output_tokens(&self) -> u64 {
        match self {
            Piece::Chunk { chunk, .. } => u64::from(
                chunk
                    .choices
                    .iter()
                    .any(|c| c.delta.content.as_deref().is_some_and(|t| !t.is_empty())),
            ),
            Piece::Frame { .. } => 1,
            Piece::Answer { .. } => 0,
        }
    }

    /// A chunk that carries nothing of the answer yet: no text, no tool call or other delta
    /// field, no finish reason, no usage (the role chunk most upstreams send first). A stream is
    /// not committed by such chunks: they are held, so that an attempt that fails after them
    /// can still fail over.
    pub fn is_preamble(&self) -> bool {
        let Piece::Chunk { chunk, .. } = self else {
            return false;
        };
        let nothing = |m: &serde_json::Map<String, serde_json::Value>| {
            m.values().all(serde_json::Value::is_null)
        };
        chunk.usage.is_none()
            && chunk.choices.iter().all(|c| {
                c.finish_reason.is_none()
                    && c.delta.content.as_deref().is_none_or(str::is_empty)
                    && nothing(&c.delta.extra)
                    && nothing(&c.extra)
            })
    }

    /// The usage the upstream reported in this piece, if any.
    pub fn usage(&self) -> Option<Usage> {
        match self {
            Piece::Chunk { chunk, .. } => chunk.usage,
            Piece::Frame { usage, .. } | Piece::Answer { usage, .. } => *usage,
        }
    }
}
