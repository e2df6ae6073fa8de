use super::*;

#[test]
fn slo_parses_with_defaults_and_rejects_nonsense() {
    assert_eq!("".parse::<Slo>().unwrap(), Slo::default());
    let s: Slo = "ttft_ms=500, tpot_ms=50".parse().unwrap();
    assert_eq!((s.ttft_ms, s.tpot_ms), (500.0, 50.0));
    let s: Slo = "tpot_ms=10".parse().unwrap();
    assert_eq!((s.ttft_ms, s.tpot_ms), (2000.0, 10.0));
    for bad in ["ttft=5", "ttft_ms", "ttft_ms=-1", "ttft_ms=abc"] {
        assert!(bad.parse::<Slo>().is_err(), "{bad}");
    }
}

fn result(
    id: &str,
    source: &str,
    served: Option<&str>,
    status: u16,
    ttft_ms: u64,
) -> RequestResult {
    RequestResult {
        id: id.into(),
        source: source.into(),
        status,
        served_region: served.map(str::to_string),
        ttft: (status == 200).then(|| Duration::from_millis(ttft_ms)),
        e2e: Duration::from_millis(ttft_ms + 10),
        output_chunks: 10,
        complete: status == 200,
        late: Duration::ZERO,
        transcript: None,
    }
}

#[test]
fn figures_are_in_trace_time_with_the_rtt_added() {
    let sent: HashMap<String, Sent> = ["a", "b", "c", "d"]
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let s = Sent {
                source: "east".into(),
                at: Duration::from_secs(i as u64),
                output_tokens: 10,
            };
            (id.to_string(), s)
        })
        .collect();
    let cx = Context {
        sent: &sent,
        window_secs: 4.0,
        slo: "ttft_ms=1000".parse().unwrap(),
        scale: Scale {
            time_scale: 10.0,
            rtt_ms: HashMap::from([(("west".into(), "east".into()), 70.0)]),
            local_rtt_ms: 1.0,
        },
        oracle_rps: 1.0,
        regions: vec!["east".into(), "west".into()],
        timeline_buckets: 2,
    };
    let results = [
        result("a", "east", Some("east"), 200, 20),
        result("b", "east", Some("west"), 200, 95),
        result("c", "east", None, 429, 0),
        result("d", "east", None, 500, 0),
    ];
    let p = policy_report("x", &results, 0, &cx);
    assert_eq!((p.offered, p.served, p.throttled, p.failed), (4, 2, 1, 1));
    // a: 200 + 1 ms; b: 950 + 70 ms, over the 1000 ms SLO.
    assert_eq!(p.ttft_ms, vec![201.0, 1020.0]);
    assert_eq!(p.goodput_rps, 0.25);
    assert_eq!(p.goodput_tps, 2.5);
    assert_eq!(p.goodput_vs_oracle, 0.25);
    assert_eq!(p.tpot_p50_ms, 10.0);
    assert_eq!((p.locality, p.spilled), (0.5, 0.5));
    assert_eq!(p.timeline.served, vec![vec![1, 1], vec![0, 0]]);
    assert_eq!(p.timeline.offered, vec![2, 2]);
    assert_eq!(p.served_by_region["west"], 1);
}
