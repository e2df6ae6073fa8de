//! Listeners and the process around the pipeline: one axum router per listener (each listener
//! is one region's endpoint), operations routes, and graceful shutdown.
//!
//! The gateway never starts simulators (DESIGN §2.1): it reaches every upstream over HTTP. A
//! `kind = "sim"` deployment without `base_url` stands for a simulator that whoever embeds the
//! gateway starts (the CLI, through `spillway-embedded`) and whose base URL it hands to
//! [`Gateway::start_with_sims`]. [`Gateway::start`] is for configurations whose every upstream
//! has a URL.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use bytes::Bytes;
use spillway_core::{DeploymentIx, RegionIx};
use spillway_proto::{ModelList, ModelObject};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::bedrock::{Incoming, Operation};
use crate::api::profiles::Call;
use crate::config::{Config, Listener};
use crate::metrics::DeploymentLabels;
use crate::state::AppState;
use crate::upstream::UpstreamTarget;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the `sim` deployment of {model} in {region} has no base_url and was given no simulator URL (the embedded stack, spillway-embedded, starts its simulator)"
    )]
    NoSimUrl { model: String, region: String },
    #[error(
        "a simulator URL was given for deployment {0}, which is not a `sim` deployment without base_url"
    )]
    UnexpectedSimUrl(u32),
    #[error("cannot build the upstream HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    State(#[from] crate::state::StateError),
}

/// A running gateway: its listeners and a way to stop it.
pub struct Gateway {
    state: Arc<AppState>,
    listeners: Vec<(RegionIx, SocketAddr)>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Clone)]
struct ListenerState {
    app: Arc<AppState>,
    region: RegionIx,
}

impl Gateway {
    /// Bind every listener and serve a configuration whose every upstream has a URL; a `sim`
    /// deployment without `base_url` is an error ([`GatewayError::NoSimUrl`]).
    pub async fn start(cfg: Config) -> Result<Gateway, GatewayError> {
        Self::start_with_sims(cfg, &HashMap::new()).await
    }

    /// [`Gateway::start`] for a configuration with `sim` deployments without `base_url`
    /// ([`Config::embedded_sims`]): `sim_urls` maps each of them, and nothing else, to the base
    /// URL of the simulator started for it (`http://127.0.0.1:PORT/v1`).
    pub async fn start_with_sims(
        cfg: Config,
        sim_urls: &HashMap<DeploymentIx, String>,
    ) -> Result<Gateway, GatewayError> {
        let urls = sim_url_table(&cfg, sim_urls)?;
        let cfg = Arc::new(cfg);
        let targets = UpstreamTarget::for_config(&cfg, &urls);
        let state = Arc::new(AppState::new(cfg.clone(), targets)?);
        state.start_shared().await;
        let (stop, stop_rx) = watch::channel(false);
        let mut listeners = Vec::new();
        let mut tasks = Vec::new();
        for l in &cfg.listeners {
            let (addr, task) = serve_listener(&state, l, stop_rx.clone()).await?;
            tracing::info!(%addr, region = cfg.region_name(l.region), "listening");
            listeners.push((l.region, addr));
            tasks.push(task);
        }
        Ok(Gateway {
            state,
            listeners,
            stop,
            tasks,
        })
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    pub fn config(&self) -> &Config {
        &self.state.cfg
    }

    /// Bound addresses, one per listener, with the region each represents.
    pub fn listeners(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .iter()
            .map(|(r, a)| (self.state.cfg.region_name(*r).to_string(), *a))
            .collect()
    }

    /// The first listener of a region.
    pub fn addr(&self, region: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(r, _)| self.state.cfg.region_name(*r) == region)
            .map(|(_, a)| *a)
    }

    /// Stop accepting and let in-flight requests finish within `grace`. Returns false when the
    /// deadline cut requests off.
    pub async fn shutdown(self, grace: Duration) -> bool {
        let _ = self.stop.send(true);
        let all = futures_util::future::join_all(self.tasks);
        let clean = tokio::time::timeout(grace, all).await.is_ok();
        self.state.flush_shared().await;
        clean
    }
}

