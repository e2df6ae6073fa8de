//! The signature inputs of a request: the `Authorization: AWS4-HMAC-SHA256 Credential=…,
//! SignedHeaders=…, Signature=…` header parsed and checked for shape (credential scope,
//! lowercase sorted `SignedHeaders`, 64 hex digits of signature), with the `X-Amz-Date` header.
//! Whether the values are *right* (date, region, service, signature) is [`super::verify`]'s.
use http::HeaderMap;

use super::canonical::Query;
use super::{ALGORITHM, SigV4Error};

/// The signature inputs from the `Authorization` and `X-Amz-Date` headers.
/// The credential scope is `<access_key_id>/<date>/<region>/<service>/aws4_request`.
#[derive(Debug)]
pub(super) struct AuthInput {
    pub(super) access_key_id: String,
    pub(super) date: String,
    pub(super) region: String,
    pub(super) service: String,
    pub(super) signed_headers: Vec<String>,
    pub(super) signature: Vec<u8>,
    pub(super) amz_date: String,
}

pub(super) fn extract_auth(headers: &HeaderMap, query: &Query) -> Result<AuthInput, SigV4Error> {
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
    let lowercase_name = |n: &String| {
        n == super::AUTHORITY
            || http::HeaderName::from_bytes(n.as_bytes()).is_ok_and(|h| h.as_str() == n)
    };
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
pub(super) fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &str,
) -> Result<Option<&'h str>, SigV4Error> {
    let mut values = headers.get_all(name).iter();
    match (values.next().map(|v| v.to_str()), values.next()) {
        (None, _) => Ok(None),
        (Some(Ok(v)), None) => Ok(Some(v)),
        (Some(Err(_)), None) => malformed!("Header '{name}' is not valid ASCII."),
        (Some(_), Some(_)) => malformed!("Header '{name}' appears more than once."),
    }
}
