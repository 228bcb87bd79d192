//! The system under test: listener, connections, dispatch to the worker pool, shutdown.
//!
//! An accept loop hands each connection to its I/O model (`--io`): a thread of its own
//! with a writer beside it (`connection`, the seed's model), or one of the event loops
//! (`events`). `compute` goes through a bounded queue to the pool (`pool/`); `ping`
//! and `stats` are answered by whoever read them. SIGINT/SIGTERM set a flag that every
//! loop polls: the listener closes, connections answer what they already hold and
//! close once drained (see `connection`: at most the longest task in flight plus
//! `FLUSH_ALLOWANCE`, however hard clients keep sending), then the workers stop. A
//! second signal exits at once. Connections the process cannot hold (past
//! `--max-connections`, or when a descriptor or a thread cannot be had) are answered
//! OVERLOADED and closed; the others go on.

pub(crate) mod capacity;
pub(crate) mod connection;
pub(crate) mod events;
pub(crate) mod exporter;
pub(crate) mod metrics;
pub(crate) mod outbox;
pub(crate) mod pool;
pub(crate) mod refuse;
pub mod stages;
pub(crate) mod tls;
pub(crate) mod worker;

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::Serialize;
use socket2::{Domain, Socket, Type};

use crate::cli::ServerArgs;
use crate::domain::{IoModel, PoolKind};
use crate::protocol::ErrorCode;
use metrics::{Metrics, RequestCounts, WorkerStats};
use pool::process::{PipeHost, ProcessPool};
use pool::{thread::ThreadPool, Pool, WhenFull};
use stages::StageSummaries;

/// Everything the server needs to know, resolved from its flags.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub workers: usize,
    pub pool: PoolKind,
    /// Threads per connection, or event loops (`--io`).
    pub io: IoModel,
    /// Event loops under `--io events`.
    pub io_threads: usize,
    pub max_frame: u32,
    pub max_n: u64,
    pub queue_capacity: usize,
    pub when_full: WhenFull,
    pub drain_timeout: Duration,
    /// Connections open at once; past it new ones are refused with OVERLOADED. Its
    /// default follows from the open-file limit (see `capacity`).
    pub max_connections: u64,
    /// Longest one task may run before its worker is killed (or, for threads, gives up).
    pub task_timeout: Duration,
    /// Longest a started frame may take to arrive whole.
    pub frame_timeout: Duration,
    /// Requests one connection may have in the pool before its reader pauses.
    pub max_in_flight: usize,
    /// Unsent response bytes one connection may hold before its reader pauses.
    pub max_buffered: usize,
    /// The executable re-run as `threadcenter worker`.
    pub worker_exe: PathBuf,
    /// Serve TLS with this configuration (`--tls-cert`/`--tls-key`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Serve Prometheus metrics on this address (`--metrics`).
    pub metrics_addr: Option<String>,
    /// Time each request's stages (off with `--no-stage-timing`).
    pub stage_timing: bool,
}

