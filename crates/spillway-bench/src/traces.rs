//! Request traces: when each request arrived and how many tokens it read and wrote.
//!
//! Two formats, chosen by the file's extension:
//!
//! * **CSV** (`.csv`): the Azure LLM inference traces (a header naming `TIMESTAMP`, e.g.
//!   `2023-11-16 18:17:03.9799600` with no time zone, `ContextTokens` and `GeneratedTokens`)
//!   or BurstGPT (`Timestamp` in seconds, `Request tokens`, `Response tokens`), told apart by
//!   the header, then one request per line. Columns are found by name, in any order (the `csv` module).
//! * **JSONL** (`.jsonl`, `.ndjson`): one object per line with `timestamp` in milliseconds,
//!   `input_length` and `output_length` (unsigned integers; `412.0` is read as 412, as tables
//!   exported from pandas write integer columns), and optionally `hash_ids` as in the Mooncake traces:
//!   one id per 512-token block of the input, equal ids for a shared (KV-cacheable) prefix. The
//!   bench's client turns them into prompt text whose prefix blocks are shared exactly where
//!   the ids are ([`crate::client::hashed_prompt`]).
//!
//! Times are made relative to the earliest request and the requests sorted by time. A trace has
//! no region: [`Trace::shifted`] replays it from an offset, wrapping around, so one trace can feed
//! several source regions with decorrelated bursts.
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

mod csv;

pub use csv::parse_csv;

/// One request of a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRequest {
    /// Offset from the first request of the trace (trace time, not replay time).
    pub at: Duration,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The prefix-block ids of the input (Mooncake's `hash_ids`, one per 512 tokens), when the
    /// trace has them. Shared, as a trace replayed from several regions repeats them.
    pub hash_ids: Option<Arc<[u64]>>,
}

impl TraceRequest {
    /// The same request with its token counts capped (and at least one output token), so that
    /// a replay stays quick and no request asks for nothing.
    pub fn capped(self, max_input: u64, max_output: u64) -> TraceRequest {
        TraceRequest {
            input_tokens: self.input_tokens.min(max_input),
            output_tokens: self.output_tokens.clamp(1, max_output.max(1)),
            ..self
        }
    }
}

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {msg}")]
    Malformed {
        file: String,
        line: usize,
        msg: String,
    },
    #[error("{file}: {msg}")]
    Unsupported { file: String, msg: String },
    #[error("{file}: the trace holds no request")]
    Empty { file: String },
}

/// A parsed trace, sorted by arrival time, starting at zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub requests: Vec<TraceRequest>,
}

impl Trace {
    fn new(mut requests: Vec<TraceRequest>, file: &str) -> Result<Trace, TraceError> {
        if requests.is_empty() {
            return Err(TraceError::Empty { file: file.into() });
        }
        requests.sort_by_key(|r| r.at);
        let t0 = requests[0].at;
        for r in &mut requests {
            r.at -= t0;
        }
        Ok(Trace { requests })
    }

    /// Time from the first request to the last.
    pub fn span(&self) -> Duration {
        self.requests.last().map_or(Duration::ZERO, |r| r.at)
    }

    /// The period a wrapped replay repeats with: the span plus one mean gap, so the last request
    /// and the first do not land on the same instant.
    pub fn period(&self) -> Duration {
        let n = self.requests.len().max(1) as u32;
        self.span() + self.span() / n
    }

    /// The trace replayed from `offset` on: request times are `(at - offset) mod period`, sorted.
    pub fn shifted(&self, offset: Duration) -> Vec<TraceRequest> {
        let period = self.period();
        if period.is_zero() {
            return self.requests.clone();
        }
        let p = period.as_nanos();
        let off = offset.as_nanos() % p;
        let mut out: Vec<TraceRequest> = self
            .requests
            .iter()
            .map(|r| {
                let t = (r.at.as_nanos() + p - off) % p;
                TraceRequest {
                    at: Duration::from_nanos(u64::try_from(t).unwrap_or(u64::MAX)),
                    ..r.clone()
                }
            })
            .collect();
        out.sort_by_key(|r| r.at);
        out
    }
}

