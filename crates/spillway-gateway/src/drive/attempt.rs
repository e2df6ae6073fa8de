//! One upstream attempt as a stream of exchange events: the request sent to a deployment, its
//! head classified (the one place, `upstream::classify_status`), its body decoded into canonical
//! pieces (SSE or Bedrock event-stream for a stream, the whole body for an answer), ending with
//! `UpstreamEnd` or `UpstreamError`. It keeps no deadline of its own: the exchange does, and the
//! driver drops this stream when the exchange cancels the attempt.
//!
//! # Non-streamed requests are streamed from the upstream
//!
//! A client that wants a whole answer still gets its attempts sent as streams (`stream: true`
//! with `stream_options.include_usage` to OpenAI-compatible and simulated upstreams,
//! ConverseStream to Bedrock), and the answer is assembled here from the chunks
//! ([`super::assemble`]): each chunk goes to the exchange as it comes, the assembled answer last.
//! Why, rather than asking for the whole answer:
//!
//! * An upstream sends a non-streamed answer's head only when the whole generation is done, so
//!   the only deadline that could apply to it is the one for the longest generation
//!   (`request_timeout_ms`, 10 minutes): an upstream that hangs before answering would hold the
//!   request that long. Streamed, its first chunk comes after the prefill, so the exchange's
//!   `first_byte_timeout_ms` means the first token for every request, and each next chunk must
//!   come within it too; a hung or stalled upstream fails over like a stream's, and nothing
//!   reached the client yet, so even a failure midway moves the request.
//! * The usage is the upstream's own final report, exactly as for a stream, and a client that
//!   leaves is billed for the chunks generated so far.
//!
//! The cost is the assembly (a few string appends per chunk) and bytes of SSE framing. An upstream
//! that ignores `stream: true` and answers JSON is read whole. A native InvokeModel body passed
//! through to Bedrock cannot be assembled (its stream is the model family's own events) and is
//! sent as it came: for it only `request_timeout_ms` applies. So is an embeddings request: it
//! has no stream; its answer is relayed whole, with the usage its body reports.
use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use spillway_core::{DeploymentIx, FailureKind};
use spillway_exchange::{AttemptId, Continuation, Event, Failure, Piece};
use spillway_proto::bedrock::{ConverseResponse, FrameDecoder, converse_to_chat_completion};
use spillway_proto::embeddings::EmbeddingsResponse;
use spillway_proto::{ChatCompletion, Usage};

use super::assemble::Assembly;
use super::ctx::RequestCtx;
use crate::drive::codec::{UpstreamDecoder, UpstreamEvent};
use crate::state::AppState;
use crate::upstream::{self, Protocol, UpstreamFailure, UpstreamTarget};
use spillway_proto::canonical::Request;

/// What an attempt needs to know about its request, owned (the stream outlives the call).
struct Spec {
    app: Arc<AppState>,
    id: AttemptId,
    deployment: DeploymentIx,
    request_id: String,
    /// Trace-context headers naming this attempt's span (empty with telemetry off).
    trace: http::HeaderMap,
    model_name: String,
    /// The upstream is asked for a stream (see the module docs).
    stream: bool,
    /// The client wants a whole answer: it is assembled from the stream.
    assemble: bool,
    passthrough: bool,
    /// An embeddings request: answered whole, its usage in the answer's `usage`.
    embed: bool,
}

enum Phase {
    Send {
        url: http::Uri,
        body: Bytes,
    },
    Streaming {
        body: BoxStream<'static, Result<Bytes, hyper::Error>>,
        decoder: UpstreamDecoder,
        assembly: Option<Box<Assembly>>,
    },
    Whole(http::Response<hyper::body::Incoming>),
    Over,
}

/// Which attempt to send where: its id, its deployment, and (a continuation) what it continues.
pub struct Sending<'a> {
    pub id: AttemptId,
    pub deployment: DeploymentIx,
    pub resume: Option<&'a Continuation>,
}

