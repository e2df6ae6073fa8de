//! HTTP routes: the OpenAI surface (`/v1/chat/completions`, `/v1/embeddings` in
//! [`crate::embeddings`], `/v1/models`), the admin surface
//! (`/admin/fault`, `/admin/served`) and `/healthz`. Every response carries `x-sim-region`.
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::middleware::map_response_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Map;
use spillway_proto::tokens::prompt_tokens;
use spillway_proto::{
    ChatCompletion, ChatRequest, Choice, ModelList, ModelObject, ResponseMessage,
};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::Sim;
use crate::admin;
use crate::engine::{Cut, Plan, Slot};
use crate::faults::Fault;
use crate::prefix_cache::Lookup;
use crate::record::{Outcome, ServedRecord, Ticket};
use crate::reply::{
    aborted_response, json_response, openai_error, storm, throttled, to_json, unavailable,
};
use crate::stream::{self, ChunkMeta};
use crate::text::Text;
use crate::tools::ToolCall;

/// The header naming the region that answered.
pub const REGION_HEADER: &str = "x-sim-region";

pub(crate) fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/admin/fault", get(admin::get_fault).post(admin::set_fault))
        .route(
            "/admin/served",
            get(admin::get_served).delete(admin::clear_served),
        )
        .route("/admin/stats", get(admin::get_stats))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(not_found)
        .layer(map_response_with_state(sim.clone(), region_header))
        .with_state(sim)
}

async fn region_header(State(sim): State<Arc<Sim>>, mut res: Response) -> Response {
    if let Some(v) = &sim.region_header {
        res.headers_mut()
            .insert(HeaderName::from_static(REGION_HEADER), v.clone());
    }
    res
}

