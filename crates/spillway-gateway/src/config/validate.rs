//! Raw → validated configuration. Every error names the file, the key and what was expected.
//!
//! Sections are checked in dependency order (regions, round-trip times, models, deployments,
//! profiles, tenants, prices, audit, listeners, state, routing, server), each by its own
//! function, and every error is reported at once: a list section checks all its entries, and
//! every section runs unless one it depends on failed (regions first: everything names them;
//! deployments, profiles, tenants and prices need the models), so that one mistake is reported
//! once, not again by every section that would trip over it.
use std::collections::HashMap;
use std::time::Duration;

use sha2::{Digest, Sha256};
use spillway_core::{CacheAffinity, DeploymentIx, RegionIx};

use super::raw::*;
use super::*;

/// The documented key of the embedded default's demo tenant; refused on non-loopback listeners.
pub const DEMO_API_KEY: &str = "spillway-demo-key";
/// The documented SigV4 access key id of the embedded default's demo tenant; refused on
/// non-loopback listeners too.
pub const DEMO_ACCESS_KEY_ID: &str = "AKIASPILLWAYDEMO0001";

pub(super) struct Ctx<'a> {
    file: &'a str,
    /// Sections with an entry that could not be read (left out: see `read`).
    failed: &'a [&'a str],
}

impl<'a> Ctx<'a> {
    #[cfg(test)]
    pub(super) fn for_tests(file: &'a str) -> Ctx<'a> {
        Ctx { file, failed: &[] }
    }

    /// Whether `section` lost an entry that could not be read: its own checks must not count
    /// on it (an emptied list is not "no entries"), and sections that name its entries are
    /// not checked.
    pub(super) fn failed(&self, section: &str) -> bool {
        self.failed.contains(&section)
    }

    /// Checks every entry of a list section, going on after a bad one, and returns every error
    /// found (the section's result is then discarded, so a partly built list is never used).
    pub(super) fn each<T>(
        &self,
        raw: &[T],
        mut check: impl FnMut(usize, &T) -> Result<(), ConfigError>,
    ) -> Result<(), ConfigError> {
        let errors = raw
            .iter()
            .enumerate()
            .filter_map(|(i, entry)| check(i, entry).err())
            .collect();
        ConfigError::gather(errors)
    }

    pub(super) fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_string(),
            key: key.into(),
            message: message.into(),
            line: None,
        }
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Validate a raw configuration: the validated config, or every error found.
pub fn from_raw(raw: RawConfig, file: &str) -> Result<Config, ConfigError> {
    from_raw_skipping(raw, file, &[])
}

/// [`from_raw`] of what was read from a file whose `failed` sections lost entries: what
/// depends on them is not checked, and when nothing found is wrong the result is an empty
/// [`ConfigError::Several`] (the reading errors are the ones to show).
pub(super) fn from_raw_skipping(
    raw: RawConfig,
    file: &str,
    failed: &[&str],
) -> Result<Config, ConfigError> {
    let cx = Ctx { file, failed };
    // Everything names regions: without them nothing else can be checked.
    if cx.failed("regions") {
        return match raw.regions.is_empty() {
            true => Err(ConfigError::Several(Vec::new())),
            false => regions(&cx, &raw.regions).and(Err(ConfigError::Several(Vec::new()))),
        };
    }
    let regions = regions(&cx, &raw.regions)?;
    let mut found = Vec::new();
    let catalog = catalog(&cx, &raw, &regions, &mut found);
    let demo_key_in_use = catalog.as_ref().is_some_and(|c| c.tenants.demo_key_in_use);
    let operations =
        super::operations::operations(&cx, &raw, &regions, demo_key_in_use, &mut found);
    ConfigError::gather(found)?;
    let (Some(c), Some(o)) = (catalog, operations) else {
        if !failed.is_empty() {
            return Err(ConfigError::Several(Vec::new()));
        }
        return Err(cx.err(
            "",
            "a section was refused without an error (a bug: please report it)",
        ));
    };
    let profile_by_id = c
        .profiles
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.clone(), ProfileIx::nth(i)))
        .collect();
    Ok(Config {
        source_name: file.to_string(),
        command_line: Default::default(),
        max_body_bytes: o.max_body_bytes,
        edge: o.edge,
        admin: o.admin,
        shutdown_grace: Duration::from_secs(raw.server.shutdown_grace_secs.unwrap_or(30)),
        router: o.router,
        prefix_cache_ttl: Duration::from_secs(raw.routing.prefix_cache_ttl_secs.unwrap_or(600)),
        timeouts: o.timeouts,
        seed: raw.routing.seed.unwrap_or(0x5eed_5b11_1a7e),
        state: o.state,
        regions,
        rtt: c.rtt,
        models: c.models,
        deployments: c.deployments,
        profiles: c.profiles,
        tenants: c.tenants.tenants,
        listeners: o.listeners,
        prices: c.prices,
        audit: o.audit,
        telemetry: o.telemetry,
        model_by_id: c.model_by_id,
        profile_by_id,
        deployment_by: c.deployment_by,
        tenant_by_key: c.tenants.tenant_by_key,
        tenant_by_access_key: c.tenants.tenant_by_access_key,
    })
}

