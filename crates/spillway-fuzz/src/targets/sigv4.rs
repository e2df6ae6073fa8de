//! SigV4 verification (`spillway_gateway::sigv4::verify`), the gate in front of the Bedrock
//! runtime routes.
//!
//! * `sigv4_verify` takes a request written as text (`METHOD target`, header lines, a blank
//!   line, the body) and verifies it at a fixed time with [`FUZZ_SECRET`] as every key's
//!   secret. The seeds are real requests signed by the AWS signer with [`SEED_SECRET`], so a
//!   mutated seed gets through the parsing of `Authorization`, `X-Amz-Date` and the scope, the
//!   canonical request and the HMAC chain, and must still be refused at the end.
//! * `sigv4_roundtrip` builds a request with `arbitrary` (method, path segments, query, extra
//!   headers, session token, body, clock skew within the 5 minutes allowed), signs it with
//!   [`spillway_gateway::sigv4::sign::sign_request`] (the `aws-sigv4` crate, as the SDKs sign),
//!   and checks that the verifier accepts it, and refuses it with another body or secret. A
//!   failure there is a canonicalisation the SDKs and the verifier disagree on.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbitrary::{Arbitrary, Unstructured};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use spillway_gateway::sigv4::sign::{AwsCredentials, sign_request};
use spillway_gateway::sigv4::{SigV4Error, Verified, verify};

/// The access key id of the seeds and of the round trip.
pub const AKID: &str = "AKIDSPILLWAYFUZZ";
/// The secret the `sigv4_verify` seeds are signed with (never the one verified against).
pub const SEED_SECRET: &str = "seed/Secret+KEY0123456789abcdefghijklmn";
/// The secret `sigv4_verify` verifies with, for any access key id.
pub const FUZZ_SECRET: &str = "fuzz/Secret+KEY0123456789abcdefghijklmn";
const REGION: &str = "us-east-1";
const SERVICE: &str = "bedrock";
const HOST: &str = "bedrock-runtime.us-east-1.amazonaws.com";

/// 2025-03-14T15:09:26Z, the signing time of the seeds.
pub fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_741_964_966)
}

/// What the SDKs percent-encode in a path segment or query part: all but `A-Za-z0-9-._~`.
const SDK_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A request as the server receives it.
pub struct TextRequest {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Reads `METHOD target\nname: value\n…\n\nbody` leniently: an unusable method is `POST`, an
/// unusable target `/`, and unusable header lines are skipped.
pub fn parse_text_request(data: &[u8]) -> TextRequest {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &b""[..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let first = lines.next().unwrap_or_default();
    let mut words = first.splitn(2, |&b| b == b' ');
    let method = Method::from_bytes(words.next().unwrap_or_default()).unwrap_or(Method::POST);
    let uri = Uri::try_from(words.next().unwrap_or(b"/")).unwrap_or_else(|_| Uri::from_static("/"));
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = HeaderName::from_bytes(line[..colon].trim_ascii());
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) = (name, value) {
            headers.append(name, value);
        }
    }
    TextRequest {
        method,
        uri,
        headers,
        body: body.to_vec(),
    }
}

/// Verifies `req` at `now` as the us-east-1 listener does, with `secret` for every key id.
pub fn verify_text(
    req: &TextRequest,
    now: SystemTime,
    secret: &str,
) -> Result<Verified, SigV4Error> {
    let secret_for = |_: &str| Some(secret.to_owned());
    let (m, u, h) = (&req.method, &req.uri, &req.headers);
    verify(m, u, h, &req.body, now, REGION, SERVICE, secret_for)
}

/// Any request verified against [`FUZZ_SECRET`] is refused (no seed is signed with it), and
/// the error renders.
pub fn target_sigv4_verify(data: &[u8]) {
    let req = parse_text_request(data);
    match verify_text(&req, t0(), FUZZ_SECRET) {
        Ok(v) => panic!("verify accepted a request not signed with its secret: {v:?}"),
        Err(e) => {
            let _ = (e.to_string(), e.error_type());
        }
    }
}

/// A request to sign, drawn by `arbitrary`.
#[derive(Debug, Arbitrary)]
struct SignCase {
    method: u8,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    token: Option<String>,
    skew_secs: i16,
    body: Vec<u8>,
}

/// Headers the signer or the server sets itself; a random one of these would only collide.
const OWN_HEADERS: [&str; 6] = [
    "host",
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
    "user-agent",
];

const METHODS: [Method; 6] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::HEAD,
];

