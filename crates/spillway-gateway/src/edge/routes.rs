//! The API listener's path table: which adapter serves which path, and the answers for paths
//! and methods no API serves (404 and 405 in the shape of the API the path belongs to).
//! Operations routes (`/metrics`, `/healthz`, `/readyz`, `/admin/*`) are not here: they are on
//! the admin listener (`edge::admin`).
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use spillway_proto::{ModelList, ModelObject};

use super::Lane;
use super::guard::{api_for_path, guard};
use crate::api::bedrock::{Incoming, Operation};
use crate::api::profiles::Call;
use crate::api::tags::TagCall;
use crate::error::EdgeError;

/// The API router of one listener.
pub(super) fn api_router(lane: Lane) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/messages", post(messages))
        .route("/v1/responses", post(responses))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/model/{model_id}/converse", post(converse))
        .route("/model/{model_id}/converse-stream", post(converse_stream))
        .route("/model/{model_id}/invoke", post(invoke))
        .route(
            "/model/{model_id}/invoke-with-response-stream",
            post(invoke_stream),
        )
        .route("/model/{model_id}/count-tokens", post(count_tokens))
        .route(
            "/foundation-models",
            get(|State(lane): State<Lane>, inc: Incoming| {
                control(lane, inc, |uri| Call::ListModels {
                    query: uri.query().map(str::to_string),
                })
            }),
        )
        .route(
            "/foundation-models/{id}",
            get(|State(lane): State<Lane>, inc: Incoming| {
                control(lane, inc, |uri| Call::GetModel(raw_segment(uri, 2)))
            }),
        )
        .route("/listTagsForResource", post(list_tags))
        .route("/tagResource", post(tag_resource))
        .route("/untagResource", post(untag_resource))
        .route(
            "/inference-profiles",
            get(|State(lane): State<Lane>, inc: Incoming| {
                control(lane, inc, |uri| Call::List {
                    query: uri.query().map(str::to_string),
                })
            })
            .post(|State(lane): State<Lane>, inc: Incoming| control(lane, inc, |_| Call::Create)),
        )
        .route(
            "/inference-profiles/{id}",
            get(|State(lane): State<Lane>, inc: Incoming| {
                control(lane, inc, |uri| Call::Get(raw_segment(uri, 2)))
            })
            .delete(|State(lane): State<Lane>, inc: Incoming| {
                control(lane, inc, |uri| Call::Delete(raw_segment(uri, 2)))
            }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(lane.clone(), guard))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .with_state(lane)
}

async fn chat(State(lane): State<Lane>, headers: HeaderMap, body: Bytes) -> Response {
    let (app, region) = lane.now();
    crate::api::openai::chat_completions(app, region, headers, Ok(body)).await
}

async fn messages(State(lane): State<Lane>, headers: HeaderMap, body: Bytes) -> Response {
    let (app, region) = lane.now();
    crate::api::anthropic::messages(app, region, headers, body).await
}

async fn responses(State(lane): State<Lane>, headers: HeaderMap, body: Bytes) -> Response {
    let (app, region) = lane.now();
    crate::api::responses::create(app, region, headers, body).await
}

async fn embeddings(State(lane): State<Lane>, headers: HeaderMap, body: Bytes) -> Response {
    let (app, region) = lane.now();
    crate::api::embeddings::embeddings(app, region, headers, body).await
}

async fn converse(State(lane): State<Lane>, inc: Incoming) -> Response {
    runtime_op(lane, Operation::Converse, inc).await
}

async fn converse_stream(State(lane): State<Lane>, inc: Incoming) -> Response {
    runtime_op(lane, Operation::ConverseStream, inc).await
}

async fn invoke(State(lane): State<Lane>, inc: Incoming) -> Response {
    runtime_op(lane, Operation::Invoke, inc).await
}

async fn invoke_stream(State(lane): State<Lane>, inc: Incoming) -> Response {
    runtime_op(lane, Operation::InvokeStream, inc).await
}

