//! Any canonical chunk sequence gives a well-formed event sequence.
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;
use crate::openai::{ChunkChoice, Delta};

/// One chunk's worth of a canonical stream.
#[derive(Debug, Clone)]
enum Step {
    Text(String),
    Call {
        index: u64,
        name: Option<String>,
        args: String,
    },
    Finish(&'static str),
    Usage(u64, u64),
    Empty,
}

fn chunk(step: &Step) -> ChatChunk {
    let mut delta = Delta::default();
    let mut finish = None;
    let mut usage = None;
    match step {
        Step::Text(t) => delta.content = Some(t.clone()),
        Step::Call { index, name, args } => {
            let mut f = json!({"arguments": args});
            let mut call = json!({"index": index, "function": f.take()});
            if let Some(n) = name {
                call["id"] = json!(format!("call_{index}"));
                call["function"]["name"] = json!(n);
            }
            delta.extra.insert("tool_calls".into(), json!([call]));
        }
        Step::Finish(r) => finish = Some(r.to_string()),
        Step::Usage(i, o) => {
            usage = Some(Usage {
                prompt_tokens: *i,
                completion_tokens: *o,
                total_tokens: i + o,
                prompt_tokens_details: None,
            })
        }
        Step::Empty => {}
    }
    let choices = if matches!(step, Step::Usage(..)) {
        vec![]
    } else {
        vec![ChunkChoice {
            index: 0,
            delta,
            finish_reason: finish,
            extra: Map::new(),
        }]
    };
    ChatChunk {
        id: "c".into(),
        object: "chat.completion.chunk".into(),
        created: 1,
        model: "m".into(),
        choices,
        usage,
        extra: Map::new(),
    }
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        "[a-z ]{0,6}".prop_map(Step::Text),
        (
            0u64..3,
            proptest::option::of("[a-z]{1,4}"),
            "[{}a-z:\"]{0,5}"
        )
            .prop_map(|(index, name, args)| Step::Call { index, name, args }),
        prop_oneof![Just("stop"), Just("length"), Just("tool_calls")].prop_map(Step::Finish),
        (0u64..100, 0u64..100).prop_map(|(i, o)| Step::Usage(i, o)),
        Just(Step::Empty),
    ]
}

/// Check the event grammar of the module docs; returns the final Response object.
fn check(events: &[Event], texts: &str, end: &str) -> Value {
    let mut open: Option<(u64, String)> = None;
    let mut items = 0u64;
    let mut text = String::new();
    let mut all_text = String::new();
    for (i, (kind, body)) in events.iter().enumerate() {
        assert_eq!(body["sequence_number"], json!(i), "{kind}");
        assert_eq!(body["type"], json!(kind));
        match (i, *kind) {
            (0, k) => assert_eq!(k, "response.created"),
            (1, k) => assert_eq!(k, "response.in_progress"),
            (_, "response.output_item.added") => {
                assert!(open.is_none(), "an item opens while another is open");
                assert_eq!(body["output_index"], json!(items));
                open = Some((items, body["item"]["id"].as_str().unwrap().to_string()));
                text.clear();
            }
            (_, "response.output_item.done") => {
                let (ix, id) = open.take().expect("done without added");
                assert_eq!(
                    (body["output_index"].clone(), body["item"]["id"].clone()),
                    (json!(ix), json!(id))
                );
                items += 1;
            }
            (_, "response.output_text.delta") | (_, "response.function_call_arguments.delta") => {
                let (ix, id) = open.as_ref().expect("a delta outside an item");
                assert_eq!(
                    (&body["output_index"], body["item_id"].as_str()),
                    (&json!(ix), Some(id.as_str()))
                );
                text.push_str(body["delta"].as_str().unwrap());
                if *kind == "response.output_text.delta" {
                    all_text.push_str(body["delta"].as_str().unwrap());
                }
            }
            (_, "response.output_text.done") => assert_eq!(body["text"], json!(text)),
            (_, "response.function_call_arguments.done") => {
                assert_eq!(body["arguments"], json!(text))
            }
            (_, "response.content_part.added" | "response.content_part.done") => {
                assert!(open.is_some())
            }
            (j, k) => {
                assert_eq!(j, events.len() - 1, "{k} before the end");
                assert_eq!(k, end);
            }
        }
    }
    assert!(open.is_none(), "an item left open");
    assert_eq!(all_text, texts);
    let last = &events.last().unwrap().1["response"];
    assert_eq!(last["output"].as_array().unwrap().len() as u64, items);
    last.clone()
}

proptest! {
    #[test]
    fn any_chunk_sequence_gives_well_formed_events(steps in proptest::collection::vec(step(), 0..24), broken in any::<bool>()) {
        let echo = Echo { id: "resp_x".into(), ..Echo::default() };
        let mut conv = ChunksToEvents::new(echo);
        let mut events = Vec::new();
        for s in &steps {
            events.extend(conv.on_chunk(&chunk(s)));
        }
        let texts: String = steps.iter().filter_map(|s| match s { Step::Text(t) => Some(t.as_str()), _ => None }).collect();
        let finish = steps.iter().rev().find_map(|s| match s { Step::Finish(r) => Some(*r), _ => None });
        if broken {
            events.extend(conv.fail("boom"));
            // A broken stream may leave an item open; only the prefix grammar and the end count.
            let (kind, body) = events.last().unwrap();
            prop_assert_eq!(*kind, "response.failed");
            prop_assert_eq!(body["response"]["status"].as_str(), Some("failed"));
            for (i, (_, b)) in events.iter().enumerate() {
                prop_assert_eq!(&b["sequence_number"], &json!(i));
            }
        } else {
            events.extend(conv.finish());
            let end = if finish == Some("length") { "response.incomplete" } else { "response.completed" };
            let r = check(&events, &texts, end);
            let usage = steps.iter().rev().find_map(|s| match s { Step::Usage(i, o) => Some(i + o), _ => None });
            prop_assert_eq!(r["usage"]["total_tokens"].as_u64(), usage);
        }
        let bytes = encode_bytes(&events);
        let decoded = crate::sse::SseDecoder::new().feed(&bytes);
        prop_assert_eq!(decoded.len(), events.len());
    }
}
