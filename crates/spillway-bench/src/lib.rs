//! Spillway's load generator: open-loop arrivals, a client that measures each request the way a
//! user sees it (time to first token, end to end, where it was served), and summaries.
//!
//! Open loop means requests are sent at their arrival times whatever happened to earlier ones,
//! as real traffic is; a closed loop would slow down when the gateway does and hide throttling.
#![forbid(unsafe_code)]

pub mod arrivals;
pub mod client;
pub mod summary;

pub use arrivals::poisson;
pub use client::{LoadClient, RequestResult, RequestSpec};
pub use summary::{Summary, percentile};
