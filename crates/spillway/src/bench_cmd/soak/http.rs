//! HTTP/1.1 by hand over a fresh TCP connection, for the clients an HTTP library will not
//! imitate: one that stops reading, one that drops the connection mid-stream, a probe that must
//! open a new connection every time (so that accepting is what is measured).
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The demo tenant's API key (loopback only).
pub const DEMO_KEY: &str = "spillway-demo-key";

/// A request's bytes: `Connection: close`, and `Authorization: Bearer key` if given.
pub fn request(method: &str, path: &str, key: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: spillway\r\nConnection: close\r\n");
    if let Some(k) = key {
        head.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Connects to `addr` and writes `req`, within `timeout`.
pub async fn send(addr: SocketAddr, req: &[u8], timeout: Duration) -> std::io::Result<TcpStream> {
    let open = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(req).await?;
        Ok(s)
    };
    tokio::time::timeout(timeout, open)
        .await
        .unwrap_or_else(|_| Err(timed_out("connect and send")))
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} timed out"))
}

/// Reads until the end of the response head; returns the status and whatever body bytes came
/// with it. An EOF before the head is an error (`UnexpectedEof`).
pub async fn read_head(s: &mut TcpStream) -> std::io::Result<(u16, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let status = std::str::from_utf8(&buf[..end])
                .ok()
                .and_then(|h| h.split_whitespace().nth(1))
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| std::io::Error::other("not an HTTP/1.1 response head"))?;
            return Ok((status, buf.split_off(end + 4)));
        }
        if buf.len() > 64 * 1024 {
            return Err(std::io::Error::other("response head over 64 KiB"));
        }
    }
}

/// Reads to EOF (the request said `Connection: close`), appending to `body`.
pub async fn read_to_end(s: &mut TcpStream, body: &mut Vec<u8>) -> std::io::Result<()> {
    s.read_to_end(body).await.map(|_| ())
}

/// A `GET path` on a fresh connection: the status, within `timeout`.
pub async fn get_status(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<u16> {
    exchange(addr, &request("GET", path, None, b""), timeout)
        .await
        .map(|(status, _)| status)
}

/// One request on a fresh connection, the whole answer read, within `timeout`.
pub async fn exchange(
    addr: SocketAddr,
    req: &[u8],
    timeout: Duration,
) -> std::io::Result<(u16, Vec<u8>)> {
    let run = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(req).await?;
        let (status, mut body) = read_head(&mut s).await?;
        read_to_end(&mut s, &mut body).await?;
        Ok((status, body))
    };
    tokio::time::timeout(timeout, run)
        .await
        .unwrap_or_else(|_| Err(timed_out("request")))
}

/// Whether `hay` holds `needle`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A short description of an I/O error for the failure tally.
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "closed before a response".to_string(),
        std::io::ErrorKind::ConnectionReset => "connection reset".to_string(),
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        std::io::ErrorKind::TimedOut => e.to_string(),
        _ => format!("i/o: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_carries_its_length_and_key() {
        let r = String::from_utf8(request("POST", "/x", Some("k"), b"{}")).expect("ascii");
        assert!(r.starts_with("POST /x HTTP/1.1\r\n"), "{r}");
        assert!(r.contains("Authorization: Bearer k\r\n"), "{r}");
        assert!(r.ends_with("Content-Length: 2\r\n\r\n{}"), "{r}");
        assert!(contains(r.as_bytes(), b"Connection: close"));
    }
}

/// The text of a gateway's `/metrics` on its admin listener, if it answers within 5 s.
pub async fn metrics_text(admin: SocketAddr) -> Option<String> {
    let req = request("GET", "/metrics", None, b"");
    match exchange(admin, &req, Duration::from_secs(5)).await {
        Ok((200, body)) => Some(String::from_utf8_lossy(&body).into_owned()),
        _ => None,
    }
}

/// The gateway's live tokio tasks (`spillway_runtime_tasks`), read on its admin listener.
pub async fn runtime_tasks(admin: Option<SocketAddr>) -> Option<u64> {
    tasks_in(&metrics_text(admin?).await?)
}

fn tasks_in(metrics: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("spillway_runtime_tasks "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod metrics_tests {
    #[test]
    fn the_task_count_is_read_from_the_exposition() {
        let text = "# HELP spillway_runtime_tasks tokio tasks\n# TYPE spillway_runtime_tasks gauge\nspillway_runtime_tasks 17\nspillway_runtime_tasks_other 3\n";
        assert_eq!(super::tasks_in(text), Some(17));
        assert_eq!(super::tasks_in("spillway_connections_open 1\n"), None);
    }
}
