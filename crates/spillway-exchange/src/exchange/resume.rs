//! Mid-stream failover: a stream that breaks after the client has part of its answer is
//! continued in another region of the profile, and the client sees one uninterrupted answer.
//!
//! # Why it can be done
//!
//! Before its first byte a stream fails over like any request. After it, the client holds part
//! of the answer, so the request cannot simply be sent again: the new region would start over.
//! But the exchange has seen every piece it relayed, so it knows the answer's text so far
//! exactly. Inference engines can continue a partial assistant message (vLLM's
//! `continue_final_message`, assistant prefill in Anthropic and Converse): given the original
//! request plus that text as a final assistant message, they generate what comes after it. With
//! the same model and deterministic decoding the continuation is the rest of the unbroken
//! answer; with sampling it is a plausible one, which is what a retry would give anyway.
//!
//! # How
//!
//! * **What can be continued.** Only a streamed answer of one choice whose relayed pieces
//!   carried text and nothing else (the role chunk aside): a tool call's arguments, reasoning
//!   or a finish reason already relayed cannot be continued as a prefill, so a break then ends
//!   the stream with the error event, as without this feature. Native InvokeModel frames
//!   (relayed opaque) cannot be either.
//! * **Where.** Only to one of the request's candidates — the profile's destination set less
//!   what the tenant denies, so residency holds by construction — whose deployment accepts a
//!   continuation ([`ResumePolicy::deployments`], from the configuration) and was not tried
//!   before in this request: the first that admits it now, those of the request's plan in its
//!   order, then the others (the plan holds only what had room at admission, and a stream
//!   admitted while the set was full must still have somewhere to go). It takes one retry from the
//!   global budget, like a failover, and a request gets at most
//!   [`ResumePolicy::max_resumes`] continuations. A destination at its in-flight limit still
//!   takes a continuation into its engine's queue, within the bound the core keeps for the
//!   source's wait (a fifth over the limit, never where the upstream refused to queue, never
//!   beyond RPM or TPM): a client whose answer is half written is better served by a short wait
//!   than by an error event, and a new request, which has not started, is the one to spill or be
//!   throttled instead. When no destination has room even so, the continuation waits for one,
//!   asking again every 10 ms, for at most `first_byte` (the wait a client has for a first byte
//!   anyway); then the stream ends with the error event.
//! * **What is sent.** [`Continuation`]: the text so far and the output tokens left under the
//!   client's cap. Tokens relayed are the larger of the text pieces counted and the estimate of
//!   the text, so the cap is never overshot. A break exactly at the cap needs no new leg: the
//!   stream ends with a `length` finish, as the unbroken one would have.
//! * **What the client sees.** The continuation's role chunk is dropped (the client has one);
//!   its chunks are re-stamped with the first leg's id, creation time and model, so the stream
//!   is one answer; the gap is the time to notice the break (a reset or error event at once, a
//!   stall after `first_byte`) plus the new leg's time to first token.
//! * **Usage and billing.** Every leg is billed: the broken one for its prompt and the output it
//!   produced, the continuation for its prompt (the original prompt plus the text so far, which
//!   is input now) and its output. The final usage chunk the client gets is the sum over legs, the
//!   same figure its tenant's quota settles to; the record keeps each leg as a try, and names
//!   the first leg's region as the one that served it (the client's response head said so).
use spillway_core::{DeploymentIx, FailureKind, Plan, Reason, Step};
use spillway_proto::tokens::text_tokens;
use spillway_proto::{ChatChunk, ChunkChoice, Delta, Usage};

use super::Exchange;
use crate::action::{Action, Continuation, StreamEnd};
use crate::capacity::Capacity;
use crate::piece::Piece;
use crate::record::Outcome;

/// How often a continuation waiting for room in its set asks the core again.
const POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// A continuation waiting for a destination with room.
#[derive(Debug)]
pub(super) struct Waiting {
    /// The break it continues after.
    kind: FailureKind,
    /// Its output cap, if the client set one.
    left: Option<u64>,
    /// When it gives up: `first_byte` after the break, the wait a client has for a first byte.
    until: std::time::Duration,
    /// When it asks the core again.
    pub(super) next_poll: std::time::Duration,
}

