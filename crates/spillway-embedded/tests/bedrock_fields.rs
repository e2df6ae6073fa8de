//! No silent drops, against a `bedrock` upstream (the SigV4-verifying stand-in of
//! `bedrock_stand_in` serves us-east-1's `M`; every other region's is a simulator):
//!
//! * Converse's `guardrailConfig`, `performanceConfig`, `promptVariables`, `requestMetadata`
//!   and `additionalModelRequestFields` reach the Bedrock upstream as sent when it is the only
//!   destination, and are refused (400 `ValidationException` naming them) when a simulator could
//!   serve the request, with nothing sent upstream;
//! * OpenAI's `n` > 1 and `seed`, which Converse cannot carry, are refused (400
//!   `invalid_request_error` with `param`) when the Bedrock upstream may serve, and served by an
//!   OpenAI-compatible one.
//!
//! Each test re-runs itself in a child process with the upstream credentials in its
//! environment (see `bedrock_stand_in::in_child`).
mod bedrock_common;
mod bedrock_stand_in;
mod common;

use bedrock_common::*;
use bedrock_stand_in::*;
use common::*;
use serde_json::json;

#[test]
fn converse_only_fields_reach_a_bedrock_upstream_or_are_refused() {
    if !in_child(
        "converse_only_fields_reach_a_bedrock_upstream_or_are_refused",
        UP_SECRET,
    ) {
        return;
    }
    block_on(async {
        let (url, log) = stand_in(false).await;
        let h = start(&url).await;
        let signer = Signer::new(AK, SECRET, "us-east-1");
        let extra = json!({
            "guardrailConfig": {"guardrailIdentifier": "gr-1", "guardrailVersion": "1"},
            "performanceConfig": {"latency": "optimized"},
            "promptVariables": {"topic": {"text": "rivers"}},
            "requestMetadata": {"team": "search"},
            "additionalModelRequestFields": {"top_k": 3},
        });
        let with_extra = |model: &str, id: &str| {
            let mut req = RawReq::converse(model, 16, Auth::SigV4(&signer)).id(id);
            let mut b: serde_json::Value = serde_json::from_slice(&req.body).expect("json");
            for (k, v) in extra.as_object().expect("object") {
                b[k] = v.clone();
            }
            req.body = serde_json::to_vec(&b).expect("json");
            req
        };
        let mut sent = Vec::new();

        // Only the Bedrock upstream can serve `M` from us-east-1: every field reaches it.
        let id = tag(&h, "us-east-1", KEY, M);
        sent.push(id.clone());
        let r = with_extra(M, &id).send(&h, "us-east-1").await;
        assert_eq!(r.status.as_u16(), 200, "{r:?}");
        let seen = log.lock().expect("lock").clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        for k in [
            "guardrailConfig",
            "performanceConfig",
            "promptVariables",
            "requestMetadata",
            "additionalModelRequestFields",
        ] {
            assert_eq!(seen[0].body[k], extra[k], "{k}: {seen:?}");
        }

        // The profile may spill to simulators: refused before anything is sent.
        let pid = tag(&h, "us-east-1", KEY, &format!("us.{M}"));
        let r = with_extra(&format!("us.{M}"), &pid)
            .send(&h, "us-east-1")
            .await;
        assert_bedrock_error(&r, 400, "ValidationException");
        let message = r.json["message"].as_str().unwrap_or_default();
        assert!(message.contains("guardrailConfig"), "{message}");
        assert!(message.contains("performanceConfig"), "{message}");
        // `additionalModelRequestFields` alone is served anywhere (an OpenAI-compatible
        // upstream gets its fields at the top level).
        let aid = tag(&h, "us-east-2", KEY, M);
        let east2 = Signer::new(AK, SECRET, "us-east-2");
        let mut req = RawReq::converse(M, 16, Auth::SigV4(&east2));
        req = req.id(&aid);
        let mut b: serde_json::Value = serde_json::from_slice(&req.body).expect("json");
        b["additionalModelRequestFields"] = json!({"top_k": 3});
        req.body = serde_json::to_vec(&b).expect("json");
        assert_eq!(req.send(&h, "us-east-2").await.status.as_u16(), 200);

        // OpenAI fields Converse cannot carry, where the Bedrock upstream may serve.
        for (field, value) in [
            ("n", json!(2)),
            ("seed", json!(7)),
            ("logprobs", json!(true)),
        ] {
            for model in [M.to_string(), format!("us.{M}")] {
                let mut b = body(&model, 8);
                b[field] = value.clone();
                let r = h.chat("us-east-1", b).await;
                r.assert_error(400, "invalid_request_error");
                assert_eq!(r.json["error"]["param"], field, "{r:?}");
                assert_eq!(r.json["error"]["code"], "unsupported_parameter", "{r:?}");
            }
        }
        // Defaults are not refused, and a simulator-only request keeps `n`.
        let mut b = body(M, 8);
        b["n"] = json!(1);
        b["logprobs"] = json!(false);
        let r = h.chat("us-east-1", b).await;
        r.assert_ok_in("us-east-1", "local");
        sent.push(r.id.clone());
        let mut b = body(M, 8);
        b["n"] = json!(2);
        h.chat("us-east-2", b)
            .await
            .assert_ok_in("us-east-2", "local");

        assert_eq!(
            log.lock().expect("lock").len(),
            2,
            "refusals sent nothing upstream"
        );
        assert_stand_in_residency(&h, &log, &sent);
    });
}
