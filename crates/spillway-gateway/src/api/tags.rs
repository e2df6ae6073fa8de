//! Tags on inference profiles, as Bedrock's control plane takes them:
//! `POST /listTagsForResource` (`{"resourceARN"}` → `{"tags": [{key, value}]}`),
//! `POST /tagResource` (`{"resourceARN", "tags": [{key, value}]}`) and
//! `POST /untagResource` (`{"resourceARN", "tagKeys": [...]}`), both answering `{}`.
//!
//! An application profile's tags are kept with the profile in the profile store (memory or
//! Redis), so they are the ones its requests' audit records carry. Tags are checked as Bedrock
//! checks them: a key is 1 to 128 characters and a value at most 256, both of letters, digits,
//! spaces and `_ . : / = + - @`; keys starting with `aws:` are reserved (400
//! `ValidationException`); a profile carries at most 50 tags (400 `TooManyTagsException`).
//!
//! System profiles have no tags: ListTagsForResource answers an empty list for them, and
//! tagging or untagging one is refused with 400 `ValidationException`, since they are not the
//! caller's resources. Any other ARN (another region's, another account's profile, or a
//! resource Spillway does not have) is 404 `ResourceNotFoundException`.
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::TenantIx;
use crate::error::EdgeError;
use crate::state::AppState;
use crate::state::app_profiles::{AppProfile, TagEdit};

/// Which tag call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagCall {
    List,
    Tag,
    Untag,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    #[serde(rename = "resourceARN")]
    resource_arn: String,
    #[serde(default)]
    tags: Option<Vec<Tag>>,
    #[serde(default)]
    tag_keys: Option<Vec<String>>,
}

#[derive(Deserialize)]
pub(crate) struct Tag {
    pub key: String,
    pub value: String,
}

fn invalid(message: String) -> EdgeError {
    EdgeError::BadRequest(message)
}

/// Whether `s` has only the characters Bedrock allows in tag keys and values.
fn tag_chars(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
}

/// A tag key as Bedrock checks it.
pub(crate) fn check_key(key: &str) -> Result<(), EdgeError> {
    let n = key.chars().count();
    if !(1..=128).contains(&n) || !tag_chars(key) {
        return Err(invalid(
            "A tag key must be 1 to 128 letters, digits, spaces or _ . : / = + - @.".into(),
        ));
    }
    if key.len() >= 4 && key[..4].eq_ignore_ascii_case("aws:") {
        return Err(invalid(
            "Tag keys starting with aws: are reserved for AWS use.".into(),
        ));
    }
    Ok(())
}

/// Tags as Bedrock checks them (keys, values, and at most 200 in one request).
pub(crate) fn check_tags(tags: &[Tag]) -> Result<(), EdgeError> {
    if tags.len() > 200 {
        return Err(invalid("A request carries at most 200 tags.".into()));
    }
    for t in tags {
        check_key(&t.key)?;
        if t.value.chars().count() > 256 || !tag_chars(&t.value) {
            return Err(invalid(
                "A tag value must be at most 256 letters, digits, spaces or _ . : / = + - @."
                    .into(),
            ));
        }
    }
    Ok(())
}

/// The edit a TagResource or UntagResource body asks for.
fn edit_of(call: TagCall, body: Body) -> Result<TagEdit, EdgeError> {
    match call {
        TagCall::Tag => {
            let tags = body
                .tags
                .ok_or_else(|| invalid("tags is required.".into()))?;
            check_tags(&tags)?;
            Ok(TagEdit::Add(
                tags.into_iter().map(|t| (t.key, t.value)).collect(),
            ))
        }
        _ => {
            let keys = body
                .tag_keys
                .ok_or_else(|| invalid("tagKeys is required.".into()))?;
            if keys.len() > 200 {
                return Err(invalid("A request carries at most 200 tag keys.".into()));
            }
            for k in &keys {
                check_key(k)?;
            }
            Ok(TagEdit::Remove(keys))
        }
    }
}

