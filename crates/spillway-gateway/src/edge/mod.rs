//! The edge: what faces the network before any API adapter runs: the listeners (one per
//! region's endpoint), the path table that picks an adapter, the operations routes, and the
//! process around them (start-up and graceful shutdown).

pub mod server;
