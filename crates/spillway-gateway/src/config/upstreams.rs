//! Validation of a deployment's `upstream` table: one function per `kind`.
use std::time::Duration;

use super::raw::{
    ContinuationForm, RawBedrockUpstream, RawOpenAiUpstream, RawSimUpstream, RawUpstream,
};
use super::validate::Ctx;
use super::{
    BedrockCredentials, ConfigError, Deployment, Model, Secret, SimParams, Upstream, UpstreamAuth,
};

/// An embedding model's deployment needs an OpenAI-compatible upstream (or a simulator):
/// Bedrock's Converse, which Spillway speaks to Bedrock upstreams, does not serve embeddings.
pub(super) fn serves_kind(
    cx: &Ctx<'_>,
    key: &str,
    u: &Upstream,
    kind: super::raw::ModelKind,
) -> Result<(), ConfigError> {
    match (kind, u) {
        (super::raw::ModelKind::Embedding, Upstream::Bedrock { .. }) => Err(cx.err(
            format!("{key}.upstream.kind"),
            "an embedding model cannot have a bedrock upstream: Spillway reaches Bedrock through Converse, which does not serve embeddings; use an openai or sim upstream",
        )),
        _ => Ok(()),
    }
}

/// A deployment's continuation form: as configured (`continue_final_message` makes no sense
/// for Bedrock, which takes a prefill), else `continue_final_message` for a simulator (it
/// implements it), else none.
pub(super) fn continuation(
    cx: &Ctx<'_>,
    key: &str,
    form: Option<ContinuationForm>,
    u: &RawUpstream,
) -> Result<Option<ContinuationForm>, ConfigError> {
    match (form, u) {
        (Some(ContinuationForm::ContinueFinalMessage), RawUpstream::Bedrock(_)) => Err(cx.err(
            format!("{key}.continuation"),
            "a bedrock upstream continues an answer by assistant prefill; expected \"assistant_prefill\" or no key",
        )),
        (Some(f), _) => Ok(Some(f)),
        (None, RawUpstream::Sim(_)) => Ok(Some(ContinuationForm::ContinueFinalMessage)),
        (None, _) => Ok(None),
    }
}

/// A model with `midstream_failover` needs a deployment that can be sent a continuation.
pub(super) fn continuable(
    cx: &Ctx<'_>,
    models: &[Model],
    deployments: &[Deployment],
) -> Result<(), ConfigError> {
    for (i, m) in models.iter().enumerate() {
        let accepts = deployments
            .iter()
            .any(|d| d.model.ix() == i && d.continuation.is_some());
        if m.midstream_failover && !accepts {
            return Err(cx.err(
                format!("models[{i}].midstream_failover"),
                format!(
                    "no deployment of {:?} accepts a continuation; set `continuation` on its deployments (\"continue_final_message\" for vLLM, \"assistant_prefill\" for Bedrock) or turn this off",
                    m.id
                ),
            ));
        }
    }
    Ok(())
}

pub(super) fn upstream(
    cx: &Ctx<'_>,
    key: &str,
    u: &RawUpstream,
    model_id: &str,
    region: &str,
) -> Result<Upstream, ConfigError> {
    match u {
        RawUpstream::Openai(o) => openai(cx, key, o, model_id),
        RawUpstream::Bedrock(b) => bedrock(cx, key, b, model_id, region),
        RawUpstream::Sim(s) => sim(cx, key, s),
    }
}

