use super::*;

fn encode(s: &str) -> String {
    s.replace(':', "%3A").replace('/', "%2F")
}

#[test]
fn plain_ids() {
    for id in [
        "demo.chat-small-v1:0",
        "us.demo.chat-small-v1:0",
        "global.anthropic.claude-sonnet-4-20250514-v1:0",
    ] {
        assert_eq!(parse_model_ref(id).unwrap(), ModelRef::Id(id.to_string()));
        assert_eq!(
            parse_model_ref(&encode(id)).unwrap(),
            ModelRef::Id(id.to_string())
        );
    }
    // What the SDKs send for a profile id.
    assert_eq!(
        parse_model_ref("us.x%3A0").unwrap(),
        ModelRef::Id("us.x:0".into())
    );
    assert_eq!(parse_model_ref("us.x%3a0").unwrap().resource_id(), "us.x:0");
}

#[test]
fn foundation_model_arn() {
    let arn = "arn:aws:bedrock:us-east-1::foundation-model/demo.chat-small-v1:0";
    let expected = ModelRef::FoundationModelArn {
        region: "us-east-1".into(),
        model_id: "demo.chat-small-v1:0".into(),
    };
    assert_eq!(parse_model_ref(arn).unwrap(), expected);
    assert_eq!(parse_model_ref(&encode(arn)).unwrap(), expected);
    assert_eq!(expected.to_string(), arn);
    assert_eq!(expected.region(), Some("us-east-1"));
    assert_eq!(expected.account(), None);
}

#[test]
fn inference_profile_arn() {
    let arn = "arn:aws:bedrock:eu-central-1:123456789012:inference-profile/eu.demo.chat-small-v1:0";
    let expected = ModelRef::InferenceProfileArn {
        region: "eu-central-1".into(),
        account: "123456789012".into(),
        profile_id: "eu.demo.chat-small-v1:0".into(),
    };
    assert_eq!(parse_model_ref(arn).unwrap(), expected);
    assert_eq!(parse_model_ref(&encode(arn)).unwrap(), expected);
    assert_eq!(expected.to_string(), arn);
    assert_eq!(expected.resource_id(), "eu.demo.chat-small-v1:0");
    assert_eq!(expected.account(), Some("123456789012"));
}

#[test]
fn application_profile_arn() {
    let arn = "arn:aws:bedrock:us-west-2:123456789012:application-inference-profile/a1b2c3d4e5f6";
    let expected = ModelRef::ApplicationProfileArn {
        region: "us-west-2".into(),
        account: "123456789012".into(),
        id: "a1b2c3d4e5f6".into(),
    };
    assert_eq!(parse_model_ref(arn).unwrap(), expected);
    assert_eq!(parse_model_ref(&encode(arn)).unwrap(), expected);
    assert_eq!(expected.to_string(), arn);
}

fn rejected(raw: &str, needle: &str) {
    match parse_model_ref(raw) {
        Err(BedrockError::Validation(m)) => {
            assert!(
                m.contains(needle),
                "{raw}: `{m}` does not mention `{needle}`"
            )
        }
        other => panic!("{raw}: expected a validation error, got {other:?}"),
    }
}

#[test]
fn malformed_arns() {
    let fm = "::foundation-model/demo.chat-small-v1:0";
    rejected(&format!("arn:aws-cn:bedrock:us-east-1{fm}"), "partition");
    rejected(&format!("arn:azure:bedrock:us-east-1{fm}"), "partition");
    rejected(&format!("arn:aws:sagemaker:us-east-1{fm}"), "service");
    rejected(&format!("arn:aws:bedrock:US_EAST{fm}"), "region");
    rejected(&format!("arn:aws:bedrock:{fm}"), "region");
    // Accounts: required and 12 digits for profiles, empty for foundation models.
    rejected(
        "arn:aws:bedrock:us-east-1::inference-profile/us.x:0",
        "12-digit",
    );
    rejected(
        "arn:aws:bedrock:us-east-1:12345:inference-profile/us.x:0",
        "12-digit",
    );
    rejected(
        "arn:aws:bedrock:us-east-1:12345678901a:application-inference-profile/abc",
        "12-digit",
    );
    rejected(
        "arn:aws:bedrock:us-east-1:123456789012:foundation-model/demo.x:0",
        "empty account",
    );
    rejected(
        "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc",
        "resource type `provisioned-model`",
    );
    rejected(
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile",
        "<resource-type>/<id>",
    );
    rejected("arn:aws:bedrock:us-east-1::foundation-model/", "empty");
    rejected(
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/",
        "empty",
    );
    rejected(
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.x/y",
        "contains",
    );
    rejected("arn:aws:bedrock", "form");
    rejected(
        "arn%3Aaws%3As3%3Aus-east-1%3A%3Afoundation-model%2Fx",
        "service",
    );
}

#[test]
fn malformed_ids() {
    rejected("", "empty");
    rejected("%", "contains");
    rejected("model id", "contains");
    rejected("a%2Fb", "contains");
    rejected("%FF", "UTF-8");
    rejected(&"a".repeat(3000), "longer");
}
