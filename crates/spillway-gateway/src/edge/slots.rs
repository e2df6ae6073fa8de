//! The connection slots of one listener: at most `cap` connections, and when every slot is
//! taken, the connection idle the longest makes room for the new one.
//!
//! Why evict instead of refusing: a flood of connections that never send a request fills the
//! cap in a second, and if new connections were simply refused, ordinary clients would be shut
//! out until the header-read timeout cut the flood (30 s by default). nginx answers the same
//! problem by closing its "reusable" (idle keep-alive) connections when it runs out of free
//! ones; here any connection with no request in flight may be closed, whether it is waiting
//! between keep-alive requests, has never sent anything, or is sending a head slowly. A
//! connection with a request in flight (from the end of its head to the end of its response
//! body) is never evicted, so an established client's work is not cut; when every connection
//! has one in flight, the new connection is refused (accepted and closed at once).
//!
//! The victim is the idle connection whose last activity (accept, or the end of its last
//! response) is the oldest: a stamp from one counter per listener, so "oldest" is exact and
//! costs one atomic add per request. Choosing it scans the open connections, which happens
//! only when the cap is full (a few microseconds for thousands of connections); keeping a
//! sorted index instead would cost a lock on every request's end.
//!
//! The victim is removed from the table at once, so the table never holds more than `cap`
//! entries; its task sees the eviction ([`Slot::evicted`]) and closes the connection (or, if a
//! request's head arrived in the meantime, finishes that request first, as at shutdown).
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

/// One open connection's slot: its requests in flight and when it was last active.
#[derive(Debug, Default)]
pub(super) struct Slot {
    /// Requests in flight on the connection (head received, response body not yet done).
    active: AtomicUsize,
    /// The listener's activity stamp when the connection last became idle.
    idle_since: AtomicU64,
    /// Notified once when the connection is chosen to make room.
    evict: Notify,
    /// Woken whenever a request of the connection starts or ends.
    activity: Notify,
}

impl Slot {
    /// Whether the connection has no request in flight.
    pub(super) fn is_idle(&self) -> bool {
        self.active.load(Ordering::Acquire) == 0
    }

    /// Waits until this connection is chosen to make room for a new one.
    pub(super) async fn evicted(&self) {
        self.evict.notified().await;
    }

    /// Returns once the connection has had no request in flight for `limit` on end: the idle
    /// timeout of protocols whose server has none of its own (HTTP/2, and the first bytes
    /// before the protocol is known).
    pub(super) async fn idle_for(&self, limit: Duration) {
        loop {
            let activity = self.activity.notified();
            tokio::pin!(activity);
            // Registered before the check, so a request starting in between still wakes us.
            activity.as_mut().enable();
            if self.is_idle() {
                tokio::select! {
                    () = tokio::time::sleep(limit) => return,
                    () = activity => {}
                }
            } else {
                activity.await;
            }
        }
    }
}

/// Connection identity within one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ConnId(u64);

/// The slots of one listener.
#[derive(Debug)]
pub(super) struct Slots {
    cap: usize,
    /// Source of activity stamps (monotonic within the listener).
    clock: AtomicU64,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    open: HashMap<ConnId, Arc<Slot>>,
}

/// What the listener does with a newly accepted connection.
pub(super) enum Admission {
    /// Serve it; `evicted` says whether an idle connection was closed to make room.
    Serve { held: Held, evicted: bool },
    /// Every slot has a request in flight: close it at once.
    Full,
}

impl Slots {
    pub(super) fn new(cap: usize) -> Arc<Slots> {
        Arc::new(Slots {
            cap: cap.max(1),
            clock: AtomicU64::new(0),
            table: Mutex::new(Table::default()),
        })
    }

    /// A slot for a new connection: a free one, or the one of the connection idle the longest.
    pub(super) fn admit(self: &Arc<Self>) -> Admission {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let mut evicted = false;
        if table.open.len() >= self.cap {
            let Some(victim) = oldest_idle(&table.open) else {
                return Admission::Full;
            };
            if let Some(slot) = table.open.remove(&victim) {
                slot.evict.notify_one();
                evicted = true;
            }
        }
        let id = ConnId(table.next);
        table.next += 1;
        let slot = Arc::new(Slot::default());
        slot.idle_since.store(self.stamp(), Ordering::Release);
        table.open.insert(id, slot.clone());
        drop(table);
        let held = Held {
            id,
            marker: Marker {
                slots: self.clone(),
                slot,
            },
        };
        Admission::Serve { held, evicted }
    }

    fn stamp(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// Connections holding a slot now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
            .len()
    }
}

/// The idle connection whose last activity is the oldest.
fn oldest_idle(open: &HashMap<ConnId, Arc<Slot>>) -> Option<ConnId> {
    open.iter()
        .filter(|(_, slot)| slot.is_idle())
        .min_by_key(|(_, slot)| slot.idle_since.load(Ordering::Acquire))
        .map(|(id, _)| *id)
}

/// A connection's hold on its slot, released when the connection's task ends.
#[derive(Debug)]
pub(super) struct Held {
    id: ConnId,
    marker: Marker,
}

