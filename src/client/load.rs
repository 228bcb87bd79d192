//! The closed-loop load engine: one thread and one connection per concurrency slot, each
//! thread owning its histogram and counters, merged once at the end. Also what the
//! open-loop engine (`open.rs`) shares with it: target resolution, running the threads from
//! the start gate to their join, how a response is classified and how a failure is counted.
//!
//! Hot path per request: encode into a reused buffer, one `write_all`, read one frame
//! through a reused [`FrameReader`] buffer, parse it in place, record the latency in the
//! thread's own histogram. No lock, channel or allocation (failures aside).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail};
use hdrhistogram::Histogram;

use super::ids::Ids;
use super::intervals::{self, IntervalRecorder};
use super::report::{ClientCpu, Failures, Report};
use super::tls::{HandshakeFailed, TlsStream, TlsTarget};
use super::{LoadConfig, LoadModel, Mode};
use crate::domain::ClientCmd;
use crate::protocol::frame::FrameError;
use crate::protocol::message::{bounded, encode_request_with_id};
use crate::protocol::{compute, parse_response, Body, Command, ErrorCode, FrameReader};
use crate::sync;

/// Largest response frame accepted; larger ones count as malformed.
pub(super) const MAX_RESPONSE_FRAME: u32 = crate::protocol::DEFAULT_MAX_FRAME;
/// A thread stops after this many connection attempts in a row have failed.
pub const MAX_CONNECT_ATTEMPTS: u32 = 8;
/// Pause before the second reconnect in a row; doubles with each further failure.
const BACKOFF_START: Duration = Duration::from_millis(5);
/// Longest pause between reconnects.
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// Client threads need little stack; a small one keeps high concurrency cheap.
const THREAD_STACK: usize = 256 * 1024;
/// The key under which errors given as a plain string (no code) are counted among the
/// server errors: the original ThreadCenter server's shape.
pub const NO_CODE: &str = "(no code)";

/// `host:port` as a person types it (IPv6 literals in brackets).
pub fn target_name(host: &str, port: u16) -> String {
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
    let tls = config
        .tls
        .then(|| TlsTarget::new(&config.host, config.ca.as_deref()))
        .transpose()?;
    let addr = preflight(config, tls.as_ref())?;
    let shared = Arc::new(Shared::new(addr, config, tls));
    if let LoadModel::Open { rate, pipeline } = config.model {
        return super::open::run(shared, rate, pipeline);
    }
    let cpu_before = ClientCpu::now();
    let run = run_threads(&shared, |index, s| ThreadState::new().run(&s, index))?;

    let mut ok = 0;
    let mut failures = Failures::default();
    let mut histogram = crate::hdr::new_latency_histogram();
    let mut first_errors = BTreeMap::new();
    let mut last_done: Option<Instant> = None;
    let mut thread_intervals = Vec::new();
    for t in run.threads {
        thread_intervals.extend(t.intervals.map(IntervalRecorder::finish));
        ok += t.ok;
        failures.merge(&t.failures);
        histogram
            .add(&t.histogram)
            .map_err(|e| anyhow!("cannot merge latency histograms: {e:?}"))?;
        for (kind, message) in t.first_errors {
            first_errors.entry(kind).or_insert(message);
        }
        last_done = last_done.max(t.last_done);
    }
    let cpu = cpu_before.until_now();
    let elapsed = last_done.map_or(Duration::ZERO, |t| {
        t.saturating_duration_since(run.measure_from)
    });
    let intervals = if config.intervals {
        Some(intervals::merge(thread_intervals, elapsed, false)?)
    } else {
        None
    };
    Ok(Report {
        config: config.clone(),
        addr,
        ok,
        failures,
        elapsed,
        histogram,
        first_errors,
        measure_start: run.measure_start,
        intervals,
        open: None,
        cpu,
        warnings: Vec::new(),
    })
}

/// The threads of a finished run, and when its measured phase began.
pub(super) struct Finished<T> {
    /// Each thread's result, in thread order.
    pub threads: Vec<T>,
    /// The end of the warm-up, the start of the measured window.
    pub measure_from: Instant,
    /// The same moment by the wall clock (the interval log's StartTime).
    pub measure_start: SystemTime,
}

