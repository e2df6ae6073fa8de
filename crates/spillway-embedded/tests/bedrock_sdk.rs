//! The Bedrock runtime API through the official AWS SDK for Rust, signed with a tenant's access
//! key pair: Converse, ConverseStream, InvokeModel and InvokeModelWithResponseStream for every
//! form of `modelId` (model id, profile id, system profile ARN, foundation model ARN), and
//! spill-over within the profile when the source region is full, and a stream that breaks after it
//! started ending with a `modelStreamErrorException`. Residency is checked from the
//! simulators' own records in every test. (The control plane is in `bedrock_profiles.rs`.)
mod bedrock_common;
mod common;

use aws_sdk_bedrockruntime::types::StopReason;
use bedrock_common::*;
use common::*;
use spillway_sim::completion_text;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_operations_for_every_form_of_model_id() {
    let h = Harness::start(spec()).await;
    let c = runtime(&h, "us-east-1", AK, SECRET);
    let profile = format!("us.{M}");
    let forms = [
        (M.to_string(), M.to_string()),
        (profile.clone(), profile.clone()),
        (
            format!("arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/{profile}"),
            profile.clone(),
        ),
        (
            format!("arn:aws:bedrock:us-east-1::foundation-model/{M}"),
            M.to_string(),
        ),
    ];
    for (n, (model_id, judged_as)) in forms.iter().enumerate() {
        let n = 3 + n as i32;
        let want = completion_text(n as u64);

        // Converse.
        let id = tag(&h, "us-east-1", KEY, judged_as);
        let r = converse(&c, &id, model_id, n).await;
        let recs = h.records_for(&id);
        assert_eq!(recs.len(), 1, "{model_id}: {recs:?}");
        assert_eq!(
            recs[0].region, "us-east-1",
            "served in the source: {recs:?}"
        );
        assert_eq!(
            recs[0].model, M,
            "the upstream is asked for the model itself"
        );
        assert_eq!(r.text, want, "{model_id}");
        assert_eq!(r.stop, StopReason::MaxTokens, "{model_id}");
        assert_eq!(r.usage.input_tokens() as u64, recs[0].prompt_tokens);
        assert_eq!(r.usage.output_tokens(), n);
        assert_eq!(r.usage.total_tokens(), r.usage.input_tokens() + n);
        assert!(r.latency_ms >= 0);

        // ConverseStream: the deltas reassemble to the non-streamed answer; metadata has usage.
        let id = tag(&h, "us-east-1", KEY, judged_as);
        let s = converse_stream(&c, &id, model_id, n).await;
        assert_eq!(s.text, want, "{model_id}: {s:?}");
        assert_eq!(s.kinds.first(), Some(&"messageStart"), "{s:?}");
        assert_eq!(s.kinds.last(), Some(&"metadata"), "{s:?}");
        assert!(s.kinds.contains(&"messageStop"), "{s:?}");
        assert_eq!(s.stop, Some(StopReason::MaxTokens), "{s:?}");
        let u = s.usage.clone().expect("metadata usage");
        assert_eq!(
            (u.input_tokens(), u.output_tokens()),
            (r.usage.input_tokens(), n),
            "{s:?}"
        );
        assert_eq!(u.total_tokens(), u.input_tokens() + n);
        assert_eq!(h.records_for(&id)[0].region, "us-east-1");

        // InvokeModel with an OpenAI chat body: an OpenAI chat completion comes back.
        let id = tag(&h, "us-east-1", KEY, judged_as);
        let v = invoke(&c, &id, model_id, n as u64).await;
        assert_eq!(v["object"], "chat.completion", "{v}");
        assert_eq!(v["choices"][0]["message"]["content"], want.as_str(), "{v}");
        assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
        assert_eq!(v["usage"]["completion_tokens"], n, "{v}");
        assert_eq!(h.records_for(&id)[0].region, "us-east-1");

        // InvokeModelWithResponseStream: every chunk is an OpenAI chunk; usage comes last.
        let id = tag(&h, "us-east-1", KEY, judged_as);
        let chunks = invoke_stream(&c, &id, model_id, n as u64).await;
        assert!(chunks.len() >= 2, "{chunks:?}");
        assert!(
            chunks
                .iter()
                .all(|c| c["object"] == "chat.completion.chunk"),
            "{chunks:?}"
        );
        assert_eq!(chunk_text(&chunks), want, "{chunks:?}");
        let last = chunks.last().expect("chunks");
        assert_eq!(last["usage"]["completion_tokens"], n, "{last}");
        assert_eq!(h.records_for(&id)[0].region, "us-east-1");
    }
    assert_eq!(h.assert_residency(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_source_spills_within_the_profile_and_residency_holds() {
    let mut s = spec();
    s.dep(M, "us-east-1").max_in_flight = 1;
    let h = Harness::start(s).await;
    let c = runtime(&h, "us-east-1", AK, SECRET);
    let profile = format!("us.{M}");
    let _held = h.hold("us-east-1", M, "us-east-1").await;

    for i in 0..6 {
        let id = tag(&h, "us-east-1", KEY, &profile);
        let text = if i % 2 == 0 {
            converse(&c, &id, &profile, 4).await.text
        } else {
            converse_stream(&c, &id, &profile, 4).await.text
        };
        assert_eq!(text, completion_text(4));
        let recs = h.records_for(&id);
        assert_eq!(recs.len(), 1, "{recs:?}");
        assert!(
            ["us-east-2", "us-west-2"].contains(&recs[0].region.as_str()),
            "{recs:?}"
        );
    }
    // The same through `global.`: anywhere but the full source.
    let global = format!("global.{M}");
    let id = tag(&h, "us-east-1", KEY, &global);
    converse(&c, &id, &global, 2).await;
    assert_ne!(h.records_for(&id)[0].region, "us-east-1");

    // The plain id has only the source: the SDK sees a ThrottlingException.
    let e = c
        .converse()
        .model_id(M)
        .messages(user_hi())
        .send()
        .await
        .expect_err("throttled");
    let e = e.into_service_error();
    assert!(e.is_throttling_exception(), "{e:?}");
    drop(_held);
    eventually("the hold's record", || h.records().len() == 8).await;
    assert_eq!(h.assert_residency(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_breaks_after_it_started_ends_with_a_model_stream_error() {
    let h = Harness::start(spec()).await;
    let c = runtime(&h, "us-east-1", AK, SECRET);
    h.sim("us-east-1").set_fault(spillway_sim::Fault {
        break_after_tokens: Some(2),
        ..Default::default()
    });

    let id = tag(&h, "us-east-1", KEY, M);
    let mut out = c
        .converse_stream()
        .model_id(M)
        .messages(user_hi())
        .inference_config(max_tokens(8))
        .customize()
        .mutate_request(with_id(&id))
        .send()
        .await
        .expect("the stream starts");
    let mut text = String::new();
    let err = loop {
        match tokio::time::timeout(DEADLINE, out.stream.recv())
            .await
            .expect("in time")
        {
            Ok(Some(aws_sdk_bedrockruntime::types::ConverseStreamOutput::ContentBlockDelta(d))) => {
                if let Some(aws_sdk_bedrockruntime::types::ContentBlockDelta::Text(t)) = d.delta() {
                    text.push_str(t);
                }
            }
            Ok(Some(aws_sdk_bedrockruntime::types::ConverseStreamOutput::Metadata(m))) => {
                panic!("a clean end: {m:?}")
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended without an error after {text:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(text, completion_text(2));
    let e = err.into_service_error();
    assert!(e.is_model_stream_error_exception(), "{e:?}");

    let id2 = tag(&h, "us-east-1", KEY, M);
    let mut out = c
        .invoke_model_with_response_stream()
        .model_id(M)
        .content_type("application/json")
        .body(invoke_body(8, false))
        .customize()
        .mutate_request(with_id(&id2))
        .send()
        .await
        .expect("the stream starts");
    let err = loop {
        match tokio::time::timeout(DEADLINE, out.body.recv())
            .await
            .expect("in time")
        {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended without an error"),
            Err(e) => break e,
        }
    };
    assert!(err.into_service_error().is_model_stream_error_exception());
    for id in [&id, &id2] {
        assert_eq!(
            h.records_for(id).len(),
            1,
            "not retried after the first byte"
        );
    }
    assert_eq!(h.assert_residency(), 2);
}
