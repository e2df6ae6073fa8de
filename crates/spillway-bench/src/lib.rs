//! Spillway's load generator: open-loop arrivals, a client that measures each request the way a
//! user sees it (time to first token, end to end, where it was served), and summaries.
//!
//! Open loop means requests are sent at their arrival times whatever happened to earlier ones,
//! as real traffic is; a closed loop would slow down when the gateway does and hide throttling.
//!
//! `spillway bench` is built from these parts: [`traces`] and [`arrivals`] say when requests
//! arrive, [`client`] sends them and measures each, [`oracle`] computes the bound no router can
//! beat on the same arrivals and [`prefill_floor`] the least prefill any could reach with prefix
//! caches, [`report`] turns the results into the figures of each policy, and
//! [`html`] draws them; [`workload`] assembles the offered load, [`topology`] is the simulated
//! world it is offered to, and [`sizing`] gives that world's regions their slots.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod arrivals;
pub mod client;
pub mod html;
pub mod oracle;
pub mod overhead;
pub mod prefill_floor;
pub mod report;
pub mod sizing;
pub mod summary;
pub mod topology;
pub mod traces;
pub mod workload;

pub use arrivals::{gamma, poisson};
pub use client::{LoadClient, RequestResult, RequestSpec};
pub use summary::{Summary, percentile};
