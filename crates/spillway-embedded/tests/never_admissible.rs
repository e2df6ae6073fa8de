//! Requests that can never be admitted get 400 in the caller's API (OpenAI
//! `invalid_request_error` with `param`, Bedrock `ValidationException`), not a 429 with
//! `Retry-After` that a retrying client would obey forever: more tokens than the tenant's token
//! quota holds, than every deployment of the set takes in a minute, or more output tokens than
//! the model's `max_output_tokens`. A request that fits the buckets but finds them spent is
//! still throttled.
mod bedrock_common;
mod common;

use bedrock_common::{AK, Auth, RawReq, SECRET, Signer, assert_bedrock_error};
use common::*;
use spillway_gateway::Config;

/// The tenant's in-region token quota for `M` (its cross-region quota is twice that).
const TPM: u64 = 10_000;
/// A model whose requests may ask for at most [`CAP`] output tokens.
const CAPPED: &str = "demo.capped-v1:0";
const CAP: u64 = 64;

fn with_quota() -> Spec {
    let mut s = bedrock_common::spec();
    s.tenants[0] = s.tenants[0].clone().quota(M, None, Some(TPM));
    s
}

/// Asserts a 400 in OpenAI's shape naming `param`, without `Retry-After`, and that no region saw
/// the request.
fn assert_never(h: &Harness, r: &Reply, param: &str) {
    r.assert_error(400, "invalid_request_error");
    assert_eq!(r.json["error"]["param"], param, "{r:?}");
    assert!(r.header("retry-after").is_none(), "{r:?}");
    assert!(h.records_for(&r.id).is_empty(), "sent upstream: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_tokens_than_the_quota_holds_is_a_400_and_a_spent_quota_still_a_429() {
    let h = Harness::start(with_quota()).await;
    // In-region: the quota holds TPM tokens when full.
    let r = h.chat("us-east-1", body(M, TPM)).await;
    assert_never(&h, &r, "max_tokens");
    let msg = r.json["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("never") && msg.contains(&TPM.to_string()),
        "{msg}"
    );
    // A profile draws on the cross-region quota, twice as large: the same request fits it.
    let r = h.chat("us-east-1", body(&format!("us.{M}"), TPM)).await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    let r = h.chat("us-east-1", body(&format!("us.{M}"), 2 * TPM)).await;
    assert_never(&h, &r, "max_tokens");

    // A request that fits the bucket but finds it spent is throttled as before.
    let r = h.chat("us-east-1", body(M, TPM - 2 * prompt())).await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    let r = h.chat("us-east-1", body(M, TPM / 2)).await;
    r.assert_throttled();

    // A prompt alone larger than the quota names the messages.
    let mut b = body(M, 1);
    b["messages"] = serde_json::json!([{"role": "user", "content": "word ".repeat(100_000)}]);
    let r = h.chat("us-east-1", b).await;
    assert_never(&h, &r, "messages");
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_bedrocks_api_it_is_a_validation_exception() {
    let h = Harness::start(with_quota()).await;
    let signer = Signer::new(AK, SECRET, "us-east-1");
    let r = RawReq::converse(M, TPM, Auth::SigV4(&signer))
        .id("never-converse")
        .send(&h, "us-east-1")
        .await;
    assert_bedrock_error(&r, 400, "ValidationException");
    assert!(r.header("retry-after").is_none(), "{r:?}");
    let msg = r.json["message"].as_str().unwrap_or_default();
    assert!(msg.contains("maxTokens"), "{msg}");
    assert!(h.records_for("never-converse").is_empty());
    h.register("fits-converse", "us-east-1", KEY, M);
    let r = RawReq::converse(M, 8, Auth::SigV4(&signer))
        .id("fits-converse")
        .send(&h, "us-east-1")
        .await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_tokens_than_every_deployment_of_the_set_takes_is_a_400() {
    let mut spec = Spec::standard();
    spec.dep(M, "us-east-1").tpm = Some(500);
    spec.dep(M, "us-east-2").tpm = Some(800);
    let h = Harness::start(spec).await;
    // The plain id has only us-east-1.
    let r = h.chat("us-east-1", body(M, 600)).await;
    assert_never(&h, &r, "max_tokens");
    // The profile can reach us-west-2, which has no token limit: served there.
    let r = h.chat("us-east-1", body(&format!("us.{M}"), 1000)).await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    assert_eq!(r.region(), Some("us-west-2"), "{r:?}");

    let mut spec = Spec::standard();
    for region in US {
        spec.dep(M, region).tpm = Some(800);
    }
    let h = Harness::start(spec).await;
    let r = h.chat("us-east-1", body(&format!("us.{M}"), 1000)).await;
    assert_never(&h, &r, "max_tokens");
    let msg = r.json["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("800"), "the largest limit of the set: {msg}");
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_output_tokens_than_the_model_generates_is_a_400() {
    let mut spec = Spec::standard();
    for (region, _) in spec.regions.clone() {
        spec.deployments.push(Dep {
            model: CAPPED.into(),
            region,
            max_in_flight: 8,
            rpm: None,
            tpm: None,
            upstream: Upstream::Sim,
            continuation: None,
        });
    }
    let model = format!("[[models]]\nid = {CAPPED:?}\nmax_output_tokens = {CAP}\n\n");
    let h = Harness::start_with(spec, &model).await;
    let r = h.chat("us-east-1", body(CAPPED, CAP + 1)).await;
    assert_never(&h, &r, "max_tokens");
    let msg = r.json["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains(&CAP.to_string()), "{msg}");
    let r = h
        .chat("us-east-1", body(&format!("us.{CAPPED}"), CAP))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    // No max_tokens: the default reservation is capped too, and the answer is served.
    let mut b = body(CAPPED, 1);
    b.as_object_mut().map(|o| o.remove("max_tokens"));
    let r = h.chat("us-east-1", b).await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    h.assert_residency();
}

#[test]
fn max_output_tokens_is_validated() {
    let spec = Spec::standard().to_toml();
    let with = |keys: &str| format!("[[models]]\nid = {CAPPED:?}\n{keys}\n\n{spec}");
    for (keys, key) in [
        ("max_output_tokens = 0", "max_output_tokens"),
        (
            "max_output_tokens = 64\ndefault_max_tokens = 65",
            "default_max_tokens",
        ),
    ] {
        let err = Config::parse(&with(keys), "<test>")
            .err()
            .unwrap_or_else(|| panic!("accepted: {keys}"));
        assert!(err.to_string().contains(key), "{err}");
    }
    assert!(Config::parse(&with("max_output_tokens = 64"), "<test>").is_ok());
}
