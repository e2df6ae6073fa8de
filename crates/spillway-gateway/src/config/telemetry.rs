//! `[telemetry]`: OpenTelemetry traces exported over OTLP/HTTP (protobuf), off by default.
//!
//! The collector's address comes from, in this order: the environment variable
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full traces URL, used as it is),
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL, `/v1/traces` appended), the file's `endpoint`
//! (a base URL too), else `http://localhost:4318`. The variables override the file so that one
//! configuration can be deployed next to a different collector in each environment; they never
//! turn telemetry on by themselves (`enabled = true` does).
use std::time::Duration;

use super::ConfigError;
use super::raw::RawTelemetry;
use super::validate::Ctx;

/// The collector's default OTLP/HTTP base URL.
const DEFAULT_ENDPOINT: &str = "http://localhost:4318";
/// The path of the traces signal under an OTLP/HTTP base URL.
const TRACES_PATH: &str = "/v1/traces";

/// The validated `[telemetry]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    pub enabled: bool,
    /// The URL spans are POSTed to (`…/v1/traces`).
    pub traces_url: String,
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// The fraction of traces started here that are exported (0 to 1); a request whose client
    /// sent a `traceparent` follows the client's sampled flag instead.
    pub sampling_ratio: f64,
    /// How long finished spans wait to be sent in one batch.
    pub export_interval: Duration,
    /// How long one export may take before it is given up.
    pub export_timeout: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            enabled: false,
            traces_url: format!("{DEFAULT_ENDPOINT}{TRACES_PATH}"),
            service_name: "spillway".into(),
            sampling_ratio: 1.0,
            export_interval: Duration::from_millis(5000),
            export_timeout: Duration::from_millis(10_000),
        }
    }
}

pub(super) fn telemetry(cx: &Ctx<'_>, raw: &RawTelemetry) -> Result<TelemetryConfig, ConfigError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    telemetry_with_env(cx, raw, env)
}

/// [`telemetry`] with the environment given (tests pass their own).
fn telemetry_with_env(
    cx: &Ctx<'_>,
    raw: &RawTelemetry,
    env: impl Fn(&str) -> Option<String>,
) -> Result<TelemetryConfig, ConfigError> {
    let defaults = TelemetryConfig::default();
    let mut errors = Vec::new();
    let traces_url = match traces_url(cx, raw, env) {
        Ok(url) => url,
        Err(e) => {
            errors.push(e);
            defaults.traces_url.clone()
        }
    };
    let service_name = raw.service_name.clone().unwrap_or(defaults.service_name);
    if service_name.trim().is_empty() || service_name.chars().any(char::is_control) {
        errors.push(cx.err(
            "telemetry.service_name",
            format!("expected a non-empty name without control characters, got {service_name:?}"),
        ));
    }
    let sampling_ratio = raw.sampling_ratio.unwrap_or(defaults.sampling_ratio);
    if !(sampling_ratio.is_finite() && (0.0..=1.0).contains(&sampling_ratio)) {
        errors.push(cx.err(
            "telemetry.sampling_ratio",
            format!("expected a fraction from 0 to 1, got {sampling_ratio}"),
        ));
    }
    let mut millis = |key: &str, value: Option<u64>, default: Duration, max: u64| {
        let ms = value.unwrap_or(default.as_millis() as u64);
        if !(1..=max).contains(&ms) {
            errors.push(cx.err(
                format!("telemetry.{key}"),
                format!("expected 1 to {max} milliseconds, got {ms}"),
            ));
        }
        Duration::from_millis(ms)
    };
    let export_interval = millis(
        "export_interval_ms",
        raw.export_interval_ms,
        defaults.export_interval,
        600_000,
    );
    let export_timeout = millis(
        "export_timeout_ms",
        raw.export_timeout_ms,
        defaults.export_timeout,
        120_000,
    );
    ConfigError::gather(errors)?;
    Ok(TelemetryConfig {
        enabled: raw.enabled.unwrap_or(false),
        traces_url,
        service_name,
        sampling_ratio,
        export_interval,
        export_timeout,
    })
}

