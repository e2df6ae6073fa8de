//! Accepting and serving connections, with the limits a hostile or broken client cannot wear
//! down.
//!
//! Each listener runs one accept loop. A connection is served by hyper-util's `auto` server,
//! which speaks HTTP/1.1, or HTTP/2 when the client opens with the HTTP/2 preface (h2c with prior
//! knowledge on a plain listener; on a TLS listener the client picks `h2` or `http/1.1` by ALPN
//! and then sends the matching bytes). On a TLS listener the handshake comes first, under the
//! header-read timeout below; a failed or stalled handshake (plain HTTP sent to the TLS port, a
//! client that does not trust the certificate) closes that connection and nothing else. Every
//! connection gets:
//!
//! * a **header-read timeout**: from accept, and from the end of each response on a keep-alive
//!   connection, the next request head must be complete within `header_read_timeout_ms`, or the
//!   connection is closed. So a client that connects and sends nothing, or a header a byte at a
//!   time (slowloris), is cut, and the same timer is the keep-alive idle timeout. For HTTP/1
//!   hyper starts it when it begins waiting for a head, idle time included; for HTTP/2 (and for
//!   the first bytes, before the protocol is known) a connection with no request in flight for
//!   that long is closed ([`Slot::idle_for`](super::slots::Slot::idle_for)); HTTP/2 sends
//!   `GOAWAY` first.
//! * for HTTP/2 (see [`builder`]): at most `h2_max_concurrent_streams` requests at once per
//!   connection, a header-list limit derived from the HTTP/1 ones, keep-alive pings, and
//!   hyper's defences against reset floods.
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
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::response::Response;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
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

/// What the accept loop serves with: the protocol settings, and TLS when the listener has it.
#[derive(Clone)]
pub(super) struct Serving {
    http: Arc<auto::Builder<TokioExecutor>>,
    tls: Option<TlsAcceptor>,
    /// The header-read timeout, also the idle timeout and the TLS handshake's deadline.
    idle: Duration,
}

impl Serving {
    /// Plain HTTP, or HTTPS with `tls`, under `limits`.
    pub(super) fn new(limits: &EdgeLimits, tls: Option<Arc<rustls::ServerConfig>>) -> Serving {
        Serving {
            http: Arc::new(builder(limits)),
            tls: tls.map(TlsAcceptor::from),
            idle: limits.header_read,
        }
    }
}

