//! Accepting and serving connections, with the limits a hostile or broken client cannot wear
//! down.
//!
//! Each listener runs one accept loop. A connection is served by hyper's HTTP/1 server with:
//!
//! * a **header-read timeout**: from accept, and from the end of each response on a keep-alive
//!   connection, the next request head must be complete within `header_read_timeout_ms`, or the
//!   connection is closed. So a client that connects and sends nothing, or a header a byte at a
//!   time (slowloris), is cut, and the same timer is the keep-alive idle timeout: hyper starts it
//!   when it begins waiting for a head, idle time included.
//! * a **connection cap** per listener (`max_connections`, never above the descriptor budget,
//!   [`cap_for`]): at the cap, the connection idle the longest (no request in flight) is closed to make room
//!   for the new one (`edge::slots` explains the choice); when every connection has a request
//!   in flight, the new one is accepted and closed at once, which costs one accept and frees
//!   the file descriptor. Either way established work keeps going and the listener never stops
//!   accepting.
//! * **hard parser limits** at twice the configured header size and count: below them the
//!   request guard (`edge::guard`) answers 431 with a body in the caller's API shape; beyond
//!   them hyper answers a bare 431 before any of our code runs.
//! * file-descriptor exhaustion (`EMFILE`/`ENFILE`) on accept is logged and the loop backs off
//!   briefly instead of spinning.
//!
//! Shutdown: when `stop` turns true the listening socket is closed (new connections are refused
//! by the kernel), every open connection with a request in flight finishes it (its response body
//! to the end) and closes, and every other one (idle, or with a head not yet complete) closes at
//! once, so a half-sent head never holds the grace period. hyper's own graceful shutdown waits
//! for a first request that has not finished arriving; so each connection counts its requests
//! in flight, from the end of the head to the end of the response body ([`Tracked`]), and the
//! loop returns when the last connection is gone; the caller bounds that wait with the grace
//! period.
use std::time::Duration;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::Request;
use axum::response::Response;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::config::EdgeLimits;
use crate::metrics::{ConnMetrics, ListenerLabels};

use super::slots::{Admission, Held, InFlight, Marker, Slots};

/// The connection cap per listener when none is configured.
const DEFAULT_CAP: usize = 10_000;

/// The cap in effect for each of `listeners` API listeners: the configured one, or
/// [`DEFAULT_CAP`]; never more than the descriptor budget ([`fd_budget`]). A configured cap
/// above the budget is lowered to it (with a warning), because beyond it a flood would take
/// every descriptor, and the admin listener, upstream connections and Redis with them.
pub fn cap_for(configured: Option<usize>, listeners: usize) -> usize {
    let budget = fd_budget(listeners);
    match configured {
        None => budget.min(DEFAULT_CAP),
        Some(cap) if cap > budget => {
            tracing::warn!(
                configured = cap,
                cap = budget,
                "[server] max_connections is above three quarters of the descriptor limit \
                 shared among the listeners; lowered"
            );
            budget
        }
        Some(cap) => cap,
    }
}

/// Three quarters of the file-descriptor limit shared among `listeners` API listeners, so
/// that a flood of connections leaves descriptors for upstream connections, the admin
/// listener, Redis and the audit file. The soft limit is first raised to the hard one, as most
/// servers do at start.
pub fn fd_budget(listeners: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft),
    };
    let share = usize::try_from(limit / 4 * 3).unwrap_or(usize::MAX) / listeners.max(1);
    share.max(16)
}

/// How long the accept loop pauses when the process is out of file descriptors.
const FD_BACKOFF: Duration = Duration::from_millis(50);

/// Counters of one listener, exported on `/metrics` (`spillway_connections_*`).
#[derive(Debug, Default, Clone)]
pub struct ConnStats {
    /// Connections being served now.
    pub open: Gauge,
    /// Connections accepted since start.
    pub accepted: Counter,
    /// Connections closed at once because the cap was reached and every connection was busy.
    pub refused: Counter,
    /// Idle connections closed to make room for a new one at the cap.
    pub evicted: Counter,
}

impl ConnStats {
    /// The counters of one listener, registered in `metrics`.
    pub fn registered(metrics: &ConnMetrics, labels: &ListenerLabels) -> ConnStats {
        ConnStats {
            open: metrics.open.get_or_create(labels).clone(),
            accepted: metrics.accepted.get_or_create(labels).clone(),
            refused: metrics.refused.get_or_create(labels).clone(),
            evicted: metrics.evicted.get_or_create(labels).clone(),
        }
    }
}