/// A section's result; its error goes to `found`.
pub(super) fn keep<T>(found: &mut Vec<ConfigError>, checked: Result<T, ConfigError>) -> Option<T> {
    checked.map_err(|e| found.push(e)).ok()
}

/// What the models, deployments, profiles, tenants and prices sections produce.
struct Catalog {
    rtt: Vec<Vec<Duration>>,
    models: Vec<Model>,
    model_by_id: HashMap<String, ModelIx>,
    deployments: Vec<Deployment>,
    deployment_by: HashMap<(ModelIx, RegionIx), DeploymentIx>,
    profiles: Vec<Profile>,
    tenants: tenants::Tenants,
    prices: HashMap<(ModelIx, RegionIx), Price>,
}

/// The sections that name models; each runs unless one it depends on failed.
fn catalog(
    cx: &Ctx<'_>,
    raw: &RawConfig,
    regions: &[Region],
    found: &mut Vec<ConfigError>,
) -> Option<Catalog> {
    let rtt = keep(found, rtt(cx, regions, &raw.rtt));
    let (models, model_by_id) = keep(found, models(cx, &raw.models, regions))?;
    if cx.failed("models") {
        // Every section below names models.
        return None;
    }
    let region_lookup = |key: &str, name: &str| region_ix(cx, regions, key, name);
    let model_lookup = |key: &str, id: &str| model_ix(cx, &model_by_id, key, id);
    let tenants = tenants::validate(
        cx,
        &raw.tenants,
        regions.len(),
        &region_lookup,
        &model_lookup,
    );
    let tenants = keep(found, tenants);
    let prices = keep(
        found,
        tenants::prices(cx, &raw.prices, &region_lookup, &model_lookup),
    );
    let deployments = deployments(cx, &raw.deployments, regions, &models, &model_by_id);
    let (deployments, deployment_by) = keep(found, deployments)?;
    let continuable = super::upstreams::continuable(cx, &models, &deployments);
    keep(found, continuable);
    if cx.failed("deployments") || cx.failed("rtt") {
        // Profiles are derived from the deployments (and ordered by round-trip time).
        return None;
    }
    let rtt = rtt?;
    let profiles = super::profiles::derive(
        cx.file,
        &raw.profiles,
        regions,
        &rtt,
        &models,
        &model_by_id,
        &deployment_by,
    );
    let profiles = keep(found, profiles)?;
    Some(Catalog {
        rtt,
        models,
        model_by_id,
        deployments,
        deployment_by,
        profiles,
        tenants: tenants?,
        prices: prices?,
    })
}

