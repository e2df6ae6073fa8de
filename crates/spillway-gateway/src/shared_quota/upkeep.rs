//! Keeping in touch with Redis: the state (up/down) with its gauge and log lines, connecting
//! and reconnecting with back-off, the heartbeat, and giving leases back.
use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use spillway_core::QuotaLimits;

use super::{
    DOWN, HEARTBEAT, LEASE_IDLE, OP_TIMEOUT, PROBE_BACKOFF, SharedQuotas, TICK, UNKNOWN, UP, lock,
    to_i64,
};
use crate::state::QuotaKey;

impl SharedQuotas {
    /// Record a state change: the gauge, and one log line per change.
    pub(super) fn mark(&self, up: bool, error: &str) {
        if up {
            *lock(&self.last_ok) = Instant::now();
        }
        let new = if up { UP } else { DOWN };
        let old = self.state.swap(new, Ordering::AcqRel);
        if old == new {
            return;
        }
        self.gauge.set(i64::from(up));
        let url = format!("{:?}", self.redis);
        match (old, up) {
            (UNKNOWN, true) => tracing::info!(state = %url, "shared state (Redis) connected"),
            (_, true) => {
                // Resynchronise: the local shares go, leases are taken from Redis again.
                let mut fb = lock(&self.fallback);
                fb.generation += 1;
                fb.buckets.clear();
                tracing::warn!(state = %url, "shared state (Redis) reachable again; tenant quotas are global again")
            }
            (_, false) => {
                tracing::warn!(state = %url, %error, "shared state (Redis) unreachable; serving tenant quotas on this instance's share (limit / instances)")
            }
        }
    }

    /// Connect afresh and ping; marks the state either way.
    pub(super) async fn probe(&self) {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(0);
        let connect = ConnectionManager::new_with_config(self.client.clone(), config);
        let result = match tokio::time::timeout(OP_TIMEOUT, connect).await {
            Ok(Ok(mut conn)) => {
                let cmd = redis::cmd("PING");
                let ping = cmd.query_async::<String>(&mut conn);
                match tokio::time::timeout(OP_TIMEOUT, ping).await {
                    Ok(Ok(_)) => Ok(conn),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".to_string()),
                }
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("connect timed out".to_string()),
        };
        match result {
            Ok(conn) => {
                *lock(&self.conn) = Some(conn);
                self.mark(true, "");
            }
            Err(e) => self.mark(false, &e),
        }
    }

    /// Ping over the current connection (heartbeat while up).
    async fn ping(&self) {
        let Some(mut conn) = self.conn() else {
            return self.mark(false, "not connected");
        };
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        match tokio::time::timeout(OP_TIMEOUT, ping).await {
            Ok(Ok(_)) => self.mark(true, ""),
            Ok(Err(e)) => self.mark(false, &e.to_string()),
            Err(_) => self.mark(false, "timed out"),
        }
    }

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
            let Some(mut conn) = self.conn() else {
                failed.push((key, r, t));
                continue;
            };
            let rkey = self.redis_key(key);
            match self
                .scripts
                .give(&mut conn, &rkey, limits, r, t, OP_TIMEOUT)
                .await
            {
                Ok(()) => self.mark(true, ""),
                Err(e) => {
                    self.mark(false, &e);
                    failed.push((key, r, t));
                }
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

/// The background task: returns leases, heartbeats, and reconnects with back-off.
pub(super) async fn background(weak: Weak<SharedQuotas>) {
    let mut backoff = PROBE_BACKOFF.0;
    let mut next_probe = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(sq) = weak.upgrade() else {
            return;
        };
        if sq.is_up() {
            backoff = PROBE_BACKOFF.0;
            sq.flush(LEASE_IDLE).await;
            if sq.is_up() && lock(&sq.last_ok).elapsed() >= HEARTBEAT {
                sq.ping().await;
            }
        } else if Instant::now() >= next_probe {
            sq.probe().await;
            if sq.is_up() {
                sq.flush(LEASE_IDLE).await;
            } else {
                next_probe = Instant::now() + backoff;
                backoff = (backoff * 2).min(PROBE_BACKOFF.1);
            }
        }
    }
}
