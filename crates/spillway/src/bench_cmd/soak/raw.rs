//! The soak's badly behaved clients, over hand-written HTTP/1.1: one that goes away in the
//! middle of a stream, one that stops reading a long stream, and connections that never send a
//! request.
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::http::{self, DEMO_KEY, contains, io_reason};
use super::load::{Ctx, SMALL, chat_body, model, pause};
use super::tally::{Kind, Outcome};

/// Connecting and sending a request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// From the request to the response head (a brown-out's queue included).
const HEAD_TIMEOUT: Duration = Duration::from_secs(60);

fn stream_request(model: &str, max_tokens: u64) -> Vec<u8> {
    let body = chat_body(model, max_tokens, true).to_string();
    http::request(
        "POST",
        "/v1/chat/completions",
        Some(DEMO_KEY),
        body.as_bytes(),
    )
}

/// Sends a streamed request and reads the head: the open connection and the first body bytes
/// on 200, else how it ended.
async fn open_stream(
    api: SocketAddr,
    req: &[u8],
) -> Result<(tokio::net::TcpStream, Vec<u8>), Outcome> {
    let mut s = http::send(api, req, CONNECT_TIMEOUT)
        .await
        .map_err(|e| Outcome::Failed(io_reason(&e)))?;
    let head = tokio::time::timeout(HEAD_TIMEOUT, http::read_head(&mut s)).await;
    match head {
        Err(_) => Err(Outcome::Failed("no response head within 60 s".into())),
        Ok(Err(e)) => Err(Outcome::Failed(io_reason(&e))),
        Ok(Ok((200, first))) => Ok((s, first)),
        Ok(Ok((429, _))) => Err(Outcome::Throttled),
        Ok(Ok((status, _))) => Err(Outcome::Failed(format!("status {status}"))),
    }
}

/// Streams, takes the first body bytes, and drops the connection; until stopped.
pub async fn disconnecting(mut cx: Ctx, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    loop {
        let req = stream_request(model(&mut rng), rng.random_range(100..=400));
        // Wait for a content chunk or a few, then leave.
        let want = rng.random_range(200..2000);
        let api = cx.api;
        let run = async {
            let (mut s, mut first) = open_stream(api, &req).await?;
            let mut buf = [0u8; 4096];
            while first.len() < want {
                match tokio::time::timeout(HEAD_TIMEOUT, s.read(&mut buf)).await {
                    Ok(Ok(0)) | Err(_) => break,
                    Ok(Ok(n)) => first.extend_from_slice(&buf[..n]),
                    Ok(Err(e)) => return Err(Outcome::Failed(io_reason(&e))),
                }
            }
            Ok::<_, Outcome>(())
        };
        let outcome = tokio::select! {
            r = run => r.err().unwrap_or(Outcome::Ok),
            _ = cx.stop.wait_for(|s| *s) => return,
        };
        cx.tally.add(Kind::Disconnect, outcome);
        if !pause(&mut cx, &mut rng).await {
            return;
        }
    }
}

/// Streams a long answer, reads nothing for `slow_hold` after the head, then reads the rest:
/// [`Outcome::Ok`] if the stream ended with `[DONE]`, [`Outcome::Cut`] if the gateway cut it.
pub async fn slow_reader(mut cx: Ctx, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    loop {
        let req = stream_request(SMALL, cx.slow_tokens);
        let (api, hold) = (cx.api, cx.slow_hold);
        let run = async {
            let (mut s, mut body) = open_stream(api, &req).await?;
            tokio::time::sleep(hold).await;
            // The rest, whatever state the connection is in: to EOF or an error (a reset is
            // how a cut connection with unread data ends).
            let _ = http::read_to_end(&mut s, &mut body).await;
            Ok::<_, Outcome>(if contains(&body, b"data: [DONE]") {
                Outcome::Ok
            } else {
                Outcome::Cut(None)
            })
        };
        let outcome = tokio::select! {
            r = run => r.unwrap_or_else(|o| o),
            _ = cx.stop.wait_for(|s| *s) => return,
        };
        cx.tally.add(Kind::SlowReader, outcome);
        if !pause(&mut cx, &mut rng).await {
            return;
        }
    }
}

/// Holds a connection that sends nothing until the gateway closes it, then opens another;
/// after stop, holds the last one until the gateway closes it or `release`.
pub async fn idle(mut cx: Ctx) {
    while !*cx.stop.borrow() {
        let opened = Instant::now();
        let connect = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(cx.api));
        let mut s = match connect.await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                cx.tally.add(Kind::Idle, Outcome::Failed(io_reason(&e)));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(_) => {
                cx.tally
                    .add(Kind::Idle, Outcome::Failed("connect timed out".into()));
                continue;
            }
        };
        cx.idle_open.fetch_add(1, Ordering::Relaxed);
        let closed = tokio::select! {
            _ = until_closed(&mut s) => true,
            _ = cx.release.wait_for(|r| *r) => false,
        };
        cx.idle_open.fetch_sub(1, Ordering::Relaxed);
        let outcome = if closed {
            Outcome::Cut(Some(opened.elapsed()))
        } else {
            Outcome::Failed("still open when released".into())
        };
        cx.tally.add(Kind::Idle, outcome);
    }
}

/// Reads (and drops) whatever comes until EOF or an error.
async fn until_closed(s: &mut tokio::net::TcpStream) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}
