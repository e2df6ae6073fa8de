//! `spillway tls-cert` and `spillway serve --tls-cert/--tls-key`: trying a TLS listener without
//! a real certificate.
//!
//! `tls-cert` writes a throw-away certificate authority (`ca.pem`, the file clients trust) and
//! a server certificate it signed for the given names (`cert.pem`, with the CA after it, and
//! `key.pem`, readable by its owner only). `serve --tls-cert … --tls-key …` puts them on the one
//! listener of a configuration (such as the embedded default), as `tls = { cert, key }` does in
//! a file; docs/TLS.md has the walk-through.
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use spillway_gateway::Config;
use spillway_gateway::config::ListenerTls;
use spillway_gateway::tls::{LocalCa, server_config};

#[derive(clap::Args)]
pub struct TlsCertArgs {
    /// The directory to write ca.pem, cert.pem and key.pem into (created if missing; existing
    /// files are replaced).
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// A DNS name or IP address the certificate is for; repeat for several.
    #[arg(long = "host", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
    hosts: Vec<String>,
}

/// `spillway tls-cert`.
pub fn run(args: &TlsCertArgs) -> anyhow::Result<()> {
    let ca = LocalCa::generate(&args.hosts)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let ca_path = args.out.join("ca.pem");
    let (cert, key) = (args.out.join("cert.pem"), args.out.join("key.pem"));
    write(&ca_path, &ca.ca_pem, 0o644)?;
    write(&cert, &ca.chain_pem, 0o644)?;
    write(&key, &ca.key_pem, 0o600)?;
    println!(
        "wrote {} (trust this), {} and {} for {}",
        ca_path.display(),
        cert.display(),
        key.display(),
        args.hosts.join(", ")
    );
    println!(
        "serve with:  spillway serve --tls-cert {} --tls-key {}",
        cert.display(),
        key.display()
    );
    println!(
        "or in a [[listeners]] entry:  tls = {{ cert = {:?}, key = {:?} }}",
        cert.display().to_string(),
        key.display().to_string()
    );
    Ok(())
}

fn write(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// `serve --tls-cert CERT --tls-key KEY`: HTTPS on the configuration's only listener.
pub fn serve_tls(cfg: &mut Config, cert: PathBuf, key: PathBuf) -> anyhow::Result<()> {
    let [listener] = cfg.listeners.as_mut_slice() else {
        anyhow::bail!(
            "--tls-cert needs exactly one listener in the configuration (found {}); set `tls` on each [[listeners]] entry instead",
            cfg.listeners.len()
        );
    };
    let server = server_config(&cert, &key)?;
    listener.tls = Some(ListenerTls { cert, key, server });
    cfg.command_line.tls = true;
    Ok(())
}