/// Start an attempt of the request, sending `trace` (its `traceparent`, when telemetry is on)
/// with it.
pub fn start(
    app: &Arc<AppState>,
    sending: Sending<'_>,
    req: &Request,
    ctx: &RequestCtx,
    trace: http::HeaderMap,
) -> BoxStream<'static, Event> {
    let Sending {
        id,
        deployment,
        resume,
    } = sending;
    let target = &app.targets[deployment.0 as usize];
    let passthrough = ctx.invoke_passthrough.is_some();
    let embed = matches!(req, Request::Embed(_));
    let assemble = !req.is_stream() && !passthrough && !embed;
    let continued = match (resume, req) {
        (Some(c), Request::Chat(chat)) => {
            let form = app.cfg.deployments[deployment.0 as usize].continuation;
            let next = form
                .ok_or_else(|| "this upstream takes no continuation".to_string())
                .and_then(|form| upstream::continuation::continued(chat, c, form));
            Some(next.map(Request::Chat))
        }
        _ => None,
    };
    let sent = match continued {
        Some(Ok(next)) => target.request(&next, None, false),
        Some(Err(e)) => Err(e),
        None => target.request(req, ctx.invoke_passthrough.as_ref(), assemble),
    };
    let (url, body) = match sent {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(request_id = %ctx.id, error = %e, "the request cannot be sent to this upstream");
            let f = Failure::of(FailureKind::ClientError);
            return futures_util::stream::once(async move { Event::UpstreamError(id, f) }).boxed();
        }
    };
    let spec = Spec {
        app: app.clone(),
        id,
        deployment,
        request_id: ctx.id.clone(),
        trace,
        model_name: ctx.model_name.clone(),
        stream: req.is_stream() || assemble,
        assemble,
        passthrough,
        embed,
    };
    events(spec, Phase::Send { url, body }).boxed()
}

fn events(spec: Spec, phase: Phase) -> impl Stream<Item = Event> + Send + 'static {
    let state = (spec, phase, VecDeque::new());
    futures_util::stream::unfold(state, |(spec, mut phase, mut queue)| async move {
        loop {
            if let Some(ev) = queue.pop_front() {
                return Some((ev, (spec, phase, queue)));
            }
            phase = match phase {
                Phase::Over => return None,
                Phase::Send { url, body } => spec.send(url, body, &mut queue).await,
                Phase::Streaming {
                    body,
                    decoder,
                    assembly,
                } => spec.read(body, decoder, assembly, &mut queue).await,
                Phase::Whole(resp) => {
                    spec.whole(resp, &mut queue).await;
                    Phase::Over
                }
            };
        }
    })
}

impl Spec {
    fn target(&self) -> &UpstreamTarget {
        &self.app.targets[self.deployment.0 as usize]
    }

    fn bedrock(&self) -> bool {
        matches!(self.target().protocol, Protocol::Bedrock { .. })
    }

    async fn send(&self, url: http::Uri, body: Bytes, queue: &mut VecDeque<Event>) -> Phase {
        let (http, target) = (&self.app.http, self.target());
        let sent = upstream::send(http, target, url, body, &self.request_id, &self.trace).await;
        let resp = match sent {
            Ok(resp) => resp,
            Err(f) => {
                queue.push_back(Event::UpstreamError(self.id, failure(f)));
                return Phase::Over;
            }
        };
        queue.push_back(Event::UpstreamHead(self.id));
        if !self.stream || (self.assemble && is_json(resp.headers())) {
            // Not asked for a stream, or asked for a whole answer's sake and answered whole.
            return Phase::Whole(resp);
        }
        let decoder = if self.bedrock() && self.passthrough {
            UpstreamDecoder::Passthrough(FrameDecoder::new())
        } else if self.bedrock() {
            UpstreamDecoder::converse_stream(&self.model_name, &self.request_id, unix_now())
        } else {
            UpstreamDecoder::sse()
        };
        Phase::Streaming {
            body: http_body_util::BodyDataStream::new(resp.into_body()).boxed(),
            decoder,
            assembly: self.assemble.then(|| Box::new(Assembly::new())),
        }
    }

    /// The next chunk of a streamed body, decoded.
    async fn read(
        &self,
        mut body: BoxStream<'static, Result<Bytes, hyper::Error>>,
        mut decoder: UpstreamDecoder,
        mut assembly: Option<Box<Assembly>>,
        queue: &mut VecDeque<Event>,
    ) -> Phase {
        let end = match body.next().await {
            Some(Ok(bytes)) => self.decode(&mut decoder, &mut assembly, &bytes, queue),
            // The connection broke inside the body.
            Some(Err(_)) => Some(Failure::of(FailureKind::ServerError)),
            None if decoder.ends_at_eof() => {
                queue.push_back(Event::UpstreamEnd(self.id));
                return Phase::Over;
            }
            // The body ended before the stream's end marker.
            None => Some(Failure::of(FailureKind::ServerError)),
        };
        match end {
            Some(f) => {
                queue.push_back(Event::UpstreamError(self.id, f));
                Phase::Over
            }
            None if matches!(queue.back(), Some(Event::UpstreamEnd(_))) => Phase::Over,
            None => Phase::Streaming {
                body,
                decoder,
                assembly,
            },
        }
    }