/// `[[regions]]`: unique names, geographies usable as a profile prefix.
fn regions(cx: &Ctx<'_>, raw: &[RawRegion]) -> Result<Vec<Region>, ConfigError> {
    if raw.is_empty() {
        return Err(cx.err("regions", "expected at least one [[regions]] entry"));
    }
    let mut regions: Vec<Region> = Vec::new();
    cx.each(raw, |i, r| {
            let key = format!("regions[{i}]");
            if r.name.is_empty() || regions.iter().any(|x| x.name == r.name) {
                return Err(cx.err(
                    format!("{key}.name"),
                    format!("expected a unique, non-empty region name, got {:?}", r.name),
                ));
            }
            if r.geography.is_empty() || r.geography == "global" || r.geography.contains('.') {
                return Err(cx.err(format!("{key}.geography"), format!("expected a geography name such as \"us\" or \"eu\" (not \"global\", no dots), got {:?}", r.geography)));
            }
            regions.push(Region {
                name: r.name.clone(),
                geography: r.geography.clone(),
            });
            Ok(())
        })?;
    Ok(regions)
}

/// The index of region `name`, or an error at `key` listing the configured regions.
pub(super) fn region_ix(
    cx: &Ctx<'_>,
    regions: &[Region],
    key: &str,
    name: &str,
) -> Result<RegionIx, ConfigError> {
    regions
        .iter()
        .position(|r| r.name == name)
        .map(|i| RegionIx(i as u16))
        .ok_or_else(|| {
            cx.err(
                key,
                format!(
                    "unknown region {name:?}; expected one of {}",
                    names(regions)
                ),
            )
        })
}

/// The index of model `id`, or an error at `key`.
fn model_ix(
    cx: &Ctx<'_>,
    model_by_id: &HashMap<String, ModelIx>,
    key: &str,
    id: &str,
) -> Result<ModelIx, ConfigError> {
    model_by_id.get(id).copied().ok_or_else(|| {
        cx.err(
            key,
            format!("unknown model {id:?}; expected one of the [[models]] ids"),
        )
    })
}

/// Round-trip times: 1 ms inside a region, configured pairs, else 50 ms inside a geography and
/// 150 ms across.
fn rtt(
    cx: &Ctx<'_>,
    regions: &[Region],
    raw: &[RawRtt],
) -> Result<Vec<Vec<Duration>>, ConfigError> {
    let n = regions.len();
    let mut rtt = vec![vec![Duration::ZERO; n]; n];
    for (a, row) in rtt.iter_mut().enumerate() {
        for (b, cell) in row.iter_mut().enumerate() {
            *cell = Duration::from_millis(if a == b {
                1
            } else if regions[a].geography == regions[b].geography {
                50
            } else {
                150
            });
        }
    }
    cx.each(raw, |i, p| {
        let a = region_ix(cx, regions, &format!("rtt[{i}].between[0]"), &p.between[0])?;
        let b = region_ix(cx, regions, &format!("rtt[{i}].between[1]"), &p.between[1])?;
        if !(p.ms.is_finite() && p.ms >= 0.0 && p.ms < 10_000.0) {
            return Err(cx.err(
                format!("rtt[{i}].ms"),
                format!("expected milliseconds between 0 and 10000, got {}", p.ms),
            ));
        }
        let d = Duration::from_secs_f64(p.ms / 1000.0);
        rtt[a.0 as usize][b.0 as usize] = d;
        rtt[b.0 as usize][a.0 as usize] = d;
        Ok(())
    })?;
    Ok(rtt)
}

