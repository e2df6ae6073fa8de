//! The export path: the OpenTelemetry SDK's batch span processor in front of the OTLP/HTTP
//! (protobuf) exporter.
//!
//! The request path only hands a finished span to the processor's bounded queue (a
//! `try_send`: when the queue is full the span is dropped, never waited for). The processor's
//! own thread sends batches every `export_interval_ms`, each bounded by `export_timeout_ms`. A
//! failed export (collector unreachable, refusing, slow) loses that batch and costs a warning,
//! at most one per [`WARN_EVERY`] with a count of the failures in between; shutdown sends
//! what is queued.
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanExporter, SpanProcessor,
};

use crate::config::TelemetryConfig;

/// At most one warning about failed exports per this long.
pub(super) const WARN_EVERY: Duration = Duration::from_secs(60);

/// Why the exporter could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the OTLP trace exporter for {url}: {reason}")]
pub struct ExportSetupError {
    url: String,
    reason: String,
}

/// The batch processor sending to the configured collector.
pub(super) fn processor(cfg: &TelemetryConfig) -> Result<BatchSpanProcessor, ExportSetupError> {
    let otlp = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(cfg.traces_url.clone())
        .with_timeout(cfg.export_timeout)
        .build()
        .map_err(|e| ExportSetupError {
            url: cfg.traces_url.clone(),
            reason: e.to_string(),
        })?;
    let exporter = WarnOnFailure {
        inner: otlp,
        url: cfg.traces_url.clone(),
        warnings: Mutex::new(Warnings::default()),
    };
    let batch = BatchConfigBuilder::default()
        .with_scheduled_delay(cfg.export_interval)
        .build();
    let mut processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch)
        .build();
    let resource = Resource::builder()
        .with_service_name(cfg.service_name.clone())
        .build();
    processor.set_resource(&resource);
    Ok(processor)
}

/// The OTLP exporter, warning (rate-limited) when an export fails.
#[derive(Debug)]
struct WarnOnFailure<E> {
    inner: E,
    url: String,
    warnings: Mutex<Warnings>,
}

impl<E: SpanExporter> SpanExporter for WarnOnFailure<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        if let Err(e) = &result {
            let due = self
                .warnings
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .failed(Instant::now());
            if let Some(failures) = due {
                tracing::warn!(collector = %self.url, error = %e, spans, failures,
                    "cannot export traces (the batch is dropped; requests are not affected); next warning in {}s at the earliest",
                    WARN_EVERY.as_secs());
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// When the last warning was given, and the failures since.
#[derive(Debug, Default)]
struct Warnings {
    last: Option<Instant>,
    since: u64,
}

impl Warnings {
    /// Counts a failure at `now`; `Some(failures)` (counting this one) when a warning is due.
    fn failed(&mut self, now: Instant) -> Option<u64> {
        self.since += 1;
        let due = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= WARN_EVERY);
        if !due {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_warn_once_per_period_with_the_count_in_between() {
        let mut w = Warnings::default();
        let t0 = Instant::now();
        assert_eq!(w.failed(t0), Some(1));
        assert_eq!(w.failed(t0 + Duration::from_secs(1)), None);
        assert_eq!(w.failed(t0 + Duration::from_secs(59)), None);
        assert_eq!(w.failed(t0 + WARN_EVERY), Some(3));
        assert_eq!(w.failed(t0 + WARN_EVERY + Duration::from_secs(1)), None);
    }
}
