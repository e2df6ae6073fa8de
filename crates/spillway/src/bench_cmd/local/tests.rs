//! The topology each policy is served on, and the variants' routing options.
use super::*;

#[test]
fn every_policy_topology_is_valid_and_the_profile_stays_in_the_us() {
    for p in POLICIES {
        let cfg = Config::parse(&topology(p, 4, 30.0, 1, 64), "<t>")
            .unwrap_or_else(|e| panic!("{p}: {e}"));
        let sets = allowed_sets(&cfg, &format!("us.{MODEL}"));
        for (src, set) in &sets {
            assert_eq!(set.len(), 3, "{src}: {set:?}");
            assert!(set.iter().all(|r| r.starts_with("us-")), "{src}: {set:?}");
        }
        assert_eq!(
            allowed_sets(&cfg, MODEL)["us-east-2"],
            HashSet::from(["us-east-2".to_string()])
        );
    }
}

#[test]
fn a_tuned_variant_sets_its_routing_options_and_refuses_unknown_ones() {
    let t = topology("spillway:source_wait=0.3:source_wait_ttft=2", 4, 30.0, 1, 0);
    assert!(
        t.contains("source_wait = 0.3\nsource_wait_ttft = 2.0\n"),
        "{t}"
    );
    let cfg = Config::parse(&t, "<t>").expect("valid");
    assert!((cfg.router.source_wait - 0.3).abs() < 1e-12);
    assert!((cfg.router.source_wait_ttft - 2.0).abs() < 1e-12);
    for bad in [
        "max_attempts=2",
        "source_wait",
        "source_wait=x",
        "source_wait=NaN",
    ] {
        assert!(variant_options(bad).is_err(), "{bad}");
    }
    // Infinity lifts the TTFT bound, as in the configuration file.
    let cfg = Config::parse(
        &topology("spillway:source_wait_ttft=inf", 4, 30.0, 1, 0),
        "<t>",
    )
    .expect("valid");
    assert!(cfg.router.source_wait_ttft.is_infinite());
    // A whole number of reserved slots is written as a TOML integer; a fraction is refused.
    let t = topology("spillway:spill_reserve=2", 4, 30.0, 1, 0);
    assert!(t.contains("spill_reserve = 2\n"), "{t}");
    assert_eq!(
        Config::parse(&t, "<t>")
            .expect("valid")
            .router
            .spill_reserve,
        Some(2)
    );
    let t = topology("spillway:spill_reserve=1.5", 4, 30.0, 1, 0);
    let e = Config::parse(&t, "<t>").expect_err("a fraction of a slot");
    assert!(e.to_string().contains("spill_reserve"), "{e}");
}

#[test]
fn a_cache_variant_keeps_affinity_on_and_sets_its_locality() {
    let t = topology("spillway-cache:cache_min_locality=0", 4, 30.0, 1, 64);
    let cfg = Config::parse(&t, "<t>").expect("valid");
    assert_eq!(cfg.router.cache_min_locality, 0.0);
    assert!(t.contains("cache_affinity = \"on\""), "{t}");
    // Spillway's default keeps nine in ten, and the gateway refuses a share above 1.
    let cfg = Config::parse(&topology("spillway-cache", 4, 30.0, 1, 64), "<t>").expect("valid");
    assert_eq!(cfg.router.cache_min_locality, 0.9);
    let t = topology("spillway-cache:cache_min_locality=2", 4, 30.0, 1, 64);
    let e = Config::parse(&t, "<t>").expect_err("out of range");
    assert!(e.to_string().contains("routing.cache_min_locality"), "{e}");
}