/// `[[models]]`: unique ids that cannot be mistaken for a profile.
fn models(
    cx: &Ctx<'_>,
    raw: &[RawModel],
    regions: &[Region],
) -> Result<(Vec<Model>, HashMap<String, ModelIx>), ConfigError> {
    let mut models = Vec::new();
    let mut model_by_id = HashMap::new();
    cx.each(raw, |i, m| {
            let key = format!("models[{i}]");
            let first = m.id.split('.').next().unwrap_or_default();
            if m.id.is_empty() || m.id.contains('/') || m.id.chars().any(char::is_whitespace) {
                return Err(cx.err(
                    format!("{key}.id"),
                    format!(
                        "expected a model id like \"provider.name-v1:0\", got {:?}",
                        m.id
                    ),
                ));
            }
            if first == "global" || regions.iter().any(|r| r.geography == first) {
                return Err(cx.err(format!("{key}.id"), format!("model id {:?} starts with a geography prefix and would be mistaken for a profile", m.id)));
            }
            if model_by_id
                .insert(m.id.clone(), ModelIx::nth(models.len()))
                .is_some()
            {
                return Err(cx.err(
                    format!("{key}.id"),
                    format!("duplicate model id {:?}", m.id),
                ));
            }
            let burndown = m.output_burndown.unwrap_or(1.0);
            if !(burndown > 0.0 && burndown <= 10.0) {
                return Err(cx.err(
                    format!("{key}.output_burndown"),
                    format!("expected a factor in (0, 10], got {burndown}"),
                ));
            }
            let (default_max_tokens, max_output_tokens) = output_caps(cx, &key, m)?;
            models.push(Model {
                id: m.id.clone(),
                profile_only: m.profile_only,
                output_burndown: burndown,
                default_max_tokens,
                max_output_tokens,
                kind: m.kind,
                midstream_failover: m.midstream_failover,
                cache_affinity: match m.cache_affinity {
                    RawCacheAffinity::Off => CacheAffinity::Off,
                    RawCacheAffinity::PreferSource => CacheAffinity::PreferSource,
                    RawCacheAffinity::On => CacheAffinity::On,
                },
            });
            Ok(())
        })?;
    Ok((models, model_by_id))
}

/// A model's `default_max_tokens` (1024 unless set, at most `max_output_tokens`) and its
/// `max_output_tokens` (at least 1, when set).
fn output_caps(cx: &Ctx<'_>, key: &str, m: &RawModel) -> Result<(u64, Option<u64>), ConfigError> {
    if m.max_output_tokens == Some(0) {
        return Err(cx.err(
            format!("{key}.max_output_tokens"),
            "expected at least 1 output token",
        ));
    }
    let default = match (m.default_max_tokens, m.max_output_tokens) {
        (Some(d), Some(max)) if d > max => {
            return Err(cx.err(
                format!("{key}.default_max_tokens"),
                format!("expected at most max_output_tokens ({max}), got {d}"),
            ));
        }
        (Some(d), _) => d.max(1),
        (None, max) => max.map_or(1024, |max| max.min(1024)),
    };
    Ok((default, m.max_output_tokens))
}

type Deployments = (Vec<Deployment>, HashMap<(ModelIx, RegionIx), DeploymentIx>);

/// `[[deployments]]`: one per model and region, each with a valid upstream.
fn deployments(
    cx: &Ctx<'_>,
    raw: &[RawDeployment],
    regions: &[Region],
    models: &[Model],
    model_by_id: &HashMap<String, ModelIx>,
) -> Result<Deployments, ConfigError> {
    let mut deployments = Vec::new();
    let mut deployment_by = HashMap::new();
    cx.each(raw, |i, d| {
        let key = format!("deployments[{i}]");
        let model = model_ix(cx, model_by_id, &format!("{key}.model"), &d.model)?;
        let region = region_ix(cx, regions, &format!("{key}.region"), &d.region)?;
        if d.max_in_flight == 0 {
            return Err(cx.err(format!("{key}.max_in_flight"), "expected at least 1"));
        }
        if d.rpm == Some(0) || d.tpm == Some(0) {
            return Err(cx.err(
                format!("{key}.rpm"),
                "expected a positive limit or no key at all",
            ));
        }
        if deployment_by
            .insert((model, region), DeploymentIx(deployments.len() as u32))
            .is_some()
        {
            return Err(cx.err(
                key,
                format!(
                    "a second deployment of {:?} in {:?}; expected one per model and region",
                    d.model, d.region
                ),
            ));
        }
        let continuation = super::upstreams::continuation(cx, &key, d.continuation, &d.upstream)?;
        let upstream = super::upstreams::upstream(
            cx,
            &format!("{key}.upstream"),
            &d.upstream,
            &models[model].id,
            &regions[region.0 as usize].name,
        )?;
        super::upstreams::serves_kind(cx, &key, &upstream, models[model].kind)?;
        deployments.push(Deployment {
            model,
            region,
            max_in_flight: d.max_in_flight,
            rpm: d.rpm,
            tpm: d.tpm,
            prefix_cache_blocks: d.prefix_cache_blocks.unwrap_or(match &upstream {
                Upstream::Sim { params, .. } => params.prefix_cache_blocks,
                _ => 0,
            }),
            upstream,
            continuation,
        });
        Ok(())
    })?;
    Ok((deployments, deployment_by))
}

