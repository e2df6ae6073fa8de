//! OpenAI embeddings shapes (`POST /v1/embeddings`).
//!
//! The request's `input` is one of the four forms OpenAI accepts: a string, an array of strings,
//! an array of token ids, or an array of token-id arrays. The gateway only needs to count the
//! input's tokens (to reserve quota) and to relay the request with the upstream's model name;
//! the simulator needs the items themselves (it derives each vector from an item's hash). The
//! answer's vectors are floats or, with `encoding_format: "base64"`, the little-endian `f32`
//! bytes of the vector in standard base64, as OpenAI sends them.
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::tokens::text_tokens;

/// The most items one request may embed (OpenAI's limit).
pub const MAX_ITEMS: usize = 2048;
/// The most dimensions a request may ask for.
pub const MAX_DIMENSIONS: u32 = 8192;

/// An embeddings request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: EmbeddingInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `input`: the four forms OpenAI accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

/// One item to embed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    Text(&'a str),
    Tokens(&'a [u32]),
}

impl Item<'_> {
    /// The item's tokens: the estimate for text, the count for token ids.
    pub fn tokens(&self) -> u64 {
        match self {
            Item::Text(t) => text_tokens(t),
            Item::Tokens(t) => t.len() as u64,
        }
    }
}

/// A request that cannot be served, with the parameter it names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidEmbeddings {
    pub message: String,
    pub param: &'static str,
}

fn invalid(param: &'static str, message: impl Into<String>) -> InvalidEmbeddings {
    InvalidEmbeddings {
        message: message.into(),
        param,
    }
}

impl EmbeddingsRequest {
    /// The items, in order (a lone string or token array is one item).
    pub fn items(&self) -> Vec<Item<'_>> {
        match &self.input {
            EmbeddingInput::Text(t) => vec![Item::Text(t)],
            EmbeddingInput::Texts(ts) => ts.iter().map(|t| Item::Text(t)).collect(),
            EmbeddingInput::Tokens(t) => vec![Item::Tokens(t)],
            EmbeddingInput::TokenLists(ls) => ls.iter().map(|t| Item::Tokens(t)).collect(),
        }
    }

    /// The input's tokens (what the request is billed and reserved for).
    pub fn input_tokens(&self) -> u64 {
        self.items().iter().map(Item::tokens).sum()
    }

    /// Whether the answer's vectors are base64 (`encoding_format: "base64"`).
    pub fn wants_base64(&self) -> bool {
        self.encoding_format.as_deref() == Some("base64")
    }

    /// Check what OpenAI checks: a non-empty input of non-empty items, at most [`MAX_ITEMS`],
    /// a known `encoding_format`, and `dimensions` of at least 1.
    pub fn validate(&self) -> Result<(), InvalidEmbeddings> {
        let items = self.items();
        if items.is_empty() {
            return Err(invalid("input", "`input` must not be empty."));
        }
        if items.len() > MAX_ITEMS {
            return Err(invalid(
                "input",
                format!(
                    "`input` has {} items; at most {MAX_ITEMS} are allowed.",
                    items.len()
                ),
            ));
        }
        let empty = |i: &Item<'_>| match i {
            Item::Text(t) => t.is_empty(),
            Item::Tokens(t) => t.is_empty(),
        };
        if let Some(i) = items.iter().position(empty) {
            return Err(invalid("input", format!("`input[{i}]` is empty.")));
        }
        match self.encoding_format.as_deref() {
            None | Some("float") | Some("base64") => {}
            Some(other) => {
                return Err(invalid(
                    "encoding_format",
                    format!(
                        "`encoding_format` is {:?}; it must be \"float\" or \"base64\".",
                        other.chars().take(32).collect::<String>()
                    ),
                ));
            }
        }
        match self.dimensions {
            Some(0) => Err(invalid("dimensions", "`dimensions` must be at least 1.")),
            Some(d) if d > MAX_DIMENSIONS => Err(invalid(
                "dimensions",
                format!("`dimensions` is {d}; at most {MAX_DIMENSIONS} are allowed."),
            )),
            _ => Ok(()),
        }
    }

    /// This request as sent to an upstream that knows the model as `model`.
    pub fn for_upstream(&self, model: &str) -> Result<Vec<u8>, serde_json::Error> {
        let mut v = serde_json::to_value(self)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("model".into(), Value::String(model.to_string()));
        }
        serde_json::to_vec(&v)
    }
}

