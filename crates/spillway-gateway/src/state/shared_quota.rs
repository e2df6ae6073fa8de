//! Tenant quotas shared by several gateway instances through Redis (`[state] kind = "redis"`).
//!
//! # Design
//!
//! Each quota (tenant × model × source region × in-region/cross-region) has one global bucket in
//! Redis: a hash `{prefix}:{q:<tenant>:<model>:<source>:<in|x>}:b` holding the RPM and TPM levels
//! and the time of the last refill (the hash tag keeps one quota's keys on one Cluster slot). It
//! is refilled linearly per 60 s by the time elapsed on Redis's own `TIME`, and it is only ever
//! changed by the two Lua scripts in [`lua`] (take a chunk, give back), each atomic.
//!
//! An instance does not call Redis per request. It **leases** chunks (`lease_fraction` of each
//! per-minute limit, at least 1) and spends them locally; only when its lease cannot cover a
//! request does one script call take a new chunk (at most one such call per quota per instance
//! at a time; a chunk is granted in part near the end of the bucket, but never less than the
//! request needs). Refunds from settles and cancels go back into the lease up to one chunk; the
//! rest, the settles' excess (charged as a debt: negative) and a lease left idle for
//! [`LEASE_IDLE`] are given back to Redis by a background task within [`TICK`].
//!
//! # Overshoot bound
//!
//! Every admission is paid for by a take from the global bucket before it happens, so the bucket
//! bound holds for what was *taken*: over any window of length `w`, at most
//! `limit × (1 + w / 60 s)` plus debts. What an instance holds in its lease at the start of a
//! window was taken earlier and can be spent inside it, so over any window:
//!
//! `admitted ≤ limit × (1 + w / 60 s) + N × chunk + excess`
//!
//! where `N` is the number of instances, `chunk = max(1, lease_fraction × limit)` (a lease never
//! holds more than one chunk: takes are single-flight per quota and instance, and refunds beyond
//! a chunk go back to Redis), and `excess` is the tokens that responses used beyond their
//! reservation (charged to the bucket as a debt that is repaid before anything else is admitted,
//! exactly as the memory backend does; requests per minute have none). With the default
//! `lease_fraction = 0.005` and 3 instances the lease term is 1.5% of the limit. Leases lost with
//! a crashed instance under-admit, never over-admit.
//!
//! While Redis is unreachable the bound does not hold: each instance serves on a local bucket
//! of `limit / instances` (rounded up) that starts full, so the minute in which Redis is lost can
//! admit up to one more limit; Redis coming back empty (restarted without persistence) starts
//! the global buckets full again.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use spillway_core::{QuotaBucket, QuotaDenied, QuotaLimits, Reservation};

use crate::config::Config;
use crate::state::quota_book::{Drawn, QuotaBook, QuotaKey, Reserving, Ticket};
use crate::state::redis_link::{RedisLink, escape};

mod lua;
mod upkeep;

/// How often the background task returns leases and checks on Redis.
pub const TICK: Duration = Duration::from_millis(100);
/// A lease unused this long is given back to Redis.
pub const LEASE_IDLE: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

/// One quota's lease: what this instance may spend without asking Redis.
struct Lease {
    limits: QuotaLimits,
    /// Spendable stock (ignored for an unlimited dimension).
    req: u64,
    tok: u64,
    /// To give back to Redis (tokens may be negative: a debt).
    give_req: u64,
    give_tok: i64,
    last_used: Instant,
    /// Single-flight for takes from Redis.
    refill: Arc<tokio::sync::Mutex<()>>,
}

struct Fallback {
    /// The link generation these buckets belong to: a reconnection makes them stale.
    generation: u64,
    buckets: HashMap<QuotaKey, QuotaBucket>,
}

pub struct SharedQuotas {
    cfg: Arc<Config>,
    link: Arc<RedisLink>,
    leases: Mutex<HashMap<QuotaKey, Lease>>,
    fallback: Mutex<Fallback>,
    scripts: lua::Scripts,
    epoch: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a take from the global bucket answered.
enum Take {
    Granted(u64, u64),
    Denied(Duration),
}

impl SharedQuotas {
    pub fn new(cfg: Arc<Config>, link: Arc<RedisLink>) -> SharedQuotas {
        SharedQuotas {
            cfg,
            link,
            leases: Mutex::new(HashMap::new()),
            fallback: Mutex::new(Fallback {
                generation: 0,
                buckets: HashMap::new(),
            }),
            scripts: lua::Scripts::new(),
            epoch: Instant::now(),
        }
    }

