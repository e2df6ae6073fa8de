//! Signing outgoing requests to a regional Bedrock runtime endpoint with AWS Signature Version 4
//! (DESIGN.md §5, upstream kind `bedrock`).
//!
//! [`sign_request`] hands the request to the `aws-sigv4` crate with its default settings, which
//! are what the Bedrock SDKs use: the path is URI-encoded once more for the canonical request
//! (double encoding, so a model id sent as `…chat-small-v1%3A0` is signed as `…%253A0`), dot
//! segments are normalised, the payload hash goes into the canonical request but no
//! `x-amz-content-sha256` header is added, and a session token is sent (and signed) as
//! `x-amz-security-token`. The signature covers every header already on the request except
//! `authorization`, `user-agent`, `x-amzn-trace-id` and `transfer-encoding`, plus `host` (derived
//! from the URL the way hyper derives the `Host` header, default ports omitted). Headers that
//! the HTTP client adds later are not signed, which is fine: only the headers named in
//! `SignedHeaders` are checked. [`sign_parts`] signs a request given as its parts (the gateway's
//! upstream requests), [`sign_request`] a `reqwest` request (the tests' and the fuzzer's).
//!
//! Path segments must already be percent-encoded in the URL — in particular `:` and the `/` of an
//! ARN model id (`arn%3Aaws%3Abedrock%3A…%3Ainference-profile%2F…`), as the SDKs send them.
//!
//! Only bodies held in memory can be signed (the whole body is hashed); a streaming body is an
//! error. Signing is idempotent: an existing `authorization`, `x-amz-date` or
//! `x-amz-security-token` header is replaced, so a request may be re-signed before a retry.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4::SigningParams;
use http::{HeaderName, HeaderValue};

/// An AWS access key, optionally with the session token of temporary credentials.
#[derive(Clone)]
pub struct AwsCredentials {
    /// The access key id (`AKIA…` / `ASIA…`).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The session token of temporary (STS) credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "** redacted **"),
            )
            .finish()
    }
}

impl AwsCredentials {
    /// Reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and (optionally) `AWS_SESSION_TOKEN`.
    /// `None` unless both the key id and the secret are set and non-empty.
    pub fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Some(AwsCredentials {
            access_key_id: var("AWS_ACCESS_KEY_ID")?,
            secret_access_key: var("AWS_SECRET_ACCESS_KEY")?,
            session_token: var("AWS_SESSION_TOKEN"),
        })
    }
}

/// Why a request could not be signed. Never carries the secret or the token.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The body is a stream; only bodies held in memory can be hashed for the signature.
    #[error("cannot sign a streaming request body; the body must be in memory")]
    StreamingBody,
    /// The URL has no host to sign. (The URL is not reported: it may carry credentials.)
    #[error("cannot sign a request whose URL has no host")]
    NoHost,
    /// A header value the signer cannot represent (not visible ASCII).
    #[error("cannot sign header '{0}': its value is not visible ASCII")]
    HeaderValue(String),
    /// Missing or invalid signing parameters (region, service).
    #[error("invalid signing parameters: {0}")]
    Params(String),
    /// `aws-sigv4` rejected the request.
    #[error("SigV4 signing failed: {0}")]
    Signing(#[from] aws_sigv4::http_request::SigningError),
    /// A header produced by the signer is not a valid header (e.g. a session token with invalid
    /// characters); the value is not reported.
    #[error("the signer produced an invalid '{0}' header")]
    InvalidOutput(String),
}

/// Headers [`sign_request`] sets; removed first so that re-signing replaces them.
const SIGNATURE_HEADERS: [&str; 3] = ["authorization", "x-amz-date", "x-amz-security-token"];

