//! What the load engine (`events.rs`) is built on: target resolution and the preflight
//! connect, the threads from the start gate to their join, how a response body is
//! classified and how a failure is counted, the reconnect backoff.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail};
use hdrhistogram::Histogram;

use super::ids::Ids;
use super::live::Live;
use super::report::{Failures, Report};
use super::tls::{HandshakeFailed, TlsTarget};
use super::LoadConfig;
use crate::domain::ClientCmd;
use crate::protocol::{compute, Body, Command, ErrorCode};
use crate::sync;

/// Largest response frame accepted; larger ones count as malformed.
pub(super) const MAX_RESPONSE_FRAME: u32 = crate::protocol::DEFAULT_MAX_FRAME;
/// A thread stops after this many connection attempts in a row have failed.
pub(crate) const MAX_CONNECT_ATTEMPTS: u32 = 8;
/// Pause before the second reconnect in a row; doubles with each further failure.
const BACKOFF_START: Duration = Duration::from_millis(5);
/// Longest pause between reconnects.
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// An event-loop thread's stack: its connections and histograms live on the heap.
const THREAD_STACK: usize = 512 * 1024;
/// The key under which errors given as a plain string (no code) are counted among the
/// server errors: the original ThreadCenter server's shape.
pub(crate) const NO_CODE: &str = "(no code)";

/// `host:port` as a person types it (IPv6 literals in brackets).
pub(crate) fn target_name(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Runs the load described by `config` and returns what it measured.
///
/// `Err` only when the run cannot start: the host does not resolve, the server does not
/// accept a connection, or threads cannot be created. Failed requests are in the report.
pub fn run_load(config: &LoadConfig) -> anyhow::Result<Report> {
    run_load_observed(config, |_| None)
}

/// [`run_load`], calling `on_ready` with the server's address once it accepted the
/// preflight connection; the [`Live`] it returns gets the counts as the run goes.
pub(crate) fn run_load_observed(
    config: &LoadConfig,
    on_ready: impl FnOnce(SocketAddr) -> Option<Arc<Live>>,
) -> anyhow::Result<Report> {
    let tls = config
        .tls
        .then(|| TlsTarget::new(&config.host, config.ca.as_deref()))
        .transpose()?;
    super::events::ensure_open_files(config.concurrency as u64)?;
    let addr = preflight(config, tls.as_ref())?;
    let live = on_ready(addr);
    let shared = Arc::new(Shared::new(addr, config, tls, live));
    super::events::run(shared)
}

/// The threads of a finished run, and when its measured phase began.
pub(super) struct Finished<T> {
    /// Each thread's result, in thread order.
    pub threads: Vec<T>,
    /// The end of the warm-up, the start of the measured window.
    pub measure_from: Instant,
    /// The same moment by the wall clock (the interval log's StartTime).
    pub measure_start: SystemTime,
    /// When every thread had returned: no connection measured anything after it.
    pub joined: Instant,
}

/// Runs `body(thread, shared)` on each of the `--threads` threads, all released at once
/// by the gate, and waits for every one. `Err` if a thread could not start or panicked (the
/// results would be incomplete).
pub(super) fn run_threads<T, F>(shared: &Arc<Shared>, body: F) -> anyhow::Result<Finished<T>>
where
    T: Send + 'static,
    F: Fn(usize, Arc<Shared>) -> T + Send + Sync + Clone + 'static,
{
    let handles = spawn_threads(shared, body)?;
    let warmup = shared.config.warmup;
    let wait_go = shared.config.wait_go;
    let Some(start) = shared
        .gate
        .open_when_all_arrived(|| !wait_go || wait_for_go())
    else {
        for handle in handles {
            let _ = handle.join();
        }
        bail!("no `go` line came on stdin (--wait-go): the runner went away before the start");
    };
    if wait_go {
        say("started");
    }
    let measure_start = SystemTime::now() + warmup;
    let mut threads = Vec::with_capacity(handles.len());
    let mut panicked = 0;
    for handle in handles {
        match handle.join() {
            Ok(t) => threads.push(t),
            Err(_) => panicked += 1,
        }
    }
    if panicked > 0 {
        bail!(
            "{} panicked; the results would be incomplete",
            crate::human::count(panicked as u64, "client thread", "client threads")
        );
    }
    Ok(Finished {
        threads,
        measure_from: start + warmup,
        measure_start,
        joined: Instant::now(),
    })
}

/// Starts the `--threads` threads, each running `body(thread, shared)` (which waits at
/// the gate); on failure releases and joins the threads already started.
fn spawn_threads<T, F>(shared: &Arc<Shared>, body: F) -> anyhow::Result<Vec<JoinHandle<T>>>
where
    T: Send + 'static,
    F: Fn(usize, Arc<Shared>) -> T + Send + Sync + Clone + 'static,
{
    let n = shared.config.threads;
    let mut handles = Vec::with_capacity(n);
    for index in 0..n {
        let s = Arc::clone(shared);
        let body = body.clone();
        let spawned = thread::Builder::new()
            .name(format!("client-{index}"))
            .stack_size(THREAD_STACK)
            .spawn(move || body(index, s));
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                shared.gate.abort();
                for handle in handles {
                    let _ = handle.join();
                }
                bail!(
                    "cannot start client thread {} of {n}: {e}; lower --threads or raise the thread limit (ulimit -u)",
                    index + 1
                );
            }
        }
    }
    Ok(handles)
}