/// What the client has been given of a streamed answer, across legs.
#[derive(Debug, Default)]
pub(super) struct Relayed {
    /// The answer's text so far.
    text: String,
    /// Output pieces with text relayed so far.
    tokens: u64,
    /// Something other than text was relayed: the answer cannot be continued.
    unresumable: bool,
    /// The first relayed chunk's id, creation time and model, which every leg's chunks carry.
    identity: Option<(String, u64, String)>,
    /// Usage of the legs before the live one.
    pub(super) carried: Usage,
    /// Output tokens the live leg was given as its prefix (0 on the first leg): input now.
    pub(super) prefix_tokens: u64,
    /// Continuations sent so far.
    resumes: u32,
}

fn nothing(m: &serde_json::Map<String, serde_json::Value>) -> bool {
    m.values().all(serde_json::Value::is_null)
}

/// `a + b`, field by field (cached prompt tokens too, when either leg reported them).
pub(super) fn add(a: Usage, b: Usage) -> Usage {
    let cached = match (a.cached_tokens(), b.cached_tokens()) {
        (None, None) => None,
        (x, y) => Some(x.unwrap_or(0) + y.unwrap_or(0)),
    };
    Usage {
        prompt_tokens: a.prompt_tokens + b.prompt_tokens,
        completion_tokens: a.completion_tokens + b.completion_tokens,
        total_tokens: a.total_tokens + b.total_tokens,
        prompt_tokens_details: cached
            .map(|cached_tokens| spillway_proto::PromptTokensDetails { cached_tokens }),
    }
}

impl Relayed {
    /// Note a piece going to the client.
    pub(super) fn observe(&mut self, piece: &Piece) {
        let Piece::Chunk { chunk, .. } = piece else {
            self.unresumable = true;
            return;
        };
        if self.identity.is_none() {
            self.identity = Some((chunk.id.clone(), chunk.created, chunk.model.clone()));
        }
        self.unresumable |= chunk.choices.len() > 1;
        for c in &chunk.choices {
            self.unresumable |= c.index != 0
                || c.finish_reason.is_some()
                || !nothing(&c.delta.extra)
                || !nothing(&c.extra);
            if let Some(t) = &c.delta.content {
                self.text.push_str(t);
            }
        }
        self.tokens += piece.output_tokens();
    }

    /// A continuation's chunk as the client gets it: the first leg's identity, the usage summed
    /// over legs, re-encoded (its own JSON names the other leg).
    pub(super) fn restamp(&self, piece: &mut Piece) {
        let Piece::Chunk { chunk, raw } = piece else {
            return;
        };
        if let Some((id, created, model)) = &self.identity {
            chunk.id.clone_from(id);
            chunk.created = *created;
            chunk.model.clone_from(model);
        }
        if let Some(u) = chunk.usage {
            chunk.usage = Some(add(u, self.carried));
        }
        *raw = None;
    }

    /// Output tokens the client has had: the larger of the text pieces and the text's estimate.
    fn emitted(&self) -> u64 {
        self.tokens.max(text_tokens(&self.text))
    }

    /// A chunk of this answer (its identity) with `choices` and `usage`.
    fn chunk(&self, choices: Vec<ChunkChoice>, usage: Option<Usage>) -> Piece {
        let (id, created, model) = self.identity.clone().unwrap_or_default();
        let chunk = ChatChunk {
            id,
            object: "chat.completion.chunk".to_string(),
            created,
            model,
            choices,
            usage,
            extra: serde_json::Map::new(),
        };
        Piece::Chunk {
            chunk: Box::new(chunk),
            raw: None,
        }
    }
}

impl Exchange {
    /// After the live attempt of a committed stream broke with `kind` (its try already ended;
    /// `billed`: it had produced something, so its leg is billed): continue the answer
    /// elsewhere, or end it at the cap. False when it cannot be continued (the caller then ends
    /// the stream with the error event).
    pub(super) fn resume(
        &mut self,
        now: std::time::Duration,
        kind: FailureKind,
        billed: bool,
        cap: &mut impl Capacity,
    ) -> bool {
        let Some(policy) = self.facts.resume.as_ref() else {
            return false;
        };
        let relay = &self.answer.relay;
        if !kind.is_retryable()
            || relay.unresumable
            || relay.text.is_empty()
            || relay.resumes >= policy.max_resumes
        {
            return false;
        }
        let emitted = relay.emitted();
        let left = policy.max_tokens.map(|m| m.saturating_sub(emitted));
        if left == Some(0) {
            self.end_at_cap(now, billed);
            return true;
        }
        if self.continuation_plan().steps.is_empty() || !cap.try_retry(now) {
            return false;
        }
        // The broken leg is over: its usage is carried, and nothing is billed for the next one
        // until it is sent.
        let leg = if billed {
            self.leg_usage()
        } else {
            Usage::default()
        };
        let relay = &mut self.answer.relay;
        relay.carried = add(relay.carried, leg);
        relay.prefix_tokens = emitted;
        relay.resumes += 1;
        self.answer.output_tokens = 0;
        self.answer.reported = Some(Usage::default());
        self.waiting = Some(Waiting {
            kind,
            left,
            until: now + self.limits.first_byte,
            next_poll: now,
        });
        self.send_continuation(now, cap);
        true
    }