pub(super) fn names(regions: &[Region]) -> String {
    regions
        .iter()
        .map(|r| format!("{:?}", r.name))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::embedded::DEFAULT_TOML;
    use super::*;

    /// The embedded default with each `(from, to)` replaced once.
    fn default_with(edits: &[(&str, &str)]) -> String {
        let mut text = DEFAULT_TOML.to_string();
        for (from, to) in edits {
            assert!(text.contains(from), "{from:?} not in the default");
            text = text.replacen(from, to, 1);
        }
        text
    }

    fn keys(err: &ConfigError) -> Vec<String> {
        err.each()
            .into_iter()
            .map(|e| match e {
                ConfigError::Invalid { key, .. } => key.clone(),
                other => panic!("not a key error: {other}"),
            })
            .collect()
    }

    #[test]
    fn every_mistake_is_reported_at_once() {
        let text = default_with(&[
            // Two bad deployments in one list, a bad listener, a bad admin address, a bad
            // body limit: five sections' worth.
            (
                "region = \"us-east-2\"\nmax_in_flight = 16",
                "region = \"mars-1\"\nmax_in_flight = 16",
            ),
            ("max_in_flight = 16", "max_in_flight = 0"),
            ("bind = \"127.0.0.1:9090\"", "bind = \"not an address\""),
            ("max_body_bytes = 4194304", "max_body_bytes = 10"),
        ]);
        let err = Config::parse(&text, "spillway.toml").unwrap_err();
        let keys = keys(&err);
        assert_eq!(
            keys,
            [
                "deployments[0].max_in_flight",
                "deployments[1].region",
                "server.max_body_bytes",
                "admin.bind",
            ],
            "{err}"
        );
        let shown = err.to_string();
        // Each with the line of its key (the first deployment's `max_in_flight`).
        let line = text.lines().position(|l| l == "max_in_flight = 0").unwrap() + 1;
        assert!(
            shown.starts_with(&format!(
                "4 errors:\n  - spillway.toml:{line}: key `deployments[0]"
            )),
            "{shown}"
        );
        assert_eq!(shown.lines().count(), 5, "{shown}");
    }

    #[test]
    fn a_section_that_depends_on_a_failed_one_is_not_checked() {
        // A model id that is refused: deployments, profiles, tenants and prices that name it
        // would all fail too; only the model's own error is reported, with the other sections'.
        let text = default_with(&[
            (
                "id = \"demo.chat-small-v1:0\"",
                "id = \"us.chat-small-v1:0\"",
            ),
            ("max_body_bytes = 4194304", "max_body_bytes = 10"),
        ]);
        let err = Config::parse(&text, "spillway.toml").unwrap_err();
        assert_eq!(
            keys(&err),
            ["models[0].id", "server.max_body_bytes"],
            "{err}"
        );
    }

    #[test]
    fn one_mistake_is_one_plain_error() {
        let text = default_with(&[("max_body_bytes = 4194304", "max_body_bytes = 10")]);
        let err = Config::parse(&text, "spillway.toml").unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err:?}");
        assert!(Config::parse(DEFAULT_TOML, "default").is_ok());
    }
}
