//! `application/vnd.amazon.eventstream`: the binary framing of ConverseStream and
//! InvokeModelWithResponseStream, on top of `aws-smithy-eventstream`.
//!
//! A message is: a 12-byte prelude (big-endian total length, headers length, CRC32 of those 8
//! bytes), the headers (name length u8, name, type u8, value), the payload, and a CRC32 of
//! everything before it. Bedrock's messages carry three string headers: `:message-type`
//! (`event` or `exception`), `:event-type` (or `:exception-type`) and `:content-type`
//! (`application/json`).
//!
//! [`FrameDecoder`] buffers bytes until a whole message is there and hands it to
//! `aws_smithy_eventstream::frame::read_message_from`, which checks both CRCs. It also checks
//! the prelude (CRC, a total length of 16 bytes to 16 MiB) as soon as its 12 bytes arrive, so a
//! corrupted length fails at once instead of waiting for gigabytes that never come. The stream
//! cannot be resynchronised after a bad message: the decoder then fails for good.
//!
//! [`Frame`] keeps string-valued headers only (all Bedrock sends); headers of other types
//! (integers, timestamps, byte arrays, …) are dropped.
use aws_smithy_eventstream::frame::{read_message_from, write_message_to};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::{Bytes, BytesMut};

use super::error::BedrockError;

/// Prelude: total length, headers length, prelude CRC.
const PRELUDE_LEN: usize = 12;
/// Prelude plus the message CRC: the smallest possible message.
const MIN_MESSAGE_LEN: usize = 16;
/// The largest message accepted (the event-stream limit of AWS's reference implementation).
pub const MAX_MESSAGE_LEN: usize = 16 * 1024 * 1024;

/// Encodes an `event` message: headers `:event-type`, `:content-type: application/json`,
/// `:message-type: event`.
pub fn encode_event(event_type: &str, payload: &[u8]) -> Bytes {
    encode(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload,
    )
}

/// Encodes an `exception` message (`:exception-type`, `:content-type: application/json`,
/// `:message-type: exception`) with the payload `{"message": ...}`.
pub fn encode_exception(exception_type: &str, message: &str) -> Bytes {
    let payload = serde_json::json!({ "message": message }).to_string();
    encode(
        &[
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload.as_bytes(),
    )
}

/// Encodes one message with string headers, in the order given.
///
/// Encoding fails only for a header name over 255 bytes, a header value over 32 KiB or a payload
/// over 4 GiB; such a message is replaced by an `InternalServerException` exception message, so
/// that a client sees an error rather than a malformed stream.
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    try_encode(headers, payload).unwrap_or_else(|e| {
        let fallback = serde_json::json!({ "message": format!("cannot encode event: {e}") });
        try_encode(
            &[
                (":exception-type", "InternalServerException"),
                (":content-type", "application/json"),
                (":message-type", "exception"),
            ],
            fallback.to_string().as_bytes(),
        )
        .unwrap_or_default()
    })
}

/// Encodes one message with string headers, or says why it cannot be encoded.
pub fn try_encode(headers: &[(&str, &str)], payload: &[u8]) -> Result<Bytes, BedrockError> {
    let mut message = Message::new(Bytes::copy_from_slice(payload));
    for (name, value) in headers {
        message = message.add_header(Header::new(
            name.to_string(),
            HeaderValue::String(value.to_string().into()),
        ));
    }
    let mut out = Vec::with_capacity(MIN_MESSAGE_LEN + payload.len() + 64);
    write_message_to(&message, &mut out).map_err(|e| BedrockError::event_stream(e.to_string()))?;
    Ok(Bytes::from(out))
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    /// The string-valued headers, in wire order.
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
}

impl Frame {
    /// The first header of that name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `:message-type`: `event`, `exception` or `error`.
    pub fn message_type(&self) -> Option<&str> {
        self.header(":message-type")
    }