/// Runs `body(index, shared)` on one thread per connection, all released at once by the
/// gate, and waits for every one. `Err` if a thread could not start or panicked (the
/// results would be incomplete).
pub(super) fn run_threads<T, F>(shared: &Arc<Shared>, body: F) -> anyhow::Result<Finished<T>>
where
    T: Send + 'static,
    F: Fn(usize, Arc<Shared>) -> T + Send + Sync + Clone + 'static,
{
    let handles = spawn_threads(shared, body)?;
    let warmup = shared.config.warmup;
    let start = shared.gate.open_when_all_arrived();
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
        bail!("{panicked} client thread(s) panicked; the results would be incomplete");
    }
    Ok(Finished {
        threads,
        measure_from: start + warmup,
        measure_start,
    })
}

/// Starts one thread per connection, each running `body(index, shared)` once the gate
/// opens; on failure releases and joins the threads already started.
fn spawn_threads<T, F>(shared: &Arc<Shared>, body: F) -> anyhow::Result<Vec<JoinHandle<T>>>
where
    T: Send + 'static,
    F: Fn(usize, Arc<Shared>) -> T + Send + Sync + Clone + 'static,
{
    let n = shared.config.concurrency;
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
                    "cannot start client thread {} of {n}: {e}; lower --concurrency or raise the thread limit (ulimit -u)",
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
    /// `Some` with --tls (closed loop only).
    pub tls: Option<TlsTarget>,
    /// This run's request ids.
    pub ids: Ids,
    /// Set once the server answered SHUTTING_DOWN on any connection: a connection lost
    /// after that, or a connect refused, means the server is going away.
    pub going_away: AtomicBool,
}

impl Shared {
    fn new(addr: SocketAddr, config: &LoadConfig, tls: Option<TlsTarget>) -> Shared {
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
            gate: Gate::new(config.concurrency),
            tls,
            ids: Ids::new(config.ids),
            going_away: AtomicBool::new(false),
        }
    }

    /// True once any connection was told SHUTTING_DOWN.
    pub fn going_away(&self) -> bool {
        self.going_away.load(Ordering::Relaxed)
    }

    /// Notes a SHUTTING_DOWN answer.
    pub fn told_shutting_down(&self) {
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

    /// Waits for every thread (each one's connect is bounded by --timeout), then starts them.
    fn open_when_all_arrived(&self) -> Instant {
        let mut s = self.lock();
        while s.arrived < self.threads {
            s = sync::wait(&self.all_arrived, s);
        }
        let start = Instant::now();
        s.start = Some(start);
        self.opened.notify_all();
        start
    }

    fn abort(&self) {
        self.lock().aborted = true;
        self.opened.notify_all();
    }
}

/// A socket whose reads fail with `TimedOut` once the current request's deadline has
/// passed, so a server trickling bytes cannot stretch one request past about twice
/// `--timeout` (each read also has the socket's own `--timeout`).
struct DeadlineStream {
    stream: Transport,
    deadline: Instant,
}

/// The connection's bytes: the socket itself, or TLS over it.
enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if Instant::now() >= self.deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "response deadline passed",
            ));
        }
        self.stream.read(buf)
    }
}

type Conn = FrameReader<DeadlineStream>;

fn connect(addr: SocketAddr, timeout: Duration, tls: Option<&TlsTarget>) -> io::Result<Conn> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let stream = match tls {
        None => Transport::Plain(stream),
        Some(tls) => Transport::Tls(Box::new(tls.handshake(stream)?)),
    };
    let deadline = Instant::now() + timeout;
    Ok(FrameReader::new(
        DeadlineStream { stream, deadline },
        MAX_RESPONSE_FRAME,
    ))
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

