//! Byte-level mutations of corpus entries, driven by a seeded RNG so that a run is repeatable.
//!
//! Each new input is one to four stacked mutations of either a corpus entry or the previous
//! input (a random walk that gets further from the seeds than single mutations would; it goes
//! back to a seed every so often). The mutations are the classic ones of coverage-blind
//! fuzzers: bit flips, "interesting" byte values, random inserts, range deletes and copies,
//! truncation, splicing with another corpus entry, and tokens from a per-target dictionary
//! (field names, keywords) and a generic one (JSON punctuation, extreme numbers, escapes).
//! Where the corpus is JSON or TOML, most inputs get structure-aware mutations instead
//! ([`crate::json_mutate`], on the document as a JSON value), so that they get past the syntax.
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// Tokens useful to every target: structure characters, extreme numbers, escapes, line ends.
const GENERIC_TOKENS: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"true",
    b"false",
    b"-1",
    b"0",
    b"-0",
    b"1e999",
    b"-1e-999",
    b"18446744073709551615",
    b"18446744073709551616",
    b"4294967296",
    b"\\u0000",
    b"\\ud800",
    b"\\\"",
    b"\n",
    b"\r",
    b"\r\n",
    b"\t",
    b" ",
    b"=",
    b";",
    b"/",
    b"%",
    b"\xff",
    b"\xc3\xa9",
    b"\xf0\x9f\x98\x80",
    b"\x00",
];

/// Byte values that sit on boundaries.
const INTERESTING_BYTES: [u8; 10] = [0x00, 0x01, 0x7f, 0x80, 0xff, b'"', b'\\', b'\n', b'0', b'9'];

/// How many inputs of a random walk before going back to a corpus entry.
const WALK_LEN: u32 = 8;

/// Makes inputs for one target.
pub struct Mutator<'a> {
    rng: SmallRng,
    corpus: &'a [Vec<u8>],
    /// The corpus's documents (JSON objects or arrays, or TOML tables) and their format.
    docs: Vec<Value>,
    format: Format,
    dictionary: &'a [&'a [u8]],
    max_len: usize,
    current: Vec<u8>,
    walked: u32,
}

impl<'a> Mutator<'a> {
    /// A mutator over `corpus` (at least one entry for useful results; an empty corpus starts
    /// from empty inputs).
    pub fn new(
        seed: u64,
        corpus: &'a [Vec<u8>],
        dictionary: &'a [&'a [u8]],
        max_len: usize,
    ) -> Self {
        let (format, docs) = Format::detect(corpus);
        Mutator {
            rng: SmallRng::seed_from_u64(seed),
            corpus,
            docs,
            format,
            dictionary,
            max_len: max_len.max(1),
            current: Vec::new(),
            walked: WALK_LEN,
        }
    }

    /// The next input.
    pub fn next_input(&mut self) -> &[u8] {
        if self.walked >= WALK_LEN || self.rng.random_bool(0.25) {
            self.current = self.pick_entry().to_vec();
            self.walked = 0;
        }
        self.walked += 1;
        let stacked = self.rng.random_range(1..=4);
        let mut buf = std::mem::take(&mut self.current);
        // Mostly structure-aware for JSON and TOML corpora (from a document of the corpus if the
        // walk broke the syntax), byte-level otherwise and the rest of the time.
        let structured = !self.docs.is_empty() && self.rng.random_bool(0.6);
        if structured && self.format.parse(&buf).is_none() {
            let doc = &self.docs[self.rng.random_range(0..self.docs.len())];
            buf = self.format.write(doc, false).unwrap_or_default();
        }
        for _ in 0..stacked {
            if !(structured && self.mutate_structured(&mut buf)) {
                self.mutate_once(&mut buf);
            }
        }
        buf.truncate(self.max_len);
        self.current = buf;
        &self.current
    }

    /// A structure-aware mutation, if `buf` is a document of the corpus's format; whether it was.
    fn mutate_structured(&mut self, buf: &mut Vec<u8>) -> bool {
        let Some(mut value) = self.format.parse(buf) else {
            return false;
        };
        crate::json_mutate::mutate(&mut self.rng, &mut value, &self.docs, self.dictionary);
        let pretty = self.rng.random_bool(0.2);
        match self.format.write(&value, pretty) {
            Some(out) => {
                *buf = out;
                true
            }
            None => false,
        }
    }

    fn pick_entry(&mut self) -> &'a [u8] {
        if self.corpus.is_empty() {
            return &[];
        }
        let i = self.rng.random_range(0..self.corpus.len());
        &self.corpus[i]
    }

    fn token(&mut self) -> &'a [u8] {
        let use_dict = !self.dictionary.is_empty() && self.rng.random_bool(0.6);
        let list: &'a [&'a [u8]] = if use_dict {
            self.dictionary
        } else {
            GENERIC_TOKENS
        };
        list[self.rng.random_range(0..list.len())]
    }

    /// A position in `0..=len`.
    fn pos(&mut self, len: usize) -> usize {
        self.rng.random_range(0..=len)
    }

    /// A range `start..end` within `0..len`, at most `max` long (short ones are likelier).
    fn range(&mut self, len: usize, max: usize) -> (usize, usize) {
        let start = self.pos(len);
        let room = (len - start).min(max);
        let n = if room == 0 {
            0
        } else {
            self.rng
                .random_range(1..=room)
                .min(self.rng.random_range(1..=room))
        };
        (start, start + n)
    }

    fn mutate_once(&mut self, buf: &mut Vec<u8>) {
        let len = buf.len();
        match self.rng.random_range(0..10) {
            0 if len > 0 => {
                let i = self.rng.random_range(0..len);
                buf[i] ^= 1 << self.rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = self.rng.random_range(0..len);
                buf[i] = INTERESTING_BYTES[self.rng.random_range(0..INTERESTING_BYTES.len())];
            }
            2 => {
                let at = self.pos(len);
                let n = self.rng.random_range(1..=8);
                let bytes: Vec<u8> = (0..n).map(|_| self.rng.random()).collect();
                buf.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let (a, b) = self.range(len, 64);
                buf.drain(a..b);
            }
            4 if len > 0 => {
                let (a, b) = self.range(len, 64);
                let piece = buf[a..b].to_vec();
                let at = self.pos(len);
                buf.splice(at..at, piece);
            }
            5 => self.splice(buf),
            6 if len > 0 => buf.truncate(self.rng.random_range(0..len)),
            7 | 8 => {
                let token = self.token();
                let at = self.pos(len);
                buf.splice(at..at, token.iter().copied());
            }
            9 if len > 0 => {
                let token = self.token();
                let (a, b) = self.range(len, 16);
                buf.splice(a..b, token.iter().copied());
            }
            _ => {
                let token = self.token();
                buf.extend_from_slice(token);
            }
        }
    }

    /// Keeps a prefix of `buf` and appends a suffix of another corpus entry.
    fn splice(&mut self, buf: &mut Vec<u8>) {
        let other = self.pick_entry();
        let keep = self.pos(buf.len());
        let from = self.pos(other.len());
        buf.truncate(keep);
        buf.extend_from_slice(&other[from..]);
    }
}

