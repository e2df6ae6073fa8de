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
    let mut profiles = system_profiles(regions, rtt, models, deployment_by);
    let cx = Overrides {
        file,
        regions,
        models,
        model_by_id,
        deployment_by,
    };
    let errors = overrides
        .iter()
        .enumerate()
        .filter_map(|(i, o)| cx.apply(&format!("profiles[{i}]"), o, &mut profiles).err())
        .collect();
    ConfigError::gather(errors)?;
    Ok(profiles)
}

/// The derived profiles: per model, one per geography with a deployment of it, then `global`.
fn system_profiles(
    regions: &[Region],
    rtt: &[Vec<Duration>],
    models: &[Model],
    deployment_by: &HashMap<(ModelIx, RegionIx), DeploymentIx>,
) -> Vec<Profile> {
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
        let m = ModelIx::nth(m);
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
    profiles
}

/// What an override is checked against.
struct Overrides<'a> {
    file: &'a str,
    regions: &'a [Region],
    models: &'a [Model],
    model_by_id: &'a HashMap<String, ModelIx>,
    deployment_by: &'a HashMap<(ModelIx, RegionIx), DeploymentIx>,
}

impl Overrides<'_> {
    fn err(&self, key: String, message: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_string(),
            key,
            message,
            line: None,
        }
    }

    fn region_ix(&self, key: String, name: &str) -> Result<RegionIx, ConfigError> {
        self.regions
            .iter()
            .position(|r| r.name == name)
            .map(|i| RegionIx(i as u16))
            .ok_or_else(|| self.err(key, format!("unknown region {name:?}")))
    }

    fn in_scope(&self, p: &Profile, r: RegionIx) -> bool {
        p.geography
            .as_deref()
            .is_none_or(|g| self.regions[r.0 as usize].geography == g)
    }

    /// Applies override `o` (at `key`) to the system profile it names.
    fn apply(
        &self,
        key: &str,
        o: &RawProfile,
        profiles: &mut [Profile],
    ) -> Result<(), ConfigError> {
        let Some(p) = profiles.iter_mut().find(|p| p.id == o.id) else {
            let hint = match o.id.split_once('.') {
                Some((_, m)) if self.model_by_id.contains_key(m) => format!(
                    "model {m:?} has no deployment in that geography, or the prefix is not a geography"
                ),
                _ => {
                    "expected `<geography>.<model-id>` or `global.<model-id>` of a configured model"
                        .to_string()
                }
            };
            return Err(self.err(
                format!("{key}.id"),
                format!("no system profile {:?}: {hint}", o.id),
            ));
        };
        for (source, dests) in &o.sources {
            let skey = format!("{key}.sources.{source:?}");
            let s = self.region_ix(skey.clone(), source)?;
            if !self.in_scope(p, s) {
                return Err(self.err(
                    skey,
                    format!(
                        "{source:?} is not in geography {:?}; the profile cannot be called from it",
                        p.geography.as_deref().unwrap_or("global")
                    ),
                ));
            }
            let set = self.destinations(p, &skey, dests)?;
            p.destinations.insert(s, set);
        }
        for (j, source) in o.disabled_sources.iter().enumerate() {
            let s = self.region_ix(format!("{key}.disabled_sources[{j}]"), source)?;
            p.destinations.remove(&s);
        }
        Ok(())
    }

    /// A source's destination set (at `skey`): in the profile's geography, deployed, no
    /// repeats, not empty.
    fn destinations(
        &self,
        p: &Profile,
        skey: &str,
        dests: &[String],
    ) -> Result<Vec<RegionIx>, ConfigError> {
        let mut set = Vec::new();
        for (j, d) in dests.iter().enumerate() {
            let dkey = format!("{skey}[{j}]");
            let r = self.region_ix(dkey.clone(), d)?;
            if !self.in_scope(p, r) {
                return Err(self.err(
                    dkey,
                    format!(
                        "{d:?} is outside geography {:?}: a profile never leaves its geography",
                        p.geography.as_deref().unwrap_or("global")
                    ),
                ));
            }
            if !self.deployment_by.contains_key(&(p.model, r)) {
                return Err(self.err(
                    dkey,
                    format!("{d:?} has no deployment of {:?}", self.models[p.model].id),
                ));
            }
            if set.contains(&r) {
                return Err(self.err(dkey, format!("{d:?} is listed twice")));
            }
            set.push(r);
        }
        if set.is_empty() {
            return Err(self.err(skey.to_string(), "expected at least one destination region (use disabled_sources to disable a source)".to_string()));
        }
        Ok(set)
    }
}
