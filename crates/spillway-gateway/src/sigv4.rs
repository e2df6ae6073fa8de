//! Verifying AWS Signature Version 4 (`AWS4-HMAC-SHA256`) on incoming requests, so that the
//! unchanged AWS SDKs for Amazon Bedrock can call a Spillway listener as if it were a regional
//! Bedrock endpoint (DESIGN.md §5).
//!
//! The algorithm is the one AWS documents ("Create a signed AWS API request"), implemented here
//! rather than delegated to the `aws-sigv4` crate: that crate *signs* — it decides which headers to
//! sign — but a verifier must rebuild the canonical request over exactly the `SignedHeaders` set the
//! client chose, and `aws-sigv4` has no API for that. (`aws-sigv4` is used in the tests to produce
//! requests signed the way the SDKs sign them, and in [`crate::sigv4::sign`] for outgoing calls.)
//!
//! Steps, for `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`:
//!
//! 1. Canonical request: method, canonical URI, canonical query string, canonical headers (only
//!    the `SignedHeaders`; values trimmed, runs of spaces collapsed, repeated headers joined with
//!    `,`), the `SignedHeaders` list, and the payload hash (`x-amz-content-sha256` if sent — it
//!    must then match the body unless it is `UNSIGNED-PAYLOAD` — otherwise SHA-256 of the body).
//! 2. String to sign: `AWS4-HMAC-SHA256\n<X-Amz-Date>\n<scope>\n<hex SHA-256(canonical request)>`.
//! 3. Signing key: HMAC chain `"AWS4"+secret` → date → region → service → `"aws4_request"`;
//!    the signature is HMAC(key, string to sign), compared in constant time.
//!
//! Canonicalisation details that matter for interoperability:
//!
//! * **Canonical URI.** For every service but S3 the SDKs URI-encode the *already encoded* path
//!   once more: a request line `/model/us.demo.chat-small-v1%3A0/converse` has the canonical URI
//!   `/model/us.demo.chat-small-v1%253A0/converse`. So the path must be the raw path as received
//!   ([`http::Uri::path`] is still percent-encoded — but behind an axum `nest` use `OriginalUri`,
//!   since nesting strips the prefix). Before encoding, dot segments and empty segments are
//!   removed (RFC 3986 §5.2.4, as the SDKs do).
//! * **Canonical query.** Parameters are decoded (`+` as space, like `form_urlencoded` and the
//!   Rust SDK), re-encoded with the SigV4 set (everything but `A-Za-z0-9-._~`), and sorted by
//!   encoded name then value; a parameter without `=` gets an empty value.
//! * **Host.** `host` or `:authority` must be signed. `host` is the `Host` header, or when there
//!   is none (HTTP/2 carries the host as the `:authority` pseudo-header, which hyper puts in the
//!   request URI) the URI authority. The Node SDK's HTTP/2 handler signs the pseudo-header by its
//!   own name, `:authority`: its value is the URI authority, or the `Host` header when the URI
//!   has none.
//!
//! Not supported (the Bedrock SDKs use none of them): presigned URLs (`X-Amz-Signature` in the
//! query; rejected as [`SigV4Error::Malformed`]), the `Date` header instead of `X-Amz-Date`,
//! chunked payload signing (`STREAMING-…`), SigV4a. A session token (`x-amz-security-token`) is
//! covered by the signature when signed, but not checked against anything.
//!
//! Secrets never appear in errors or logs: errors carry only the access key id's verdict, dates,
//! regions and header names.
//!
//! Layout: `auth` parses the `Authorization` header, `canonical` builds step 1's canonical
//! request, `clock` reads and checks `X-Amz-Date`; [`verify`] here checks the scope and computes
//! steps 2 and 3.

use std::time::SystemTime;

use hmac::{Hmac, Mac};
use http::{HeaderMap, Method, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Largest accepted difference between the signing time and now, in seconds.
const MAX_SKEW_SECS: u64 = 300;

/// SigV4's URI encoding: everything except the unreserved characters `A-Za-z0-9-._~`.
const ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// As [`ENCODE_SET`], keeping the path separators.
const PATH_ENCODE_SET: &AsciiSet = &ENCODE_SET.remove(b'/');

/// Why a request's SigV4 signature was not accepted. All of these are rendered as 403 with
/// [`SigV4Error::error_type`] as the AWS error type.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SigV4Error {
    /// No `Authorization: AWS4-HMAC-SHA256 …` header (and no presigned query parameters).
    #[error(
        "Missing Authentication Token: sign the request with AWS Signature Version 4 \
         ('Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...')."
    )]
    Missing,
    /// Unparsable `Authorization`, `X-Amz-Date` or credential scope; an unsupported SigV4 form.
    #[error("{0}")]
    Malformed(String),
    /// The access key id is not known.
    #[error("The security token included in the request is invalid.")]
    UnknownAccessKey,
    /// The signature does not match (wrong secret, altered request or body).
    #[error(
        "The request signature we calculated does not match the signature you provided. Check \
         your AWS Secret Access Key and signing method."
    )]
    BadSignature,
    /// The signing time is more than 5 minutes away from now.
    #[error("Signature expired: {date} is now earlier than {min} or later than {max}")]
    ClockSkew {
        /// `X-Amz-Date` as sent.
        date: String,
        /// Earliest accepted signing time, `YYYYMMDD'T'HHMMSS'Z'`.
        min: String,
        /// Latest accepted signing time, `YYYYMMDD'T'HHMMSS'Z'`.
        max: String,
    },
    /// The credential scope names another region than this listener's.
    #[error(
        "Credential should be scoped to a valid region, not '{got}'. This endpoint is in '{expected}'. "
    )]
    WrongRegion {
        /// This listener's region.
        expected: String,
        /// The region in the credential scope.
        got: String,
    },
    /// The credential scope names another service.
    #[error("Credential should be scoped to correct service: '{expected}'. ")]
    WrongService {
        /// The service this endpoint implements.
        expected: String,
        /// The service in the credential scope.
        got: String,
    },
}

