//! The figures of `spillway bench midstream`: one row per run, the table, the JSON.
use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use spillway_bench::client::RequestResult;
use spillway_bench::percentile;

use super::MidstreamArgs;
use crate::midstream::{self, Kind};

/// What every run shares.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub streams: usize,
    pub seconds: f64,
    pub break_after: u64,
    pub max_tokens: u64,
    pub prompt_tokens: u64,
    pub fault_ms: u64,
    pub fault_period_ms: u64,
    pub stall_timeout_ms: u64,
    pub concurrency: u32,
    pub decode_tps: f64,
    pub source: &'static str,
    pub model: String,
}

impl Setup {
    pub fn of(a: &MidstreamArgs) -> Setup {
        Setup {
            streams: a.streams,
            seconds: a.seconds,
            break_after: a.break_after,
            max_tokens: a.max_tokens,
            prompt_tokens: super::PROMPT_TOKENS,
            fault_ms: a.fault_ms,
            fault_period_ms: a.fault_period_ms,
            stall_timeout_ms: a.stall_timeout_ms,
            concurrency: a.concurrency,
            decode_tps: a.decode_tps,
            source: super::SOURCE,
            model: format!("us.{}", super::MODEL),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} streams per run on {} from {} over {} s ({} prompt + {} output tokens at {} tokens/s); \
             {} breaks the streams that start in the first {} ms of every {} ms after {} tokens; \
             a stall is given up after {} ms; {} slots per region. Failover on, then off, for each kind.",
            self.streams,
            self.model,
            self.source,
            self.seconds,
            self.prompt_tokens,
            self.max_tokens,
            self.decode_tps,
            self.source,
            self.fault_ms,
            self.fault_period_ms,
            self.break_after,
            self.stall_timeout_ms,
            self.concurrency
        )
    }
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub kind: &'static str,
    pub failover: bool,
    pub sent: u64,
    /// Streams that ended with `[DONE]`.
    pub complete: u64,
    /// Streams that did not: an error event, a cut, or no 200.
    pub lost: u64,
    /// Streams whose leg in the source broke this way (the source simulator's records).
    pub broken: u64,
    /// Streams a simulator served as a continuation (its records).
    pub continued: u64,
    pub text_mismatches: u64,
    pub residency_violations: u64,
    /// The longest gap between consecutive content chunks of each continued stream.
    pub resume_gap_p50_ms: Option<f64>,
    pub resume_gap_p99_ms: Option<f64>,
    /// The gaps between consecutive content chunks of the streams not continued.
    pub token_gap_p50_ms: Option<f64>,
    pub token_gap_p99_ms: Option<f64>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50 and p99 of `v` in ms, rounded to 0.1 ms; `None` for none.
fn p50_p99(mut v: Vec<f64>) -> (Option<f64>, Option<f64>) {
    if v.is_empty() {
        return (None, None);
    }
    v.sort_by(f64::total_cmp);
    let r = |x: f64| Some((x * 10.0).round() / 10.0);
    (r(percentile(&v, 50.0)), r(percentile(&v, 99.0)))
}

impl Row {
    /// `expected` holds every sent stream's unbroken answer; `continued` the continued ones.
    pub fn of(
        kind: Kind,
        failover: bool,
        results: &[RequestResult],
        expected: &HashMap<String, String>,
        continued: &HashMap<String, Option<Kind>>,
        broken: u64,
        residency_violations: u64,
    ) -> Row {
        let sent = expected.len() as u64;
        let complete = results.iter().filter(|r| r.ok()).count() as u64;
        let text_mismatches = midstream::text_mismatches(results, expected);
        let resume: Vec<f64> = results
            .iter()
            .filter(|r| continued.contains_key(&r.id))
            .filter_map(|r| r.transcript.as_ref()?.longest_gap())
            .map(ms)
            .collect();
        let tokens: Vec<f64> = results
            .iter()
            .filter(|r| r.ok() && !continued.contains_key(&r.id))
            .filter_map(|r| r.transcript.as_ref())
            .flat_map(|t| t.gaps().map(ms).collect::<Vec<_>>())
            .collect();
        let (resume_gap_p50_ms, resume_gap_p99_ms) = p50_p99(resume);
        let (token_gap_p50_ms, token_gap_p99_ms) = p50_p99(tokens);
        Row {
            kind: kind.name(),
            failover,
            sent,
            complete,
            lost: sent.saturating_sub(complete),
            broken,
            continued: continued.len() as u64,
            text_mismatches,
            residency_violations,
            resume_gap_p50_ms,
            resume_gap_p99_ms,
            token_gap_p50_ms,
            token_gap_p99_ms,
        }
    }

