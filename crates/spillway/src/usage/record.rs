//! One audit line as the usage report reads it, and the group key it falls under.
//!
//! Only the fields the report needs are read, and unknown fields are ignored, so a newer
//! gateway's lines still add up. What a line means for billing:
//!
//! * its cost is the one the gateway wrote (at the **source** region's price); a line without
//!   `cost` (no price configured) adds nothing;
//! * `inferenceRegion` is present only when another region served it: absent, the source region
//!   served it;
//! * a *refused* line (outcome other than `ok` and no tokens) was served nowhere: it is counted
//!   as a request, under serving region `-`, and costs nothing.
use std::collections::BTreeMap;

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The currency the gateway writes costs in.
pub const CURRENCY: &str = "USD";

/// The fields of an audit record (`spillway_gateway::audit::AuditRecord`) the report reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditLine {
    pub timestamp: String,
    pub tenant: Option<String>,
    pub source_region: String,
    #[serde(default)]
    pub model_id: Option<String>,
    #[serde(default)]
    pub requested: Option<String>,
    #[serde(default)]
    pub inference_profile_arn: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub inference_region: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub outcome: String,
    #[serde(default)]
    pub cost: Option<LineCost>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LineCost {
    pub currency: String,
    pub total: f64,
}

/// A usable line: the record and its time.
#[derive(Debug, Clone)]
pub struct Usage {
    pub at: OffsetDateTime,
    pub line: AuditLine,
}

/// Why a line was not counted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BadLine {
    #[error("not an audit record: {0}")]
    Json(String),
    #[error("timestamp {0:?} is not RFC 3339")]
    Timestamp(String),
    #[error("cost in {0:?}, expected {CURRENCY}")]
    Currency(String),
    #[error("cost {0} is not a finite, non-negative amount")]
    Cost(f64),
}

/// Reads one line (not blank) of the audit log.
pub fn parse_line(text: &str) -> Result<Usage, BadLine> {
    let line: AuditLine = serde_json::from_str(text).map_err(|e| BadLine::Json(e.to_string()))?;
    let at = OffsetDateTime::parse(&line.timestamp, &Rfc3339)
        .map_err(|_| BadLine::Timestamp(line.timestamp.clone()))?;
    if let Some(c) = &line.cost {
        if c.currency != CURRENCY {
            return Err(BadLine::Currency(c.currency.clone()));
        }
        if !(c.total.is_finite() && c.total >= 0.0) {
            return Err(BadLine::Cost(c.total));
        }
    }
    Ok(Usage { at, line })
}

impl AuditLine {
    /// Ended without being served anywhere: not `ok`, and no tokens were used.
    pub fn refused(&self) -> bool {
        self.outcome != "ok" && self.input_tokens == 0 && self.output_tokens == 0
    }

    /// The region that served it: `inferenceRegion`, else the source; `-` when refused.
    pub fn serving_region(&self) -> &str {
        match &self.inference_region {
            Some(r) => r,
            None if self.refused() => NONE,
            None => &self.source_region,
        }
    }

    /// The cost it adds: what the gateway wrote, nothing when refused or unpriced.
    pub fn cost(&self) -> f64 {
        match &self.cost {
            Some(c) if !self.refused() => c.total,
            _ => 0.0,
        }
    }

    /// The inference profile it called: the ARN when the client named one (Bedrock API),
    /// else the requested id when that is not the model id itself (a profile id), else `-`.
    pub fn profile(&self) -> &str {
        if let Some(arn) = &self.inference_profile_arn {
            return arn;
        }
        match (&self.requested, &self.model_id) {
            (Some(req), Some(model)) if req != model => req,
            _ => NONE,
        }
    }
}

/// What a missing group value shows.
pub const NONE: &str = "-";

/// One `--group-by` dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    Tenant,
    Tag(String),
    SourceRegion,
    ServingRegion,
    Model,
    Profile,
    Outcome,
}

impl GroupBy {
    /// The names `--group-by` takes.
    pub const NAMES: &'static str =
        "tenant, tag:<key>, source-region, serving-region, model, profile, outcome";

    pub fn parse(s: &str) -> Result<GroupBy, String> {
        Ok(match s.trim() {
            "tenant" => GroupBy::Tenant,
            "source-region" => GroupBy::SourceRegion,
            "serving-region" => GroupBy::ServingRegion,
            "model" => GroupBy::Model,
            "profile" => GroupBy::Profile,
            "outcome" => GroupBy::Outcome,
            other => match other.strip_prefix("tag:") {
                Some(key) if !key.is_empty() => GroupBy::Tag(key.to_string()),
                _ => {
                    return Err(format!(
                        "unknown group {other:?}; expected a comma list of {}",
                        Self::NAMES
                    ));
                }
            },
        })
    }

    /// The column name.
    pub fn name(&self) -> String {
        match self {
            GroupBy::Tenant => "tenant".into(),
            GroupBy::Tag(k) => format!("tag:{k}"),
            GroupBy::SourceRegion => "source-region".into(),
            GroupBy::ServingRegion => "serving-region".into(),
            GroupBy::Model => "model".into(),
            GroupBy::Profile => "profile".into(),
            GroupBy::Outcome => "outcome".into(),
        }
    }

    /// This dimension's value for `line`.
    pub fn value(&self, line: &AuditLine) -> String {
        match self {
            GroupBy::Tenant => line.tenant.as_deref().unwrap_or(NONE).to_string(),
            GroupBy::Tag(k) => match line.tags.get(k) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => NONE.to_string(),
            },
            GroupBy::SourceRegion => line.source_region.clone(),
            GroupBy::ServingRegion => line.serving_region().to_string(),
            GroupBy::Model => line.model_id.as_deref().unwrap_or(NONE).to_string(),
            GroupBy::Profile => line.profile().to_string(),
            GroupBy::Outcome => line.outcome.clone(),
        }
    }
}

/// A comma list of dimensions (at least one).
pub fn parse_group_by(s: &str) -> Result<Vec<GroupBy>, String> {
    let groups = s
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(GroupBy::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if groups.is_empty() {
        return Err(format!("expected a comma list of {}", GroupBy::NAMES));
    }
    Ok(groups)
}
