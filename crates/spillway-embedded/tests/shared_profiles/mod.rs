//! Gateway instances sharing one Redis (or Redis Cluster), and the official AWS SDK clients
//! pointed at one of them, for the application-profile tests (`redis_profiles.rs`,
//! `redis_cluster.rs`).
//!
//! Used next to `common` and `bedrock_common` (`mod common; mod bedrock_common;`).
#![allow(dead_code)]
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_sdk_bedrock::error::ProvideErrorMetadata;
use aws_sdk_bedrock::types::{InferenceProfileModelSource, InferenceProfileType};
use spillway_embedded::Stack;
use spillway_gateway::Config;

use crate::bedrock_common::{ACCOUNT, AK, SECRET, max_tokens, spec, user_hi};
use crate::common::{M, Spec};

/// `[state]` for one Redis server.
pub fn single(url: &str) -> String {
    format!("[state]\nkind = \"redis\"\nurl = {url:?}\ninstances = 2\n")
}

/// `[state]` for a Redis Cluster with these seed nodes.
pub fn cluster(urls: &[String]) -> String {
    format!("[state]\nkind = \"redis\"\ncluster = true\nurls = {urls:?}\ninstances = 2\n")
}

/// A gateway on [`bedrock_common::spec`] (tenants `acme` and `other`) with this `[state]`.
pub async fn gateway(state: &str) -> Stack {
    gateway_on(state, spec()).await
}

/// A gateway on `spec` with this `[state]`.
pub async fn gateway_on(state: &str, spec: Spec) -> Stack {
    let toml = format!("{state}\n{}", spec.to_toml());
    let cfg = Config::parse(&toml, "<test>").unwrap_or_else(|e| panic!("rejected: {e}\n{toml}"));
    Stack::start(cfg).await.expect("gateway starts")
}

fn endpoint(gw: &Stack) -> String {
    format!(
        "http://{}",
        gw.gateway()
            .addr("us-east-1")
            .expect("a us-east-1 listener")
    )
}

/// The control-plane client for `gw`'s us-east-1 listener (no retries).
pub fn control(gw: &Stack, ak: &str, secret: &str) -> aws_sdk_bedrock::Client {
    let conf = aws_sdk_bedrock::Config::builder()
        .endpoint_url(endpoint(gw))
        .region(aws_sdk_bedrock::config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new(ak, secret, None, None, "test"))
        .retry_config(aws_sdk_bedrock::config::retry::RetryConfig::disabled())
        .behavior_version(aws_sdk_bedrock::config::BehaviorVersion::latest())
        .build();
    aws_sdk_bedrock::Client::from_conf(conf)
}

/// The runtime client for `gw`'s us-east-1 listener, as tenant `acme` (no retries).
pub fn runtime(gw: &Stack) -> aws_sdk_bedrockruntime::Client {
    let conf = aws_sdk_bedrockruntime::Config::builder()
        .endpoint_url(endpoint(gw))
        .region(aws_sdk_bedrockruntime::config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new(AK, SECRET, None, None, "test"))
        .retry_config(aws_sdk_bedrockruntime::config::retry::RetryConfig::disabled())
        .behavior_version(aws_sdk_bedrockruntime::config::BehaviorVersion::latest())
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(conf)
}

/// Both clients for tenant `acme` on `gw`.
pub fn acme(gw: &Stack) -> (aws_sdk_bedrock::Client, aws_sdk_bedrockruntime::Client) {
    (control(gw, AK, SECRET), runtime(gw))
}

/// The us system profile of `M`, as seen from us-east-1.
pub fn system_arn() -> String {
    format!("arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/us.{M}")
}

/// An error's Bedrock type (`x-amzn-ErrorType`) and HTTP status.
fn code<E: ProvideErrorMetadata, R: std::fmt::Debug>(
    e: &aws_sdk_bedrock::error::SdkError<E, R>,
) -> String {
    e.code().unwrap_or("no error type").to_string()
}

/// CreateInferenceProfile copying the us profile of `M`: the new ARN, or the error type.
pub async fn create(
    c: &aws_sdk_bedrock::Client,
    name: &str,
    token: Option<&str>,
) -> Result<String, String> {
    c.create_inference_profile()
        .inference_profile_name(name)
        .set_client_request_token(token.map(str::to_string))
        .model_source(InferenceProfileModelSource::CopyFrom(system_arn()))
        .send()
        .await
        .map(|o| o.inference_profile_arn().to_string())
        .map_err(|e| code(&e))
}

/// GetInferenceProfile: the profile's name, or the error type.
pub async fn get(c: &aws_sdk_bedrock::Client, ident: &str) -> Result<String, String> {
    c.get_inference_profile()
        .inference_profile_identifier(ident)
        .send()
        .await
        .map(|o| o.inference_profile_name().to_string())
        .map_err(|e| code(&e))
}

pub async fn delete(c: &aws_sdk_bedrock::Client, ident: &str) -> Result<(), String> {
    c.delete_inference_profile()
        .inference_profile_identifier(ident)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| code(&e))
}

/// The ARNs of the caller's application profiles in us-east-1.
pub async fn app_arns(c: &aws_sdk_bedrock::Client) -> Vec<String> {
    let out = c
        .list_inference_profiles()
        .type_equals(InferenceProfileType::Application)
        .send()
        .await
        .expect("list");
    out.inference_profile_summaries()
        .iter()
        .map(|p| p.inference_profile_arn().to_string())
        .collect()
}

/// One Converse call on `model_id`: Ok with the answer's text, or the error type.
pub async fn converse(
    c: &aws_sdk_bedrockruntime::Client,
    model_id: &str,
) -> Result<String, String> {
    use aws_sdk_bedrockruntime::error::ProvideErrorMetadata as _;
    let out = c
        .converse()
        .model_id(model_id)
        .messages(user_hi())
        .inference_config(max_tokens(4))
        .send()
        .await
        .map_err(|e| e.code().unwrap_or("no error type").to_string())?;
    Ok(out
        .output()
        .and_then(|o| o.as_message().ok())
        .map(|m| format!("{:?}", m.content()))
        .unwrap_or_default())
}

/// Polls `cond` until it holds; returns how long that took (panics after `deadline`).
pub async fn until(
    what: &str,
    deadline: Duration,
    mut cond: impl AsyncFnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}