/// The document format of a corpus, for structure-aware mutations.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Json,
    Toml,
}

impl Format {
    /// The format most corpus entries are documents of, and those documents.
    fn detect(corpus: &[Vec<u8>]) -> (Format, Vec<Value>) {
        let docs = |f: Format| -> Vec<Value> { corpus.iter().filter_map(|c| f.parse(c)).collect() };
        let (json, toml) = (docs(Format::Json), docs(Format::Toml));
        if json.len() >= toml.len() {
            (Format::Json, json)
        } else {
            (Format::Toml, toml)
        }
    }

    /// `bytes` as a document: a JSON object or array, or a non-empty TOML table.
    fn parse(self, bytes: &[u8]) -> Option<Value> {
        match self {
            Format::Json => serde_json::from_slice::<Value>(bytes)
                .ok()
                .filter(|v| v.is_object() || v.is_array()),
            Format::Toml => {
                let table: toml::Table = toml::from_str(std::str::from_utf8(bytes).ok()?).ok()?;
                serde_json::to_value(table)
                    .ok()
                    .filter(|v| v.as_object().is_some_and(|o| !o.is_empty()))
            }
        }
    }

    /// The document as text (`None` where TOML cannot say it, e.g. a `null`).
    fn write(self, doc: &Value, pretty: bool) -> Option<Vec<u8>> {
        match (self, pretty) {
            (Format::Json, false) => serde_json::to_vec(doc).ok(),
            (Format::Json, true) => serde_json::to_vec_pretty(doc).ok(),
            (Format::Toml, false) => toml::to_string(doc).ok().map(String::into_bytes),
            (Format::Toml, true) => toml::to_string_pretty(doc).ok().map(String::into_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_inputs() {
        let corpus = vec![b"{\"a\": [1, 2, 3]}".to_vec(), b"data: x\n\n".to_vec()];
        let run = |seed| {
            let mut m = Mutator::new(seed, &corpus, &[b"tok"], 64);
            (0..200)
                .map(|_| m.next_input().to_vec())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn inputs_respect_max_len_and_vary() {
        let corpus = vec![vec![b'x'; 100]];
        let mut m = Mutator::new(1, &corpus, &[], 50);
        let inputs: Vec<Vec<u8>> = (0..500).map(|_| m.next_input().to_vec()).collect();
        assert!(inputs.iter().all(|i| i.len() <= 50));
        let distinct: std::collections::HashSet<_> = inputs.iter().collect();
        assert!(
            distinct.len() > 400,
            "only {} distinct inputs",
            distinct.len()
        );
    }

    #[test]
    fn empty_corpus_still_makes_inputs() {
        let mut m = Mutator::new(3, &[], &[], 16);
        for _ in 0..100 {
            assert!(m.next_input().len() <= 16);
        }
    }
}
