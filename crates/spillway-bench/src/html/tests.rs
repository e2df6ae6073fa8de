use super::*;
use crate::oracle::Oracle;
use crate::report::Setup;
use std::collections::BTreeMap;

fn policy(name: &str, ttft: Vec<f64>) -> PolicyReport {
    PolicyReport {
        name: name.into(),
        offered: 4,
        served: 3,
        throttled: 1,
        failed: 0,
        goodput_rps: 1.0,
        goodput_tps: 10.0,
        goodput_vs_oracle: 0.9,
        throttled_share: 0.25,
        failed_share: 0.0,
        ttft_p50_ms: 1.0,
        ttft_p90_ms: 2.0,
        ttft_p99_ms: 3.0,
        tpot_p50_ms: 1.0,
        tpot_p90_ms: 1.0,
        tpot_p99_ms: 1.0,
        e2e_p50_ms: 1.0,
        e2e_p90_ms: 1.0,
        e2e_p99_ms: 1.0,
        locality: 1.0,
        headroom_locality: 1.0,
        spilled: 0.0,
        residency_violations: 0,
        send_lag_p99_ms: 0.0,
        served_by_region: BTreeMap::new(),
        timeline: Timeline {
            bucket_secs: 1.0,
            regions: vec!["us-east-1".into(), "us-east-2".into()],
            served: vec![vec![2, 0], vec![0, 1]],
            offered: vec![3, 1],
        },
        ttft_ms: ttft,
        prefix: None,
    }
}

fn tiny() -> BenchReport {
    BenchReport {
        policies: vec![
            policy("in-region", vec![12.0, 40.0, 900.0]),
            policy("<odd & name>", vec![]),
        ],
        oracle: Some(Oracle {
            goodput_rps: 2.0,
            served: 4.0,
            schedule_served: 4.0,
            in_region_served: 3.0,
            local_share: 0.75,
            offered: 4.0,
            bucket_secs: 1.0,
            buckets: 2,
            iterations: 0,
        }),
        notes: vec!["a <note>".into()],
        setup: Setup {
            arrivals: "poisson 1/s".into(),
            sources: vec!["us-east-1".into()],
            regions: vec!["us-east-1".into(), "us-east-2".into()],
            concurrency: 2,
            concurrency_from: "--concurrency".into(),
            region_capacity_rps: 1.0,
            mean_service_ms: 1000.0,
            time_scale: 1.0,
            window_secs: 2.0,
            slo_ttft_ms: 2000.0,
            slo_tpot_ms: 200.0,
            max_input_tokens: 4096,
            max_output_tokens: 512,
            rtt_added: true,
        },
    }
}

/// Open and close tags balance (self-closing `<x/>` and `<!…>` aside), in nesting order.
fn balanced(html: &str) -> Result<(), String> {
    const VOID: [&str; 2] = ["meta", "br"];
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        let end = rest[i..].find('>').ok_or("unclosed <")? + i;
        let tag = &rest[i + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') || tag.ends_with('/') {
            continue;
        }
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if VOID.contains(&name.as_str()) {
            continue;
        }
        if tag.starts_with('/') {
            match stack.pop() {
                Some(open) if open == name => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        } else {
            stack.push(name);
        }
    }
    if stack.is_empty() {
        Ok(())
    } else {
        Err(format!("left open: {stack:?}"))
    }
}

#[test]
fn page_is_well_formed_with_charts_and_escaped_names() {
    let html = render(&tiny());
    balanced(&html).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    // The CDF chart and one area chart per policy.
    assert_eq!(html.matches("<svg").count(), 3);
    assert!(html.contains("&lt;odd &amp; name&gt;"));
    assert!(!html.contains("<odd"));
    assert!(!html.contains("<script"));
    assert!(html.contains("<polyline"));
    assert!(html.contains("<path d=\"M"));
    assert!(!html.contains("NaN") && !html.contains("inf"));
    assert!(html.contains("Note: a &lt;note&gt;"));
    let mut skipped = tiny();
    skipped.oracle = None;
    let html = render(&skipped);
    balanced(&html).unwrap();
    assert!(html.contains("skipped: the regions"));
}

#[test]
fn axis_tops_are_round() {
    assert_eq!(nice_ceil(39.0), 40.0);
    assert_eq!(nice_ceil(665.0), 800.0);
    assert_eq!(nice_ceil(20.0), 20.0);
    assert_eq!(nice_ceil(101.0), 150.0);
    assert_eq!(nice_ceil(0.0), 1.0);
}

#[test]
fn the_checker_catches_unbalanced_tags() {
    assert!(balanced("<svg><g></svg></g>").is_err());
    assert!(balanced("<p><b></b>").is_err());
    assert!(balanced("<p><br><img/></p>").is_ok());
}