    /// Send the awaited continuation to the first step of its plan that admits it now; if none
    /// does, wait for one (polled every [`POLL`]) until the wait's end, then end the stream with
    /// the error event of the break.
    pub(super) fn send_continuation(&mut self, now: std::time::Duration, cap: &mut impl Capacity) {
        let Some(w) = self.waiting.as_ref() else {
            return;
        };
        let (kind, left, until) = (w.kind, w.left, w.until);
        let plan = self.continuation_plan();
        let Some((i, admission)) = cap.admit_next(&plan, 0, self.facts.demand, now) else {
            if now >= until {
                self.waiting = None;
                self.actions
                    .push_back(Action::Close(StreamEnd::Broken(kind)));
                self.finish(now, Outcome::Broken(kind));
            } else if let Some(w) = self.waiting.as_mut() {
                w.next_poll = (now + POLL).min(until);
            }
            return;
        };
        self.waiting = None;
        self.answer.reported = None;
        let (deployment, region) = (plan.steps[i].deployment, plan.steps[i].region);
        let relay = &self.answer.relay;
        let continuation = Continuation {
            text: relay.text.clone(),
            output_tokens: relay.prefix_tokens,
            max_tokens: left,
        };
        let step = self
            .plan
            .steps
            .iter()
            .position(|s| s.deployment == deployment)
            .unwrap_or(self.step);
        let reason = Reason::Resume(kind);
        self.send_leg(now, (step, region), admission, reason, Some(continuation));
    }

    /// Where a continuation may go: a destination that accepts one and was not tried in this
    /// request — those of the plan first, in its order (the core ranked them), then the other
    /// candidates (the plan holds only what had room at admission). Each may take a wait in its
    /// upstream's queue when it is at its limit, within the same bound as the source's wait (see
    /// the module docs).
    fn continuation_plan(&self) -> Plan {
        let accepting = self
            .facts
            .resume
            .as_ref()
            .map_or(&[][..], |p| p.deployments.as_slice());
        let tried = |d: DeploymentIx| self.tries.iter().any(|t| t.deployment == d);
        let accepts = |d: DeploymentIx| accepting.iter().any(|(a, _)| *a == d);
        let planned = |d: DeploymentIx| self.plan.steps.iter().any(|s| s.deployment == d);
        let rest = accepting
            .iter()
            .filter(|(d, _)| !planned(*d))
            .map(|&(deployment, region)| Step {
                deployment,
                region,
                reason: Reason::SpillCapacity,
                queued: true,
            });
        let steps = self
            .plan
            .steps
            .iter()
            .copied()
            .chain(rest)
            .filter(|s| accepts(s.deployment) && !tried(s.deployment))
            .map(|s| Step { queued: true, ..s })
            .collect();
        Plan {
            steps,
            retry_after: None,
            held_back: false,
            // The continuation's prompt starts with the original one.
            prefix: self.plan.prefix.clone(),
        }
    }

    /// The break came when the client had all the tokens its cap allows: the answer is whole,
    /// as the unbroken one would have been, with a `length` finish and the usage.
    fn end_at_cap(&mut self, now: std::time::Duration, billed: bool) {
        if !billed {
            // The live leg produced nothing: only the earlier legs are billed.
            self.answer.output_tokens = 0;
            self.answer.reported = Some(Usage::default());
        }
        let usage = self.usage();
        let relay = &self.answer.relay;
        let finish = ChunkChoice {
            index: 0,
            delta: Delta {
                role: None,
                content: None,
                extra: serde_json::Map::new(),
            },
            finish_reason: Some("length".to_string()),
            extra: serde_json::Map::new(),
        };
        let pieces = [
            relay.chunk(vec![finish], None),
            relay.chunk(Vec::new(), Some(usage)),
        ];
        self.actions.extend(pieces.into_iter().map(Action::Emit));
        self.actions.push_back(Action::Close(StreamEnd::Complete));
        self.finish(now, Outcome::Served);
    }
}
