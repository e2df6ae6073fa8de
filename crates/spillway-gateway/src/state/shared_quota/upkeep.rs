//! The background side of the leases: calls whose answer was lost are resolved, and idle leases,
//! refunds and debts go back to Redis.
use std::sync::Weak;
use std::time::Duration;

use spillway_core::QuotaLimits;

use super::lease::Unsure;
use super::{LEASE_IDLE, SharedQuotas, TICK, lock};
use crate::state::quota_book::QuotaKey;

impl SharedQuotas {
    /// Resolve the calls whose answer was lost, then give back what leases idle for `idle` hold
    /// and every pending refund and debt. A quota whose take is in flight is skipped unless
    /// `wait` (its refunds ride on that take or the next flush).
    pub(super) async fn flush(&self, idle: Duration, wait: bool) {
        self.resolve_unsure().await;
        let quotas: Vec<_> = lock(&self.leases)
            .iter()
            .map(|(k, l)| (*k, l.refill.clone()))
            .collect();
        for (key, refill) in quotas {
            if !self.is_up() {
                return; // kept for the next flush
            }
            let _single = if wait {
                refill.lock_owned().await
            } else {
                match refill.try_lock_owned() {
                    Ok(g) => g,
                    Err(_) => continue,
                }
            };
            let Some((limits, give)) = self.owed(key, idle) else {
                continue;
            };
            let id = self.ops.next();
            let keys = self.redis_keys(key);
            let scripts = &self.scripts;
            let given = self
                .link
                .call(async |c| scripts.give(c, &keys, &id, limits, give).await)
                .await;
            if !matches!(given, Ok(true)) {
                self.remember(key, Unsure { id, give });
            }
        }
    }

    /// What `key`'s lease owes Redis now (its stock too when idle for `idle`), moved out.
    fn owed(&self, key: QuotaKey, idle: Duration) -> Option<(QuotaLimits, (u64, i64))> {
        let mut leases = lock(&self.leases);
        let l = leases.get_mut(&key)?;
        let give = l.gives(Some(idle));
        (give != (0, 0)).then_some((l.limits, give))
    }

    fn remember(&self, key: QuotaKey, op: Unsure) {
        if let Some(l) = lock(&self.leases).get_mut(&key) {
            l.unsure.push(op);
        }
    }

    /// Ask Redis about every call whose answer was lost: one that ran had what it took given
    /// back by the script; one that did not is void from now on, and its refunds are owed again.
    async fn resolve_unsure(&self) {
        let pending: Vec<(QuotaKey, QuotaLimits, Vec<Unsure>)> = lock(&self.leases)
            .iter_mut()
            .filter(|(_, l)| !l.unsure.is_empty())
            .map(|(k, l)| (*k, l.limits, std::mem::take(&mut l.unsure)))
            .collect();
        for (key, limits, ops) in pending {
            let keys = self.redis_keys(key);
            for op in ops {
                let answer = if self.is_up() {
                    let scripts = &self.scripts;
                    let id = op.id.as_str();
                    self.link
                        .call(async |c| scripts.resolve(c, &keys, id, limits).await)
                        .await
                } else {
                    Err("unreachable".into())
                };
                let mut leases = lock(&self.leases);
                let Some(l) = leases.get_mut(&key) else {
                    continue;
                };
                match answer {
                    Ok(true) => {}
                    Ok(false) => l.owe(op.give),
                    Err(_) => l.unsure.push(op),
                }
            }
        }
    }
}

/// The background task: every [`TICK`] while Redis is up, resolves lost calls and gives back
/// idle leases and pending refunds (after an outage, as soon as the link is up again).
pub(super) async fn background(weak: Weak<SharedQuotas>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(sq) = weak.upgrade() else {
            return;
        };
        if sq.is_up() {
            sq.flush(LEASE_IDLE, false).await;
        }
    }
}