/// Resolves the target and checks that it accepts a connection, so that a server that is
/// not there is one clear error and not thousands of failed requests.
fn preflight(config: &LoadConfig, tls: Option<&TlsTarget>) -> anyhow::Result<SocketAddr> {
    let target = target_name(&config.host, config.port);
    let addrs: Vec<SocketAddr> = (config.host.as_str(), config.port)
        .to_socket_addrs()
        .map_err(|e| anyhow!("cannot resolve {target}: {e}; check --host"))?
        .collect();
    let mut last_error = None;
    for addr in addrs {
        match connect(addr, config.timeout, tls) {
            Ok(_) => return Ok(addr),
            // The server is there but TLS failed: that is the error to show.
            Err(e) if HandshakeFailed::is(&e) => {
                bail!("cannot connect to {target}: {e}; check --ca, --host and that the server runs with --tls-cert")
            }
            Err(e) => last_error = Some(e),
        }
    }
    match last_error {
        Some(e) => bail!(
            "cannot connect to {target}: {e}; is the server running? check --host/--port and any firewall"
        ),
        None => bail!("cannot resolve {target}: no address found; check --host"),
    }
}

/// What every thread reads.
pub(super) struct Shared {
    pub addr: SocketAddr,
    pub config: LoadConfig,
    pub command: Command,
    /// compute(size), computed once; `None` for ping.
    pub expected: Option<u64>,
    pub gate: Gate,
    /// `Some` with --tls.
    pub tls: Option<TlsTarget>,
    /// This run's request ids.
    pub ids: Ids,
    /// Set once the server answered SHUTTING_DOWN on any connection: a connection lost
    /// after that, or a connect refused, means the server is going away.
    pub going_away: AtomicBool,
    /// On a terminal: where the threads publish what the live line shows.
    pub live: Option<Arc<Live>>,
}

impl Shared {
    fn new(
        addr: SocketAddr,
        config: &LoadConfig,
        tls: Option<TlsTarget>,
        live: Option<Arc<Live>>,
    ) -> Shared {
        let (command, expected) = match config.cmd {
            ClientCmd::Compute => (
                Command::Compute { n: config.size },
                Some(compute(config.size)),
            ),
            ClientCmd::Ping => (Command::Ping, None),
        };
        Shared {
            addr,
            config: config.clone(),
            command,
            expected,
            gate: Gate::new(config.threads),
            tls,
            ids: Ids::new(config.ids),
            going_away: AtomicBool::new(false),
            live,
        }
    }

    /// True once any connection was told SHUTTING_DOWN.
    pub(super) fn going_away(&self) -> bool {
        self.going_away.load(Ordering::Relaxed)
    }

    /// Notes a SHUTTING_DOWN answer.
    pub(super) fn told_shutting_down(&self) {
        self.going_away.store(true, Ordering::Relaxed);
    }
}

/// Holds every thread until all have connected, then releases them with one start time.
pub(super) struct Gate {
    threads: usize,
    state: Mutex<GateState>,
    all_arrived: Condvar,
    opened: Condvar,
}