/// Classifies a response payload to request `counter` of connection `index`: the
/// answer is ours if its id's text is the one sent, whatever JSON type it came in.
fn classify<'a>(
    payload: &'a [u8],
    ids: &Ids,
    index: usize,
    counter: u64,
    expected: Option<u64>,
) -> Outcome<'a> {
    let response = match parse_response(payload) {
        Ok(r) => r,
        Err(e) => return Outcome::Malformed(e.0),
    };
    if !ids.matches(response.id_text().as_ref(), index, counter) {
        if response.is_connection_error() {
            // A server may refuse a connection-level problem without an id.
            if let Outcome::ServerError { code, message, .. } = classify_body(response.body, None) {
                return Outcome::ServerError {
                    code,
                    message,
                    reconnect: true,
                };
            }
        }
        let sent = ids.json(index, counter);
        return Outcome::Malformed(format!(
            "response id {} does not match the request id {}",
            bounded(response.id),
            String::from_utf8_lossy(sent.as_bytes())
        ));
    }
    classify_body(response.body, expected)
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

/// One thread's results, merged by `run_load`.
struct ThreadState {
    ok: u64,
    failures: Failures,
    histogram: Histogram<u64>,
    first_errors: BTreeMap<String, String>,
    /// When the last measured request ended (answered or failed).
    last_done: Option<Instant>,
    /// The encoded request, rebuilt in place for each id.
    request: Vec<u8>,
    /// Per-second histograms, with `--interval-log` only.
    intervals: Option<IntervalRecorder>,
}

impl ThreadState {
    fn new() -> ThreadState {
        ThreadState {
            ok: 0,
            failures: Failures::default(),
            histogram: crate::hdr::new_latency_histogram(),
            first_errors: BTreeMap::new(),
            last_done: None,
            request: Vec::with_capacity(64),
            intervals: None,
        }
    }

