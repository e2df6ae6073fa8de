//! The client side over tokio's paused clock: bytes flow while the client reads, a client that
//! stops reading is stalled after the stall timeout, one that leaves is gone.
#![allow(clippy::unwrap_used)]
use std::time::Duration;

use axum::http::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use spillway_core::RegionIx;
use spillway_exchange::Event;
use tokio::sync::oneshot;

use super::{Client, OUTBOX_HIGH};
use crate::drive::RequestCtx;
use crate::error::Api;

const STALL: Duration = Duration::from_secs(30);

fn streaming() -> (Client, axum::body::Body) {
    let (head, mut answer) = oneshot::channel();
    let mut client = Client::new(head);
    let ctx = RequestCtx::new(RegionIx(0), &HeaderMap::new(), Api::OpenAi);
    client.open_stream(&ctx, |_| {});
    let resp = answer.try_recv().unwrap();
    (client, resp.into_body())
}

fn write(client: &mut Client, n: usize) {
    client.write(|_, out| out.extend_from_slice(&vec![b'x'; n]));
}

#[tokio::test(start_paused = true)]
async fn bytes_reach_a_reading_client() {
    let (mut client, body) = streaming();
    write(&mut client, 10);
    assert!(!client.flushed());
    assert_eq!(client.progress(STALL).await, None, "the bytes went out");
    assert!(client.flushed());
    let mut data = body.into_data_stream();
    let got = data.next().await.unwrap().unwrap();
    assert_eq!(got, Bytes::from(vec![b'x'; 10]));
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_stalled_after_the_timeout() {
    let (mut client, _body) = streaming();
    let start = tokio::time::Instant::now();
    // Fill the channel: nobody reads the body.
    loop {
        write(&mut client, 1);
        let sent = tokio::time::timeout(Duration::from_millis(1), client.progress(STALL)).await;
        if sent.is_err() {
            break;
        }
    }
    write(&mut client, OUTBOX_HIGH);
    assert!(
        !client.accepts_more(),
        "backpressure: the upstream is not read"
    );
    assert_eq!(client.progress(STALL).await, Some(Event::ClientStalled));
    assert!(start.elapsed() >= STALL);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_leaves_is_gone_with_or_without_bytes_waiting() {
    let (mut client, body) = streaming();
    drop(body);
    assert_eq!(client.progress(STALL).await, Some(Event::ClientGone));
    let (mut client, body) = streaming();
    write(&mut client, 5);
    drop(body);
    assert_eq!(client.progress(STALL).await, Some(Event::ClientGone));
}

#[tokio::test(start_paused = true)]
async fn a_client_gone_before_the_head_is_reported() {
    let (head, answer) = oneshot::channel();
    let mut client = Client::new(head);
    drop(answer);
    assert_eq!(client.progress(STALL).await, Some(Event::ClientGone));
}
