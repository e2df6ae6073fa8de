//! Spillway's gateway: the I/O around the two sans-IO crates. `spillway-core` decides where a
//! request may go; `spillway-exchange` owns one request's life; this crate listens, translates,
//! drives and writes.
//!
//! A map for a newcomer, from the network inwards (each module only uses those below it):
//!
//! * [`edge`]: the listeners (one per region's endpoint), the path table, operations routes,
//!   start-up and graceful shutdown.
//! * [`api`]: the adapters (OpenAI chat completions, the Bedrock runtime, the inference-profile
//!   control plane) and model resolution; they translate wire ⇄ canonical and nothing more.
//! * [`drive`]: the task that runs one [`spillway_exchange::Exchange`]: upstream attempts, the
//!   client side, the stream codecs, and [`drive::finish`], the one place a request ends.
//! * [`state`]: [`state::AppState`] and the backends picked once at start-up (quota book,
//!   deployment state, profile store; memory or Redis).
//! * Leaves: [`upstream`] (targets, the pooled HTTP client, and the one classifier of upstream
//!   answers), [`sigv4`] (verification, and signing to Bedrock upstreams), [`config`] (raw →
//!   validated), [`tls`] (listener certificates; a local CA for trying TLS), [`error`] (the
//!   edge error rendered in each API's shape), [`metrics`], [`audit`], [`dashboard`] (the live
//!   dashboard's figures), [`telemetry`] (OpenTelemetry traces, written at a request's end like
//!   the metrics).
#![forbid(unsafe_code)]

pub mod api;
pub mod audit;
pub mod config;
pub mod dashboard;
pub mod drive;
pub mod edge;
pub mod error;
pub mod metrics;
pub mod sigv4;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod upstream;

pub use config::{Config, ConfigError};
pub use edge::server::{Gateway, GatewayError};
pub use error::EdgeError;
