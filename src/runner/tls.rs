//! The throwaway certificate of a run with TLS targets: generated once per run (rcgen)
//! into the run directory's `tls/`, served by every `tls = true` target, and the only
//! certificate the run's client and `stats` connections trust.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::client::tls::TlsTarget;

/// The directory in a run directory, and its files.
pub(crate) const TLS_DIR: &str = "tls";
pub(crate) const CERT_FILE: &str = "cert.pem";
pub(crate) const KEY_FILE: &str = "key.pem";

/// The address every target listens on and the name the client checks.
pub(crate) const HOST: &str = "127.0.0.1";

/// A run's certificate, its key, and the client side that trusts exactly it.
#[derive(Debug, Clone)]
pub(crate) struct RunCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client: TlsTarget,
}

impl RunCert {
    /// Makes a self-signed certificate for 127.0.0.1 and `localhost` (an ECDSA P-256
    /// key) and writes it to `<dir>/tls/`, the key readable by its owner only.
    pub(crate) fn generate(dir: &Path) -> anyhow::Result<RunCert> {
        let made = rcgen::generate_simple_self_signed(vec![HOST.into(), "localhost".into()])
            .context("cannot generate the run's TLS certificate")?;
        let tls_dir = dir.join(TLS_DIR);
        std::fs::create_dir_all(&tls_dir)
            .with_context(|| format!("cannot create {}", tls_dir.display()))?;
        let cert = tls_dir.join(CERT_FILE);
        let key = tls_dir.join(KEY_FILE);
        std::fs::write(&cert, made.cert.pem())
            .with_context(|| format!("cannot write {}", cert.display()))?;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key)
            .and_then(|mut f| f.write_all(made.signing_key.serialize_pem().as_bytes()))
            .with_context(|| format!("cannot write {}", key.display()))?;
        let client = TlsTarget::new(HOST, Some(&cert))?;
        Ok(RunCert { cert, key, client })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_certificate_is_what_the_server_and_client_load() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunCert::generate(dir.path()).unwrap();
        // The server's loader accepts the pair, the client's accepts the certificate.
        crate::server::tls::server_config(&run.cert, &run.key).unwrap();
        let mode = std::fs::metadata(&run.key).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert!(std::fs::read_to_string(&run.cert)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
