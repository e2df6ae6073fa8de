//! Verifying AWS Signature Version 4 (`AWS4-HMAC-SHA256`) on incoming requests, so that the
//! unchanged AWS SDKs for Amazon Bedrock can call a Spillway listener as if it were a regional
//! Bedrock endpoint (DESIGN.md §5).
//!
//! The algorithm is the one AWS documents ("Create a signed AWS API request"), implemented here
//! rather than delegated to the `aws-sigv4` crate: that crate *signs* — it decides which headers to
//! sign — but a verifier must rebuild the canonical request over exactly the `SignedHeaders` set the
//! client chose, and `aws-sigv4` has no API for that. (`aws-sigv4` is used in the tests to produce
//! requests signed the way the SDKs sign them, and in [`crate::bedrock_sign`] for outgoing calls.)
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
//! * **Host.** `host` must be signed. Over HTTP/2 there is no `Host` header; the URI authority
//!   (`:authority`) is used instead.
//!
//! Not supported (the Bedrock SDKs use none of them): presigned URLs (`X-Amz-Signature` in the
//! query; rejected as [`SigV4Error::Malformed`]), the `Date` header instead of `X-Amz-Date`,
//! chunked payload signing (`STREAMING-…`), SigV4a. A session token (`x-amz-security-token`) is
//! covered by the signature when signed, but not checked against anything.
//!
//! Secrets never appear in errors or logs: errors carry only the access key id's verdict, dates,
//! regions and header names.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use http::{HeaderMap, Method, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode};
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
    if !auth.signed_headers.iter().any(|h| h == "host") {
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

/// The signature inputs from the `Authorization` and `X-Amz-Date` headers.
/// The credential scope is `<access_key_id>/<date>/<region>/<service>/aws4_request`.
#[derive(Debug)]
struct AuthInput {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: Vec<u8>,
    amz_date: String,
}

type Query = [(Vec<u8>, Vec<u8>)];

fn extract_auth(headers: &HeaderMap, query: &Query) -> Result<AuthInput, SigV4Error> {
    let mut sigv4_headers = headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .filter(|v| v.as_bytes().starts_with(b"AWS4-"));
    let header = sigv4_headers.next();
    if sigv4_headers.next().is_some() {
        return malformed!("More than one AWS4 Authorization header.");
    }
    match header {
        Some(value) => match value.to_str() {
            Ok(value) => from_authorization(value, headers),
            Err(_) => malformed!("Authorization header is not valid ASCII."),
        },
        None if query
            .iter()
            .any(|(k, _)| k == b"X-Amz-Signature" || k == b"X-Amz-Algorithm") =>
        {
            malformed!("Presigned (query-string) SigV4 requests are not supported here.")
        }
        None => Err(SigV4Error::Missing),
    }
}

fn from_authorization(value: &str, headers: &HeaderMap) -> Result<AuthInput, SigV4Error> {
    let Some(rest) = value
        .strip_prefix(ALGORITHM)
        .filter(|rest| rest.starts_with(' '))
    else {
        return malformed!("Unsupported Authorization algorithm; only {ALGORITHM} is accepted.");
    };
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for component in rest.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let Some((key, val)) = component.split_once('=') else {
            return malformed!(
                "Authorization component '{component}' is not of the form key=value."
            );
        };
        let slot = match key.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            other => return malformed!("Unexpected Authorization component '{other}'."),
        };
        if slot.replace(val.trim()).is_some() {
            return malformed!("Authorization header repeats '{}'.", key.trim());
        }
    }
    let require = |v: Option<&'_ str>, name: &str| match v {
        Some(v) => Ok(v.to_owned()),
        None => malformed!("Authorization header requires '{name}' parameter."),
    };
    let Some(amz_date) = single_header(headers, "x-amz-date")? else {
        return malformed!(
            "Authorization header requires the existence of an 'X-Amz-Date' header."
        );
    };
    auth_input(
        &require(credential, "Credential")?,
        &require(signed_headers, "SignedHeaders")?,
        &require(signature, "Signature")?,
        amz_date.to_owned(),
    )
}

