//! Settlement, read from the gateway's own books: the audit log and the tenant's quota.
//!
//! * **Exactly once.** `drive::finish::end` is the one place a request ends: the same call
//!   settles the tenant's reservation and writes the request's one audit line. So one audit line
//!   per request id (never none, never two) is one settlement per request, and its
//!   `inputTokens + outputTokens` are the tokens it settled to (0 when the reservation was
//!   cancelled in full).
//! * **Nothing left held.** After the load, the tenant's quota must have room for its whole
//!   capacity minus the tokens those lines say were used: a reservation never settled would still
//!   hold its estimate (`prompt + max_tokens × output_burndown`). The probe reserves that much
//!   through `AppState::reserve` (the memory or the Redis book alike) and cancels it. Refill only
//!   adds room, so the probe never fails a correct gateway; a leaked reservation is seen as long
//!   as the quota has not refilled it since (a test sizes its quota so that a reservation takes
//!   several seconds to refill).
//!
//! Included next to `common` with `#[path = "common/ledger.rs"] mod ledger;`.
#![allow(dead_code)]
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use spillway_core::RegionIx;
use spillway_gateway::config::TenantIx;
use spillway_gateway::state::AppState;
use spillway_gateway::state::quota_book::QuotaKey;

use crate::common::DEADLINE;

/// An audit log file of one test (`[audit] sink = <path>`), removed on drop.
pub struct AuditFile {
    path: PathBuf,
}

impl AuditFile {
    pub fn new(name: &str) -> AuditFile {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "spillway-ledger-{name}-{}-{nanos}.jsonl",
            std::process::id()
        ));
        AuditFile { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every line written so far, parsed.
    pub fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l}: {e}")))
            .collect()
    }

    /// Waits (bounded) until every id has its line; asserts each has exactly one, and that no
    /// line names a request that is not in `ids`. Returns the lines by request id.
    pub async fn exactly_once(&self, ids: &[String]) -> HashMap<String, Value> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let lines = self.lines();
            let mut by_id: HashMap<String, Vec<Value>> = HashMap::new();
            for l in lines {
                let id = l["requestId"].as_str().unwrap_or_default().to_string();
                by_id.entry(id).or_default().push(l);
            }
            if ids.iter().all(|id| by_id.contains_key(id)) {
                for (id, ls) in &by_id {
                    assert!(
                        ids.contains(id),
                        "an audit line for a request not sent: {ls:?}"
                    );
                    assert_eq!(ls.len(), 1, "SETTLED TWICE: {id} has {ls:?}");
                }
                return by_id
                    .into_iter()
                    .map(|(id, mut ls)| (id, ls.remove(0)))
                    .collect();
            }
            let missing: Vec<&String> = ids.iter().filter(|i| !by_id.contains_key(*i)).collect();
            assert!(
                Instant::now() < deadline,
                "NEVER SETTLED: no audit line for {missing:?} in {}",
                self.path.display()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for AuditFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The tokens an audit line says its request settled to.
pub fn settled_tokens(line: &Value) -> u64 {
    line["inputTokens"].as_u64().unwrap_or(0) + line["outputTokens"].as_u64().unwrap_or(0)
}

/// The quota a call from `source` for `model` (a model id) draws on: the first tenant's
/// in-region quota, or its cross-region one.
pub fn quota_key(state: &AppState, model: &str, source: &str, cross_region: bool) -> QuotaKey {
    let cfg = &state.cfg;
    let source: RegionIx = cfg.region_ix(source).expect("a configured region");
    QuotaKey {
        tenant: TenantIx(0),
        model: cfg.model_ix(model).expect("a configured model"),
        source,
        cross_region,
    }
}

/// Asserts that `key`'s quota has room for its whole token capacity minus `used` again (waiting,
/// bounded, for a Redis book's leases to be given back): no reservation is left held. The
/// probe's own reservation is cancelled.
pub async fn assert_quota_back(state: &AppState, key: QuotaKey, used: u64) {
    let cap = state
        .quota_limits(&key)
        .and_then(|l| l.tpm)
        .expect("the ledger needs a TPM quota");
    let want = cap.saturating_sub(used);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match state.reserve(key, want).await {
            Ok(ticket) => {
                state.settle(ticket, None);
                return;
            }
            Err(denied) => assert!(
                Instant::now() < deadline,
                "RESERVATION LEFT HELD on {key:?}: {want} of {cap} tokens (used {used}) cannot be \
                 reserved after the load (retry after {:?})",
                denied.retry_after
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
