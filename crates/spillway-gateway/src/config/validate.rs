//! Raw → validated configuration. Every error names the file, the key and what was expected.
use std::collections::HashMap;
use std::time::Duration;

use sha2::{Digest, Sha256};
use spillway_core::{
    AimdConfig, DeploymentIx, HealthConfig, Policy, RegionIx, RetryBudgetConfig, RouterConfig,
};

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

    // Regions and geographies.
    if raw.regions.is_empty() {
        return Err(cx.err("regions", "expected at least one [[regions]] entry"));
    }
    let mut regions: Vec<Region> = Vec::new();
    for (i, r) in raw.regions.iter().enumerate() {
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
    let region_ix = |key: &str, name: &str| -> Result<RegionIx, ConfigError> {
        regions
            .iter()
            .position(|r| r.name == name)
            .map(|i| RegionIx(i as u16))
            .ok_or_else(|| {
                cx.err(
                    key,
                    format!(
                        "unknown region {name:?}; expected one of {}",
                        names(&regions)
                    ),
                )
            })
    };

    // Round-trip times: 1 ms inside a region, configured pairs, else 50 ms inside a geography and
    // 150 ms across.
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
    for (i, p) in raw.rtt.iter().enumerate() {
        let a = region_ix(&format!("rtt[{i}].between[0]"), &p.between[0])?;
        let b = region_ix(&format!("rtt[{i}].between[1]"), &p.between[1])?;
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

    // Models.
    let mut models = Vec::new();
    let mut model_by_id = HashMap::new();
    for (i, m) in raw.models.iter().enumerate() {
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
        if model_by_id.insert(m.id.clone(), models.len()).is_some() {
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
        models.push(Model {
            id: m.id.clone(),
            profile_only: m.profile_only,
            output_burndown: burndown,
            default_max_tokens: m.default_max_tokens.unwrap_or(1024).max(1),
        });
    }
    let model_ix = |key: &str, id: &str| -> Result<ModelIx, ConfigError> {
        model_by_id.get(id).copied().ok_or_else(|| {
            cx.err(
                key,
                format!("unknown model {id:?}; expected one of the [[models]] ids"),
            )
        })
    };

    // Deployments.
    let mut deployments = Vec::new();
    let mut deployment_by = HashMap::new();
    for (i, d) in raw.deployments.iter().enumerate() {
        let key = format!("deployments[{i}]");
        let model = model_ix(&format!("{key}.model"), &d.model)?;
        let region = region_ix(&format!("{key}.region"), &d.region)?;
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
            &cx,
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

    let profiles = super::profiles::derive(
        file,
        &raw.profiles,
        &regions,
        &rtt,
        &models,
        &model_by_id,
        &deployment_by,
    )?;
    let mut profile_by_id = HashMap::new();
    for (i, p) in profiles.iter().enumerate() {
        profile_by_id.insert(p.id.clone(), i);
    }

    let region_lookup = |key: &str, name: &str| region_ix(key, name);
    let model_lookup = |key: &str, id: &str| model_ix(key, id);
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
    let audit = match raw.audit.sink.as_deref() {
        None | Some("off") => AuditSink::Off,
        Some("stdout") => AuditSink::Stdout,
        Some("") => return Err(cx.err("audit.sink", "expected \"stdout\", \"off\" or a file path")),
        Some(path) => AuditSink::File(path.into()),
    };

    // Listeners.
    if raw.listeners.is_empty() {
        return Err(cx.err(
            "listeners",
            "expected at least one [[listeners]] entry (bind + region)",
        ));
    }
    let mut listeners: Vec<Listener> = Vec::new();
    for (i, l) in raw.listeners.iter().enumerate() {
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
        let region = region_ix(&format!("{key}.region"), &l.region)?;
        listeners.push(Listener { bind, region });
    }

    let state = super::state::state(&cx, &raw.state)?;

    let r = &raw.routing;
    let max_attempts = r.max_attempts.unwrap_or(3);
    if !(1..=10).contains(&max_attempts) {
        return Err(cx.err(
            "routing.max_attempts",
            format!("expected 1 to 10, got {max_attempts}"),
        ));
    }
    let ms = |key: &str, v: Option<u64>, default: u64| -> Result<Duration, ConfigError> {
        match v.unwrap_or(default) {
            0 => Err(cx.err(
                format!("routing.{key}"),
                "expected a positive number of milliseconds",
            )),
            v => Ok(Duration::from_millis(v)),
        }
    };
    let ratio = r.retry_budget_ratio.unwrap_or(0.2);
    let min_per_sec = r.retry_min_per_sec.unwrap_or(10.0);
    if !(ratio.is_finite() && (0.0..=10.0).contains(&ratio)) {
        return Err(cx.err(
            "routing.retry_budget_ratio",
            format!("expected 0 to 10, got {ratio}"),
        ));
    }
    if !(min_per_sec.is_finite() && min_per_sec >= 0.0) {
        return Err(cx.err(
            "routing.retry_min_per_sec",
            format!("expected a non-negative rate, got {min_per_sec}"),
        ));
    }
    let source_queue = r.source_queue.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&source_queue) {
        return Err(cx.err(
            "routing.source_queue",
            format!("expected 0 to 1 (a fraction of the in-flight limit), got {source_queue}"),
        ));
    }
    let source_wait = r.source_wait.unwrap_or(0.2);
    if !(0.0..=1.0).contains(&source_wait) {
        return Err(cx.err(
            "routing.source_wait",
            format!("expected 0 to 1 (a fraction of the in-flight limit), got {source_wait}"),
        ));
    }
    let source_wait_ttft = r.source_wait_ttft.unwrap_or(1.5);
    if source_wait_ttft.is_nan() || source_wait_ttft <= 0.0 {
        return Err(cx.err(
            "routing.source_wait_ttft",
            format!(
                "expected a positive multiple of the source's mean TTFT, got {source_wait_ttft}"
            ),
        ));
    }
    let base_ejection = ms("base_ejection_ms", r.base_ejection_ms, 1000)?;
    let max_ejection = ms("max_ejection_ms", r.max_ejection_ms, 30_000)?;
    if max_ejection < base_ejection {
        return Err(cx.err(
            "routing.max_ejection_ms",
            "expected at least routing.base_ejection_ms",
        ));
    }
    let policy = match r.policy.as_deref() {
        None | Some("spillway") => Policy::Spillway,
        Some("round-robin") => Policy::RoundRobin,
        Some("least-loaded") => Policy::LeastLoaded,
        Some(other) => {
            return Err(cx.err(
                "routing.policy",
                format!(
                    "expected \"spillway\", \"round-robin\" or \"least-loaded\", got {other:?}"
                ),
            ));
        }
    };
    let router = RouterConfig {
        policy,
        max_attempts,
        health: HealthConfig {
            failure_threshold: r.failure_threshold.unwrap_or(3).max(1),
            base_ejection,
            max_ejection,
        },
        aimd: AimdConfig {
            min_limit: 1,
            decrease_factor: 0.75,
        },
        retry_budget: RetryBudgetConfig {
            ratio,
            min_per_sec,
            max_balance: (min_per_sec * 10.0).max(10.0),
        },
        source_queue,
        source_wait,
        source_wait_ttft,
        ..RouterConfig::default()
    };
    let timeouts = Timeouts {
        connect: ms("connect_timeout_ms", r.connect_timeout_ms, 2_000)?,
        first_byte: ms("first_byte_timeout_ms", r.first_byte_timeout_ms, 30_000)?,
        request: ms("request_timeout_ms", r.request_timeout_ms, 600_000)?,
    };
    let max_body_bytes = raw.server.max_body_bytes.unwrap_or(4 * 1024 * 1024);
    if max_body_bytes < 1024 {
        return Err(cx.err(
            "server.max_body_bytes",
            format!("expected at least 1024 bytes, got {max_body_bytes}"),
        ));
    }

    Ok(Config {
        source_name: file.to_string(),
        max_body_bytes,
        shutdown_grace: Duration::from_secs(raw.server.shutdown_grace_secs.unwrap_or(30)),
        router,
        timeouts,
        seed: r.seed.unwrap_or(0x5eed_5b11_1a7e),
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

pub(super) fn names(regions: &[Region]) -> String {
    regions
        .iter()
        .map(|r| format!("{:?}", r.name))
        .collect::<Vec<_>>()
        .join(", ")
}