async fn count_tokens(State(lane): State<Lane>, inc: Incoming) -> Response {
    let (app, region) = lane.now();
    let model_id = raw_segment(&inc.uri, 2);
    crate::api::count_tokens::count_tokens(app, region, model_id, inc).await
}

async fn list_tags(State(lane): State<Lane>, inc: Incoming) -> Response {
    control(lane, inc, |_| Call::Tags(TagCall::List)).await
}

async fn tag_resource(State(lane): State<Lane>, inc: Incoming) -> Response {
    control(lane, inc, |_| Call::Tags(TagCall::Tag)).await
}

async fn untag_resource(State(lane): State<Lane>, inc: Incoming) -> Response {
    control(lane, inc, |_| Call::Tags(TagCall::Untag)).await
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

async fn runtime_op(lane: Lane, op: Operation, inc: Incoming) -> Response {
    let (app, region) = lane.now();
    let model_id = raw_segment(&inc.uri, 2);
    crate::api::bedrock::runtime(app, region, op, model_id, inc).await
}

async fn control(lane: Lane, inc: Incoming, call: impl FnOnce(&Uri) -> Call) -> Response {
    let (app, region) = lane.now();
    let call = call(&inc.uri);
    crate::api::profiles::handle(app, region, call, inc).await
}

fn model_object(id: String) -> ModelObject {
    ModelObject {
        id,
        object: "model".into(),
        created: 0,
        owned_by: "spillway".into(),
    }
}

async fn models(State(lane): State<Lane>, headers: HeaderMap) -> Response {
    let (app, region) = lane.now();
    if let Err(e) = crate::api::openai::authenticate(&app, &headers) {
        return e.into_openai_response();
    }
    let data = crate::api::resolve::callable_ids(&app.cfg, region)
        .into_iter()
        .map(model_object)
        .collect();
    axum::Json(ModelList {
        object: "list".into(),
        data,
    })
    .into_response()
}

/// `GET /v1/models/{id}`: the model object of a model or profile callable on this listener,
/// else 404 `model_not_found` (the same ids `GET /v1/models` lists).
async fn model(State(lane): State<Lane>, headers: HeaderMap, uri: Uri) -> Response {
    let (app, region) = lane.now();
    if let Err(e) = crate::api::openai::authenticate(&app, &headers) {
        return e.into_openai_response();
    }
    let raw = raw_segment(&uri, 3);
    let id = percent_encoding::percent_decode_str(&raw).decode_utf8_lossy();
    if crate::api::resolve::callable_ids(&app.cfg, region)
        .iter()
        .any(|c| *c == id)
    {
        axum::Json(model_object(id.into_owned())).into_response()
    } else {
        EdgeError::ModelNotFound(id.into_owned()).into_openai_response()
    }
}

/// 404 in the shape of the API the path belongs to (a Bedrock SDK reads
/// `x-amzn-ErrorType: UnknownOperationException`, an OpenAI client `{"error": …}`).
async fn not_found(uri: Uri) -> Response {
    let path = uri.path();
    EdgeError::UnknownRoute(crate::error::shown(path).into_owned())
        .into_response_for(api_for_path(path))
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    let mut resp = EdgeError::MethodNotAllowed(method.as_str().chars().take(16).collect())
        .into_response_for(api_for_path(path));
    if let Some(allow) = allowed_methods(path) {
        resp.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    }
    resp
}

/// The `Allow` header of a 405 on one of the API's own paths.
fn allowed_methods(path: &str) -> Option<&'static str> {
    if path == "/inference-profiles" {
        Some("GET, POST")
    } else if path.starts_with("/inference-profiles/") {
        Some("GET, DELETE")
    } else if path == "/v1/models"
        || path.starts_with("/v1/models/")
        || path == "/foundation-models"
        || path.starts_with("/foundation-models/")
    {
        Some("GET")
    } else if path.starts_with("/model/")
        || matches!(
            path,
            "/v1/chat/completions" | "/v1/responses" | "/v1/embeddings" | "/v1/messages"
        )
        || matches!(
            path,
            "/listTagsForResource" | "/tagResource" | "/untagResource"
        )
    {
        Some("POST")
    } else {
        None
    }
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
