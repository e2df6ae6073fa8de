//! System inference profiles: derived from the regions' geographies, then overridden.
//!
//! For every geography `g` and every model deployed in at least one region of `g`, the profile
//! `g.<model>` is callable from each region of `g`; its destination set from source `s` is every
//! region of `g` with a deployment of the model, `s` first, then by round-trip time from `s`.
//! `global.<model>` does the same over every region. An override (`[[profiles]]`) replaces the
//! set for the sources it names and may disable sources; a destination outside the profile's
//! geography is a configuration error, so data residency holds by construction.
use std::collections::HashMap;
use std::time::Duration;

use spillway_core::{DeploymentIx, RegionIx};

use super::raw::RawProfile;
use super::{ConfigError, Model, ModelIx, Profile, Region};

pub(super) fn derive(
    file: &str,
    overrides: &[RawProfile],
    regions: &[Region],
    rtt: &[Vec<Duration>],
    models: &[Model],
    model_by_id: &HashMap<String, ModelIx>,
    deployment_by: &HashMap<(ModelIx, RegionIx), DeploymentIx>,
) -> Result<Vec<Profile>, ConfigError> {
    let err = |key: String, message: String| ConfigError::Invalid {
        file: file.to_string(),
        key,
        message,
    };
    let all: Vec<RegionIx> = (0..regions.len()).map(|i| RegionIx(i as u16)).collect();
    let mut geographies: Vec<&str> = Vec::new();
    for r in regions {
        if !geographies.contains(&r.geography.as_str()) {
            geographies.push(&r.geography);
        }
    }
    let ordered = |source: RegionIx, members: &[RegionIx], model: ModelIx| -> Vec<RegionIx> {
        let mut d: Vec<RegionIx> = members
            .iter()
            .copied()
            .filter(|r| deployment_by.contains_key(&(model, *r)))
            .collect();
        d.sort_by_key(|r| (*r != source, rtt[source.0 as usize][r.0 as usize], r.0));
        d
    };

    let mut profiles = Vec::new();
    for (m, model) in models.iter().enumerate() {
        let scopes = geographies
            .iter()
            .map(|g| Some(*g))
            .chain(std::iter::once(None));
        for geo in scopes {
            let members: Vec<RegionIx> = all
                .iter()
                .copied()
                .filter(|r| geo.is_none_or(|g| regions[r.0 as usize].geography == g))
                .collect();
            if !members.iter().any(|r| deployment_by.contains_key(&(m, *r))) {
                continue;
            }
            let destinations = members
                .iter()
                .map(|&s| (s, ordered(s, &members, m)))
                .collect();
            profiles.push(Profile {
                id: format!("{}.{}", geo.unwrap_or("global"), model.id),
                geography: geo.map(str::to_string),
                model: m,
                destinations,
            });
        }
    }

    for (i, o) in overrides.iter().enumerate() {
        let key = format!("profiles[{i}]");
        let Some(p) = profiles.iter_mut().find(|p| p.id == o.id) else {
            let hint = match o.id.split_once('.') {
                Some((_, m)) if model_by_id.contains_key(m) => format!(
                    "model {m:?} has no deployment in that geography, or the prefix is not a geography"
                ),
                _ => {
                    "expected `<geography>.<model-id>` or `global.<model-id>` of a configured model"
                        .to_string()
                }
            };
            return Err(err(
                format!("{key}.id"),
                format!("no system profile {:?}: {hint}", o.id),
            ));
        };
        let region_ix = |k: String, name: &str| -> Result<RegionIx, ConfigError> {
            regions
                .iter()
                .position(|r| r.name == name)
                .map(|i| RegionIx(i as u16))
                .ok_or_else(|| err(k, format!("unknown region {name:?}")))
        };
        let in_scope = |r: RegionIx| {
            p.geography
                .as_deref()
                .is_none_or(|g| regions[r.0 as usize].geography == g)
        };
        for (source, dests) in &o.sources {
            let skey = format!("{key}.sources.{source:?}");
            let s = region_ix(skey.clone(), source)?;
            if !in_scope(s) {
                return Err(err(
                    skey,
                    format!(
                        "{source:?} is not in geography {:?}; the profile cannot be called from it",
                        p.geography.as_deref().unwrap_or("global")
                    ),
                ));
            }
            let mut set = Vec::new();
            for (j, d) in dests.iter().enumerate() {
                let dkey = format!("{skey}[{j}]");
                let r = region_ix(dkey.clone(), d)?;
                if !in_scope(r) {
                    return Err(err(
                        dkey,
                        format!(
                            "{d:?} is outside geography {:?}: a profile never leaves its geography",
                            p.geography.as_deref().unwrap_or("global")
                        ),
                    ));
                }
                if !deployment_by.contains_key(&(p.model, r)) {
                    return Err(err(
                        dkey,
                        format!("{d:?} has no deployment of {:?}", models[p.model].id),
                    ));
                }
                if set.contains(&r) {
                    return Err(err(dkey, format!("{d:?} is listed twice")));
                }
                set.push(r);
            }
            if set.is_empty() {
                return Err(err(skey, "expected at least one destination region (use disabled_sources to disable a source)".to_string()));
            }
            p.destinations.insert(s, set);
        }
        for (j, source) in o.disabled_sources.iter().enumerate() {
            let s = region_ix(format!("{key}.disabled_sources[{j}]"), source)?;
            p.destinations.remove(&s);
        }
    }
    Ok(profiles)
}
