//! The Bedrock control plane's foundation-model catalogue, as boto3's `bedrock` client and the
//! AWS SDKs call it: `GET /foundation-models` (ListFoundationModels, with the `byProvider`,
//! `byOutputModality`, `byInferenceType` and `byCustomizationType` filters) and
//! `GET /foundation-models/{modelIdentifier}` (GetFoundationModel, by model id or model ARN).
//!
//! The catalogue is the configuration seen from the listener's region: a model is listed when
//! it can be called from here, on demand (it has a deployment in this region and is not
//! profile-only: `ON_DEMAND`) or through a system profile callable from here
//! (`INFERENCE_PROFILE`). A model reachable neither way is not in this region's catalogue, so
//! GetFoundationModel answers 404 `ResourceNotFoundException` for it, as Bedrock does for a
//! model it does not offer in a region.
//!
//! The configuration names models by id only (`provider.name-version`), so the provider and the
//! display name are read from the id: `demo.chat-small-v1:0` is provider `Demo`, name
//! `chat-small`. Every model Spillway serves is a chat model: text in, text out, streamed; none
//! can be customised.
use serde_json::{Value, json};
use spillway_core::RegionIx;
use spillway_proto::bedrock::ModelRef;

use crate::api::resolve::model_ref;
use crate::config::{Config, ModelIx};
use crate::error::{EdgeError, shown};

/// How a model can be called from a region (Bedrock's `inferenceTypesSupported`).
fn inference_types(cfg: &Config, source: RegionIx, m: ModelIx) -> Vec<&'static str> {
    let mut types = Vec::new();
    if !cfg.models[m].profile_only && cfg.deployment(m, source).is_some() {
        types.push("ON_DEMAND");
    }
    if cfg
        .profiles
        .iter()
        .any(|p| p.model == m && p.destinations.contains_key(&source))
    {
        types.push("INFERENCE_PROFILE");
    }
    types
}

/// The provider of a model id (`demo.chat-small-v1:0` → `Demo`): its first dotted part,
/// capitalised.
pub fn provider_name(id: &str) -> String {
    let prefix = id.split_once('.').map_or(id, |(p, _)| p);
    let mut chars = prefix.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The display name of a model id (`demo.chat-small-v1:0` → `chat-small`): without the
/// provider and without a trailing `-v<n>[:<n>]` version.
pub fn model_name(id: &str) -> String {
    let rest = id.split_once('.').map_or(id, |(_, r)| r);
    match rest.rfind("-v") {
        Some(i)
            if i > 0
                && rest[i + 2..].starts_with(|c: char| c.is_ascii_digit())
                && rest[i + 2..]
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == ':' || c == '.') =>
        {
            rest[..i].to_string()
        }
        _ => rest.to_string(),
    }
}

/// One model as Bedrock's `FoundationModelSummary` (and `FoundationModelDetails`, which has the
/// same fields), or `None` when it cannot be called from `source`.
fn summary(cfg: &Config, source: RegionIx, m: ModelIx) -> Option<Value> {
    let types = inference_types(cfg, source, m);
    if types.is_empty() {
        return None;
    }
    let id = &cfg.models[m].id;
    Some(json!({
        "modelArn": format!("arn:aws:bedrock:{}::foundation-model/{id}", cfg.region_name(source)),
        "modelId": id,
        "modelName": model_name(id),
        "providerName": provider_name(id),
        "inputModalities": ["TEXT"],
        "outputModalities": ["TEXT"],
        "responseStreamingSupported": true,
        "customizationsSupported": [],
        "inferenceTypesSupported": types,
        "modelLifecycle": { "status": "ACTIVE" },
    }))
}

/// The filters of ListFoundationModels, checked as Bedrock checks them.
#[derive(Default, Debug)]
struct Filters {
    provider: Option<String>,
    output_modality: Option<String>,
    inference_type: Option<String>,
    customization_type: Option<String>,
}

fn one_of(name: &str, v: String, allowed: &[&str]) -> Result<String, EdgeError> {
    if allowed.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(EdgeError::BadRequest(format!(
            "1 validation error detected: Value '{}' at '{name}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            shown(&v),
            allowed.join(", ")
        )))
    }
}

