//! `[server]` limits and `[admin]`: what the edge allows a client before any API runs.
//!
//! The defaults follow what nginx and Envoy ship, so that an operator who never sets them gets a
//! server that a slow or idle client cannot wear down: a request's head must arrive within
//! 30 s of the connection opening or of the previous response (nginx's `client_header_timeout`
//! is 60 s; the same timer closes an idle keep-alive connection, as hyper counts the wait for
//! the next head), its body within 60 s, at most 10,000 connections per listener and never more
//! than three quarters of the process's file descriptors across listeners (beyond it, new ones
//! are closed as soon as they are accepted; established ones keep working), 64 KiB and
//! 100 header lines, 8 KiB of URI, and a stream whose client reads nothing for 30 s is cut.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use spillway_core::RegionIx;

use super::raw::{RawAdmin, RawServer};
use super::validate::Ctx;
use super::{ConfigError, Secret};

/// Client-side limits of every API listener (`[server]`).
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeLimits {
    /// From accept (or the end of the previous response) to the end of the request head; so
    /// also the keep-alive idle timeout.
    pub header_read: Duration,
    /// From the end of the head to the end of the body.
    pub body_read: Duration,
    /// Open connections per listener; at it the connection idle the longest makes room, or a
    /// new one is closed at once when all are busy. `None`: 10,000; either way never above
    /// three quarters of the descriptor limit (`edge::conn::cap_for`).
    pub max_connections: Option<usize>,
    /// The request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// Header lines per request.
    pub max_headers: usize,
    /// The request target (path and query), in bytes.
    pub max_uri_bytes: usize,
    /// A streaming client that takes no bytes for this long is cut and billed for what was
    /// generated.
    pub stream_stall: Duration,
    /// Accept SigV4 requests signed with `x-amz-content-sha256: UNSIGNED-PAYLOAD` (the body is
    /// then not covered by the signature). Off by default.
    pub allow_unsigned_payload: bool,
    /// After SIGTERM: `/readyz` fails at once, new connections are still served for this long
    /// (so load balancers notice), then the listeners close (default 5 s).
    pub drain_delay: Duration,
    /// HTTP/2: streams (requests) one connection may have open at once (default 100; nginx's
    /// `http2_max_concurrent_streams` is 128).
    pub h2_max_streams: u32,
}

/// An API listener (`[[listeners]]`): the region whose endpoint it stands for.
#[derive(Debug, Clone)]
pub struct Listener {
    pub bind: SocketAddr,
    pub region: RegionIx,
    /// HTTPS instead of plain HTTP (`tls = { cert, key }`).
    pub tls: Option<ListenerTls>,
}

/// A TLS listener's files and the server configuration loaded from them when the
/// configuration was (`crate::tls::server_config`).
#[derive(Debug, Clone)]
pub struct ListenerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub server: Arc<rustls::ServerConfig>,
}

/// The admin listener (`[admin]`): `/metrics`, `/healthz`, `/readyz` and `/admin/*`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminListener {
    pub bind: SocketAddr,
    /// A bearer token every admin request must carry (`Authorization: Bearer …`); `None`: open
    /// (the default bind is loopback).
    pub token: Option<Secret>,
}

fn ms(cx: &Ctx<'_>, key: &str, v: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
    match v.unwrap_or(default) {
        0 => Err(cx.err(
            format!("server.{key}"),
            "expected a positive number of milliseconds",
        )),
        v => Ok(Duration::from_millis(v)),
    }
}

fn at_least(
    cx: &Ctx<'_>,
    key: &str,
    v: Option<usize>,
    default: usize,
    min: usize,
) -> Result<usize, ConfigError> {
    let v = v.unwrap_or(default);
    if v < min {
        return Err(cx.err(
            format!("server.{key}"),
            format!("expected at least {min}, got {v}"),
        ));
    }
    Ok(v)
}

/// `[server]` → the edge's limits.
pub(super) fn limits(cx: &Ctx<'_>, s: &RawServer) -> Result<EdgeLimits, ConfigError> {
    Ok(EdgeLimits {
        header_read: ms(
            cx,
            "header_read_timeout_ms",
            s.header_read_timeout_ms,
            30_000,
        )?,
        body_read: ms(cx, "body_read_timeout_ms", s.body_read_timeout_ms, 60_000)?,
        max_connections: match s.max_connections {
            None => None,
            v => Some(at_least(cx, "max_connections", v, 1, 1)?),
        },
        // hyper needs 8 KiB of read buffer at least.
        max_header_bytes: at_least(cx, "max_header_bytes", s.max_header_bytes, 64 * 1024, 8192)?,
        max_headers: at_least(cx, "max_headers", s.max_headers, 100, 16)?,
        max_uri_bytes: at_least(cx, "max_uri_bytes", s.max_uri_bytes, 8 * 1024, 256)?,
        stream_stall: ms(
            cx,
            "stream_stall_timeout_ms",
            s.stream_stall_timeout_ms,
            30_000,
        )?,
        allow_unsigned_payload: s.allow_unsigned_payload.unwrap_or(false),
        drain_delay: match s.drain_delay_ms {
            Some(0) => Duration::ZERO,
            other => ms(cx, "drain_delay_ms", other, 5_000)?,
        },
        h2_max_streams: match s.h2_max_concurrent_streams.unwrap_or(100) {
            0 => {
                return Err(cx.err(
                    "server.h2_max_concurrent_streams",
                    "expected at least 1 (0 would refuse every HTTP/2 request)",
                ));
            }
            n => n,
        },
    })
}

/// `[admin]` → the admin listener (default `127.0.0.1:9090`, no token).
pub(super) fn admin(cx: &Ctx<'_>, a: &RawAdmin) -> Result<AdminListener, ConfigError> {
    let bind = match &a.bind {
        None => SocketAddr::from(([127, 0, 0, 1], 9090)),
        Some(b) => b.parse().map_err(|_| {
            cx.err(
                "admin.bind",
                format!("expected an address like \"127.0.0.1:9090\", got {b:?}"),
            )
        })?,
    };
    let token = match &a.token_env {
        None => None,
        Some(var) => Some(Secret(
            std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    cx.err(
                        "admin.token_env",
                        format!("environment variable {var} is not set or empty"),
                    )
                })?,
        )),
    };
    Ok(AdminListener { bind, token })
}