/// Reads a trace, choosing the format by extension (`.csv`, `.jsonl` or `.ndjson`).
pub fn load(path: &Path) -> Result<Trace, TraceError> {
    let file = path.display().to_string();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let parse: fn(&str, &str) -> Result<Trace, TraceError> = match ext.as_deref() {
        Some("csv") => parse_csv,
        Some("jsonl" | "ndjson") => parse_jsonl,
        _ => {
            return Err(TraceError::Unsupported {
                file,
                msg: "expected a .csv (Azure, BurstGPT) or .jsonl trace".into(),
            });
        }
    };
    let text = std::fs::read_to_string(path).map_err(|source| TraceError::Io {
        file: file.clone(),
        source,
    })?;
    parse(&text, &file)
}

/// Parses the JSONL format (see the module docs); `file` names the source in errors.
pub fn parse_jsonl(text: &str, file: &str) -> Result<Trace, TraceError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |msg: String| TraceError::Malformed {
            file: file.into(),
            line: i + 1,
            msg,
        };
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
        let ms = v
            .get("timestamp")
            .and_then(serde_json::Value::as_f64)
            .filter(|t| t.is_finite() && *t >= 0.0)
            .ok_or_else(|| {
                bad("`timestamp` (milliseconds, >= 0) is missing or not a number".into())
            })?;
        let count = |key: &str| {
            v.get(key)
                .and_then(token_count)
                .ok_or_else(|| bad(format!("`{key}` is missing or not a token count")))
        };
        out.push(TraceRequest {
            at: Duration::try_from_secs_f64(ms / 1000.0)
                .map_err(|_| bad(format!("timestamp {ms:e} ms is out of range")))?,
            input_tokens: count("input_length")?,
            output_tokens: count("output_length")?,
            hash_ids: hash_ids(&v).map_err(bad)?,
        });
    }
    Trace::new(out, file)
}

/// A token count: an unsigned integer, also as a float with no fraction (`412.0`), as tables
/// exported by pandas and spreadsheets write integer columns that held a missing value.
fn token_count(v: &serde_json::Value) -> Option<u64> {
    v.as_u64().or_else(|| whole_number(v.as_f64()?))
}

/// `f` as a `u64` when it is one: not negative, no fraction, below 2^64.
fn whole_number(f: f64) -> Option<u64> {
    // 2^64 is exactly representable; every float below it with no fraction fits a u64.
    (f >= 0.0 && f.fract() == 0.0 && f < 18_446_744_073_709_551_616.0).then_some(f as u64)
}

/// A JSONL row's optional `hash_ids`: an array of block ids (unsigned integers).
fn hash_ids(v: &serde_json::Value) -> Result<Option<Arc<[u64]>>, String> {
    let Some(ids) = v.get("hash_ids").filter(|h| !h.is_null()) else {
        return Ok(None);
    };
    let bad = || "`hash_ids` is not an array of block ids (unsigned integers)".to_string();
    let ids = ids.as_array().ok_or_else(bad)?;
    ids.iter()
        .map(|id| id.as_u64().ok_or_else(bad))
        .collect::<Result<Arc<[u64]>, String>>()
        .map(Some)
}

