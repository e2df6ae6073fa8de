//! One quota's lease on this instance, as plain bookkeeping (no I/O): what it may spend without
//! asking Redis, what it owes back (refunds and debts not yet given), and the script calls whose
//! answer never came. The parent module does the calls; the rules of what moves where are here,
//! unit-tested.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use spillway_core::QuotaLimits;

/// A script call whose answer never came (timed out, or the connection failed): it may have run,
/// or may still run. The upkeep resolves it once Redis answers (see `lua`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Unsure {
    pub id: String,
    /// The pending refunds the call carried: pending again if it never ran.
    pub give: (u64, i64),
}

pub(super) struct Lease {
    pub limits: QuotaLimits,
    /// Spendable stock (ignored for an unlimited dimension).
    pub req: u64,
    pub tok: u64,
    /// To give back to Redis (tokens may be negative: a debt).
    pub give_req: u64,
    pub give_tok: i64,
    /// Calls to resolve.
    pub unsure: Vec<Unsure>,
    pub last_used: Instant,
    /// Single-flight for the calls that change this quota in Redis (takes, and the upkeep's
    /// gives), so that refunds given back are in the bucket before the next take.
    pub refill: Arc<tokio::sync::Mutex<()>>,
}

impl Lease {
    pub fn new(limits: QuotaLimits) -> Lease {
        Lease {
            limits,
            req: 0,
            tok: 0,
            give_req: 0,
            give_tok: 0,
            unsure: Vec::new(),
            last_used: Instant::now(),
            refill: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Spend one request and `est` tokens if the lease covers both.
    pub fn spend(&mut self, est: u64) -> bool {
        let ok_r = self.limits.rpm.is_none() || self.req >= 1;
        let ok_t = self.limits.tpm.is_none() || self.tok >= est;
        if !(ok_r && ok_t) {
            return false;
        }
        if self.limits.rpm.is_some() {
            self.req -= 1;
        }
        if self.limits.tpm.is_some() {
            self.tok -= est;
        }
        self.last_used = Instant::now();
        true
    }

    /// Take out what the lease has towards one request of `est` tokens (it does not cover it):
    /// the request then needs only the rest from Redis.
    pub fn earmark(&mut self, est: u64) -> (u64, u64) {
        let r = self.req.min(1);
        let t = self.tok.min(est);
        self.req -= r;
        self.tok -= t;
        (r, t)
    }

    /// Put an earmark back (the take was refused or failed).
    pub fn put_back(&mut self, (r, t): (u64, u64)) {
        self.req += r;
        self.tok += t;
    }

    /// A take granted `got`: with the earmark `have` it pays for one request of `est` tokens, and
    /// the rest is the new lease.
    pub fn granted(&mut self, have: (u64, u64), got: (u64, u64), est: u64) {
        let need_r = u64::from(self.limits.rpm.is_some());
        let need_t = if self.limits.tpm.is_some() { est } else { 0 };
        self.req += (have.0 + got.0).saturating_sub(need_r);
        self.tok += (have.1 + got.1).saturating_sub(need_t);
        self.last_used = Instant::now();
    }

    /// Settle (`used` tokens) or cancel (`None`) a reservation of `tokens` drawn from the lease:
    /// the unused part goes back into the lease up to one chunk (`chunks`: requests, tokens), the
    /// rest is pending for Redis, and tokens used beyond the reservation are a pending debt.
    pub fn refund(&mut self, tokens: u64, used: Option<u64>, chunks: (u64, u64)) {
        self.last_used = Instant::now();
        let (refund_r, refund_t, excess) = match used {
            None => (1, tokens, 0),
            Some(u) => (0, tokens.saturating_sub(u), u.saturating_sub(tokens)),
        };
        if self.limits.rpm.is_some() && refund_r > 0 {
            let keep = refund_r.min(chunks.0.saturating_sub(self.req));
            self.req += keep;
            self.give_req += refund_r - keep;
        }
        if self.limits.tpm.is_some() {
            let keep = refund_t.min(chunks.1.saturating_sub(self.tok));
            self.tok += keep;
            self.give_tok = self
                .give_tok
                .saturating_add(to_i64(refund_t - keep))
                .saturating_sub(to_i64(excess));
        }
    }

    /// Move out everything pending for Redis, and the lease itself when unused for `idle`.
    pub fn gives(&mut self, idle: Option<Duration>) -> (u64, i64) {
        if idle.is_some_and(|d| self.last_used.elapsed() >= d) {
            self.give_req += std::mem::take(&mut self.req);
            self.give_tok = self
                .give_tok
                .saturating_add(to_i64(std::mem::take(&mut self.tok)));
        }
        (
            std::mem::take(&mut self.give_req),
            std::mem::take(&mut self.give_tok),
        )
    }

    /// Pending for Redis again: a give that never happened.
    pub fn owe(&mut self, (r, t): (u64, i64)) {
        self.give_req += r;
        self.give_tok = self.give_tok.saturating_add(t);
    }
}

/// Operation ids for the scripts: unique per instance (a random prefix) and per call.
pub(super) struct OpIds {
    prefix: String,
    next: AtomicU64,
}

impl OpIds {
    pub fn new() -> OpIds {
        OpIds {
            prefix: uuid::Uuid::new_v4().simple().to_string()[..16].to_string(),
            next: AtomicU64::new(0),
        }
    }

    pub fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.prefix)
    }
}

