use super::*;

fn cfg(concurrency: u32, queue_limit: u32) -> SimConfig {
    SimConfig {
        concurrency,
        queue_limit,
        ..SimConfig::default()
    }
}

#[test]
fn text_is_one_estimated_token_per_word() {
    let text = completion_text(37);
    assert_eq!(spillway_proto::tokens::text_tokens(&text), 37);
    assert_eq!(completion_text(3), " the sea was");
    assert_eq!(token_text(16), token_text(0));
}

#[test]
fn plan_times_scale_with_input_output_slowness_and_time_scale() {
    let c = SimConfig {
        time_scale: 2.0,
        ..SimConfig::default()
    };
    let p = Plan::new(&c, &Fault::default(), None, 4000);
    assert_eq!(p.prefill, Duration::from_millis(500));
    assert_eq!(p.output_tokens, 16);
    assert_eq!(p.finish_reason(), "stop");
    assert_eq!(p.decode_time(16), Duration::from_millis(160));
    let slow = Fault {
        slow_factor: 3.0,
        ..Fault::default()
    };
    let p = Plan::new(&c, &slow, Some(5), 4000);
    assert_eq!(p.prefill, Duration::from_millis(1500));
    assert_eq!(p.service_time(), Duration::from_millis(1500 + 150));
    assert_eq!(p.finish_reason(), "length");
}

#[test]
fn break_only_when_the_response_reaches_it() {
    let c = SimConfig::default();
    let f = |k| Fault {
        break_after_tokens: Some(k),
        ..Fault::default()
    };
    assert_eq!(Plan::new(&c, &f(3), Some(5), 1).break_after, Some(3));
    assert_eq!(Plan::new(&c, &f(5), Some(5), 1).break_after, Some(5));
    assert_eq!(Plan::new(&c, &f(6), Some(5), 1).break_after, None);
}

#[test]
fn the_earliest_fault_point_cuts_and_ties_go_break_error_stall() {
    let c = SimConfig::default();
    let f = |b, e, s| Fault {
        break_after_tokens: b,
        error_event_after_tokens: e,
        stall_after_tokens: s,
        ..Fault::default()
    };
    let cut = |fault: Fault| Plan::new(&c, &fault, Some(5), 1).cut();
    assert_eq!(cut(f(None, None, None)), None);
    assert_eq!(cut(f(None, Some(2), None)), Some((2, Cut::ErrorEvent)));
    assert_eq!(
        cut(f(None, Some(6), None)),
        None,
        "the response never gets there"
    );
    assert_eq!(cut(f(Some(6), Some(5), None)), Some((5, Cut::ErrorEvent)));
    assert_eq!(cut(f(Some(3), Some(2), Some(1))), Some((1, Cut::Stall)));
    assert_eq!(cut(f(Some(2), Some(2), Some(2))), Some((2, Cut::Break)));
    assert_eq!(cut(f(None, Some(2), Some(2))), Some((2, Cut::ErrorEvent)));
}

#[test]
fn an_uncapped_length_other_than_the_default_stops() {
    let c = SimConfig::default();
    let p = Plan::with_default(&c, &Fault::default(), None, 3, 1);
    assert_eq!((p.output_tokens, p.finish_reason()), (3, "stop"));
    let p = Plan::with_default(&c, &Fault::default(), Some(9), 3, 1);
    assert_eq!((p.output_tokens, p.finish_reason()), (9, "length"));
}

#[test]
fn absurd_numbers_do_not_panic() {
    assert_eq!(secs(f64::NAN), Duration::ZERO);
    assert_eq!(secs(-1.0), Duration::ZERO);
    assert_eq!(secs(f64::INFINITY), MAX_WAIT);
    let c = SimConfig {
        time_scale: f64::INFINITY,
        ..SimConfig::default()
    };
    let p = Plan::new(&c, &Fault::default(), Some(u64::MAX), u64::MAX);
    assert_eq!(p.output_tokens, MAX_OUTPUT_TOKENS);
    assert_eq!(p.service_time(), Duration::ZERO);
}

#[tokio::test]
async fn queue_then_throttle_with_retry_after_from_earliest_end() {
    let e = Engine::new(&cfg(1, 1));
    let first = e.admit(Duration::from_secs(10)).await.unwrap();
    assert_eq!(e.in_flight(), 1);
    let e2 = e.clone();
    let queued = tokio::spawn(async move { e2.admit(Duration::from_secs(1)).await.is_ok() });
    while e.waiting() == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(e.in_flight(), 2);
    let refused = e.admit(Duration::from_secs(1)).await.err().unwrap();
    assert!(refused.retry_after > Duration::from_secs(9), "{refused:?}");
    assert_eq!(e.in_flight(), 2, "a refused request is not in flight");
    drop(first);
    assert!(queued.await.unwrap());
    assert_eq!(e.in_flight(), 0);
    assert_eq!(e.waiting(), 0);
}

#[tokio::test]
async fn a_waiter_that_goes_away_gives_back_its_place() {
    let e = Engine::new(&cfg(1, 1));
    let _first = e.admit(Duration::from_secs(1)).await.unwrap();
    let e2 = e.clone();
    let queued = tokio::spawn(async move { e2.admit(Duration::from_secs(1)).await.is_ok() });
    while e.waiting() == 0 {
        tokio::task::yield_now().await;
    }
    queued.abort();
    let _ = queued.await;
    assert_eq!(e.waiting(), 0);
    assert_eq!(e.in_flight(), 1);
}

