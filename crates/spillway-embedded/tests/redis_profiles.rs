//! Application inference profiles shared through a real `redis-server` by two gateway
//! instances: created on one, callable, got and listed on the other at once; deleted on one,
//! gone on the other within the documented bound (`REFRESH + OP_TIMEOUT` = 1.3 s); one
//! `clientRequestToken` makes one profile across instances; per-tenant ownership holds across
//! instances; with Redis down create and delete answer 503 `ServiceUnavailableException` while
//! known profiles keep resolving from each instance's cache.
mod bedrock_common;
mod common;
mod redis_support;
mod shared_profiles;

use std::time::Duration;

use aws_sdk_bedrock::types::InferenceProfileModelSource;
use bedrock_common::{ACCOUNT2, AK2, SECRET2};
use common::M;
use redis_support::RedisServer;
use shared_profiles::*;

/// The staleness bound of a deletion seen by another instance, plus scheduling slack.
const DELETE_BOUND: Duration = Duration::from_millis(1300);
const SLACK: Duration = Duration::from_millis(1200);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn created_on_one_instance_is_callable_listed_and_deleted_on_the_other() {
    let redis = RedisServer::start();
    let (a, b) = (
        gateway(&single(&redis.url())).await,
        gateway(&single(&redis.url())).await,
    );
    let (ctl_a, _) = acme(&a);
    let (ctl_b, run_b) = acme(&b);

    let arn = create(&ctl_a, "search-team", None)
        .await
        .expect("created on A");
    // On B at once: callable (B fetches the unknown ARN), got, listed.
    converse(&run_b, &arn).await.expect("callable on B");
    assert_eq!(get(&ctl_b, &arn).await.as_deref(), Ok("search-team"));
    let id = arn.rsplit('/').next().expect("an id").to_string();
    assert_eq!(get(&ctl_b, &id).await.as_deref(), Ok("search-team"));
    assert_eq!(app_arns(&ctl_b).await, vec![arn.clone()]);
    // Another tenant sees nothing of it, on either instance.
    let other_b = control(&b, AK2, SECRET2);
    assert_eq!(app_arns(&other_b).await, Vec::<String>::new());
    assert_eq!(
        get(&other_b, &id).await,
        Err("ResourceNotFoundException".into())
    );
    assert_eq!(
        delete(&other_b, &id).await,
        Err("ResourceNotFoundException".into())
    );
    // The name is the tenant's, across instances.
    assert_eq!(
        create(&ctl_b, "search-team", None).await,
        Err("ConflictException".into())
    );

    // Deleted on A: B's cache drops it within the bound (no control-plane call on B first).
    converse(&run_b, &arn).await.expect("still callable on B");
    delete(&ctl_a, &arn).await.expect("deleted on A");
    let took = until(
        "B to stop routing on the deleted profile",
        DELETE_BOUND + SLACK,
        async || converse(&run_b, &arn).await == Err("ResourceNotFoundException".into()),
    )
    .await;
    eprintln!("deletion seen by B after {took:?} (bound {DELETE_BOUND:?})");
    assert_eq!(
        get(&ctl_b, &id).await,
        Err("ResourceNotFoundException".into())
    );
    assert!(app_arns(&ctl_b).await.is_empty());
    assert!(app_arns(&ctl_a).await.is_empty());
    // The name is free again.
    create(&ctl_b, "search-team", None)
        .await
        .expect("the name is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_client_request_token_makes_one_profile_across_instances() {
    let redis = RedisServer::start();
    let (a, b) = (
        gateway(&single(&redis.url())).await,
        gateway(&single(&redis.url())).await,
    );
    let (ctl_a, ctl_b) = (acme(&a).0, acme(&b).0);
    for round in 0..5 {
        let name = format!("batch-{round}");
        let token = format!("token-{round}");
        let (on_a, on_b) = tokio::join!(
            create(&ctl_a, &name, Some(&token)),
            create(&ctl_b, &name, Some(&token))
        );
        let (on_a, on_b) = (on_a.expect("A"), on_b.expect("B"));
        assert_eq!(on_a, on_b, "one profile for one token");
        // A retry on either instance returns it again.
        assert_eq!(create(&ctl_b, &name, Some(&token)).await, Ok(on_a));
    }
    let listed_a = app_arns(&ctl_a).await;
    assert_eq!(listed_a.len(), 5, "{listed_a:?}");
    assert_eq!(app_arns(&ctl_b).await, listed_a);
    // The same token for a different request is a conflict, on the other instance too.
    assert_eq!(
        create(&ctl_b, "another-name", Some("token-0")).await,
        Err("ConflictException".into())
    );
    // Tokens are per tenant (the other tenant copies its own account's system profile).
    let other_a = control(&a, AK2, SECRET2);
    other_a
        .create_inference_profile()
        .inference_profile_name("batch-0")
        .client_request_token("token-0")
        .model_source(InferenceProfileModelSource::CopyFrom(format!(
            "arn:aws:bedrock:us-east-1:{ACCOUNT2}:inference-profile/us.{M}"
        )))
        .send()
        .await
        .expect("another tenant's token and name are its own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_redis_down_changes_fail_with_503_and_known_profiles_keep_resolving() {
    let mut redis = RedisServer::start();
    let (a, b) = (
        gateway(&single(&redis.url())).await,
        gateway(&single(&redis.url())).await,
    );
    let (ctl_a, run_a) = acme(&a);
    let (ctl_b, run_b) = acme(&b);
    let arn = create(&ctl_a, "kept", None).await.expect("created");
    converse(&run_b, &arn).await.expect("B knows it");

    redis.kill();
    assert_eq!(
        create(&ctl_a, "new-one", Some("t")).await,
        Err("ServiceUnavailableException".into())
    );
    assert_eq!(
        delete(&ctl_b, &arn).await,
        Err("ServiceUnavailableException".into())
    );
    until(
        "both instances to see Redis down",
        Duration::from_secs(5),
        async || !a.gateway().state().shared_state_up() && !b.gateway().state().shared_state_up(),
    )
    .await;
    // Known profiles resolve, get and list from the cache.
    converse(&run_a, &arn)
        .await
        .expect("served on A from its cache");
    converse(&run_b, &arn)
        .await
        .expect("served on B from its cache");
    assert_eq!(get(&ctl_b, &arn).await.as_deref(), Ok("kept"));
    assert_eq!(app_arns(&ctl_b).await, vec![arn.clone()]);

    // Redis back (empty: no persistence): changes work again, and the caches follow Redis.
    redis.restart();
    until(
        "create to work again",
        Duration::from_secs(10),
        async || create(&ctl_a, "after-outage", Some("t2")).await.is_ok(),
    )
    .await;
    until("B to follow Redis", Duration::from_secs(5), async || {
        app_arns(&ctl_b).await.len() == 1
    })
    .await;
}
