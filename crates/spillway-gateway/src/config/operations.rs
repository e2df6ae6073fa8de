//! The sections that do not name models: audit, listeners, state, routing, server limits and
//! the admin listener. Each is checked whatever the others hold, so all their errors are
//! reported together (`validate` explains the order of the rest).
use std::path::PathBuf;

use super::raw::*;
use super::validate::{Ctx, DEMO_ACCESS_KEY_ID, DEMO_API_KEY, keep, region_ix};
use super::*;

/// What the audit, listeners, state, routing, server and admin sections produce.
pub(super) struct Operations {
    pub(super) audit: AuditSink,
    pub(super) telemetry: TelemetryConfig,
    pub(super) listeners: Vec<Listener>,
    pub(super) state: StateKind,
    pub(super) router: RouterConfig,
    pub(super) timeouts: Timeouts,
    pub(super) max_body_bytes: usize,
    pub(super) edge: EdgeLimits,
    pub(super) admin: AdminListener,
}

/// The sections that do not name models, each checked whatever the others hold.
pub(super) fn operations(
    cx: &Ctx<'_>,
    raw: &RawConfig,
    regions: &[Region],
    demo_key_in_use: bool,
    found: &mut Vec<ConfigError>,
) -> Option<Operations> {
    let audit = keep(found, audit(cx, &raw.audit));
    let telemetry = keep(found, super::telemetry::telemetry(cx, &raw.telemetry));
    let listeners = keep(
        found,
        listeners(cx, &raw.listeners, regions, demo_key_in_use),
    );
    let state = keep(found, super::state::state(cx, &raw.state));
    let router = keep(found, super::routing::router(cx, &raw.routing));
    let timeouts = keep(found, super::routing::timeouts(cx, &raw.routing));
    let max_body_bytes = keep(found, max_body_bytes(cx, &raw.server));
    let edge = keep(found, super::edge::limits(cx, &raw.server));
    let admin = keep(found, super::edge::admin(cx, &raw.admin));
    Some(Operations {
        audit: audit?,
        telemetry: telemetry?,
        listeners: listeners?,
        state: state?,
        router: router?,
        timeouts: timeouts?,
        max_body_bytes: max_body_bytes?,
        edge: edge?,
        admin: admin?,
    })
}

/// `[server] max_body_bytes`: 4 MiB unless set, at least 1 KiB.
fn max_body_bytes(cx: &Ctx<'_>, server: &RawServer) -> Result<usize, ConfigError> {
    let max_body_bytes = server.max_body_bytes.unwrap_or(4 * 1024 * 1024);
    if max_body_bytes < 1024 {
        return Err(cx.err(
            "server.max_body_bytes",
            format!("expected at least 1024 bytes, got {max_body_bytes}"),
        ));
    }
    Ok(max_body_bytes)
}

fn audit(cx: &Ctx<'_>, raw: &RawAudit) -> Result<AuditSink, ConfigError> {
    Ok(match raw.sink.as_deref() {
        None | Some("off") => AuditSink::Off,
        Some("stdout") => AuditSink::Stdout,
        Some("") => return Err(cx.err("audit.sink", "expected \"stdout\", \"off\" or a file path")),
        Some(path) => AuditSink::File(path.into()),
    })
}

/// `[[listeners]]`: distinct addresses, on loopback while the demo key is configured.
fn listeners(
    cx: &Ctx<'_>,
    raw: &[RawListener],
    regions: &[Region],
    demo_key_in_use: bool,
) -> Result<Vec<Listener>, ConfigError> {
    if raw.is_empty() && !cx.failed("listeners") {
        return Err(cx.err(
            "listeners",
            "expected at least one [[listeners]] entry (bind + region)",
        ));
    }
    let mut listeners: Vec<Listener> = Vec::new();
    cx.each(raw, |i, l| {
            let key = format!("listeners[{i}]");
            let bind: std::net::SocketAddr = l.bind.parse().map_err(|_| {
                cx.err(
                    format!("{key}.bind"),
                    format!(
                        "expected an address like \"127.0.0.1:8080\", got {:?}",
                        l.bind
                    ),
                )
            })?;
            if bind.port() != 0 && listeners.iter().any(|x| x.bind == bind) {
                return Err(cx.err(
                    format!("{key}.bind"),
                    format!("{bind} is used by two listeners"),
                ));
            }
            if demo_key_in_use && !bind.ip().is_loopback() {
                return Err(cx.err(format!("{key}.bind"), format!("the documented demo key {DEMO_API_KEY:?} (or access key {DEMO_ACCESS_KEY_ID}) is configured, so every listener must be on loopback; remove that key to listen on {bind}")));
            }
            let region = region_ix(cx, regions, &format!("{key}.region"), &l.region)?;
            let tls = l.tls.as_ref().map(|t| tls(cx, &key, t)).transpose()?;
            listeners.push(Listener { bind, region, tls });
            Ok(())
        })?;
    Ok(listeners)
}

/// A listener's `tls = { cert, key }`: both files read and checked now (a missing or unreadable
/// file, no certificate or key in it, a key that is not the certificate's).
fn tls(cx: &Ctx<'_>, key: &str, raw: &RawTls) -> Result<ListenerTls, ConfigError> {
    let (cert, private) = (PathBuf::from(&raw.cert), PathBuf::from(&raw.key));
    let server = crate::tls::server_config(&cert, &private)
        .map_err(|e| cx.err(format!("{key}.tls"), e.to_string()))?;
    Ok(ListenerTls {
        cert,
        key: private,
        server,
    })
}
