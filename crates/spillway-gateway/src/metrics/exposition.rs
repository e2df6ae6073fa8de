//! The two text formats of `/metrics`, chosen by the scraper's `Accept` header.
//!
//! `prometheus-client` writes OpenMetrics 1.0 only. Prometheus asks for it and gets it; every
//! other scraper (curl, Python's `prometheus_client` text parser, older agents) gets the
//! classic Prometheus text format 0.0.4, which differs in three ways that matter to a parser:
//! a counter's `# HELP`/`# TYPE` name carries the `_total` suffix its samples carry (otherwise
//! the samples fall out of their family), there are no `# UNIT` or `# EOF` lines, and there are
//! no `_created` samples or exemplars. [`to_classic`] rewrites the OpenMetrics text line by line
//! (no crate converts between the two; the `prometheus` crate writes classic text from a
//! different registry type).

/// The content type of each format.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Which format the scraper prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Classic,
}

/// OpenMetrics when the `Accept` header ranks `application/openmetrics-text` at least as high
/// as any text/plain or wildcard; classic text otherwise (and without a header).
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Classic;
    };
    let (mut open, mut other) = (0.0_f32, 0.0_f32);
    for item in accept.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        match media.as_str() {
            "application/openmetrics-text" => open = open.max(q),
            "text/plain" | "text/*" | "*/*" => other = other.max(q),
            _ => {}
        }
    }
    if open > 0.0 && open >= other {
        Format::OpenMetrics
    } else {
        Format::Classic
    }
}

/// Rewrite OpenMetrics text as classic Prometheus text.
pub fn to_classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = classic_family(name, kind);
            if let Some((_, text)) = help.take() {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line.starts_with('#') {
            continue; // `# UNIT`, `# EOF`
        }
        let sample = line.split(" # ").next().unwrap_or(line); // no exemplars
        let name_end = sample.find(['{', ' ']).unwrap_or(sample.len());
        if sample[..name_end].ends_with("_created") {
            continue;
        }
        out.push_str(sample);
        out.push('\n');
    }
    out
}

/// A family's classic name and type: a counter's name gains `_total`, an info metric becomes a
/// gauge named `_info`, types classic text lacks become `untyped`.
fn classic_family(name: &str, kind: &str) -> (String, &'static str) {
    match kind {
        "counter" => (format!("{name}_total"), "counter"),
        "gauge" => (name.to_string(), "gauge"),
        "histogram" => (name.to_string(), "histogram"),
        "summary" => (name.to_string(), "summary"),
        "info" => (format!("{name}_info"), "gauge"),
        _ => (name.to_string(), "untyped"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_gets_openmetrics_and_everyone_else_classic() {
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(prom)), Format::OpenMetrics);
        assert_eq!(negotiate(None), Format::Classic);
        assert_eq!(negotiate(Some("*/*")), Format::Classic);
        assert_eq!(negotiate(Some("text/plain")), Format::Classic);
        assert_eq!(
            negotiate(Some("text/plain;q=0.9, application/openmetrics-text;q=0.5")),
            Format::Classic
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text;q=0")),
            Format::Classic
        );
        assert_eq!(negotiate(Some("garbage;;q=x,,")), Format::Classic);
    }

    #[test]
    fn counters_gain_total_on_their_family_and_openmetrics_lines_go() {
        let om = "# HELP spillway_requests Client requests.\n# TYPE spillway_requests counter\nspillway_requests_total{tenant=\"a\"} 3\nspillway_requests_created{tenant=\"a\"} 1.7e9\n# HELP spillway_up Up.\n# TYPE spillway_up gauge\n# UNIT spillway_up seconds\nspillway_up 1 # {trace_id=\"x\"} 1\n# EOF\n";
        let classic = to_classic(om);
        assert_eq!(
            classic,
            "# HELP spillway_requests_total Client requests.\n# TYPE spillway_requests_total counter\nspillway_requests_total{tenant=\"a\"} 3\n# HELP spillway_up Up.\n# TYPE spillway_up gauge\nspillway_up 1\n"
        );
    }
}
