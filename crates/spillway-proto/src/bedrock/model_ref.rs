//! The `{modelId}` path segment of the Bedrock runtime API.
//!
//! It may be a model id (`demo.chat-small-v1:0`), a system inference profile id
//! (`us.demo.chat-small-v1:0`), or an ARN:
//!
//! * `arn:aws:bedrock:<region>::foundation-model/<model-id>` (empty account),
//! * `arn:aws:bedrock:<region>:<account>:inference-profile/<profile-id>`,
//! * `arn:aws:bedrock:<region>:<account>:application-inference-profile/<id>`,
//!
//! with a 12-digit account. SDKs percent-encode the segment (`us.x%3A0`, ARNs with `%3A` and
//! `%2F`), so it is decoded first. Only the `aws` partition is accepted, and of Bedrock's resource
//! types only these three (provisioned and custom models are not served by Spillway).
use std::fmt;

use percent_encoding::percent_decode_str;

use super::error::BedrockError;

/// The longest model identifier Bedrock accepts.
const MAX_LEN: usize = 2048;

/// What a `{modelId}` names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelRef {
    /// A model id or a system profile id, exactly as sent (after percent-decoding).
    Id(String),
    FoundationModelArn {
        region: String,
        model_id: String,
    },
    InferenceProfileArn {
        region: String,
        account: String,
        profile_id: String,
    },
    ApplicationProfileArn {
        region: String,
        account: String,
        id: String,
    },
}

impl ModelRef {
    /// The id inside: the plain id, the ARN's model id, profile id or application profile id.
    pub fn resource_id(&self) -> &str {
        match self {
            ModelRef::Id(id) => id,
            ModelRef::FoundationModelArn { model_id, .. } => model_id,
            ModelRef::InferenceProfileArn { profile_id, .. } => profile_id,
            ModelRef::ApplicationProfileArn { id, .. } => id,
        }
    }

    /// The region of an ARN (`None` for a plain id).
    pub fn region(&self) -> Option<&str> {
        match self {
            ModelRef::Id(_) => None,
            ModelRef::FoundationModelArn { region, .. }
            | ModelRef::InferenceProfileArn { region, .. }
            | ModelRef::ApplicationProfileArn { region, .. } => Some(region),
        }
    }

    /// The account of a profile ARN (`None` for a plain id or a foundation-model ARN).
    pub fn account(&self) -> Option<&str> {
        match self {
            ModelRef::InferenceProfileArn { account, .. }
            | ModelRef::ApplicationProfileArn { account, .. } => Some(account),
            _ => None,
        }
    }
}

/// The id, or the ARN in its canonical form.
impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelRef::Id(id) => f.write_str(id),
            ModelRef::FoundationModelArn { region, model_id } => {
                write!(f, "arn:aws:bedrock:{region}::foundation-model/{model_id}")
            }
            ModelRef::InferenceProfileArn {
                region,
                account,
                profile_id,
            } => write!(
                f,
                "arn:aws:bedrock:{region}:{account}:inference-profile/{profile_id}"
            ),
            ModelRef::ApplicationProfileArn {
                region,
                account,
                id,
            } => write!(
                f,
                "arn:aws:bedrock:{region}:{account}:application-inference-profile/{id}"
            ),
        }
    }
}

/// `raw` as the client wrote it: percent-decoded (SDKs encode `:` and `/` in the path), with
/// control characters (and bytes that are not UTF-8) escaped rather than echoed.
pub fn printable_id(raw: &str) -> String {
    escape_controls(&percent_decode_str(raw).decode_utf8_lossy())
}

/// `s` with each control character written as its escape (`\n`, `\u{1b}`).
pub fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn invalid(raw: &str, why: impl fmt::Display) -> BedrockError {
    BedrockError::validation(format!(
        "invalid model identifier `{}`: {}",
        printable_id(raw),
        escape_controls(&why.to_string())
    ))
}

/// Characters of model, profile and application-profile ids.
fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')
}