impl ServerConfig {
    pub fn from_args(args: &ServerArgs) -> anyhow::Result<ServerConfig> {
        let workers = args.workers.unwrap_or_else(crate::machine::available_cores);
        if workers == 0 {
            bail!("--workers must be at least 1");
        }
        Ok(ServerConfig {
            host: args.host.clone(),
            port: args.port,
            workers,
            pool: args.pool,
            io: args.io,
            io_threads: args
                .io_threads
                .map_or_else(crate::machine::available_cores, |n| n as usize),
            max_frame: args.max_frame,
            max_n: args.max_n,
            queue_capacity: usize::try_from(args.queue_capacity).unwrap_or(usize::MAX),
            when_full: args.when_full,
            drain_timeout: args.drain_timeout,
            max_connections: capacity::max_connections(args.io, args.max_connections),
            task_timeout: args.task_timeout,
            frame_timeout: args.frame_timeout,
            max_in_flight: usize::try_from(args.max_in_flight).unwrap_or(usize::MAX),
            max_buffered: 4 << 20,
            worker_exe: std::env::current_exe()
                .context("cannot find this executable to start worker processes")?,
            tls: match (&args.tls_cert, &args.tls_key) {
                (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
                (None, None) => None,
                _ => bail!("--tls-cert and --tls-key go together"),
            },
            metrics_addr: args.metrics.clone(),
            stage_timing: !args.no_stage_timing,
        })
    }
}

/// State shared by the accept loop and every connection.
pub struct Context {
    pub config: ServerConfig,
    pub metrics: Arc<Metrics>,
    pub pool: Box<dyn Pool>,
    shutdown: Arc<AtomicBool>,
}

/// The `stats` response body (see docs/stats.md).
#[derive(Debug, Serialize)]
pub struct StatsSnapshot {
    pub uptime_s: f64,
    pub workers: usize,
    pub pool: &'static str,
    /// `threads` or `events` (`--io`).
    pub io: &'static str,
    pub connections: Connections,
    /// Requests received, by cmd.
    pub requests: RequestCounts,
    /// Error responses (and refused connections), by code.
    pub errors: BTreeMap<&'static str, u64>,
    /// Responses by cmd, then outcome (`ok` or an error code).
    pub responses: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    /// Compute requests received and not answered yet.
    pub in_flight: u64,
    /// Compute requests waiting for a worker.
    pub queue_depth: usize,
    pub worker_stats: Vec<WorkerStats>,
    /// False under `--no-stage-timing`: `stages_us` then stays empty.
    pub stage_timing: bool,
    /// Seconds covered by `stages_us`: since the last reset, or the start.
    pub stages_window_s: f64,
    /// Compute requests answered with a result, per stage (see `stages`).
    pub stages_us: StageSummaries,
}

#[derive(Debug, Serialize)]
pub struct Connections {
    /// `--max-connections`, given or derived from the open-file limit.
    pub max: u64,
    pub open: u64,
    pub total: u64,
    /// Refused at accept: --max-connections were open.
    pub refused: u64,
    /// Closed because a frame did not arrive whole within --frame-timeout.
    pub timed_out: u64,
}

impl Context {
    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Relaxed)
    }

    /// A snapshot of every counter; `reset` zeroes the stage histograms after reading.
    pub fn stats(&self, reset: bool) -> StatsSnapshot {
        // Counters first, then the stages: a request answered in between is timed in
        // this window but not yet counted, rather than the other way round, and the
        // gap is only the few microseconds before the drain visits the recorders (the
        // pool's figures, behind the pool's lock, are read after the drain so they do
        // not widen it).
        let requests = self.metrics.requests();
        let responses = self.metrics.responses();
        let in_flight = self.metrics.in_flight();
        let errors = self.metrics.errors();
        let (stages_window_s, stages_us) = self
            .metrics
            .stages
            .drain(reset, |r| (r.window_s, stages::summaries(r.since_reset)));
        let worker_stats = self.pool.workers();
        let queue_depth = self.pool.queue_depth();
        StatsSnapshot {
            uptime_s: self.metrics.uptime_s(),
            workers: self.config.workers,
            pool: self.config.pool.as_str(),
            io: self.config.io.as_str(),
            connections: Connections {
                max: self.config.max_connections,
                open: self.metrics.connections_open.load(Relaxed),
                total: self.metrics.connections_total.load(Relaxed),
                refused: self.metrics.connections_refused.load(Relaxed),
                timed_out: self.metrics.frames_timed_out.load(Relaxed),
            },
            requests,
            errors,
            responses,
            in_flight,
            queue_depth,
            worker_stats,
            stage_timing: self.metrics.stages.enabled(),
            stages_window_s,
            stages_us,
        }
    }
}

