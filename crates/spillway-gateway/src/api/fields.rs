//! No silent drops: a request field the upstreams that may serve a request cannot honour is
//! refused with 400 naming it, at parse time, before quota is drawn or anything is sent.
//!
//! Which upstreams may serve a request is known once it is resolved: the deployments of its
//! model in its destination regions. A field counts as honoured only when *every* one of them
//! honours it, since any of them may end up serving the request (spill-over, failover):
//!
//! * Converse fields with no OpenAI equivalent (`guardrailConfig`, `performanceConfig`,
//!   `promptVariables`, `requestMetadata`, `additionalModelResponseFieldPaths`, `guardContent`
//!   system blocks) need every destination to be a `bedrock` upstream; they are passed to it.
//! * OpenAI chat fields a Converse request cannot carry (`seed`, `logprobs`, `response_format`,
//!   `n` > 1, …, see `spillway_proto::bedrock::converse_cannot_carry`) need every destination
//!   to be OpenAI-compatible (`openai`, `sim`); they are passed to it as sent, `n` included, so
//!   every choice comes back.
use spillway_proto::ChatRequest;
use spillway_proto::bedrock::{ConverseRequest, bedrock_only_fields, converse_cannot_carry};

use crate::config::{Config, Upstream};
use crate::drive::ctx::Target;
use crate::error::EdgeError;

/// The kinds of upstream that may serve a request: whether all, and whether any, of its
/// destinations' deployments are `bedrock` upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds {
    pub all_bedrock: bool,
    pub any_bedrock: bool,
}

pub fn kinds(cfg: &Config, target: &Target) -> Kinds {
    let bedrock: Vec<bool> = target
        .destinations
        .iter()
        .filter_map(|r| cfg.deployment(target.model, *r))
        .map(|d| {
            matches!(
                cfg.deployments[d.0 as usize].upstream,
                Upstream::Bedrock { .. }
            )
        })
        .collect();
    Kinds {
        all_bedrock: !bedrock.is_empty() && bedrock.iter().all(|b| *b),
        any_bedrock: bedrock.iter().any(|b| *b),
    }
}

/// A Converse request's Bedrock-only fields, refused unless every destination is Bedrock.
pub fn check_converse(
    cfg: &Config,
    target: &Target,
    req: &ConverseRequest,
) -> Result<(), EdgeError> {
    let names = bedrock_only_fields(req);
    if names.is_empty() || kinds(cfg, target).all_bedrock {
        return Ok(());
    }
    Err(EdgeError::Unsupported {
        field: names[0].clone(),
        message: format!(
            "{} cannot be honoured: this model is served here by upstreams that are not Amazon \
             Bedrock. Remove the field, or call a model or profile served only by Bedrock.",
            names.join(", ")
        ),
    })
}

/// An OpenAI chat request's fields Converse cannot carry, refused when any destination is a
/// Bedrock upstream.
pub fn check_chat(cfg: &Config, target: &Target, req: &ChatRequest) -> Result<(), EdgeError> {
    if !kinds(cfg, target).any_bedrock {
        return Ok(());
    }
    let names = converse_cannot_carry(req);
    let Some(first) = names.first() else {
        return Ok(());
    };
    // `n` first: the one a client most often sends on purpose.
    let field = if names.iter().any(|n| n == "n") {
        "n"
    } else {
        first
    };
    Err(EdgeError::Unsupported {
        field: field.to_string(),
        message: format!(
            "{} cannot be honoured: this model may be served by an Amazon Bedrock upstream, \
             which has no such parameter{}. Remove it and retry.",
            names.join(", "),
            if field == "n" {
                " (and returns one choice)"
            } else {
                ""
            }
        ),
    })
}
