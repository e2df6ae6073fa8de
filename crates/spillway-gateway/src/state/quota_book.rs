//! Tenant quotas: the book a request's reservation is taken from and settled back to.
//!
//! A request reserves one request and `input + max_tokens × burndown` tokens up front on the
//! quota its call draws on ([`QuotaKey`]); the end of the request settles the reservation to
//! the tokens its answer really used, or cancels it in full when nothing was served. The book is
//! a trait with two implementations, picked once at start-up: [`MemoryBook`] (one process, exact
//! token buckets of the routing core) and the Redis-shared book (`shared_quota`, leases of
//! global buckets). Request code never asks which one it has.
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use spillway_core::{QuotaBucket, QuotaDenied, QuotaLimits, RegionIx, Reservation};

use crate::config::{ModelIx, TenantIx};

/// Which quota a request draws on: a tenant's in-region quota (plain model id) or its
/// cross-region quota (profile id), per model and source region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotaKey {
    pub tenant: TenantIx,
    pub model: ModelIx,
    pub source: RegionIx,
    pub cross_region: bool,
}

/// Where a reservation was drawn from, so that it settles back there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drawn {
    /// The memory book.
    Book,
    /// This instance's lease of the global (Redis) bucket.
    Lease,
    /// The local fallback bucket of this link generation (Redis was unreachable).
    Fallback(u64),
}

/// A reservation held by one request until its end settles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Ticket {
    pub key: QuotaKey,
    pub reservation: Reservation,
    pub drawn: Drawn,
}

pub type Reserving<'a> = Pin<Box<dyn Future<Output = Result<Ticket, QuotaDenied>> + Send + 'a>>;

/// A book of tenant quotas.
pub trait QuotaBook: Send + Sync {
    /// Reserve one request and `tokens` on `key`'s quota, whose limits are `limits`.
    fn reserve(&self, key: QuotaKey, limits: QuotaLimits, tokens: u64) -> Reserving<'_>;

    /// Settle a reservation to `used` tokens, or cancel it in full (`None`).
    fn settle(&self, ticket: Ticket, used: Option<u64>);
}

/// The one-process book: a token bucket per quota, on the routing core's arithmetic.
pub struct MemoryBook {
    epoch: Instant,
    buckets: Mutex<HashMap<QuotaKey, QuotaBucket>>,
}

impl MemoryBook {
    pub fn new(epoch: Instant) -> MemoryBook {
        MemoryBook {
            epoch,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn reserve_now(
        &self,
        key: QuotaKey,
        limits: QuotaLimits,
        tokens: u64,
    ) -> Result<Ticket, QuotaDenied> {
        let now = self.now();
        let mut book = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = book
            .entry(key)
            .or_insert_with(|| QuotaBucket::new(limits, now));
        let reservation = bucket.reserve(tokens, now)?;
        Ok(Ticket {
            key,
            reservation,
            drawn: Drawn::Book,
        })
    }
}

impl QuotaBook for MemoryBook {
    fn reserve(&self, key: QuotaKey, limits: QuotaLimits, tokens: u64) -> Reserving<'_> {
        let answer = self.reserve_now(key, limits, tokens);
        Box::pin(std::future::ready(answer))
    }

    fn settle(&self, ticket: Ticket, used: Option<u64>) {
        let now = self.now();
        let mut book = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = book.get_mut(&ticket.key) {
            match used {
                Some(tokens) => bucket.settle(ticket.reservation, tokens, now),
                None => bucket.cancel(ticket.reservation, now),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> QuotaKey {
        QuotaKey {
            tenant: TenantIx(0),
            model: ModelIx(0),
            source: RegionIx(0),
            cross_region: false,
        }
    }

    #[test]
    fn a_cancelled_reservation_gives_the_request_back_and_a_settled_one_keeps_it() {
        let book = MemoryBook::new(Instant::now());
        let limits = QuotaLimits {
            rpm: Some(1),
            tpm: None,
        };
        let t = book.reserve_now(key(), limits, 10).unwrap();
        assert!(
            book.reserve_now(key(), limits, 10).is_err(),
            "one request a minute"
        );
        book.settle(t, None);
        let t = book.reserve_now(key(), limits, 10).unwrap();
        book.settle(t, Some(10));
        assert!(book.reserve_now(key(), limits, 10).is_err());
    }
}
