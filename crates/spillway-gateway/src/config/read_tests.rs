//! Reading a file with several mistakes: each reported once, with its key path and line, and
//! nothing that only follows from another.
use super::super::embedded::DEFAULT_TOML;
use super::super::{Config, ConfigError};

/// Three regions, a model deployed in each, a tenant and a listener: valid as it is.
const BASE: &str = r#"
[[regions]]
name = "us-east-1"
geography = "us"

[[regions]]
name = "us-east-2"
geography = "us"

[[models]]
id = "demo.m-v1:0"

[[deployments]]
model = "demo.m-v1:0"
region = "us-east-1"
max_in_flight = 4
upstream = { kind = "sim" }

[[deployments]]
model = "demo.m-v1:0"
region = "us-east-2"
max_in_flight = 4
upstream = { kind = "sim" }

[[tenants]]
name = "t"
api_keys = [{ sha256 = "abababababababababababababababababababababababababababababababab" }]

[[listeners]]
bind = "127.0.0.1:0"
region = "us-east-1"
"#;

/// (key, line, message) of each error.
fn errors(text: &str) -> Vec<(String, Option<usize>, String)> {
    let err = match Config::parse(text, "t.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    };
    err.into_each()
        .into_iter()
        .map(|e| match e {
            ConfigError::Invalid {
                key, line, message, ..
            } => (key, line, message),
            ConfigError::Parse { line, message, .. } => (String::new(), line, message),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.trim() == needle).expect(needle) + 1
}

#[test]
fn three_mistakes_are_three_errors_with_key_line_and_why() {
    assert!(Config::parse(BASE, "t.toml").is_ok());
    let text = BASE
        .replacen(
            "name = \"us-east-2\"\ngeography = \"us\"",
            "name = \"us-east-2\"\ngeography = \"us\"\ntypo_field = 1",
            1,
        )
        .replacen("max_in_flight = 4", "max_in_flight = \"four\"", 1)
        .replacen(
            "bind = \"127.0.0.1:0\"\nregion = \"us-east-1\"",
            "bind = \"127.0.0.1:0\"\nregion = \"mars-1\"",
            1,
        );
    let got = errors(&text);
    assert_eq!(got.len(), 3, "{got:#?}");
    // In the file's order, validation's last.
    let (k, l, m) = &got[0];
    assert_eq!(k, "regions[1].typo_field");
    assert_eq!(*l, Some(line_of(&text, "typo_field = 1")));
    assert!(m.contains("unknown field `typo_field`"), "{m}");
    let (k, l, m) = &got[1];
    assert_eq!(k, "deployments[0].max_in_flight");
    assert_eq!(*l, Some(line_of(&text, "max_in_flight = \"four\"")));
    assert!(m.contains("invalid type") && m.contains("\"four\""), "{m}");
    let (k, l, m) = &got[2];
    assert_eq!(k, "listeners[0].region");
    assert_eq!(*l, Some(line_of(&text, "region = \"mars-1\"")));
    assert!(m.contains("unknown region \"mars-1\""), "{m}");
    let shown = Config::parse(&text, "t.toml").unwrap_err().to_string();
    assert!(shown.starts_with("3 errors:\n  - t.toml:"), "{shown}");
}

#[test]
fn a_region_that_cannot_be_read_is_not_reported_again_by_what_names_it() {
    // us-east-2 is left out; the deployment and listener naming it are not "unknown region".
    let text = BASE
        .replacen(
            "name = \"us-east-2\"\ngeography = \"us\"",
            "name = \"us-east-2\"\ngeography = 2",
            1,
        )
        .replacen(
            "bind = \"127.0.0.1:0\"\nregion = \"us-east-1\"",
            "bind = \"127.0.0.1:0\"\nregion = \"us-east-2\"",
            1,
        );
    let got = errors(&text);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].0, "regions[1].geography");
}

#[test]
fn every_bad_key_of_one_entry_is_reported_and_a_misspelling_once() {
    // A misspelt required key: "unknown field" only, not also "missing field geography".
    // A wrong type and an unknown key in one deployment: both. A mistyped upstream key.
    let text = BASE
        .replacen("geography = \"us\"", "geograpy = \"us\"", 1)
        .replacen("max_in_flight = 4", "max_in_flight = -1\nrpmm = 3", 1)
        .replacen(
            "upstream = { kind = \"sim\" }",
            "upstream = { kind = \"sim\", concurency = 2 }",
            2,
        );
    let got = errors(&text);
    let keys: Vec<&str> = got.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "regions[0].geograpy",
            "deployments[0].max_in_flight",
            "deployments[0].rpmm",
            "deployments[0].upstream.concurency",
            "deployments[1].upstream.concurency",
        ],
        "{got:#?}"
    );
}

