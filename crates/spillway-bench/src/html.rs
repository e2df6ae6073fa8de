//! The HTML report: one self-contained page (no script, no external resource) with the table
//! and inline SVG charts drawn here:
//!
//! * for each policy, the requests served per region over time (stacked areas, bucketed by
//!   arrival in trace time), with the offered load as a dashed line: how much of each burst was
//!   served, and where;
//! * the TTFT CDFs of every policy on one chart (log-scale time axis, trace time): the share of
//!   served requests whose first token came within a given time.
use std::fmt::Write as _;

use crate::report::{BenchReport, PolicyReport, Timeline};

const REGION_COLORS: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f",
];
const POLICY_COLORS: [&str; 6] = [
    "#7f7f7f", "#e15759", "#f28e2b", "#4e79a7", "#59a14f", "#b07aa1",
];
const W: f64 = 720.0;
const H: f64 = 220.0;
/// Left, right, top, bottom margins.
const M: (f64, f64, f64, f64) = (56.0, 150.0, 16.0, 36.0);

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The whole page.
pub fn render(r: &BenchReport) -> String {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>spillway bench</title>\n<style>\n");
    h.push_str("body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}th:first-child,td:first-child{text-align:left}svg{display:block;margin:0.5em 0 1.5em}svg text{font-size:11px;fill:#333}.note{color:#555;font-size:13px;max-width:60em}\n");
    h.push_str("</style>\n</head>\n<body>\n<h1>spillway bench</h1>\n");
    let s = &r.setup;
    let _ = writeln!(
        h,
        "<p class=\"note\">{} from {}; {} regions with {} slots each ({}), {:.1} req/s per region at a mean service time of {:.0} ms; time scale {}; window {:.0} s; SLO: TTFT ≤ {} ms, TPOT ≤ {} ms. Latencies are in trace time (measured × time scale{}).</p>",
        esc(&s.arrivals),
        esc(&s.sources.join(", ")),
        s.regions.len(),
        s.concurrency,
        esc(&s.concurrency_from),
        s.region_capacity_rps,
        s.mean_service_ms,
        s.time_scale,
        s.window_secs,
        s.slo_ttft_ms,
        s.slo_tpot_ms,
        if s.rtt_added {
            ", plus the RTT between the source and the serving region"
        } else {
            ", over the real network"
        }
    );
    for n in &r.notes {
        let _ = writeln!(h, "<p class=\"note\">Note: {}</p>", esc(n));
    }
    table(&mut h, r);
    h.push_str("<h2>TTFT distribution</h2>\n");
    cdf_chart(&mut h, &r.policies, r.setup.slo_ttft_ms);
    h.push_str("<h2>Served per region over time</h2>\n");
    let peak = r
        .policies
        .iter()
        .flat_map(|p| p.timeline.offered.iter())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    for p in &r.policies {
        let _ = writeln!(h, "<h3>{}</h3>", esc(&p.name));
        area_chart(&mut h, &p.timeline, nice_ceil(f64::from(peak)));
    }
    h.push_str("</body>\n</html>\n");
    h
}

fn table(h: &mut String, r: &BenchReport) {
    h.push_str("<table>\n<tr><th>policy</th><th>offered</th><th>served</th><th>throttled</th><th>failed</th><th>goodput req/s</th><th>goodput tok/s</th><th>vs oracle</th><th>TTFT p50</th><th>TTFT p90</th><th>TTFT p99</th><th>TPOT p50</th><th>e2e p50</th><th>e2e p90</th><th>e2e p99</th><th>locality</th><th>spilled</th><th>residency violations</th></tr>\n");
    for p in &r.policies {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.1}</td><td>{}</td><td>{:.0} ms</td><td>{:.0} ms</td><td>{:.0} ms</td><td>{:.1} ms</td><td>{:.0} ms</td><td>{:.0} ms</td><td>{:.0} ms</td><td>{:.1}%</td><td>{:.1}%</td><td>{}</td></tr>",
            esc(&p.name),
            p.offered,
            p.served,
            p.throttled,
            p.failed,
            p.goodput_rps,
            p.goodput_tps,
            if crate::report::breaches_oracle(p) {
                "BREACH: above the bound".to_string()
            } else {
                format!("{:.1}%", p.goodput_vs_oracle * 100.0)
            },
            p.ttft_p50_ms,
            p.ttft_p90_ms,
            p.ttft_p99_ms,
            p.tpot_p50_ms,
            p.e2e_p50_ms,
            p.e2e_p90_ms,
            p.e2e_p99_ms,
            p.locality * 100.0,
            p.spilled * 100.0,
            p.residency_violations
        );
    }
    match &r.oracle {
        Some(o) => {
            let _ = writeln!(
                h,
                "<tr><td>oracle</td><td>{:.0}</td><td>{:.0}</td><td></td><td></td><td>{:.2}</td><td></td><td>100%</td><td colspan=\"10\" style=\"text-align:left\">bound on good requests (slot-seconds in {:.2} s cells, waiting up to the SLO); a schedule reaches {:.0}; at most {:.1}% local at its goodput</td></tr>",
                o.offered,
                o.served,
                o.goodput_rps,
                o.bucket_secs,
                o.schedule_served,
                o.local_share * 100.0
            );
        }
        None => h.push_str(
            "<tr><td>oracle</td><td colspan=\"17\" style=\"text-align:left\">skipped: the regions' capacity is unknown</td></tr>\n",
        ),
    }
    h.push_str("</table>\n");
}