    /// Runs connection `index`'s closed loop.
    fn run(mut self, shared: &Shared, index: usize) -> ThreadState {
        let cfg = &shared.config;
        // A failed first connect is retried, and counted, by the loop.
        let mut conn = connect(shared.addr, cfg.timeout, shared.tls.as_ref()).ok();
        let Some(start) = shared.gate.arrive() else {
            return self;
        };
        let measure_from = start + cfg.warmup;
        if cfg.intervals {
            self.intervals = Some(IntervalRecorder::new(measure_from, false));
        }
        let end = match cfg.mode {
            Mode::Duration(d) => Some(measure_from + d),
            Mode::Requests(_) => None,
        };
        let mut remaining = match cfg.mode {
            Mode::Requests(n) => Some(n),
            Mode::Duration(_) => None,
        };
        // Failures in a row that cost the connection, and failed connects in a row.
        let mut lost_in_row = 0u32;
        let mut connects_failed_in_row = 0u32;
        let mut id = 0u64;
        // SHUTTING_DOWN answers in a row, and whether this connection has had one.
        let mut shutting_in_row = 0u32;
        let mut told_here = false;

        loop {
            let mut now = Instant::now();
            let finished = |now: Instant, remaining: Option<u64>| {
                now >= measure_from && (remaining == Some(0) || end.is_some_and(|e| now >= e))
            };
            if finished(now, remaining) {
                break;
            }
            if shutting_in_row > 0 {
                // The server refuses new work: no tight loop while it closes.
                let pause = backoff(shutting_in_row + 1);
                thread::sleep(end.map_or(pause, |e| pause.min(e.saturating_duration_since(now))));
                now = Instant::now();
                if finished(now, remaining) {
                    break;
                }
            }
            if conn.is_none() {
                if lost_in_row >= 2 {
                    let pause = backoff(lost_in_row);
                    let pause = end.map_or(pause, |e| pause.min(e.saturating_duration_since(now)));
                    thread::sleep(pause);
                    now = Instant::now();
                    if finished(now, remaining) {
                        break;
                    }
                }
                match connect(shared.addr, cfg.timeout, shared.tls.as_ref()) {
                    Ok(c) => {
                        conn = Some(c);
                        connects_failed_in_row = 0;
                    }
                    Err(e) if shared.going_away() => {
                        // Told SHUTTING_DOWN, and now refused: the server has gone.
                        let why = || {
                            format!("the server answered SHUTTING_DOWN, then refused a new connection ({}: {e})", shared.addr)
                        };
                        // This request and, with --requests, every one still planned.
                        let measured = now >= measure_from;
                        let n = remaining.take().unwrap_or(u64::from(measured));
                        if n > 0 {
                            self.server_gone(n, why);
                        }
                        if measured {
                            self.last_done = Some(Instant::now());
                        }
                        break;
                    }
                    Err(e) => {
                        lost_in_row += 1;
                        connects_failed_in_row += 1;
                        if now >= measure_from {
                            self.failures.connect += 1;
                            note_first(&mut self.first_errors, "connect", || {
                                format!("{}: {e}", shared.addr)
                            });
                            self.last_done = Some(Instant::now());
                            if let Some(r) = remaining.as_mut() {
                                *r -= 1;
                            }
                        }
                        if connects_failed_in_row >= MAX_CONNECT_ATTEMPTS {
                            // The server is gone: the requests still planned cannot be sent.
                            if let Some(r) = remaining.take() {
                                self.failures.connect += r;
                                if r > 0 {
                                    note_first(&mut self.first_errors, "connect", || {
                                        format!("{}: {e}", shared.addr)
                                    });
                                }
                            }
                            break;
                        }
                        continue;
                    }
                }
            }
            let reader = conn.as_mut().expect("connected above");
            let measured = now >= measure_from;
            id += 1;
            self.request.clear();
            let wire_id = shared.ids.json(index, id);
            encode_request_with_id(&mut self.request, wire_id.as_bytes(), &shared.command);

            let sent_at = Instant::now();
            reader.get_mut().deadline = sent_at + cfg.timeout;
            let stream = &mut reader.get_mut().stream;
            let outcome = match stream
                .write_all(&self.request)
                .and_then(|()| stream.flush())
            {
                Err(e) if is_timeout(&e) => Outcome::Timeout,
                Err(e) => Outcome::Io(format!("sending: {e}")),
                Ok(()) => match reader.next_frame() {
                    Ok(Some(payload)) => classify(payload, &shared.ids, index, id, shared.expected),
                    Ok(None) => Outcome::Io("the server closed the connection".to_string()),
                    Err(e) if e.is_timeout() => Outcome::Timeout,
                    Err(e @ FrameError::TooLarge { .. }) => Outcome::Malformed(e.to_string()),
                    Err(e) => Outcome::Io(e.to_string()),
                },
            };
            let done_at = Instant::now();
            if outcome.is_shutting_down() {
                shared.told_shutting_down();
                told_here = true;
                shutting_in_row += 1;
            } else {
                shutting_in_row = 0;
            }
            let outcome = if told_here || shared.going_away() {
                outcome.after_shutting_down()
            } else {
                outcome
            };
            let gone = matches!(outcome, Outcome::ServerGone(_));
            let lost = outcome.loses_connection();
            if measured {
                let latency = done_at.saturating_duration_since(sent_at);
                if let (Some(iv), Outcome::Ok) = (self.intervals.as_mut(), &outcome) {
                    iv.record(done_at, duration_ns(latency), None);
                }
                self.record(outcome, latency, cfg);
                self.last_done = Some(done_at);
                if let Some(r) = remaining.as_mut() {
                    *r -= 1;
                }
            }
            if gone {
                // Reconnecting would only be refused: what is still planned is not sent.
                if let Some(r) = remaining.take().filter(|&r| r > 0) {
                    self.server_gone(r, || {
                        "the server went away; these requests were never sent".to_string()
                    });
                }
                break;
            }
            if lost {
                conn = None;
                told_here = false;
                lost_in_row += 1;
            } else {
                lost_in_row = 0;
            }
        }
        self
    }

    /// Counts `n` requests the server's going away left unanswered or unsent.
    fn server_gone(&mut self, n: u64, message: impl FnOnce() -> String) {
        self.failures.server_gone += n;
        note_first(&mut self.first_errors, "server_gone", message);
    }

