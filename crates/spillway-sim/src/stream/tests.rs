use super::*;
use crate::engine::Engine;
use crate::record::{Recorder, ServedRecord};
use crate::{Fault, SimConfig};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;

struct Rig {
    engine: Arc<Engine>,
    recorder: Arc<Recorder>,
    shutdown: watch::Sender<bool>,
}

/// A body for `n` tokens at 50 tokens/s (20 ms each), decode starting now.
async fn body_for(
    n: u64,
    fault: Fault,
    include_usage: bool,
) -> (Rig, impl Stream<Item = Result<Bytes, io::Error>>) {
    body_with(SimConfig::default(), n, fault, include_usage).await
}

async fn body_with(
    cfg: SimConfig,
    n: u64,
    fault: Fault,
    include_usage: bool,
) -> (Rig, impl Stream<Item = Result<Bytes, io::Error>>) {
    let plan = Plan::new(&cfg, &fault, Some(n), 10);
    let engine = Engine::new(&cfg);
    let slot = engine.admit(plan.service_time()).await.unwrap();
    let recorder = Arc::new(Recorder::new());
    let rec = ServedRecord {
        request_id: None,
        region: "r".into(),
        model: "m".into(),
        stream: true,
        prompt_tokens: 10,
        completion_tokens: 0,
        outcome: String::new(),
        at_ms: 0,
        traceparent: None,
        continued_from: None,
        cached_tokens: None,
    };
    let ticket = Ticket::open(recorder.clone(), rec);
    let meta = ChunkMeta {
        id: "chatcmpl-x".into(),
        model: "m".into(),
        created: 0,
        prompt_tokens: 10,
        cached_tokens: None,
        include_usage,
        tool: None,
        text: Text::default(),
    };
    let (tx, rx) = watch::channel(false);
    let body = body(meta, plan, Instant::now(), slot, ticket, rx);
    (
        Rig {
            engine,
            recorder,
            shutdown: tx,
        },
        body,
    )
}

