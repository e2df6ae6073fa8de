//! The HTTP client every upstream request goes through: hyper's pooled client (HTTP/1.1, and
//! HTTP/2 where a TLS upstream offers it by ALPN) over rustls, with the platform's certificate
//! verifier.
//!
//! # Why not reqwest
//!
//! reqwest wraps the same hyper client in layers a gateway does not use on its hot path: a URL
//! type that is parsed (with an IDNA pass on the host) for every request and again by its
//! redirect policy, a proxy matcher, a retry layer. Under `callgrind` those were about a fifth
//! of the instructions the gateway spent per proxied request (`docs/BENCHMARKS.md`, "Proxy
//! overhead"). Here a request is built from a [`Uri`] parsed once per deployment when the
//! configuration loads, and sent as it is: no redirects are followed (an upstream that
//! redirects is misconfigured), no proxy is consulted, and retries are the exchange's alone.
//!
//! Connections are pooled per scheme and authority: at most [`MAX_IDLE_PER_HOST`] idle ones,
//! each closed after [`IDLE_TIMEOUT`] unused. A TCP connect that takes longer than the configured
//! `[timeouts] connect_ms` fails as a connect failure (retryable on another destination); a TLS
//! handshake that stalls after it is bounded by the exchange's own deadlines, as the wait for
//! the answer is. `HTTP_PROXY` and `HTTPS_PROXY` are not read: upstreams are reached directly.
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use spillway_core::FailureKind;

/// Idle connections kept per upstream authority.
pub const MAX_IDLE_PER_HOST: usize = 256;
/// How long an idle pooled connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The client; cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// The TLS configuration could not be built (no usable root store on this machine, say).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS for upstream connections: {0}")]
pub struct ClientError(#[from] rustls::Error);

impl UpstreamClient {
    pub fn new(connect_timeout: Duration) -> Result<UpstreamClient, ClientError> {
        use rustls_platform_verifier::BuilderVerifierExt;
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        // `https` URIs are handed to the TLS layer, which needs the TCP connector to take them.
        http.enforce_http(false);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_platform_verifier()?
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(UpstreamClient { inner })
    }

    /// Send `req`; the response once its head arrived.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, FailureKind> {
        self.inner
            .request(req)
            .await
            .map_err(|e| classify_transport(&e))
    }
}

/// Transport errors: a failed connect (refused, unreachable, or over the connect timeout) is
/// the deployment's; anything else broke the exchange midway and counts as a server error.
fn classify_transport(e: &hyper_util::client::legacy::Error) -> FailureKind {
    if e.is_connect() {
        FailureKind::Connect
    } else {
        FailureKind::ServerError
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connect_is_the_deployments_failure() {
        // A port nothing listens on: bound, then released.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let client = UpstreamClient::new(Duration::from_secs(2)).expect("the client builds");
        let req = Request::post(format!("http://{addr}/v1/chat/completions"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .expect("a valid request");
        assert_eq!(client.send(req).await.err(), Some(FailureKind::Connect));
    }
}