fn openai(
    cx: &Ctx<'_>,
    key: &str,
    o: &RawOpenAiUpstream,
    model_id: &str,
) -> Result<Upstream, ConfigError> {
    if !(o.base_url.starts_with("http://") || o.base_url.starts_with("https://")) {
        return Err(cx.err(
            format!("{key}.base_url"),
            format!("expected an http:// or https:// URL, got {:?}", o.base_url),
        ));
    }
    if o.base_url.contains(['?', '#']) {
        // The API path is appended to base_url: a query string would end up before it.
        return Err(cx.err(
            format!("{key}.base_url"),
            format!(
                "a query string or fragment cannot be kept ({:?}): the gateway appends the API path (/chat/completions, /embeddings) to base_url; for Azure OpenAI use its v1 API, base_url = \"https://<resource>.openai.azure.com/openai/v1\" with auth = \"api-key\"",
                o.base_url
            ),
        ));
    }
    let auth = match o.auth.as_deref() {
        None | Some("bearer") => UpstreamAuth::Bearer,
        Some("api-key") => UpstreamAuth::ApiKeyHeader,
        Some(other) => {
            return Err(cx.err(
                format!("{key}.auth"),
                format!("expected \"bearer\" or \"api-key\", got {other:?}"),
            ));
        }
    };
    let api_key = match &o.api_key_env {
        None => None,
        Some(var) => Some(
            std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    cx.err(
                        format!("{key}.api_key_env"),
                        format!("environment variable {var} is not set or empty"),
                    )
                })?,
        ),
    };
    Ok(Upstream::OpenAi {
        base_url: o.base_url.trim_end_matches('/').to_string(),
        model: o.model.clone().unwrap_or_else(|| model_id.to_string()),
        api_key: api_key.map(Secret),
        auth,
    })
}

fn bedrock(
    cx: &Ctx<'_>,
    key: &str,
    b: &RawBedrockUpstream,
    model_id: &str,
    region: &str,
) -> Result<Upstream, ConfigError> {
    let base_url = b
        .base_url
        .clone()
        .unwrap_or_else(|| format!("https://bedrock-runtime.{region}.amazonaws.com"));
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(cx.err(
            format!("{key}.base_url"),
            format!("expected an http:// or https:// URL, got {base_url:?}"),
        ));
    }
    let env = |k: &str,
               var: &Option<String>,
               default: &str,
               required: bool|
     -> Result<Option<String>, ConfigError> {
        let name = var.as_deref().unwrap_or(default);
        match std::env::var(name).ok().filter(|v| !v.is_empty()) {
            Some(v) => Ok(Some(v)),
            None if required => Err(cx.err(format!("{key}.{k}"), format!("environment variable {name} (the Bedrock upstream's credentials) is not set or empty"))),
            None => Ok(None),
        }
    };
    let access_key_id = env(
        "access_key_id_env",
        &b.access_key_id_env,
        "AWS_ACCESS_KEY_ID",
        true,
    )?
    .unwrap_or_default();
    let secret = env(
        "secret_access_key_env",
        &b.secret_access_key_env,
        "AWS_SECRET_ACCESS_KEY",
        true,
    )?
    .unwrap_or_default();
    let token = env(
        "session_token_env",
        &b.session_token_env,
        "AWS_SESSION_TOKEN",
        false,
    )?;
    Ok(Upstream::Bedrock {
        base_url: base_url.trim_end_matches('/').to_string(),
        model: b.model.clone().unwrap_or_else(|| model_id.to_string()),
        signing_region: b.region.clone().unwrap_or_else(|| region.to_string()),
        credentials: BedrockCredentials {
            access_key_id,
            secret_access_key: Secret(secret),
            session_token: token.map(Secret),
        },
    })
}

