//! Parsing a chat request and estimating its tokens never panics, and a parsed request
//! serialises back to JSON that parses to the same request.
#![no_main]
use libfuzzer_sys::fuzz_target;
use spillway_proto::ChatRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<ChatRequest>(data) {
        let _ = spillway_proto::tokens::prompt_tokens(&req.messages);
        let back = serde_json::to_vec(&req).expect("serialises");
        let again: ChatRequest = serde_json::from_slice(&back).expect("round-trips");
        assert_eq!(again.model, req.model);
        assert_eq!(again.messages.len(), req.messages.len());
    }
});
