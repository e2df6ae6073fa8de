//! `spillway usage report`: requests, tokens and cost from the gateway's audit log (one JSON
//! line per request, `[audit] sink`), grouped by tenant, tag, source or serving region, model,
//! profile or outcome, over a time window; as a table, CSV or JSON. docs/USAGE-REPORTS.md.
//!
//! Costs are the ones the gateway wrote, at the source region's price; the report only adds
//! them up. Lines it cannot read are counted and shown (a few, with their line numbers) on
//! stderr, never fatal.
use std::io::{BufReader, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time};

mod aggregate;
mod record;
mod render;

use aggregate::{Report, Window};

#[derive(clap::Args)]
pub struct UsageArgs {
    #[command(subcommand)]
    command: UsageCommand,
}

#[derive(clap::Subcommand)]
enum UsageCommand {
    /// Requests, served requests, tokens and cost (at the source region's price) per group,
    /// with a total, from audit log files.
    Report(ReportArgs),
}

/// `--group-by`'s dimensions (one value: clap must not read it as a list of occurrences).
type GroupList = Vec<record::GroupBy>;

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Format {
    Table,
    Csv,
    Json,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// Audit log files (JSON lines), read in order; `-` is stdin. None: stdin.
    files: Vec<PathBuf>,
    /// From this time on (inclusive): RFC 3339 (`2025-03-01T10:00:00Z`) or a UTC date
    /// (`2025-03-01`, its start).
    #[arg(long, value_parser = parse_from)]
    from: Option<OffsetDateTime>,
    /// Up to this time (exclusive): RFC 3339, or a UTC date (through its end).
    #[arg(long, value_parser = parse_to)]
    to: Option<OffsetDateTime>,
    /// A comma list of: tenant, tag:<key>, source-region, serving-region, model, profile,
    /// outcome.
    #[arg(long, default_value = "tenant", value_parser = record::parse_group_by)]
    group_by: GroupList,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// A UTC date, or an RFC 3339 time.
fn parse_time(s: &str, end_of_day: bool) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    let date = Date::parse(s, &date_format).map_err(|_| {
        format!(
            "expected an RFC 3339 time (2025-03-01T10:00:00Z) or a date (2025-03-01), got {s:?}"
        )
    })?;
    let date = if end_of_day {
        date.next_day()
            .ok_or_else(|| format!("{s} is the last date there is"))?
    } else {
        date
    };
    Ok(date.with_time(Time::MIDNIGHT).assume_utc())
}

fn parse_from(s: &str) -> Result<OffsetDateTime, String> {
    parse_time(s, false)
}

fn parse_to(s: &str) -> Result<OffsetDateTime, String> {
    parse_time(s, true)
}

pub fn run(args: UsageArgs) -> anyhow::Result<()> {
    match args.command {
        UsageCommand::Report(a) => report(a),
    }
}

fn report(a: ReportArgs) -> anyhow::Result<()> {
    if let (Some(f), Some(t)) = (a.from, a.to)
        && f >= t
    {
        anyhow::bail!("--from must be before --to");
    }
    let window = Window {
        from: a.from,
        to: a.to,
    };
    let mut r = Report::new(a.group_by, window);
    let files = if a.files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        a.files
    };
    for f in &files {
        if f.as_os_str() == "-" {
            r.read("-", std::io::stdin().lock())
                .context("reading stdin")?;
        } else {
            let file =
                std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?;
            r.read(&f.display().to_string(), BufReader::new(file))
                .with_context(|| format!("reading {}", f.display()))?;
        }
    }
    warn_malformed(&r);
    let stamp = |t: Option<OffsetDateTime>| t.and_then(|t| t.format(&Rfc3339).ok());
    let text = match a.format {
        Format::Table => render::table(&r),
        Format::Csv => render::csv(&r).context("writing CSV")?,
        Format::Json => {
            serde_json::to_string_pretty(&render::json(&r, stamp(a.from), stamp(a.to)))? + "\n"
        }
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing the report")?;
    Ok(())
}

/// The malformed lines' count and the first few, on stderr.
fn warn_malformed(r: &Report) {
    if r.malformed_count == 0 {
        return;
    }
    eprintln!(
        "spillway usage: skipped {} malformed line(s){}:",
        r.malformed_count,
        if r.malformed_count > r.malformed.len() as u64 {
            format!(", the first {}", r.malformed.len())
        } else {
            String::new()
        }
    );
    for m in &r.malformed {
        eprintln!("  {}:{}: {}", m.source, m.line, m.why);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dates_open_and_close_whole_days() {
        let from = parse_from("2025-03-01").unwrap();
        let to = parse_to("2025-03-01").unwrap();
        assert_eq!(to - from, time::Duration::days(1));
        assert_eq!(from.format(&Rfc3339).unwrap(), "2025-03-01T00:00:00Z");
        let t = parse_to("2025-03-01T10:30:00+02:00").unwrap();
        assert_eq!(t.format(&Rfc3339).unwrap(), "2025-03-01T10:30:00+02:00");
        assert!(parse_from("March 1st").is_err());
    }
}