    fn failover(&self) -> &'static str {
        if self.failover { "on" } else { "off" }
    }

    /// The run in one line (the progress log).
    pub fn line(&self) -> String {
        format!(
            "{} with failover {}: {} sent, {} broken, {} lost, {} continued, {} text mismatches, {} residency violations",
            self.kind,
            self.failover(),
            self.sent,
            self.broken,
            self.lost,
            self.continued,
            self.text_mismatches,
            self.residency_violations
        )
    }
}

fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.0} ms"))
}

pub fn table(setup: &Setup, rows: &[Row]) -> String {
    let mut out = format!(
        "{:<12} {:>8} {:>6} {:>7} {:>6} {:>10} {:>11} {:>10} {:>9} {:>9} {:>11} {:>11}\n",
        "kind",
        "failover",
        "sent",
        "broken",
        "lost",
        "continued",
        "text diffs",
        "residency",
        "gap p50",
        "gap p99",
        "token p50",
        "token p99"
    );
    for r in rows {
        out += &format!(
            "{:<12} {:>8} {:>6} {:>7} {:>6} {:>10} {:>11} {:>10} {:>9} {:>9} {:>11} {:>11}\n",
            r.kind,
            r.failover(),
            r.sent,
            r.broken,
            r.lost,
            r.continued,
            r.text_mismatches,
            r.residency_violations,
            cell(r.resume_gap_p50_ms),
            cell(r.resume_gap_p99_ms),
            cell(r.token_gap_p50_ms),
            cell(r.token_gap_p99_ms)
        );
    }
    out += &format!(
        "\ngap: for each continued stream, the longest gap between two content chunks its client received \
         (noticing the break, then the new leg's first token); token: the gaps between consecutive chunks \
         of the streams not continued. {} tokens at {} tokens/s; stalls are given up after {} ms.",
        setup.max_tokens, setup.decode_tps, setup.stall_timeout_ms
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_bench::client::Transcript;

    fn result(id: &str, complete: bool, at_ms: &[u64], text: &str) -> RequestResult {
        RequestResult {
            id: id.into(),
            source: "us-east-1".into(),
            status: 200,
            served_region: Some("us-east-1".into()),
            route_reason: None,
            ttft: None,
            e2e: Duration::ZERO,
            output_chunks: at_ms.len() as u64,
            complete,
            late: Duration::ZERO,
            transcript: Some(Transcript {
                text: text.into(),
                chunk_at: at_ms.iter().map(|m| Duration::from_millis(*m)).collect(),
                error_event: !complete,
            }),
        }
    }

    #[test]
    fn a_row_counts_lost_continued_and_the_gaps() {
        let expected: HashMap<String, String> = [("a", " x y z"), ("b", " x y z"), ("c", " p q")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let results = [
            // Continued: a gap of 300 ms at the break.
            result("a", true, &[10, 20, 320], " x y z"),
            // Lost after two tokens, its text a beginning of the answer.
            result("b", false, &[10, 30], " x y"),
            // Whole, but the wrong text.
            result("c", true, &[10, 25], " p r"),
        ];
        let continued = HashMap::from([("a".to_string(), Some(Kind::Reset))]);
        let row = Row::of(Kind::Reset, true, &results, &expected, &continued, 2, 0);
        assert_eq!((row.sent, row.complete, row.lost), (3, 2, 1));
        assert_eq!((row.continued, row.text_mismatches), (1, 1));
        assert_eq!(row.resume_gap_p50_ms, Some(300.0));
        // Only the whole stream not continued ("c") gives token gaps.
        assert_eq!(row.token_gap_p50_ms, Some(15.0));
        let t = table(&Setup::of(&test_args()), &[row]);
        assert!(t.contains("300 ms") && t.contains("reset"), "{t}");
    }

    fn test_args() -> MidstreamArgs {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: MidstreamArgs,
        }
        Cli::parse_from(["x"]).a
    }

    #[test]
    fn no_samples_no_percentiles() {
        assert_eq!(p50_p99(Vec::new()), (None, None));
        assert_eq!(p50_p99(vec![2.0, 1.0]), (Some(1.0), Some(2.0)));
    }
}