struct GateState {
    arrived: usize,
    start: Option<Instant>,
    aborted: bool,
}

impl Gate {
    fn new(threads: usize) -> Gate {
        Gate {
            threads,
            state: Mutex::new(GateState {
                arrived: 0,
                start: None,
                aborted: false,
            }),
            all_arrived: Condvar::new(),
            opened: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        sync::lock(&self.state)
    }

    /// A thread is ready; returns the common start time, or `None` if the run was aborted.
    pub(super) fn arrive(&self) -> Option<Instant> {
        let mut s = self.lock();
        s.arrived += 1;
        if s.arrived == self.threads {
            self.all_arrived.notify_one();
        }
        while s.start.is_none() && !s.aborted {
            s = sync::wait(&self.opened, s);
        }
        s.start
    }

    /// Waits for every thread (each one's connect is bounded by --timeout), then for
    /// `before` (`--wait-go`'s line), then starts them; `None` (the threads released
    /// with nothing to do) when `before` says no.
    fn open_when_all_arrived(&self, before: impl FnOnce() -> bool) -> Option<Instant> {
        let mut s = self.lock();
        while s.arrived < self.threads {
            s = sync::wait(&self.all_arrived, s);
        }
        drop(s);
        if !before() {
            self.abort();
            return None;
        }
        let mut s = self.lock();
        let start = Instant::now();
        s.start = Some(start);
        self.opened.notify_all();
        Some(start)
    }

    fn abort(&self) {
        self.lock().aborted = true;
        self.opened.notify_all();
    }
}

/// `--wait-go`: says `ready` on stdout and waits for the line `go` on stdin; false at
/// the end of stdin (the runner went away).
fn wait_for_go() -> bool {
    say("ready");
    let mut line = String::new();
    loop {
        line.clear();
        match std::io::stdin().read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) if line.trim() == "go" => return true,
            Ok(_) => {}
        }
    }
}

/// One line on stdout, at once (the runner's wrapper reads it).
fn say(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// A blocking connect (and TLS handshake), for the preflight check.
fn connect(addr: SocketAddr, timeout: Duration, tls: Option<&TlsTarget>) -> io::Result<()> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    if let Some(tls) = tls {
        tls.handshake(stream)?;
    }
    Ok(())
}

/// How one request ended.
#[derive(Debug, Clone)]
pub(super) enum Outcome<'a> {
    Ok,
    WrongResult(u64),
    ServerError {
        code: Cow<'a, str>,
        message: Cow<'a, str>,
        /// The error did not carry our id: the connection's state is unknown.
        reconnect: bool,
    },
    Malformed(String),
    Io(String),
    Timeout,
    /// The server is going away (see [`Failures::server_gone`]).
    ServerGone(String),
}

impl Outcome<'_> {
    /// After these the connection's state is unknown, so the thread reconnects.
    pub(super) fn loses_connection(&self) -> bool {
        match self {
            Outcome::Ok | Outcome::WrongResult(_) => false,
            Outcome::ServerError { reconnect, .. } => *reconnect,
            Outcome::Malformed(_) | Outcome::Io(_) | Outcome::Timeout | Outcome::ServerGone(_) => {
                true
            }
        }
    }

    /// An answer that says the server is draining: SHUTTING_DOWN.
    pub(super) fn is_shutting_down(&self) -> bool {
        matches!(self, Outcome::ServerError { code, .. } if code == ErrorCode::ShuttingDown.as_str())
    }

    /// This outcome once the server has said it is going away: a connection that broke
    /// (or closed) is then the server leaving, not a fault of the network.
    pub(super) fn after_shutting_down(self) -> Self {
        match self {
            Outcome::Io(m) => Outcome::ServerGone(format!(
                "the server answered SHUTTING_DOWN, then the connection ended ({m})"
            )),
            other => other,
        }
    }

    /// The same outcome, owning its text.
    pub(super) fn into_owned(self) -> Outcome<'static> {
        match self {
            Outcome::Ok => Outcome::Ok,
            Outcome::WrongResult(v) => Outcome::WrongResult(v),
            Outcome::ServerError {
                code,
                message,
                reconnect,
            } => Outcome::ServerError {
                code: Cow::Owned(code.into_owned()),
                message: Cow::Owned(message.into_owned()),
                reconnect,
            },
            Outcome::Malformed(m) => Outcome::Malformed(m),
            Outcome::Io(m) => Outcome::Io(m),
            Outcome::Timeout => Outcome::Timeout,
            Outcome::ServerGone(m) => Outcome::ServerGone(m),
        }
    }
}

