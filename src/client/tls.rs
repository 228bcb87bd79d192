//! TLS for the load client (`--tls`, `--ca`), with rustls and its ring provider.
//!
//! The server's certificate is checked against `--ca` (PEM, one or more certificates)
//! or, without it, the system's roots. The name checked is `--host` as given: a DNS
//! name or an IP address, which the certificate must list. The handshake happens at
//! connect, so a certificate problem is a connect failure with rustls' reason.

use std::io;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A TLS connection to the server.
pub(crate) type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A TLS handshake that failed (a certificate rustls refuses, a server without TLS, ...).
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake failed: {0}")]
pub(crate) struct HandshakeFailed(pub io::Error);

impl HandshakeFailed {
    /// True if `e` is a failed handshake.
    pub(crate) fn is(e: &io::Error) -> bool {
        e.get_ref()
            .is_some_and(|inner| inner.is::<HandshakeFailed>())
    }
}

/// What every connection of a run needs to speak TLS to the server.
#[derive(Debug, Clone)]
pub(crate) struct TlsTarget {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl TlsTarget {
    /// Trusts `ca` (a PEM file) or, without it, the system's root certificates, and
    /// checks the server's certificate against `host`.
    pub(crate) fn new(host: &str, ca: Option<&Path>) -> anyhow::Result<TlsTarget> {
        let mut roots = RootCertStore::empty();
        match ca {
            Some(path) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("cannot read --ca {}", path.display()))?;
                let certs = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("--ca {} is not PEM", path.display()))?;
                if certs.is_empty() {
                    bail!(
                        "--ca {} holds no certificate (expected PEM blocks `BEGIN CERTIFICATE`)",
                        path.display()
                    );
                }
                for cert in certs {
                    roots.add(cert).with_context(|| {
                        format!(
                            "--ca {} holds a certificate rustls cannot use",
                            path.display()
                        )
                    })?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    bail!(
                        "--tls: no system root certificates found{}; pass --ca with the server's CA certificate",
                        found
                            .errors
                            .first()
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|e| anyhow!("--host {host} cannot be checked against a certificate: {e}"))?
            .to_owned();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("the TLS provider supports no safe protocol version")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsTarget {
            config: Arc::new(config),
            name,
        })
    }

    /// A new client-side TLS session for one connection (the event loop drives it).
    pub(crate) fn client(&self) -> io::Result<ClientConnection> {
        ClientConnection::new(Arc::clone(&self.config), self.name.clone()).map_err(io::Error::other)
    }

    /// Runs the handshake over a connected socket (bounded by its timeouts).
    pub(crate) fn handshake(&self, mut sock: TcpStream) -> io::Result<TlsStream> {
        let mut conn = self.client()?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)
                .map_err(|e| io::Error::new(e.kind(), HandshakeFailed(e)))?;
        }
        Ok(StreamOwned::new(conn, sock))
    }
}
