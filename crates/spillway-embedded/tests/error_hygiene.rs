//! Hostile input at the API edge: ids echoed into error bodies are shortened, SigV4 requests
//! that leave the body unsigned are refused unless configured, and an application profile
//! cannot copy another account's profile.
mod bedrock_common;
mod common;

use std::time::SystemTime;

use aws_sdk_bedrock::types::InferenceProfileModelSource;
use bedrock_common::{
    ACCOUNT, ACCOUNT2, AK, Auth, RawReq, SECRET, Signer, assert_bedrock_error, code, control,
    encode_segment,
};
use common::*;
use serde_json::json;

/// The longest id an error message echoes, plus its `…`.
const SHOWN: usize = 128;

fn assert_shortened(message: &str, id: &str) {
    assert!(!message.contains(id), "echoed whole: {message}");
    assert!(message.contains('…'), "{message}");
    let prefix: String = id.chars().take(SHOWN - 1).collect();
    assert!(message.contains(&prefix), "{message}");
    assert!(message.chars().count() < 2 * SHOWN + 200, "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_ids_are_echoed_shortened_in_both_apis() {
    let h = Harness::start(bedrock_common::spec()).await;
    let id = format!("demo.{}-v1:0", "x".repeat(5_000));
    let r = h.chat("us-east-1", body(&id, 4)).await;
    r.assert_error(404, "invalid_request_error");
    assert_shortened(r.json["error"]["message"].as_str().unwrap_or_default(), &id);

    // Bedrock: an id of valid characters that names nothing, and one too long to be an id.
    let signer = Signer::new(AK, SECRET, "us-east-1");
    for (id, status, kind) in [
        (
            format!("demo.{}-v1:0", "y".repeat(600)),
            404,
            "ResourceNotFoundException",
        ),
        (
            format!("demo.{}-v1:0", "z".repeat(3_000)),
            400,
            "ValidationException",
        ),
    ] {
        let r = RawReq::converse(&id, 4, Auth::SigV4(&signer))
            .send(&h, "us-east-1")
            .await;
        assert_bedrock_error(&r, status, kind);
        assert_shortened(r.json["message"].as_str().unwrap_or_default(), &id);
    }
    // A bad ARN is echoed shortened too.
    let arn = format!(
        "arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/us.{}",
        "w".repeat(1_000)
    );
    let r = RawReq::converse(&arn, 4, Auth::SigV4(&signer))
        .send(&h, "us-east-1")
        .await;
    assert_bedrock_error(&r, 404, "ResourceNotFoundException");
    assert!(r.text.len() < 1_000, "{}", r.text);
    assert!(h.records().is_empty());
}

/// `POST /model/M/converse` signed over `UNSIGNED-PAYLOAD` instead of the body's hash.
async fn unsigned_converse(h: &Harness) -> Reply {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
    };
    let url = h.url(
        "us-east-1",
        &format!("/model/{}/converse", encode_segment(M)),
    );
    let body = serde_json::to_vec(&json!({
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
        "inferenceConfig": {"maxTokens": 4},
    }))
    .expect("json");
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let identity = aws_credential_types::Credentials::new(AK, SECRET, None, None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("bedrock")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .expect("signing params")
        .into();
    let headers = [("content-type", "application/json")];
    let signable = SignableRequest::new(
        "POST",
        &url,
        headers.iter().copied(),
        SignableBody::UnsignedPayload,
    )
    .expect("signable");
    let (instructions, _) = sign(signable, &params).expect("signed").into_parts();
    let (signed, _) = instructions.into_parts();
    let mut req = h
        .client
        .post(&url)
        .body(body)
        .header(headers[0].0, headers[0].1);
    for hd in signed {
        req = req.header(hd.name(), hd.value());
    }
    let resp = req.send().await.expect("the gateway answers");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or_default();
    Reply {
        id: String::new(),
        status,
        headers,
        text,
        json,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_payloads_are_refused_unless_configured() {
    let h = Harness::start(bedrock_common::spec()).await;
    let r = unsigned_converse(&h).await;
    assert_bedrock_error(&r, 403, "AccessDeniedException");
    let msg = r.json["message"].as_str().unwrap_or_default();
    assert!(msg.contains("UNSIGNED-PAYLOAD"), "{msg}");
    assert!(h.records().is_empty());

    let h = Harness::start_with(
        bedrock_common::spec(),
        "[server]\nallow_unsigned_payload = true\n",
    )
    .await;
    let r = unsigned_converse(&h).await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_profile_cannot_copy_another_accounts_profile() {
    let h = Harness::start(bedrock_common::spec()).await;
    let ctl = control(&h, "us-east-1", AK, SECRET);
    let create = |copy_from: String| {
        ctl.create_inference_profile()
            .inference_profile_name("copy")
            .model_source(InferenceProfileModelSource::CopyFrom(copy_from))
            .send()
    };
    let theirs = format!("arn:aws:bedrock:us-east-1:{ACCOUNT2}:inference-profile/us.{M}");
    assert_eq!(code(create(theirs).await), "AccessDeniedException");
    let fm = format!("arn:aws:bedrock:us-east-1:{ACCOUNT2}:foundation-model/{M}");
    assert_eq!(code(create(fm).await), "ValidationException");
    let list = ctl
        .list_inference_profiles()
        .type_equals(aws_sdk_bedrock::types::InferenceProfileType::Application)
        .send()
        .await
        .expect("list");
    assert!(list.inference_profile_summaries().is_empty(), "{list:?}");

    let ours = format!("arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/us.{M}");
    let out = create(ours)
        .await
        .expect("its own account's profile is copied");
    assert!(out.inference_profile_arn().contains(ACCOUNT), "{out:?}");
}