/// The smallest round number (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 × 10^k) at or above `v`: the top
/// of an axis.
fn nice_ceil(v: f64) -> f64 {
    if !(v > 0.0 && v.is_finite()) {
        return 1.0;
    }
    let base = 10f64.powf(v.log10().floor());
    [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|m| m * base)
        .find(|c| *c >= v - 1e-9)
        .unwrap_or(10.0 * base)
}

/// Plot-area coordinates.
fn px(fx: f64) -> f64 {
    M.0 + fx * (W - M.0 - M.1)
}
fn py(fy: f64) -> f64 {
    H - M.3 - fy * (H - M.2 - M.3)
}

fn svg_open(h: &mut String, label: &str) {
    let _ = writeln!(
        h,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">",
        esc(label)
    );
    let _ = writeln!(
        h,
        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#999\"/>",
        M.0,
        M.2,
        W - M.0 - M.1,
        H - M.2 - M.3
    );
}

fn text(h: &mut String, x: f64, y: f64, anchor: &str, s: &str) {
    let _ = writeln!(
        h,
        "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\">{}</text>",
        esc(s)
    );
}

fn legend(h: &mut String, i: usize, color: &str, label: &str, dashed: bool) {
    let y = M.2 + 8.0 + 16.0 * i as f64;
    let x = W - M.1 + 10.0;
    let dash = if dashed {
        " stroke-dasharray=\"4 3\""
    } else {
        ""
    };
    let _ = writeln!(
        h,
        "<line x1=\"{x:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{color}\" stroke-width=\"3\"{dash}/>",
        x + 18.0
    );
    text(h, x + 24.0, y + 4.0, "start", label);
}

/// The area chart's scales: `n` buckets across the plot, `y_max` requests per bucket up it.
struct AreaScale {
    n: usize,
    y_max: f64,
}

impl AreaScale {
    fn x(&self, i: usize) -> f64 {
        px(i as f64 / self.n as f64)
    }
    fn y(&self, v: f64) -> f64 {
        py((v / self.y_max).min(1.0))
    }
}

/// Stacked areas of served per region, and the offered line, on a shared y scale.
fn area_chart(h: &mut String, t: &Timeline, y_max: f64) {
    svg_open(h, "served per region over time");
    let s = AreaScale {
        n: t.offered.len().max(1),
        y_max,
    };
    region_areas(h, t, &s);
    offered_line(h, t, &s);
    area_axes(h, t, &s);
    h.push_str("</svg>\n");
}

/// One band per region, stacked in region order, each with its legend entry; a region that
/// served nothing draws no band.
fn region_areas(h: &mut String, t: &Timeline, s: &AreaScale) {
    let mut below = vec![0.0f64; s.n];
    for (ri, region) in t.regions.iter().enumerate() {
        let above: Vec<f64> = (0..s.n)
            .map(|b| {
                below[b]
                    + f64::from(
                        t.served
                            .get(b)
                            .and_then(|v| v.get(ri))
                            .copied()
                            .unwrap_or(0),
                    )
            })
            .collect();
        let color = REGION_COLORS[ri % REGION_COLORS.len()];
        if above.iter().zip(&below).any(|(a, b)| a > b) {
            let _ = writeln!(
                h,
                "<path d=\"{}Z\" fill=\"{color}\" fill-opacity=\"0.85\" stroke=\"none\"/>",
                band_path(s, &above, &below)
            );
        }
        legend(h, ri, color, region, false);
        below = above;
    }
}

/// The outline of the band between `below` and `above`: along the top left to right, back along
/// the bottom. Steps: each bucket is flat over [i, i+1).
fn band_path(s: &AreaScale, above: &[f64], below: &[f64]) -> String {
    let mut d = String::new();
    for (b, top) in above.iter().enumerate() {
        let _ = write!(
            d,
            "{}{:.1},{:.1} L{:.1},{:.1} ",
            if b == 0 { "M" } else { "L" },
            s.x(b),
            s.y(*top),
            s.x(b + 1),
            s.y(*top)
        );
    }
    for b in (0..s.n).rev() {
        let _ = write!(
            d,
            "L{:.1},{:.1} L{:.1},{:.1} ",
            s.x(b + 1),
            s.y(below[b]),
            s.x(b),
            s.y(below[b])
        );
    }
    d
}

