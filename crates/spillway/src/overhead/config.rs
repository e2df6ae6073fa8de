//! The gateway configuration `bench overhead` runs: one region, one model, one tenant.
use super::{API_KEY, MODEL, REGION};

/// One region, one model served by an in-process simulator that takes no time and never
/// throttles (or the one at `sim_url`), one tenant without quotas (or with `quota_rpm`), and
/// `[state]` on `state` (`(url, key_prefix)`) if given.
pub fn gateway_config(
    quota_rpm: Option<u64>,
    sim_url: Option<&str>,
    state: Option<(&str, &str, f64)>,
) -> String {
    let hash: String = spillway_gateway::config::sha256(API_KEY.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let upstream = match sim_url {
        Some(url) => format!("{{ kind = \"sim\", base_url = \"{url}\" }}"),
        None => "{ kind = \"sim\", concurrency = 1000000, queue_limit = 1000000, \
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
        let cfg = Config::parse(&gateway_config(None, None, None), "<test>").unwrap();
        assert_eq!(cfg.deployments.len(), 1);
        assert_eq!(cfg.listeners.len(), 1);
        let toml = gateway_config(
            Some(120_000),
            Some("http://127.0.0.1:1/v1"),
            Some(("redis://127.0.0.1:1", "p", 0.005)),
        );
        let cfg = Config::parse(&toml, "<test>").unwrap();
        assert_eq!(cfg.tenants.len(), 1);
    }
}
