//! `/metrics` from outside: a run with spills, streams, a throttle and a refused caller, then a
//! classic-text and an OpenMetrics scrape of the admin listener, each family checked against
//! what the test sent.
mod common;

use std::collections::HashMap;

use common::*;

/// The samples of a classic-text scrape: `name{labels}` → value, and each family's `# TYPE`.
struct Scrape {
    samples: Vec<(String, HashMap<String, String>, f64)>,
    types: HashMap<String, String>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        let mut types = HashMap::new();
        for line in text.lines() {
            if let Some(t) = line.strip_prefix("# TYPE ") {
                let (name, kind) = t.split_once(' ').expect("TYPE name kind");
                types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample value");
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once("=\"").expect("label");
                    (k.to_string(), v.trim_end_matches('"').to_string())
                })
                .collect();
            samples.push((name.to_string(), labels, value.parse().expect("number")));
        }
        Scrape { samples, types }
    }

    /// The sum of `name` over the samples whose labels include all of `want`.
    fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && want
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }
}

async fn scrape(h: &Harness, accept: &str) -> (String, String) {
    let url = format!("http://{}/metrics", h.gw().admin_addr());
    let resp = h
        .client
        .get(url)
        .header("accept", accept)
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_string();
    (ct, resp.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_counts_each_request_once_with_its_flow_tokens_cost_and_latency() {
    let mut spec = Spec::standard().routing("source_queue", "0");
    spec.dep(M, "us-east-1").max_in_flight = 1;
    for r in US {
        spec.price(M, r, 1.0, 2.0);
    }
    let h = Harness::start(spec).await;
    let profile = format!("us.{M}");

    // us-east-1 full: 3 profile calls spill, a plain-id call is throttled for capacity.
    let mut held = h.hold_n("us-east-1", M, "us-east-1", 20).await;
    for _ in 0..3 {
        let r = h.chat("us-east-1", body(&profile, 4)).await;
        assert_eq!(r.reason(), Some("spill:capacity"), "{r:?}");
    }
    h.chat("us-east-1", body(M, 2)).await.assert_throttled();
    // 2 streams, served at home in us-east-2.
    for _ in 0..2 {
        let (_, resp) = h.stream("us-east-2", stream_body(M, 3)).await;
        assert_eq!(resp.status(), 200);
        resp.text().await.expect("the whole stream");
    }
    // A caller with a wrong key.
    let r = h.chat_as("us-east-1", Some("sk-wrong"), body(M, 2)).await;
    assert_eq!(r.status.as_u16(), 401);
    held.rest().await;

    // 3 spilled + 1 throttled + 2 streams + 1 refused + the held stream = 8 requests.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, text) = scrape(&h, "text/plain").await;
        let counted = Scrape::parse(&text).sum("spillway_requests_total", &[]);
        if counted == 8.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{counted} of 8 requests counted:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (ct, text) = scrape(&h, "text/plain").await;
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let s = Scrape::parse(&text);
    assert_eq!(s.types["spillway_requests_total"], "counter");
    assert_eq!(s.types["spillway_request_duration_seconds"], "histogram");
    assert!(!text.contains("# EOF") && !text.contains("# UNIT"));

    let acme = [("tenant", "acme")];
    let spills = [("source", "us-east-1"), ("reason", "spill:capacity")];
    assert_eq!(s.sum("spillway_flows_total", &spills), 3.0, "{text}");
    assert_eq!(
        s.sum("spillway_flows_total", &[]),
        3.0,
        "only spills left their source"
    );
    assert_eq!(
        s.sum(
            "spillway_requests_total",
            &[
                ("profile", profile.as_str()),
                ("model", M),
                ("outcome", "ok")
            ]
        ),
        3.0
    );
    assert_eq!(
        s.sum(
            "spillway_requests_total",
            &[("outcome", "unauthorized"), ("tenant", "")]
        ),
        1.0
    );
    assert_eq!(
        s.sum(
            "spillway_throttles_total",
            &[("kind", "capacity"), ("tenant", "acme")]
        ),
        1.0
    );
    // Streams only: the 2 streams and the held one; the 3 spilled calls are not streams.
    assert_eq!(s.sum("spillway_ttft_seconds_count", &[]), 3.0, "{text}");
    assert_eq!(s.sum("spillway_tpot_seconds_count", &[]), 3.0, "{text}");
    assert_eq!(s.sum("spillway_request_duration_seconds_count", &[]), 8.0);
    assert_eq!(s.sum("spillway_gateway_overhead_seconds_count", &[]), 8.0);
    let output = s.sum(
        "spillway_tokens_total",
        &[("tenant", "acme"), ("type", "output")],
    );
    assert_eq!(output, 3.0 * 4.0 + 2.0 * 3.0 + 20.0, "{text}");
    let input = s.sum(
        "spillway_tokens_total",
        &[("tenant", "acme"), ("type", "input")],
    );
    assert!(input > 0.0);
    // $1/Mtok in, $2/Mtok out, at the source region's price.
    let cost = s.sum("spillway_cost_usd_total", &acme);
    let want = (input * 1.0 + output * 2.0) / 1e6;
    assert!((cost - want).abs() < 1e-12, "cost {cost} want {want}");
    assert_eq!(
        s.sum("spillway_upstream_attempts_total", &[("result", "ok")]),
        6.0
    );
    assert_eq!(s.sum("spillway_upstream_attempts_total", &[]), 6.0);
    assert_eq!(
        s.sum(
            "spillway_deployment_limit",
            &[("region", "us-east-1"), ("model", M)]
        ),
        1.0
    );

    // Prometheus's own Accept gets OpenMetrics.
    let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (ct, om) = scrape(&h, prom).await;
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert!(om.ends_with("# EOF\n") && om.contains("# TYPE spillway_requests counter"));
    h.assert_residency();
}
