//! The audit log: one JSON line per request, written in the source region like Bedrock's
//! invocation logs, to stdout or appended to a file (`[audit] sink`).
//!
//! A record carries the request id, tenant, API, source region, model, the profile ARN the
//! request named and its application profile's tags, tokens, latency, outcome, and the cost at
//! the **source region's** price (no routing surcharge, whichever region served it).
//! `inferenceRegion` is present only when the request was served outside its source region;
//! `legs` only when a stream was continued in another region after a break.
//!
//! Lines go through an unbounded channel to one writer task, so the request path never waits
//! on the disk.
use std::time::SystemTime;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::config::AuditSink;

/// The sending half of the audit log.
pub struct AuditLog {
    tx: Option<mpsc::UnboundedSender<String>>,
}

impl AuditLog {
    /// Start the writer task for `sink` (must run inside a tokio runtime unless the sink is off).
    pub fn start(sink: &AuditSink) -> AuditLog {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let sink = sink.clone();
        match sink {
            AuditSink::Off => return AuditLog { tx: None },
            AuditSink::Stdout => {
                tokio::spawn(async move {
                    let mut out = tokio::io::stdout();
                    while let Some(line) = rx.recv().await {
                        if out.write_all(line.as_bytes()).await.is_err() {
                            break;
                        }
                        let _ = out.flush().await;
                    }
                });
            }
            AuditSink::File(path) => {
                tokio::spawn(async move {
                    let file = tokio::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .await;
                    let mut file = match file {
                        Ok(f) => f,
                        Err(e) => {
                            tracing::error!(path = %path.display(), error = %e, "cannot open the audit log; audit records are dropped");
                            return;
                        }
                    };
                    while let Some(line) = rx.recv().await {
                        if let Err(e) = file.write_all(line.as_bytes()).await {
                            tracing::error!(error = %e, "cannot write the audit log");
                        }
                    }
                });
            }
        }
        AuditLog { tx: Some(tx) }
    }

    pub fn is_on(&self) -> bool {
        self.tx.is_some()
    }

    pub fn write(&self, record: &AuditRecord<'_>) {
        if let Some(tx) = &self.tx
            && let Ok(mut line) = serde_json::to_string(record)
        {
            line.push('\n');
            let _ = tx.send(line);
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord<'a> {
    pub timestamp: String,
    pub request_id: &'a str,
    pub tenant: Option<&'a str>,
    pub api: &'a str,
    pub source_region: &'a str,
    pub model_id: Option<&'a str>,
    pub requested: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inference_profile_arn: Option<&'a str>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub tags: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inference_region: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_reason: Option<&'a str>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub latency_ms: u64,
    pub outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
    /// A stream continued after a break (mid-stream failover): every attempt, in order, with
    /// its region, why it was sent and how it ended. Absent for other requests.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub legs: Vec<AuditLeg<'a>>,
}

/// One attempt of a continued stream: `result` is `ok`, `failed:<kind>` (a break, or a failure
/// before it answered) or `cancelled`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct AuditLeg<'a> {
    pub region: &'a str,
    pub reason: &'static str,
    pub result: String,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    pub currency: &'static str,
    pub input: f64,
    pub output: f64,
    pub total: f64,
}

/// Now, as the record's `timestamp`.
pub fn now() -> String {
    DateTime::from(SystemTime::now())
        .fmt(Format::DateTime)
        .unwrap_or_default()
}

/// An application profile's tags, as the record's `tags`.
pub fn tags(t: &[(String, String)]) -> Map<String, Value> {
    t.iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}