/// Per deployment, the base URL of the simulator started for it (`None` for every other
/// deployment); an error if an embedded `sim` deployment has none or another deployment has one.
fn sim_url_table(
    cfg: &Config,
    sim_urls: &HashMap<DeploymentIx, String>,
) -> Result<Vec<Option<String>>, GatewayError> {
    let mut table = vec![None; cfg.deployments.len()];
    for (d, _) in cfg.embedded_sims() {
        let dep = &cfg.deployments[d.0 as usize];
        let url = sim_urls.get(&d).ok_or_else(|| GatewayError::NoSimUrl {
            model: cfg.models[dep.model].id.clone(),
            region: cfg.region_name(dep.region).to_string(),
        })?;
        table[d.0 as usize] = Some(url.trim_end_matches('/').to_string());
    }
    if let Some(d) = sim_urls.keys().find(|d| {
        table
            .get(d.0 as usize)
            .is_none_or(|url: &Option<String>| url.is_none())
    }) {
        return Err(GatewayError::UnexpectedSimUrl(d.0));
    }
    Ok(table)
}

/// Bind one listener and serve it on a task until `stop` turns true.
async fn serve_listener(
    state: &Arc<AppState>,
    l: &Listener,
    mut stop: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>), GatewayError> {
    let bind_err = |source| GatewayError::Bind {
        addr: l.bind,
        source,
    };
    let tcp = tokio::net::TcpListener::bind(l.bind)
        .await
        .map_err(bind_err)?;
    let addr = tcp.local_addr().map_err(bind_err)?;
    let app = router(ListenerState {
        app: state.clone(),
        region: l.region,
    });
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        // Stream chunks go out as they are written: no Nagle delay on small SSE events.
        let tcp = tcp.tap_io(|s| {
            let _ = s.set_nodelay(true);
        });
        if let Err(e) = axum::serve(tcp, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(%addr, error = %e, "listener failed");
        }
    });
    Ok((addr, task))
}

