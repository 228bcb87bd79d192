//! Test support: start the real server binary on port 0, talk to it over loopback (plain
//! or TLS), and watch its processes through /proc.
//!
//! Every process started here is killed (by its pid, SIGKILL) and reaped on drop, through
//! `common::ChildGuard`, so a failing test leaves nothing behind. A test crate that
//! declares `mod sut` declares `mod common` too.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::ChildGuard;

pub const BIN: &str = env!("CARGO_BIN_EXE_threadcenter");

/// A running `threadcenter server`, killed and reaped when dropped.
pub struct Server {
    child: ChildGuard,
    pub addr: SocketAddr,
    pub ready_line: String,
    stderr: Arc<Mutex<String>>,
    /// The thread copying stderr into `stderr`: done once the server's stderr closed.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

/// The server's I/O models (`--io`): each test of the server's behaviour runs under
/// both, through [`io_tests`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    Threads,
    Events,
}

impl Io {
    pub fn flag(self) -> &'static str {
        match self {
            Io::Threads => "threads",
            Io::Events => "events",
        }
    }
}

/// Runs each `fn NAME(io: Io)` of the calling test file as two tests, `threads::NAME`
/// and `events::NAME`: one body, both I/O models.
#[allow(unused_macros)] // some test crates that use `sut` test no server behaviour
macro_rules! io_tests {
    ($($name:ident),* $(,)?) => {
        mod threads {
            $(#[test]
            fn $name() {
                super::$name($crate::sut::Io::Threads)
            })*
        }
        mod events {
            $(#[test]
            fn $name() {
                super::$name($crate::sut::Io::Events)
            })*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use io_tests;

impl Server {
    /// Starts `threadcenter server --port 0 ARGS...` and waits for its readiness line.
    pub fn start(args: &[&str]) -> Server {
        Self::start_with_env(args, &[])
    }

    /// [`Server::start`] with `--io IO`.
    pub fn start_io(io: Io, args: &[&str]) -> Server {
        Self::start_io_with_env(io, args, &[])
    }

    /// [`Server::start_with_env`] with `--io IO`.
    pub fn start_io_with_env(io: Io, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut all = vec!["--io", io.flag()];
        all.extend_from_slice(args);
        Self::start_with_env(&all, env)
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_with(args, env, None)
    }

    /// [`Server::start_io`] under an open-file limit of (soft, hard), set in the child
    /// before it runs the server.
    pub fn start_io_with_nofile(io: Io, args: &[&str], nofile: (u64, u64)) -> Server {
        let mut all = vec!["--io", io.flag()];
        all.extend_from_slice(args);
        Self::start_with(&all, &[], Some(nofile))
    }

    fn start_with(args: &[&str], env: &[(&str, &str)], nofile: Option<(u64, u64)>) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(["server", "--port", "0"]).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some((soft, hard)) = nofile {
            use std::os::unix::process::CommandExt;
            let lim = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            // SAFETY: setrlimit is async-signal-safe; `lim` is a copy owned by the closure.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard::spawn_in_our_group(cmd).expect("start the server binary");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_reader = {
            let mut err = child.child_mut().stderr.take().unwrap();
            let sink = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            })
        };
        let stdout = child.child_mut().stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut server = Server {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            ready_line: String::new(),
            stderr,
            stderr_reader: Some(stderr_reader),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no readiness line; stderr: {}", server.stderr_tail()));
        let addr = line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("addr="))
            .unwrap_or_else(|| {
                panic!(
                    "bad readiness line {line:?}; stderr: {}",
                    server.stderr_tail()
                )
            });
        server.addr = addr.parse().unwrap();
        server.ready_line = line.trim_end().to_string();
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn connect(&self) -> Conn {
        Conn::connect(self.addr)
    }

    pub fn worker_pids(&self) -> Vec<i32> {
        let stats = self
            .connect()
            .call(&serde_json::json!({"id": 0, "cmd": "stats"}));
        stats["stats"]["worker_stats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["pid"].as_i64().unwrap() as i32)
            .collect()
    }

    pub fn stderr_tail(&self) -> String {
        let s = self.stderr.lock().unwrap();
        s.chars()
            .rev()
            .take(2000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect()
    }

    /// Waits until the server's stderr holds `needle`; panics after `limit`.
    pub fn wait_for_stderr(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.stderr.lock().unwrap().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "the server did not print {needle:?} within {limit:?}; stderr: {}",
                self.stderr_tail()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the server with SIGTERM, waits (up to `limit`) for it to exit and for its
    /// stderr to close, and returns the exit status and everything it wrote on stderr.
    pub fn terminate(&mut self, limit: Duration) -> (ExitStatus, String) {
        kill(self.pid() as i32, libc::SIGTERM);
        let status = self.wait(limit);
        // The pipe closes when the server and its workers (which share it) are gone.
        if let Some(reader) = self.stderr_reader.take() {
            wait_until(limit, || reader.is_finished());
            reader.join().unwrap();
        }
        (status, self.stderr.lock().unwrap().clone())
    }

    /// Waits for the server to exit by itself; panics (and kills it) after `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        self.child.wait_timeout(limit).unwrap_or_else(|| {
            panic!(
                "server did not exit within {limit:?}; stderr: {}",
                self.stderr_tail()
            )
        })
    }
}

/// Appends one frame to `out`.
pub fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// The frames of `requests` back to back, as a pipelining client writes them.
pub fn frames(requests: impl IntoIterator<Item = Value>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in requests {
        frame(&mut out, r.to_string().as_bytes());
    }
    out
}

/// A raw framed connection over any byte stream, as any client written to protocol.md
/// would have: [`Conn`] over TCP, [`TlsConn`] over TLS.
pub struct Framed<S> {
    pub stream: S,
}

/// A framed connection over plain TCP.
pub type Conn = Framed<TcpStream>;

/// A framed connection over TLS, the same calls as [`Conn`].
pub type TlsConn = Framed<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

impl<S: Read + Write> Framed<S> {
    pub fn send_raw(&mut self, payload: &[u8]) {
        let mut buf = Vec::new();
        frame(&mut buf, payload);
        self.stream.write_all(&buf).unwrap();
        self.stream.flush().unwrap();
    }

    pub fn send(&mut self, v: &Value) {
        self.send_raw(v.to_string().as_bytes());
    }

    pub fn recv_raw(&mut self) -> Vec<u8> {
        let mut header = [0u8; 4];
        self.stream
            .read_exact(&mut header)
            .expect("read a response header");
        let mut payload = vec![0u8; u32::from_be_bytes(header) as usize];
        self.stream
            .read_exact(&mut payload)
            .expect("read a response payload");
        payload
    }

    pub fn recv(&mut self) -> Value {
        serde_json::from_slice(&self.recv_raw()).expect("response is JSON")
    }

    pub fn call(&mut self, v: &Value) -> Value {
        self.send(v);
        self.recv()
    }
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Conn { stream }
    }

    /// True if the server closed the connection (no more bytes, ever): an end of stream
    /// or a reset. A read that times out (the server still holds the connection open)
    /// is not an end.
    pub fn at_eof(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(n) => n == 0,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}

impl TlsConn {
    pub fn connect(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> TlsConn {
        let Conn { stream } = Conn::connect(addr);
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
        TlsConn {
            stream: rustls::StreamOwned::new(conn, stream),
        }
    }
}

/// Polls `cond` until it holds; panics after `limit`.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a pid this test started (or its server's worker).
    unsafe { libc::kill(pid, sig) };
}

use crate::common::alive;

/// A `VmRSS`/`Threads`-style field of /proc/PID/status, as a number (kB for sizes).
pub fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmRSS")
}

/// Sends SIGCONT to a pid this test stopped, if it still exists, when dropped: a test
/// that fails between SIGSTOP and the server's SIGKILL leaves no stopped process.
pub struct Stopped(pub i32);

impl Drop for Stopped {
    fn drop(&mut self) {
        if alive(self.0) {
            kill(self.0, libc::SIGCONT);
        }
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files into
/// `dir`: (cert path, key path, certificate DER).
pub fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("generate a certificate");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key, ck.cert.der().to_vec())
}

/// A client TLS configuration trusting exactly `ca_der`.
pub fn tls_client_config(ca_der: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca_der.to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}
