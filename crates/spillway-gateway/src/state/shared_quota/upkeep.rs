//! Giving leases back: idle leases, refunds and debts go back to Redis from a background task.
use std::sync::Weak;
use std::time::Duration;

use spillway_core::QuotaLimits;

use super::{LEASE_IDLE, SharedQuotas, TICK, lock, to_i64};
use crate::state::quota_book::QuotaKey;

impl SharedQuotas {
    /// Give back what leases idle for `idle` hold, and every pending refund and debt.
    pub(super) async fn flush(&self, idle: Duration) {
        let gives: Vec<(QuotaKey, QuotaLimits, u64, i64)> = {
            let mut leases = lock(&self.leases);
            leases
                .iter_mut()
                .filter_map(|(k, l)| {
                    if l.last_used.elapsed() >= idle {
                        l.give_req += std::mem::take(&mut l.req);
                        l.give_tok = l
                            .give_tok
                            .saturating_add(to_i64(std::mem::take(&mut l.tok)));
                    }
                    let (r, t) = (
                        std::mem::take(&mut l.give_req),
                        std::mem::take(&mut l.give_tok),
                    );
                    (r != 0 || t != 0).then_some((*k, l.limits, r, t))
                })
                .collect()
        };
        let mut failed = Vec::new();
        for (key, limits, r, t) in gives {
            if !failed.is_empty() || !self.is_up() {
                failed.push((key, r, t));
                continue;
            }
            let rkey = self.redis_key(key);
            let scripts = &self.scripts;
            let given = self
                .link
                .call(async |c| scripts.give(c, &rkey, limits, r, t).await)
                .await;
            if given.is_err() {
                failed.push((key, r, t));
            }
        }
        // Not given back: kept for the next flush (Redis may have restarted empty; giving back
        // to a full bucket is capped at the limit, so this never over-admits).
        let mut leases = lock(&self.leases);
        for (key, r, t) in failed {
            if let Some(l) = leases.get_mut(&key) {
                l.give_req += r;
                l.give_tok = l.give_tok.saturating_add(t);
            }
        }
    }
}

/// The background task: every [`TICK`] while Redis is up, gives back idle leases and pending
/// refunds (after an outage, as soon as the link is up again).
pub(super) async fn background(weak: Weak<SharedQuotas>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(sq) = weak.upgrade() else {
            return;
        };
        if sq.is_up() {
            sq.flush(LEASE_IDLE).await;
        }
    }
}