    /// Start the background task that gives leases back; it stops when `this` is dropped.
    pub fn start(this: &Arc<SharedQuotas>) {
        tokio::spawn(upkeep::background(Arc::downgrade(this)));
    }

    /// Redis answers: quotas are global.
    pub fn is_up(&self) -> bool {
        self.link.is_up()
    }

    /// Reserve one request and `est` tokens: from the lease, else one take from Redis, else
    /// (Redis unreachable) from this instance's share.
    async fn reserve_drawn(
        &self,
        key: QuotaKey,
        limits: QuotaLimits,
        est: u64,
    ) -> Result<Drawn, QuotaDenied> {
        if limits.rpm == Some(0) || limits.tpm.is_some_and(|t| est > t) {
            return Err(QuotaDenied {
                retry_after: MINUTE,
            });
        }
        if self.spend_lease(key, limits, est) {
            return Ok(Drawn::Lease);
        }
        if !self.is_up() {
            return self.reserve_fallback(key, limits, est);
        }
        let refill = lease_entry(&mut lock(&self.leases), key, limits)
            .refill
            .clone();
        let _single = refill.lock().await;
        if self.spend_lease(key, limits, est) {
            return Ok(Drawn::Lease);
        }
        if !self.is_up() {
            return self.reserve_fallback(key, limits, est);
        }
        // Earmark what the lease has towards this request, and take the rest plus a chunk.
        let (have_r, have_t) = {
            let mut leases = lock(&self.leases);
            let l = lease_entry(&mut leases, key, limits);
            let r = l.req.min(1);
            let t = l.tok.min(est);
            l.req -= r;
            l.tok -= t;
            (r, t)
        };
        let need_r = if limits.rpm.is_some() { 1 - have_r } else { 0 };
        let need_t = if limits.tpm.is_some() {
            est - have_t
        } else {
            0
        };
        let want_r = if need_r > 0 {
            need_r.max(chunk(limits.rpm, self.link.cfg.lease_fraction))
        } else {
            0
        };
        let want_t = if need_t > 0 {
            need_t.max(chunk(limits.tpm, self.link.cfg.lease_fraction))
        } else {
            0
        };
        let answer = self
            .take(key, limits, (want_r, want_t), (need_r, need_t))
            .await;
        let mut leases = lock(&self.leases);
        let l = lease_entry(&mut leases, key, limits);
        l.last_used = Instant::now();
        match answer {
            Ok(Take::Granted(g_r, g_t)) => {
                l.req += (have_r + g_r).saturating_sub(u64::from(limits.rpm.is_some()));
                l.tok += (have_t + g_t).saturating_sub(if limits.tpm.is_some() { est } else { 0 });
                Ok(Drawn::Lease)
            }
            Ok(Take::Denied(retry_after)) => {
                l.req += have_r;
                l.tok += have_t;
                Err(QuotaDenied { retry_after })
            }
            Err(()) => {
                l.req += have_r;
                l.tok += have_t;
                drop(leases);
                self.reserve_fallback(key, limits, est)
            }
        }
    }

    /// Settle (`used` tokens) or cancel (`None`) a reservation where it was taken.
    fn settle_drawn(&self, key: QuotaKey, drawn: Drawn, r: Reservation, used: Option<u64>) {
        match drawn {
            Drawn::Book => {}
            Drawn::Fallback(generation) => {
                let now = self.epoch.elapsed();
                let mut fb = lock(&self.fallback);
                if fb.generation != generation {
                    return; // resynchronised since: the local buckets are gone
                }
                if let Some(b) = fb.buckets.get_mut(&key) {
                    match used {
                        Some(t) => b.settle(r, t, now),
                        None => b.cancel(r, now),
                    }
                }
            }
            Drawn::Lease => {
                let Some(limits) = self.limits_of(key) else {
                    return;
                };
                let fraction = self.link.cfg.lease_fraction;
                let mut leases = lock(&self.leases);
                let l = lease_entry(&mut leases, key, limits);
                l.last_used = Instant::now();
                let (refund_r, refund_t, excess) = match used {
                    None => (1, r.tokens, 0),
                    Some(u) => (0, r.tokens.saturating_sub(u), u.saturating_sub(r.tokens)),
                };
                if limits.rpm.is_some() && refund_r > 0 {
                    let keep = refund_r.min(chunk(limits.rpm, fraction).saturating_sub(l.req));
                    l.req += keep;
                    l.give_req += refund_r - keep;
                }
                if limits.tpm.is_some() {
                    let keep = refund_t.min(chunk(limits.tpm, fraction).saturating_sub(l.tok));
                    l.tok += keep;
                    l.give_tok = l
                        .give_tok
                        .saturating_add(to_i64(refund_t - keep))
                        .saturating_sub(to_i64(excess));
                }
            }
        }
    }