impl SigV4Error {
    /// The AWS error type (`x-amzn-ErrorType` / `__type`) to report this error under.
    pub fn error_type(&self) -> &'static str {
        match self {
            SigV4Error::Missing => "MissingAuthenticationTokenException",
            SigV4Error::Malformed(_) => "IncompleteSignatureException",
            SigV4Error::UnknownAccessKey => "UnrecognizedClientException",
            SigV4Error::BadSignature
            | SigV4Error::ClockSkew { .. }
            | SigV4Error::WrongRegion { .. }
            | SigV4Error::WrongService { .. } => "InvalidSignatureException",
        }
    }
}

/// A request whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key id the request was signed with.
    pub access_key_id: String,
}

/// `Err(SigV4Error::Malformed(format!(…)))`.
macro_rules! malformed {
    ($($arg:tt)*) => { Err(SigV4Error::Malformed(format!($($arg)*))) };
}

mod auth;
mod canonical;
mod clock;
pub mod sign;

use auth::extract_auth;
use canonical::{canonical_request, parse_query, payload_hash};
use clock::{check_time, parse_amz_date};
// The unit tests (`use super::*`) reach the parts they check through this module.
#[cfg(test)]
use {
    canonical::{canonical_query, canonical_uri},
    clock::format_amz_date,
    percent_encoding::percent_encode,
};

/// Verifies the SigV4 signature of a request received by the listener of `region`.
///
/// `uri` must be the request target as received (raw, percent-encoded path and query); `body`
/// the complete body; `service` the signing name (`"bedrock"`); `secret_for` maps an access key
/// id to its secret access key.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
    region: &str,
    service: &str,
    secret_for: impl Fn(&str) -> Option<String>,
) -> Result<Verified, SigV4Error> {
    let query = parse_query(uri.query().unwrap_or(""));
    let auth = extract_auth(headers, &query)?;

    let Some(signed_at) = parse_amz_date(&auth.amz_date) else {
        return malformed!(
            "Invalid X-Amz-Date '{}'; expected YYYYMMDD'T'HHMMSS'Z'.",
            auth.amz_date
        );
    };
    let http_date = auth.amz_date.get(..8).unwrap_or_default();
    if auth.date != http_date {
        return malformed!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
             HTTP: '{}' != '{http_date}', from 'X-Amz-Date'.",
            auth.date
        );
    }
    if auth.region != region {
        return Err(SigV4Error::WrongRegion {
            expected: region.to_owned(),
            got: auth.region,
        });
    }
    if auth.service != service {
        return Err(SigV4Error::WrongService {
            expected: service.to_owned(),
            got: auth.service,
        });
    }
    check_time(signed_at, now, &auth.amz_date)?;
    if !auth
        .signed_headers
        .iter()
        .any(|h| h == "host" || h == AUTHORITY)
    {
        return malformed!("'Host' must be a signed header.");
    }

    let payload_hash = payload_hash(headers, body)?;
    let creq = canonical_request(
        method,
        uri,
        &query,
        headers,
        &auth.signed_headers,
        &payload_hash,
    )?;
    let creq_hash = hex::encode(Sha256::digest(&creq));
    let scope = format!("{}/{region}/{service}/aws4_request", auth.date);
    let string_to_sign = format!("{ALGORITHM}\n{}\n{scope}\n{creq_hash}", auth.amz_date);

    let secret = secret_for(&auth.access_key_id).ok_or(SigV4Error::UnknownAccessKey)?;
    // HMAC takes keys of any length, so `None` cannot happen; should it, fail closed.
    let expected = signing_key(&secret, &auth.date, region, service)
        .and_then(|key| hmac_sha256(&key, string_to_sign.as_bytes()))
        .ok_or(SigV4Error::BadSignature)?;
    if bool::from(expected.as_slice().ct_eq(auth.signature.as_slice())) {
        Ok(Verified {
            access_key_id: auth.access_key_id,
        })
    } else {
        Err(SigV4Error::BadSignature)
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(data);
    Some(mac.finalize().into_bytes().to_vec())
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Option<Vec<u8>> {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes())?;
    let k_region = hmac_sha256(&k_date, region.as_bytes())?;
    let k_service = hmac_sha256(&k_region, service.as_bytes())?;
    hmac_sha256(&k_service, b"aws4_request")
}

/// HTTP/2's pseudo-header for the host, as it appears in `SignedHeaders`.
const AUTHORITY: &str = ":authority";

#[cfg(test)]
mod authority_tests;
#[cfg(test)]
mod tests;
