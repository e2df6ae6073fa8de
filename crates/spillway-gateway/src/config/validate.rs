//! Raw → validated configuration. Every error names the file, the key and what was expected.
//!
//! Sections are checked in dependency order (regions, round-trip times, models, deployments,
//! profiles, tenants, prices, audit, listeners, state, routing, server), each by its own
//! function, and the first error found is the one reported.
use std::collections::HashMap;
use std::time::Duration;

use sha2::{Digest, Sha256};
use spillway_core::{DeploymentIx, RegionIx};

use super::raw::*;
use super::*;

/// The documented key of the embedded default's demo tenant; refused on non-loopback listeners.
pub const DEMO_API_KEY: &str = "spillway-demo-key";
/// The documented SigV4 access key id of the embedded default's demo tenant; refused on
/// non-loopback listeners too.
pub const DEMO_ACCESS_KEY_ID: &str = "AKIASPILLWAYDEMO0001";

pub(super) struct Ctx<'a> {
    file: &'a str,
}

impl Ctx<'_> {
    pub(super) fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_string(),
            key: key.into(),
            message: message.into(),
        }
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Validate a raw configuration.
pub fn from_raw(raw: RawConfig, file: &str) -> Result<Config, ConfigError> {
    let cx = Ctx { file };
    let regions = regions(&cx, &raw.regions)?;
    let rtt = rtt(&cx, &regions, &raw.rtt)?;
    let (models, model_by_id) = models(&cx, &raw.models, &regions)?;
    let (deployments, deployment_by) =
        deployments(&cx, &raw.deployments, &regions, &models, &model_by_id)?;
    let profiles = super::profiles::derive(
        file,
        &raw.profiles,
        &regions,
        &rtt,
        &models,
        &model_by_id,
        &deployment_by,
    )?;
    let profile_by_id = profiles
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.clone(), ProfileIx::nth(i)))
        .collect();

    let region_lookup = |key: &str, name: &str| region_ix(&cx, &regions, key, name);
    let model_lookup = |key: &str, id: &str| model_ix(&cx, &model_by_id, key, id);
    let tenants::Tenants {
        tenants,
        tenant_by_key,
        tenant_by_access_key,
        demo_key_in_use,
    } = tenants::validate(
        &cx,
        &raw.tenants,
        regions.len(),
        &region_lookup,
        &model_lookup,
    )?;
    let prices = tenants::prices(&cx, &raw.prices, &region_lookup, &model_lookup)?;
    let audit = audit(&cx, &raw.audit)?;
    let listeners = listeners(&cx, &raw.listeners, &regions, demo_key_in_use)?;
    let state = super::state::state(&cx, &raw.state)?;
    let router = super::routing::router(&cx, &raw.routing)?;
    let timeouts = super::routing::timeouts(&cx, &raw.routing)?;
    let max_body_bytes = raw.server.max_body_bytes.unwrap_or(4 * 1024 * 1024);
    if max_body_bytes < 1024 {
        return Err(cx.err(
            "server.max_body_bytes",
            format!("expected at least 1024 bytes, got {max_body_bytes}"),
        ));
    }

    let edge = super::edge::limits(&cx, &raw.server)?;
    let admin = super::edge::admin(&cx, &raw.admin)?;

    Ok(Config {
        source_name: file.to_string(),
        max_body_bytes,
        edge,
        admin,
        shutdown_grace: Duration::from_secs(raw.server.shutdown_grace_secs.unwrap_or(30)),
        router,
        timeouts,
        seed: raw.routing.seed.unwrap_or(0x5eed_5b11_1a7e),
        state,
        regions,
        rtt,
        models,
        deployments,
        profiles,
        tenants,
        listeners,
        prices,
        audit,
        model_by_id,
        profile_by_id,
        deployment_by,
        tenant_by_key,
        tenant_by_access_key,
    })
}

/// `[[regions]]`: unique names, geographies usable as a profile prefix.
fn regions(cx: &Ctx<'_>, raw: &[RawRegion]) -> Result<Vec<Region>, ConfigError> {
    if raw.is_empty() {
        return Err(cx.err("regions", "expected at least one [[regions]] entry"));
    }
    let mut regions: Vec<Region> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
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
    }
    Ok(regions)
}

/// The index of region `name`, or an error at `key` listing the configured regions.
fn region_ix(
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
    for (i, p) in raw.iter().enumerate() {
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
    }
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
    for (i, m) in raw.iter().enumerate() {
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
        });
    }
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
    for (i, d) in raw.iter().enumerate() {
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
        let upstream = super::upstreams::upstream(
            cx,
            &format!("{key}.upstream"),
            &d.upstream,
            &models[model].id,
            &regions[region.0 as usize].name,
        )?;
        deployments.push(Deployment {
            model,
            region,
            max_in_flight: d.max_in_flight,
            rpm: d.rpm,
            tpm: d.tpm,
            upstream,
        });
    }
    Ok((deployments, deployment_by))
}

fn audit(cx: &Ctx<'_>, raw: &RawAudit) -> Result<AuditSink, ConfigError> {
    Ok(match raw.sink.as_deref() {
        None | Some("off") => AuditSink::Off,
        Some("stdout") => AuditSink::Stdout,
        Some("") => return Err(cx.err("audit.sink", "expected \"stdout\", \"off\" or a file path")),
        Some(path) => AuditSink::File(path.into()),
    })
}

/// `[[listeners]]`: distinct addresses, on loopback while the demo key is configured.
fn listeners(
    cx: &Ctx<'_>,
    raw: &[RawListener],
    regions: &[Region],
    demo_key_in_use: bool,
) -> Result<Vec<Listener>, ConfigError> {
    if raw.is_empty() {
        return Err(cx.err(
            "listeners",
            "expected at least one [[listeners]] entry (bind + region)",
        ));
    }
    let mut listeners: Vec<Listener> = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        let key = format!("listeners[{i}]");
        let bind: std::net::SocketAddr = l.bind.parse().map_err(|_| {
            cx.err(
                format!("{key}.bind"),
                format!(
                    "expected an address like \"127.0.0.1:8080\", got {:?}",
                    l.bind
                ),
            )
        })?;
        if bind.port() != 0 && listeners.iter().any(|x| x.bind == bind) {
            return Err(cx.err(
                format!("{key}.bind"),
                format!("{bind} is used by two listeners"),
            ));
        }
        if demo_key_in_use && !bind.ip().is_loopback() {
            return Err(cx.err(format!("{key}.bind"), format!("the documented demo key {DEMO_API_KEY:?} (or access key {DEMO_ACCESS_KEY_ID}) is configured, so every listener must be on loopback; remove that key to listen on {bind}")));
        }
        let region = region_ix(cx, regions, &format!("{key}.region"), &l.region)?;
        listeners.push(Listener { bind, region });
    }
    Ok(listeners)
}

pub(super) fn names(regions: &[Region]) -> String {
    regions
        .iter()
        .map(|r| format!("{:?}", r.name))
        .collect::<Vec<_>>()
        .join(", ")
}
