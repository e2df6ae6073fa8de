//! Prefix-block hashes of a chat prompt: the ids under which an engine with prefix caching
//! keeps a prompt's KV cache, computed the same way by the gateway (to route a conversation to
//! the region that holds its prefix) and by the simulator (to model that cache).
//!
//! # Why blocks, and why a chain
//!
//! Engines with prefix caching (vLLM's automatic prefix caching, SGLang's radix cache) keep the
//! attention keys and values of a prompt in fixed-size blocks of tokens. The KV of block `k`
//! depends on every token before it, not only on its own, so a block can be reused only by a
//! prompt that begins with the same tokens *up to and including* that block: a new request
//! reuses the longest leading run of its blocks that is still cached and computes the rest.
//! An id must therefore name a whole prefix. Chaining does that in constant work per block:
//!
//! ```text
//! id(0) = xxh3_64(le_bytes(0)        ‖ utf8(block 0))
//! id(k) = xxh3_64(le_bytes(id(k-1))  ‖ utf8(block k))
//! ```
//!
//! Two prompts share `id(k)` exactly when they share blocks `0..=k` (up to a 64-bit collision);
//! a change in block `k` changes `id(k)` and every id after it, and none before. Looking up the
//! cached run is then one set-membership test per block, in order, stopping at the first miss.
//!
//! # The text that is cut into blocks
//!
//! The gateway has no tokenizer (see [`crate::tokens`]): a block is [`BLOCK_TOKENS`] tokens
//! under the same four-characters-a-token rule, [`BLOCK_CHARS`] *characters* (not bytes, so a
//! prompt in a script of multi-byte characters gets the same number of blocks as its token
//! estimate says). Real tokenizers cut elsewhere; what matters is that every Spillway component
//! cuts the same way, so the same conversation maps to the same ids everywhere.
//!
//! The canonical text of a prompt is, for each message in order: its role, `\n`, its text
//! (string content, or its text parts one after the other, exactly the pieces
//! [`crate::tokens::prompt_tokens`] counts: [`crate::tokens::text_parts`]), `\n`. The role is
//! part of it because the same words said by another role are another prompt to the model's
//! chat template. Other content (images, tool-call fields) is not, as it does not count as
//! tokens either.
//!
//! Only full blocks get an id: a partial last block is never cached (vLLM caches full blocks
//! only, since a partial one changes as the conversation grows).
//!
//! # Why xxh3
//!
//! The hash runs on every request's whole prompt on the gateway's hot path, so it must be fast;
//! xxh3's output is fixed by its specification, so every process, platform and version computes
//! the same ids. It is not a cryptographic hash: a client that crafts a collision only changes
//! where its own request is routed or what the simulator counts as cached, never the answer.
//!
//! [`BlockHasher`] takes the text in pieces (a block may span pieces) and keeps no copy of it:
//! the prompt is never joined into one string to be hashed.
use xxhash_rust::xxh3::Xxh3Default;

use crate::openai::ChatMessage;
use crate::tokens::text_parts;

/// Tokens in one prefix block (vLLM's default KV block is 16 tokens; Mooncake traces and
/// cache-aware routers use 512-token blocks, a granularity at which a routing decision is worth
/// making).
pub const BLOCK_TOKENS: u64 = 512;

/// Characters in one prefix block: [`BLOCK_TOKENS`] at four characters a token.
pub const BLOCK_CHARS: usize = 2048;

/// The id of a prefix block: it names the block and every block before it (see the module
/// docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockHash(pub u64);

/// The parent id of block 0.
const ROOT: BlockHash = BlockHash(0);

/// Cuts a text, given in pieces, into blocks of [`BLOCK_CHARS`] characters and hashes each full
/// block into the chain (see the module docs).
#[derive(Clone)]
pub struct BlockHasher {
    /// The current block's hash state: its parent's id (the last full block's, or [`ROOT`]),
    /// then its bytes so far.
    state: Xxh3Default,
    /// Characters of the current block so far (less than [`BLOCK_CHARS`]).
    chars: usize,
    blocks: Vec<BlockHash>,
}

impl Default for BlockHasher {
    fn default() -> Self {
        BlockHasher::new()
    }
}

impl std::fmt::Debug for BlockHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockHasher")
            .field("blocks", &self.blocks)
            .field("partial_chars", &self.chars)
            .finish()
    }
}

impl BlockHasher {
    pub fn new() -> Self {
        let mut h = BlockHasher {
            state: Xxh3Default::new(),
            chars: 0,
            blocks: Vec::new(),
        };
        h.state.update(&ROOT.0.to_le_bytes());
        h
    }

    /// Appends `text` to the text being cut into blocks.
    pub fn update(&mut self, mut text: &str) {
        while !text.is_empty() {
            let room = BLOCK_CHARS - self.chars;
            // The byte index after `room` characters, or the end of the text if it is shorter.
            let mut taken = 0;
            let mut split = text.len();
            for (i, _) in text.char_indices() {
                if taken == room {
                    split = i;
                    break;
                }
                taken += 1;
            }
            let (head, rest) = text.split_at(split);
            self.state.update(head.as_bytes());
            self.chars += taken;
            if self.chars == BLOCK_CHARS {
                self.end_block();
            }
            text = rest;
        }
    }

    /// The current block is full: its id joins the chain and a new block starts.
    fn end_block(&mut self) {
        let id = BlockHash(self.state.digest());
        self.blocks.push(id);
        self.chars = 0;
        self.state.reset();
        self.state.update(&id.0.to_le_bytes());
    }

    /// The ids of the full blocks so far.
    pub fn blocks(&self) -> &[BlockHash] {
        &self.blocks
    }

    /// The ids of the full blocks; a partial last block has none.
    pub fn finish(self) -> Vec<BlockHash> {
        self.blocks
    }
}

/// The pieces of a prompt's canonical text, in order (see the module docs); joined, they are
/// [`canonical_text`].
pub fn canonical_pieces(messages: &[ChatMessage]) -> impl Iterator<Item = &str> {
    messages.iter().flat_map(|m| {
        std::iter::once(m.role.as_str())
            .chain(std::iter::once("\n"))
            .chain(text_parts(m))
            .chain(std::iter::once("\n"))
    })
}

/// A prompt's canonical text as one string (for tests and diagnostics; [`block_hashes`] does
/// not build it).
pub fn canonical_text(messages: &[ChatMessage]) -> String {
    canonical_pieces(messages).collect()
}

/// The prefix-block ids of a chat prompt: one per full [`BLOCK_CHARS`] characters of its
/// canonical text.
pub fn block_hashes(messages: &[ChatMessage]) -> Vec<BlockHash> {
    let mut h = BlockHasher::new();
    for piece in canonical_pieces(messages) {
        h.update(piece);
    }
    h.finish()
}

/// The prefix-block ids of a text that is already canonical.
pub fn text_block_hashes(text: &str) -> Vec<BlockHash> {
    let mut h = BlockHasher::new();
    h.update(text);
    h.finish()
}

#[cfg(test)]
mod tests;
