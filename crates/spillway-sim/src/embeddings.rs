//! `POST /v1/embeddings` (its handler is in `handlers`): deterministic vectors on the same
//! capacity model as chat.
//!
//! An embeddings request is a prefill with no decode: it takes a slot of the engine (or waits
//! in its queue, or is refused with 429 when the queue is full) for the time its input tokens
//! take to prefill, after the same injected RTT and faults as a chat request (outage, error
//! rate, hang, reset, throttle; the decode faults do not apply). It is recorded in the served
//! list like a chat request (model, input tokens as `prompt_tokens`, no completion tokens), so
//! a test can check where it was served.
//!
//! Each item's vector is derived from the item alone (an FNV-1a hash of its text or token ids
//! seeds a SplitMix64 sequence), normalised to unit length: the same input gives the same
//! vector in every region. `dimensions` sets the length (default [`DEFAULT_DIMENSIONS`]);
//! `usage.prompt_tokens` is [`EmbeddingsRequest::input_tokens`], the gateway's own estimate.
use spillway_proto::embeddings::{
    Embedding, EmbeddingVector, EmbeddingsRequest, EmbeddingsResponse, EmbeddingsUsage, Item,
};

/// The length of a vector when the request does not set `dimensions`.
pub const DEFAULT_DIMENSIONS: u32 = 256;

/// The answer to `req`, whose input has `prompt` tokens.
pub(crate) fn answer(req: &EmbeddingsRequest, prompt: u64) -> EmbeddingsResponse {
    let dims = req.dimensions.unwrap_or(DEFAULT_DIMENSIONS) as usize;
    let data = req
        .items()
        .iter()
        .enumerate()
        .map(|(i, item)| Embedding {
            object: "embedding".into(),
            index: i as u32,
            embedding: EmbeddingVector::encode(vector(item, dims), req.wants_base64()),
        })
        .collect();
    EmbeddingsResponse {
        object: "list".into(),
        data,
        model: req.model.clone(),
        usage: EmbeddingsUsage {
            prompt_tokens: prompt,
            total_tokens: prompt,
        },
    }
}

/// The unit vector of `item`, `dims` long.
pub fn vector(item: &Item<'_>, dims: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    match item {
        Item::Text(t) => t.bytes().for_each(&mut eat),
        Item::Tokens(ts) => {
            eat(0xff);
            ts.iter().flat_map(|t| t.to_le_bytes()).for_each(&mut eat);
        }
    }
    let mut state = h;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let raw: Vec<f64> = (0..dims)
        .map(|_| (next() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    raw.iter().map(|x| (x / norm) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_unit_and_input_dependent() {
        let a = vector(&Item::Text("hello"), 64);
        assert_eq!(a, vector(&Item::Text("hello"), 64));
        assert_ne!(a, vector(&Item::Text("hellp"), 64));
        assert_ne!(a, vector(&Item::Tokens(&[1, 2]), 64));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        assert_eq!(vector(&Item::Tokens(&[7]), 3).len(), 3);
    }
}