/// Runs the server until SIGINT/SIGTERM, then drains and stops.
pub fn run(args: &ServerArgs) -> anyhow::Result<()> {
    let config = ServerConfig::from_args(args)?;
    let shutdown = Arc::new(AtomicBool::new(false));
    let listening: Arc<OnceLock<SocketAddr>> = Arc::default();
    let signals = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];
    for sig in signals {
        // A second signal while draining exits at once.
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&shutdown))?;
    }
    let mut incoming = signal_hook::iterator::Signals::new(signals)?;
    {
        let (shutdown, listening) = (Arc::clone(&shutdown), Arc::clone(&listening));
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if incoming.forever().next().is_some() {
                    shutdown.store(true, Relaxed);
                    // Wake the accept loop now rather than at its next timeout: a
                    // runner stopping a server per cell waits for this.
                    if let Some(addr) = listening.get() {
                        wake_listener(*addr);
                    }
                }
            })?;
    }
    serve(config, shutdown, |addr, metrics_addr, config| {
        let _ = listening.set(addr);
        let mut out = io::stdout().lock();
        write!(
            out,
            "threadcenter listening addr={addr} pid={} workers={} pool={} io={} tls={}",
            std::process::id(),
            config.workers,
            config.pool.as_str(),
            config.io.as_str(),
            if config.tls.is_some() { "on" } else { "off" }
        )?;
        if let Some(m) = metrics_addr {
            write!(out, " metrics={m}")?;
        }
        writeln!(out)?;
        out.flush()
    })
}

/// Binds, starts the pool, calls `ready` once connections are accepted (with the
/// metrics address, if any), and serves until `shutdown` is set; then drains.
pub fn serve(
    config: ServerConfig,
    shutdown: Arc<AtomicBool>,
    ready: impl FnOnce(SocketAddr, Option<SocketAddr>, &ServerConfig) -> io::Result<()>,
) -> anyhow::Result<()> {
    let listener = bind(&config.host, config.port)?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() && config.tls.is_none() {
        eprintln!(
            "threadcenter server: WARNING: listening on {addr}, which is not a loopback address, without TLS: anyone who can reach this port can submit work and read every request and response in plaintext. Bind 127.0.0.1 (the default), or serve TLS with --tls-cert/--tls-key."
        );
    }
    let metrics_listener = config
        .metrics_addr
        .as_deref()
        .map(exporter::bind)
        .transpose()?;
    let metrics = Arc::new(Metrics::new(config.stage_timing));
    // Event loops exist before the pool, which lends them its workers' result pipes.
    let prepared = match config.io {
        IoModel::Threads => None,
        IoModel::Events => Some(events::Prepared::new(config.io_threads)?),
    };
    let hosts = prepared
        .as_ref()
        .map(events::Prepared::pipe_hosts)
        .unwrap_or_default();
    let pool = start_pool(&config, &metrics, hosts)?;
    let ctx = Arc::new(Context {
        config,
        metrics,
        pool,
        shutdown,
    });
    // Test-only: the stall window, if THREADCENTER_TEST_STALL is set, counts from here.
    pool::test_hooks::stall_window();
    let exporter = match metrics_listener {
        Some(l) => Some(exporter::Exporter::start(l, Arc::clone(&ctx))?),
        None => None,
    };
    ready(addr, exporter.as_ref().map(|e| e.addr), &ctx.config)
        .context("cannot print the readiness line")?;

    let loops = prepared.map(|p| p.start(&ctx)).transpose()?;
    accept_until_shutdown(&ctx, listener, loops.as_ref());
    if let Some(loops) = &loops {
        loops.stop();
    }
    let drained = drain(&ctx);
    if let Some(loops) = loops {
        loops.join(Duration::from_secs(1));
    }
    drop(exporter);
    drained
}

