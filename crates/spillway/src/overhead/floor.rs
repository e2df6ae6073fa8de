//! The `hyper` path of `bench overhead --reference`: the least a proxy built on Spillway's own
//! HTTP stack can do, as a floor under Spillway's cost.
//!
//! # Why it is in the comparison
//!
//! nginx's figure says how far Spillway is from the proxy its users run, not how much of that
//! distance Spillway's own work is. This path answers the second question. It is a reverse
//! proxy on exactly the parts Spillway's edge and upstream client use (hyper 1's HTTP/1 server,
//! hyper-util's pooled client, tokio's multi-thread runtime in the same process, the same
//! `TCP_NODELAY` on both sides) that does nothing else: it forwards each request to the mock as
//! it came (its head, with the URI pointed at the mock, and its body streamed through) and the
//! answer back the same way. No key is checked, no JSON decoded, nothing routed, metered or
//! logged.
//!
//! So `spillway / hyper` is the share of the stack's throughput Spillway's own work leaves, and
//! `hyper / nginx` bounds what any gateway on this stack could reach against nginx on this
//! machine: a proxy that must at least do what this one does cannot beat it.
use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context;
use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::http::uri::{Authority, Parts, Scheme};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type Body = Either<Incoming, Full<Bytes>>;

/// The floor proxy, serving until dropped.
pub struct Floor {
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Start the floor proxy in front of `upstream` (`host:port`) on a free loopback port.
pub async fn start(upstream: SocketAddr) -> anyhow::Result<Floor> {
    let tcp = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the hyper floor proxy")?;
    let addr = tcp.local_addr()?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(connector);
    // Parsed once, as Spillway's upstream targets are: no URL is parsed per request.
    let authority = Authority::try_from(upstream.to_string()).context("the mock's address")?;
    let accept = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = tcp.accept().await else {
                // Out of descriptors, say: let the connections in flight end first.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (client, authority) = (client.clone(), authority.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    forward(client.clone(), authority.clone(), req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Floor { addr, accept })
}

/// One request, to the mock and back; a transport failure is a bare 502.
async fn forward(
    client: Client<HttpConnector, Incoming>,
    authority: Authority,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let mut parts = Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority);
    parts.path_and_query = req.uri().path_and_query().cloned();
    let Ok(uri) = Uri::from_parts(parts) else {
        return Ok(bad_gateway());
    };
    *req.uri_mut() = uri;
    Ok(match client.request(req).await {
        Ok(resp) => resp.map(Either::Left),
        Err(_) => bad_gateway(),
    })
}

fn bad_gateway() -> Response<Body> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::new())));
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn it_forwards_the_request_and_the_answer() {
        // The upstream: a one-shot HTTP/1 server that echoes the request's path and body.
        let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_addr = up.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = up.accept().await.unwrap();
            let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                use http_body_util::BodyExt;
                let path = req.uri().path().to_string();
                let body = req.into_body().collect().await?.to_bytes();
                let echo = format!("{path} {}", String::from_utf8_lossy(&body));
                Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(echo))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        let floor = start(up_addr).await.unwrap();
        let client = reqwest::Client::new();
        let answer = client
            .post(format!("http://{}/v1/chat/completions", floor.addr))
            .body("{\"model\":\"m\"}")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(
            answer.text().await.unwrap(),
            "/v1/chat/completions {\"model\":\"m\"}"
        );
    }

    #[tokio::test]
    async fn an_upstream_that_is_not_there_is_a_502() {
        let gone = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        let floor = start(gone).await.unwrap();
        let answer = reqwest::Client::new()
            .post(format!("http://{}/v1/chat/completions", floor.addr))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 502);
    }
}