impl Held {
    pub(super) fn slot(&self) -> &Arc<Slot> {
        &self.marker.slot
    }

    /// What the connection's service marks its requests with.
    pub(super) fn marker(&self) -> Marker {
        self.marker.clone()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let slots = &self.marker.slots;
        let mut table = slots.table.lock().unwrap_or_else(PoisonError::into_inner);
        // An evicted connection's entry is already gone (and its id is never reused).
        table.open.remove(&self.id);
    }
}

/// Marks the requests of one connection in flight.
#[derive(Debug, Clone)]
pub(super) struct Marker {
    slots: Arc<Slots>,
    slot: Arc<Slot>,
}

impl Marker {
    /// Marks one request in flight on this connection until the mark is dropped.
    pub(super) fn request(&self) -> InFlight {
        self.slot.active.fetch_add(1, Ordering::AcqRel);
        self.slot.activity.notify_waiters();
        InFlight(self.clone())
    }
}

/// One request of a connection in flight; when it drops (the response body is done) the
/// connection is idle again from the current stamp, if no other request is in flight.
#[derive(Debug)]
pub(super) struct InFlight(Marker);

impl Drop for InFlight {
    fn drop(&mut self) {
        let Marker { slots, slot } = &self.0;
        slot.idle_since.store(slots.stamp(), Ordering::Release);
        slot.active.fetch_sub(1, Ordering::AcqRel);
        slot.activity.notify_waiters();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn held(a: Admission) -> (Held, bool) {
        match a {
            Admission::Serve { held, evicted } => (held, evicted),
            Admission::Full => panic!("refused"),
        }
    }

    fn was_evicted(slot: &Slot) -> bool {
        let notified = slot.evict.notified();
        tokio::pin!(notified);
        // `enable` consumes a stored permit: true when notify_one ran before.
        notified.as_mut().enable()
    }

    #[test]
    fn a_free_slot_needs_no_eviction() {
        let slots = Slots::new(2);
        let (a, ea) = held(slots.admit());
        let (b, eb) = held(slots.admit());
        assert!(!ea && !eb);
        assert_eq!(slots.len(), 2);
        drop(a);
        assert_eq!(slots.len(), 1);
        let (_c, ec) = held(slots.admit());
        assert!(!ec, "a slot freed by a closed connection is reused");
        assert!(!was_evicted(b.slot()));
    }

    #[test]
    fn at_the_cap_the_connection_idle_longest_makes_room() {
        let slots = Slots::new(3);
        let (a, _) = held(slots.admit());
        let (b, _) = held(slots.admit());
        let (c, _) = held(slots.admit());
        // `a` serves a request after `b` and `c` were accepted: it is the most recently active.
        drop(a.marker().request());
        let (d, evicted) = held(slots.admit());
        assert!(evicted);
        assert!(was_evicted(b.slot()), "b was idle the longest");
        assert!(!was_evicted(a.slot()) && !was_evicted(c.slot()));
        assert_eq!(slots.len(), 3, "the table never holds more than the cap");
        // The evicted connection's task ends later; its entry is already gone.
        drop(b);
        assert_eq!(slots.len(), 3);
        drop((c, d));
    }

    #[test]
    fn a_connection_with_a_request_in_flight_is_never_evicted() {
        let slots = Slots::new(2);
        let (a, _) = held(slots.admit());
        let (b, _) = held(slots.admit());
        let busy_a = a.marker().request();
        let (c, evicted) = held(slots.admit());
        assert!(evicted && was_evicted(b.slot()) && !was_evicted(a.slot()));
        let busy_c = c.marker().request();
        assert!(
            matches!(slots.admit(), Admission::Full),
            "all busy: refused"
        );
        drop(busy_c);
        let (_d, evicted) = held(slots.admit());
        assert!(evicted && was_evicted(c.slot()) && !was_evicted(a.slot()));
        drop(busy_a);
    }

    #[test]
    fn two_requests_in_flight_keep_a_connection_busy_until_both_end() {
        let slots = Slots::new(1);
        let (a, _) = held(slots.admit());
        let first = a.marker().request();
        let second = a.marker().request();
        drop(first);
        assert!(!a.slot().is_idle());
        assert!(matches!(slots.admit(), Admission::Full));
        drop(second);
        assert!(a.slot().is_idle());
        let (_b, evicted) = held(slots.admit());
        assert!(evicted);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_for_counts_only_time_without_a_request_in_flight() {
        let slots = Slots::new(1);
        let (a, _) = held(slots.admit());
        let limit = Duration::from_secs(5);
        let busy = a.marker().request();
        let watch = a.slot().idle_for(limit);
        tokio::pin!(watch);
        let waited = tokio::time::timeout(limit * 3, watch.as_mut()).await;
        assert!(waited.is_err(), "a request in flight is never idle");
        drop(busy);
        let idle = tokio::time::Instant::now();
        tokio::time::sleep(limit / 2).await;
        // A request starting and ending half-way restarts the count from its end.
        drop(a.marker().request());
        let restarted = tokio::time::Instant::now();
        watch.as_mut().await;
        assert_eq!(restarted.elapsed(), limit);
        assert!(idle.elapsed() > limit);
    }
}