/// What a tag call asks: the resource's ARN as sent, and for TagResource and UntagResource
/// the edit.
pub struct Asked {
    pub arn: String,
    call: TagCall,
    edit: Option<TagEdit>,
}

/// The resource an ARN names (found by the control plane's lookup).
pub enum Resource {
    /// A system profile callable from the listener's region.
    System,
    /// The caller's application profile.
    App(AppProfile),
}

/// Parse and check a tag call's body.
pub fn parse(call: TagCall, body: &[u8]) -> Result<Asked, EdgeError> {
    let body: Body = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("Malformed input request: {e}")))?;
    let arn_len = body.resource_arn.chars().count();
    if !(20..=1011).contains(&arn_len) {
        return Err(invalid(
            "resourceARN must be 20 to 1011 characters long.".into(),
        ));
    }
    let arn = body.resource_arn.clone();
    let edit = match call {
        TagCall::List => None,
        _ => Some(edit_of(call, body)?),
    };
    Ok(Asked { arn, call, edit })
}

/// Run a parsed tag call on the resource its ARN named.
pub async fn answer(
    state: &AppState,
    tenant: TenantIx,
    asked: Asked,
    resource: Resource,
) -> Result<Value, EdgeError> {
    let profile = match (resource, asked.edit) {
        (Resource::System, None) => return Ok(json!({ "tags": [] })),
        (Resource::System, Some(_)) => {
            return Err(invalid(
                "System-defined inference profiles cannot be tagged.".into(),
            ));
        }
        (Resource::App(a), None) => a,
        (Resource::App(a), Some(edit)) => {
            state
                .app_profiles
                .edit_tags(tenant, &a.id, edit)
                .await?
                .ok_or_else(|| {
                    EdgeError::NotFound(format!("The inference profile {} does not exist.", a.id))
                })?;
            return Ok(json!({}));
        }
    };
    debug_assert_eq!(asked.call, TagCall::List);
    let tags: Vec<Value> = profile
        .tags
        .iter()
        .map(|(k, v)| json!({ "key": k, "value": v }))
        .collect();
    Ok(json!({ "tags": tags }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(k: &str, v: &str) -> Tag {
        Tag {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn keys_and_values_are_checked_as_bedrock_does() {
        assert!(check_tags(&[tag("team", "search"), tag("a b_.:/=+-@1", "")]).is_ok());
        assert!(
            check_tags(&[tag("équipe", "recherche")]).is_ok(),
            "letters of any script"
        );
        for bad in [
            tag("", "x"),
            tag(&"k".repeat(129), "x"),
            tag("k", &"v".repeat(257)),
            tag("k!", "x"),
            tag("k", "v;"),
            tag("aws:cost", "x"),
            tag("AWS:cost", "x"),
        ] {
            let e = check_tags(&[bad]).unwrap_err();
            assert_eq!(e.bedrock_type().1, "ValidationException", "{e}");
        }
        assert!(check_key(&"k".repeat(128)).is_ok());
        let many: Vec<Tag> = (0..201).map(|i| tag(&format!("k{i}"), "")).collect();
        assert!(check_tags(&many).is_err());
    }

    #[test]
    fn tag_needs_tags_and_untag_needs_keys() {
        let body = |v: Value| serde_json::from_value::<Body>(v).unwrap();
        let arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc";
        assert!(edit_of(TagCall::Tag, body(json!({ "resourceARN": arn }))).is_err());
        assert!(edit_of(TagCall::Untag, body(json!({ "resourceARN": arn }))).is_err());
        assert_eq!(
            edit_of(
                TagCall::Untag,
                body(json!({ "resourceARN": arn, "tagKeys": ["a"] }))
            )
            .unwrap(),
            TagEdit::Remove(vec!["a".into()])
        );
        assert!(
            edit_of(
                TagCall::Untag,
                body(json!({ "resourceARN": arn, "tagKeys": ["aws:x"] }))
            )
            .is_err()
        );
    }
}