async fn not_found() -> Response {
    openai_error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("not_found"),
        "no such route",
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    ["x-spillway-request-id", "x-request-id"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .map(str::to_string)
}

/// Waits until the simulator shuts down (forever if it never does).
async fn until_shutdown(sim: &Sim) {
    let mut rx = sim.shutdown.clone();
    if rx.wait_for(|down| *down).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A request the engine admitted: what it will produce, the slot it holds, its record, and when
/// its decoding starts (the end of prefill).
struct Admitted {
    req: ChatRequest,
    /// The tool call answered instead of text, if the request gets one.
    tool: Option<ToolCall>,
    /// The words of the answer (which answer, from which token).
    text: Text,
    prompt: u64,
    /// Prompt tokens read from the prefix cache (`None`: no cache).
    cached: Option<u64>,
    plan: Plan,
    slot: Slot,
    ticket: Ticket,
    decode_start: Instant,
}

async fn chat_completions(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rec = arrival_record(&sim, &headers);
    let req: ChatRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return invalid(&sim, rec, &e),
    };
    let text = match Text::for_request(sim.cfg.text_seed, &req) {
        Ok(t) => t,
        Err(e) => return invalid(&sim, rec, &e),
    };
    let (prompt, mut ticket) = open_ticket(&sim, &req, rec, text);
    // The network, then the faults, then the engine.
    if !sim.cfg.rtt.is_zero() {
        tokio::time::sleep(sim.cfg.rtt).await;
    }
    let fault = sim.faults.get();
    if let Some(res) = injected_failure(&sim, &fault, &mut ticket).await {
        return res;
    }
    let (tool, plan, lookup) = plan(&sim, &req, &fault, &text, prompt);
    let slot = match sim.engine.admit(plan.service_time()).await {
        Ok(slot) => slot,
        Err(t) => {
            ticket.close(Outcome::Throttled);
            return throttled(t.retry_after);
        }
    };
    sim.prefix.started(&lookup);
    ticket.set_cached_tokens(lookup.cached_tokens());
    let decode_start = slot.start() + plan.prefill;
    crate::engine::sleep_until(decode_start).await;
    sim.prefix.insert(&lookup);
    let admitted = Admitted {
        req,
        tool,
        text,
        prompt,
        cached: lookup.cached_tokens(),
        plan,
        slot,
        ticket,
        decode_start,
    };
    if admitted.req.is_stream() {
        streamed(admitted, sim.shutdown.clone())
    } else {
        unary(admitted, &sim).await
    }
}

/// The tool call the request gets, if any, its plan, and what its prompt found in the prefix
/// cache (the plan's prefill reads only the rest).
fn plan(
    sim: &Sim,
    req: &ChatRequest,
    fault: &Fault,
    text: &Text,
    prompt: u64,
) -> (Option<ToolCall>, Plan, Lookup) {
    // A tool call's length is its arguments' (see `tools`), under the client's cap. A
    // continuation goes on writing text, and uncapped writes what is left of the default length.
    let tool = ToolCall::pick(req).filter(|_| text.continued_from.is_none());
    let cap = match &tool {
        Some(t) => Some(req.output_cap().map_or(t.tokens(), |c| c.min(t.tokens()))),
        None => req.output_cap(),
    };
    let uncapped = sim
        .cfg
        .default_max_tokens
        .saturating_sub(text.continued_from.unwrap_or(0));
    let lookup = sim.prefix.lookup(&req.messages, prompt);
    let plan = Plan::with_default(&sim.cfg, fault, cap, uncapped, lookup.prefill_tokens());
    (tool, plan, lookup)
}

/// The record of a request as it arrives: who asked, where, and when.
fn arrival_record(sim: &Sim, headers: &HeaderMap) -> ServedRecord {
    ServedRecord {
        request_id: request_id(headers),
        region: sim.cfg.region.clone(),
        model: String::new(),
        stream: false,
        prompt_tokens: 0,
        completion_tokens: 0,
        outcome: String::new(),
        at_ms: sim.recorder.now_ms(),
        traceparent: headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        continued_from: None,
        cached_tokens: None,
    }
}

/// An unparsable request (or an impossible continuation): recorded as invalid and answered 400.
fn invalid(sim: &Sim, rec: ServedRecord, e: &dyn std::fmt::Display) -> Response {
    Ticket::open(sim.recorder.clone(), rec).close(Outcome::Invalid);
    let msg = format!("invalid chat-completions request: {e}");
    openai_error(StatusCode::BAD_REQUEST, "invalid_request_error", None, &msg)
}

/// Opens the record of a parsed request; returns its prompt tokens with the ticket. A
/// continuation's prefix is part of its prompt: it is input now.
fn open_ticket(sim: &Sim, req: &ChatRequest, mut rec: ServedRecord, text: Text) -> (u64, Ticket) {
    let prompt = prompt_tokens(&req.messages);
    rec.model = req.model.clone();
    rec.stream = req.is_stream();
    rec.prompt_tokens = prompt;
    rec.continued_from = text.continued_from;
    sim.note_model(&req.model);
    (prompt, Ticket::open(sim.recorder.clone(), rec))
}

/// The response of a shutdown or an injected fault (outage, error, hang), recorded on the
/// ticket; `None` when the request goes on to the engine.
async fn injected_failure(sim: &Sim, fault: &Fault, ticket: &mut Ticket) -> Option<Response> {
    if *sim.shutdown.borrow() {
        ticket.close(Outcome::Outage);
        return Some(unavailable("the simulator is shutting down"));
    }
    if fault.outage {
        ticket.close(Outcome::Outage);
        return Some(unavailable("region outage (injected)"));
    }
    if fault.reset {
        ticket.close(Outcome::Reset);
        return Some(aborted_response(
            "spillway-sim: connection reset (injected)",
        ));
    }
    if fault.throttle {
        ticket.close(Outcome::Throttled);
        return Some(storm(fault.throttle_retry_after_ms));
    }
    if sim.faults.sample_error(fault.error_rate) {
        ticket.close(Outcome::Error);
        return Some(openai_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            Some("internal_error"),
            "internal error (injected)",
        ));
    }
    if fault.hang {
        // No byte until the client goes away (the ticket then records `cancelled`); only a
        // shutdown ends it from this side, so that graceful shutdown can finish.
        until_shutdown(sim).await;
        ticket.close(Outcome::Outage);
        return Some(unavailable("the simulator is shutting down"));
    }
    None
}

fn completion_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::new_v4().simple())
}

/// An SSE response whose body decodes the tokens as it streams them (see [`stream`]).
fn streamed(a: Admitted, shutdown: watch::Receiver<bool>) -> Response {
    let meta = ChunkMeta {
        id: completion_id(),
        model: a.req.model.clone(),
        created: unix_now(),
        prompt_tokens: a.prompt,
        cached_tokens: a.cached,
        include_usage: a.req.wants_stream_usage(),
        tool: a.tool,
        text: a.text,
    };
    let body = stream::body(meta, a.plan, a.decode_start, a.slot, a.ticket, shutdown);
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// Decodes the whole completion, then answers it as one JSON body; a fault that cuts the
/// response short answers as [`cut_short`] says instead.
async fn unary(a: Admitted, sim: &Sim) -> Response {
    let Admitted {
        req,
        tool,
        text,
        prompt,
        cached,
        plan,
        slot,
        mut ticket,
        decode_start,
    } = a;
    if let Some((k, why)) = plan.cut() {
        crate::engine::decode(&plan, decode_start, k).await;
        ticket.set_completion_tokens(k);
        return cut_short(k, why, slot, ticket, sim);
    }
    let n = plan.output_tokens;
    crate::engine::decode(&plan, decode_start, n).await;
    ticket.set_completion_tokens(n);
    slot.finish();
    ticket.close(Outcome::Ok);
    let completion = ChatCompletion {
        id: completion_id(),
        object: "chat.completion".to_string(),
        created: unix_now(),
        model: req.model.clone(),
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".to_string(),
                content: tool.is_none().then(|| text.first(n)),
                extra: tool.as_ref().map_or_else(Map::new, |t| t.message_extra(n)),
            },
            finish_reason: Some(
                tool.as_ref()
                    .map_or(plan.finish_reason(), |t| t.finish_reason(n))
                    .to_string(),
            ),
            extra: Map::new(),
        }],
        usage: Some(crate::reply::usage(prompt, n, cached)),
        extra: Map::new(),
    };
    json_response(StatusCode::OK, to_json(&completion))
}

