//! Listeners and the process around the pipeline: one axum router per listener (each listener
//! is one region's endpoint), the in-process simulators of `sim` deployments, operations routes,
//! and graceful shutdown.
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
use spillway_core::RegionIx;
use spillway_proto::{ModelList, ModelObject};
use spillway_sim::SimHandle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bedrock_api::{Incoming, Operation};
use crate::config::{Config, Upstream};
use crate::metrics::DeploymentLabels;
use crate::profiles_api::Call;
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
    #[error("cannot start the simulator for {model} in {region}: {source}")]
    Sim {
        model: String,
        region: String,
        #[source]
        source: spillway_sim::SimError,
    },
    #[error("cannot build the upstream HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    State(#[from] crate::state::StateError),
}

/// A running gateway: its listeners, its in-process simulators, and a way to stop it.
pub struct Gateway {
    state: Arc<AppState>,
    listeners: Vec<(RegionIx, SocketAddr)>,
    sims: Vec<Option<SimHandle>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Clone)]
struct ListenerState {
    app: Arc<AppState>,
    region: RegionIx,
}

impl Gateway {
    /// Start the in-process simulators, bind every listener and serve.
    pub async fn start(cfg: Config) -> Result<Gateway, GatewayError> {
        let cfg = Arc::new(cfg);
        let mut sims = Vec::with_capacity(cfg.deployments.len());
        for d in &cfg.deployments {
            sims.push(match &d.upstream {
                Upstream::Sim {
                    base_url: None,
                    sim,
                } => {
                    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
                    let sim_err = |source| GatewayError::Sim {
                        model: cfg.models[d.model].id.clone(),
                        region: cfg.region_name(d.region).to_string(),
                        source,
                    };
                    let listener = tokio::net::TcpListener::bind(addr)
                        .await
                        .map_err(|e| sim_err(spillway_sim::SimError::from(e)))?;
                    Some(
                        spillway_sim::spawn(sim.clone(), listener)
                            .await
                            .map_err(sim_err)?,
                    )
                }
                _ => None,
            });
        }
        let sim_urls: Vec<Option<String>> = sims
            .iter()
            .map(|s| s.as_ref().map(SimHandle::base_url))
            .collect();
        let targets = UpstreamTarget::for_config(&cfg, &sim_urls);
        let state = Arc::new(AppState::new(cfg.clone(), targets)?);
        state.start_shared().await;
        let (stop, stop_rx) = watch::channel(false);
        let mut listeners = Vec::new();
        let mut tasks = Vec::new();
        for l in &cfg.listeners {
            let tcp = tokio::net::TcpListener::bind(l.bind)
                .await
                .map_err(|source| GatewayError::Bind {
                    addr: l.bind,
                    source,
                })?;
            let addr = tcp.local_addr().map_err(|source| GatewayError::Bind {
                addr: l.bind,
                source,
            })?;
            let app = router(ListenerState {
                app: state.clone(),
                region: l.region,
            });
            let mut rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                let shutdown = async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                };
                if let Err(e) = axum::serve(
                    tcp.tap_io(|s| {
                        // Stream chunks go out as they are written: no Nagle delay on small SSE events.
                        let _ = s.set_nodelay(true);
                    }),
                    app,
                )
                .with_graceful_shutdown(shutdown)
                .await
                {
                    tracing::error!(%addr, error = %e, "listener failed");
                }
            }));
            tracing::info!(%addr, region = cfg.region_name(l.region), "listening");
            listeners.push((l.region, addr));
        }
        Ok(Gateway {
            state,
            listeners,
            sims,
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

    /// The in-process simulator serving `model` in `region`, if the gateway runs one.
    pub fn sim(&self, model: &str, region: &str) -> Option<&SimHandle> {
        let cfg = &self.state.cfg;
        let d = cfg.deployment(cfg.model_ix(model)?, cfg.region_ix(region)?)?;
        self.sims.get(d.0 as usize)?.as_ref()
    }

    /// Every in-process simulator.
    pub fn sims(&self) -> impl Iterator<Item = &SimHandle> {
        self.sims.iter().flatten()
    }

    /// Stop accepting, let in-flight requests finish within `grace`, then stop the simulators.
    /// Returns false when the deadline cut requests off.
    pub async fn shutdown(self, grace: Duration) -> bool {
        let _ = self.stop.send(true);
        let all = futures_util::future::join_all(self.tasks);
        let clean = tokio::time::timeout(grace, all).await.is_ok();
        self.state.flush_shared().await;
        for s in self.sims.iter().flatten() {
            s.shutdown();
        }
        clean
    }
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
    crate::pipeline::chat_completions(ls.app, ls.region, headers, body).await
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
    crate::bedrock_api::runtime(ls.app, ls.region, op, model_id, inc).await
}

async fn control(ls: ListenerState, inc: Incoming, call: impl FnOnce(&Uri) -> Call) -> Response {
    let call = call(&inc.uri);
    crate::profiles_api::handle(ls.app, ls.region, call, inc).await
}

async fn models(State(ls): State<ListenerState>, headers: HeaderMap) -> Response {
    if let Err(e) = crate::pipeline::authenticate(&ls.app, &headers) {
        return e.into_openai_response();
    }
    let data = crate::resolve::callable_ids(&ls.app.cfg, ls.region)
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