/// A simulator: an external `spillway sim` (`base_url`), or one the embedded stack starts with
/// these parameters (the simulator's defaults for what is not set).
fn sim(cx: &Ctx<'_>, key: &str, s: &RawSimUpstream) -> Result<Upstream, ConfigError> {
    if let Some(url) = &s.base_url
        && !url.starts_with("http://")
    {
        return Err(cx.err(
            format!("{key}.base_url"),
            format!("expected an http:// URL of a `spillway sim`, got {url:?}"),
        ));
    }
    let d = SimParams::default();
    let pos = |k: &str, v: Option<f64>, default: f64| -> Result<f64, ConfigError> {
        let v = v.unwrap_or(default);
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(cx.err(
                format!("{key}.{k}"),
                format!("expected a positive number, got {v}"),
            ))
        }
    };
    let rtt_ms = s.rtt_ms.unwrap_or(0.0);
    if !(rtt_ms.is_finite() && (0.0..10_000.0).contains(&rtt_ms)) {
        return Err(cx.err(
            format!("{key}.rtt_ms"),
            format!("expected 0 to 10000 ms, got {rtt_ms}"),
        ));
    }
    let params = SimParams {
        concurrency: s.concurrency.unwrap_or(d.concurrency).max(1),
        queue_limit: s.queue_limit.unwrap_or(d.queue_limit),
        prefill_tokens_per_sec: pos(
            "prefill_tokens_per_sec",
            s.prefill_tokens_per_sec,
            d.prefill_tokens_per_sec,
        )?,
        decode_tokens_per_sec: pos(
            "decode_tokens_per_sec",
            s.decode_tokens_per_sec,
            d.decode_tokens_per_sec,
        )?,
        rtt: Duration::from_secs_f64(rtt_ms / 1000.0),
        time_scale: pos("time_scale", s.time_scale, d.time_scale)?,
        text_seed: s.text_seed,
        prefix_cache_blocks: s.prefix_cache_blocks.unwrap_or(d.prefix_cache_blocks),
    };
    Ok(Upstream::Sim {
        base_url: s
            .base_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_string()),
        params,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod kind_tests {
    use super::super::Config;
    use super::super::embedded::DEFAULT_TOML;
    use super::*;

    #[test]
    fn an_embedding_model_on_a_bedrock_upstream_is_refused_at_load() {
        let from = "model = \"demo.embed-v1:0\"\nregion = \"us-east-1\"\nmax_in_flight = 16\nrpm = 6000\ntpm = 6000000\nupstream = { kind = \"sim\"";
        assert!(DEFAULT_TOML.contains(from));
        // PATH stands in for the credentials' environment variables: it is always set.
        let to = "model = \"demo.embed-v1:0\"\nregion = \"us-east-1\"\nmax_in_flight = 16\nrpm = 6000\ntpm = 6000000\nupstream = { kind = \"bedrock\", access_key_id_env = \"PATH\", secret_access_key_env = \"PATH\" }\n#";
        let text = DEFAULT_TOML.replacen(from, to, 1);
        let err = Config::parse(&text, "spillway.toml").unwrap_err();
        let ConfigError::Invalid { key, message, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(key, "deployments[12].upstream.kind", "{err}");
        assert!(message.contains("embeddings"), "{message}");
        let embed = Config::parse(DEFAULT_TOML, "d").unwrap();
        assert!(
            embed
                .models
                .iter()
                .any(|m| m.kind == super::super::raw::ModelKind::Embedding)
        );
    }

    #[test]
    fn a_sims_prefix_cache_is_configured_in_blocks_and_off_by_default() {
        let from = "upstream = { kind = \"sim\", concurrency = 16, queue_limit = 16,";
        assert!(DEFAULT_TOML.contains(from));
        let with = |to: &str| DEFAULT_TOML.replacen(from, to, 1);
        let blocks = |cfg: &Config| -> Vec<u64> {
            cfg.embedded_sims()
                .map(|(_, p)| p.prefix_cache_blocks)
                .collect()
        };
        let off = Config::parse(DEFAULT_TOML, "d").unwrap();
        assert!(blocks(&off).iter().all(|b| *b == 0));
        let on = Config::parse(
            &with("upstream = { kind = \"sim\", prefix_cache_blocks = 4096, concurrency = 16, queue_limit = 16,"),
            "d",
        )
        .unwrap();
        assert_eq!(blocks(&on).iter().filter(|b| **b == 4096).count(), 1);
        let typo = with(
            "upstream = { kind = \"sim\", prefix_cache_block = 1, concurrency = 16, queue_limit = 16,",
        );
        let err = Config::parse(&typo, "d").unwrap_err().to_string();
        assert!(err.contains("prefix_cache_block"), "{err}");
    }
}
