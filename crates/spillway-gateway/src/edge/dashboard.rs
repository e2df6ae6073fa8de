//! The live dashboard's routes on the admin listener (docs/DASHBOARD.md):
//!
//! * `GET /dashboard`: the page (HTML, its script and style sheet under `/dashboard/`), all
//!   embedded in the binary; it loads nothing from elsewhere.
//! * `GET /dashboard/events`: Server-Sent Events, one JSON snapshot (`crate::dashboard::snapshot`)
//!   at once and then about once a second. Every viewer reads the same snapshot, built once per
//!   tick from the dashboard's figures and the routing core's deployment state.
//! * `GET /dashboard/snapshot`: the current snapshot as one JSON document.
//!
//! With `[admin] token_env`, these routes take the admin token as `Authorization: Bearer` like
//! the other admin routes, or a cookie a browser gets by opening `/dashboard?token=<token>`
//! once: the gateway answers with a redirect to `/dashboard` (so the token leaves the address
//! bar) and an `HttpOnly`, `SameSite=Strict` cookie holding an HMAC of the token, which opens
//! the dashboard routes only (not `/metrics` nor `/admin/reload`). Both are compared in
//! constant time.
use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use spillway_core::DeploymentIx;
use subtle::ConstantTimeEq;

use super::Hub;
use crate::dashboard::{assets, snapshot};

/// The cookie a browser keeps after `/dashboard?token=`.
const COOKIE: &str = "spillway_dashboard";
/// What the cookie's HMAC is taken over (so that it opens nothing but the dashboard).
const COOKIE_PURPOSE: &[u8] = b"spillway dashboard access v1";
/// How long a viewer's browser waits before it reconnects.
const RETRY: std::time::Duration = std::time::Duration::from_secs(2);
/// The page's content security policy: everything from this origin, nothing from elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(super) fn routes(hub: Arc<Hub>) -> Router<Arc<Hub>> {
    Router::new()
        .route("/dashboard", get(page))
        .route("/dashboard/app.js", get(script))
        .route("/dashboard/style.css", get(style))
        .route("/dashboard/events", get(events))
        .route("/dashboard/snapshot", get(one_snapshot))
        .layer(axum::middleware::from_fn_with_state(hub, gate))
}

/// The dashboard's door: open without a token; with one, a bearer header, the cookie, or
/// `?token=` (which sets the cookie).
async fn gate(State(hub): State<Arc<Hub>>, req: Request, next: Next) -> Response {
    let app = hub.current();
    let Some(token) = app.cfg.admin.token.as_ref().map(|t| t.expose().to_string()) else {
        return next.run(req).await;
    };
    drop(app);
    if let Ok(Query(q)) = Query::<TokenQuery>::try_from_uri(req.uri())
        && let Some(given) = q.token
    {
        return if same(&given, &token) {
            let cookie = format!(
                "{COOKIE}={}; Path=/dashboard; HttpOnly; SameSite=Strict",
                cookie_value(&token)
            );
            let mut resp =
                (StatusCode::SEE_OTHER, [(header::LOCATION, "/dashboard")]).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            private(resp)
        } else {
            refuse("wrong admin token in ?token=\n")
        };
    }
    if bearer_ok(req.headers(), &token) || cookie_ok(req.headers(), &token) {
        return next.run(req).await;
    }
    refuse(
        "the dashboard needs the admin token: open /dashboard?token=<token> once (it sets a cookie), or send Authorization: Bearer <token>\n",
    )
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn refuse(message: &'static str) -> Response {
    private(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            message,
        )
            .into_response(),
    )
}

fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn bearer_ok(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| same(given, token))
}

fn cookie_ok(headers: &HeaderMap, token: &str) -> bool {
    let want = cookie_value(token);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(name, value)| name == COOKIE && same(value, &want))
}

/// Hex HMAC-SHA256 of [`COOKIE_PURPOSE`] under the admin token.
fn cookie_value(token: &str) -> String {
    match Hmac::<Sha256>::new_from_slice(token.as_bytes()) {
        Ok(mut mac) => {
            mac.update(COOKIE_PURPOSE);
            hex::encode(mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length; never reached.
        Err(_) => String::new(),
    }
}

/// No caching, no sniffing, no referrer (a page URL may have carried the token).
fn private(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    private(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

async fn page() -> Response {
    let mut resp = asset("text/html; charset=utf-8", assets::INDEX_HTML);
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    resp
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", assets::APP_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", assets::STYLE_CSS)
}

async fn events(State(hub): State<Arc<Hub>>) -> Response {
    let Some(rx) = subscribe(&hub) else {
        return draining();
    };
    // The current snapshot at once, then each new one; the end when the feed stops.
    let stream = futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let snapshot = rx.borrow_and_update().clone();
        let mut event = Event::default().data(&*snapshot);
        if first {
            event = event.retry(RETRY);
        }
        Some((Ok::<_, Infallible>(event), (rx, false)))
    });
    private(
        Sse::new(stream)
            .keep_alive(KeepAlive::default())
            .into_response(),
    )
}

async fn one_snapshot(State(hub): State<Arc<Hub>>) -> Response {
    let Some(rx) = subscribe(&hub) else {
        return draining();
    };
    let body = rx.borrow().to_string();
    private(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn draining() -> Response {
    private((StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response())
}

/// The shared feed of snapshots (started by the first viewer).
fn subscribe(hub: &Arc<Hub>) -> Option<tokio::sync::watch::Receiver<Arc<str>>> {
    let feed = hub.current().dashboard.feed.clone();
    let hub = hub.clone();
    feed.subscribe(move || build(&hub))
}

/// One snapshot of the current generation; `None` once the gateway drains.
fn build(hub: &Hub) -> Option<Arc<str>> {
    if hub.draining() {
        return None;
    }
    let app = hub.current();
    let now = app.now();
    let views: Vec<_> = {
        let cell = app.router();
        (0..app.cfg.deployments.len())
            .map(|i| cell.router.view(DeploymentIx(i as u32), now))
            .collect()
    };
    let snap = snapshot::build(&app.cfg, &views, now, &app.dashboard);
    match serde_json::to_string(&snap) {
        Ok(json) => Some(Arc::from(json)),
        Err(e) => {
            tracing::warn!(error = %e, "dashboard snapshot not serialisable");
            None
        }
    }
}
