//! The embedded default configuration (DESIGN §6), as TOML so that it is readable and can be
//! printed as a starting point (`spillway serve --print-default-config`).

/// The embedded default configuration file.
pub const DEFAULT_TOML: &str = include_str!("default.toml");
