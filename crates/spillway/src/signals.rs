//! The signals `spillway serve` acts on:
//!
//! * SIGHUP: reload the configuration file (validated first; on errors the running one stays,
//!   and every error is logged). The process keeps running.
//! * SIGTERM: drain (`/readyz` fails, new connections stop after `[server] drain_delay_ms`,
//!   in-flight requests finish within the grace period) — what orchestrators send.
//! * SIGINT (Ctrl-C): stop accepting at once and let in-flight requests finish.
use spillway_gateway::Gateway;

/// How `serve` was asked to stop.
pub enum Stop {
    Interrupt,
    Terminate,
}

/// Serve until SIGINT or SIGTERM; reload on every SIGHUP meanwhile.
#[cfg(unix)]
pub async fn until_stop(gateway: &Gateway) -> Stop {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return Stop::Interrupt;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Stop::Interrupt,
            _ = term.recv() => return Stop::Terminate,
            _ = hup.recv() => match gateway.reload_from_file().await {
                Ok(summary) => eprintln!("spillway: {summary}"),
                Err(e) => eprintln!("spillway: {e}"),
            },
        }
    }
}

#[cfg(not(unix))]
pub async fn until_stop(_gateway: &Gateway) -> Stop {
    let _ = tokio::signal::ctrl_c().await;
    Stop::Interrupt
}

/// SIGINT or SIGTERM (for `spillway sim`).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