/// Each `(text, want)`: `parse` refuses `text`, read as `file`, with an error starting `want`.
#[cfg(test)]
fn assert_refused(
    parse: fn(&str, &str) -> Result<Trace, TraceError>,
    file: &str,
    cases: &[(&str, &str)],
) {
    for &(text, want) in cases {
        let e = parse(text, file).unwrap_err().to_string();
        assert!(e.starts_with(want), "{e:?} does not start with {want:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_parses_and_rejects_clearly() {
        let t = parse_jsonl(
            "{\"timestamp\": 1500, \"input_length\": 10, \"output_length\": 3}\n\n\
             {\"timestamp\": 1000.5, \"input_length\": 20, \"output_length\": 4}\n",
            "t.jsonl",
        )
        .unwrap();
        assert_eq!(t.requests.len(), 2);
        assert_eq!(t.requests[0].input_tokens, 20);
        assert_eq!(t.requests[1].at, Duration::from_micros(499_500));
        // Integer columns written as floats (pandas, spreadsheets) are token counts too.
        let t = parse_jsonl(
            "{\"timestamp\": 0, \"input_length\": 412.0, \"output_length\": 3e1}\n",
            "t.jsonl",
        )
        .unwrap();
        assert_eq!(
            (t.requests[0].input_tokens, t.requests[0].output_tokens),
            (412, 30)
        );
        let cases = [
            (
                "{\"timestamp\": 1}\n",
                "t.jsonl:1: `input_length` is missing",
            ),
            ("nope\n", "t.jsonl:1: not JSON"),
            (
                "{\"timestamp\": 0, \"input_length\": 1, \"output_length\": 1}\n{\"timestamp\": \"x\", \"input_length\": 1, \"output_length\": 1}\n",
                "t.jsonl:2: `timestamp`",
            ),
            ("\n", "t.jsonl: the trace holds no request"),
            (
                "{\"timestamp\": 0, \"input_length\": 10.5, \"output_length\": 1}\n",
                "t.jsonl:1: `input_length` is missing or not a token count",
            ),
            (
                "{\"timestamp\": 0, \"input_length\": 1, \"output_length\": -1.0}\n",
                "t.jsonl:1: `output_length` is missing or not a token count",
            ),
            (
                "{\"timestamp\": 1e300, \"input_length\": 1, \"output_length\": 1}\n",
                "t.jsonl:1: timestamp 1e300 ms is out of range",
            ),
        ];
        assert_refused(parse_jsonl, "t.jsonl", &cases);
    }

    #[test]
    fn load_picks_the_format_by_extension() {
        let e = load(Path::new("/nonexistent/trace.txt")).unwrap_err();
        assert!(matches!(e, TraceError::Unsupported { .. }), "{e}");
        let e = load(Path::new("/nonexistent/trace.csv")).unwrap_err();
        assert!(matches!(e, TraceError::Io { .. }), "{e}");
    }

    #[test]
    fn shift_wraps_around_and_keeps_every_request() {
        let reqs = (0..4)
            .map(|i| TraceRequest {
                at: Duration::from_secs(i),
                input_tokens: i,
                output_tokens: 1,
                hash_ids: None,
            })
            .collect();
        let t = Trace { requests: reqs };
        // Span 3 s, period 3.75 s; from 2 s on: 2→0, 3→1, then 0→1.75, 1→2.75.
        let s = t.shifted(Duration::from_secs(2));
        let got: Vec<(u64, u128)> = s
            .iter()
            .map(|r| (r.input_tokens, r.at.as_millis()))
            .collect();
        assert_eq!(got, vec![(2, 0), (3, 1000), (0, 1750), (1, 2750)]);
        assert_eq!(t.shifted(Duration::ZERO), t.requests);
        assert_eq!(t.shifted(t.period()), t.requests);
    }

    #[test]
    fn caps_bound_tokens_and_keep_one_output_token() {
        let r = TraceRequest {
            at: Duration::ZERO,
            input_tokens: 9000,
            output_tokens: 0,
            hash_ids: Some(Arc::from([1, 2, 3])),
        };
        let c = r.capped(4096, 512);
        assert_eq!((c.input_tokens, c.output_tokens), (4096, 1));
        assert_eq!(c.hash_ids.as_deref(), Some(&[1, 2, 3][..]), "kept whole");
    }

    #[test]
    fn jsonl_hash_ids_are_optional_and_checked() {
        let t = parse_jsonl(
            "{\"timestamp\": 0, \"input_length\": 1030, \"output_length\": 3, \"hash_ids\": [0, 1, 2]}\n\
             {\"timestamp\": 5, \"input_length\": 20, \"output_length\": 4}\n",
            "t.jsonl",
        )
        .unwrap();
        assert_eq!(t.requests[0].hash_ids.as_deref(), Some(&[0, 1, 2][..]));
        assert_eq!(t.requests[1].hash_ids, None);
        // Shifted replays keep each request's ids.
        let s = t.shifted(Duration::from_millis(5));
        assert_eq!(s[1].hash_ids.as_deref(), Some(&[0, 1, 2][..]));
        for bad in ["[1, -2]", "\"x\"", "[0.5]"] {
            let line = format!(
                "{{\"timestamp\": 0, \"input_length\": 1, \"output_length\": 1, \"hash_ids\": {bad}}}\n"
            );
            let e = parse_jsonl(&line, "t.jsonl").unwrap_err().to_string();
            assert!(e.starts_with("t.jsonl:1: `hash_ids`"), "{e}");
        }
    }
}
