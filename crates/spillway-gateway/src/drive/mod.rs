//! The driver: runs one request's [`Exchange`] on tokio and hyper.
//!
//! The API adapters authenticate, parse and resolve a request into a [`RequestCtx`] and a
//! canonical [`Request`] (chat or embeddings); [`serve`] admits it ([`admit`]: candidates, tenant quota, route) and
//! spawns the driver task, which owns the request from then on and answers the handler through
//! a oneshot. The task is never dropped by the client's connection: a client that goes away is
//! an event like any other (its channel closes), so the request always reaches its end.
//!
//! The driver decides nothing. In a loop it carries out what the exchange asks (`Send` starts
//! an [`attempt`] stream, `Emit`/`Close` go to the [`client`], `Respond` answers with an error,
//! `SetTimer`/`Cancel` set the one timer and drop an attempt), then waits for the next of: an
//! event of the live attempt, the timer, or the client taking bytes, leaving or stalling; and
//! feeds it back with `now` under the router lock (the exchange's admissions and releases are
//! the core's). `Finished` goes to [`finish::end`], the one place a request ends.
//!
//! A streaming client that takes no bytes for `[server] stream_stall_timeout_ms`
//! (`cfg.edge.stream_stall`) is stalled, and one whose connection closed is gone. The exchange
//! then releases the deployment at once and keeps its attempt draining: the driver reads it on
//! (the client no longer holds it back) and feeds its pieces until the exchange cancels it, so
//! the record bills every token the upstream generated, not only those the client took.
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use spillway_core::{Admission, Demand, Outcome, Plan, Reason, RegionIx};
use spillway_exchange::{Action, AttemptId, Capacity, Event, Exchange, Piece, StreamEnd};
use tokio::sync::oneshot;

pub mod admit;
pub mod anthropic;
pub mod assemble;
pub mod attempt;
pub mod client;
pub mod codec;
pub mod ctx;
pub mod finish;
mod trace;

pub use ctx::RequestCtx;
pub use spillway_proto::canonical::Request;

use self::admit::Admitted;
use self::client::Client;
use self::finish::Ending;
use crate::drive::ctx::Target;
use crate::error::EdgeError;
use crate::state::AppState;
use crate::state::quota_book::Ticket;

/// Admit a parsed request and drive it to its end; the response (an error, a whole answer, or
/// a stream's head) comes back as soon as the exchange has one.
pub async fn serve(
    app: Arc<AppState>,
    mut ctx: RequestCtx,
    target: Target,
    req: impl Into<Request>,
) -> Response {
    let req = req.into();
    ctx.stream = req.is_stream();
    ctx.trace.note_request(req.output_cap());
    let answer = match admit::admit(&app, &mut ctx, target, req).await {
        Ok(admitted) => spawn_driver(app, ctx, admitted),
        Err(e) => return refuse(&app, &ctx, e),
    };
    answer.await.unwrap_or_else(|_| {
        // The driver task panicked: answer rather than drop the connection.
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
    })
}

/// Hand an admitted request to its own driver task; its answer comes back on the channel.
///
/// A plain function, so the driver (about 1.7 KiB) is built on its stack and moved once into
/// the task, never kept in the handler's future, which hyper and axum move and poll on every
/// request (measured with callgrind: `memcpy` of large futures was 13% of a proxied request's
/// instructions before; see docs/BENCHMARKS.md).
fn spawn_driver(
    app: Arc<AppState>,
    ctx: RequestCtx,
    admitted: Admitted,
) -> oneshot::Receiver<Response> {
    let Admitted {
        exchange,
        ticket,
        req,
    } = admitted;
    let (head, answer) = oneshot::channel();
    let driver = Driver {
        app,
        ctx,
        x: exchange,
        ticket,
        req,
        attempt: None,
        timer: None,
        route: None,
        client: Client::new(head),
    };
    tokio::spawn(driver.run());
    answer
}

/// An adapter's end: [`serve`] what it parsed, or [`refuse`] what it could not.
pub async fn serve_parsed(
    app: Arc<AppState>,
    ctx: RequestCtx,
    parsed: Result<(Target, impl Into<Request>), EdgeError>,
) -> Response {
    match parsed {
        Ok((target, req)) => serve(app, ctx, target, req).await,
        Err(e) => refuse(&app, &ctx, e),
    }
}

/// A request refused at the edge, before it had an exchange: ended, and answered in the
/// client's API.
pub fn refuse(app: &AppState, ctx: &RequestCtx, e: EdgeError) -> Response {
    finish::end(app, ctx, Ending::Edge(&e));
    let route = None;
    let mut resp = e.into_response_for(ctx.api);
    client::decorate(&mut resp, &app.cfg, ctx, route);
    resp
}

/// The routing core as the exchange's capacity, locked only for the calls that need it (a
/// release, a retry, a failover's admission), never for a stream's pieces.
struct Locked<'a>(&'a AppState);

impl Capacity for Locked<'_> {
    fn admit_next(
        &mut self,
        plan: &Plan,
        from: usize,
        demand: Demand,
        now: Duration,
    ) -> Option<(usize, Admission)> {
        self.0.router().router.admit_next(plan, from, demand, now)
    }

    fn try_retry(&mut self, now: Duration) -> bool {
        self.0.router().router.try_retry(now)
    }

    fn release(&mut self, admission: Admission, outcome: Outcome, charge: u64, now: Duration) {
        Capacity::release(&mut self.0.router().router, admission, outcome, charge, now);
    }
}