/// Serve `app` on `tcp` until `stop` turns true, then drain the open connections.
pub(super) async fn serve(
    tcp: TcpListener,
    app: axum::Router,
    limits: &EdgeLimits,
    cap: usize,
    mut stop: watch::Receiver<bool>,
    stats: ConnStats,
) {
    let http = builder(limits);
    let slots = Slots::new(cap);
    let mut open = JoinSet::new();
    loop {
        while open.try_join_next().is_some() {}
        let accepted = tokio::select! {
            stopped = stop.wait_for(|s| *s) => {
                drop(stopped);
                break;
            }
            accepted = tcp.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                accept_failed(&e).await;
                continue;
            }
        };
        stats.accepted.inc();
        let held = match slots.admit() {
            Admission::Serve { held, evicted } => {
                if evicted {
                    stats.evicted.inc();
                }
                held
            }
            Admission::Full => {
                stats.refused.inc();
                drop(stream);
                continue;
            }
        };
        let stats = stats.clone();
        stats.open.inc();
        let (http, app, stop) = (http.clone(), app.clone(), stop.clone());
        open.spawn(async move {
            serve_one(http, stream, app, stop, &held).await;
            stats.open.dec();
            drop(held);
        });
    }
    drop(tcp);
    while open.join_next().await.is_some() {}
}

/// One connection, until it closes, or until `stop` or its eviction: then it finishes the
/// request in flight, if any, and closes; a connection with none (idle, or a head not yet
/// complete) closes at once.
async fn serve_one(
    http: http1::Builder,
    stream: TcpStream,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
    held: &Held,
) {
    // Stream chunks go out as they are written: no Nagle delay on small SSE events.
    let _ = stream.set_nodelay(true);
    let service = Tracked {
        app,
        marker: held.marker(),
    };
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let slot = held.slot();
    let ended = tokio::select! {
        ended = conn.as_mut() => Some(ended),
        _ = stop.wait_for(|s| *s) => None,
        () = slot.evicted() => None,
    };
    let ended = match ended {
        Some(ended) => ended,
        None => {
            conn.as_mut().graceful_shutdown();
            if slot.is_idle() {
                return;
            }
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// The listener's router as a hyper service that counts the requests of its connection in
/// flight, from the end of the head to the end of the response body, so that shutdown knows
/// which connections it may close at once.
#[derive(Clone)]
struct Tracked {
    app: axum::Router,
    marker: Marker,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let app = self.app.clone();
        let mark = self.marker.request();
        Box::pin(async move {
            let resp = app.oneshot(req.map(Body::new)).await?;
            Ok(resp.map(|body| Body::new(Marked { body, _mark: mark })))
        })
    }
}

/// A response body carrying its request's [`InFlight`] mark.
struct Marked {
    body: Body,
    _mark: InFlight,
}

impl http_body::Body for Marked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// hyper's HTTP/1 server with the listener's limits.
fn builder(limits: &EdgeLimits) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .max_headers(limits.max_headers.saturating_mul(2))
        .max_buf_size(
            (limits.max_header_bytes.saturating_add(limits.max_uri_bytes))
                .saturating_mul(2)
                .max(8192),
        );
    http
}

/// An accept error: out of descriptors → back off (the pending connections wait in the
/// kernel's queue); anything else (a connection reset before accept) → go on.
async fn accept_failed(e: &std::io::Error) {
    let out_of_fds = matches!(e.raw_os_error(), Some(23 | 24)); // ENFILE, EMFILE
    if out_of_fds {
        tracing::warn!(error = %e, "out of file descriptors; accepting again shortly");
        tokio::time::sleep(FD_BACKOFF).await;
    } else {
        tracing::debug!(error = %e, "accept failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_cap_never_exceeds_the_descriptor_budget() {
        let budget = fd_budget(2);
        assert!(budget >= 16);
        assert_eq!(
            cap_for(Some(usize::MAX), 2),
            budget,
            "lowered to the budget"
        );
        assert_eq!(cap_for(Some(5), 2), 5, "a cap within the budget is kept");
        assert_eq!(cap_for(None, 2), budget.min(DEFAULT_CAP));
        assert!(
            fd_budget(1) >= budget,
            "fewer listeners, a larger share each"
        );
    }
}