    /// Decode one chunk into pieces (folding them into the answer being assembled, if any); a
    /// failure inside the stream ends it.
    fn decode(
        &self,
        decoder: &mut UpstreamDecoder,
        assembly: &mut Option<Box<Assembly>>,
        bytes: &[u8],
        queue: &mut VecDeque<Event>,
    ) -> Option<Failure> {
        for ev in decoder.feed(bytes) {
            let piece = match ev {
                UpstreamEvent::Done => {
                    if let Some(a) = assembly.take() {
                        queue.push_back(Event::UpstreamPiece(self.id, assembled(*a)));
                    }
                    queue.push_back(Event::UpstreamEnd(self.id));
                    return None;
                }
                UpstreamEvent::Error(detail) => {
                    tracing::warn!(request_id = %self.request_id, detail = %detail, "upstream error inside a stream");
                    return Some(Failure::of(FailureKind::ServerError));
                }
                UpstreamEvent::Raw(bytes, usage) => Piece::Frame { bytes, usage },
                UpstreamEvent::Chunk(chunk, raw) => match assembly {
                    Some(a) => {
                        a.add(&chunk);
                        // The exchange counts it; the client gets the assembled answer.
                        Piece::Chunk { chunk, raw: None }
                    }
                    None => Piece::Chunk { chunk, raw },
                },
            };
            queue.push_back(Event::UpstreamPiece(self.id, piece));
        }
        None
    }

    /// A non-streamed answer: read whole, into the canonical shape.
    async fn whole(
        &self,
        resp: http::Response<hyper::body::Incoming>,
        queue: &mut VecDeque<Event>,
    ) {
        use http_body_util::BodyExt;
        let native = native_usage(resp.headers());
        let bytes = match resp.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                let f = Failure::of(FailureKind::ServerError);
                return queue.push_back(Event::UpstreamError(self.id, f));
            }
        };
        let (raw, parsed) = if self.embed {
            let usage = serde_json::from_slice::<EmbeddingsResponse>(&bytes)
                .ok()
                .map(|r| Usage {
                    prompt_tokens: r.usage.prompt_tokens,
                    completion_tokens: 0,
                    total_tokens: r.usage.total_tokens,
                    prompt_tokens_details: None,
                });
            let answer = Piece::Answer {
                raw: bytes,
                parsed: None,
                usage: usage.or(native),
            };
            queue.push_back(Event::UpstreamPiece(self.id, answer));
            return queue.push_back(Event::UpstreamEnd(self.id));
        } else if self.bedrock() && self.passthrough {
            (bytes, None)
        } else if self.bedrock() {
            let Ok(c) = serde_json::from_slice::<ConverseResponse>(&bytes) else {
                let f = Failure::of(FailureKind::ServerError);
                return queue.push_back(Event::UpstreamError(self.id, f));
            };
            let canonical =
                converse_to_chat_completion(&c, &self.model_name, &self.request_id, unix_now());
            let raw = serde_json::to_vec(&canonical)
                .map(Bytes::from)
                .unwrap_or_default();
            (raw, Some(Box::new(canonical)))
        } else {
            let parsed = serde_json::from_slice::<ChatCompletion>(&bytes).ok();
            (bytes, parsed.map(Box::new))
        };
        let usage = parsed.as_ref().and_then(|c| c.usage).or(native);
        let answer = Piece::Answer { raw, parsed, usage };
        queue.push_back(Event::UpstreamPiece(self.id, answer));
        queue.push_back(Event::UpstreamEnd(self.id));
    }
}

/// The answer assembled from a stream, as the whole answer of a non-streamed request.
fn assembled(a: Assembly) -> Piece {
    let completion = a.finish();
    let raw = serde_json::to_vec(&completion)
        .map(Bytes::from)
        .unwrap_or_default();
    Piece::Answer {
        raw,
        usage: completion.usage,
        parsed: Some(Box::new(completion)),
    }
}

/// A JSON body: an upstream that answered whole though asked for a stream.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
}

fn failure(f: UpstreamFailure) -> Failure {
    Failure {
        kind: f.kind,
        status: f.status.map(|s| s.as_u16()),
        body: f.body,
    }
}

/// A native InvokeModel answer reports its usage in headers.
fn native_usage(headers: &axum::http::HeaderMap) -> Option<Usage> {
    let count = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let input = count("x-amzn-bedrock-input-token-count")?;
    let output = count("x-amzn-bedrock-output-token-count")?;
    Some(Usage {
        prompt_tokens: input,
        completion_tokens: output,
        total_tokens: input + output,
        prompt_tokens_details: None,
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