    fn record(&mut self, outcome: Outcome<'_>, latency: Duration, cfg: &LoadConfig) {
        match outcome {
            Outcome::Ok => {
                self.ok += 1;
                record_ns(&mut self.histogram, duration_ns(latency));
            }
            failure => count_failure(&mut self.failures, &mut self.first_errors, failure, cfg),
        }
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
                format!(
                    "no response within {}",
                    humantime::format_duration(cfg.timeout)
                )
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

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
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

    #[test]
    fn classification() {
        use crate::client::ids::IdStyle;
        let want = Some(8360);
        let ints = Ids::with_nonce(IdStyle::Integer, 0);
        let c = |payload: &'static [u8], want| classify(payload, &ints, 0, 7, want);
        assert!(matches!(c(br#"{"id":7,"result":8360}"#, want), Outcome::Ok));
        // The original server echoes every id as a string: matched by its text.
        assert!(matches!(
            c(br#"{"id":"7","result":8360}"#, want),
            Outcome::Ok
        ));
        assert!(matches!(
            c(br#"{"id":7,"result":8361}"#, want),
            Outcome::WrongResult(8361)
        ));
        assert!(matches!(
            c(br#"{"id":"07","result":8360}"#, want),
            Outcome::Malformed(_)
        ));
        match c(br#"{"id":6,"result":8360}"#, want) {
            Outcome::Malformed(m) => assert!(m.contains("request id 7"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            c(br#"{"id":7,"ok":true}"#, want),
            Outcome::Malformed(_)
        ));
        assert!(matches!(c(b"nope", want), Outcome::Malformed(_)));
        match c(
            br#"{"id":7,"error":{"code":"OVERLOADED","message":"full"}}"#,
            want,
        ) {
            Outcome::ServerError {
                code, reconnect, ..
            } => assert_eq!((code.as_ref(), reconnect), ("OVERLOADED", false)),
            other => panic!("not a server error: {other:?}"),
        }
        // A plain-string error is a server error with its text kept, not malformed.
        match c(br#"{"id":"7","error":"unknown command"}"#, want) {
            Outcome::ServerError {
                code,
                message,
                reconnect,
            } => assert_eq!(
                (code.as_ref(), message.as_ref(), reconnect),
                (NO_CODE, "unknown command", false)
            ),
            other => panic!("not a server error: {other:?}"),
        }
        match c(
            br#"{"id":null,"error":{"code":"OVERLOADED","message":"too many connections"}}"#,
            want,
        ) {
            Outcome::ServerError { reconnect, .. } => assert!(reconnect),
            other => panic!("not a server error: {other:?}"),
        }
        // ping: our id and no error.
        assert!(matches!(
            c(br#"{"id":7,"ok":true,"pong":true}"#, None),
            Outcome::Ok
        ));
        assert!(matches!(c(br#"{"id":"7"}"#, None), Outcome::Ok));

        // UUIDs: only the exact id sent matches.
        let uuids = Ids::with_nonce(IdStyle::Uuid, 0xfeed);
        let sent = String::from_utf8(uuids.json(2, 7).as_bytes().to_vec()).unwrap();
        let answer = format!(r#"{{"id":{sent},"result":8360}}"#);
        assert!(matches!(
            classify(answer.as_bytes(), &uuids, 2, 7, want),
            Outcome::Ok
        ));
        for (index, counter) in [(2, 8), (3, 7)] {
            assert!(matches!(
                classify(answer.as_bytes(), &uuids, index, counter, want),
                Outcome::Malformed(_)
            ));
        }
        let shutting = c(
            br#"{"id":7,"error":{"code":"SHUTTING_DOWN","message":"bye"}}"#,
            want,
        );
        assert!(shutting.is_shutting_down());
        assert!(!Outcome::Timeout.is_shutting_down());
        assert!(matches!(
            Outcome::Io("closed".into()).after_shutting_down(),
            Outcome::ServerGone(m) if m.contains("closed")
        ));
        assert!(matches!(
            Outcome::Timeout.after_shutting_down(),
            Outcome::Timeout
        ));
    }
}
