//! The matrix's rig: a gateway with a tenant quota sized so that a leaked reservation shows, an
//! audit log, loads of calls in any of the four APIs, and the three checks every fault test ends
//! with ([`Matrix::verify`]).
use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::StreamExt;
use spillway_sim::{Fault, completion_text};

use crate::bedrock_common::{ACCOUNT, AK, SECRET};
use crate::calls::{self, Api, End, Seen};
use crate::common::{Harness, KEY, M, Spec, Tenant};
use crate::ledger::{self, AuditFile};

/// Output tokens every matrix call asks for.
pub const N: u64 = 16;
/// `output_burndown` of `M` here: a call reserves its prompt + 16 × 10 = about 165 tokens.
const BURNDOWN: f64 = 10.0;
/// The tenant's TPM for `M` per source region: the in-region quota holds 6 reservations, the
/// cross-region one (×2) 12, and refilling one reservation takes 10 s and 5 s. Loads keep at
/// most 6 calls in flight per source, so the quota itself never refuses a call.
pub const TPM: u64 = 990;
/// Calls in flight at once in a load.
pub const CONCURRENCY: usize = 6;

/// The profile of `M` for the `us` geography.
pub fn us() -> String {
    format!("us.{M}")
}

/// [`Spec::standard`] (three `us`, two `eu` regions) with the matrix's tenant: a Bedrock key
/// pair and account, and a TPM quota on `M` reserved at [`BURNDOWN`].
pub fn spec() -> Spec {
    let mut s = Spec::standard();
    s.models[0].burndown = Some(BURNDOWN);
    s.tenants = vec![
        Tenant::new("acme", KEY)
            .access_key(AK, SECRET)
            .account(ACCOUNT)
            .quota(M, None, Some(TPM)),
    ];
    s
}

/// A started gateway, its audit log, and every call sent through it.
pub struct Matrix {
    pub h: Harness,
    audit: AuditFile,
    seen: Mutex<Vec<Seen>>,
}

impl Matrix {
    pub async fn start(spec: Spec, name: &str) -> Matrix {
        Matrix::start_with(spec, name, "").await
    }

    /// [`Matrix::start`] with `prefix` (a `[state]` table) before the spec's TOML.
    pub async fn start_with(mut spec: Spec, name: &str, prefix: &str) -> Matrix {
        let audit = AuditFile::new(name);
        spec.audit = Some(audit.path().display().to_string());
        Matrix {
            h: Harness::start_with(spec, prefix).await,
            audit,
            seen: Mutex::new(Vec::new()),
        }
    }

    /// Sets `fault` on `M`'s simulator in `region` (`Fault::default()` clears it).
    pub fn fault(&self, region: &str, fault: Fault) {
        self.h.sim(region).set_fault(fault);
    }

    /// One call, read to its end.
    pub async fn call(&self, api: Api, source: &str, model: &str) -> Seen {
        let s = calls::call(&self.h, api, source, model, N).await;
        self.seen.lock().expect("lock").push(s.clone());
        s
    }

    /// `n` calls from `source` for `model`, cycling through `apis`, [`CONCURRENCY`] at a time;
    /// answers in the order sent.
    pub async fn load(&self, apis: &[Api], source: &str, model: &str, n: usize) -> Vec<Seen> {
        futures_util::stream::iter((0..n).map(|i| self.call(apis[i % apis.len()], source, model)))
            .buffered(CONCURRENCY)
            .collect()
            .await
    }

    /// Whether the gateway's core has `M`'s deployment in `region` ejected right now.
    pub fn ejected(&self, region: &str) -> bool {
        let cfg = self.h.gw().config();
        let dep = cfg
            .model_ix(M)
            .zip(cfg.region_ix(region))
            .and_then(|(m, r)| cfg.deployment(m, r))
            .expect("deployment");
        let state = self.h.gw().state();
        let now = state.now();
        state.router().router.view(dep, now).ejected_until.is_some()
    }

