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
                ("urls", raw.urls.is_some()),
                ("cluster", raw.cluster.is_some()),
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
    let cluster = raw.cluster.unwrap_or(false);
    let (key, urls) = urls(cx, raw, cluster)?;
    let Some(first) = urls.first().cloned() else {
        return Err(cx.err(key, "expected at least one redis:// URL"));
    };
    for url in &urls {
        check_url(cx, key, url, cluster)?;
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
        url: first,
        cluster,
        urls,
        instances,
        lease_fraction,
        key_prefix,
    })
}

/// The Redis URLs (one of `url`, `urls` or `url_env`) and the key they came from.
fn urls(
    cx: &Ctx<'_>,
    raw: &RawState,
    cluster: bool,
) -> Result<(&'static str, Vec<String>), ConfigError> {
    match (&raw.url, &raw.urls, &raw.url_env) {
        (Some(url), None, None) => Ok(("state.url", vec![url.clone()])),
        (None, Some(urls), None) => {
            if !cluster {
                return Err(cx.err(
                    "state.urls",
                    "urls lists the seed nodes of a Redis Cluster: set cluster = true, or give one url",
                ));
            }
            if urls.is_empty() {
                return Err(cx.err("state.urls", "expected at least one seed node URL"));
            }
            Ok(("state.urls", urls.clone()))
        }
        (None, None, Some(var)) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => {
                let urls: Vec<String> = v
                    .split(',')
                    .map(|u| u.trim().to_string())
                    .filter(|u| !u.is_empty())
                    .collect();
                if urls.len() > 1 && !cluster {
                    return Err(cx.err(
                        "state.url_env",
                        format!("{var:?} holds several URLs (the seed nodes of a Redis Cluster): set cluster = true, or give one URL"),
                    ));
                }
                Ok(("state.url_env", urls))
            }
            _ => Err(cx.err(
                "state.url_env",
                format!("environment variable {var:?} is not set (expected a redis:// URL)"),
            )),
        },
        (None, None, None) => Err(cx.err(
            "state.url",
            "kind = \"redis\" needs url = \"redis://host:port\" (or url_env, or with cluster = true urls = [seed nodes])",
        )),
        _ => Err(cx.err("state.url", "give one of url, urls or url_env")),
    }
}

/// One Redis URL: `redis://` or `valkey://`, parseable, database 0 on a cluster.
fn check_url(cx: &Ctx<'_>, key: &str, url: &str, cluster: bool) -> Result<(), ConfigError> {
    if !(url.starts_with("redis://") || url.starts_with("valkey://")) {
        return Err(cx.err(
            key,
            format!(
                "expected a redis://host:port URL, got {:?} (TLS rediss:// is not supported yet)",
                redact(url)
            ),
        ));
    }
    let info = match redis::IntoConnectionInfo::into_connection_info(url) {
        Ok(info) => info,
        Err(e) => {
            return Err(cx.err(key, format!("not a usable Redis URL ({:?})", e.kind())));
        }
    };
    if cluster && info.redis_settings().db() != 0 {
        return Err(cx.err(
            key,
            "a Redis Cluster has only database 0: drop the /db from the URL",
        ));
    }
    Ok(())
}

/// A URL for an error message: without its password.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    format!("{scheme}://{}", rest.rsplit('@').next().unwrap_or_default())
}
