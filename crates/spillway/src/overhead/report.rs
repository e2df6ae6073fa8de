//! The table `bench overhead` prints.
use super::{Report, state};

pub fn print_table(r: &Report) {
    println!();
    println!(
        "{:<14} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>7}",
        "case",
        "rps",
        "direct p50",
        "direct p99",
        "gw p50",
        "gw p99",
        "added p50",
        "added p99",
        "max rps",
        "errors"
    );
    for c in &r.cases {
        println!(
            "{:<14} {:>6.0} {:>7.3} ms {:>7.3} ms {:>7.3} ms {:>7.3} ms {:>7.3} ms {:>7.3} ms {:>9} {:>7}",
            c.name,
            c.rps,
            c.direct_p50_ms,
            c.direct_p99_ms,
            c.gateway_p50_ms,
            c.gateway_p99_ms,
            c.added_p50_ms,
            c.added_p99_ms,
            if c.ramp.is_empty() {
                "-".to_string()
            } else {
                format!(
                    "{}{:.0}",
                    if c.max_rps_is_ceiling { "≥" } else { "" },
                    c.max_rps
                )
            },
            c.errors
        );
    }
    println!(
        "\nrps is per path; latency is to the complete answer (non-streaming) or to [DONE] (streaming); \
         added = gateway − direct. max rps: the gateway path alone, no errors, p99 from the due time at most \
         {} ms over the side-by-side gateway p99 ({} s steps; load generator, gateway and simulator on the same {} cores).",
        r.settings.ramp_slack_ms, r.settings.ramp_seconds, r.settings.cores
    );
    if let (Some(url), Some(q)) = (&r.settings.state, r.settings.quota_rpm) {
        state::print_table(r.cases.iter().map(|c| (c.name, &c.redis)), url, q);
    }
}
