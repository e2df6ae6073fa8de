//! The simulator's admin routes: `GET`/`POST /admin/fault` (the fault switched at run time) and
//! `GET`/`DELETE /admin/served` (the record of what this region served, the evidence residency
//! checks read), and `GET /admin/stats` (the prefix cache's counters, [`crate::PrefixCacheStats`]:
//! `{"region": …, "prefix_cache": {"capacity_blocks", "resident_blocks", "evicted_blocks",
//! "requests", "hit_blocks", "miss_blocks", "cached_tokens", "prefill_tokens"}}`).
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::Sim;
use crate::faults::Fault;
use crate::reply::{json_response, openai_error, to_json};

pub(crate) async fn get_fault(State(sim): State<Arc<Sim>>) -> Response {
    json_response(StatusCode::OK, to_json(&sim.faults.get()))
}

pub(crate) async fn set_fault(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let parsed = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(Fault::default())
    } else {
        serde_json::from_slice::<Fault>(&body).map_err(|e| e.to_string())
    };
    match parsed.and_then(|f| f.validate().map(|()| f)) {
        Ok(fault) => {
            tracing::info!(region = %sim.cfg.region, ?fault, "spillway-sim: fault set");
            sim.faults.set(fault.clone());
            json_response(StatusCode::OK, to_json(&fault))
        }
        Err(e) => openai_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            &format!("invalid fault: {e}"),
        ),
    }
}

pub(crate) async fn get_served(State(sim): State<Arc<Sim>>) -> Response {
    let body = json!({ "region": sim.cfg.region, "served": sim.recorder.snapshot() });
    json_response(StatusCode::OK, body.to_string())
}

pub(crate) async fn clear_served(State(sim): State<Arc<Sim>>) -> Response {
    sim.recorder.clear();
    let body = json!({ "region": sim.cfg.region, "served": [] });
    json_response(StatusCode::OK, body.to_string())
}

pub(crate) async fn get_stats(State(sim): State<Arc<Sim>>) -> Response {
    let body = json!({ "region": sim.cfg.region, "prefix_cache": sim.prefix.stats() });
    json_response(StatusCode::OK, body.to_string())
}
