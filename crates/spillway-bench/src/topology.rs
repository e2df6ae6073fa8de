//! The simulated world of `spillway bench --self-contained` (and `--peer`): its regions, the
//! round-trip times between them, the simulators' speeds, and the names of Spillway's tunable
//! trades a bench variant may set. Kept here, in one place, so that anything that models the same
//! world (the bench's own topology, the virtual-time `policy_replay` example) stays in step.

/// Regions: name, geography. The first [`SOURCES`] are the sources; the rest must stay idle.
pub const REGIONS: [(&str, &str); 5] = [
    ("us-east-1", "us"),
    ("us-east-2", "us"),
    ("us-west-2", "us"),
    ("eu-west-1", "eu"),
    ("eu-central-1", "eu"),
];
/// How many of [`REGIONS`] send requests.
pub const SOURCES: usize = 3;
/// DESIGN §7's round-trip times (ms), each pair once.
pub const RTT_MS: [(&str, &str, f64); 5] = [
    ("us-east-1", "us-east-2", 12.0),
    ("us-east-2", "us-west-2", 50.0),
    ("us-east-1", "us-west-2", 70.0),
    ("eu-central-1", "eu-west-1", 20.0),
    ("us-east-1", "eu-west-1", 80.0),
];
/// The round trip within a region (ms).
pub const LOCAL_RTT_MS: f64 = 1.0;
/// The simulators' prefill speed (input tokens per second).
pub const PREFILL_TPS: f64 = 4000.0;
/// The simulators' decode speed per sequence (output tokens per second).
pub const DECODE_TPS: f64 = 50.0;

/// The round trip between two regions (ms): [`LOCAL_RTT_MS`] within one, [`RTT_MS`] either way
/// between two, `None` for a pair it does not list.
pub fn rtt_ms(a: &str, b: &str) -> Option<f64> {
    if a == b {
        return Some(LOCAL_RTT_MS);
    }
    RTT_MS
        .iter()
        .find(|(x, y, _)| (*x == a && *y == b) || (*x == b && *y == a))
        .map(|(_, _, ms)| *ms)
}

/// The `[routing]` keys a variant named `spillway:KEY=VALUE:…` may set.
pub const VARIANT_KEYS: [&str; 6] = [
    "source_wait",
    "source_wait_ttft",
    "source_queue",
    "cache_min_locality",
    "spill_reserve",
    "tail_budget",
];

/// The keys of [`VARIANT_KEYS`] whose `[routing]` value is a whole number of slots.
pub const WHOLE_KEYS: [&str; 1] = ["spill_reserve"];

/// A variant's value as its `[routing]` line writes it: a whole-number key's value without a
/// fraction when it has none (`1`, not `1.0`, which TOML would not read as an integer); any
/// other value as a float, for the configuration's validation to judge.
pub fn toml_value(key: &str, value: f64) -> String {
    let whole = value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15;
    if WHOLE_KEYS.contains(&key) && whole {
        format!("{}", value as i64)
    } else {
        format!("{value:?}")
    }
}

/// The settings of a variant's `KEY=VALUE:…` part, in order: each key one of
/// [`VARIANT_KEYS`], each value a number (infinity allowed, NaN not). Whether a value is in
/// range is the configuration's own validation to judge.
pub fn parse_variant(options: &str) -> Result<Vec<(&'static str, f64)>, String> {
    options
        .split(':')
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("{kv:?} is not KEY=VALUE"))?;
            let key = VARIANT_KEYS
                .into_iter()
                .find(|known| *known == k)
                .ok_or_else(|| {
                    format!(
                        "unknown option {k:?} (expected one of {})",
                        VARIANT_KEYS.join(", ")
                    )
                })?;
            let value: f64 = v
                .parse()
                .ok()
                .filter(|x: &f64| !x.is_nan())
                .ok_or_else(|| format!("{k}: {v:?} is not a number"))?;
            Ok((key, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtts_are_symmetric_and_local_is_short() {
        assert_eq!(rtt_ms("us-west-2", "us-east-1"), Some(70.0));
        assert_eq!(rtt_ms("us-east-1", "us-west-2"), Some(70.0));
        assert_eq!(rtt_ms("us-east-2", "us-east-2"), Some(LOCAL_RTT_MS));
        assert_eq!(rtt_ms("us-east-2", "eu-central-1"), None);
    }

    #[test]
    fn variants_parse_known_keys_and_numbers_only() {
        assert_eq!(
            parse_variant("source_wait=0.3:source_wait_ttft=inf"),
            Ok(vec![
                ("source_wait", 0.3),
                ("source_wait_ttft", f64::INFINITY)
            ])
        );
        assert_eq!(
            parse_variant("spill_reserve=1"),
            Ok(vec![("spill_reserve", 1.0)])
        );
        assert_eq!(toml_value("spill_reserve", 1.0), "1");
        assert_eq!(toml_value("spill_reserve", 1.5), "1.5");
        assert_eq!(toml_value("spill_reserve", -2.0), "-2");
        assert_eq!(toml_value("source_wait", 1.0), "1.0");
        assert_eq!(toml_value("source_wait_ttft", f64::INFINITY), "inf");
        for bad in [
            "max_attempts=2",
            "source_wait",
            "source_wait=x",
            "source_wait=NaN",
        ] {
            assert!(parse_variant(bad).is_err(), "{bad}");
        }
    }
}
