//! Phase "resolve": what the client named (a model id or a system profile id) → the model, the
//! destination set for this source region, and which tenant quota it draws on.
//!
//! A plain model id is served in the source region only (in-region quota); a profile id reaches
//! its destination set for the source (cross-region quota). Either way the set comes from the
//! validated configuration, which never lets a profile leave its geography.
use spillway_core::RegionIx;
use spillway_proto::bedrock::{ModelRef, parse_model_ref, printable_id};

use crate::config::{Config, ModelIx};
use crate::drive::ctx::Target;
use crate::error::{EdgeError, MAX_ECHOED_ID, shown};

/// A `modelId` or ARN as the Bedrock APIs take it; when it is not one, a 400 whose message
/// echoes it shortened (see `error::shown`).
pub fn model_ref(raw: &str) -> Result<ModelRef, EdgeError> {
    parse_model_ref(raw).map_err(|e| {
        // The message shows the id decoded, as the client wrote it (`printable_id`).
        let message = e.to_string();
        let echoed = printable_id(raw);
        EdgeError::BadRequest(if echoed.chars().count() > MAX_ECHOED_ID {
            message.replace(&echoed, &shown(&echoed))
        } else {
            message
        })
    })
}

pub fn resolve(cfg: &Config, source: RegionIx, name: &str) -> Result<Target, EdgeError> {
    let src = cfg.region_name(source);
    if let Some(p) = cfg.profile_ix(name) {
        let profile = &cfg.profiles[p];
        return match profile.destinations.get(&source) {
            Some(d) => Ok(Target {
                model: profile.model,
                profile: Some(p),
                destinations: d.clone(),
                cross_region: true,
            }),
            None => Err(EdgeError::NotCallableHere(format!(
                "The inference profile {name} cannot be called from region {src}; call it on an endpoint of a region in geography {:?}.",
                profile.geography.as_deref().unwrap_or("global")
            ))),
        };
    }
    let Some(m) = cfg.model_ix(name) else {
        return Err(EdgeError::ModelNotFound(name.to_string()));
    };
    if cfg.models[m].profile_only {
        return Err(EdgeError::ProfileOnly(name.to_string()));
    }
    if cfg.deployment(m, source).is_none() {
        let geo = &cfg.region(source).geography;
        return Err(EdgeError::NotCallableHere(format!(
            "Model {name} is not served in region {src}; call the inference profile {geo}.{name} to reach the regions that serve it."
        )));
    }
    Ok(Target {
        model: m,
        profile: None,
        destinations: vec![source],
        cross_region: false,
    })
}

/// Model and profile ids callable from `source` (for `GET /v1/models`).
pub fn callable_ids(cfg: &Config, source: RegionIx) -> Vec<String> {
    let models = cfg
        .models
        .iter()
        .enumerate()
        .filter(|(m, model)| {
            !model.profile_only && cfg.deployment(ModelIx::nth(*m), source).is_some()
        })
        .map(|(_, model)| model.id.clone());
    let profiles = cfg
        .profiles
        .iter()
        .filter(|p| p.destinations.contains_key(&source))
        .map(|p| p.id.clone());
    models.chain(profiles).collect()
}
