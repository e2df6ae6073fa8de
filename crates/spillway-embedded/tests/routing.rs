//! Routing: source first, spill within the profile's destination set when the source is full,
//! throttling when nothing can admit, tenants' denied regions, deployment RPM/TPM.
mod common;

use common::*;
use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_calls_are_served_in_the_source_region_while_it_has_headroom() {
    let h = Harness::start(Spec::standard()).await;
    let profile = format!("us.{M}");
    let replies: Vec<Reply> = futures_util::stream::iter(0..200)
        .map(|_| h.chat("us-east-1", body(&profile, 2)))
        .buffer_unordered(4)
        .collect()
        .await;
    let mut local = 0;
    for r in &replies {
        assert_eq!(r.status.as_u16(), 200, "{r:?}");
        assert_eq!(r.header("x-spillway-source-region"), Some("us-east-1"));
        let recs = h.records_for(&r.id);
        assert_eq!(recs.len(), 1, "one upstream attempt each: {recs:?}");
        assert_eq!(recs[0].outcome, "ok");
        assert_eq!(Some(recs[0].region.as_str()), r.region(), "header = record");
        if r.region() == Some("us-east-1") && r.reason() == Some("local") {
            local += 1;
        }
    }
    assert!(local >= 198, "only {local} of 200 served in the source");
    assert_eq!(h.records_in("us-east-1").len(), local);

    // Each source serves its own profile calls and plain ids, in every geography.
    for src in US.iter().chain(EU.iter()) {
        let geo = h.spec.geography(src).to_string();
        for model in [format!("{geo}.{M}"), M.to_string(), format!("global.{M}")] {
            let r = h.chat(src, body(&model, 2)).await;
            r.assert_ok_in(src, "local");
            assert_eq!(r.header("x-spillway-source-region"), Some(*src));
            assert_eq!(r.json["usage"]["completion_tokens"], 2);
            assert_eq!(h.records_for(&r.id)[0].region, *src);
        }
    }
    assert_eq!(h.assert_residency(), 200 + 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_source_spills_within_the_geography_and_plain_ids_are_throttled() {
    // No waiting in the source's queue: a full region is full (that wait is unit-tested in core).
    let mut spec = Spec::standard().routing("source_queue", "0");
    spec.dep(M, "us-east-1").max_in_flight = 2;
    spec.dep(M, "us-east-2").max_in_flight = 1;
    spec.dep(M, "us-west-2").max_in_flight = 1;
    let h = Harness::start(spec).await;
    let profile = format!("us.{M}");

    let _a = h.hold("us-east-1", M, "us-east-1").await;
    let _b = h.hold("us-east-1", M, "us-east-1").await;

    // Profile calls go to another region of the set, never to the idle eu regions.
    let mut seen = Vec::new();
    for _ in 0..20 {
        let r = h.chat("us-east-1", body(&profile, 2)).await;
        assert_eq!(r.status.as_u16(), 200, "{r:?}");
        assert_eq!(r.reason(), Some("spill:capacity"), "{r:?}");
        let region = r.region().expect("region header").to_string();
        assert!(
            ["us-east-2", "us-west-2"].contains(&region.as_str()),
            "{r:?}"
        );
        assert_eq!(h.records_for(&r.id)[0].region, region);
        seen.push(region);
    }
    assert!(h.records_in("us-east-1").iter().all(|r| r.outcome != "ok"));

    // The plain id has only the source: 429 in OpenAI's shape, with Retry-After.
    let r = h.chat("us-east-1", body(M, 2)).await;
    r.assert_throttled();
    assert_eq!(r.json["error"]["code"], "rate_limit_exceeded");
    assert!(h.records_for(&r.id).is_empty());

    // Every us region full: the profile is throttled too, and still never leaves the geography.
    let _c = h.hold("us-east-2", M, "us-east-2").await;
    let _d = h.hold("us-west-2", M, "us-west-2").await;
    let r = h.chat("us-east-1", body(&profile, 2)).await;
    r.assert_throttled();
    assert!(h.records_for(&r.id).is_empty(), "nothing tried");
    for eu in EU {
        assert!(
            h.records_in(eu).is_empty(),
            "{eu} saw {:?}",
            h.records_in(eu)
        );
    }

    // The eu profile from an eu source is unaffected.
    let r = h.chat("eu-west-1", body(&format!("eu.{M}"), 2)).await;
    r.assert_ok_in("eu-west-1", "local");
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_denied_regions_are_never_used() {
    let mut spec = Spec::standard();
    spec.dep(M, "us-east-1").max_in_flight = 1;
    let mut t = Tenant::new("restricted", "sk-restricted");
    t.denied = vec!["us-east-2".into()];
    spec.tenants.push(t);
    let mut t = Tenant::new("no-home", "sk-no-home");
    t.denied = vec!["us-east-1".into()];
    spec.tenants.push(t);
    let h = Harness::start(spec).await;
    let profile = format!("us.{M}");

    // Source full: the restricted tenant spills, but only to us-west-2.
    let _held = h.hold("us-east-1", M, "us-east-1").await;
    for _ in 0..10 {
        let r = h
            .chat_as("us-east-1", Some("sk-restricted"), body(&profile, 2))
            .await;
        r.assert_ok_in("us-west-2", "spill:capacity");
    }
    assert!(h.records_in("us-east-2").is_empty());
    drop(_held);
    eventually("the held slot is released", || {
        h.sim("us-east-1").in_flight() == 0
    })
    .await;

    // A tenant that denies its own source region is never served there, whatever the headroom;
    // its plain-id calls have no allowed region at all.
    for _ in 0..10 {
        let r = h
            .chat_as("us-east-1", Some("sk-no-home"), body(&profile, 2))
            .await;
        assert_eq!(r.status.as_u16(), 200, "{r:?}");
        assert_ne!(r.region(), Some("us-east-1"), "{r:?}");
    }
    let r = h.chat_as("us-east-1", Some("sk-no-home"), body(M, 2)).await;
    r.assert_error(403, "permission_error");
    assert!(h.records_for(&r.id).is_empty());
    let home: Vec<_> = h
        .records_in("us-east-1")
        .into_iter()
        .filter(|r| r.outcome == "ok")
        .collect();
    assert!(home.is_empty(), "{home:?}");
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rpm_and_tpm_limit_requests_there() {
    let mut spec = Spec::standard();
    spec.dep(M, "us-east-1").rpm = Some(3);
    spec.dep(M, "us-east-2").tpm = Some(1000);
    let h = Harness::start(spec).await;
    let profile = format!("us.{M}");

    for _ in 0..3 {
        h.chat("us-east-1", body(M, 2))
            .await
            .assert_ok_in("us-east-1", "local");
    }
    // us-east-1 has used its 3 requests this minute.
    let r = h.chat("us-east-1", body(M, 2)).await;
    r.assert_throttled();
    assert!(h.records_for(&r.id).is_empty());
    let r = h.chat("us-east-1", body(&profile, 2)).await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    assert_eq!(r.reason(), Some("spill:capacity"));
    assert_ne!(r.region(), Some("us-east-1"));
    assert_eq!(h.records_in("us-east-1").len(), 3);

    // us-east-2 admits at most 1000 estimated tokens a minute: prompt + max_tokens = 1001 is
    // more than it can ever take (400 for its plain id, which has nowhere else to go), 991
    // fits.
    let too_big = 1000 - prompt() + 1;
    let r = h.chat("us-east-2", body(M, too_big)).await;
    r.assert_error(400, "invalid_request_error");
    assert!(h.records_for(&r.id).is_empty());
    let r = h.chat("us-east-2", body(&profile, too_big)).await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    assert_eq!(r.region(), Some("us-west-2"), "{r:?}");
    assert_eq!(r.reason(), Some("spill:capacity"));
    h.chat("us-east-2", body(M, too_big - 10))
        .await
        .assert_ok_in("us-east-2", "local");
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_stream_counts_against_the_deployment_tpm() {
    let mut spec = Spec::standard();
    spec.dep(M, "us-east-1").tpm = Some(2100);
    let h = Harness::start(spec).await;
    let (_, resp) = h.stream("us-east-1", stream_body(M, 500)).await;
    let events = Sse::new(resp).rest().await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    // 505 tokens used this minute: an estimate of the whole TPM does not fit (~14 s of refill).
    let r = h.chat("us-east-1", body(M, 2100 - prompt())).await;
    r.assert_throttled();
    let r = h
        .chat("us-east-1", body(&format!("us.{M}"), 2100 - prompt()))
        .await;
    assert_eq!(r.reason(), Some("spill:capacity"), "{r:?}");
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_streamed_before_a_break_count_against_the_deployment_tpm() {
    let mut spec = Spec::standard();
    spec.dep(M, "us-east-1").tpm = Some(2100);
    let h = Harness::start(spec).await;
    h.sim("us-east-1").set_fault(spillway_sim::Fault {
        break_after_tokens: Some(500),
        ..Default::default()
    });
    let (id, resp) = h.stream("us-east-1", stream_body(M, 1000)).await;
    let events = Sse::new(resp).rest().await;
    assert!(events.last().is_some_and(|e| e.contains("\"error\"")));
    let rec = &h.records_for(&id)[0];
    assert_eq!(
        (rec.outcome.as_str(), rec.completion_tokens),
        ("broken", 500)
    );
    h.sim("us-east-1").set_fault(spillway_sim::Fault::default());

    // The upstream produced 505 tokens this minute; a request estimated at its whole TPM
    // (5 + 2095 = 2100) cannot fit there for another ~14 s.
    let r = h.chat("us-east-1", body(M, 2100 - prompt())).await;
    r.assert_throttled();
    h.assert_residency();
}
