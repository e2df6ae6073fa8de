//! CSV traces, told apart by their header (columns are found by name, in any order, any case):
//!
//! * **Azure** LLM inference traces (2023 and 2024): `TIMESTAMP` (a date-time such as
//!   `2023-11-16 18:17:03.9799600`, no time zone), `ContextTokens`, `GeneratedTokens`.
//! * **BurstGPT**: `Timestamp` (seconds from the trace's start, a number), `Request tokens`,
//!   `Response tokens`; its other columns (`Model`, `Total tokens`, `Log Type`) are not read.
//!   Its failed requests (0 response tokens) are kept: they arrived, and the bench's cap gives
//!   every request at least one output token.
//!
//! Cells are split at every comma: a quoted cell holding a comma is refused as a line with the
//! wrong number of columns, never read shifted.
use std::time::Duration;

use super::{Trace, TraceError, TraceRequest, whole_number};

/// The columns a CSV trace is read from, and how its time is written.
struct Columns {
    time: usize,
    input: usize,
    output: usize,
    /// BurstGPT's seconds from the start rather than Azure's date-time.
    seconds: bool,
    /// The token columns' names as the header spells them, for errors.
    names: [&'static str; 2],
}

impl Columns {
    /// Azure's columns if the header has them, else BurstGPT's; `None` if it has neither set.
    fn find(header: &[String]) -> Option<Columns> {
        let at = |name: &str| header.iter().position(|n| n == name);
        let time = at("timestamp")?;
        if let (Some(input), Some(output)) = (at("contexttokens"), at("generatedtokens")) {
            let names = ["ContextTokens", "GeneratedTokens"];
            return Some(Columns {
                time,
                input,
                output,
                seconds: false,
                names,
            });
        }
        let (input, output) = (at("request tokens")?, at("response tokens")?);
        let names = ["Request tokens", "Response tokens"];
        Some(Columns {
            time,
            input,
            output,
            seconds: true,
            names,
        })
    }
}

/// Parses a CSV trace (see the module docs); `file` names the source in errors.
pub fn parse_csv(text: &str, file: &str) -> Result<Trace, TraceError> {
    let bad = |line: usize, msg: String| TraceError::Malformed {
        file: file.into(),
        line,
        msg,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((hline, header)) = lines.next() else {
        return Err(TraceError::Empty { file: file.into() });
    };
    let names: Vec<String> = header
        .split(',')
        .map(|c| c.trim().trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    let cols = Columns::find(&names).ok_or_else(|| {
        bad(
            hline + 1,
            "the header names neither Azure's columns (TIMESTAMP,ContextTokens,GeneratedTokens) \
             nor BurstGPT's (Timestamp,Request tokens,Response tokens)"
                .into(),
        )
    })?;
    let mut out = Vec::new();
    for (i, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != names.len() {
            return Err(bad(
                i + 1,
                format!("expected {} columns, found {}", names.len(), cells.len()),
            ));
        }
        let at = if cols.seconds {
            parse_seconds(cells[cols.time])
        } else {
            parse_timestamp(cells[cols.time])
        };
        let count = |c: usize, what: &str| {
            token_count(cells[c])
                .ok_or_else(|| bad(i + 1, format!("{what} {:?} is not a token count", cells[c])))
        };
        out.push(TraceRequest {
            at: at.map_err(|m| bad(i + 1, m))?,
            input_tokens: count(cols.input, cols.names[0])?,
            output_tokens: count(cols.output, cols.names[1])?,
            hash_ids: None,
        });
    }
    Trace::new(out, file)
}

/// An unsigned integer, or a number with no fraction (`412.0`, as exported tables write it).
fn token_count(cell: &str) -> Option<u64> {
    cell.parse::<u64>()
        .ok()
        .or_else(|| whole_number(cell.parse::<f64>().ok()?))
}

/// A time in seconds from the trace's start (BurstGPT's `Timestamp`).
fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|t| t.is_finite() && *t >= 0.0)
        .and_then(|t| Duration::try_from_secs_f64(t).ok())
        .ok_or_else(|| format!("timestamp {s:?} is not a number of seconds (>= 0)"))
}

/// `YYYY-MM-DD HH:MM:SS[.fraction]` (or with `T`) as time since 1970-01-01 (no time zone: only
/// differences matter).
fn parse_timestamp(s: &str) -> Result<Duration, String> {
    let err = || format!("timestamp {s:?} is not YYYY-MM-DD HH:MM:SS[.fraction]");
    let (date, time) = s.split_once([' ', 'T']).ok_or_else(err)?;
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.split(':').collect();
    if d.len() != 3 || t.len() != 3 {
        return Err(err());
    }
    let num = |x: &str| x.parse::<i64>().map_err(|_| err());
    let (y, mo, day) = (num(d[0])?, num(d[1])?, num(d[2])?);
    let (h, mi) = (num(t[0])?, num(t[1])?);
    let (sec, frac) = t[2].split_once('.').unwrap_or((t[2], ""));
    let sec = num(sec)?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return Err(err());
    }
    if !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(err());
    }
    // Nanoseconds from the first nine digits of the fraction.
    let nanos = frac
        .chars()
        .chain(std::iter::repeat('0'))
        .take(9)
        .collect::<String>()
        .parse::<u32>()
        .map_err(|_| err())?;
    let days = days_from_civil(y, mo, day);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec;
    let secs = u64::try_from(secs).map_err(|_| err())?;
    Ok(Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::super::assert_refused;
    use super::*;

    const CSV: &str = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
        2023-11-16 18:17:04.0319600,3180,8\n\
        2023-11-16 18:17:03.9799600,4808,10\n\
        \n\
        2023-11-17 00:00:00,110,27\n";

    #[test]
    fn azure_csv_is_relative_sorted_and_exact() {
        let t = parse_csv(CSV, "t.csv").unwrap();
        assert_eq!(t.requests.len(), 3);
        assert_eq!(t.requests[0].at, Duration::ZERO);
        assert_eq!(
            (t.requests[0].input_tokens, t.requests[0].output_tokens),
            (4808, 10)
        );
        assert_eq!(t.requests[1].at, Duration::from_millis(52));
        // Across midnight: 18:17:03.97996 -> 00:00:00 next day.
        assert_eq!(t.requests[2].at, Duration::new(20_576, 20_040_000));
        assert_eq!(t.span(), t.requests[2].at);
    }

    #[test]
    fn azure_csv_columns_by_name_in_any_order() {
        let t = parse_csv(
            "GeneratedTokens,TIMESTAMP,ContextTokens\n5,2023-01-01 00:00:01.5,7\n",
            "x.csv",
        )
        .unwrap();
        assert_eq!(
            t.requests,
            vec![TraceRequest {
                at: Duration::ZERO,
                input_tokens: 7,
                output_tokens: 5,
                hash_ids: None,
            }]
        );
    }

    #[test]
    fn malformed_csv_lines_are_named() {
        let cases = [
            (
                "TIMESTAMP,ContextTokens\n",
                "t.csv:1: the header names neither Azure's columns",
            ),
            (
                "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,1\n",
                "t.csv:2: expected 3 columns, found 2",
            ),
            (
                "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,1,2\nyesterday,1,2\n",
                "t.csv:3: timestamp \"yesterday\"",
            ),
            (
                "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,-4,2\n",
                "t.csv:2: ContextTokens \"-4\" is not a token count",
            ),
            (
                "TIMESTAMP,ContextTokens,GeneratedTokens\n",
                "t.csv: the trace holds no request",
            ),
        ];
        assert_refused(parse_csv, "t.csv", &cases);
    }

    #[test]
    fn burstgpt_csv_is_read_by_its_header() {
        let t = parse_csv(
            "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n\
             5,ChatGPT,472,18,490,Conversation log\n\
             45.5,GPT-4,1087.0,0,1087,API log\n",
            "b.csv",
        )
        .unwrap();
        let got: Vec<_> = t
            .requests
            .iter()
            .map(|r| (r.at, r.input_tokens, r.output_tokens))
            .collect();
        assert_eq!(
            got,
            [
                (Duration::ZERO, 472, 18),
                (Duration::from_millis(40_500), 1087, 0),
            ]
        );
        let cases = [
            (
                "Timestamp,Request tokens,Response tokens\n-1,1,1\n",
                "b.csv:2: timestamp \"-1\" is not a number of seconds",
            ),
            (
                "Timestamp,Request tokens,Response tokens\n1,1.5,1\n",
                "b.csv:2: Request tokens \"1.5\" is not a token count",
            ),
            (
                "Timestamp,Model,Request tokens,Response tokens\n1,\"a,b\",1,1\n",
                "b.csv:2: expected 4 columns, found 5",
            ),
        ];
        assert_refused(parse_csv, "b.csv", &cases);
    }

    proptest::proptest! {
        /// Any text is a trace or an error naming the file, never a panic; read rows keep
        /// their order of time.
        #[test]
        fn any_text_is_a_trace_or_an_error(
            rows in proptest::collection::vec(
                proptest::collection::vec("[-0-9. a-zA-Z:\"]{0,12}", 0..6), 0..8),
            burst in proptest::bool::ANY,
        ) {
            let header = if burst {
                "Timestamp,Model,Request tokens,Response tokens"
            } else {
                "TIMESTAMP,ContextTokens,GeneratedTokens"
            };
            let body: Vec<String> = rows.iter().map(|r| r.join(",")).collect();
            let text = format!("{header}\n{}", body.join("\n"));
            match parse_csv(&text, "p.csv") {
                Ok(t) => proptest::prop_assert!(t.requests.windows(2).all(|w| w[0].at <= w[1].at)),
                Err(e) => proptest::prop_assert!(e.to_string().starts_with("p.csv")),
            }
        }
    }
}