impl Filters {
    fn parse(pairs: Vec<(String, String)>) -> Result<Filters, EdgeError> {
        let mut f = Filters::default();
        for (k, v) in pairs {
            match k.as_str() {
                "byProvider" => {
                    let ok = (1..=63).contains(&v.len())
                        && v.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ' ');
                    if !ok {
                        return Err(EdgeError::BadRequest(format!(
                            "1 validation error detected: Value '{}' at 'byProvider' failed to satisfy constraint: Member must satisfy regular expression pattern: [A-Za-z0-9- ]{{1,63}}",
                            shown(&v)
                        )));
                    }
                    f.provider = Some(v);
                }
                "byOutputModality" => {
                    f.output_modality = Some(one_of(
                        "byOutputModality",
                        v,
                        &["TEXT", "IMAGE", "EMBEDDING"],
                    )?);
                }
                "byInferenceType" => {
                    f.inference_type = Some(one_of(
                        "byInferenceType",
                        v,
                        &["ON_DEMAND", "PROVISIONED", "INFERENCE_PROFILE"],
                    )?);
                }
                "byCustomizationType" => {
                    f.customization_type = Some(one_of(
                        "byCustomizationType",
                        v,
                        &["FINE_TUNING", "CONTINUED_PRE_TRAINING", "DISTILLATION"],
                    )?);
                }
                _ => {}
            }
        }
        Ok(f)
    }

    fn keeps(&self, s: &Value) -> bool {
        let has = |field: &str, want: &Option<String>| {
            want.as_ref().is_none_or(|w| {
                s[field]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(w)))
            })
        };
        let provider = self.provider.as_ref().is_none_or(|p| {
            let id = s["modelId"].as_str().unwrap_or_default();
            s["providerName"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(p))
                || id
                    .split('.')
                    .next()
                    .is_some_and(|x| x.eq_ignore_ascii_case(p))
        });
        provider
            && has("outputModalities", &self.output_modality)
            && has("inferenceTypesSupported", &self.inference_type)
            && has("customizationsSupported", &self.customization_type)
    }
}

/// ListFoundationModels: `{"modelSummaries": [...]}` for the query string's filters.
pub fn list(
    cfg: &Config,
    source: RegionIx,
    pairs: Vec<(String, String)>,
) -> Result<Value, EdgeError> {
    let filters = Filters::parse(pairs)?;
    let summaries: Vec<Value> = (0..cfg.models.len())
        .filter_map(|m| summary(cfg, source, ModelIx::nth(m)))
        .filter(|s| filters.keeps(s))
        .collect();
    Ok(json!({ "modelSummaries": summaries }))
}

/// GetFoundationModel: `{"modelDetails": {...}}` for a model id or a foundation-model ARN of
/// this region.
pub fn get(cfg: &Config, source: RegionIx, raw: &str) -> Result<Value, EdgeError> {
    let not_found = || {
        EdgeError::NotFound(format!(
            "The model {} does not exist or is not offered in {}.",
            shown(&percent_encoding::percent_decode_str(raw).decode_utf8_lossy()),
            cfg.region_name(source)
        ))
    };
    let id = match model_ref(raw)? {
        ModelRef::Id(id) => id,
        ModelRef::FoundationModelArn { region, model_id } if region == cfg.region_name(source) => {
            model_id
        }
        _ => return Err(not_found()),
    };
    let m = cfg.model_ix(&id).ok_or_else(not_found)?;
    let details = summary(cfg, source, m).ok_or_else(not_found)?;
    Ok(json!({ "modelDetails": details }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_id() {
        assert_eq!(provider_name("demo.chat-small-v1:0"), "Demo");
        assert_eq!(model_name("demo.chat-small-v1:0"), "chat-small");
        assert_eq!(
            model_name("anthropic.claude-3-haiku-20240307-v1:0"),
            "claude-3-haiku-20240307"
        );
        assert_eq!(
            model_name("meta.llama3-8b-instruct-v1"),
            "llama3-8b-instruct"
        );
        assert_eq!(model_name("x.vintage"), "vintage");
        assert_eq!(model_name("plain"), "plain");
        assert_eq!(provider_name("plain"), "Plain");
    }

    #[test]
    fn filters_are_checked_like_bedrock_does() {
        let pairs = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert!(Filters::parse(pairs("byOutputModality", "TEXT")).is_ok());
        for (k, v) in [
            ("byOutputModality", "text"),
            ("byInferenceType", "SOMETIMES"),
            ("byCustomizationType", "X"),
            ("byProvider", "bad/name"),
            ("byProvider", ""),
        ] {
            let e = Filters::parse(pairs(k, v)).unwrap_err();
            assert_eq!(e.bedrock_type().1, "ValidationException", "{k}={v}");
            assert!(e.to_string().contains(k), "{e}");
        }
    }

    #[test]
    fn a_filter_keeps_only_matching_summaries() {
        let s = json!({
            "modelId": "demo.chat-v1:0", "providerName": "Demo",
            "outputModalities": ["TEXT"], "inferenceTypesSupported": ["INFERENCE_PROFILE"],
            "customizationsSupported": [],
        });
        let f = |k: &str, v: &str| Filters::parse(vec![(k.into(), v.into())]).unwrap();
        assert!(f("byProvider", "demo").keeps(&s));
        assert!(f("byProvider", "DEMO").keeps(&s));
        assert!(!f("byProvider", "other").keeps(&s));
        assert!(f("byInferenceType", "INFERENCE_PROFILE").keeps(&s));
        assert!(!f("byInferenceType", "ON_DEMAND").keeps(&s));
        assert!(!f("byOutputModality", "IMAGE").keeps(&s));
        assert!(!f("byCustomizationType", "FINE_TUNING").keeps(&s));
        assert!(Filters::default().keeps(&s));
    }
}
