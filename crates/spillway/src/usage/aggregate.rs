//! Adding audit lines up per group: requests, served, tokens and cost, with a total, and the
//! lines that could not be read (counted, a few kept to show).
use std::collections::BTreeMap;
use std::io::BufRead;

use serde::Serialize;
use time::OffsetDateTime;

use super::record::{BadLine, GroupBy, Usage, parse_line};

/// The time window: `from` inclusive, `to` exclusive; either may be open.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
}

impl Window {
    pub fn contains(&self, at: OffsetDateTime) -> bool {
        self.from.is_none_or(|f| at >= f) && self.to.is_none_or(|t| at < t)
    }
}

/// The figures of one group (or of all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub requests: u64,
    /// Ended `ok`.
    pub served: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// At the source region's price, in USD.
    pub cost: f64,
}

impl Totals {
    fn add(&mut self, u: &Usage) {
        self.requests += 1;
        self.served += u64::from(u.line.outcome == "ok");
        self.input_tokens += u.line.input_tokens;
        self.output_tokens += u.line.output_tokens;
        self.cost += u.line.cost();
    }
}

/// A line that could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Malformed {
    /// The input it came from (`-` for stdin).
    pub source: String,
    /// 1-based.
    pub line: u64,
    pub why: String,
}

/// How many malformed lines are kept to show.
pub const MALFORMED_SHOWN: usize = 5;

/// The report being built.
#[derive(Debug, Clone)]
pub struct Report {
    pub group_by: Vec<GroupBy>,
    pub window: Window,
    /// Group values (in `group_by` order) → figures, sorted.
    pub groups: BTreeMap<Vec<String>, Totals>,
    pub total: Totals,
    /// Lines read outside the window.
    pub outside_window: u64,
    pub malformed_count: u64,
    /// The first [`MALFORMED_SHOWN`] malformed lines.
    pub malformed: Vec<Malformed>,
}

impl Report {
    pub fn new(group_by: Vec<GroupBy>, window: Window) -> Report {
        Report {
            group_by,
            window,
            groups: BTreeMap::new(),
            total: Totals::default(),
            outside_window: 0,
            malformed_count: 0,
            malformed: Vec::new(),
        }
    }

    /// Add one usable line (if in the window).
    pub fn add(&mut self, u: &Usage) {
        if !self.window.contains(u.at) {
            self.outside_window += 1;
            return;
        }
        let key = self.group_by.iter().map(|g| g.value(&u.line)).collect();
        self.groups.entry(key).or_default().add(u);
        self.total.add(u);
    }

    fn bad(&mut self, source: &str, line: u64, why: &BadLine) {
        self.malformed_count += 1;
        if self.malformed.len() < MALFORMED_SHOWN {
            self.malformed.push(Malformed {
                source: source.to_string(),
                line,
                why: why.to_string(),
            });
        }
    }