/// Signs `req` for `service` (`"bedrock"`) in `region` at time `now`, adding `authorization`,
/// `x-amz-date` and, with temporary credentials, `x-amz-security-token`.
pub fn sign_request(
    req: &mut reqwest::Request,
    creds: &AwsCredentials,
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<(), SignError> {
    let mut url = req.url().clone();
    url.set_fragment(None);
    let method = req.method().clone();
    let target = Target {
        method: &method,
        url: url.as_str(),
        has_host: url.host_str().is_some_and(|h| !h.is_empty()),
    };
    let mut headers = std::mem::take(req.headers_mut());
    let body: &[u8] = match req.body() {
        None => &[],
        Some(body) => match body.as_bytes() {
            Some(b) => b,
            None => {
                *req.headers_mut() = headers;
                return Err(SignError::StreamingBody);
            }
        },
    };
    let signed = sign_parts(&target, &mut headers, body, creds, region, service, now);
    *req.headers_mut() = headers;
    signed
}

/// What [`sign_parts`] signs besides the headers and the body.
pub struct Target<'a> {
    pub method: &'a http::Method,
    /// The absolute URL, path segments already percent-encoded, no fragment.
    pub url: &'a str,
    /// Whether the URL names a host (aws-sigv4 would panic on one without).
    pub has_host: bool,
}

