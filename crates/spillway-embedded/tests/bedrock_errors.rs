//! Errors of the Bedrock API, each checked for its status, `x-amzn-ErrorType` and
//! `{"message": …}` body: malformed requests, SigV4 failures (signed with `aws-sigv4` directly,
//! with a wrong secret, a stale date, another region's scope, an unknown key), another tenant's
//! application profile, a profile-only model called by its plain id, and throttling when every
//! destination is full. Also: a Bedrock API key (`Authorization: Bearer`) works on Converse.
mod bedrock_common;
mod common;

use std::time::{Duration, SystemTime};

use aws_sdk_bedrock::types::InferenceProfileModelSource;
use aws_sdk_bedrockruntime::error::ProvideErrorMetadata;
use bedrock_common::*;
use common::*;
use spillway_sim::completion_text;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_validation_or_not_found_errors() {
    let h = Harness::start(spec()).await;
    let signer = Signer::new(AK, SECRET, "us-east-1");
    let profile = format!("us.{M}");

    // Wrong content type.
    let mut req = RawReq::converse(&profile, 3, Auth::SigV4(&signer));
    req.content_type = Some("text/plain");
    assert_bedrock_error(&req.send(&h, "us-east-1").await, 400, "ValidationException");

    // Malformed JSON.
    let mut req = RawReq::converse(&profile, 3, Auth::SigV4(&signer));
    req.body = b"{\"messages\": [".to_vec();
    assert_bedrock_error(&req.send(&h, "us-east-1").await, 400, "ValidationException");

    // Unknown model and profile ids, and ARNs naming them: 404.
    for unknown in [
        "demo.no-such-model-v1:0".to_string(),
        "us.demo.no-such-model-v1:0".to_string(),
        "arn:aws:bedrock:us-east-1::foundation-model/demo.no-such-model-v1:0".to_string(),
        format!("arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/us.demo.no-such-model-v1:0"),
        format!("arn:aws:bedrock:us-east-1:{ACCOUNT}:application-inference-profile/abcdef123456"),
    ] {
        let r = RawReq::converse(&unknown, 3, Auth::SigV4(&signer))
            .send(&h, "us-east-1")
            .await;
        assert_bedrock_error(&r, 404, "ResourceNotFoundException");
    }

    // Malformed ARNs: 400.
    for bad in [
        format!("arn:aws:bedrock:us-east-1:12345:inference-profile/{profile}"),
        format!("arn:aws:s3:::bucket/{M}"),
        format!("arn:aws:bedrock:us-east-1:{ACCOUNT}:provisioned-model/abc"),
        "arn:aws:bedrock:us-east-1::foundation-model/".to_string(),
    ] {
        let r = RawReq::converse(&bad, 3, Auth::SigV4(&signer))
            .send(&h, "us-east-1")
            .await;
        assert_bedrock_error(&r, 400, "ValidationException");
    }

    // A profile-only model by its plain id: Bedrock's exact words. Its profile works.
    let r = RawReq::converse(PO, 3, Auth::SigV4(&signer))
        .send(&h, "us-east-1")
        .await;
    assert_bedrock_error(&r, 400, "ValidationException");
    assert_eq!(
        r.json["message"],
        format!(
            "Invocation of model ID {PO} with on-demand throughput isn't supported. Retry your \
             request with the ID or ARN of an inference profile that contains this model."
        )
    );
    let po_profile = format!("us.{PO}");
    let id = tag(&h, "us-east-1", KEY, &po_profile);
    let r = RawReq::converse(&po_profile, 3, Auth::SigV4(&signer))
        .id(&id)
        .send(&h, "us-east-1")
        .await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    assert_eq!(
        r.json["output"]["message"]["content"][0]["text"],
        completion_text(3)
    );
    assert_eq!(r.header("x-amzn-requestid"), Some(id.as_str()));

    // The SDK reads the same error code.
    let c = runtime(&h, "us-east-1", AK, SECRET);
    let e = c.converse().model_id(PO).messages(user_hi()).send().await;
    let e = e.expect_err("profile-only").into_service_error();
    assert!(e.is_validation_exception(), "{e:?}");
    let text = e.message().unwrap_or_default();
    assert!(text.starts_with("Invocation of model ID"), "{e:?}");
    assert_eq!(h.assert_residency(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigv4_failures_are_403_with_the_aws_error_type() {
    let h = Harness::start(spec()).await;
    let profile = format!("us.{M}");

    let r = send(&h, &profile, Auth::None).await;
    assert_bedrock_error(&r, 403, "MissingAuthenticationTokenException");

    let wrong_secret = Signer::new(AK, "not-the-secret", "us-east-1");
    let r = send(&h, &profile, Auth::SigV4(&wrong_secret)).await;
    assert_bedrock_error(&r, 403, "InvalidSignatureException");
    assert!(!r.text.contains(SECRET), "{r:?}");

    for skew in [-1, 1] {
        let mut stale = Signer::new(AK, SECRET, "us-east-1");
        let by = Duration::from_secs(6 * 60);
        stale.time = if skew < 0 {
            SystemTime::now() - by
        } else {
            SystemTime::now() + by
        };
        let r = send(&h, &profile, Auth::SigV4(&stale)).await;
        assert_bedrock_error(&r, 403, "InvalidSignatureException");
        assert!(
            r.json["message"]
                .as_str()
                .is_some_and(|m| m.contains("expired")),
            "{r:?}"
        );
    }
    // Within the skew is fine.
    let mut recent = Signer::new(AK, SECRET, "us-east-1");
    recent.time = SystemTime::now() - Duration::from_secs(4 * 60);
    let id = tag(&h, "us-east-1", KEY, &profile);
    let r = RawReq::converse(&profile, 3, Auth::SigV4(&recent))
        .id(&id)
        .send(&h, "us-east-1")
        .await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");

    let other_region = Signer::new(AK, SECRET, "us-west-2");
    let r = send(&h, &profile, Auth::SigV4(&other_region)).await;
    assert_bedrock_error(&r, 403, "InvalidSignatureException");
    assert!(
        r.json["message"]
            .as_str()
            .is_some_and(|m| m.contains("us-west-2")),
        "{r:?}"
    );

    let r = send(
        &h,
        &profile,
        Auth::Header("AWS4-HMAC-SHA256 Credential=garbage"),
    )
    .await;
    assert_bedrock_error(&r, 403, "IncompleteSignatureException");

    // The control plane alike.
    let list = |auth| RawReq {
        method: "GET",
        path: "/inference-profiles".into(),
        content_type: None,
        body: Vec::new(),
        id: None,
        auth,
    };
    assert_bedrock_error(
        &list(Auth::None).send(&h, "us-east-1").await,
        403,
        "MissingAuthenticationTokenException",
    );
    assert_bedrock_error(
        &list(Auth::SigV4(&wrong_secret)).send(&h, "us-east-1").await,
        403,
        "InvalidSignatureException",
    );
    assert_eq!(
        list(Auth::SigV4(&Signer::new(AK, SECRET, "us-east-1")))
            .send(&h, "us-east-1")
            .await
            .status
            .as_u16(),
        200
    );

    let unknown = Signer::new("AKIANOSUCHKEY0000001", SECRET, "us-east-1");
    let r = send(&h, &profile, Auth::SigV4(&unknown)).await;
    assert_bedrock_error(&r, 403, "UnrecognizedClientException");

    // A signed body that was altered on the way.
    let signer = Signer::new(AK, SECRET, "us-east-1");
    let req = RawReq::converse(&profile, 3, Auth::None);
    let url = h.url("us-east-1", &req.path);
    let signed = signer.headers(
        "POST",
        &url,
        &[("content-type", "application/json")],
        &req.body,
    );
    let mut b = h
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body(converse_json_with(4));
    for (n, v) in signed {
        b = b.header(n, v);
    }
    let resp = b.send().await.expect("answer");
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(
        resp.headers()["x-amzn-errortype"],
        "InvalidSignatureException"
    );

    // The SDKs see the codes: wrong secret, unknown key, on runtime and control plane.
    let bad = runtime(&h, "us-east-1", AK, "not-the-secret");
    let r = bad
        .converse()
        .model_id(&profile)
        .messages(user_hi())
        .send()
        .await;
    assert_eq!(code(r), "InvalidSignatureException");
    let bad = control(&h, "us-east-1", AK, "not-the-secret");
    let r = bad.list_inference_profiles().send().await;
    assert_eq!(code(r), "InvalidSignatureException");
    let unknown = control(&h, "us-east-1", "AKIANOSUCHKEY0000001", SECRET);
    let r = unknown.list_inference_profiles().send().await;
    assert_eq!(code(r), "UnrecognizedClientException");
    // Nothing but the one good request reached a simulator.
    assert_eq!(h.assert_residency(), 1);
}

async fn send(h: &Harness, model_id: &str, auth: Auth<'_>) -> Reply {
    RawReq::converse(model_id, 3, auth)
        .send(h, "us-east-1")
        .await
}

fn converse_json_with(n: u64) -> Vec<u8> {
    RawReq::converse("x", n, Auth::None).body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_application_profile_is_not_found() {
    let h = Harness::start(spec()).await;
    let system_arn = format!("arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/us.{M}");
    let arn = control(&h, "us-east-1", AK, SECRET)
        .create_inference_profile()
        .inference_profile_name("mine")
        .model_source(InferenceProfileModelSource::CopyFrom(system_arn))
        .send()
        .await
        .expect("create")
        .inference_profile_arn()
        .to_string();
    let theirs = Signer::new(AK2, SECRET2, "us-east-1");
    let r = RawReq::converse(&arn, 3, Auth::SigV4(&theirs))
        .send(&h, "us-east-1")
        .await;
    assert_bedrock_error(&r, 404, "ResourceNotFoundException");
    assert!(!r.text.contains("mine"), "{r:?}");
    let path = format!("/inference-profiles/{}", encode_segment(&arn));
    for method in ["GET", "DELETE"] {
        let req = RawReq {
            method,
            path: path.clone(),
            content_type: None,
            body: Vec::new(),
            id: None,
            auth: Auth::SigV4(&theirs),
        };
        assert_bedrock_error(
            &req.send(&h, "us-east-1").await,
            404,
            "ResourceNotFoundException",
        );
    }
    // Its owner may use it.
    let mine = Signer::new(AK, SECRET, "us-east-1");
    let id = tag(&h, "us-east-1", KEY, &format!("us.{M}"));
    let r = RawReq::converse(&arn, 3, Auth::SigV4(&mine))
        .id(&id)
        .send(&h, "us-east-1")
        .await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    assert_eq!(h.assert_residency(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_destination_full_is_a_throttling_exception() {
    let mut s = spec();
    for r in US {
        s.dep(M, r).max_in_flight = 1;
    }
    let h = Harness::start(s).await;
    let _held: Vec<Sse> = futures_util::future::join_all(US.iter().map(|r| h.hold(r, M, r))).await;
    let signer = Signer::new(AK, SECRET, "us-east-1");
    for model in [format!("us.{M}"), M.to_string()] {
        let id = tag(&h, "us-east-1", KEY, &model);
        let r = RawReq::converse(&model, 3, Auth::SigV4(&signer))
            .id(&id)
            .send(&h, "us-east-1")
            .await;
        assert_bedrock_error(&r, 429, "ThrottlingException");
        let secs: u64 = r
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("Retry-After");
        assert!(secs >= 1, "{r:?}");
        assert!(h.records_for(&id).is_empty(), "throttled at the gateway");
    }
    let c = runtime(&h, "us-east-1", AK, SECRET);
    let r = c
        .converse_stream()
        .model_id(format!("us.{M}"))
        .messages(user_hi());
    assert_eq!(code(r.send().await), "ThrottlingException");
    // `global.` still reaches the idle eu regions, and only those.
    let global = format!("global.{M}");
    let id = tag(&h, "us-east-1", KEY, &global);
    let r = RawReq::converse(&global, 3, Auth::SigV4(&signer))
        .id(&id)
        .send(&h, "us-east-1")
        .await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    assert!(EU.contains(&h.records_for(&id)[0].region.as_str()));
    drop(_held);
    eventually("the holds' records", || h.records().len() == 4).await;
    assert_eq!(h.assert_residency(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bedrock_api_key_works_on_converse() {
    let h = Harness::start(spec()).await;
    let profile = format!("us.{M}");
    let id = tag(&h, "us-east-1", KEY, &profile);
    let bearer = format!("Bearer {KEY}");
    let r = RawReq::converse(&profile, 4, Auth::Header(&bearer))
        .id(&id)
        .send(&h, "us-east-1")
        .await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    assert_eq!(
        r.json["output"]["message"]["content"][0]["text"],
        completion_text(4),
        "{r:?}"
    );
    assert_eq!(r.json["usage"]["outputTokens"], 4, "{r:?}");
    assert_eq!(r.json["stopReason"], "max_tokens", "{r:?}");
    assert_eq!(h.records_for(&id)[0].region, "us-east-1");

    // The other tenant's key is that tenant; a wrong key is refused in Bedrock's shape.
    let other = format!("Bearer {KEY2}");
    let id2 = tag(&h, "us-east-1", KEY2, &profile);
    let r = RawReq::converse(&profile, 2, Auth::Header(&other))
        .id(&id2)
        .send(&h, "us-east-1")
        .await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    let r = RawReq::converse(&profile, 2, Auth::Header("Bearer sk-not-a-key"))
        .send(&h, "us-east-1")
        .await;
    assert_bedrock_error(&r, 403, "UnrecognizedClientException");

    // The SDK's own bearer-token support (`AWS_BEARER_TOKEN_BEDROCK`'s client setting).
    let conf = aws_sdk_bedrockruntime::Config::builder()
        .endpoint_url(h.url("us-east-1", ""))
        .region(aws_sdk_bedrockruntime::config::Region::new("us-east-1"))
        .bearer_token(aws_sdk_bedrockruntime::config::Token::new(KEY, None))
        .behavior_version(aws_sdk_bedrockruntime::config::BehaviorVersion::latest())
        .build();
    let c = aws_sdk_bedrockruntime::Client::from_conf(conf);
    let id3 = tag(&h, "us-east-1", KEY, &profile);
    let out = converse(&c, &id3, &profile, 3).await;
    assert_eq!(out.text, completion_text(3));
    assert_eq!(h.assert_residency(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_bedrock_operation_is_refused_in_bedrock_shape() {
    let h = Harness::start(spec()).await;
    let signer = Signer::new(AK, SECRET, "us-east-1");
    let mut req = RawReq::converse(&format!("us.{M}"), 3, Auth::SigV4(&signer));
    req.path = req.path.replace("/converse", "/count-tokens");
    let r = req.send(&h, "us-east-1").await;
    assert!(r.status.is_client_error(), "{r:?}");
    assert!(r.header("x-amzn-errortype").is_some(), "{r:?}");
    assert!(r.json["message"].is_string(), "{r:?}");
}

/// A malformed ARN arrives percent-encoded (`arn%3Aaws%3Abedrock…%2F…`); the error names it as
/// the client wrote it, decoded, with control characters escaped rather than echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_arn_is_shown_decoded_in_the_error() {
    let h = Harness::start(spec()).await;
    let signer = Signer::new(AK, SECRET, "us-east-1");
    for (arn, why) in [
        (
            format!("arn:aws:bedrock:us-east-1:12345:inference-profile/us.{M}"),
            "12-digit account id",
        ),
        (
            format!("arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/us.x!"),
            "contains '!'",
        ),
    ] {
        let req = RawReq::converse(&arn, 3, Auth::SigV4(&signer));
        assert!(
            req.path.contains("%3A") && req.path.contains("%2F"),
            "{}",
            req.path
        );
        let r = req.send(&h, "us-east-1").await;
        assert_bedrock_error(&r, 400, "ValidationException");
        let message = r.json["message"].as_str().expect("message");
        assert!(message.contains(&format!("`{arn}`")), "{message}");
        assert!(message.contains(why), "{message}");
        assert!(!message.contains('%'), "{message}");
    }
    // A newline and an escape character in the id (sent as %0A and %1B).
    let arn = format!("arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/us.x\n\u{1b}[31m");
    let r = RawReq::converse(&arn, 3, Auth::SigV4(&signer))
        .send(&h, "us-east-1")
        .await;
    assert_bedrock_error(&r, 400, "ValidationException");
    let message = r.json["message"].as_str().expect("message");
    assert!(!message.chars().any(char::is_control), "{message:?}");
    assert!(message.contains("us.x\\n\\u{1b}[31m"), "{message}");
    assert_eq!(h.assert_residency(), 0);
}