/// The offered load per bucket as a dashed step line, with its legend entry after the regions'.
fn offered_line(h: &mut String, t: &Timeline, s: &AreaScale) {
    let mut pts = String::new();
    for (b, v) in t.offered.iter().enumerate() {
        let _ = write!(
            pts,
            "{:.1},{:.1} {:.1},{:.1} ",
            s.x(b),
            s.y(f64::from(*v)),
            s.x(b + 1),
            s.y(f64::from(*v))
        );
    }
    let _ = writeln!(
        h,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#222\" stroke-width=\"1\" stroke-dasharray=\"4 3\"/>",
        pts.trim_end()
    );
    legend(h, t.regions.len(), "#222", "offered", true);
}

/// Axes: requests per bucket, trace time in seconds.
fn area_axes(h: &mut String, t: &Timeline, s: &AreaScale) {
    for k in 0..=4 {
        let v = s.y_max * f64::from(k) / 4.0;
        text(
            h,
            M.0 - 6.0,
            s.y(v) + 4.0,
            "end",
            &format!("{}", (v * 10.0).round() / 10.0),
        );
        let secs = t.bucket_secs * s.n as f64 * f64::from(k) / 4.0;
        text(
            h,
            px(f64::from(k) / 4.0),
            H - M.3 + 14.0,
            "middle",
            &format!("{secs:.0} s"),
        );
    }
    text(
        h,
        px(0.5),
        H - 4.0,
        "middle",
        &format!(
            "trace time (requests per {:.0} s bucket, by arrival)",
            t.bucket_secs
        ),
    );
}

/// TTFT CDFs of every policy, log-scale x.
fn cdf_chart(h: &mut String, policies: &[PolicyReport], slo_ms: f64) {
    svg_open(h, "TTFT CDF");
    let all = policies.iter().flat_map(|p| p.ttft_ms.iter()).copied();
    let lo = all.clone().fold(f64::INFINITY, f64::min).max(0.1);
    let hi = all.fold(0.0f64, f64::max).max(lo * 10.0);
    let (l0, l1) = (lo.log10().floor(), hi.log10().ceil());
    let x = |ms: f64| px(((ms.max(lo)).log10() - l0) / (l1 - l0).max(1e-9));
    for (pi, p) in policies.iter().enumerate() {
        let color = POLICY_COLORS[pi % POLICY_COLORS.len()];
        legend(h, pi, color, &p.name, false);
        let n = p.ttft_ms.len();
        if n == 0 {
            continue;
        }
        // At most ~400 points: every k-th order statistic, and the last.
        let step = (n / 400).max(1);
        let mut pts = String::new();
        let mut i = 0;
        while i < n {
            let _ = write!(
                pts,
                "{:.1},{:.1} ",
                x(p.ttft_ms[i]),
                py((i + 1) as f64 / n as f64)
            );
            i = if i + step >= n && i != n - 1 {
                n - 1
            } else {
                i + step
            };
        }
        let _ = writeln!(
            h,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>",
            pts.trim_end()
        );
    }
    if slo_ms > 0.0 && slo_ms >= 10f64.powf(l0) && slo_ms <= 10f64.powf(l1) {
        let sx = x(slo_ms);
        let _ = writeln!(
            h,
            "<line x1=\"{sx:.1}\" y1=\"{:.1}\" x2=\"{sx:.1}\" y2=\"{:.1}\" stroke=\"#900\" stroke-dasharray=\"2 3\"/>",
            py(0.0),
            py(1.0)
        );
        text(h, sx + 3.0, py(1.0) + 12.0, "start", "SLO");
    }
    let mut e = l0;
    while e <= l1 {
        text(
            h,
            x(10f64.powf(e)),
            H - M.3 + 14.0,
            "middle",
            &format!("{} ms", 10f64.powf(e)),
        );
        e += 1.0;
    }
    for k in 0..=4 {
        let f = f64::from(k) / 4.0;
        text(
            h,
            M.0 - 6.0,
            py(f) + 4.0,
            "end",
            &format!("{:.0}%", f * 100.0),
        );
    }
    text(
        h,
        px(0.5),
        H - 4.0,
        "middle",
        "time to first token (trace time, log scale)",
    );
    h.push_str("</svg>\n");
}

#[cfg(test)]
mod tests;
