//! Spillway's gateway: configuration, listeners, authentication, the request pipeline, upstream
//! clients, state and metrics. The routing policy lives in `spillway-core`; this crate does the
//! I/O and feeds outcomes back to it.
#![forbid(unsafe_code)]

pub mod attempt;
pub mod config;
pub mod error;
pub mod metrics;
pub mod pipeline;
pub mod relay;
pub mod resolve;
pub mod server;
pub mod state;
pub mod upstream;

pub use config::{Config, ConfigError};
pub use error::EdgeError;
pub use server::{Gateway, GatewayError};
