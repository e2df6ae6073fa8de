//! The Bedrock control plane through the official `aws-sdk-bedrock` client: system profiles
//! listed (by type, paged), got by id and by ARN; application profiles created (idempotent on the
//! client request token), listed, used on the runtime API (served within the copied profile's
//! destination set, audited with their tags and ARN, billed at the source region's price),
//! private to their tenant, and deleted. Residency is checked in every routed test.
mod bedrock_common;
mod common;

use std::collections::BTreeSet;

use aws_sdk_bedrock::error::SdkError;
use aws_sdk_bedrock::operation::get_inference_profile::{
    GetInferenceProfileError, GetInferenceProfileOutput,
};
use aws_sdk_bedrock::types::{
    InferenceProfileModelSource, InferenceProfileStatus, InferenceProfileSummary,
    InferenceProfileType, Tag,
};
use bedrock_common::*;
use common::*;
use serde_json::{Value, json};
use spillway_sim::completion_text;

const NOT_FOUND: &str = "ResourceNotFoundException";

async fn list(
    c: &aws_sdk_bedrock::Client,
    kind: Option<InferenceProfileType>,
) -> Vec<InferenceProfileSummary> {
    let out = c.list_inference_profiles().set_type_equals(kind).send();
    let out = out.await.expect("list");
    assert!(out.next_token().is_none(), "one page: {out:?}");
    out.inference_profile_summaries().to_vec()
}

async fn get(
    c: &aws_sdk_bedrock::Client,
    ident: &str,
) -> Result<GetInferenceProfileOutput, SdkError<GetInferenceProfileError>> {
    c.get_inference_profile()
        .inference_profile_identifier(ident)
        .send()
        .await
}

