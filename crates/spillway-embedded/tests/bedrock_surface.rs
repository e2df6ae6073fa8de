//! The rest of the Bedrock surface through the official AWS SDKs, over real HTTP on loopback:
//! ListFoundationModels (and its filters), GetFoundationModel, tags on application profiles
//! (ListTagsForResource, TagResource, UntagResource, with Bedrock's checks), CountTokens (the
//! count the simulator then reports as the prompt's usage), the token-count headers and stream
//! metrics of InvokeModel, an operation Spillway does not serve (a `ClientError`-style error
//! with Bedrock's `UnknownOperationException`), OpenAI's `GET /v1/models/{id}`, and no silent
//! drops: `n` > 1 passed to an OpenAI-compatible upstream that answers every choice. Residency
//! is checked in every routed test.
mod bedrock_common;
mod common;

use aws_sdk_bedrock::types::{InferenceProfileModelSource, Tag};
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    ConverseTokensRequest, CountTokensInput, InvokeModelTokensRequest,
};
use bedrock_common::*;
use common::*;
use serde_json::{Value, json};

fn tag_of(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build().expect("tag")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foundation_models_are_listed_filtered_and_got() {
    let h = Harness::start(spec()).await;
    let c = control(&h, "us-east-1", AK, SECRET);
    let all = c.list_foundation_models().send().await.expect("list");
    let ids: Vec<&str> = all.model_summaries().iter().map(|m| m.model_id()).collect();
    assert_eq!(ids, [M, L, PO], "every model callable from us-east-1");
    for m in all.model_summaries() {
        assert_eq!(
            m.model_arn(),
            format!(
                "arn:aws:bedrock:us-east-1::foundation-model/{}",
                m.model_id()
            )
        );
        assert_eq!(m.provider_name(), Some("Demo"));
        assert_eq!(m.response_streaming_supported(), Some(true));
        let lifecycle = m.model_lifecycle().expect("lifecycle");
        assert_eq!(lifecycle.status().as_str(), "ACTIVE");
        let types: Vec<&str> = m
            .inference_types_supported()
            .iter()
            .map(|t| t.as_str())
            .collect();
        let want: &[&str] = if m.model_id() == PO {
            &["INFERENCE_PROFILE"]
        } else {
            &["ON_DEMAND", "INFERENCE_PROFILE"]
        };
        assert_eq!(types, want, "{m:?}");
    }
    let by = |p: &'static str| c.list_foundation_models().by_provider(p).send();
    assert_eq!(by("demo").await.expect("demo").model_summaries().len(), 3);
    assert_eq!(by("Demo").await.expect("Demo").model_summaries().len(), 3);
    assert!(by("acme").await.expect("acme").model_summaries().is_empty());
    let on_demand = c
        .list_foundation_models()
        .by_inference_type(aws_sdk_bedrock::types::InferenceType::OnDemand)
        .send()
        .await
        .expect("on demand");
    let ids: Vec<&str> = on_demand
        .model_summaries()
        .iter()
        .map(|m| m.model_id())
        .collect();
    assert_eq!(ids, [M, L], "the profile-only model is not on demand");
    let bad = c
        .list_foundation_models()
        .by_provider("no/slash")
        .send()
        .await;
    assert_eq!(code(bad), "ValidationException");

    let got = c.get_foundation_model().model_identifier(M).send().await;
    let details = got.expect("get").model_details().cloned().expect("details");
    assert_eq!(
        (details.model_id(), details.model_name()),
        (M, Some("chat-small"))
    );
    let arn = format!("arn:aws:bedrock:us-east-1::foundation-model/{L}");
    let by_arn = c.get_foundation_model().model_identifier(&arn).send().await;
    assert_eq!(
        by_arn
            .expect("by arn")
            .model_details()
            .expect("d")
            .model_id(),
        L
    );
    for missing in [
        "demo.nope-v1:0",
        "arn:aws:bedrock:eu-west-1::foundation-model/demo.chat-small-v1:0",
    ] {
        let r = c
            .get_foundation_model()
            .model_identifier(missing)
            .send()
            .await;
        assert_eq!(code(r), "ResourceNotFoundException", "{missing}");
    }
    // No access key, no catalogue.
    let stranger = control(&h, "us-east-1", "AKIANOBODY0000000000", "x");
    let r = stranger.list_foundation_models().send().await;
    assert_eq!(code(r), "UnrecognizedClientException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_profile_tags_are_listed_added_and_removed() {
    let h = Harness::start(spec()).await;
    let c = control(&h, "us-east-1", AK, SECRET);
    let source = format!("arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/us.{M}");
    let created = c
        .create_inference_profile()
        .inference_profile_name("tagged")
        .model_source(InferenceProfileModelSource::CopyFrom(source.clone()))
        .tags(tag_of("team", "search"))
        .send()
        .await
        .expect("create");
    let arn = created.inference_profile_arn().to_string();
    let tags = |c: &aws_sdk_bedrock::Client, arn: String| {
        let c = c.clone();
        async move {
            let out = c.list_tags_for_resource().resource_arn(arn).send().await;
            let mut v: Vec<(String, String)> = out
                .expect("list tags")
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect();
            v.sort();
            v
        }
    };
    assert_eq!(
        tags(&c, arn.clone()).await,
        [("team".into(), "search".into())]
    );
    c.tag_resource()
        .resource_arn(&arn)
        .tags(tag_of("team", "ads"))
        .tags(tag_of("cost-center", "42"))
        .send()
        .await
        .expect("tag");
    let want: Vec<(String, String)> = vec![
        ("cost-center".into(), "42".into()),
        ("team".into(), "ads".into()),
    ];
    assert_eq!(tags(&c, arn.clone()).await, want);
    c.untag_resource()
        .resource_arn(&arn)
        .tag_keys("team")
        .send()
        .await
        .expect("untag");
    assert_eq!(
        tags(&c, arn.clone()).await,
        [("cost-center".into(), "42".into())]
    );

    // Bedrock's checks.
    let r = c
        .tag_resource()
        .resource_arn(&arn)
        .tags(tag_of("aws:x", "1"))
        .send()
        .await;
    assert_eq!(code(r), "ValidationException");
    let mut many = c.tag_resource().resource_arn(&arn);
    for i in 0..50 {
        many = many.tags(tag_of(&format!("k{i}"), "v"));
    }
    assert_eq!(code(many.send().await), "TooManyTagsException");
    assert_eq!(
        tags(&c, arn.clone()).await.len(),
        1,
        "a refused edit changes nothing"
    );

    // System profiles: no tags, and not taggable.
    assert!(tags(&c, source.clone()).await.is_empty());
    let r = c
        .tag_resource()
        .resource_arn(&source)
        .tags(tag_of("a", "b"))
        .send()
        .await;
    assert_eq!(code(r), "ValidationException");
    // Another tenant does not see the profile.
    let other = control(&h, "us-east-1", AK2, SECRET2);
    let r = other
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await;
    assert_eq!(code(r), "ResourceNotFoundException");
    let r = other
        .tag_resource()
        .resource_arn(&arn)
        .tags(tag_of("a", "b"))
        .send()
        .await;
    assert_eq!(code(r), "ResourceNotFoundException");

    // The profile still serves, within us.M's destination set.
    let rt = runtime(&h, "us-east-1", AK, SECRET);
    let id = tag(&h, "us-east-1", KEY, &format!("us.{M}"));
    assert!(!converse(&rt, &id, &arn, 8).await.text.is_empty());
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_tokens_is_what_the_request_is_metered_and_reported_at() {
    let h = Harness::start(spec()).await;
    let rt = runtime(&h, "us-east-1", AK, SECRET);
    let input =
        CountTokensInput::Converse(ConverseTokensRequest::builder().messages(user_hi()).build());
    let counted = rt
        .count_tokens()
        .model_id(M)
        .input(input)
        .send()
        .await
        .expect("count")
        .input_tokens();
    let id = tag(&h, "us-east-1", KEY, M);
    let served = converse(&rt, &id, M, 8).await;
    assert_eq!(i64::from(counted), i64::from(served.usage.input_tokens()));
    assert_eq!(counted as u64, prompt(), "one user message `hi`");

    // An InvokeModel body (an OpenAI chat body here, as the runtime reads it for this model).
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4});
    let invoke = InvokeModelTokensRequest::builder()
        .body(Blob::new(serde_json::to_vec(&body).expect("json")))
        .build()
        .expect("request");
    let out = rt
        .count_tokens()
        .model_id(format!("us.{M}"))
        .input(CountTokensInput::InvokeModel(invoke))
        .send()
        .await
        .expect("count invoke");
    assert_eq!(out.input_tokens() as u64, prompt());

    let unknown =
        CountTokensInput::Converse(ConverseTokensRequest::builder().messages(user_hi()).build());
    let r = rt
        .count_tokens()
        .model_id("demo.nope-v1:0")
        .input(unknown)
        .send()
        .await;
    assert_eq!(code(r), "ResourceNotFoundException");
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_spillway_does_not_serve_are_bedrock_errors() {
    let h = Harness::start(spec()).await;
    let c = control(&h, "us-east-1", AK, SECRET);
    assert_eq!(
        code(c.list_custom_models().send().await),
        "UnknownOperationException"
    );
    let r = c.get_model_invocation_logging_configuration().send().await;
    assert_eq!(code(r), "UnknownOperationException");
    let rt = runtime(&h, "us-east-1", AK, SECRET);
    assert_eq!(
        code(rt.list_async_invokes().send().await),
        "UnknownOperationException"
    );

    let signer = Signer::new(AK, SECRET, "us-east-1");
    for (method, path) in [
        ("GET", "/no-such-operation"),
        ("GET", "/"),
        ("POST", "/foundation-models"),
        ("GET", "/model/demo.chat-small-v1%3A0/count-tokens"),
    ] {
        let req = RawReq {
            method,
            path: path.into(),
            content_type: None,
            body: Vec::new(),
            id: None,
            auth: Auth::SigV4(&signer),
        };
        let r = req.send(&h, "us-east-1").await;
        assert_bedrock_error(&r, r.status.as_u16(), "UnknownOperationException");
        assert!(
            matches!(r.status.as_u16(), 404 | 405),
            "{method} {path}: {r:?}"
        );
    }
    // Under /v1/ the shape is OpenAI's.
    let r = h
        .client
        .get(h.url("us-east-1", "/v1/no-such-thing"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status().as_u16(), 404);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "not_found", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_model_answers_carry_token_counts() {
    let h = Harness::start(spec()).await;
    let signer = Signer::new(AK, SECRET, "us-east-1");
    let id = tag(&h, "us-east-1", KEY, M);
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5});
    let r = RawReq {
        method: "POST",
        path: format!("/model/{}/invoke", encode_segment(M)),
        content_type: Some("application/json"),
        body: serde_json::to_vec(&body).expect("json"),
        id: Some(id),
        auth: Auth::SigV4(&signer),
    }
    .send(&h, "us-east-1")
    .await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    let num = |name: &str| -> u64 {
        r.header(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {r:?}"))
    };
    assert_eq!(num("x-amzn-bedrock-input-token-count"), prompt());
    assert_eq!(
        num("x-amzn-bedrock-output-token-count"),
        r.json["usage"]["completion_tokens"]
            .as_u64()
            .expect("usage")
    );
    assert!(
        r.header("x-amzn-bedrock-invocation-latency").is_some(),
        "{r:?}"
    );

    // Streamed: the last chunk carries the invocation metrics.
    let rt = runtime(&h, "us-east-1", AK, SECRET);
    let sid = tag(&h, "us-east-1", KEY, &format!("us.{M}"));
    let chunks = invoke_stream(&rt, &sid, &format!("us.{M}"), 5).await;
    let last = chunks.last().expect("chunks");
    let m = &last["amazon-bedrock-invocationMetrics"];
    assert_eq!(m["inputTokenCount"].as_u64(), Some(prompt()), "{chunks:?}");
    assert_eq!(
        m["outputTokenCount"], last["usage"]["completion_tokens"],
        "{last}"
    );
    assert!(m["invocationLatency"].as_u64().is_some() && m["firstByteLatency"].as_u64().is_some());
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_retrieve_model_answers_what_the_listener_can_call() {
    let h = Harness::start(spec()).await;
    let get = |region: &'static str, id: String, key: Option<&'static str>| {
        let mut req = h
            .client
            .get(h.url(region, &format!("/v1/models/{}", encode_segment(&id))));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        async move {
            let r = req.send().await.expect("answer");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.expect("json"))
        }
    };
    for id in [M.to_string(), format!("us.{M}"), format!("global.{M}")] {
        let (status, v) = get("us-east-1", id.clone(), Some(KEY)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            (v["id"].as_str(), v["object"].as_str()),
            (Some(id.as_str()), Some("model"))
        );
    }
    for id in [format!("eu.{M}"), PO.to_string(), "nope".to_string()] {
        let (status, v) = get("us-east-1", id, Some(KEY)).await;
        assert_eq!(status, 404, "{v}");
        assert_eq!(v["error"]["code"], "model_not_found", "{v}");
    }
    let (status, v) = get("us-east-1", M.to_string(), None).await;
    assert_eq!(status, 401, "{v}");
}

/// Two choices, as an OpenAI-compatible server answers `n: 2`.
const TWO_CHOICES: &str = r#"{"id":"c1","object":"chat.completion","created":1,"model":"m",
"choices":[{"index":0,"message":{"role":"assistant","content":"one"},"finish_reason":"stop"},
{"index":1,"message":{"role":"assistant","content":"two"},"finish_reason":"stop"}],
"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_above_one_reaches_an_openai_compatible_upstream_and_every_choice_comes_back() {
    let (url, hits) = mock_upstream(200, TWO_CHOICES, &[]).await;
    let mut s = spec();
    s.dep(M, "us-east-1").upstream = Upstream::OpenAi(url);
    let h = Harness::start(s).await;
    let mut b = body(M, 8);
    b["n"] = json!(2);
    let r = h.chat("us-east-1", b).await;
    r.assert_ok_in("us-east-1", "local");
    let texts: Vec<&str> = r.json["choices"]
        .as_array()
        .expect("choices")
        .iter()
        .filter_map(|c| c["message"]["content"].as_str())
        .collect();
    assert_eq!(texts, ["one", "two"], "{r:?}");
    let seen = hits.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].0.as_deref(),
        Some(r.id.as_str()),
        "served where it was sent"
    );
    h.assert_residency();
}