#[tokio::test(start_paused = true)]
async fn tokens_arrive_on_schedule_and_the_slot_frees_at_the_last_token() {
    let t0 = Instant::now();
    let (rig, body) = body_for(3, Fault::default(), true).await;
    let mut body = Box::pin(body);
    let mut at = Vec::new();
    while let Some(item) = body.next().await {
        let bytes = item.unwrap();
        at.push((t0.elapsed(), String::from_utf8(bytes.to_vec()).unwrap()));
        if at.len() == 5 {
            assert_eq!(
                rig.engine.in_flight(),
                0,
                "slot freed with the finish chunk"
            );
        }
    }
    let ms: Vec<u64> = at.iter().map(|(d, _)| d.as_millis() as u64).collect();
    // role, 3 tokens every 20 ms, finish, usage, [DONE]
    assert_eq!(ms, vec![0, 20, 40, 60, 60, 60, 60]);
    assert!(at[1].1.contains(r#""content":" the""#), "{}", at[1].1);
    assert!(at[5].1.contains(r#""choices":[]"#) && at[5].1.contains(r#""total_tokens":13"#));
    assert_eq!(at[6].1, "data: [DONE]\n\n");
    let rec = &rig.recorder.snapshot()[0];
    assert_eq!((rec.outcome.as_str(), rec.completion_tokens), ("ok", 3));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_body_mid_stream_frees_the_slot_and_records_cancelled() {
    let (rig, body) = body_for(100, Fault::default(), false).await;
    let mut body = Box::pin(body);
    for _ in 0..3 {
        body.next().await.unwrap().unwrap();
    }
    assert_eq!(rig.engine.in_flight(), 1);
    drop(body);
    assert_eq!(rig.engine.in_flight(), 0);
    let rec = &rig.recorder.snapshot()[0];
    assert_eq!(
        (rec.outcome.as_str(), rec.completion_tokens),
        ("cancelled", 2)
    );
}

#[tokio::test(start_paused = true)]
async fn break_ends_the_body_with_an_error_after_k_tokens() {
    let fault = Fault {
        break_after_tokens: Some(2),
        ..Fault::default()
    };
    let (rig, body) = body_for(5, fault, false).await;
    let items: Vec<_> = body.collect().await;
    assert_eq!(items.len(), 4, "role, two tokens, the error");
    assert!(items[..3].iter().all(Result::is_ok));
    assert!(items[3].is_err());
    assert_eq!(rig.engine.in_flight(), 0);
    let rec = &rig.recorder.snapshot()[0];
    assert_eq!((rec.outcome.as_str(), rec.completion_tokens), ("broken", 2));
}

#[tokio::test(start_paused = true)]
async fn an_error_event_ends_the_body_cleanly_after_k_tokens() {
    for k in [0, 2] {
        let fault = Fault {
            error_event_after_tokens: Some(k),
            ..Fault::default()
        };
        let (rig, body) = body_for(5, fault, true).await;
        let items: Vec<String> = body
            .map(|i| String::from_utf8(i.unwrap().to_vec()).unwrap())
            .collect()
            .await;
        let k = k as usize;
        assert_eq!(items.len(), k + 2, "role, {k} tokens, the error: {items:?}");
        assert!(items[0].contains(r#""role":"assistant""#));
        assert!(items[1..=k].iter().all(|t| t.contains(r#""content":" "#)));
        let event = items[k + 1].strip_prefix("data: ").unwrap().trim_end();
        let v: serde_json::Value = serde_json::from_str(event).unwrap();
        assert_eq!(
            (&v["error"]["type"], &v["error"]["code"]),
            (
                &serde_json::json!("server_error"),
                &serde_json::json!("engine_error")
            )
        );
        assert!(v["error"]["message"].is_string());
        assert_eq!(rig.engine.in_flight(), 0, "the slot is given back");
        let rec = &rig.recorder.snapshot()[0];
        assert_eq!(
            (rec.outcome.as_str(), rec.completion_tokens),
            ("error", k as u64)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_stall_holds_the_slot_without_bytes_until_the_client_leaves_or_shutdown() {
    let fault = Fault {
        stall_after_tokens: Some(2),
        ..Fault::default()
    };
    let (rig, body) = body_for(5, fault.clone(), false).await;
    let mut body = Box::pin(body);
    for _ in 0..3 {
        body.next().await.unwrap().unwrap();
    }
    let waited = tokio::time::timeout(Duration::from_secs(3600), body.next()).await;
    assert!(waited.is_err(), "no byte after the stall point");
    assert_eq!(
        rig.engine.in_flight(),
        1,
        "the stalled request keeps its slot"
    );
    drop(body);
    assert_eq!(rig.engine.in_flight(), 0);
    let rec = &rig.recorder.snapshot()[0];
    assert_eq!(
        (rec.outcome.as_str(), rec.completion_tokens),
        ("cancelled", 2)
    );

    // Shutdown ends a stall (after the role chunk here) with an error.
    let fault = Fault {
        stall_after_tokens: Some(0),
        ..fault
    };
    let (rig, body) = body_for(5, fault, false).await;
    let mut body = Box::pin(body);
    body.next().await.unwrap().unwrap();
    rig.shutdown.send_replace(true);
    assert!(body.next().await.unwrap().is_err());
    assert!(body.next().await.is_none());
    assert_eq!(rig.engine.in_flight(), 0);
    assert_eq!(rig.recorder.snapshot()[0].outcome, "outage");
}

/// At time scale 30 a token at 50 tokens/s is due every 0.67 ms, under tokio's 1 ms timer
/// tick: the decode must still take 200 / 50 / 30 s = 133.3 ms, not one tick per token.
#[tokio::test(start_paused = true)]
async fn sub_millisecond_tokens_keep_the_configured_decode_rate() {
    let cfg = SimConfig {
        time_scale: 30.0,
        ..SimConfig::default()
    };
    let t0 = Instant::now();
    let (rig, body) = body_with(cfg, 200, Fault::default(), false).await;
    let mut body = Box::pin(body);
    let (mut writes, mut tokens, mut last_token_at) = (0, 0, t0);
    while let Some(item) = body.next().await {
        let text = String::from_utf8(item.unwrap().to_vec()).unwrap();
        let n = text.matches(r#""content":" "#).count();
        if n > 0 {
            writes += 1;
            tokens += n;
            last_token_at = Instant::now();
            assert_eq!(text.matches("data: ").count(), n, "one SSE event per token");
        }
    }
    let took = last_token_at - t0;
    assert_eq!(tokens, 200);
    assert!(
        took.abs_diff(Duration::from_micros(133_333)) <= HALF_TICK,
        "decode took {took:?}"
    );
    assert!(writes < 200, "late tokens share a write ({writes} writes)");
    let rec = &rig.recorder.snapshot()[0];
    assert_eq!((rec.outcome.as_str(), rec.completion_tokens), ("ok", 200));
}
