//! Server-sent events: an incremental decoder and the encoder.
//!
//! Why not a crate: the gateway needs the decoder on raw upstream byte chunks (it relays the
//! original bytes and only looks inside for usage and errors), with no async wrapper and no
//! allocation per line beyond the event's data; the format is small (WHATWG HTML §9.2) and the
//! decoder is fuzzed and property-tested here to decode any split of a stream the same.
use bytes::{Bytes, BytesMut};

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
}

/// Incremental decoder: feed it byte chunks as they arrive, collect whole events.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: BytesMut,
    /// The previous chunk ended with `\r`; a `\n` starting the next one belongs to it.
    skip_lf: bool,
    event: Option<String>,
    data: String,
    id: Option<String>,
    has_data: bool,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes; returns the events completed by them.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        let mut chunk = chunk;
        // Only the first byte after the `\r` can be its `\n`; an empty chunk leaves it pending.
        if self.skip_lf && !chunk.is_empty() {
            self.skip_lf = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        self.buf.extend_from_slice(chunk);
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n' || b == b'\r') {
            let line = self.buf.split_to(pos);
            let term = self.buf.split_to(1);
            if term[0] == b'\r' {
                match self.buf.first() {
                    Some(b'\n') => {
                        let _ = self.buf.split_to(1);
                    }
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            self.line(&line, &mut out);
        }
        out
    }

    /// Bytes held back waiting for the end of a line.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if self.has_data {
                out.push(SseEvent {
                    event: self.event.take(),
                    data: std::mem::take(&mut self.data),
                    id: self.id.clone(),
                });
            }
            self.event = None;
            self.data.clear();
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            return; // comment
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"event" => self.event = Some(value.into_owned()),
            b"id" if !value.contains('\0') => self.id = Some(value.into_owned()),
            _ => {}
        }
    }
}

/// `data: <payload>\n\n` (payload must not contain newlines; JSON from serde never does).
pub fn encode_data(payload: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(payload.len() + 8);
    b.extend_from_slice(b"data: ");
    b.extend_from_slice(payload.as_bytes());
    b.extend_from_slice(b"\n\n");
    b.freeze()
}

/// The end-of-stream marker OpenAI sends.
pub const DONE: &str = "[DONE]";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        chunks.iter().flat_map(|c| d.feed(c)).collect()
    }

    #[test]
    fn decodes_openai_stream() {
        let s = b"data: {\"a\":1}\n\ndata: [DONE]\n\n";
        let ev = decode_all(&[s]);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].data, "{\"a\":1}");
        assert_eq!(ev[1].data, DONE);
    }

    #[test]
    fn multi_line_data_comments_and_crlf() {
        let s = b": keep-alive\r\nevent: x\r\ndata: a\r\ndata:b\r\n\r\n";
        let ev = decode_all(&[s]);
        assert_eq!(
            ev,
            vec![SseEvent {
                event: Some("x".into()),
                data: "a\nb".into(),
                id: None
            }]
        );
    }

    #[test]
    fn blank_line_without_data_dispatches_nothing() {
        assert!(decode_all(&[b"event: x\n\n\n"]).is_empty());
    }

    #[test]
    fn cr_split_from_lf_is_one_line_end() {
        let ev = decode_all(&[b"data: a\r", b"\n\r", b"\n"]);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].data, "a");
    }

    #[test]
    fn lf_chunk_after_cr_is_consumed_once() {
        // Found by the `sse` fuzz target: the `\n` of a `\r\n` split across chunks used to
        // leave the decoder skipping, so the blank line in the next chunk was dropped too and
        // the event merged with the next one.
        let whole = decode_all(&[b"data: a\r\n\ndata: b\n\n"]);
        assert_eq!(whole.len(), 2);
        assert_eq!(
            decode_all(&[b"data: a\r", b"\n", b"\n", b"data: b\n\n"]),
            whole
        );
        assert_eq!(decode_all(&[b"data: a\r", b"", b"\n\ndata: b\n\n"]), whole);
    }

    proptest! {
        #[test]
        fn any_split_decodes_the_same(
            payloads in proptest::collection::vec("[a-z{}\":, ]{0,20}", 1..6),
            crlf in any::<bool>(),
            cuts in proptest::collection::vec(0usize..200, 0..8),
        ) {
            let nl = if crlf { "\r\n" } else { "\n" };
            let stream: String = payloads.iter().map(|p| format!("data: {p}{nl}{nl}")).collect();
            let bytes = stream.as_bytes();
            let whole = decode_all(&[bytes]);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut parts = Vec::new();
            let mut last = 0;
            for c in cuts { parts.push(&bytes[last..c]); last = c; }
            parts.push(&bytes[last..]);
            prop_assert_eq!(decode_all(&parts), whole.clone());
            prop_assert_eq!(whole.len(), payloads.len());
            for (e, p) in whole.iter().zip(&payloads) { prop_assert_eq!(&e.data, p); }
        }
    }
}
