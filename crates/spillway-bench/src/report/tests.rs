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
        route_reason: None,
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
    // b spilled without a route reason: not a move for a cache.
    assert_eq!(p.headroom_locality, 1.0);
    assert_eq!(p.timeline.served, vec![vec![1, 1], vec![0, 0]]);
    assert_eq!(p.timeline.offered, vec![2, 2]);
    assert_eq!(p.served_by_region["west"], 1);
}

/// One region (`east`), a one-second window, an oracle of 1/s.
fn one_region(sent: &HashMap<String, Sent>) -> Context<'_> {
    Context {
        sent,
        window_secs: 1.0,
        slo: Slo::default(),
        scale: Scale {
            time_scale: 1.0,
            rtt_ms: HashMap::new(),
            local_rtt_ms: 0.0,
        },
        oracle_rps: 1.0,
        regions: vec!["east".into()],
        timeline_buckets: 1,
    }
}

#[test]
fn a_policy_above_the_bound_is_a_breach_not_a_share() {
    let sent: HashMap<String, Sent> = HashMap::new();
    let cx = one_region(&sent);
    let results = [
        result("a", "east", Some("east"), 200, 20),
        result("b", "east", Some("east"), 200, 20),
    ];
    let p = |name: &str, oracle_rps: f64| {
        policy_report(
            name,
            &results,
            0,
            &Context {
                oracle_rps,
                ..cx.clone()
            },
        )
    };
    let (oracle, setup) = (bound_of(2.0), tiny_setup());
    // 2 good/s against a bound of 2/s (rounding allowed: 2/1.995), then of 1.5/s.
    let held = BenchReport {
        policies: vec![p("round-robin", 2.0), p("spillway", 1.995)],
        oracle: Some(oracle.clone()),
        setup: setup.clone(),
        notes: vec![],
    };
    assert!(breaches(&held).is_empty());
    let t = table(&held);
    assert!(!t.contains("BREACH"), "{t}");
    assert!(
        t.contains("tail: spillway TTFT p50 1.00x, p99 1.00x the best of round-robin"),
        "{t}"
    );
    let broken = BenchReport {
        policies: vec![p("round-robin", 2.0), p("spillway", 1.5)],
        oracle: Some(oracle),
        setup,
        notes: vec![],
    };
    let b = breaches(&broken);
    assert_eq!(b.len(), 1, "{b:?}");
    assert!(
        b[0].starts_with("spillway served 2.000 good requests/s, 133.3%"),
        "{b:?}"
    );
    let t = table(&broken);
    assert!(
        t.contains("BREACH") && t.contains("error: spillway served"),
        "{t}"
    );
    assert!(!t.contains("133.3%  "), "{t}");
}

fn bound_of(goodput_rps: f64) -> crate::oracle::Oracle {
    crate::oracle::Oracle {
        goodput_rps,
        served: goodput_rps,
        schedule_served: goodput_rps,
        in_region_served: goodput_rps,
        local_share: 1.0,
        offered: goodput_rps,
        bucket_secs: 0.25,
        buckets: 4,
        iterations: 0,
    }
}

fn tiny_setup() -> Setup {
    Setup {
        arrivals: "poisson 2/s".into(),
        sources: vec!["east".into()],
        regions: vec!["east".into()],
        concurrency: 1,
        concurrency_from: "--concurrency".into(),
        region_capacity_rps: 1.0,
        mean_service_ms: 10.0,
        time_scale: 1.0,
        window_secs: 1.0,
        slo_ttft_ms: 2000.0,
        slo_tpot_ms: 200.0,
        max_input_tokens: 1,
        max_output_tokens: 1,
        rtt_added: true,
    }
}