/// The answer: `{"object": "list", "data": [...], "model", "usage"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsResponse {
    pub object: String,
    pub data: Vec<Embedding>,
    pub model: String,
    pub usage: EmbeddingsUsage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    pub object: String,
    pub index: u32,
    pub embedding: EmbeddingVector,
}

/// A vector as floats, or as base64 of its little-endian `f32` bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Floats(Vec<f32>),
    Base64(String),
}

impl EmbeddingVector {
    /// `v` in the encoding the request asked for.
    pub fn encode(v: Vec<f32>, base64: bool) -> EmbeddingVector {
        if !base64 {
            return EmbeddingVector::Floats(v);
        }
        let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
        EmbeddingVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    /// The floats, decoding base64 (`None` for base64 that is not whole `f32`s).
    pub fn floats(&self) -> Option<Vec<f32>> {
        match self {
            EmbeddingVector::Floats(v) => Some(v.clone()),
            EmbeddingVector::Base64(s) => {
                let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
                if bytes.len() % 4 != 0 {
                    return None;
                }
                Some(
                    bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                )
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EmbeddingsUsage {
    pub prompt_tokens: u64,
    pub total_tokens: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: &str) -> EmbeddingsRequest {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn the_four_input_forms_parse_and_count() {
        let r = req(r#"{"model":"m","input":"abcdefgh"}"#);
        assert_eq!((r.items().len(), r.input_tokens()), (1, 2));
        let r = req(r#"{"model":"m","input":["abcd","abcde"]}"#);
        assert_eq!((r.items().len(), r.input_tokens()), (2, 3));
        let r = req(r#"{"model":"m","input":[1,2,3]}"#);
        assert_eq!((r.items().len(), r.input_tokens()), (1, 3));
        let r = req(r#"{"model":"m","input":[[1,2],[3]]}"#);
        assert_eq!((r.items().len(), r.input_tokens()), (2, 3));
        assert!(
            serde_json::from_str::<EmbeddingsRequest>(r#"{"model":"m","input":[1,"a"]}"#).is_err()
        );
        assert!(serde_json::from_str::<EmbeddingsRequest>(r#"{"model":"m"}"#).is_err());
    }

    #[test]
    fn validation_names_the_parameter() {
        let p = |b: &str| req(b).validate().map_err(|e| e.param);
        assert_eq!(p(r#"{"model":"m","input":[]}"#), Err("input"));
        assert_eq!(p(r#"{"model":"m","input":["a",""]}"#), Err("input"));
        assert_eq!(
            p(r#"{"model":"m","input":"a","encoding_format":"hex"}"#),
            Err("encoding_format")
        );
        assert_eq!(
            p(r#"{"model":"m","input":"a","dimensions":0}"#),
            Err("dimensions")
        );
        assert_eq!(
            p(r#"{"model":"m","input":"a","encoding_format":"base64","dimensions":8}"#),
            Ok(())
        );
    }

    #[test]
    fn base64_is_little_endian_f32() {
        let v = vec![1.0f32, -0.5, 0.25];
        let e = EmbeddingVector::encode(v.clone(), true);
        let EmbeddingVector::Base64(s) = &e else {
            panic!("not base64")
        };
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        assert_eq!(&bytes[..4], &1.0f32.to_le_bytes());
        assert_eq!(e.floats(), Some(v));
    }

    #[test]
    fn the_upstream_body_names_the_upstream_model_and_keeps_the_rest() {
        let r = req(r#"{"model":"us.m","input":["a"],"dimensions":4,"x":1}"#);
        let v: Value = serde_json::from_slice(&r.for_upstream("m-up").unwrap()).unwrap();
        assert_eq!(v["model"], "m-up");
        assert_eq!(v["dimensions"], 4);
        assert_eq!(v["x"], 1);
    }
}