/// Starts the pool `config` asks for: worker processes, or threads.
/// Under `--io events`, `hosts` are the event loops that read the process pool's result
/// pipes.
fn start_pool(
    config: &ServerConfig,
    metrics: &Arc<Metrics>,
    hosts: Vec<Arc<dyn PipeHost>>,
) -> anyhow::Result<Box<dyn Pool>> {
    Ok(match config.pool {
        PoolKind::Process => Box::new(
            ProcessPool::start(
                config.worker_exe.clone(),
                config.workers,
                config.queue_capacity,
                config.when_full,
                config.task_timeout,
                Arc::clone(metrics),
                hosts,
            )
            .context("cannot start the worker pool")?,
        ),
        PoolKind::Thread => Box::new(
            ThreadPool::start(
                config.workers,
                config.queue_capacity,
                config.when_full,
                config.task_timeout,
                Arc::clone(metrics),
            )
            .context("cannot start the worker threads")?,
        ),
    })
}

/// Accepts connections until the shutdown flag is set: each goes to an event loop
/// (`loops`) or a thread of its own; past `--max-connections` it is refused.
fn accept_until_shutdown(ctx: &Arc<Context>, listener: TcpListener, loops: Option<&events::Loops>) {
    let refuser = refuse::Refuser::start();
    let mut spare = Spare::new();
    while !ctx.shutting_down() {
        match listener.accept() {
            // The signal thread's wake-up call, or a client arriving after the signal.
            Ok(_) if ctx.shutting_down() => break,
            Ok((stream, _peer))
                if ctx.metrics.connections_open.load(Relaxed) >= ctx.config.max_connections =>
            {
                ctx.metrics.connections_refused.fetch_add(1, Relaxed);
                ctx.metrics.error(ErrorCode::Overloaded);
                refuser.refuse(stream, ctx.config.max_connections);
            }
            Ok((stream, _peer)) => {
                ctx.metrics.connections_open.fetch_add(1, Relaxed);
                ctx.metrics.connections_total.fetch_add(1, Relaxed);
                match loops {
                    Some(loops) => loops.dispatch(stream),
                    None => spawn_connection(ctx, stream),
                }
            }
            Err(e) if transient(&e) => {}
            Err(e) => accept_failed(ctx, &listener, &mut spare, e),
        }
    }
    drop(listener);
    drop(refuser);
}

/// An accept or read that failed for now (no data, a timeout, a signal): try again.
pub(crate) fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// `--io threads`: starts the connection's reader thread (which starts its writer). A
/// thread that cannot be started refuses the connection, and the server goes on.
fn spawn_connection(ctx: &Arc<Context>, stream: TcpStream) {
    // The stream comes back if the thread cannot start (the closure is dropped).
    let handoff = Arc::new(std::sync::Mutex::new(Some(stream)));
    let (c, h) = (Arc::clone(ctx), Arc::clone(&handoff));
    let spawned = std::thread::Builder::new()
        .name("conn-reader".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let stream = crate::sync::lock(&h).take();
            drop(h);
            if let Some(stream) = stream {
                connection::serve(c, stream);
            }
        });
    if let Err(e) = spawned {
        ctx.metrics.connections_open.fetch_sub(1, Relaxed);
        eprintln!("threadcenter server: cannot start a connection thread: {e}");
        if let Some(stream) = crate::sync::lock(&handoff).take() {
            connection::refuse_unserved(
                ctx,
                &stream,
                &format!("cannot start a thread for this connection ({e})"),
            );
        }
    }
}

/// A descriptor held in reserve: when `accept` fails for want of descriptors, closing
/// it lets the server accept the waiting connection, answer it OVERLOADED and close
/// it, rather than leave it in the backlog, where its client would wait unanswered.
struct Spare(Option<std::fs::File>);

impl Spare {
    fn new() -> Spare {
        Spare(std::fs::File::open("/dev/null").ok())
    }
}