/// A non-streamed response cut short after `k` tokens were decoded: `break_after_tokens` drops
/// the connection, `error_event_after_tokens` answers 500, `stall_after_tokens` sends the head
/// and no body.
fn cut_short(k: u64, why: Cut, slot: Slot, mut ticket: Ticket, sim: &Sim) -> Response {
    match why {
        Cut::Stall => stalled_response(slot, ticket, sim.shutdown.clone()),
        Cut::Break => {
            drop(slot);
            ticket.close(Outcome::Broken);
            aborted_response(&format!(
                "spillway-sim: break_after_tokens fault after {k} tokens"
            ))
        }
        Cut::ErrorEvent => {
            drop(slot);
            ticket.close(Outcome::Error);
            openai_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                Some("engine_error"),
                &format!("engine error after {k} tokens (injected)"),
            )
        }
    }
}

/// A 200 head whose body never comes (`stall_after_tokens`, non-streamed): the body holds the
/// slot and the record until the client goes away (recorded `cancelled`) or the simulator shuts
/// down (the connection is then dropped, recorded `outage`).
fn stalled_response(
    slot: Slot,
    mut ticket: Ticket,
    mut shutdown: watch::Receiver<bool>,
) -> Response {
    let body = futures_util::stream::once(async move {
        if shutdown.wait_for(|down| *down).await.is_err() {
            std::future::pending::<()>().await;
        }
        drop(slot);
        ticket.close(Outcome::Outage);
        Err::<Bytes, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "spillway-sim: shutting down during a stall",
        ))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

/// `POST /v1/embeddings`: see [`crate::embeddings`].
async fn embeddings(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut rec = arrival_record(&sim, &headers);
    let parsed = serde_json::from_slice::<spillway_proto::embeddings::EmbeddingsRequest>(&body)
        .map_err(|e| e.to_string())
        .and_then(|r| r.validate().map(|()| r).map_err(|e| e.to_string()));
    let req = match parsed {
        Ok(r) => r,
        Err(e) => {
            Ticket::open(sim.recorder.clone(), rec).close(Outcome::Invalid);
            let msg = format!("invalid embeddings request: {e}");
            return openai_error(StatusCode::BAD_REQUEST, "invalid_request_error", None, &msg);
        }
    };
    let prompt = req.input_tokens();
    rec.model = req.model.clone();
    rec.prompt_tokens = prompt;
    sim.note_model(&req.model);
    let mut ticket = Ticket::open(sim.recorder.clone(), rec);
    if !sim.cfg.rtt.is_zero() {
        tokio::time::sleep(sim.cfg.rtt).await;
    }
    let fault = sim.faults.get();
    if let Some(res) = injected_failure(&sim, &fault, &mut ticket).await {
        return res;
    }
    let plan = Plan::new(&sim.cfg, &fault, Some(0), prompt);
    let slot = match sim.engine.admit(plan.service_time()).await {
        Ok(slot) => slot,
        Err(t) => {
            ticket.close(Outcome::Throttled);
            return throttled(t.retry_after);
        }
    };
    crate::engine::sleep_until(slot.start() + plan.prefill).await;
    slot.finish();
    ticket.close(Outcome::Ok);
    json_response(
        StatusCode::OK,
        to_json(&crate::embeddings::answer(&req, prompt)),
    )
}

async fn models(State(sim): State<Arc<Sim>>) -> Response {
    let data = sim
        .models()
        .into_iter()
        .map(|id| ModelObject {
            id,
            object: "model".to_string(),
            created: sim.created,
            owned_by: "spillway-sim".to_string(),
        })
        .collect();
    json_response(
        StatusCode::OK,
        to_json(&ModelList {
            object: "list".to_string(),
            data,
        }),
    )
}

#[cfg(test)]
mod tests;