#[test]
fn prefix_lines_compare_prefill_with_cache_blind_spillway() {
    let sent: HashMap<String, Sent> = HashMap::new();
    let cx = one_region(&sent);
    let results = [result("a", "east", Some("east"), 200, 20)];
    let with = |name: &str, hit, miss, prefill| {
        let mut p = policy_report(name, &results, 0, &cx);
        p.prefix = Some(PrefixFigures {
            hit_blocks: hit,
            miss_blocks: miss,
            prefill_tokens: prefill,
            floor_tokens: None,
        });
        p
    };
    let r = BenchReport {
        policies: vec![
            with("spillway", 10, 30, 20_000),
            with("spillway-cache", 30, 10, 5_000),
            policy_report("round-robin", &results, 0, &cx),
        ],
        oracle: None,
        setup: tiny_setup(),
        notes: vec![],
    };
    let t = table(&r);
    assert!(
        t.contains("prefix cache: spillway 25.0% of blocks hit, 20000 prompt tokens prefilled; 100.0% local where the source had room\n"),
        "{t}"
    );
    assert!(
        t.contains("prefix cache: spillway-cache 75.0% of blocks hit, 5000 prompt tokens prefilled (0.25x spillway's)"),
        "{t}"
    );
    assert!(!t.contains("prefix cache: round-robin"), "{t}");
    assert_eq!(PrefixFigures::default().hit_rate(), 0.0);
}

#[test]
fn prefix_lines_read_prefill_against_the_floor_and_a_policy_below_it_is_a_breach() {
    let sent: HashMap<String, Sent> = HashMap::new();
    let cx = one_region(&sent);
    let results = [result("a", "east", Some("east"), 200, 20)];
    let with = |name: &str, prefill, floor| {
        let mut p = policy_report(name, &results, 0, &cx);
        p.prefix = Some(PrefixFigures {
            hit_blocks: 1,
            miss_blocks: 1,
            prefill_tokens: prefill,
            floor_tokens: Some(floor),
        });
        p
    };
    let mut r = BenchReport {
        policies: vec![
            with("spillway", 20_000, 16_000),
            with("spillway-cache", 16_000, 16_000),
        ],
        oracle: None,
        setup: tiny_setup(),
        notes: vec![],
    };
    let t = table(&r);
    assert!(
        t.contains("spillway 50.0% of blocks hit, 20000 prompt tokens prefilled (1.25x its floor of 16000: at most 20% less possible); "),
        "{t}"
    );
    assert!(
        t.contains("prompt tokens prefilled (0.80x spillway's; 1.00x its floor of 16000: at most 0% less possible)"),
        "{t}"
    );
    assert!(breaches(&r).is_empty());
    r.policies[1] = with("spillway-cache", 15_999, 16_000);
    let t = table(&r);
    assert!(t.contains("BELOW its floor of 16000"), "{t}");
    let b = breaches(&r);
    assert_eq!(b.len(), 1, "{b:?}");
    assert!(
        b[0].starts_with("spillway-cache prefilled 15999 prompt tokens, below the floor of 16000"),
        "{b:?}"
    );
    assert!(t.contains(&format!("error: {}", b[0])), "{t}");
}

#[test]
fn locality_where_the_source_had_room_leaves_out_spills_for_capacity() {
    let sent: HashMap<String, Sent> = HashMap::new();
    let cx = one_region(&sent);
    let with = |id: &str, served: &str, reason: &str| RequestResult {
        route_reason: Some(reason.into()),
        ..result(id, "east", Some(served), 200, 20)
    };
    let results = [
        with("a", "east", "local"),
        with("b", "east", "local"),
        with("c", "east", "local"),
        with("d", "west", "spill:cache"),
        with("e", "west", "spill:capacity"),
        with("f", "west", "failover:timeout"),
        with("g", "west", "spill:balance"),
        with("h", "west", "spill:unhealthy"),
    ];
    let p = policy_report("x", &results, 0, &cx);
    assert_eq!(p.locality, 3.0 / 8.0);
    assert_eq!(p.headroom_locality, 0.6);
}
