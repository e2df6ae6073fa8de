//! The fault matrix (issue 15): one test per fault, real simulators over HTTP on `127.0.0.1:0`
//! and the real gateway in-process, each call made in the OpenAI API (plain and streamed) and in
//! Bedrock Converse / ConverseStream.
//!
//! Calls go from `us-east-1` through the `us.` profile (destination set: `us-east-1`,
//! `us-east-2`, `us-west-2`) unless a row says "plain id" (the model id: `us-east-1` only); the
//! fault is on `us-east-1` unless a row says otherwise. "Error event" is OpenAI's
//! `data: {"error": {"type": "server_error", ...}}` or Bedrock's `modelStreamErrorException`
//! frame; a clean 503 / 429 is `server_error` / `rate_limit_error` (OpenAI) or
//! `ServiceUnavailableException` / `ThrottlingException` (Bedrock), every 429 with `Retry-After`.
//!
//! | fault | what the client sees | test |
//! | --- | --- | --- |
//! | region outage (503 at once) | 200 from another `us` region (`failover:server_error`, then `spill:unhealthy` once the source is ejected); plain id: clean 503, then clean 429 while ejected | `upstream_down::region_outage_fails_over_in_every_api` |
//! | every `us` region down | clean 503 or 429, nothing reaches `eu`; `global.` profile: 200 from `eu` | `upstream_down::a_whole_geography_down_is_a_clean_error_and_never_leaves_it` |
//! | connection reset before any response | 200 from another region | `upstream_down::a_connection_reset_before_the_head_fails_over` |
//! | connection refused | 200 from another region (`failover:connect`) | `failover.rs::a_refused_connection_fails_over` (checks a and b, not c) |
//! | brown-out ×4 (first byte 200 ms, within every timeout) | 200, slower; plain id: 200 from the source | `degraded::a_brown_out_within_the_timeouts_is_served` |
//! | brown-out ×20 (first byte after 1 s; `first_byte_timeout_ms` 400) | 200 from another region, streamed or not (`failover:timeout`, then `spill:unhealthy`); plain id: a clean timeout (504, Bedrock 408 `ModelTimeoutException`), or a clean 429 with the ejection's `Retry-After` | `degraded::a_brown_out_beyond_the_first_byte_timeout_moves_streams_elsewhere` |
//! | 50 % of answers 500 | 200 (`failover:server_error` where the source failed, `spill:unhealthy` once it is ejected) | `degraded::half_the_answers_failing_are_all_served_elsewhere` |
//! | 429 storm with `Retry-After: 30` | 200 from another region (the first calls find the storm, later ones skip the cooling source); plain id: clean 429 | `throttling::a_429_storm_with_retry_after_fails_over_and_cools_the_source_down` (also `failover.rs::an_upstream_429_fails_over_and_cools_the_region_down`) |
//! | 429 storm on every `us` region | clean 429 with `Retry-After` | `throttling::a_429_storm_over_the_whole_set_is_a_clean_429` |
//! | 429 storm without `Retry-After` | 200 from another region; plain id: clean 429 with a `Retry-After` the gateway supplies | `throttling::a_429_storm_without_retry_after_fails_over` |
//! | hang before the head, streamed | 200 from another region after `first_byte_timeout_ms` (`failover:timeout`) | `hangs::a_stream_hung_before_its_head_fails_over_within_the_first_byte_timeout` |
//! | hang before the head, non-streamed | 200 from another region after `first_byte_timeout_ms` (the gateway streams from the upstream and assembles the answer) | `hangs::a_non_streamed_call_hung_before_its_head_fails_over_within_the_first_byte_timeout` |
//! | hang after the first byte (3 tokens, then silence) | streams: 200, 3 tokens, then the error event `first_byte_timeout_ms` after the last piece, settled to 3 tokens; non-streamed (head sent, no body): 200 from another region after `request_timeout_ms` (`failover:timeout`) | `hangs::a_stream_hung_after_its_first_byte_ends_with_an_error_event` |
//! | mid-stream break (connection drops after 3 tokens) | streams: 200, 3 tokens, then the error event, settled to 3 tokens (once the breaks eject the source: 200 from elsewhere); non-streamed: 200 from another region | `hangs::a_mid_stream_break_ends_with_an_error_event_and_settles_what_was_sent` (also `failover.rs::a_break_after_the_first_byte_ends_the_stream_with_an_error_event`, `bedrock_sdk.rs::a_stream_that_breaks_after_it_started_ends_with_a_model_stream_error`) |
//! | mid-stream failover on (`midstream_failover`): reset, error event or stall after 3 tokens | streams: 200, the whole answer token for token the unbroken one (seeded text), continued in another `us` region (`resume:<kind>`; the simulators saw a continuation of 3 tokens), audit `legs` in the set; plain id: the error event as without it | `midstream::*` |
//! | hang or break after the role chunk, before any content | 200 from another region of the set (the role chunk does not commit the stream) | `hangs::a_stream_failing_before_its_first_content_token_fails_over` |
//! | Redis stopped (SIGSTOP), then resumed | 200 throughout (local share while it is stopped); the quota take in flight when it stopped runs on resume, and its tokens are back in the global bucket once Redis answers | `redis::redis_stopped_under_load_fails_nothing` |
//! | Redis killed (SIGKILL) | 200 throughout (local share) | `redis::redis_killed_under_load_fails_nothing` (also `redis_quota.rs::redis_killed_under_load_fails_nothing_and_resynchronises`) |
//! | Redis killed, restarted empty | 200 throughout | `redis::redis_restarted_under_load_fails_nothing` |
//! | none (Redis book): calls right after a burst | 200 (the burst's refunds are in the global bucket before the next take) | `redis::redis_backed_refunds_are_there_for_the_next_calls` |
//!
//! # What every test asserts
//!
//! * **(a) No lost request where capacity existed.** Every call is either served (200, the whole
//!   answer, from a region of its set) or, only where no region of its set could serve it, gets
//!   a clean error in its API's shape (OpenAI's `{"error": {...}}`, Bedrock's
//!   `x-amzn-ErrorType` + `{"message"}`, a 429 always with `Retry-After`); a stream that had
//!   started ends with its API's error event, never with a broken connection.
//! * **(b) No residency violation**, from three independent records: the simulators' own
//!   records of the request ids they saw, the audit line's serving region, and the
//!   `x-spillway-region` header the client got.
//! * **(c) Exactly-once settlement**: one audit line per call (the line is written by the same
//!   call that settles the reservation), settled to the tokens the client got, and after the
//!   load the tenant's quota has its whole capacity back but the tokens used (probed through
//!   `AppState::reserve`, see `common/ledger.rs`).
//!
//! Waits are bounded polls on observable state (or timeouts that fail the test); nothing
//! sleeps to guess timing. Tokio's paused clock is not used: the calls cross real sockets and
//! the gateway's core clock is the system's monotonic clock.
mod bedrock_common;
mod common;
#[path = "common/ledger.rs"]
mod ledger;
mod redis_support;

#[path = "fault_matrix/calls.rs"]
mod calls;
#[path = "fault_matrix/degraded.rs"]
mod degraded;
#[path = "fault_matrix/hangs.rs"]
mod hangs;
#[path = "fault_matrix/midstream.rs"]
mod midstream;
#[path = "fault_matrix/redis.rs"]
mod redis;
#[path = "fault_matrix/support.rs"]
mod support;
#[path = "fault_matrix/throttling.rs"]
mod throttling;
#[path = "fault_matrix/upstream_down.rs"]
mod upstream_down;