/// `accept` failed: out of descriptors (EMFILE, ENFILE), memory (ENOMEM, ENOBUFS), or
/// something else. The connection that could not be taken is refused if a spare
/// descriptor allows it; the server goes on, after a short pause if it could not.
fn accept_failed(ctx: &Context, listener: &TcpListener, spare: &mut Spare, e: io::Error) {
    static LAST_SAID: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    let no_fds = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
    {
        // Said at most once a second: a flood must not flood stderr too.
        let mut last = crate::sync::lock(&LAST_SAID);
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            *last = Some(Instant::now());
            eprintln!(
                "threadcenter server: accept failed: {e}; refusing new connections until there is room (--max-connections {} is above what this process can hold)",
                ctx.config.max_connections
            );
        }
    }
    if no_fds && spare.0.take().is_some() {
        if let Ok((stream, _)) = listener.accept() {
            connection::refuse_unserved(
                ctx,
                &stream,
                "has no file descriptor left for this connection",
            );
        }
        *spare = Spare::new();
        if spare.0.is_some() {
            return;
        }
    }
    std::thread::sleep(Duration::from_millis(10));
}

/// After the listener closed: waits for connections to answer what they hold, then
/// stops the pool.
fn drain(ctx: &Context) -> anyhow::Result<()> {
    let started = Instant::now();
    let open = ctx.metrics.connections_open.load(Relaxed);
    eprintln!(
        "threadcenter server: shutting down; draining {}",
        crate::human::count(open, "connection", "connections")
    );
    let deadline = Instant::now() + ctx.config.drain_timeout;
    while ctx.metrics.connections_open.load(Relaxed) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let left = ctx.metrics.connections_open.load(Relaxed);
    ctx.pool.close();
    let clean = ctx.pool.join(if left > 0 {
        Duration::ZERO
    } else {
        Duration::from_secs(5)
    });
    if left > 0 {
        bail!(
            "{} still had requests in flight after --drain-timeout {}; workers killed",
            crate::human::count(left, "connection", "connections"),
            crate::human::duration(ctx.config.drain_timeout)
        );
    }
    if !clean {
        eprintln!("threadcenter server: workers did not stop within 5s and were killed");
    }
    eprintln!(
        "threadcenter server: stopped; the drain took {} ms; answers over the whole run: {}",
        started.elapsed().as_millis(),
        answer_counts(&ctx.metrics.responses())
    );
    Ok(())
}

/// `compute.ok=12 compute.SHUTTING_DOWN=1`: every non-zero response count.
fn answer_counts(responses: &BTreeMap<&str, BTreeMap<&str, u64>>) -> String {
    let counts: Vec<String> = responses
        .iter()
        .flat_map(|(cmd, by)| {
            by.iter()
                .filter(|(_, &n)| n > 0)
                .map(move |(outcome, n)| format!("{cmd}.{outcome}={n}"))
        })
        .collect();
    if counts.is_empty() {
        "none".to_string()
    } else {
        counts.join(" ")
    }
}

/// Connects to our own listener so a blocked `accept` returns at once.
fn wake_listener(addr: SocketAddr) {
    let mut target = addr;
    if addr.ip().is_unspecified() {
        target.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let _ = std::net::TcpStream::connect_timeout(&target, Duration::from_millis(200));
}

/// Binds a listening socket whose `accept` times out, so the loop can see shutdown.
fn bind(host: &str, port: u16) -> anyhow::Result<TcpListener> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve --host {host}"))?
        .collect();
    let mut last = None;
    for addr in &addrs {
        match bind_one(*addr) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some((addr, e)),
        }
    }
    let Some((addr, e)) = last else {
        bail!("--host {host} resolves to no address");
    };
    let hint = match e.kind() {
        io::ErrorKind::AddrInUse => format!(
            "another process holds port {port}: pick another --port (0 picks a free one) or stop that process (`ss -ltnp 'sport = :{port}'` shows it)"
        ),
        io::ErrorKind::AddrNotAvailable => {
            format!("{host} is not an address of this machine: check --host")
        }
        io::ErrorKind::PermissionDenied => {
            "ports below 1024 need privileges: pick a --port above 1024".to_string()
        }
        _ => "check --host and --port".to_string(),
    };
    bail!("cannot listen on {addr}: {e}; {hint}")
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    // accept(2) honours SO_RCVTIMEO on Linux: the loop wakes to check for shutdown.
    socket.set_read_timeout(Some(connection::POLL))?;
    Ok(socket.into())
}
