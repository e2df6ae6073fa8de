//! Tenant quotas shared by several gateway instances through Redis (`[state] kind = "redis"`).
//!
//! # Design
//!
//! Each quota (tenant × model × source region × in-region/cross-region) has one global bucket in
//! Redis: a hash `{prefix}:{q:<tenant>:<model>:<source>:<in|x>}:b` holding the RPM and TPM levels
//! and the time of the last refill (the hash tag keeps one quota's keys on one Cluster slot). It
//! is refilled linearly per 60 s by the time elapsed on Redis's own `TIME`, and it is only ever
//! changed by the Lua scripts in [`lua`] (take a chunk, give back, resolve a lost call), each
//! atomic.
//!
//! An instance does not call Redis per request. It **leases** chunks (`lease_fraction` of each
//! per-minute limit, at least 1) and spends them locally; only when its lease cannot cover a
//! request does one script call take a new chunk (at most one such call per quota per instance
//! at a time; a chunk is granted in part near the end of the bucket, but never less than the
//! request needs). The state of a lease and its rules are in [`lease`].
//!
//! # Refunds
//!
//! A settle or cancel puts the unused part of its reservation back into the lease up to one
//! chunk; the rest, the settles' excess (charged as a debt: negative) and a lease left idle for
//! [`LEASE_IDLE`] are owed to Redis. What is owed rides on the next take, which gives it back in
//! the same script before it takes (so a reservation right after a burst finds the burst's
//! refunds in the bucket, with no extra round trip), and the background task gives the rest
//! back within [`TICK`]. Takes and the background's gives of one quota are single-flight per
//! instance, so a give is always in the bucket before the next take is decided. While Redis is
//! unreachable what is owed is kept, and given back once it answers. Refunds are not kept in the
//! lease beyond one chunk: the bucket may have refilled to its limit while the reservation was
//! out, and tokens held locally on top of a full bucket would admit more than the bound below;
//! given back, the bucket caps them.
//!
//! # Calls whose answer is lost
//!
//! A script call that times out ([`OP_TIMEOUT`](crate::state::redis_link::OP_TIMEOUT)) or fails
//! may still run: a stopped Redis runs it when it resumes, a slow network delivers it late. Each
//! take and give therefore carries an operation id (this instance's random prefix and a counter)
//! that the script records next to the bucket (`…:{q:…}:op:<id>`, one small key per call), with
//! what it took, for [`lua::OP_TTL`]; a call whose answer never came is remembered with its id
//! and the refunds it carried. Once Redis answers again the background task resolves each such
//! id with one more script: if the call ran, what it took goes back into the bucket (and what it
//! gave stays given); if it did not, the id is marked void, so the call does nothing should it
//! still arrive, and its refunds are owed again. No token is lost or given twice, whichever
//! came first. Only a call resolved more than `OP_TTL` after it ran (Redis unreachable from this
//! instance for that long right after running it) is counted as not run: its take stays taken
//! (under-admits) or its give is given again (clipped at the limit).
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
//! a chunk are not spent locally but given back to Redis, where a full bucket caps them), and
//! `excess` is the tokens that responses used beyond their reservation (charged to the bucket as
//! a debt that is repaid before anything else is admitted, exactly as the memory backend does;
//! requests per minute have none). With the default
//! `lease_fraction = 0.005` and 3 instances the lease term is 1.5% of the limit. Leases lost with
//! a crashed instance under-admit, never over-admit.
//!
//! While Redis is unreachable the bound does not hold: each instance serves on a local bucket
//! of `limit / instances` (rounded up) that starts full, so the minute in which Redis is lost can
//! admit up to one more limit; Redis coming back empty (restarted without persistence) starts
//! the global buckets full again.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spillway_core::{QuotaBucket, QuotaDenied, QuotaLimits, Reservation};

use crate::config::Config;
use crate::state::quota_book::{Drawn, QuotaBook, QuotaKey, Reserving, Ticket};
use crate::state::redis_link::{RedisLink, escape};

mod lease;
mod lua;
mod upkeep;

use crate::state::lock;
use lease::{Lease, OpIds, Unsure, chunk};
use lua::{QuotaKeys, TakeArgs};

/// How often the background task returns leases and checks on Redis.
pub const TICK: Duration = Duration::from_millis(100);
/// A lease unused this long is given back to Redis.
pub const LEASE_IDLE: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

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
    ops: OpIds,
    epoch: Instant,
}

