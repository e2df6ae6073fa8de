//! Step 1 of SigV4: the canonical request (method, canonical URI, canonical query, the signed
//! headers' canonical values, the `SignedHeaders` list, the payload hash), with the path and
//! query canonicalised as the SDKs do (see the parent module's docs).
use http::header::HOST;
use http::{HeaderMap, Method, Uri};
use percent_encoding::{percent_decode_str, percent_encode};
use sha2::{Digest, Sha256};

use super::auth::single_header;
use super::{AUTHORITY, ENCODE_SET, PATH_ENCODE_SET, SigV4Error, UNSIGNED_PAYLOAD};

/// A query's decoded `(name, value)` pairs, in request order.
pub(super) type Query = [(Vec<u8>, Vec<u8>)];

/// The payload hash of the canonical request: `x-amz-content-sha256` when sent (it must match
/// the body unless it is `UNSIGNED-PAYLOAD`), else the SHA-256 of the body.
pub(super) fn payload_hash(headers: &HeaderMap, body: &[u8]) -> Result<String, SigV4Error> {
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

/// Builds the canonical request (as bytes: header values need not be UTF-8).
pub(super) fn canonical_request(
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
        if name == AUTHORITY {
            // The pseudo-header: the URI authority (HTTP/2), else the `Host` header.
            let host = uri.authority().map(|a| a.as_str().as_bytes());
            let Some(host) = host.or_else(|| headers.get(HOST).map(|v| v.as_bytes())) else {
                return malformed!(
                    "SignedHeaders names '{AUTHORITY}', but the request has no authority or Host."
                );
            };
            out.extend(trim_all(host));
            out.push(b'\n');
            continue;
        }
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
pub(super) fn canonical_uri(raw_path: &str) -> String {
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
pub(super) fn parse_query(raw: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let decode = |s: &str| -> Vec<u8> { percent_decode_str(&s.replace('+', " ")).collect() };
    let pairs = raw.split('&').filter(|pair| !pair.is_empty());
    pairs
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .map(|(n, v)| (decode(n), decode(v)))
        .collect()
}

/// Encoded `name=value` pairs sorted by name then value, `&`-joined.
pub(super) fn canonical_query(query: &Query) -> String {
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
