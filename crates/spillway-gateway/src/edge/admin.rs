//! The admin listener (`[admin] bind`, loopback by default): operations routes, kept off the API
//! listeners so that an API client can neither scrape nor reload.
//!
//! * `GET /healthz`: 200 while the process serves (liveness).
//! * `GET /readyz`: 200 when new traffic is welcome; 503 while draining (from the first moment
//!   of a SIGTERM) or while the configured shared state (Redis) is unreachable.
//! * `GET /metrics`: Prometheus metrics, OpenMetrics or classic text by `Accept`
//!   (docs/METRICS.md).
//! * `GET /dashboard`: the live regional dashboard, and its event stream (`edge::dashboard`).
//! * `POST /admin/reload`: reload the configuration file the gateway was started with (as
//!   SIGHUP and `spillway reload` do); 200 with a summary, or 400 with every error, the running
//!   configuration kept.
//!
//! With `[admin] token_env`, every route but the probes (`/healthz`, `/readyz`: they tell only
//! whether the process serves and wants traffic, and an orchestrator's HTTP probe cannot send a
//! secret) wants `Authorization: Bearer <token>`
//! (compared in constant time); the dashboard also takes a cookie set by `/dashboard?token=`.
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use subtle::ConstantTimeEq;

use super::Hub;
use crate::metrics::{DeploymentLabels, DeploymentNow, Format, exposition};

pub(super) fn admin_router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/admin/reload", post(reload))
        .layer(axum::middleware::from_fn_with_state(hub.clone(), bearer))
        .merge(super::dashboard::routes(hub.clone()))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(hub)
}

/// The admin token, when one is configured.
async fn bearer(State(hub): State<Arc<Hub>>, req: Request, next: Next) -> Response {
    let app = hub.current();
    if let Some(token) = &app.cfg.admin.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let ok: bool = given.as_bytes().ct_eq(token.expose().as_bytes()).into();
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "missing or wrong admin token\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}

async fn readyz(State(hub): State<Arc<Hub>>) -> Response {
    if hub.draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    if hub.current().shared_state_up() {
        "ready".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "degraded: shared state unreachable",
        )
            .into_response()
    }
}

async fn reload(State(hub): State<Arc<Hub>>) -> Response {
    match hub.reload_from_file().await {
        Ok(summary) => (StatusCode::OK, format!("{summary}\n")).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}

async fn metrics(State(hub): State<Arc<Hub>>, req: Request) -> Response {
    let app = hub.current();
    let cfg = &app.cfg;
    let now = app.now();
    let left = |until: Option<std::time::Duration>| {
        until.map_or(0.0, |u| u.saturating_sub(now).as_secs_f64())
    };
    {
        let cell = app.router();
        for (i, d) in cfg.deployments.iter().enumerate() {
            let ix = spillway_core::DeploymentIx(i as u32);
            let v = cell.router.view(ix, now);
            let labels = DeploymentLabels {
                region: cfg.region_name(d.region).to_string(),
                model: cfg.models[d.model].id.clone(),
            };
            let seen = DeploymentNow {
                in_flight: v.in_flight,
                limit: v.limit,
                healthy: v.healthy,
                cooldown_seconds: left(v.cooldown_until),
                ejected_seconds: left(v.ejected_until),
                prefix_cache_trust: cell.router.prefix_cache_trust(ix),
                tail_waits: cell.router.tail_waits(ix),
            };
            app.metrics.observe_deployment(&labels, &seen);
        }
    }
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    app.metrics
        .runtime_tasks
        .set(i64::try_from(tasks).unwrap_or(i64::MAX));
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = exposition::negotiate(accept);
    let content_type = match format {
        Format::OpenMetrics => exposition::OPENMETRICS,
        Format::Classic => exposition::CLASSIC,
    };
    (
        [(header::CONTENT_TYPE, content_type)],
        app.metrics.encode(format),
    )
        .into_response()
}
