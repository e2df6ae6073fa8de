//! One snapshot a second for every viewer, built once.
//!
//! The first viewer starts a ticker task; it builds a snapshot each second and publishes the
//! same bytes on a `watch` channel that every viewer's event stream reads. When no viewer is
//! left (only the feed's own receiver remains) or the builder says stop (the gateway drains),
//! the ticker ends and drops the sender, which ends every viewer's stream.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// How often a snapshot is built while someone watches.
pub const TICK: Duration = Duration::from_secs(1);

/// The running ticker's channel, if one runs.
#[derive(Debug, Default)]
pub struct Feed {
    current: Mutex<Option<watch::Receiver<Arc<str>>>>,
}

impl Feed {
    /// A receiver of snapshots whose current value is fresh. Starts the ticker (calling `build`
    /// now and then once per [`TICK`]) when none runs. `build` returns `None` when the gateway
    /// no longer serves viewers (draining); then so does this.
    pub fn subscribe<F>(self: &Arc<Self>, build: F) -> Option<watch::Receiver<Arc<str>>>
    where
        F: Fn() -> Option<Arc<str>> + Send + 'static,
    {
        let mut current = self.lock();
        if let Some(rx) = current.as_ref().filter(|rx| rx.has_changed().is_ok()) {
            return Some(rx.clone());
        }
        let first = build()?;
        let (tx, rx) = watch::channel(first);
        *current = Some(rx.clone());
        drop(current);
        tokio::spawn(self.clone().tick(tx, build));
        Some(rx)
    }

    async fn tick<F>(self: Arc<Self>, tx: watch::Sender<Arc<str>>, build: F)
    where
        F: Fn() -> Option<Arc<str>> + Send + 'static,
    {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await; // the first tick is immediate; the first snapshot is built
        loop {
            interval.tick().await;
            {
                // Decided under the lock `subscribe` takes, so that no viewer joins a
                // channel that is about to close.
                let mut current = self.lock();
                if tx.receiver_count() <= 1 {
                    *current = None;
                    return;
                }
            }
            match build() {
                Some(snapshot) => {
                    tx.send_replace(snapshot);
                }
                None => {
                    *self.lock() = None;
                    return;
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<watch::Receiver<Arc<str>>>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}
