//! The OpenAI Responses and embeddings bodies, as `api::responses` and `api::embeddings` parse
//! them: `serde_json` into the `spillway-proto` types, then the conversion to the canonical
//! chat request (Responses) or the checks and token count (embeddings).
use serde_json::{Map, Value};
use spillway_proto::embeddings::EmbeddingsRequest;
use spillway_proto::responses::{ChunksToEvents, ResponsesRequest, response_object};
use spillway_proto::{ChatChunk, ChatCompletion, Choice, ResponseMessage};

use super::requests::{assert_round_trip, use_chat_request};
use crate::must;

/// `POST /v1/responses`: the request, its canonical chat request (which keeps the model and
/// `stream` and goes on as a chat request does), and its echo rendered into a Response object
/// and a stream's events.
pub fn target_responses_request(data: &[u8]) {
    let Ok(req) = serde_json::from_slice::<ResponsesRequest>(data) else {
        return;
    };
    let Ok(chat) = req.to_chat() else {
        return;
    };
    assert_eq!(chat.model, req.model, "to_chat changed the model");
    assert_eq!(chat.is_stream(), req.is_stream(), "to_chat lost `stream`");
    assert!(!chat.messages.is_empty(), "to_chat accepted an empty input");
    assert_round_trip(&chat, "the chat request built from a Responses request");
    use_chat_request(&chat);
    let echo = req.echo("resp_fuzz".into(), 1);
    let answer = ChatCompletion {
        id: "c".into(),
        object: "chat.completion".into(),
        created: 1,
        model: req.model.clone(),
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".into(),
                content: Some("ok".into()),
                extra: Map::new(),
            },
            finish_reason: Some("stop".into()),
            extra: Map::new(),
        }],
        usage: None,
        extra: Map::new(),
    };
    let object = response_object(&echo, &answer);
    assert_eq!(object["status"], "completed");
    let mut events = ChunksToEvents::new(echo);
    let chunk: ChatChunk = must(
        serde_json::from_value(
            serde_json::json!({"id": "c", "object": "chat.completion.chunk",
            "created": 1, "model": req.model, "choices": [{"index": 0, "delta": {"content": "ok"}}]}),
        ),
        "a chunk parses",
    );
    let mut all = events.on_chunk(&chunk);
    all.extend(events.finish());
    assert_eq!(all.last().map(|e| e.0), Some("response.completed"));
}

/// `POST /v1/embeddings`: the request, its checks, its token count, and the body sent upstream
/// (the same request under the upstream's model name).
pub fn target_embeddings_request(data: &[u8]) {
    let Ok(req) = serde_json::from_slice::<EmbeddingsRequest>(data) else {
        return;
    };
    assert_round_trip(&req, "EmbeddingsRequest");
    if req.validate().is_err() {
        return;
    }
    let tokens = req.input_tokens();
    assert!(tokens >= req.items().len() as u64, "every item has a token");
    let body = must(
        req.for_upstream("fuzz-upstream"),
        "the upstream body serialises",
    );
    let sent: Value = must(serde_json::from_slice(&body), "the upstream body parses");
    assert_eq!(sent["model"], "fuzz-upstream");
    let back: EmbeddingsRequest = must(
        serde_json::from_value(sent),
        "the upstream body is a request",
    );
    assert_eq!(
        back.input, req.input,
        "the input changed on its way upstream"
    );
}