#[test]
fn validation_errors_keep_the_files_indices_after_an_entry_is_left_out() {
    // deployments[0] cannot be read; deployments[1]'s own mistake keeps its index and line.
    let text = BASE
        .replacen("max_in_flight = 4", "max_in_flight = true", 1)
        .replacen("max_in_flight = 4", "max_in_flight = 0", 1);
    let got = errors(&text);
    let keys: Vec<&str> = got.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "deployments[0].max_in_flight",
            "deployments[1].max_in_flight"
        ],
        "{got:#?}"
    );
    assert_eq!(got[1].1, Some(line_of(&text, "max_in_flight = 0")));
}

#[test]
fn unknown_tables_and_syntax_errors_name_their_line() {
    let text = format!("{DEFAULT_TOML}\n[telemtry]\nendpoint = \"x\"\n");
    let got = errors(&text);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].0, "telemtry");
    assert_eq!(got[0].1, Some(line_of(&text, "[telemtry]")), "{got:#?}");
    assert!(got[0].2.contains("unknown field `telemtry`"), "{got:#?}");
    let got = errors("[server]\nmax_body_bytes = = 3\n");
    assert_eq!(got[0].1, Some(2), "{got:#?}");
}

#[test]
fn an_openai_base_url_with_a_query_string_is_refused() {
    let text = BASE.replacen(
        "upstream = { kind = \"sim\" }",
        "upstream = { kind = \"openai\", base_url = \"https://r.openai.azure.com/openai/deployments/d?api-version=2024-10-21\" }",
        1,
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].0, "deployments[0].upstream.base_url");
    assert!(errs[0].2.contains("query string"), "{errs:?}");
}

#[test]
fn midstream_failover_needs_a_deployment_that_takes_a_continuation() {
    // Sim upstreams take one by default; stated or not, the base config is valid with it on.
    let on = BASE.replacen(
        "id = \"demo.m-v1:0\"",
        "id = \"demo.m-v1:0\"\nmidstream_failover = true",
        1,
    );
    let cfg = Config::parse(&on, "t.toml").expect("valid");
    assert!(cfg.models[0].midstream_failover);
    assert!(cfg.deployments.iter().all(|d| d.continuation.is_some()));
    // An OpenAI-compatible upstream takes none unless it is configured.
    let openai = on.replace(
        "upstream = { kind = \"sim\" }",
        "upstream = { kind = \"openai\", base_url = \"http://127.0.0.1:9/v1\" }",
    );
    let got = errors(&openai);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].0, "models[0].midstream_failover");
    assert!(got[0].2.contains("continuation"), "{}", got[0].2);
    let stated = openai.replacen(
        "max_in_flight = 4\nupstream",
        "max_in_flight = 4\ncontinuation = \"continue_final_message\"\nupstream",
        1,
    );
    assert!(Config::parse(&stated, "t.toml").is_ok());
    // Bedrock continues by prefill only.
    let bedrock = on.replacen(
        "upstream = { kind = \"sim\" }",
        "continuation = \"continue_final_message\"\nupstream = { kind = \"bedrock\" }",
        1,
    );
    let got = errors(&bedrock);
    assert!(
        got.iter()
            .any(|(k, _, m)| k == "deployments[0].continuation" && m.contains("prefill")),
        "{got:#?}"
    );
}

#[test]
fn cache_affinity_and_prefix_caches_are_read() {
    use spillway_core::CacheAffinity;
    use std::time::Duration;
    let cfg = Config::parse(BASE, "t.toml").expect("valid");
    assert_eq!(cfg.models[0].cache_affinity, CacheAffinity::PreferSource);
    assert!(cfg.deployments.iter().all(|d| d.prefix_cache_blocks == 0));
    assert_eq!(cfg.prefix_cache_ttl, Duration::from_secs(600));
    // A sim upstream's cache is the deployment's by default; a stated one wins.
    let text =
        BASE.replacen(
            "id = \"demo.m-v1:0\"",
            "id = \"demo.m-v1:0\"\ncache_affinity = \"on\"",
            1,
        )
        .replacen(
            "upstream = { kind = \"sim\" }",
            "upstream = { kind = \"sim\", prefix_cache_blocks = 64 }",
            1,
        )
        .replacen(
            "max_in_flight = 4\nupstream = { kind = \"sim\" }",
            "max_in_flight = 4\nprefix_cache_blocks = 9\nupstream = { kind = \"sim\" }",
            1,
        ) + "\n[routing]\nprefix_cache_ttl_secs = 30\n";
    let cfg = Config::parse(&text, "t.toml").expect("valid");
    assert_eq!(cfg.models[0].cache_affinity, CacheAffinity::On);
    let blocks: Vec<u64> = cfg
        .deployments
        .iter()
        .map(|d| d.prefix_cache_blocks)
        .collect();
    assert_eq!(blocks, [64, 9]);
    assert_eq!(cfg.prefix_cache_ttl, Duration::from_secs(30));
    // An unknown affinity is an error naming the key.
    let bad = BASE.replacen(
        "id = \"demo.m-v1:0\"",
        "id = \"demo.m-v1:0\"\ncache_affinity = \"always\"",
        1,
    );
    let got = errors(&bad);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].2.contains("prefer-source"), "{got:#?}");
}