    /// Plain-id calls (the source only, so no failover and no draw on the retry budget) from
    /// `region` until its failing deployment is ejected; each must be a clean refusal.
    pub async fn eject(&self, region: &str) {
        for _ in 0..16 {
            if self.ejected(region) {
                return;
            }
            self.call(Api::Chat, region, M).await.assert_clean_refusal();
        }
        panic!("{region} was not ejected after 16 failed calls");
    }

    /// The tokens the calls `ids` settled to, by their audit lines.
    pub async fn settled(&self, ids: &[String]) -> u64 {
        let all: Vec<String> = self
            .seen
            .lock()
            .expect("lock")
            .iter()
            .map(|s| s.id.clone())
            .collect();
        let lines = self.audit.exactly_once(&all).await;
        ids.iter()
            .map(|id| ledger::settled_tokens(&lines[id]))
            .sum()
    }

    /// (b) and (c) over every call sent, after the load:
    ///
    /// * residency: every request any simulator saw was sent by this test and reached only a
    ///   region of its destination set; every audit line's serving region (`inferenceRegion`,
    ///   else the source) is in that set and is the `x-spillway-region` the client got;
    /// * exactly-once settlement: one audit line per call (see `ledger`); a complete answer is
    ///   `ok` with all its output tokens; and every quota the calls drew on has its whole
    ///   capacity back but the tokens they used;
    /// * no simulator slot is left held.
    pub async fn verify(&self) {
        let seen = self.seen.lock().expect("lock").clone();
        let ids: Vec<String> = seen.iter().map(|s| s.id.clone()).collect();
        let lines = self.audit.exactly_once(&ids).await;
        let mut used: HashMap<(String, bool), u64> = HashMap::new();
        for s in &seen {
            let line = &lines[&s.id];
            check_line(&self.h, s, line);
            let cross = s.model != M;
            *used.entry((s.source.clone(), cross)).or_default() += ledger::settled_tokens(line);
        }
        let state = self.h.gw().state();
        for ((source, cross), tokens) in used {
            let key = ledger::quota_key(&state, M, &source, cross);
            ledger::assert_quota_back(&state, key, tokens).await;
        }
        for (region, _) in &self.h.spec.regions {
            let sim = self.h.sim(region);
            crate::common::eventually("every simulator slot is free", || sim.in_flight() == 0)
                .await;
        }
        // Last, once every attempt has ended and is on the simulators' records.
        self.h.assert_residency();
        assert_eq!(
            self.audit.lines().len(),
            ids.len(),
            "no late second settlement"
        );
    }
}

/// The whole answer to the matrix's prompt (`common::body`'s "hi") in `n` tokens, as the
/// unbroken stream from any region gives it: the simulators' seeded text when the spec sets a
/// `text_seed`, else their word cycle.
pub fn answer_text(h: &Harness, n: u64) -> String {
    match h.spec.text_seed {
        Some(seed) => {
            let messages = serde_json::json!([{"role": "user", "content": "hi"}]);
            spillway_sim::seeded_text(seed, spillway_sim::prompt_fingerprint(&messages), 0, n)
        }
        None => completion_text(n),
    }
}

/// One call's audit line against what its client saw and its destination set.
fn check_line(h: &Harness, s: &Seen, line: &serde_json::Value) {
    assert_eq!(line["sourceRegion"], s.source.as_str(), "{line}");
    let allowed = h.spec.allowed(KEY, &s.source, &s.model);
    // A stream continued after a break: every leg in the set too.
    for leg in line["legs"].as_array().into_iter().flatten() {
        let region = leg["region"].as_str().unwrap_or_default();
        assert!(
            allowed.iter().any(|r| r == region),
            "RESIDENCY VIOLATION in a continued stream's legs: {line}"
        );
    }
    let served = line["inferenceRegion"].as_str().unwrap_or(&s.source);
    if line["outcome"] == "ok" || s.region().is_some() {
        assert!(
            allowed.iter().any(|r| r == served),
            "RESIDENCY VIOLATION in the audit log: {} from {} served in {served} (allowed \
             {allowed:?}): {line}",
            s.id,
            s.source
        );
    }
    if let Some(region) = s.region() {
        assert_eq!(
            served, region,
            "audit and x-spillway-region disagree: {line} {s:?}"
        );
    }
    match &s.end {
        End::Complete => {
            assert_eq!(line["outcome"], "ok", "{line} {s:?}");
            assert_eq!(line["outputTokens"], N, "{line} {s:?}");
        }
        // Settled to the tokens the client got, not to the reservation.
        End::ErrorEvent(_) => {
            assert_ne!(line["outcome"], "ok", "{line} {s:?}");
            let got = s.content.split_whitespace().count() as u64;
            assert_eq!(line["outputTokens"], got, "{line} {s:?}");
        }
        _ => {}
    }
}