/// Classifies the body of a response whose id is the request's.
pub(super) fn classify_body(body: Body<'_>, expected: Option<u64>) -> Outcome<'_> {
    match (body, expected) {
        (Body::Error { code, message }, _) => Outcome::ServerError {
            code,
            message,
            reconnect: false,
        },
        // The original server's plain-string errors: a server error all the same.
        (Body::ErrorText(message), _) => Outcome::ServerError {
            code: Cow::Borrowed(NO_CODE),
            message,
            reconnect: false,
        },
        (Body::Result(got), Some(want)) if got == want => Outcome::Ok,
        (Body::Result(got), Some(_)) => Outcome::WrongResult(got),
        (_, Some(_)) => Outcome::Malformed("compute response has no `result`".to_string()),
        // ping: a response with our id and no error is a success.
        (_, None) => Outcome::Ok,
    }
}

/// A duration in nanoseconds, saturating.
pub(super) fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Records `ns`, clamped to the histogram's range.
pub(super) fn record_ns(h: &mut Histogram<u64>, ns: u64) {
    if h.record(ns).is_err() {
        h.saturating_record(ns);
    }
}

/// Counts one failed request by kind, keeping the first message of each kind.
pub(super) fn count_failure(
    failures: &mut Failures,
    first_errors: &mut BTreeMap<String, String>,
    outcome: Outcome<'_>,
    cfg: &LoadConfig,
) {
    match outcome {
        Outcome::Ok => {}
        Outcome::WrongResult(got) => {
            failures.wrong_result += 1;
            note_first(first_errors, "wrong_result", || {
                format!(
                    "compute({}) answered {got}, expected {}",
                    cfg.size,
                    compute(cfg.size)
                )
            });
        }
        Outcome::ServerError { code, message, .. } => {
            failures.add_server_error(&code, 1);
            note_first(first_errors, &format!("server error {code}"), || {
                message.into_owned()
            });
        }
        Outcome::Malformed(m) => {
            failures.malformed += 1;
            note_first(first_errors, "malformed", || m);
        }
        Outcome::Io(m) => {
            failures.io += 1;
            note_first(first_errors, "io", || m);
        }
        Outcome::ServerGone(m) => {
            failures.server_gone += 1;
            note_first(first_errors, "server_gone", || m);
        }
        Outcome::Timeout => {
            failures.timeout += 1;
            note_first(first_errors, "timeout", || {
                format!("no response within {}", crate::human::duration(cfg.timeout))
            });
        }
    }
}

/// Keeps `message()` as the first message of failure `kind` if none is kept yet; builds
/// it only then.
pub(super) fn note_first(
    first_errors: &mut BTreeMap<String, String>,
    kind: &str,
    message: impl FnOnce() -> String,
) {
    if !first_errors.contains_key(kind) {
        first_errors.insert(kind.to_string(), message());
    }
}

/// Pause before a reconnect after `failures_in_row` lost connections or failed connects.
pub(super) fn backoff(failures_in_row: u32) -> Duration {
    let doublings = failures_in_row.saturating_sub(2).min(16);
    BACKOFF_START
        .saturating_mul(1 << doublings)
        .min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(2), Duration::from_millis(5));
        assert_eq!(backoff(3), Duration::from_millis(10));
        assert_eq!(backoff(9), Duration::from_millis(500));
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
        let total: Duration = (2..MAX_CONNECT_ATTEMPTS + 2).map(backoff).sum();
        assert!(total < Duration::from_secs(2), "{total:?}");
    }

    #[test]
    fn target_names() {
        assert_eq!(target_name("127.0.0.1", 5050), "127.0.0.1:5050");
        assert_eq!(target_name("::1", 80), "[::1]:80");
        assert_eq!(target_name("localhost", 1), "localhost:1");
    }
}