/// Parses the credential scope, the `SignedHeaders` list (lowercase header names, sorted, no
/// repeats) and the hex signature.
fn auth_input(
    credential: &str,
    signed_headers: &str,
    signature: &str,
    amz_date: String,
) -> Result<AuthInput, SigV4Error> {
    let parts: Vec<&str> = credential.split('/').collect();
    let [key, date, region, service, "aws4_request"] = parts.as_slice() else {
        return malformed!(
            "Credential '{credential}' is not of the form \
             <access key id>/<YYYYMMDD>/<region>/<service>/aws4_request."
        );
    };
    let digits = date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit());
    if !digits || [key, region, service].iter().any(|p| p.is_empty()) {
        return malformed!("Credential '{credential}' has an empty part or an invalid date.");
    }
    let names: Vec<String> = signed_headers.split(';').map(str::to_owned).collect();
    let lowercase_name =
        |n: &String| http::HeaderName::from_bytes(n.as_bytes()).is_ok_and(|h| h.as_str() == n);
    if !names.iter().all(lowercase_name) || !names.windows(2).all(|w| w[0] < w[1]) {
        return malformed!(
            "SignedHeaders '{signed_headers}' must be lowercase header names separated by ';', \
             sorted, without repeats."
        );
    }
    let Some(signature) = hex::decode(signature).ok().filter(|s| s.len() == 32) else {
        return malformed!("Signature must be 64 hexadecimal characters.");
    };
    Ok(AuthInput {
        access_key_id: (*key).to_owned(),
        date: (*date).to_owned(),
        region: (*region).to_owned(),
        service: (*service).to_owned(),
        signed_headers: names,
        signature,
        amz_date,
    })
}

/// The value of a header that may appear at most once.
fn single_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, SigV4Error> {
    let mut values = headers.get_all(name).iter();
    match (values.next().map(|v| v.to_str()), values.next()) {
        (None, _) => Ok(None),
        (Some(Ok(v)), None) => Ok(Some(v)),
        (Some(Err(_)), None) => malformed!("Header '{name}' is not valid ASCII."),
        (Some(_), Some(_)) => malformed!("Header '{name}' appears more than once."),
    }
}

fn payload_hash(headers: &HeaderMap, body: &[u8]) -> Result<String, SigV4Error> {
    let body_hash = hex::encode(Sha256::digest(body));
    match single_header(headers, "x-amz-content-sha256")? {
        None => Ok(body_hash),
        Some(UNSIGNED_PAYLOAD) => Ok(UNSIGNED_PAYLOAD.to_owned()),
        // The signature may cover the declared hash, but then the body is not what was signed.
        Some(declared) if declared.eq_ignore_ascii_case(&body_hash) => Ok(declared.to_owned()),
        Some(d) if d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Err(SigV4Error::BadSignature)
        }
        Some(other) => malformed!("Unsupported x-amz-content-sha256 value '{other}'."),
    }
}

/// Rejects a signing time more than 5 minutes away from now.
fn check_time(signed_at: u64, now: SystemTime, amz_date: &str) -> Result<(), SigV4Error> {
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (min, max) = (
        now.saturating_sub(MAX_SKEW_SECS),
        now.saturating_add(MAX_SKEW_SECS),
    );
    if (min..=max).contains(&signed_at) {
        return Ok(());
    }
    let date = amz_date.to_owned();
    Err(SigV4Error::ClockSkew {
        date,
        min: format_amz_date(min),
        max: format_amz_date(max),
    })
}

/// Builds the canonical request (as bytes: header values need not be UTF-8).
fn canonical_request(
    method: &Method,
    uri: &Uri,
    query: &Query,
    headers: &HeaderMap,
    signed_headers: &[String],
    payload_hash: &str,
) -> Result<Vec<u8>, SigV4Error> {
    let mut out = Vec::with_capacity(512);
    let (path, query) = (canonical_uri(uri.path()), canonical_query(query));
    let uri_and_query = format!("\n{path}\n{query}\n");
    out.extend_from_slice(method.as_str().as_bytes());
    out.extend_from_slice(uri_and_query.as_bytes());
    for name in signed_headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        let mut values = headers.get_all(name.as_str()).iter().peekable();
        if values.peek().is_none() {
            match uri.authority() {
                // HTTP/2 carries the host as `:authority`, not as a header.
                Some(authority) if name == "host" => {
                    out.extend(trim_all(authority.as_str().as_bytes()))
                }
                _ => {
                    return malformed!(
                        "SignedHeaders names '{name}', but the request has no such header."
                    );
                }
            }
        }
        for (i, value) in values.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend(trim_all(value.as_bytes()));
        }
        out.push(b'\n');
    }
    out.extend_from_slice(format!("\n{}\n{payload_hash}", signed_headers.join(";")).as_bytes());
    Ok(out)
}

