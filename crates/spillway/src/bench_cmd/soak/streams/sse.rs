//! Reading a streamed answer as it arrives, over a raw HTTP/1.1 connection: the response head
//! (status and the headers the run checks), the body's chunked transfer coding taken off
//! ([`Dechunk`]), and the server-sent events counted until `data: [DONE]` ([`Events`]).
//!
//! Incremental, so that a byte boundary anywhere (inside a chunk-size line, inside an event)
//! changes nothing; small, so that ten thousand streams held at once cost the client little.
use std::collections::HashMap;

/// The longest line (chunk-size line, trailer, SSE line) accepted.
const MAX_LINE: usize = 64 * 1024;

/// A response head: the status and the headers by lower-case name.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub status: u16,
    pub headers: HashMap<String, String>,
}

impl Head {
    /// Parses the bytes before the blank line (`\r\n\r\n` excluded).
    pub fn parse(bytes: &[u8]) -> Option<Head> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.split("\r\n");
        let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Some(Head { status, headers })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// Whether the body comes in chunks (`Transfer-Encoding: chunked`).
    pub fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
}

/// Where a response head ends in `buf`: the index after `\r\n\r\n`.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Reading a chunk-size line.
    Size,
    /// This many bytes of chunk data left.
    Data(u64),
    /// This many bytes of the CRLF after a chunk's data left.
    DataEnd(u8),
    /// Reading trailer lines after the last chunk, until an empty one.
    Trailer,
    Done,
}

/// Takes the chunked transfer coding off a body, bytes as they come.
#[derive(Debug)]
pub struct Dechunk {
    state: State,
    line: Vec<u8>,
}

impl Default for Dechunk {
    fn default() -> Self {
        Dechunk {
            state: State::Size,
            line: Vec::new(),
        }
    }
}

impl Dechunk {
    /// Whether the last chunk and the trailer have been read.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Appends the payload in `input` to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        while !input.is_empty() {
            match self.state {
                State::Done => return Ok(()),
                State::Data(n) => {
                    let take = input.len().min(usize::try_from(n).unwrap_or(usize::MAX));
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    let left = n - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd(2)
                    } else {
                        State::Data(left)
                    };
                }
                State::DataEnd(k) => {
                    input = &input[1..];
                    self.state = if k == 1 {
                        State::Size
                    } else {
                        State::DataEnd(k - 1)
                    };
                }
                State::Size | State::Trailer => {
                    let Some(line) = self.take_line(&mut input)? else {
                        return Ok(());
                    };
                    self.state = next_after_line(self.state, &line)?;
                }
            }
        }
        Ok(())
    }

    /// One whole line (without its line end) if `input` completes it; the rest stays in
    /// `self.line`.
    fn take_line(&mut self, input: &mut &[u8]) -> Result<Option<Vec<u8>>, String> {
        match input.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.line.extend_from_slice(&input[..i]);
                *input = &input[i + 1..];
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Ok(Some(line))
            }
            None => {
                self.line.extend_from_slice(input);
                *input = &[];
                if self.line.len() > MAX_LINE {
                    return Err("chunk line over 64 KiB".into());
                }
                Ok(None)
            }
        }
    }
}

/// The state after a whole chunk-size or trailer line.
fn next_after_line(state: State, line: &[u8]) -> Result<State, String> {
    if state == State::Trailer {
        return Ok(if line.is_empty() {
            State::Done
        } else {
            State::Trailer
        });
    }
    let text = std::str::from_utf8(line).map_err(|_| "chunk size not ASCII".to_string())?;
    let hex = text.split(';').next().unwrap_or_default().trim();
    let size = u64::from_str_radix(hex, 16).map_err(|_| format!("bad chunk size {hex:?}"))?;
    Ok(if size == 0 {
        State::Trailer
    } else {
        State::Data(size)
    })
}

/// Server-sent events, counted as their lines complete.
#[derive(Debug, Default)]
pub struct Events {
    line: Vec<u8>,
    /// `data:` lines other than `[DONE]`.
    pub data: u64,
    /// `data: [DONE]` was seen.
    pub done: bool,
}

impl Events {
    /// Reads `payload` (body bytes, transfer coding off).
    pub fn feed(&mut self, payload: &[u8]) -> Result<(), String> {
        let mut rest = payload;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..i]);
            rest = &rest[i + 1..];
            let line = std::mem::take(&mut self.line);
            self.on_line(&line);
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > MAX_LINE {
            return Err("event line over 64 KiB".into());
        }
        Ok(())
    }

    fn on_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(value) = line.strip_prefix(b"data:") else {
            return;
        };
        if value.trim_ascii() == b"[DONE]" {
            self.done = true;
        } else {
            self.data += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(parts: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(format!("{:x};ext=1\r\n{p}\r\n", p.len()).as_bytes());
        }
        out.extend_from_slice(b"0\r\nx-trailer: 1\r\n\r\n");
        out
    }

    /// Feeds `body` to a dechunker and an event reader in pieces of `step` bytes.
    fn read(body: &[u8], step: usize) -> (Dechunk, Events) {
        let (mut d, mut e) = (Dechunk::default(), Events::default());
        for piece in body.chunks(step) {
            let mut payload = Vec::new();
            d.feed(piece, &mut payload).expect("valid chunking");
            e.feed(&payload).expect("valid events");
        }
        (d, e)
    }

    #[test]
    fn events_are_counted_whatever_the_byte_boundaries() {
        let body = chunked(&[
            "data: {\"a\":1}\n\n",
            "data: {\"b\":",
            "2}\n\ndata: [DO",
            "NE]\n\n",
        ]);
        for step in 1..=body.len() {
            let (d, e) = read(&body, step);
            assert!(d.done(), "step {step}");
            assert_eq!((e.data, e.done), (2, true), "step {step}");
        }
    }

    #[test]
    fn a_body_without_done_is_not_done() {
        let (d, e) = read(&chunked(&["data: {}\r\n\r\n"]), 3);
        assert!(d.done());
        assert_eq!((e.data, e.done), (1, false));
        let (d, e) = read(b"5\r\ndata:", 100);
        assert!(!d.done());
        assert_eq!((e.data, e.done), (0, false));
    }

    #[test]
    fn a_bad_chunk_size_is_an_error() {
        let mut out = Vec::new();
        assert!(Dechunk::default().feed(b"zz\r\n", &mut out).is_err());
    }

    #[test]
    fn the_head_gives_status_and_headers() {
        let raw = b"HTTP/1.1 200 OK\r\nX-Spillway-Region: us-east-2\r\ntransfer-encoding: chunked\r\n\r\ndata";
        let end = head_end(raw).expect("a head");
        assert_eq!(&raw[end..], b"data");
        let h = Head::parse(&raw[..end - 4]).expect("parses");
        assert_eq!(h.status, 200);
        assert_eq!(h.header("x-spillway-region"), Some("us-east-2"));
        assert!(h.chunked());
        assert_eq!(Head::parse(b"garbage"), None);
    }
}
