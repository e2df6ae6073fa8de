//! Faults switched on the simulators during the soak, in turns: each fault in one US region for
//! a turn, then a healthy turn, then the next fault, round and round until the load stops;
//! then every simulator is healthy again. A fault is set with the simulator's own admin route
//! (`POST /admin/fault`), so the same code drives simulators in this process and elsewhere.
use serde::Serialize;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// A simulator whose faults can be switched: its region and `http://host:port`.
#[derive(Debug, Clone)]
pub struct SimTarget {
    pub region: String,
    pub root: String,
}

/// One fault turn as it was run.
#[derive(Debug, Clone, Serialize)]
pub struct TurnRecord {
    /// Seconds since the load started.
    pub at_secs: f64,
    pub fault: &'static str,
    pub region: &'static str,
    /// Simulators it was set on, and on how many setting it failed.
    pub sims: usize,
    pub set_failed: usize,
}

/// The faults, in order: name, region, the simulator's fault object.
fn turns() -> [(&'static str, &'static str, Value); 5] {
    [
        ("region outage", "us-east-1", json!({"outage": true})),
        (
            "429 storm",
            "us-east-2",
            json!({"throttle": true, "throttle_retry_after_ms": 1000}),
        ),
        ("brown-out x4", "us-west-2", json!({"slow_factor": 4.0})),
        ("50% errors", "us-east-1", json!({"error_rate": 0.5})),
        (
            "mid-stream break",
            "us-east-2",
            json!({"break_after_tokens": 5}),
        ),
    ]
}

/// The simulator root of a base URL (`http://host:port/v1` → `http://host:port`).
pub fn root(base_url: &str) -> String {
    base_url
        .trim_end_matches('/')
        .trim_end_matches("/v1")
        .to_string()
}

/// The region a simulator at `root` says it is (its `x-sim-region` header).
pub async fn region_of(http: &reqwest::Client, root: &str) -> anyhow::Result<String> {
    let resp = http.get(format!("{root}/healthz")).send().await?;
    let region = resp
        .headers()
        .get(spillway_sim::REGION_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| anyhow::anyhow!("{root} sent no {} header", spillway_sim::REGION_HEADER))?;
    Ok(region.to_string())
}

/// Sets `fault` on every simulator of `region` (all of them with `None`); how many failed.
async fn set(
    http: &reqwest::Client,
    sims: &[SimTarget],
    region: Option<&str>,
    fault: &Value,
) -> (usize, usize) {
    let mut failed = 0;
    let mut n = 0;
    for s in sims.iter().filter(|s| region.is_none_or(|r| s.region == r)) {
        n += 1;
        let ok = http
            .post(format!("{}/admin/fault", s.root))
            .json(fault)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if !ok {
            failed += 1;
        }
    }
    (n, failed)
}

/// Runs the turns of `turn` each until `stop`, then clears every fault.
pub async fn run(
    sims: Vec<SimTarget>,
    turn: Duration,
    started: Instant,
    mut stop: watch::Receiver<bool>,
) -> Vec<TurnRecord> {
    let http = reqwest::Client::new();
    let mut done = Vec::new();
    let healthy = json!({});
    'outer: loop {
        for (name, region, fault) in turns() {
            let (sims_n, set_failed) = set(&http, &sims, Some(region), &fault).await;
            done.push(TurnRecord {
                at_secs: started.elapsed().as_secs_f64(),
                fault: name,
                region,
                sims: sims_n,
                set_failed,
            });
            let stopped = tokio::select! {
                _ = tokio::time::sleep(turn) => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            set(&http, &sims, Some(region), &healthy).await;
            if stopped {
                break 'outer;
            }
            tokio::select! {
                _ = tokio::time::sleep(turn) => {}
                _ = stop.wait_for(|s| *s) => break 'outer,
            }
        }
    }
    set(&http, &sims, None, &healthy).await;
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_is_one_the_simulator_takes() {
        for (name, _, f) in turns() {
            let fault: spillway_sim::Fault = serde_json::from_value(f).expect(name);
            assert!(fault.validate().is_ok(), "{name}");
            assert_ne!(fault, spillway_sim::Fault::default(), "{name}");
        }
        assert_eq!(root("http://127.0.0.1:9/v1/"), "http://127.0.0.1:9");
    }
}