/// The raw (still percent-encoded) path, dot and empty segments removed (RFC 3986 §5.2.4, as the
/// AWS SDKs do), encoded once more.
fn canonical_uri(raw_path: &str) -> String {
    let mut path = format!("/{}", raw_path.strip_prefix('/').unwrap_or(raw_path));
    if path.contains("/.") || path.contains("//") {
        let mut segments: Vec<&str> = Vec::new();
        for segment in path.split('/') {
            match segment {
                "" | "." => {}
                ".." => _ = segments.pop(),
                other => segments.push(other),
            }
        }
        let trailing = ["/", "/.", "/.."].iter().any(|end| path.ends_with(end));
        let slash = if trailing && !segments.is_empty() {
            "/"
        } else {
            ""
        };
        path = format!("/{}{slash}", segments.join("/"));
    }
    percent_encode(path.as_bytes(), PATH_ENCODE_SET).to_string()
}

/// Splits a raw query into decoded `(name, value)` pairs (`+` is a space).
fn parse_query(raw: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let decode = |s: &str| -> Vec<u8> { percent_decode_str(&s.replace('+', " ")).collect() };
    let pairs = raw.split('&').filter(|pair| !pair.is_empty());
    pairs
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .map(|(n, v)| (decode(n), decode(v)))
        .collect()
}

/// Encoded `name=value` pairs sorted by name then value, `&`-joined.
fn canonical_query(query: &Query) -> String {
    let encode = |s: &[u8]| percent_encode(s, ENCODE_SET).to_string();
    let mut pairs: Vec<(String, String)> =
        query.iter().map(|(n, v)| (encode(n), encode(v))).collect();
    pairs.sort();
    let pairs: Vec<String> = pairs.into_iter().map(|(n, v)| format!("{n}={v}")).collect();
    pairs.join("&")
}

/// Trims spaces at both ends and collapses inner runs of spaces into one (spaces only, as the
/// AWS documentation and the Rust and Go SDKs do).
fn trim_all(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for &b in value {
        if b != b' ' || out.last().is_some_and(|&last| last != b' ') {
            out.push(b);
        }
    }
    if out.last() == Some(&b' ') {
        out.pop();
    }
    out
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

/// Parses `YYYYMMDD'T'HHMMSS'Z'` into seconds since the Unix epoch.
fn parse_amz_date(s: &str) -> Option<u64> {
    let shape_ok = s.len() == 16 && s.get(8..9) == Some("T") && s.get(15..) == Some("Z");
    let num = |from: usize, to: usize| -> Option<u32> {
        let digits = s
            .get(from..to)
            .filter(|d| d.bytes().all(|c| c.is_ascii_digit()))?;
        digits.parse().ok()
    };
    let (year, month, day) = (i64::from(num(0, 4)?), num(4, 6)?, num(6, 8)?);
    let (hour, minute, second) = (
        u64::from(num(9, 11)?),
        u64::from(num(11, 13)?),
        u64::from(num(13, 15)?),
    );
    let days = days_from_civil(year, month, day);
    let valid_date = (1..=12).contains(&month) && civil_from_days(days) == (year, month, day);
    if !shape_ok || !valid_date || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(u64::try_from(days).ok()? * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Formats seconds since the Unix epoch as `YYYYMMDD'T'HHMMSS'Z'`.
fn format_amz_date(secs: u64) -> String {
    let (year, month, day) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2));
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    format!("{year:04}{month:02}{day:02}T{h:02}{m:02}{s:02}Z")
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let (era, month) = (year.div_euclid(400), i64::from(month));
    let yoe = year - era * 400;
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// Inverse of [`days_from_civil`]: `(year, month, day)`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests;