/// [`sign_request`] on a request's parts: `headers` get `authorization`, `x-amz-date` and, with
/// temporary credentials, `x-amz-security-token` (replacing any already there).
pub fn sign_parts(
    target: &Target<'_>,
    headers: &mut http::HeaderMap,
    body: &[u8],
    creds: &AwsCredentials,
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<(), SignError> {
    for name in SIGNATURE_HEADERS {
        headers.remove(name);
    }
    if !target.has_host {
        return Err(SignError::NoHost);
    }
    let mut signed = Vec::with_capacity(headers.len());
    for (name, value) in headers.iter() {
        let value = value
            .to_str()
            .map_err(|_| SignError::HeaderValue(name.to_string()))?;
        signed.push((name.as_str(), value));
    }

    let identity = Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.clone(),
        creds.session_token.clone(),
        None,
        "spillway",
    )
    .into();
    let params = SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| SignError::Params(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        target.method.as_str(),
        target.url,
        signed.into_iter(),
        SignableBody::Bytes(body),
    )?;
    let (instructions, _signature) = sign(signable, &params)?.into_parts();

    let (new_headers, _query_params) = instructions.into_parts();
    for header in new_headers {
        let invalid = || SignError::InvalidOutput(header.name().to_owned());
        let name = HeaderName::from_bytes(header.name().as_bytes()).map_err(|_| invalid())?;
        let mut value = HeaderValue::from_str(header.value()).map_err(|_| invalid())?;
        value.set_sensitive(header.sensitive() || name == http::header::AUTHORIZATION);
        headers.insert(name, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use http::HeaderMap;

    use super::*;
    use crate::sigv4::{SigV4Error, Verified, verify};

    const REGION: &str = "us-west-2";

    fn creds(token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDUPSTREAM".to_owned(),
            secret_access_key: "upstream/secret+KEY".to_owned(),
            session_token: token.map(str::to_owned),
        }
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_741_964_966)
    }

    fn converse_request(url: &str) -> reqwest::Request {
        reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#)
            .build()
            .unwrap()
    }

    /// Checks `req` the way a server in `region` would receive it (hyper adds `host`).
    fn verify_as_server(
        req: &reqwest::Request,
        creds: &AwsCredentials,
        region: &str,
    ) -> Result<Verified, SigV4Error> {
        let url = req.url();
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap()),
            None => url.host_str().unwrap().to_owned(),
        };
        let mut headers: HeaderMap = req.headers().clone();
        headers.insert("host", host.parse().unwrap());
        headers.insert("user-agent", "reqwest".parse().unwrap());
        let body = req.body().and_then(|b| b.as_bytes()).unwrap_or_default();
        let secret = creds.secret_access_key.clone();
        verify(
            req.method(),
            &target.parse().unwrap(),
            &headers,
            body,
            now(),
            region,
            "bedrock",
            |key| (key == creds.access_key_id).then(|| secret.clone()),
        )
    }

    #[test]
    fn signed_request_verifies_in_its_region_only() {
        let creds = creds(None);
        let url = "https://bedrock-runtime.us-west-2.amazonaws.com/model/us.demo.chat-small-v1%3A0/converse";
        let mut req = converse_request(url);
        sign_request(&mut req, &creds, REGION, "bedrock", now()).unwrap();
        assert!(req.headers()["authorization"].to_str().unwrap().starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDUPSTREAM/20250314/us-west-2/bedrock/aws4_request, \
             SignedHeaders=accept;content-type;host;x-amz-date, Signature="
        ));
        assert_eq!(req.headers()["x-amz-date"], "20250314T150926Z");
        assert!(req.headers()["authorization"].is_sensitive());
        assert!(!req.headers().contains_key("x-amz-security-token"));
        assert_eq!(
            req.url().path(),
            "/model/us.demo.chat-small-v1%3A0/converse"
        );
        assert_eq!(
            verify_as_server(&req, &creds, REGION),
            Ok(Verified {
                access_key_id: "AKIDUPSTREAM".to_owned()
            })
        );
        assert!(matches!(
            verify_as_server(&req, &creds, "us-east-1"),
            Err(SigV4Error::WrongRegion { .. })
        ));
    }

    #[test]
    fn session_token_is_sent_and_signed() {
        let creds = creds(Some("IQoJb3JpZ2luX2VjEXAMPLETOKEN=="));
        let mut req = converse_request(
            "http://127.0.0.1:8443/model/arn%3Aaws%3Abedrock%3Aus-west-2%3A123456789012%3Ainference-profile%2Fus.x%3A0/invoke?trace=1",
        );
        sign_request(&mut req, &creds, REGION, "bedrock", now()).unwrap();
        let token = &req.headers()["x-amz-security-token"];
        assert_eq!(token, "IQoJb3JpZ2luX2VjEXAMPLETOKEN==");
        assert!(token.is_sensitive());
        assert!(
            req.headers()["authorization"]
                .to_str()
                .unwrap()
                .contains("x-amz-date;x-amz-security-token,")
        );
        assert!(verify_as_server(&req, &creds, REGION).is_ok());
    }

    #[test]
    fn resigning_replaces_the_signature() {
        let with_token = creds(Some("first-token"));
        let mut req =
            converse_request("https://bedrock-runtime.us-west-2.amazonaws.com/model/m/converse");
        sign_request(&mut req, &with_token, "us-east-1", "bedrock", now()).unwrap();
        let without_token = creds(None);
        sign_request(&mut req, &without_token, REGION, "bedrock", now()).unwrap();
        assert!(!req.headers().contains_key("x-amz-security-token"));
        assert_eq!(req.headers().get_all("authorization").iter().count(), 1);
        assert!(verify_as_server(&req, &without_token, REGION).is_ok());
    }

    #[test]
    fn get_without_body_verifies() {
        let creds = creds(None);
        let mut req = reqwest::Client::new()
            .get("https://bedrock.us-west-2.amazonaws.com/inference-profiles?type=SYSTEM_DEFINED&maxResults=5")
            .build()
            .unwrap();
        sign_request(&mut req, &creds, REGION, "bedrock", now()).unwrap();
        assert!(verify_as_server(&req, &creds, REGION).is_ok());
    }

    #[test]
    fn streaming_body_is_refused() {
        let stream =
            futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{}"))]);
        let mut req = reqwest::Client::new()
            .post("https://bedrock-runtime.us-west-2.amazonaws.com/model/m/converse")
            .body(reqwest::Body::wrap_stream(stream))
            .build()
            .unwrap();
        let err = sign_request(&mut req, &creds(None), REGION, "bedrock", now()).unwrap_err();
        assert!(matches!(err, SignError::StreamingBody));
    }

    #[test]
    fn debug_never_prints_secrets() {
        let shown = format!("{:?}", creds(Some("tok-SECRETTOKEN")));
        assert!(shown.contains("AKIDUPSTREAM"));
        assert!(!shown.contains("upstream/secret+KEY"));
        assert!(!shown.contains("SECRETTOKEN"));
    }
}