impl Seen {
    /// (a) for a call that had capacity: a 200 with the whole answer, served in its set.
    pub fn assert_served(&self, h: &Harness) {
        assert_eq!(
            (self.status, &self.end),
            (200, &End::Complete),
            "LOST: {:?} from {} for {} had capacity: {self:?}",
            self.api,
            self.source,
            self.model
        );
        assert_eq!(self.content, answer_text(h, N), "{self:?}");
        let region = self.region().expect("x-spillway-region");
        let allowed = h.spec.allowed(KEY, &self.source, &self.model);
        assert!(
            allowed.iter().any(|r| r == region),
            "served outside its set: {self:?}"
        );
    }

    /// (a) for a call that had no capacity: a clean 503 (every destination failed), 429 (none
    /// had room: all ejected or cooling down) or timeout in its API's shape.
    pub fn assert_clean_refusal(&self) {
        let kind = match self.status {
            429 => Refused::Throttled,
            504 | 408 => Refused::Timeout,
            _ => Refused::Unavailable,
        };
        self.assert_refused(kind);
    }

    /// (a) for a call that had no capacity: a clean error response in its API's shape.
    pub fn assert_refused(&self, kind: Refused) {
        let (status, openai, bedrock) = kind.shape();
        let (status, want) = match (self.api.is_bedrock(), kind) {
            // Bedrock's ModelTimeoutException is a 408.
            (true, Refused::Timeout) => (408, bedrock),
            (true, _) => (status, bedrock),
            (false, _) => (status, openai),
        };
        assert_eq!(
            (self.status, &self.end),
            (status, &End::ErrorBody(want.to_string())),
            "{self:?}"
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        if self.api.is_bedrock() {
            assert!(
                self.json["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{self:?}"
            );
        } else {
            assert!(
                self.json["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
            assert!(self.json["error"].get("code").is_some(), "{self:?}");
        }
        if kind == Refused::Throttled {
            let secs: u64 = self
                .header("retry-after")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("429 without a numeric Retry-After: {self:?}"));
            assert!(secs >= 1, "{self:?}");
        }
    }

    /// A stream that had started ends with its API's error event after `tokens` tokens.
    pub fn assert_stream_error_after(&self, tokens: u64) {
        let want = if self.api.is_bedrock() {
            "modelStreamErrorException"
        } else {
            "server_error"
        };
        assert_eq!(
            (self.status, &self.end),
            (200, &End::ErrorEvent(want.to_string())),
            "{self:?}"
        );
        assert_eq!(self.content, completion_text(tokens), "{self:?}");
    }
}

/// The clean errors a call may get where no capacity could exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every destination failed: 503.
    Unavailable,
    /// No destination has room (or every one throttled): 429 with `Retry-After`.
    Throttled,
    /// Every destination timed out: 504 (OpenAI), 408 `ModelTimeoutException` (Bedrock).
    Timeout,
}

impl Refused {
    /// Status, OpenAI `error.type`, Bedrock `x-amzn-ErrorType`.
    fn shape(self) -> (u16, &'static str, &'static str) {
        match self {
            Refused::Unavailable => (503, "server_error", "ServiceUnavailableException"),
            Refused::Throttled => (429, "rate_limit_error", "ThrottlingException"),
            Refused::Timeout => (504, "server_error", "ModelTimeoutException"),
        }
    }
}
