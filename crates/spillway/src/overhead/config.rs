//! The gateway configuration `bench overhead` runs: one region, one model, one tenant.
use super::{API_KEY, MODEL, REGION};

/// The one deployment's upstream.
#[derive(Debug, Clone, Copy)]
pub enum UpstreamAt<'a> {
    /// An in-process simulator that takes no time and never throttles.
    Embedded,
    /// The simulator at this base URL.
    Sim(&'a str),
    /// An OpenAI-compatible server at this base URL (`…/v1`), without credentials.
    OpenAi(&'a str),
}

/// One region, one model served by `upstream`, one tenant without quotas (or with
/// `quota_rpm`), and `[state]` on `state` (`(url, key_prefix)`) if given.
pub fn gateway_config(
    quota_rpm: Option<u64>,
    upstream: UpstreamAt<'_>,
    state: Option<(&str, &str, f64)>,
) -> String {
    let hash: String = spillway_gateway::config::sha256(API_KEY.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let upstream = match upstream {
        UpstreamAt::Sim(url) => format!("{{ kind = \"sim\", base_url = \"{url}\" }}"),
        UpstreamAt::OpenAi(url) => {
            format!("{{ kind = \"openai\", base_url = \"{url}\", model = \"mock\" }}")
        }
        UpstreamAt::Embedded => "{ kind = \"sim\", concurrency = 1000000, queue_limit = 1000000, \
                 prefill_tokens_per_sec = 1e12, decode_tokens_per_sec = 1e12, time_scale = 1e6, rtt_ms = 0 }"
            .to_string(),
    };
    let state = state.map_or(String::new(), |(url, prefix, fraction)| {
        format!(
            "[state]\nkind = \"redis\"\nurl = {url:?}\nkey_prefix = {prefix:?}\nlease_fraction = {fraction}\n\n"
        )
    });
    let quota = quota_rpm.map_or(String::new(), |rpm| {
        format!("[[tenants.quotas]]\nmodel = \"{MODEL}\"\nrpm = {rpm}\n\n")
    });
    format!(
        "{state}[[regions]]\nname = \"{REGION}\"\ngeography = \"us\"\n\n\
         [[models]]\nid = \"{MODEL}\"\n\n\
         [[deployments]]\nmodel = \"{MODEL}\"\nregion = \"{REGION}\"\nmax_in_flight = 1000000\n\
         upstream = {upstream}\n\n\
         [[tenants]]\nname = \"bench\"\napi_keys = [{{ sha256 = \"{hash}\" }}]\n\n{quota}\
         [[listeners]]\nbind = \"127.0.0.1:0\"\nregion = \"{REGION}\"\n\n\
         [admin]\nbind = \"127.0.0.1:0\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_gateway::Config;

    #[test]
    fn the_config_is_valid() {
        let cfg =
            Config::parse(&gateway_config(None, UpstreamAt::Embedded, None), "<test>").unwrap();
        assert_eq!(cfg.deployments.len(), 1);
        assert_eq!(cfg.listeners.len(), 1);
        let toml = gateway_config(
            Some(120_000),
            UpstreamAt::Sim("http://127.0.0.1:1/v1"),
            Some(("redis://127.0.0.1:1", "p", 0.005)),
        );
        let cfg = Config::parse(&toml, "<test>").unwrap();
        assert_eq!(cfg.tenants.len(), 1);
        let toml = gateway_config(None, UpstreamAt::OpenAi("http://127.0.0.1:1/v1"), None);
        assert_eq!(Config::parse(&toml, "<test>").unwrap().deployments.len(), 1);
    }
}