fn tag_of(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build().expect("tag")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_profiles_are_listed_paged_and_got_by_id_and_arn() {
    let h = Harness::start(spec()).await;
    let c = control(&h, "us-east-1", AK, SECRET);
    let all = list(&c, Some(InferenceProfileType::SystemDefined)).await;
    let ids: BTreeSet<String> = all
        .iter()
        .map(|p| p.inference_profile_id().to_string())
        .collect();
    let want: BTreeSet<String> = [M, L, PO]
        .iter()
        .flat_map(|m| [format!("us.{m}"), format!("global.{m}")])
        .collect();
    assert_eq!(ids, want, "a us listener lists the us and global profiles");
    for p in &all {
        let id = p.inference_profile_id();
        assert_eq!(p.r#type(), &InferenceProfileType::SystemDefined);
        assert_eq!(p.status(), &InferenceProfileStatus::Active);
        let arn = format!("arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/{id}");
        assert_eq!(p.inference_profile_arn(), arn);
        assert_eq!(p.models().len(), model_arns(p.models()).len(), "{p:?}");
        assert_eq!(
            model_arns(p.models()),
            expected_model_arns(&h, "us-east-1", id),
            "one model ARN per destination region: {p:?}"
        );
    }

    // Paging two at a time, following nextToken to the end, gives the same set.
    let (mut paged, mut token, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let page = c
            .list_inference_profiles()
            .type_equals(InferenceProfileType::SystemDefined)
            .max_results(2)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("page");
        pages += 1;
        let items = page.inference_profile_summaries();
        assert!(items.len() <= 2, "{page:?}");
        paged.extend(items.iter().map(|p| p.inference_profile_id().to_string()));
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(paged.len(), want.len(), "no duplicates: {paged:?}");
    assert_eq!(paged.into_iter().collect::<BTreeSet<_>>(), want);

    // Get by id and by ARN.
    let profile = format!("us.{M}");
    let arn = format!("arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/{profile}");
    for ident in [&profile, &arn] {
        let g = get(&c, ident).await.expect("get");
        assert_eq!(g.inference_profile_id(), profile);
        assert_eq!(g.inference_profile_arn(), arn);
        assert_eq!(g.r#type(), &InferenceProfileType::SystemDefined);
        let want = expected_model_arns(&h, "us-east-1", &profile);
        assert_eq!(model_arns(g.models()), want);
    }
    // A eu profile is not callable here, so it is not found here; an eu listener lists it.
    assert_eq!(code(get(&c, &format!("eu.{M}")).await), NOT_FOUND);
    let eu = list(&control(&h, "eu-west-1", AK, SECRET), None).await;
    let eu_ids: Vec<&str> = eu.iter().map(|p| p.inference_profile_id()).collect();
    assert!(eu_ids.contains(&format!("eu.{M}").as_str()), "{eu_ids:?}");
    assert!(!eu_ids.iter().any(|i| i.starts_with("us.")), "{eu_ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_profiles_route_audit_bill_at_the_source_price_and_stay_private() {
    let audit = audit_path("app-profiles");
    let mut s = spec();
    s.dep(M, "us-east-1").max_in_flight = 1;
    let prices = [("us-east-1", 1.0, 2.0), ("us-east-2", 10.0, 20.0)];
    for (region, input, output) in prices.into_iter().chain([("us-west-2", 100.0, 200.0)]) {
        s.price(M, region, input, output);
    }
    s.audit = Some(audit.display().to_string());
    let h = Harness::start(s).await;
    let ctl = control(&h, "us-east-1", AK, SECRET);
    let rt = runtime(&h, "us-east-1", AK, SECRET);
    let profile = format!("us.{M}");
    let system_arn = format!("arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/{profile}");

    // Create, twice with the same client request token: one profile.
    let mut arns = Vec::new();
    for _ in 0..2 {
        let out = ctl
            .create_inference_profile()
            .inference_profile_name("search-team")
            .description("search traffic")
            .model_source(InferenceProfileModelSource::CopyFrom(system_arn.clone()))
            .tags(tag_of("team", "search"))
            .tags(tag_of("cost-center", "42"))
            .client_request_token("token-0001")
            .send()
            .await
            .expect("create");
        arns.push(out.inference_profile_arn().to_string());
    }
    assert_eq!(arns[0], arns[1], "same token, same profile");
    let arn = arns[0].clone();
    let prefix = format!("arn:aws:bedrock:us-east-1:{ACCOUNT}:application-inference-profile/");
    let app_id = arn.strip_prefix(&prefix).unwrap_or_default().to_string();
    assert!(!app_id.is_empty(), "{arn}");
    assert!(app_id.bytes().all(|b| b.is_ascii_alphanumeric()), "{arn}");

    let g = get(&ctl, &arn).await.expect("get");
    assert_eq!(g.r#type(), &InferenceProfileType::Application);
    assert_eq!(g.inference_profile_name(), "search-team");
    assert_eq!(g.inference_profile_id(), app_id);
    let want = expected_model_arns(&h, "us-east-1", &profile);
    assert_eq!(model_arns(g.models()), want);
    let apps = list(&ctl, Some(InferenceProfileType::Application)).await;
    let listed: Vec<&str> = apps.iter().map(|p| p.inference_profile_arn()).collect();
    assert_eq!(listed, vec![arn.as_str()]);
    let sys = list(&ctl, Some(InferenceProfileType::SystemDefined)).await;
    assert!(sys.iter().all(|p| p.inference_profile_arn() != arn));

    // Served in the source while it has room: audited without inferenceRegion.
    let local = tag(&h, "us-east-1", KEY, &profile);
    let r = converse(&rt, &local, &arn, 5).await;
    assert_eq!(h.records_for(&local)[0].region, "us-east-1");
    let rec = audit_record(&audit, &local).await;
    assert_eq!(rec["inferenceProfileArn"], arn.as_str(), "{rec}");
    let tags = json!({"team": "search", "cost-center": "42"});
    assert_eq!(rec["tags"], tags, "{rec}");
    assert_eq!(rec["sourceRegion"], "us-east-1", "{rec}");
    assert!(rec.get("inferenceRegion").is_none(), "not rerouted: {rec}");
    assert_cost(
        &rec,
        r.usage.input_tokens(),
        r.usage.output_tokens(),
        1.0,
        2.0,
    );

    // Source full: served elsewhere in the copied profile's set, billed at the source's price.
    let held = h.hold("us-east-1", M, "us-east-1").await;
    let spilled = tag(&h, "us-east-1", KEY, &profile);
    let r = converse(&rt, &spilled, &arn, 6).await;
    drop(held);
    let served = h.records_for(&spilled)[0].region.clone();
    assert!(["us-east-2", "us-west-2"].contains(&served.as_str()));
    let rec = audit_record(&audit, &spilled).await;
    assert_eq!(rec["inferenceRegion"], served.as_str(), "{rec}");
    assert_eq!(rec["inferenceProfileArn"], arn.as_str(), "{rec}");
    assert_eq!(rec["tags"], tags, "{rec}");
    assert_cost(
        &rec,
        r.usage.input_tokens(),
        r.usage.output_tokens(),
        1.0,
        2.0,
    );

    // Another tenant: not found, whatever it tries.
    let ctl2 = control(&h, "us-east-1", AK2, SECRET2);
    assert_eq!(code(get(&ctl2, &arn).await), NOT_FOUND);
    let delete = ctl2
        .delete_inference_profile()
        .inference_profile_identifier(&arn);
    assert_eq!(code(delete.send().await), NOT_FOUND);
    let rt2 = runtime(&h, "us-east-1", AK2, SECRET2);
    let conv = rt2.converse().model_id(&arn).messages(user_hi());
    assert_eq!(code(conv.send().await), NOT_FOUND);
    let theirs = list(&ctl2, Some(InferenceProfileType::Application)).await;
    assert!(theirs.is_empty(), "{theirs:?}");

    // Deleted: gone for its owner too.
    let delete = ctl
        .delete_inference_profile()
        .inference_profile_identifier(&arn);
    delete.send().await.expect("delete");
    assert_eq!(code(get(&ctl, &arn).await), NOT_FOUND);
    let conv = rt.converse().model_id(&arn).messages(user_hi());
    assert_eq!(code(conv.send().await), NOT_FOUND);

    eventually("the hold's record", || h.records().len() == 3).await;
    assert_eq!(h.assert_residency(), 3, "two profile calls and the hold");
    remove(&audit);
}

/// `cost` at the given (source region's) prices per million tokens.
fn assert_cost(rec: &Value, input: i32, output: i32, in_price: f64, out_price: f64) {
    assert_eq!(rec["inputTokens"], input, "{rec}");
    assert_eq!(rec["outputTokens"], output, "{rec}");
    let want_in = f64::from(input) * in_price / 1e6;
    let want_out = f64::from(output) * out_price / 1e6;
    for (k, want) in [
        ("input", want_in),
        ("output", want_out),
        ("total", want_in + want_out),
    ] {
        let got = rec["cost"][k].as_f64();
        assert!(
            got.is_some_and(|g| (g - want).abs() < 1e-12),
            "cost.{k} != {want}: {rec}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_profile_copied_from_a_model_stays_in_its_region() {
    let mut s = spec();
    s.dep(M, "us-east-1").max_in_flight = 1;
    let h = Harness::start(s).await;
    let ctl = control(&h, "us-east-1", AK, SECRET);
    let rt = runtime(&h, "us-east-1", AK, SECRET);
    let model_arn = format!("arn:aws:bedrock:us-east-1::foundation-model/{M}");
    let out = ctl
        .create_inference_profile()
        .inference_profile_name("in-region")
        .model_source(InferenceProfileModelSource::CopyFrom(model_arn.clone()))
        .send()
        .await
        .expect("create");
    let arn = out.inference_profile_arn().to_string();
    let g = get(&ctl, &arn).await.expect("get");
    assert_eq!(model_arns(g.models()), BTreeSet::from([model_arn]));

    let id = tag(&h, "us-east-1", KEY, M);
    assert_eq!(converse(&rt, &id, &arn, 3).await.text, completion_text(3));
    assert_eq!(h.records_for(&id)[0].region, "us-east-1");

    // Its region full: throttled, never spilled.
    let held = h.hold("us-east-1", M, "us-east-1").await;
    let conv = rt.converse().model_id(&arn).messages(user_hi());
    assert_eq!(code(conv.send().await), "ThrottlingException");
    drop(held);

    // It lives in us-east-1: another region's endpoint does not serve or show it.
    let rt2 = runtime(&h, "us-east-2", AK, SECRET);
    let c = code(
        rt2.converse()
            .model_id(&arn)
            .messages(user_hi())
            .send()
            .await,
    );
    assert!(c == "ValidationException" || c == NOT_FOUND, "{c}");
    let ctl2 = control(&h, "us-east-2", AK, SECRET);
    assert_eq!(code(get(&ctl2, &arn).await), NOT_FOUND);
    eventually("the hold's record", || h.records().len() == 2).await;
    assert_eq!(h.assert_residency(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_answers_carry_the_request_id() {
    use aws_sdk_bedrock::operation::RequestId;
    let h = Harness::start(spec()).await;
    let c = control(&h, "us-east-1", AK, SECRET);
    let out = c.list_inference_profiles().send().await.expect("list");
    assert!(out.request_id().is_some_and(|id| !id.is_empty()));
    let e = get(&c, "us.no-such.model-v1:0")
        .await
        .expect_err("not found");
    assert!(e.request_id().is_some(), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_profile_arn_of_another_account_is_refused_on_the_control_plane_too() {
    let h = Harness::start(spec()).await;
    let foreign = format!("arn:aws:bedrock:us-east-1:999999999999:inference-profile/us.{M}");
    let rt = runtime(&h, "us-east-1", AK, SECRET);
    let conv = rt.converse().model_id(&foreign).messages(user_hi());
    assert_eq!(code(conv.send().await), "AccessDeniedException");
    let c = control(&h, "us-east-1", AK, SECRET);
    let got = code(get(&c, &foreign).await);
    assert!(got == "AccessDeniedException" || got == NOT_FOUND, "{got}");
}
