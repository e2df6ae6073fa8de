//! Spillway's routing policy, sans-IO.
//!
//! (module docs: to be written — see DESIGN §3)
#![forbid(unsafe_code)]

pub mod health;
pub mod limit;
pub mod quota;
pub mod retry;
pub mod router;

pub use health::{Health, HealthConfig};
pub use limit::{AimdConfig, AdaptiveLimit};
pub use quota::{QuotaBucket, QuotaDenied, QuotaLimits, Reservation, TokenBucket};
pub use retry::{RetryBudget, RetryBudgetConfig};
pub use router::{
    Admission, Candidate, DeploymentIx, DeploymentSpec, DeploymentView, FailureKind, Outcome, Plan,
    Reason, RegionIx, Rejection, RouteRequest, Router, RouterConfig, Step,
};
