//! TLS for the API listeners: the server configuration built from a listener's `tls = { cert,
//! key }` files, and a local certificate authority for trying TLS without a real certificate.
//!
//! The server side is rustls with the aws-lc-rs provider (the one the upstream client already
//! uses, through hyper-rustls), TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`: a client that offers
//! `h2` speaks HTTP/2, any other speaks HTTP/1.1. Everything that can be wrong with the files is
//! found when the configuration is loaded ([`server_config`]): a missing or unreadable file, a
//! file with no certificate or no private key, and a key that does not belong to the
//! certificate. A running listener never reads them again.
//!
//! [`LocalCa::generate`] makes what `spillway tls-cert` writes: a throw-away CA (the file a
//! client trusts: `AWS_CA_BUNDLE`, `NODE_EXTRA_CA_CERTS`, `SSL_CERT_FILE`, `curl --cacert`) and a
//! server certificate it signed for the given names. A separate CA rather than one self-signed
//! server certificate, because strict verifiers (webpki, Python's `VERIFY_X509_STRICT`) refuse a
//! certificate that is both the trust anchor and the end entity.
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The ALPN protocols the API listeners offer, most preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {file}: {error}")]
    Read {
        file: String,
        error: rustls_pki_types::pem::Error,
    },
    #[error("{0} holds no PEM certificate")]
    NoCertificate(String),
    #[error("{0} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey(String),
    #[error("the key {key} does not go with the certificate {cert}: {error}")]
    Mismatch {
        cert: String,
        key: String,
        error: rustls::Error,
    },
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The rustls server configuration of a listener whose certificate chain (leaf first) is in the
/// PEM file `cert` and whose private key is in the PEM file `key`.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let (cert_name, key_name) = (cert.display().to_string(), key.display().to_string());
    let read_err = |file: &str| {
        let file = file.to_string();
        move |error| TlsError::Read { file, error }
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(read_err(&cert_name))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err(&cert_name))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert_name));
    }
    let private = match PrivateKeyDer::from_pem_file(key) {
        Ok(k) => k,
        Err(rustls_pki_types::pem::Error::NoItemsFound) => return Err(TlsError::NoKey(key_name)),
        Err(e) => return Err(read_err(&key_name)(e)),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mismatch = |error| TlsError::Mismatch {
        cert: cert_name.clone(),
        key: key_name.clone(),
        error,
    };
    // `with_single_cert` checks that the key's public half is the certificate's.
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(mismatch)?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(mismatch)?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A throw-away certificate authority and a server certificate it signed, as PEM text.
#[derive(Debug, Clone)]
pub struct LocalCa {
    /// The CA's certificate: what clients trust.
    pub ca_pem: String,
    /// The server certificate followed by the CA's (the listener's `cert`).
    pub chain_pem: String,
    /// The server certificate's private key (the listener's `key`).
    pub key_pem: String,
}

impl LocalCa {
    /// A new CA, and a server certificate for `hosts` (DNS names or IP addresses), valid from
    /// now for about a year.
    pub fn generate(hosts: &[String]) -> Result<LocalCa, TlsError> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name
            .push(DnType::CommonName, "Spillway local CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut ca);
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let mut leaf = CertificateParams::new(hosts.to_vec())?;
        let first = hosts.first().map_or("localhost", String::as_str);
        leaf.distinguished_name.push(DnType::CommonName, first);
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.use_authority_key_identifier_extension = true;
        validity(&mut leaf);
        let leaf_key = KeyPair::generate()?;
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
        Ok(LocalCa {
            ca_pem: ca_cert.pem(),
            chain_pem: format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
            key_pem: leaf_key.serialize_pem(),
        })
    }
}

/// From a day ago (clock skew) to 365 days on.
fn validity(params: &mut rcgen::CertificateParams) {
    let now = std::time::SystemTime::now();
    let day = std::time::Duration::from_secs(86_400);
    params.not_before = (now - day).into();
    params.not_after = (now + 365 * day).into();
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("spillway-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_generated_pair_loads_with_alpn_h2_first() {
        let dir = temp_dir("ok");
        let ca = LocalCa::generate(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        let cert = write(&dir, "cert.pem", &ca.chain_pem);
        let key = write(&dir, "key.pem", &ca.key_pem);
        let config = server_config(&cert, &key).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn missing_empty_and_mismatched_files_are_refused() {
        let dir = temp_dir("bad");
        let one = LocalCa::generate(&["localhost".into()]).unwrap();
        let other = LocalCa::generate(&["localhost".into()]).unwrap();
        let cert = write(&dir, "cert.pem", &one.chain_pem);
        let key = write(&dir, "key.pem", &one.key_pem);
        let wrong_key = write(&dir, "other-key.pem", &other.key_pem);
        let empty = write(&dir, "empty.pem", "not pem at all\n");
        let missing = dir.join("missing.pem");

        let err = server_config(&missing, &key).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err}");
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let err = server_config(&empty, &key).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate(_)), "{err}");
        let err = server_config(&cert, &empty).unwrap_err();
        assert!(matches!(err, TlsError::NoKey(_)), "{err}");
        let err = server_config(&cert, &wrong_key).unwrap_err();
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
        // The key itself never appears in an error.
        assert!(!err.to_string().contains("PRIVATE KEY"), "{err}");
    }

    /// The embedded default with its listener on TLS with these files, and a second listener
    /// whose files are missing.
    fn config_with(cert: &Path, key: &Path) -> Result<crate::Config, crate::ConfigError> {
        let listener = "[[listeners]]\nbind = \"127.0.0.1:8080\"\nregion = \"us-east-1\"\n";
        let text = crate::config::embedded::DEFAULT_TOML.replace(
            listener,
            &format!(
                "{listener}tls = {{ cert = {:?}, key = {:?} }}\n\n[[listeners]]\nbind = \"127.0.0.1:8443\"\nregion = \"us-east-2\"\ntls = {{ cert = \"/no/such/cert.pem\", key = \"/no/such/key.pem\" }}\n",
                cert.display().to_string(),
                key.display().to_string(),
            ),
        );
        assert_ne!(
            text,
            crate::config::embedded::DEFAULT_TOML,
            "listener replaced"
        );
        crate::Config::parse(&text, "<test>")
    }

    #[test]
    fn tls_files_are_checked_when_the_configuration_loads_every_error_at_once() {
        let dir = temp_dir("config");
        let one = LocalCa::generate(&["localhost".into()]).unwrap();
        let other = LocalCa::generate(&["localhost".into()]).unwrap();
        let cert = write(&dir, "cert.pem", &one.chain_pem);
        let wrong_key = write(&dir, "key.pem", &other.key_pem);
        let err = config_with(&cert, &wrong_key).unwrap_err();
        let keys: Vec<String> = err
            .each()
            .iter()
            .filter_map(|e| match e {
                crate::ConfigError::Invalid { key, .. } => Some(key.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(keys, ["listeners[0].tls", "listeners[1].tls"], "{err}");
        let text = err.to_string();
        assert!(
            text.contains("does not go with") && text.contains("/no/such/cert.pem"),
            "{text}"
        );
    }

    #[test]
    fn a_listener_with_good_tls_files_loads() {
        let dir = temp_dir("config-ok");
        let ca = LocalCa::generate(&["localhost".into()]).unwrap();
        let cert = write(&dir, "cert.pem", &ca.chain_pem);
        let key = write(&dir, "key.pem", &ca.key_pem);
        let err = config_with(&cert, &key).unwrap_err();
        // Only the listener with missing files is refused.
        assert_eq!(err.each().len(), 1, "{err}");
        assert!(err.to_string().contains("listeners[1].tls"), "{err}");
    }
}
