//! `[state]`: the embedded `memory` backend, or `redis` shared by several instances.
use super::raw::RawState;
use super::validate::Ctx;
use super::{ConfigError, RedisState, StateKind};

pub(super) fn state(cx: &Ctx<'_>, raw: &RawState) -> Result<StateKind, ConfigError> {
    match raw.kind.as_deref() {
        None | Some("memory") => {
            let stray = [
                ("url", raw.url.is_some()),
                ("url_env", raw.url_env.is_some()),
                ("instances", raw.instances.is_some()),
                ("lease_fraction", raw.lease_fraction.is_some()),
                ("key_prefix", raw.key_prefix.is_some()),
            ];
            if let Some((k, _)) = stray.iter().find(|(_, set)| *set) {
                return Err(cx.err(
                    format!("state.{k}"),
                    "only with kind = \"redis\" (the memory backend takes no options)",
                ));
            }
            Ok(StateKind::Memory)
        }
        Some("redis") => redis(cx, raw).map(StateKind::Redis),
        Some(other) => Err(cx.err(
            "state.kind",
            format!("expected \"memory\" or \"redis\", got {other:?}"),
        )),
    }
}

fn redis(cx: &Ctx<'_>, raw: &RawState) -> Result<RedisState, ConfigError> {
    let (key, url) = match (&raw.url, &raw.url_env) {
        (Some(url), None) => ("state.url", url.clone()),
        (None, Some(var)) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => ("state.url_env", v.trim().to_string()),
            _ => {
                return Err(cx.err(
                    "state.url_env",
                    format!("environment variable {var:?} is not set (expected a redis:// URL)"),
                ));
            }
        },
        (Some(_), Some(_)) => {
            return Err(cx.err("state.url", "give url or url_env, not both"));
        }
        (None, None) => {
            return Err(cx.err(
                "state.url",
                "kind = \"redis\" needs url = \"redis://host:port\" (or url_env)",
            ));
        }
    };
    if !(url.starts_with("redis://") || url.starts_with("valkey://")) {
        return Err(cx.err(
            key,
            "expected a redis://host:port URL (TLS rediss:// is not supported yet)",
        ));
    }
    if let Err(e) = redis::Client::open(url.as_str()) {
        return Err(cx.err(key, format!("not a usable Redis URL ({:?})", e.kind())));
    }
    let instances = raw.instances.unwrap_or(1);
    if !(1..=1000).contains(&instances) {
        return Err(cx.err(
            "state.instances",
            format!("expected 1 to 1000 gateway instances, got {instances}"),
        ));
    }
    let lease_fraction = raw.lease_fraction.unwrap_or(0.005);
    if !(lease_fraction.is_finite() && lease_fraction > 0.0 && lease_fraction <= 0.1) {
        return Err(cx.err(
            "state.lease_fraction",
            format!("expected a fraction in (0, 0.1], got {lease_fraction}"),
        ));
    }
    let key_prefix = raw.key_prefix.clone().unwrap_or_else(|| "spillway".into());
    if key_prefix.is_empty()
        || key_prefix
            .chars()
            .any(|c| c == '{' || c == '}' || c.is_whitespace() || c.is_control())
    {
        return Err(cx.err(
            "state.key_prefix",
            format!("expected a non-empty prefix without braces or spaces, got {key_prefix:?}"),
        ));
    }
    Ok(RedisState {
        url,
        instances,
        lease_fraction,
        key_prefix,
    })
}