fn check_id(raw: &str, what: &str, id: &str) -> Result<(), BedrockError> {
    if id.is_empty() {
        return Err(invalid(raw, format!("the {what} is empty")));
    }
    if let Some(c) = id.chars().find(|&c| !is_id_char(c)) {
        return Err(invalid(
            raw,
            format!("the {what} contains {c:?} (allowed: letters, digits, `.`, `-`, `_`, `:`)"),
        ));
    }
    Ok(())
}

fn check_region(raw: &str, region: &str) -> Result<(), BedrockError> {
    let ok = !region.is_empty()
        && region.len() <= 32
        && region.starts_with(|c: char| c.is_ascii_lowercase())
        && !region.ends_with('-')
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            raw,
            format!("`{region}` is not a region name (like `us-east-1`)"),
        ))
    }
}

fn check_account(raw: &str, kind: &str, account: &str) -> Result<(), BedrockError> {
    if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(invalid(
            raw,
            format!("a {kind} ARN needs a 12-digit account id, found `{account}`"),
        ))
    }
}

/// Parses a `{modelId}` path segment (percent-encoded or not).
pub fn parse_model_ref(raw_path_segment: &str) -> Result<ModelRef, BedrockError> {
    let raw = raw_path_segment;
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| invalid(raw, "it is not UTF-8 once percent-decoded"))?;
    let s: &str = &decoded;
    if s.is_empty() {
        return Err(BedrockError::validation("the model identifier is empty"));
    }
    if s.len() > MAX_LEN {
        return Err(invalid(
            raw,
            format!("it is longer than {MAX_LEN} characters"),
        ));
    }
    if !s.starts_with("arn:") {
        check_id(raw, "model id", s)?;
        return Ok(ModelRef::Id(s.to_string()));
    }
    parse_arn(raw, s)
}

/// The ARN `s` (decoded from `raw`): its partition, service and region checked, its resource
/// left to [`arn_resource`].
fn parse_arn(raw: &str, s: &str) -> Result<ModelRef, BedrockError> {
    // arn:<partition>:<service>:<region>:<account>:<resource-type>/<id>; the id may hold colons.
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let [_, partition, service, region, account, resource] = parts[..] else {
        return Err(invalid(
            raw,
            "an ARN has the form arn:aws:bedrock:<region>:<account>:<resource-type>/<id>",
        ));
    };
    if partition != "aws" {
        return Err(invalid(
            raw,
            format!("partition `{partition}` is not supported (expected `aws`)"),
        ));
    }
    if service != "bedrock" {
        return Err(invalid(
            raw,
            format!("service `{service}` is not `bedrock`"),
        ));
    }
    check_region(raw, region)?;
    let Some((resource_type, id)) = resource.split_once('/') else {
        return Err(invalid(
            raw,
            format!("resource `{resource}` has no `<resource-type>/<id>` form"),
        ));
    };
    arn_resource(raw, region, account, resource_type, id)
}

/// One of the three resource types served, with the account and id that type requires.
fn arn_resource(
    raw: &str,
    region: &str,
    account: &str,
    resource_type: &str,
    id: &str,
) -> Result<ModelRef, BedrockError> {
    match resource_type {
        "foundation-model" => {
            if !account.is_empty() {
                return Err(invalid(
                    raw,
                    format!("a foundation-model ARN has an empty account field, found `{account}`"),
                ));
            }
            check_id(raw, "model id", id)?;
            Ok(ModelRef::FoundationModelArn {
                region: region.to_string(),
                model_id: id.to_string(),
            })
        }
        "inference-profile" => {
            check_account(raw, "inference-profile", account)?;
            check_id(raw, "profile id", id)?;
            Ok(ModelRef::InferenceProfileArn {
                region: region.to_string(),
                account: account.to_string(),
                profile_id: id.to_string(),
            })
        }
        "application-inference-profile" => {
            check_account(raw, "application-inference-profile", account)?;
            check_id(raw, "application inference profile id", id)?;
            Ok(ModelRef::ApplicationProfileArn {
                region: region.to_string(),
                account: account.to_string(),
                id: id.to_string(),
            })
        }
        other => Err(invalid(
            raw,
            format!(
                "resource type `{other}` is not supported (expected foundation-model, \
                 inference-profile or application-inference-profile)"
            ),
        )),
    }
}

#[cfg(test)]
#[path = "model_ref_tests.rs"]
mod tests;
