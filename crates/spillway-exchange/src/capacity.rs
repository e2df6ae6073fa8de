//! The exchange's one window onto shared state: deployment admission, release and the global
//! retry budget, which the routing core owns. The exchange calls it synchronously while it
//! handles an event, so a failover's next admission is decided in the same step as the failure.
//!
//! The gateway implements it over its router lock; tests and the bench use [`Router`] itself.
use std::time::Duration;

use spillway_core::{Admission, Demand, Outcome, Plan, Router};

pub trait Capacity {
    /// Admit the request on the first step of `plan` at or after `from` that has room now.
    fn admit_next(
        &mut self,
        plan: &Plan,
        from: usize,
        demand: Demand,
        now: Duration,
    ) -> Option<(usize, Admission)>;

    /// Take one retry from the global retry budget; false when it is empty.
    fn try_retry(&mut self, now: Duration) -> bool;

    /// Give an admission back with its outcome; `charge` tokens the upstream produced for a
    /// failed or cancelled attempt are still charged to the deployment.
    fn release(&mut self, admission: Admission, outcome: Outcome, charge: u64, now: Duration);
}

impl Capacity for Router {
    fn admit_next(
        &mut self,
        plan: &Plan,
        from: usize,
        demand: Demand,
        now: Duration,
    ) -> Option<(usize, Admission)> {
        Router::admit_next(self, plan, from, demand, now)
    }

    fn try_retry(&mut self, now: Duration) -> bool {
        Router::try_retry(self, now)
    }

    fn release(&mut self, admission: Admission, outcome: Outcome, charge: u64, now: Duration) {
        let d = admission.deployment;
        Router::release(self, admission, outcome, now);
        if charge > 0 && matches!(outcome, Outcome::Failure(_)) {
            self.charge_tokens(d, charge, now);
        }
    }
}
