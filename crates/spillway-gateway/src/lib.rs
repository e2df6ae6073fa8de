//! Spillway's gateway: configuration, listeners, authentication, the request pipeline, upstream
//! clients, state and metrics. The routing policy lives in `spillway-core`; this crate does the
//! I/O and feeds outcomes back to it.
#![forbid(unsafe_code)]

pub mod app_profiles;
pub mod audit;
pub mod bedrock_api;
pub mod bedrock_sign;
pub mod codec;
pub mod config;
pub mod drive;
pub mod error;
pub mod metrics;
pub mod pipeline;
pub mod profiles_api;
pub mod quota_book;
pub mod redis_link;
pub mod resolve;
pub mod routing;
pub mod server;
pub mod shared_deployments;
pub mod shared_quota;
pub mod sigv4;
pub mod state;
pub mod upstream;

pub use config::{Config, ConfigError};
pub use error::EdgeError;
pub use server::{Gateway, GatewayError};