    /// Add every line of `input` (named `source` in messages). Blank lines are skipped; a line
    /// that is not an audit record (or not UTF-8) is counted as malformed. Only a read error of
    /// the input itself is an error.
    pub fn read(&mut self, source: &str, input: impl BufRead) -> std::io::Result<()> {
        let mut input = input;
        let mut buf = Vec::new();
        let mut n = 0u64;
        loop {
            buf.clear();
            if input.read_until(b'\n', &mut buf)? == 0 {
                return Ok(());
            }
            n += 1;
            let Ok(text) = std::str::from_utf8(&buf) else {
                self.bad(source, n, &BadLine::Json("not UTF-8".into()));
                continue;
            };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            match parse_line(text) {
                Ok(u) => self.add(&u),
                Err(why) => self.bad(source, n, &why),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::record::parse_group_by;
    use super::*;

    /// An audit line as the gateway writes it.
    fn line(tenant: &str, served_in: Option<&str>, outcome: &str, tokens: (u64, u64)) -> String {
        let mut v = serde_json::json!({
            "timestamp": "2025-03-01T10:00:00.000Z",
            "requestId": "r", "tenant": tenant, "api": "openai",
            "sourceRegion": "us-east-1", "modelId": "demo.m:0", "requested": "us.demo.m:0",
            "tags": {"team": format!("team-{tenant}")},
            "inputTokens": tokens.0, "outputTokens": tokens.1, "latencyMs": 3,
            "outcome": outcome,
        });
        if let Some(r) = served_in {
            v["inferenceRegion"] = r.into();
        }
        if tokens != (0, 0) {
            let (i, o) = (tokens.0 as f64 * 1e-6, tokens.1 as f64 * 2e-6);
            v["cost"] =
                serde_json::json!({"currency": "USD", "input": i, "output": o, "total": i + o});
        }
        v.to_string()
    }

    fn report(group_by: &str, lines: &[String]) -> Report {
        let mut r = Report::new(parse_group_by(group_by).unwrap(), Window::default());
        r.read("t", lines.join("\n").as_bytes()).unwrap();
        r
    }

    fn key(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn groups_add_up_and_the_total_is_their_sum() {
        let lines = [
            line("a", None, "ok", (10, 5)),
            line("a", Some("us-west-2"), "ok", (20, 7)),
            line("b", Some("us-west-2"), "ok", (1, 1)),
            line("b", None, "throttled", (0, 0)),
        ];
        let r = report("tenant,serving-region", &lines);
        let a_east = r.groups[&key(&["a", "us-east-1"])];
        assert_eq!(
            (a_east.requests, a_east.served, a_east.input_tokens),
            (1, 1, 10)
        );
        assert!((a_east.cost - (10e-6 + 10e-6)).abs() < 1e-12);
        assert_eq!(r.groups[&key(&["a", "us-west-2"])].output_tokens, 7);
        // Refused: counted, served nowhere, no cost.
        let refused = r.groups[&key(&["b", "-"])];
        assert_eq!(
            (refused.requests, refused.served, refused.cost),
            (1, 0, 0.0)
        );
        assert_eq!(r.groups.len(), 4);
        assert_eq!((r.total.requests, r.total.served), (4, 3));
        assert_eq!((r.total.input_tokens, r.total.output_tokens), (31, 13));
        let sum: f64 = r.groups.values().map(|t| t.cost).sum();
        assert!((r.total.cost - sum).abs() < 1e-12);
    }

    #[test]
    fn tags_profiles_models_and_outcomes_are_dimensions() {
        let lines = [
            line("a", None, "ok", (1, 1)),
            line("b", None, "timeout", (0, 0)),
        ];
        let r = report("tag:team,profile,model,outcome,source-region", &lines);
        assert!(r.groups.contains_key(&key(&[
            "team-a",
            "us.demo.m:0",
            "demo.m:0",
            "ok",
            "us-east-1"
        ])));
        assert!(r.groups.contains_key(&key(&[
            "team-b",
            "us.demo.m:0",
            "demo.m:0",
            "timeout",
            "us-east-1"
        ])));
        let r = report("tag:missing", &lines);
        assert_eq!(r.groups[&key(&["-"])].requests, 2);
        assert!(parse_group_by("tenant,region").is_err());
        assert!(parse_group_by("tag:").is_err());
    }

    #[test]
    fn malformed_lines_are_counted_with_their_numbers_and_blank_lines_skipped() {
        let mut lines: Vec<String> = vec![line("a", None, "ok", (1, 1)), String::new()];
        lines.push("{not json".into());
        lines.push(r#"{"timestamp":"yesterday","sourceRegion":"x","tenant":null,"inputTokens":0,"outputTokens":0,"outcome":"ok"}"#.into());
        lines.push(line("a", None, "ok", (1, 1)).replace("USD", "EUR"));
        for _ in 0..6 {
            lines.push("[]".into());
        }
        let r = report("tenant", &lines);
        assert_eq!(r.total.requests, 1);
        assert_eq!(r.malformed_count, 9);
        assert_eq!(r.malformed.len(), MALFORMED_SHOWN);
        let numbers: Vec<u64> = r.malformed.iter().map(|m| m.line).collect();
        assert_eq!(numbers, [3, 4, 5, 6, 7]);
        assert!(
            r.malformed[1].why.contains("RFC 3339"),
            "{:?}",
            r.malformed[1]
        );
        assert!(r.malformed[2].why.contains("EUR"), "{:?}", r.malformed[2]);
    }

    #[test]
    fn the_window_keeps_from_and_drops_to() {
        let at = |s: &str| {
            OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
        };
        let w = Window {
            from: Some(at("2025-03-01T10:00:00Z")),
            to: Some(at("2025-03-01T11:00:00Z")),
        };
        assert!(w.contains(at("2025-03-01T10:00:00Z")));
        assert!(!w.contains(at("2025-03-01T11:00:00Z")));
        assert!(!w.contains(at("2025-03-01T09:59:59.999Z")));
        let mut r = Report::new(parse_group_by("tenant").unwrap(), w);
        let late = line("a", None, "ok", (1, 1)).replace("10:00:00.000Z", "12:00:00.000Z");
        r.read(
            "t",
            format!("{}\n{late}\n", line("a", None, "ok", (1, 1))).as_bytes(),
        )
        .unwrap();
        assert_eq!((r.total.requests, r.outside_window), (1, 1));
    }
}