/// The request `case` describes, as reqwest would send it (unsigned), or `None` when the URL or
/// a header cannot be built.
fn build_request(case: &SignCase) -> Option<reqwest::Request> {
    let enc = |s: &str| utf8_percent_encode(s, SDK_ENCODE).to_string();
    let path: Vec<String> = case.segments.iter().map(|s| enc(s)).collect();
    let mut url = format!("https://{HOST}/{}", path.join("/"));
    if !case.query.is_empty() {
        let pairs: Vec<String> = case
            .query
            .iter()
            .map(|(n, v)| format!("{}={}", enc(n), enc(v)))
            .collect();
        url = format!("{url}?{}", pairs.join("&"));
    }
    let method = METHODS[usize::from(case.method) % METHODS.len()].clone();
    let mut req = reqwest::Request::new(method, reqwest::Url::parse(&url).ok()?);
    for (name, value) in &case.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
        if OWN_HEADERS.contains(&name.as_str()) {
            continue;
        }
        // As HTTP/1.1 delivers it: without leading or trailing whitespace (aws-sigv4 signs a
        // trailing tab as is, which no receiver can see).
        let value = HeaderValue::from_str(value.trim_matches([' ', '\t'])).ok()?;
        req.headers_mut().append(name, value);
    }
    *req.body_mut() = Some(case.body.clone().into());
    Some(req)
}

/// `req` as the server receives it: origin-form target, header values without the leading and
/// trailing whitespace that HTTP/1.1 parsing strips (RFC 9112 §5), and the `host` header.
fn as_received(req: &reqwest::Request, body: &[u8]) -> Option<TextRequest> {
    let url = req.url();
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let mut headers = HeaderMap::new();
    for (name, value) in req.headers() {
        let value = value.as_bytes().trim_ascii();
        headers.append(name.clone(), HeaderValue::from_bytes(value).ok()?);
    }
    headers.insert(http::header::HOST, HeaderValue::from_static(HOST));
    Some(TextRequest {
        method: req.method().clone(),
        uri: Uri::try_from(target).ok()?,
        headers,
        body: body.to_vec(),
    })
}

/// What the AWS signer signs, the verifier accepts (within the allowed clock skew); with a
/// changed body or another secret, it refuses.
pub fn target_sigv4_roundtrip(data: &[u8]) {
    let Ok(case) = SignCase::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let Some(mut req) = build_request(&case) else {
        return;
    };
    let creds = AwsCredentials {
        access_key_id: AKID.to_owned(),
        secret_access_key: SEED_SECRET.to_owned(),
        // STS tokens are base64, without whitespace; aws-sigv4 signs the token's spaces as they
        // are (no trimming, no collapsing of runs) where SigV4 canonicalisation, and so this
        // verifier, does both: such a token fails to verify anywhere that follows the spec.
        session_token: case
            .token
            .clone()
            .filter(|t| !t.bytes().any(|b| b.is_ascii_whitespace())),
    };
    if sign_request(&mut req, &creds, REGION, SERVICE, t0()).is_err() {
        return; // e.g. a session token that is no valid header value
    }
    let Some(received) = as_received(&req, &case.body) else {
        return;
    };
    let skew = i64::from(case.skew_secs) % 301;
    let offset = Duration::from_secs(skew.unsigned_abs());
    let now = if skew >= 0 {
        t0() + offset
    } else {
        t0() - offset
    };
    match verify_text(&received, now, SEED_SECRET) {
        Ok(v) => assert_eq!(v.access_key_id, AKID),
        Err(e) => panic!("a request signed by aws-sigv4 was refused: {e:?}\nrequest: {case:?}"),
    }
    assert!(
        verify_text(&received, now, FUZZ_SECRET).is_err(),
        "verify accepted a signature made with another secret"
    );
    let mut altered = received;
    altered.body.push(b'!');
    assert!(
        verify_text(&altered, now, SEED_SECRET).is_err(),
        "verify accepted a signed request whose body changed"
    );
}

/// A real request signed with [`SEED_SECRET`] at [`t0`], as text: the `sigv4_verify` seeds.
pub fn signed_seed(path: &str, query: &str, body: &[u8], token: Option<&str>) -> Option<Vec<u8>> {
    let url = match query {
        "" => format!("https://{HOST}{path}"),
        q => format!("https://{HOST}{path}?{q}"),
    };
    let mut req = reqwest::Request::new(Method::POST, reqwest::Url::parse(&url).ok()?);
    let h = req.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("accept", HeaderValue::from_static("application/json"));
    *req.body_mut() = Some(body.to_vec().into());
    let creds = AwsCredentials {
        access_key_id: AKID.to_owned(),
        secret_access_key: SEED_SECRET.to_owned(),
        session_token: token.map(str::to_owned),
    };
    sign_request(&mut req, &creds, REGION, SERVICE, t0()).ok()?;
    let received = as_received(&req, body)?;
    let mut text = format!("{} {}\n", received.method, received.uri).into_bytes();
    for (name, value) in &received.headers {
        text.extend_from_slice(name.as_str().as_bytes());
        text.extend_from_slice(b": ");
        text.extend_from_slice(value.as_bytes());
        text.push(b'\n');
    }
    text.push(b'\n');
    text.extend_from_slice(body);
    Some(text)
}