    /// `:event-type` of an event (`chunk`, `messageStart`, …).
    pub fn event_type(&self) -> Option<&str> {
        self.header(":event-type")
    }

    /// `:exception-type` of an exception (`ThrottlingException`, …).
    pub fn exception_type(&self) -> Option<&str> {
        self.header(":exception-type")
    }

    /// `:error-code` of a protocol-level `error` message.
    pub fn error_code(&self) -> Option<&str> {
        self.header(":error-code")
    }

    /// `:error-message` of a protocol-level `error` message.
    pub fn error_message(&self) -> Option<&str> {
        self.header(":error-message")
    }

    /// Encodes the frame again (string headers in order, then the payload).
    pub fn encode(&self) -> Bytes {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        encode(&headers, &self.payload)
    }

    /// Converts a message decoded by `aws-smithy-eventstream`, keeping string headers only.
    pub fn from_message(message: &Message) -> Frame {
        let headers = message
            .headers()
            .iter()
            .filter_map(|h| match h.value() {
                HeaderValue::String(s) => Some((h.name().as_str().to_string(), s.as_str().into())),
                _ => None,
            })
            .collect();
        Frame {
            headers,
            payload: message.payload().clone(),
        }
    }
}

/// An incremental event-stream decoder: feed it bytes as they arrive, in any split.
///
/// The frames returned over all calls, and whether the stream failed, do not depend on how the
/// input was split. When a call decodes good frames before hitting a bad one, it returns the good
/// frames and the error comes from the next call to [`FrameDecoder::feed`] or
/// [`FrameDecoder::finish`]; once failed, the decoder keeps failing.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
    failed: Option<BedrockError>,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `bytes` and returns every message now complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, BedrockError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.buf.extend_from_slice(bytes);
        let mut frames = Vec::new();
        loop {
            match self.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => return Ok(frames),
                Err(e) => {
                    self.buf = BytesMut::new();
                    self.failed = Some(e.clone());
                    return if frames.is_empty() {
                        Err(e)
                    } else {
                        Ok(frames)
                    };
                }
            }
        }
    }

    /// Call at the end of the input: an error if the stream failed or stopped inside a message.
    pub fn finish(&self) -> Result<(), BedrockError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if !self.buf.is_empty() {
            return Err(BedrockError::event_stream(format!(
                "the stream ended inside a message ({} bytes left over)",
                self.buf.len()
            )));
        }
        Ok(())
    }

    /// Bytes received that are not yet part of a complete message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, BedrockError> {
        let Some(prelude) = self.buf.get(..PRELUDE_LEN) else {
            return Ok(None);
        };
        let word = |i: usize| {
            u32::from_be_bytes([prelude[i], prelude[i + 1], prelude[i + 2], prelude[i + 3]])
        };
        let (total_len, headers_len, prelude_crc) = (word(0), word(4), word(8));
        let expected = crc32(&prelude[..8]);
        if expected != prelude_crc {
            return Err(BedrockError::event_stream(format!(
                "prelude checksum mismatch: computed {expected:#010x}, message says {prelude_crc:#010x}"
            )));
        }
        let total = total_len as usize;
        if !(MIN_MESSAGE_LEN..=MAX_MESSAGE_LEN).contains(&total) {
            return Err(BedrockError::event_stream(format!(
                "message length {total} is outside {MIN_MESSAGE_LEN}..={MAX_MESSAGE_LEN}"
            )));
        }
        if headers_len as usize > total - MIN_MESSAGE_LEN {
            return Err(BedrockError::event_stream(format!(
                "headers length {headers_len} does not fit in a message of {total} bytes"
            )));
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let message = self.buf.split_to(total).freeze();
        let message =
            read_message_from(message).map_err(|e| BedrockError::event_stream(e.to_string()))?;
        Ok(Some(Frame::from_message(&message)))
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib and the event-stream prelude use it). Only the 8-byte
/// prelude goes through here, so a bitwise loop is fast enough.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
#[path = "eventstream_tests.rs"]
mod tests;
