//! A drain under load (SIGTERM's path): `/readyz` fails at once, every request in flight —
//! streamed or not — finishes whole, and afterwards the listener refuses connections.
mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_under_load_finishes_every_request_in_flight() {
    let mut h = Harness::start(Spec::standard()).await;
    // Four streams held at 5 tokens/s in the source (20 tokens: about 4 s each)...
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(h.hold_n("us-east-1", M, "us-east-1", 20).await);
    }
    // ... and eight more requests, streamed and not, started right behind them.
    let url = h.url("us-east-1", "/v1/chat/completions");
    let more: Vec<_> = (0..8)
        .map(|i| {
            let (client, url) = (h.client.clone(), url.clone());
            let id = format!("drain-{i}");
            h.register(&id, "us-east-1", KEY, &format!("us.{M}"));
            let b = if i % 2 == 0 {
                body(&format!("us.{M}"), 50)
            } else {
                stream_body(&format!("us.{M}"), 50)
            };
            tokio::spawn(async move {
                let resp = client
                    .post(url)
                    .bearer_auth(KEY)
                    .header("x-request-id", id)
                    .json(&b)
                    .send()
                    .await;
                let resp = resp.expect("answered");
                let status = resp.status().as_u16();
                (status, resp.text().await.unwrap_or_default())
            })
        })
        .collect();
    eventually("the held streams in flight", || {
        let app = h.gw().state();
        let now = app.now();
        let cell = app.router();
        (0..app.cfg.deployments.len())
            .map(|d| {
                let d = spillway_core::DeploymentIx(d as u32);
                cell.router.view(d, now).in_flight
            })
            .sum::<u32>()
            >= 4
    })
    .await;

    let addr = h.addr("us-east-1");
    let admin = h.gw().admin_addr();
    let stack = h.take_gateway();
    let drain = tokio::spawn(stack.drain(Duration::from_millis(200), Duration::from_secs(30)));
    // Probes see the drain at once.
    let ready = h.client.get(format!("http://{admin}/readyz")).send().await;
    assert!(
        ready.is_ok_and(|r| r.status() == 503),
        "readyz while draining"
    );

    for mut s in held {
        let rest = s.rest().await;
        assert_eq!(rest.last().map(String::as_str), Some("[DONE]"), "{rest:?}");
    }
    for task in more {
        let (status, text) = task.await.expect("request task");
        assert_eq!(status, 200, "{text}");
        assert!(
            text.contains("\"finish_reason\":\"length\""),
            "cut off: {text}"
        );
    }
    assert!(drain.await.expect("drain task"), "requests were cut off");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting"
    );
    h.assert_residency();
}