fn router(ls: ListenerState) -> Router {
    let limit = ls.app.cfg.max_body_bytes;
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route(
            "/model/{model_id}/converse",
            post(|State(ls): State<ListenerState>, inc: Incoming| {
                runtime_op(ls, Operation::Converse, inc)
            }),
        )
        .route(
            "/model/{model_id}/converse-stream",
            post(|State(ls): State<ListenerState>, inc: Incoming| {
                runtime_op(ls, Operation::ConverseStream, inc)
            }),
        )
        .route(
            "/model/{model_id}/invoke",
            post(|State(ls): State<ListenerState>, inc: Incoming| {
                runtime_op(ls, Operation::Invoke, inc)
            }),
        )
        .route(
            "/model/{model_id}/invoke-with-response-stream",
            post(|State(ls): State<ListenerState>, inc: Incoming| {
                runtime_op(ls, Operation::InvokeStream, inc)
            }),
        )
        .route(
            "/inference-profiles",
            get(|State(ls): State<ListenerState>, inc: Incoming| {
                control(ls, inc, |uri| Call::List {
                    query: uri.query().map(str::to_string),
                })
            })
            .post(|State(ls): State<ListenerState>, inc: Incoming| {
                control(ls, inc, |_| Call::Create)
            }),
        )
        .route(
            "/inference-profiles/{id}",
            get(|State(ls): State<ListenerState>, inc: Incoming| {
                control(ls, inc, |uri| Call::Get(raw_segment(uri, 2)))
            })
            .delete(|State(ls): State<ListenerState>, inc: Incoming| {
                control(ls, inc, |uri| Call::Delete(raw_segment(uri, 2)))
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .with_state(ls)
}

/// 503 while the shared state is configured but unreachable (quotas run on local shares).
async fn readyz(State(ls): State<ListenerState>) -> Response {
    if ls.app.shared_state_up() {
        "ready".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "degraded: shared state unreachable",
        )
            .into_response()
    }
}

async fn chat(
    State(ls): State<ListenerState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    crate::api::openai::chat_completions(ls.app, ls.region, headers, body).await
}

/// The raw (still percent-encoded) path segment at `index`: SigV4 and ARN parsing want the
/// bytes the client sent, not a decoded copy.
fn raw_segment(uri: &Uri, index: usize) -> String {
    uri.path()
        .split('/')
        .nth(index)
        .unwrap_or_default()
        .to_string()
}

async fn runtime_op(ls: ListenerState, op: Operation, inc: Incoming) -> Response {
    let model_id = raw_segment(&inc.uri, 2);
    crate::api::bedrock::runtime(ls.app, ls.region, op, model_id, inc).await
}

async fn control(ls: ListenerState, inc: Incoming, call: impl FnOnce(&Uri) -> Call) -> Response {
    let call = call(&inc.uri);
    crate::api::profiles::handle(ls.app, ls.region, call, inc).await
}

async fn models(State(ls): State<ListenerState>, headers: HeaderMap) -> Response {
    if let Err(e) = crate::api::openai::authenticate(&ls.app, &headers) {
        return e.into_openai_response();
    }
    let data = crate::api::resolve::callable_ids(&ls.app.cfg, ls.region)
        .into_iter()
        .map(|id| ModelObject {
            id,
            object: "model".into(),
            created: 0,
            owned_by: "spillway".into(),
        })
        .collect();
    axum::Json(ModelList {
        object: "list".into(),
        data,
    })
    .into_response()
}

async fn metrics(State(ls): State<ListenerState>) -> Response {
    let app = &ls.app;
    let cfg = &app.cfg;
    let now = app.now();
    {
        let cell = app.router();
        for (i, d) in cfg.deployments.iter().enumerate() {
            let v = cell.router.view(spillway_core::DeploymentIx(i as u32), now);
            let labels = DeploymentLabels {
                region: cfg.region_name(d.region).to_string(),
                model: cfg.models[d.model].id.clone(),
            };
            app.metrics
                .in_flight
                .get_or_create(&labels)
                .set(i64::from(v.in_flight));
            app.metrics
                .limit
                .get_or_create(&labels)
                .set(i64::from(v.limit));
            app.metrics
                .healthy
                .get_or_create(&labels)
                .set(i64::from(v.healthy));
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

async fn not_found(uri: Uri) -> Response {
    let path = uri.path();
    if path.starts_with("/model/") || path.starts_with("/inference-profiles") {
        // A Bedrock client: answer in Bedrock's shape so its SDK can read the error code.
        let body =
            serde_json::json!({ "message": format!("Unknown operation {path}.") }).to_string();
        return (
            StatusCode::NOT_FOUND,
            [
                (header::CONTENT_TYPE, "application/json"),
                (
                    header::HeaderName::from_static("x-amzn-errortype"),
                    "UnknownOperationException",
                ),
            ],
            body,
        )
            .into_response();
    }
    let body = spillway_proto::OpenAiErrorBody::new(
        "Unknown route.",
        "invalid_request_error",
        Some("not_found"),
    );
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_json(),
    )
        .into_response()
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    let body = spillway_proto::OpenAiErrorBody::new("Internal error.", "server_error", None);
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_json(),
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_sim_needs_a_url_and_nothing_else_takes_one() {
        let cfg = Config::embedded_default().unwrap();
        let embedded: Vec<DeploymentIx> = cfg.embedded_sims().map(|(d, _)| d).collect();
        assert_eq!(embedded.len(), cfg.deployments.len(), "all simulated");

        let err = sim_url_table(&cfg, &HashMap::new()).unwrap_err();
        assert!(matches!(err, GatewayError::NoSimUrl { .. }), "{err}");

        let mut urls: HashMap<DeploymentIx, String> = embedded
            .iter()
            .map(|d| (*d, format!("http://127.0.0.1:{}/v1/", 9000 + d.0)))
            .collect();
        let table = sim_url_table(&cfg, &urls).unwrap();
        assert_eq!(table[1].as_deref(), Some("http://127.0.0.1:9001/v1"));
        assert!(table.iter().all(Option::is_some));

        let beyond = DeploymentIx(cfg.deployments.len() as u32);
        urls.insert(beyond, "http://127.0.0.1:1/v1".into());
        let err = sim_url_table(&cfg, &urls).unwrap_err();
        assert!(
            matches!(err, GatewayError::UnexpectedSimUrl(d) if d == beyond.0),
            "{err}"
        );
    }
}
