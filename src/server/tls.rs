//! TLS for the server (`--tls-cert`/`--tls-key`), with rustls and its ring provider.
//!
//! A TLS connection takes a simpler path than plaintext's: one `rustls::ServerConnection`
//! behind a mutex, shared by the connection's reader and its writer (the writer thread
//! with `--io threads`, the connection's event loop with `--io events`). The reader
//! reads ciphertext from the socket without the lock, then takes it to decrypt; only the
//! writer ever writes to the socket (responses are encrypted under the lock and
//! written after it), so TLS records can never interleave or reorder. When decrypting
//! leaves rustls with something to send (handshake messages, session tickets, alerts),
//! the reader asks the writer to flush it. Plaintext connections keep the outbox's
//! non-blocking direct send; none of this touches them. The same [`TlsReader`] serves
//! a blocking socket with a read timeout and a non-blocking one: either way a read that
//! finds nothing comes back as the socket's error.

use std::fs;
use std::io::{self, Read};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConnection;

use crate::server::outbox::Outbox;
use crate::sync;

/// One connection's TLS state, shared by its reader and its writer.
pub(crate) type Session = Arc<Mutex<ServerConnection>>;

/// Locks a session; a panic elsewhere must not take the connection's other side down.
pub(crate) fn lock(session: &Session) -> MutexGuard<'_, ServerConnection> {
    sync::lock(session)
}

/// Reads a PEM certificate chain and private key into a rustls server configuration.
pub(crate) fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let pem =
        fs::read(cert).with_context(|| format!("cannot read --tls-cert {}", cert.display()))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!(
                "--tls-cert {} is not a PEM certificate chain",
                cert.display()
            )
        })?;
    if chain.is_empty() {
        bail!(
            "--tls-cert {} holds no certificate (expected PEM blocks `BEGIN CERTIFICATE`)",
            cert.display()
        );
    }
    let pem = fs::read(key).with_context(|| format!("cannot read --tls-key {}", key.display()))?;
    let key_der = PrivateKeyDer::from_pem_slice(&pem).with_context(|| {
        format!(
            "--tls-key {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the TLS provider supports no safe protocol version")?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .with_context(|| {
            format!(
                "--tls-key {} does not fit --tls-cert {}, or is of an unsupported kind",
                key.display(),
                cert.display()
            )
        })?;
    Ok(Arc::new(config))
}

/// A new server-side session for one accepted connection.
pub(crate) fn session(config: &Arc<rustls::ServerConfig>) -> io::Result<Session> {
    let mut conn = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
    // The outbox bounds unsent bytes; rustls holds at most one batch of them.
    conn.set_buffer_limit(None);
    Ok(Arc::new(Mutex::new(conn)))
}

/// The error of a TLS handshake that did not finish within its limit.
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake not finished within {0:?} (--frame-timeout)")]
pub(crate) struct HandshakeTimeout(pub Duration);

impl HandshakeTimeout {
    /// True if `e` is a handshake timeout.
    pub(crate) fn is(e: &io::Error) -> bool {
        e.get_ref()
            .is_some_and(|inner| inner.is::<HandshakeTimeout>())
    }
}

/// The plaintext side of a TLS connection, read from the socket of its outbox.
///
/// Read timeouts (or `WouldBlock`) of the socket come through as they are, so the
/// reader still wakes to check for shutdown. The handshake must finish within
/// `handshake_limit`.
pub(crate) struct TlsReader {
    session: Session,
    outbox: Arc<Outbox>,
    raw: Box<[u8]>,
    start: usize,
    end: usize,
    handshake_deadline: Instant,
    handshake_limit: Duration,
}

impl TlsReader {
    pub(crate) fn new(
        session: Session,
        outbox: Arc<Outbox>,
        handshake_limit: Duration,
    ) -> TlsReader {
        TlsReader {
            session,
            outbox,
            raw: vec![0; 16 * 1024].into_boxed_slice(),
            start: 0,
            end: 0,
            handshake_deadline: Instant::now() + handshake_limit,
            handshake_limit,
        }
    }

    pub(crate) fn socket(&self) -> &TcpStream {
        self.outbox.stream()
    }

    /// True once the handshake has overrun its limit (for a reader that is not reading).
    pub(crate) fn handshake_expired(&self) -> bool {
        Instant::now() > self.handshake_deadline && lock(&self.session).is_handshaking()
    }
}

impl Read for TlsReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut conn = lock(&self.session);
            // Plaintext already decrypted first; then a clean end (close_notify) or an
            // unclean one (UnexpectedEof) once the socket has ended.
            match conn.reader().read(out) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
            if self.start < self.end {
                // Never an empty slice here: rustls takes a read of 0 as end of stream.
                let took = conn.read_tls(&mut &self.raw[self.start..self.end])?;
                if took == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "TLS: the peer's data does not fit rustls' buffer",
                    ));
                }
                self.start += took;
                let processed = conn.process_new_packets();
                let wants_write = conn.wants_write();
                drop(conn);
                if wants_write {
                    // Handshake messages, tickets, or the alert for an error below.
                    self.outbox.flush_tls();
                }
                if let Err(e) = processed {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("TLS: {e}"),
                    ));
                }
                continue;
            }
            if conn.is_handshaking() && Instant::now() > self.handshake_deadline {
                return Err(io::Error::other(HandshakeTimeout(self.handshake_limit)));
            }
            drop(conn);
            match self.outbox.stream().read(&mut self.raw) {
                Ok(0) => {
                    // Tells rustls the stream ended; its reader then says how.
                    let _ = lock(&self.session).read_tls(&mut &[][..]);
                }
                Ok(n) => {
                    self.start = 0;
                    self.end = n;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