/// The traces URL, from the environment or the file (see the module docs).
fn traces_url(
    cx: &Ctx<'_>,
    raw: &RawTelemetry,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let (key, url) = if let Some(full) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (environment)", full)
    } else if let Some(base) = env("OTEL_EXPORTER_OTLP_ENDPOINT") {
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT (environment)",
            with_traces_path(&base),
        )
    } else {
        let base = raw.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT);
        ("telemetry.endpoint", with_traces_path(base))
    };
    let authority = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    if authority.split('/').next().is_some_and(|a| a.contains('@')) {
        return Err(cx.err(
            key,
            "credentials in the URL are not supported (they would be logged); use a collector on a private network",
        ));
    }
    let uri: http::Uri = url.parse().map_err(|_| {
        cx.err(
            key,
            format!("expected an http:// or https:// URL like \"{DEFAULT_ENDPOINT}\", got {url:?}"),
        )
    })?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.host().is_none_or(str::is_empty) {
        return Err(cx.err(
            key,
            format!("expected an http:// or https:// URL with a host, like \"{DEFAULT_ENDPOINT}\", got {url:?}"),
        ));
    }
    Ok(url)
}

/// An OTLP/HTTP base URL's traces URL.
fn with_traces_path(base: &str) -> String {
    format!("{}{TRACES_PATH}", base.trim().trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: RawTelemetry, env: &[(&str, &str)]) -> Result<TelemetryConfig, ConfigError> {
        let cx = Ctx::for_tests("spillway.toml");
        let env = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        telemetry_with_env(&cx, &raw, env)
    }

    #[test]
    fn off_by_default_with_the_standard_collector_address() {
        let t = check(RawTelemetry::default(), &[]).expect("valid");
        assert!(!t.enabled);
        assert_eq!(t.traces_url, "http://localhost:4318/v1/traces");
        assert_eq!(t.service_name, "spillway");
        assert_eq!(t.sampling_ratio, 1.0);
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let raw = RawTelemetry {
            enabled: Some(true),
            endpoint: Some("http://file:4318/".into()),
            ..RawTelemetry::default()
        };
        let base = [("OTEL_EXPORTER_OTLP_ENDPOINT", "https://env:4318")];
        assert_eq!(
            check(raw.clone(), &base).expect("valid").traces_url,
            "https://env:4318/v1/traces"
        );
        let full = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://env:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:9/x"),
        ];
        assert_eq!(
            check(raw.clone(), &full).expect("valid").traces_url,
            "http://traces:9/x"
        );
        assert_eq!(
            check(raw, &[]).expect("valid").traces_url,
            "http://file:4318/v1/traces"
        );
    }

    #[test]
    fn every_mistake_is_reported_with_its_key() {
        let raw = RawTelemetry {
            enabled: Some(true),
            endpoint: Some("collector:4318".into()),
            service_name: Some(" ".into()),
            sampling_ratio: Some(1.5),
            export_interval_ms: Some(0),
            export_timeout_ms: None,
        };
        let e = check(raw, &[]).expect_err("invalid");
        let text = e.to_string();
        assert_eq!(e.each().len(), 4, "{text}");
        for key in [
            "key `telemetry.endpoint`",
            "key `telemetry.service_name`",
            "key `telemetry.sampling_ratio`: expected a fraction from 0 to 1, got 1.5",
            "key `telemetry.export_interval_ms`",
        ] {
            assert!(text.contains(key), "{key} missing from: {text}");
        }
        let bad_env = [("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://x")];
        let e = check(RawTelemetry::default(), &bad_env).expect_err("invalid");
        assert!(
            e.to_string()
                .contains("OTEL_EXPORTER_OTLP_ENDPOINT (environment)"),
            "{e}"
        );
    }

    #[test]
    fn credentials_in_the_url_are_refused_without_echoing_them() {
        let raw = RawTelemetry {
            endpoint: Some("http://user:hunter2@collector:4318".into()),
            ..RawTelemetry::default()
        };
        let e = check(raw, &[]).expect_err("invalid").to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