/// What a take from the global bucket answered.
enum Take {
    Granted(u64, u64),
    Denied(Duration),
    /// No answer (or the id was already recorded): it may have run, to resolve.
    Unsure,
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
            ops: OpIds::new(),
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
        self.reserve_taking(key, limits, est).await
    }

    /// The lease does not cover the request: earmark what it has towards it, and take the rest
    /// plus a chunk from Redis, giving back first what this instance owes. Called single-flight.
    async fn reserve_taking(
        &self,
        key: QuotaKey,
        limits: QuotaLimits,
        est: u64,
    ) -> Result<Drawn, QuotaDenied> {
        let (have, give) = {
            let mut leases = lock(&self.leases);
            let l = lease_entry(&mut leases, key, limits);
            (l.earmark(est), l.gives(None))
        };
        let fraction = self.link.cfg.lease_fraction;
        let need_r = if limits.rpm.is_some() { 1 - have.0 } else { 0 };
        let need_t = if limits.tpm.is_some() {
            est - have.1
        } else {
            0
        };
        let want = |need: u64, limit: Option<u64>| {
            if need > 0 {
                need.max(chunk(limit, fraction))
            } else {
                0
            }
        };
        let args = TakeArgs {
            give,
            want: (want(need_r, limits.rpm), want(need_t, limits.tpm)),
            need: (need_r, need_t),
        };
        let id = self.ops.next();
        let answer = self.take(key, limits, &id, args).await;
        let mut leases = lock(&self.leases);
        let l = lease_entry(&mut leases, key, limits);
        l.last_used = Instant::now();
        match answer {
            Take::Granted(g_r, g_t) => {
                l.granted(have, (g_r, g_t), est);
                Ok(Drawn::Lease)
            }
            Take::Denied(retry_after) => {
                l.put_back(have);
                Err(QuotaDenied { retry_after })
            }
            Take::Unsure => {
                l.put_back(have);
                l.unsure.push(Unsure { id, give });
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
                let fraction = self.link.cfg.lease_fraction;
                let mut leases = lock(&self.leases);
                if let Some(l) = leases.get_mut(&key) {
                    let chunks = (chunk(l.limits.rpm, fraction), chunk(l.limits.tpm, fraction));
                    l.refund(r.tokens, used, chunks);
                }
            }
        }
    }

    /// Give every lease back to Redis now (shutdown).
    pub async fn flush_all(&self) {
        self.flush(Duration::ZERO, true).await;
    }

    /// Spend from the lease if it covers the request.
    fn spend_lease(&self, key: QuotaKey, limits: QuotaLimits, est: u64) -> bool {
        lease_entry(&mut lock(&self.leases), key, limits).spend(est)
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

    /// The Redis keys of a quota: `<prefix>:{q:<tenant>:<model>:<source>:<in|x>}` and below.
    fn redis_keys(&self, key: QuotaKey) -> QuotaKeys {
        let cfg = &self.cfg;
        QuotaKeys {
            base: format!(
                "{}:{{q:{}:{}:{}:{}}}",
                self.link.cfg.key_prefix,
                escape(&cfg.tenants[key.tenant].name),
                escape(&cfg.models[key.model].id),
                escape(cfg.region_name(key.source)),
                if key.cross_region { "x" } else { "in" },
            ),
        }
    }

    async fn take(&self, key: QuotaKey, limits: QuotaLimits, id: &str, args: TakeArgs) -> Take {
        let keys = self.redis_keys(key);
        let scripts = &self.scripts;
        let reply = self
            .link
            .call(async |c| scripts.take(c, &keys, id, limits, args).await)
            .await;
        match reply {
            Ok((1, g_r, g_t, _)) => Take::Granted(g_r.max(0) as u64, g_t.max(0) as u64),
            Ok((0, _, _, wait_ms)) => {
                let retry_after = if wait_ms < 0 {
                    MINUTE
                } else {
                    Duration::from_millis(wait_ms.max(1) as u64)
                };
                Take::Denied(retry_after)
            }
            // A duplicate id: the call was delivered twice and its first run's answer lost.
            Ok(_) | Err(_) => Take::Unsure,
        }
    }
}

fn lease_entry(
    leases: &mut HashMap<QuotaKey, Lease>,
    key: QuotaKey,
    limits: QuotaLimits,
) -> &mut Lease {
    let l = leases.entry(key).or_insert_with(|| Lease::new(limits));
    l.limits = limits;
    l
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
