//! The streaming relay (usage chunk only when asked for, `[DONE]`) and graceful shutdown.
mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn chunks(events: &[String]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap_or_else(|_| panic!("not JSON: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_chunk_is_relayed_exactly_when_asked_for() {
    let h = Harness::start(Spec::standard()).await;
    let mut b = stream_body(&format!("us.{M}"), 7);
    b["messages"] = json!([
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Where is the nearest region with capacity?"}
    ]);
    let msgs: Vec<spillway_proto::ChatMessage> =
        serde_json::from_value(b["messages"].clone()).expect("messages");
    let p = spillway_proto::tokens::prompt_tokens(&msgs);

    b["stream_options"] = json!({"include_usage": true});
    let (id, resp) = h.stream("us-east-1", b.clone()).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    assert_eq!(
        resp.headers()
            .get("x-spillway-region")
            .and_then(|v| v.to_str().ok()),
        Some("us-east-1")
    );
    let events = Sse::new(resp).rest().await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    assert_eq!(content_of(&events), spillway_sim::completion_text(7));
    let with_usage: Vec<Value> = chunks(&events)
        .into_iter()
        .filter(|c| !c["usage"].is_null())
        .collect();
    assert_eq!(with_usage.len(), 1, "{events:?}");
    assert_eq!(
        with_usage[0]["usage"],
        json!({"prompt_tokens": p, "completion_tokens": 7, "total_tokens": p + 7})
    );
    assert_eq!(with_usage[0]["choices"], json!([]));
    let recs = h.records_for(&id);
    assert_eq!((recs.len(), recs[0].prompt_tokens), (1, p));

    // Without include_usage (absent, or false) the usage chunk the gateway asked for is dropped.
    for opts in [None, Some(json!({"include_usage": false}))] {
        let mut b = b.clone();
        match opts {
            Some(o) => b["stream_options"] = o,
            None => {
                b.as_object_mut().map(|o| o.remove("stream_options"));
            }
        }
        let (_, resp) = h.stream("us-east-1", b).await;
        let events = Sse::new(resp).rest().await;
        assert_eq!(
            events.last().map(String::as_str),
            Some("[DONE]"),
            "{events:?}"
        );
        assert_eq!(content_of(&events), spillway_sim::completion_text(7));
        let cs = chunks(&events);
        assert!(cs.iter().all(|c| c["usage"].is_null()), "{events:?}");
        assert!(
            cs.iter()
                .all(|c| !c["choices"].as_array().is_some_and(Vec::is_empty))
        );
    }
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_a_stream_in_flight_finish() {
    let mut h = Harness::start(Spec::standard()).await;
    let addr = h.addr("us-east-1");
    let sim = h.sim("us-east-1").clone();
    // 100 tokens at 200 tokens/s: the stream is still running when shutdown starts.
    sim.set_fault(spillway_sim::Fault {
        slow_factor: 50.0,
        ..Default::default()
    });
    let (id, resp) = h.stream("us-east-1", stream_body(M, 100)).await;
    assert_eq!(resp.status().as_u16(), 200);
    let mut sse = Sse::new(resp);
    let first = sse.next().await.expect("first chunk");
    sim.set_fault(spillway_sim::Fault::default());

    assert_eq!(sim.in_flight(), 1, "still decoding");
    let gw = h.take_gateway();
    let shutdown = tokio::spawn(gw.shutdown(Duration::from_secs(10)));
    let mut events = vec![first];
    events.extend(sse.rest().await);
    assert!(!sse.broken);
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    assert_eq!(content_of(&events), spillway_sim::completion_text(100));
    assert!(
        shutdown.await.expect("shutdown task"),
        "shutdown within the grace"
    );

    // The listener is gone.
    let err = tokio::net::TcpStream::connect(addr).await;
    assert!(err.is_err(), "a new connection after shutdown was accepted");
    let fresh = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await;
    assert!(fresh.is_err_and(|e| e.is_connect()));
    let recs = h.records_for(&id);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].outcome, "ok");
    h.assert_residency();
}