/// A sequence's slot is free at its planned end, whether or not its body has finished
/// writing (the tokio timer wakes it up to a tick late, more on a busy runtime).
#[tokio::test(start_paused = true)]
async fn a_slot_is_free_at_its_planned_end_before_the_body_lets_go() {
    let e = Engine::new(&cfg(1, 0));
    let first = e.admit(Duration::from_millis(10)).await.unwrap();
    assert!(e.admit(Duration::from_millis(10)).await.is_err(), "full");
    tokio::time::advance(Duration::from_millis(10)).await;
    let second = e.admit(Duration::from_millis(10)).await.unwrap();
    assert_eq!(second.start(), first.start() + Duration::from_millis(10));
    assert_eq!(e.in_flight(), 2, "the first body is still writing");
    drop(first);
    assert!(
        e.admit(Duration::from_millis(10)).await.is_err(),
        "the second runs"
    );
}

/// A queued request starts when the slot freed, not when the body that held it let go;
/// one whose holder went away early starts then.
#[tokio::test(start_paused = true)]
async fn a_queued_request_starts_when_its_slot_freed() {
    let e = Engine::new(&cfg(1, 2));
    let t0 = Instant::now();
    let first = e.admit(Duration::from_millis(10)).await.unwrap();
    let (e2, e3) = (e.clone(), e.clone());
    let second = tokio::spawn(async move { e2.admit(Duration::from_secs(10)).await });
    let third = tokio::spawn(async move { e3.admit(Duration::from_secs(1)).await });
    while e.waiting() < 2 {
        tokio::task::yield_now().await;
    }
    tokio::time::advance(Duration::from_millis(15)).await;
    drop(first);
    let second = second.await.unwrap().unwrap();
    assert_eq!(second.start(), t0 + Duration::from_millis(10));
    tokio::time::advance(Duration::from_millis(5)).await;
    drop(second);
    let third = third.await.unwrap().unwrap();
    assert_eq!(
        third.start(),
        t0 + Duration::from_millis(20),
        "freed early, at the drop"
    );
    assert_eq!((e.waiting(), e.in_flight()), (0, 1));
}

#[test]
fn tokens_due_agrees_with_the_deadlines() {
    let c = SimConfig {
        time_scale: 30.0,
        ..SimConfig::default()
    };
    let p = Plan::new(&c, &Fault::default(), Some(200), 10);
    let start = Instant::now();
    for k in [0u64, 1, 2, 3, 99, 150, 199, 200] {
        let at = start + p.decode_time(k);
        assert_eq!(p.tokens_due(start, at), k, "at token {k}'s deadline");
        if k > 0 {
            let before = at - Duration::from_nanos(1);
            assert_eq!(p.tokens_due(start, before), k - 1, "just before token {k}");
        }
    }
    assert_eq!(p.tokens_due(start, start + Duration::from_secs(9)), 200);
    assert_eq!(p.tokens_due(start + Duration::from_secs(1), start), 0);
    let instant = SimConfig {
        time_scale: f64::INFINITY,
        ..SimConfig::default()
    };
    let p = Plan::new(&instant, &Fault::default(), Some(7), 10);
    assert_eq!(p.tokens_due(start, start), 7);
}

/// A non-streamed 200-token decode at 50 tokens/s and time scale 30: 133.3 ms, one sleep.
#[tokio::test(start_paused = true)]
async fn non_streamed_decode_keeps_the_configured_rate() {
    let c = SimConfig {
        time_scale: 30.0,
        ..SimConfig::default()
    };
    let p = Plan::new(&c, &Fault::default(), Some(200), 10);
    let start = Instant::now();
    decode(&p, start, 200).await;
    let took = start.elapsed();
    assert!(
        took.abs_diff(Duration::from_micros(133_333)) <= HALF_TICK,
        "decode took {took:?}"
    );
}

/// Tokio wakes a sleep at the first 1 ms tick at or after its deadline; `sleep_until`
/// lands within half a tick of the deadline, either side, wherever it falls in the tick.
#[tokio::test(start_paused = true)]
async fn sleep_until_lands_within_half_a_tick_of_the_deadline() {
    for micros in [0u64, 200, 499, 500, 501, 700, 999, 1000, 7300, 7800] {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_millis(3) + Duration::from_micros(micros);
        sleep_until(deadline).await;
        let woke = Instant::now();
        assert!(
            woke.max(deadline) - woke.min(deadline) <= HALF_TICK,
            "deadline +{micros} us: woke {:?} from it",
            woke.checked_duration_since(deadline)
                .map_or_else(|| format!("-{:?}", deadline - woke), |d| format!("+{d:?}"))
        );
    }
    let now = Instant::now();
    sleep_until(now + Duration::from_micros(400)).await;
    assert_eq!(Instant::now(), now, "not slept for within half a tick");
}

/// A sequence that finished hands its slot over at its planned end, even when the body let
/// go of it before that (woken up to half a tick early): early wake-ups do not add up along
/// a queue.
#[tokio::test(start_paused = true)]
async fn a_finished_sequence_hands_over_at_its_planned_end() {
    let e = Engine::new(&cfg(1, 1));
    let t0 = Instant::now();
    let first = e.admit(Duration::from_millis(10)).await.unwrap();
    let e2 = e.clone();
    let second = tokio::spawn(async move { e2.admit(Duration::from_millis(10)).await });
    while e.waiting() == 0 {
        tokio::task::yield_now().await;
    }
    tokio::time::advance(Duration::from_micros(9_600)).await;
    first.finish();
    let second = second.await.unwrap().unwrap();
    assert_eq!(second.start(), t0 + Duration::from_millis(10));
}