    /// Give every lease back to Redis now (shutdown).
    pub async fn flush_all(&self) {
        self.flush(Duration::ZERO).await;
    }

    fn limits_of(&self, key: QuotaKey) -> Option<QuotaLimits> {
        lock(&self.leases).get(&key).map(|l| l.limits)
    }

    /// Spend from the lease if it covers the request.
    fn spend_lease(&self, key: QuotaKey, limits: QuotaLimits, est: u64) -> bool {
        let mut leases = lock(&self.leases);
        let l = lease_entry(&mut leases, key, limits);
        let ok_r = limits.rpm.is_none() || l.req >= 1;
        let ok_t = limits.tpm.is_none() || l.tok >= est;
        if !(ok_r && ok_t) {
            return false;
        }
        if limits.rpm.is_some() {
            l.req -= 1;
        }
        if limits.tpm.is_some() {
            l.tok -= est;
        }
        l.last_used = Instant::now();
        true
    }

    fn reserve_fallback(
        &self,
        key: QuotaKey,
        limits: QuotaLimits,
        est: u64,
    ) -> Result<Drawn, QuotaDenied> {
        let n = u64::from(self.link.cfg.instances.max(1));
        let share = QuotaLimits {
            rpm: limits.rpm.map(|v| v.div_ceil(n)),
            tpm: limits.tpm.map(|v| v.div_ceil(n)),
        };
        let now = self.epoch.elapsed();
        let mut fb = lock(&self.fallback);
        let generation = self.link.generation();
        if fb.generation != generation {
            // Redis came back since these local shares were made: they are gone.
            fb.generation = generation;
            fb.buckets.clear();
        }
        let b = fb
            .buckets
            .entry(key)
            .or_insert_with(|| QuotaBucket::new(share, now));
        // The hold carries the same reservation (the estimate).
        let _ = b.reserve(est, now)?;
        Ok(Drawn::Fallback(generation))
    }

    fn redis_key(&self, key: QuotaKey) -> String {
        let cfg = &self.cfg;
        format!(
            "{}:{{q:{}:{}:{}:{}}}:b",
            self.link.cfg.key_prefix,
            escape(&cfg.tenants[key.tenant].name),
            escape(&cfg.models[key.model].id),
            escape(cfg.region_name(key.source)),
            if key.cross_region { "x" } else { "in" },
        )
    }

    async fn take(
        &self,
        key: QuotaKey,
        limits: QuotaLimits,
        want: (u64, u64),
        need: (u64, u64),
    ) -> Result<Take, ()> {
        let rkey = self.redis_key(key);
        let scripts = &self.scripts;
        let reply = self
            .link
            .call(async |c| scripts.take(c, &rkey, limits, want, need).await)
            .await;
        match reply {
            Ok((1, g_r, g_t, _)) => Ok(Take::Granted(g_r.max(0) as u64, g_t.max(0) as u64)),
            Ok((_, _, _, wait_ms)) => {
                let retry_after = if wait_ms < 0 {
                    MINUTE
                } else {
                    Duration::from_millis(wait_ms.max(1) as u64)
                };
                Ok(Take::Denied(retry_after))
            }
            Err(_) => Err(()),
        }
    }
}

fn lease_entry(
    leases: &mut HashMap<QuotaKey, Lease>,
    key: QuotaKey,
    limits: QuotaLimits,
) -> &mut Lease {
    let l = leases.entry(key).or_insert_with(|| Lease {
        limits,
        req: 0,
        tok: 0,
        give_req: 0,
        give_tok: 0,
        last_used: Instant::now(),
        refill: Arc::new(tokio::sync::Mutex::new(())),
    });
    l.limits = limits;
    l
}

/// The lease chunk of a per-minute limit: `fraction` of it, at least 1.
fn chunk(limit: Option<u64>, fraction: f64) -> u64 {
    limit.map_or(0, |v| ((v as f64 * fraction).floor() as u64).max(1))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl QuotaBook for SharedQuotas {
    fn reserve(&self, key: QuotaKey, limits: QuotaLimits, tokens: u64) -> Reserving<'_> {
        Box::pin(async move {
            let drawn = self.reserve_drawn(key, limits, tokens).await?;
            Ok(Ticket {
                key,
                reservation: Reservation { tokens },
                drawn,
            })
        })
    }

    fn settle(&self, ticket: Ticket, used: Option<u64>) {
        self.settle_drawn(ticket.key, ticket.drawn, ticket.reservation, used);
    }
}
