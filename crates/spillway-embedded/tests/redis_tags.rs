//! Tags of an application profile shared through a real `redis-server` by two gateway
//! instances: tagged on one, listed on the other at once; many tag edits made at the same time
//! through both instances all survive (each edit is a compare-and-set on the profile's record,
//! so none overwrites another); untagged on one, gone on the other; and a tag edit while Redis
//! is down is 503 `ServiceUnavailableException`, not a local change that would diverge.
mod bedrock_common;
mod common;
mod redis_support;
mod shared_profiles;

use std::collections::BTreeMap;

use aws_sdk_bedrock::types::Tag;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use redis_support::RedisServer;
use shared_profiles::*;

fn tag_of(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build().expect("tag")
}

async fn tags(c: &aws_sdk_bedrock::Client, arn: &str) -> BTreeMap<String, String> {
    let out = c.list_tags_for_resource().resource_arn(arn).send().await;
    out.expect("list tags")
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

async fn add(c: &aws_sdk_bedrock::Client, arn: &str, k: &str, v: &str) -> Result<(), String> {
    c.tag_resource()
        .resource_arn(arn)
        .tags(tag_of(k, v))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| e.code().unwrap_or("no error type").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tags_edited_through_both_instances_are_all_kept() {
    let mut redis = RedisServer::start();
    let (a, b) = (
        gateway(&single(&redis.url())).await,
        gateway(&single(&redis.url())).await,
    );
    let (ctl_a, _) = acme(&a);
    let (ctl_b, _) = acme(&b);
    let arn = create(&ctl_a, "tagged", None).await.expect("created on A");

    add(&ctl_a, &arn, "team", "search").await.expect("tag on A");
    let want: BTreeMap<String, String> = [("team".to_string(), "search".to_string())].into();
    assert_eq!(tags(&ctl_b, &arn).await, want, "seen on B at once");

    // Twenty edits at once, half through each instance, each adding its own key.
    let mut edits = tokio::task::JoinSet::new();
    for i in 0..20 {
        let c = if i % 2 == 0 {
            ctl_a.clone()
        } else {
            ctl_b.clone()
        };
        let arn = arn.clone();
        edits.spawn(async move { add(&c, &arn, &format!("k{i}"), &i.to_string()).await });
    }
    while let Some(r) = edits.join_next().await {
        r.expect("task").expect("tag");
    }
    let all = tags(&ctl_a, &arn).await;
    assert_eq!(all.len(), 21, "no edit lost: {all:?}");
    assert_eq!(all, tags(&ctl_b, &arn).await);
    for i in 0..20 {
        assert_eq!(all.get(&format!("k{i}")), Some(&i.to_string()));
    }

    // Untagged on B, gone on A.
    ctl_b
        .untag_resource()
        .resource_arn(&arn)
        .tag_keys("team")
        .send()
        .await
        .expect("untag on B");
    assert!(!tags(&ctl_a, &arn).await.contains_key("team"));

    // Redis down: the edit is refused, not made locally.
    redis.kill();
    assert_eq!(
        add(&ctl_a, &arn, "late", "x").await,
        Err("ServiceUnavailableException".to_string())
    );
}
