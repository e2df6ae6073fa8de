//! The routing core of one gateway process behind its lock, with its clock.
//!
//! The core is sans-IO: every call passes `now` (time since the gateway started) and the seeded
//! RNG kept here. The lock is held only for a decision (a few microseconds), never across I/O.
use rand::rngs::SmallRng;
use spillway_core::Router;

/// The router and its RNG, locked together.
pub struct RouterCell {
    pub router: Router,
    pub rng: SmallRng,
}