struct Driver {
    app: Arc<AppState>,
    ctx: RequestCtx,
    x: Exchange,
    ticket: Option<Ticket>,
    req: Request,
    attempt: Option<(AttemptId, BoxStream<'static, Event>)>,
    timer: Option<Duration>,
    /// The live (or last) attempt's region and reason, for the routing headers.
    route: Option<(RegionIx, Reason)>,
    client: Client,
}

/// What woke the driver.
enum Wake {
    Event(Event),
    AttemptOver,
    Nothing,
}

impl Driver {
    /// The task: the exchange to its end, then the client's last bytes. An `async` block over
    /// `self`, not an `async fn`, which would keep a second copy of the driver in its state.
    #[allow(clippy::manual_async_fn)]
    fn run(mut self) -> impl Future<Output = ()> + Send + 'static {
        async move {
            self.exchange().await;
            self.flush().await;
        }
    }

    /// Carry out the exchange's actions and feed it what happens, until it has finished.
    async fn exchange(&mut self) {
        loop {
            while let Some(action) = self.x.poll_action() {
                if let Action::Finished(record) = action {
                    let ending = Ending::Exchange {
                        record: &record,
                        ticket: self.ticket.take(),
                    };
                    return finish::end(&self.app, &self.ctx, ending);
                }
                self.act(action);
            }
            match self.wake().await {
                Wake::Event(ev) => {
                    let now = self.app.now();
                    self.x.handle(now, ev, &mut Locked(&self.app));
                }
                Wake::AttemptOver => self.attempt = None,
                Wake::Nothing => {}
            }
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Send {
                attempt,
                deployment,
                region,
                reason,
                resume,
            } => {
                self.route = Some((region, reason));
                let telemetry = &self.app.telemetry;
                let trace = telemetry.attempt_sent(&mut self.ctx.trace, attempt);
                let sending = attempt::Sending {
                    id: attempt,
                    deployment,
                    resume: resume.as_ref(),
                };
                let events = attempt::start(&self.app, sending, &self.req, &self.ctx, trace);
                self.attempt = Some((attempt, events));
            }
            Action::Emit(piece) => self.emit(piece),
            Action::Close(end) => {
                self.open_stream();
                let latency_ms = self.ctx.started.elapsed().as_millis() as u64;
                self.client.write(|enc, out| match end {
                    StreamEnd::Complete => enc.done(latency_ms, out),
                    StreamEnd::Broken(_) => out.extend_from_slice(&enc.error(
                        "The model stopped with an error. The response is incomplete; retry the request.",
                    )),
                });
            }
            Action::Respond(refusal) => {
                let e = client::refusal(&self.ctx.model_name, refusal);
                let mut resp = e.into_response_for(self.ctx.api);
                let route = self.route.map(|(_, reason)| (None, reason));
                client::decorate(&mut resp, &self.app.cfg, &self.ctx, route);
                self.client.respond(resp);
            }
            Action::SetTimer(at) => self.timer = Some(at),
            Action::Cancel(id) => {
                if self.attempt.as_ref().is_some_and(|(a, _)| *a == id) {
                    self.attempt = None;
                }
            }
            // Handled by `run`.
            Action::Finished(_) => {}
        }
    }

    fn emit(&mut self, piece: Piece) {
        if !self.req.is_stream() {
            let mut resp = client::answer(&self.ctx, piece);
            let route = self.route.map(|(r, why)| (Some(r), why));
            client::decorate(&mut resp, &self.app.cfg, &self.ctx, route);
            return self.client.respond(resp);
        }
        self.open_stream();
        self.client.write(|enc, out| match &piece {
            Piece::Chunk { chunk, raw } => enc.chunk(chunk, raw.as_deref(), out),
            Piece::Frame { bytes, .. } => enc.raw(bytes, out),
            Piece::Answer { raw, .. } => out.extend_from_slice(raw),
        });
    }

    fn open_stream(&mut self) {
        let (cfg, ctx) = (&self.app.cfg, &self.ctx);
        let route = self.route.map(|(r, why)| (Some(r), why));
        self.client
            .open_stream(ctx, |resp| client::decorate(resp, cfg, ctx, route));
    }

    /// Wait for the next thing that happens: an attempt's event, the timer, the client.
    async fn wake(&mut self) -> Wake {
        let stall = self.app.cfg.edge.stream_stall;
        let timer = self.timer.map(|t| self.app.instant_at(t));
        let reading = self.client.accepts_more();
        let attempt = async {
            match (&mut self.attempt, reading) {
                (Some((_, events)), true) => events.next().await,
                _ => std::future::pending().await,
            }
        };
        let timer = async {
            match timer {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = attempt => ev.map_or(Wake::AttemptOver, Wake::Event),
            () = timer => Wake::Event(Event::TimerFired),
            ev = self.client.progress(stall) => ev.map_or(Wake::Nothing, Wake::Event),
        }
    }

    /// After the end: let the client take what waits for it (or stall), then close.
    async fn flush(&mut self) {
        let stall = self.app.cfg.edge.stream_stall;
        while !self.client.flushed() {
            if self.client.progress(stall).await.is_some() {
                break;
            }
        }
    }
}