/// Serve `app` on `tcp` until `stop` turns true, then drain the open connections.
pub(super) async fn serve(
    tcp: TcpListener,
    app: axum::Router,
    serving: Serving,
    cap: usize,
    mut stop: watch::Receiver<bool>,
    stats: ConnStats,
) {
    let slots = Slots::new(cap);
    let mut open = Open::default();
    loop {
        let accepted = tokio::select! {
            stopped = stop.wait_for(|s| *s) => {
                drop(stopped);
                break;
            }
            () = open.reap_one() => continue,
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
        let (serving, app, stop) = (serving.clone(), app.clone(), stop.clone());
        open.0.spawn(async move {
            serve_one(&serving, stream, app, stop, &held).await;
            stats.open.dec();
            drop(held);
        });
    }
    drop(tcp);
    while open.0.join_next().await.is_some() {}
}

/// The tasks of a listener's open connections.
///
/// A finished task is reaped as soon as it ends ([`Open::reap_one`] is a branch of the accept
/// loop), not when the next connection comes: until it is joined, its task cell (sized for the
/// connection's future, about 6 KiB) stays allocated, so after a burst of 10,000 streams the
/// gateway held some 60 MiB until new clients arrived (`docs/BENCHMARKS.md`, memory per stream).
#[derive(Default)]
struct Open(JoinSet<()>);

impl Open {
    /// Join one finished task; pending while none is open, so that the accept loop's `select!`
    /// neither spins on an empty set nor stops reaping.
    async fn reap_one(&mut self) {
        if self.0.is_empty() {
            std::future::pending::<()>().await;
        }
        let _ = self.0.join_next().await;
    }
}

/// One connection, until it closes, or until `stop` or its eviction: then it finishes the
/// request in flight, if any, and closes; a connection with none (idle, or a head not yet
/// complete) closes at once.
async fn serve_one(
    serving: &Serving,
    stream: TcpStream,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
    held: &Held,
) {
    // Stream chunks go out as they are written: no Nagle delay on small SSE events.
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = &serving.tls else {
        return serve_io(serving, stream, app, stop, held).await;
    };
    let slot = held.slot();
    let handshake = tokio::select! {
        done = tokio::time::timeout(serving.idle, acceptor.accept(stream)) => done,
        _ = stop.wait_for(|s| *s) => return,
        () = slot.evicted() => return,
    };
    match handshake {
        Ok(Ok(tls)) => serve_io(serving, tls, app, stop, held).await,
        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!("TLS handshake not done within the header-read timeout"),
    }
}

/// [`serve_one`] once the bytes are plain HTTP (over TCP, or inside TLS).
async fn serve_io<I>(
    serving: &Serving,
    io: I,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
    held: &Held,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = Tracked {
        app,
        marker: held.marker(),
    };
    let conn = serving.http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let slot = held.slot();
    let ended = tokio::select! {
        ended = conn.as_mut() => Some(ended),
        _ = stop.wait_for(|s| *s) => None,
        () = slot.evicted() => None,
        () = slot.idle_for(serving.idle) => None,
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

/// hyper's HTTP/1 and HTTP/2 servers with the listener's limits.
///
/// HTTP/1: the header-read timeout, and parser limits at twice the configured head size and
/// header count (the guard answers 431 below them).
///
/// HTTP/2, from the same settings where they map:
/// * `SETTINGS_MAX_CONCURRENT_STREAMS` = `h2_max_concurrent_streams` (default 100);
/// * `SETTINGS_MAX_HEADER_LIST_SIZE` = twice the head the HTTP/1 parser takes, plus the 32
///   bytes per field HTTP/2 counts, for twice `max_headers` fields: a larger header block is
///   refused by hyper; below it the guard answers 431 as for HTTP/1;
/// * a keep-alive `PING` every `header_read_timeout_ms`, and the connection closed when one is
///   not answered within 20 s (or the header-read timeout, if shorter): it finds dead peers
///   holding streams;
/// * limits against reset floods (CVE-2023-44487 "rapid reset" and its kin): at most 20
///   streams the client reset before they were served may be pending, and a connection whose
///   client causes more than 1024 stream errors is closed;
/// * hyper's flow-control windows (the request body is read under the same `max_body_bytes`
///   and `body_read_timeout_ms` as for HTTP/1).
pub(super) fn builder(limits: &EdgeLimits) -> auto::Builder<TokioExecutor> {
    let head = (limits.max_header_bytes.saturating_add(limits.max_uri_bytes)).saturating_mul(2);
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .max_headers(limits.max_headers.saturating_mul(2))
        .max_buf_size(head.max(8192));
    let fields = limits.max_headers.saturating_mul(2).saturating_mul(32);
    let header_list = u32::try_from(head.saturating_add(fields)).unwrap_or(u32::MAX);
    http.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams)
        .max_header_list_size(header_list)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024)
        .keep_alive_interval(limits.header_read)
        .keep_alive_timeout(limits.header_read.min(PING_TIMEOUT));
    http
}

/// How long an HTTP/2 keep-alive `PING` may go unanswered.
const PING_TIMEOUT: Duration = Duration::from_secs(20);

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

    #[tokio::test(start_paused = true)]
    async fn finished_connection_tasks_are_reaped_without_a_new_connection() {
        let mut open = Open::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        open.0.spawn(async {});
        open.0.spawn(async {});
        open.0.spawn(async move {
            let _ = rx.await;
        });
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(1), open.reap_one())
                .await
                .expect("a finished task is reaped at once");
        }
        assert_eq!(open.0.len(), 1, "the running one is kept");
        let waiting = tokio::time::timeout(Duration::from_secs(1), open.reap_one()).await;
        assert!(waiting.is_err(), "a running task is not reaped");
        drop(tx);
        tokio::time::timeout(Duration::from_secs(1), open.reap_one())
            .await
            .expect("reaped once it ends");
        assert_eq!(open.0.len(), 0);
        let empty = tokio::time::timeout(Duration::from_secs(60), open.reap_one()).await;
        assert!(
            empty.is_err(),
            "an empty set is pending, not ready: the loop must not spin"
        );
    }

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