/// The lease chunk of a per-minute limit: `fraction` of it, at least 1.
pub(super) fn chunk(limit: Option<u64>, fraction: f64) -> u64 {
    limit.map_or(0, |v| ((v as f64 * fraction).floor() as u64).max(1))
}

pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens_only(tpm: u64) -> Lease {
        Lease::new(QuotaLimits {
            rpm: None,
            tpm: Some(tpm),
        })
    }

    #[test]
    fn a_refund_fills_the_lease_to_one_chunk_and_the_rest_is_owed_to_redis() {
        let mut l = tokens_only(1_980);
        l.tok = 4;
        l.refund(165, Some(21), (0, 9));
        assert_eq!((l.tok, l.give_tok), (9, 139));
        // Used beyond the reservation: a debt against what is owed.
        l.refund(165, Some(200), (0, 9));
        assert_eq!((l.tok, l.give_tok), (9, 104));
        // Cancelled: the whole reservation comes back.
        l.tok = 0;
        l.refund(165, None, (0, 9));
        assert_eq!((l.tok, l.give_tok), (9, 260));
    }

    #[test]
    fn a_cancel_gives_the_request_back_and_a_settle_keeps_it() {
        let mut l = Lease::new(QuotaLimits {
            rpm: Some(600),
            tpm: None,
        });
        l.refund(10, Some(10), (3, 0));
        assert_eq!((l.req, l.give_req), (0, 0));
        for _ in 0..4 {
            l.refund(10, None, (3, 0));
        }
        assert_eq!((l.req, l.give_req), (3, 1));
    }

    #[test]
    fn earmark_grant_and_put_back_keep_every_token() {
        let mut l = tokens_only(1_980);
        l.tok = 9;
        assert!(!l.spend(165), "the lease does not cover it");
        let have = l.earmark(165);
        assert_eq!((have, l.tok), ((0, 9), 0));
        // Granted the rest (156) and nothing more: the lease is empty, the request paid.
        l.granted(have, (0, 156), 165);
        assert_eq!(l.tok, 0);
        // Granted beyond the need: the surplus is the lease.
        let have = l.earmark(10);
        l.granted(have, (0, 30), 10);
        assert_eq!(l.tok, 20);
        // Refused: the earmark goes back.
        let have = l.earmark(50);
        l.put_back(have);
        assert_eq!(l.tok, 20);
        assert!(l.spend(20));
        assert_eq!(l.tok, 0);
    }

    #[test]
    fn gives_move_out_what_is_owed_and_an_idle_lease() {
        let mut l = tokens_only(1_980);
        l.tok = 9;
        l.give_tok = 139;
        assert_eq!(l.gives(Some(Duration::from_secs(60))), (0, 139));
        assert_eq!((l.tok, l.give_tok), (9, 0), "a lease in use stays");
        l.give_tok = -5;
        assert_eq!(
            l.gives(Some(Duration::ZERO)),
            (0, 4),
            "debt net of the lease"
        );
        assert_eq!((l.tok, l.give_tok), (0, 0));
        // A give that never happened is owed again, added to what was owed since.
        l.give_tok = 7;
        l.owe((0, 139));
        assert_eq!(l.gives(None), (0, 146));
    }

    #[test]
    fn operation_ids_are_unique_and_safe_in_a_hash_tagged_key() {
        let (a, b) = (OpIds::new(), OpIds::new());
        let ids = [a.next(), a.next(), b.next()];
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[0], ids[2], "another instance has another prefix");
        for id in &ids {
            assert!(
                id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
                "{id}"
            );
        }
    }

    #[test]
    fn chunks_are_a_fraction_of_the_limit_and_at_least_one() {
        assert_eq!(chunk(Some(1_980), 0.005), 9);
        assert_eq!(chunk(Some(10), 0.005), 1);
        assert_eq!(chunk(None, 0.005), 0);
    }
}
