//! Where the signed host comes from: the `Host` header (HTTP/1.1), the URI authority (HTTP/2,
//! where hyper puts `:authority` and no `Host` header arrives), and the `:authority`
//! pseudo-header signed by its own name (the Node SDK's HTTP/2 handler). `aws-sigv4` cannot
//! sign a header named `:authority`, so these requests are signed here step by step from the
//! SigV4 definition (canonical request, string to sign, the derived key).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method, Uri};
use sha2::{Digest, Sha256};

use super::{SigV4Error, hmac_sha256, signing_key, verify};

const AKID: &str = "AKIDSPILLWAYH2";
const SECRET: &str = "h2/Secret+Key0";
const HOST: &str = "127.0.0.1:8443";
const PATH: &str = "/model/m/converse";
const AMZ_DATE: &str = "20250314T150926Z";
const BODY: &[u8] = br#"{"messages":[]}"#;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_741_964_966)
}

/// An `Authorization` header for `POST PATH` with these signed `(name, value)` pairs (sorted by
/// name) and `x-amz-date`, following the SigV4 definition.
fn authorization(signed: &[(&str, &str)]) -> String {
    let mut canonical_headers = String::new();
    for (name, value) in signed {
        canonical_headers.push_str(&format!("{name}:{value}\n"));
    }
    let names: Vec<&str> = signed.iter().map(|(n, _)| *n).collect();
    let names = names.join(";");
    let body_hash = hex::encode(Sha256::digest(BODY));
    let creq = format!("POST\n{PATH}\n\n{canonical_headers}\n{names}\n{body_hash}");
    let scope = "20250314/us-east-1/bedrock/aws4_request";
    let creq_hash = hex::encode(Sha256::digest(creq.as_bytes()));
    let sts = format!("AWS4-HMAC-SHA256\n{AMZ_DATE}\n{scope}\n{creq_hash}");
    let key = signing_key(SECRET, "20250314", "us-east-1", "bedrock").unwrap();
    let signature = hex::encode(hmac_sha256(&key, sts.as_bytes()).unwrap());
    format!(
        "AWS4-HMAC-SHA256 Credential={AKID}/{scope}, SignedHeaders={names}, Signature={signature}"
    )
}

/// Verifies a request with target `uri`, an optional `Host` header and `authorization`.
fn check(uri: &str, host: Option<&str>, authorization: &str) -> Result<(), SigV4Error> {
    let mut headers = HeaderMap::new();
    if let Some(host) = host {
        headers.insert("host", HeaderValue::from_str(host).unwrap());
    }
    headers.insert("x-amz-date", HeaderValue::from_static(AMZ_DATE));
    headers.insert(
        "authorization",
        HeaderValue::from_str(authorization).unwrap(),
    );
    let uri: Uri = uri.parse().unwrap();
    let secret = |id: &str| (id == AKID).then(|| SECRET.to_string());
    verify(
        &Method::POST,
        &uri,
        &headers,
        BODY,
        now(),
        "us-east-1",
        "bedrock",
        secret,
    )
    .map(|_| ())
}

const H2_URI: &str = "https://127.0.0.1:8443/model/m/converse";

#[test]
fn signed_host_comes_from_the_host_header_over_http1() {
    let auth = authorization(&[("host", HOST), ("x-amz-date", AMZ_DATE)]);
    assert_eq!(check(PATH, Some(HOST), &auth), Ok(()));
    // Another Host than the one signed: the signature does not match.
    assert_eq!(
        check(PATH, Some("127.0.0.1:9999"), &auth),
        Err(SigV4Error::BadSignature)
    );
}

#[test]
fn signed_host_comes_from_the_authority_over_http2() {
    let auth = authorization(&[("host", HOST), ("x-amz-date", AMZ_DATE)]);
    assert_eq!(check(H2_URI, None, &auth), Ok(()));
    let elsewhere = "https://127.0.0.1:9999/model/m/converse";
    assert_eq!(check(elsewhere, None, &auth), Err(SigV4Error::BadSignature));
}

#[test]
fn a_signed_authority_pseudo_header_is_the_uri_authority() {
    let auth = authorization(&[(":authority", HOST), ("x-amz-date", AMZ_DATE)]);
    assert_eq!(
        check(H2_URI, None, &auth),
        Ok(()),
        "HTTP/2: from :authority"
    );
    assert_eq!(
        check(PATH, Some(HOST), &auth),
        Ok(()),
        "no authority in the URI: from Host"
    );
    let elsewhere = "https://127.0.0.1:9999/model/m/converse";
    assert_eq!(check(elsewhere, None, &auth), Err(SigV4Error::BadSignature));
}

#[test]
fn an_authority_signed_without_any_host_is_malformed() {
    let auth = authorization(&[(":authority", HOST), ("x-amz-date", AMZ_DATE)]);
    assert!(matches!(
        check(PATH, None, &auth),
        Err(SigV4Error::Malformed(m)) if m.contains(":authority")
    ));
}

#[test]
fn neither_host_nor_authority_signed_is_malformed() {
    let auth = authorization(&[("x-amz-date", AMZ_DATE)]);
    assert!(matches!(
        check(H2_URI, None, &auth),
        Err(SigV4Error::Malformed(m)) if m.contains("Host")
    ));
}
