//! Prometheus metrics at `http://ADDR/metrics` (`--metrics ADDR`), in the text exposition
//! format (0.0.4) written by the prometheus-client crate.
//!
//! Every value is read at scrape time from the same counters as `stats` (a
//! [`Collector`]), so a scrape costs the hot path nothing. The stage histograms are the
//! server's HDR histograms since the start, never reset by `stats`, cut at fixed
//! bucket bounds ([`BUCKETS_S`]); the `_sum` is exact. The HTTP side is a minimal
//! HTTP/1.x responder on a thread of its own: one request per connection, `GET
//! /metrics` (200) or anything else (404), 2 s to send the request.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, DescriptorEncoder, EncodeCounterValue, EncodeMetric, NoLabelSet,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::server::metrics::WorkerStats;
use crate::server::stages::{Stage, StageHist};
use crate::server::Context;

/// Upper bounds (seconds) of the stage-latency histogram buckets; `+Inf` follows.
pub(crate) const BUCKETS_S: [f64; 22] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
    5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Longest a scraper may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Binds the metrics listener (before the readiness line, so a bad address fails early).
pub(crate) fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .with_context(|| {
            format!("--metrics {addr}: not an address (write HOST:PORT, e.g. 127.0.0.1:9464)")
        })?
        .collect();
    let listener = TcpListener::bind(&addrs[..]).with_context(|| {
        format!("--metrics {addr}: cannot listen there (another process may hold the port; port 0 picks a free one)")
    })?;
    // Non-blocking accept, polled, so the thread sees shutdown.
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// The running metrics endpoint; stops its thread when dropped.
pub(crate) struct Exporter {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Exporter {
    pub(crate) fn start(listener: TcpListener, ctx: Arc<Context>) -> anyhow::Result<Exporter> {
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            eprintln!("threadcenter server: note: /metrics is served on {addr}, which is not a loopback address, in plaintext and to anyone");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ServerCollector(ctx)));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("metrics-http".into())
                .spawn(move || serve(&listener, &registry, &stop))
                .context("cannot start the metrics thread")?
        };
        Ok(Exporter {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: &TcpListener, registry: &Registry, stop: &AtomicBool) {
    while !stop.load(Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = answer(stream, registry) {
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::BrokenPipe
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                    ) {
                        eprintln!("threadcenter server: a /metrics request failed: {e}");
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("threadcenter server: /metrics accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Reads one request's head and answers it, then closes the connection.
fn answer(mut stream: TcpStream, registry: &Registry) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > 16 * 1024 || Instant::now() > deadline {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"",
            );
        }
        match stream.read(&mut buf)? {
            0 => return Ok(()),
            n => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next(), parts.next());
    let path = target.map(|t| t.split(|&b| b == b'?').next().unwrap_or_default());
    match (method, path) {
        (Some(b"GET" | b"HEAD"), Some(b"/metrics")) => {
            let mut text = String::with_capacity(16 * 1024);
            prometheus_text::encode(&mut text, registry)
                .map_err(|_| io::Error::other("cannot encode the metrics"))?;
            let body = if method == Some(b"HEAD") {
                &b""[..]
            } else {
                text.as_bytes()
            };
            respond(&mut stream, "200 OK", prometheus_text::CONTENT_TYPE, body)
        }
        (Some(b"GET" | b"HEAD"), _) => respond(
            &mut stream,
            "404 Not Found",
            "text/plain",
            b"threadcenter serves its metrics at /metrics\n",
        ),
        _ => respond(&mut stream, "405 Method Not Allowed", "text/plain", b""),
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

/// Reads the server's counters at each scrape.
struct ServerCollector(Arc<Context>);

impl std::fmt::Debug for ServerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerCollector")
    }
}

type Fmt = Result<(), std::fmt::Error>;

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> Fmt {
    ConstGauge::new(v).encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: u64,
) -> Fmt {
    ConstCounter::new(v).encode(enc.encode_descriptor(name, help, unit, MetricType::Counter)?)
}

/// One counter per worker slot, labelled `worker="0"`, `"1"`, ...
fn per_worker<V: EncodeCounterValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    workers: &[WorkerStats],
    value: impl Fn(&WorkerStats) -> V,
) -> Fmt {
    let mut fam = enc.encode_descriptor(name, help, unit, MetricType::Counter)?;
    for (i, w) in workers.iter().enumerate() {
        let slot = i.to_string();
        ConstCounter::new(value(w)).encode(fam.encode_family(&[("worker", slot.as_str())])?)?;
    }
    Ok(())
}

/// A stage histogram as Prometheus gets it: sum (s), count, per-bucket counts.
type PromHistogram = (f64, u64, Vec<(f64, u64)>);

/// Per-bucket counts (not cumulative: the encoder sums them) at [`BUCKETS_S`], then +Inf.
fn buckets(stage: &StageHist) -> Vec<(f64, u64)> {
    let h = &stage.hist;
    let mut out = Vec::with_capacity(BUCKETS_S.len() + 1);
    let mut below = 0;
    for bound in BUCKETS_S {
        let ns = (bound * 1e9).round() as u64;
        let upto = if h.is_empty() {
            0
        } else {
            h.count_between(0, ns)
        };
        out.push((bound, upto - below));
        below = upto;
    }
    out.push((f64::INFINITY, h.len() - below));
    out
}

impl ServerCollector {
    /// Requests received and answered, by cmd and outcome.
    fn encode_requests(&self, enc: &mut DescriptorEncoder) -> Fmt {
        let ctx = &self.0;
        let m = &ctx.metrics;
        {
            let requests = m.requests();
            let mut fam = enc.encode_descriptor(
                "threadcenter_requests_received",
                "Requests received, by cmd (invalid: refused before the cmd was known).",
                None,
                MetricType::Counter,
            )?;
            for (cmd, n) in [
                ("compute", requests.compute),
                ("ping", requests.ping),
                ("stats", requests.stats),
                ("invalid", requests.invalid),
            ] {
                ConstCounter::new(n).encode(fam.encode_family(&[("cmd", cmd)])?)?;
            }
        }
        {
            let mut fam = enc.encode_descriptor(
                "threadcenter_requests",
                "Requests answered, by cmd and outcome (ok, or the error code sent).",
                None,
                MetricType::Counter,
            )?;
            for (cmd, outcomes) in m.responses() {
                for (outcome, n) in outcomes {
                    ConstCounter::new(n)
                        .encode(fam.encode_family(&[("cmd", cmd), ("outcome", outcome)])?)?;
                }
            }
        }
        Ok(())
    }

    /// In flight, queued, and the connections' counters.
    fn encode_load(&self, enc: &mut DescriptorEncoder) -> Fmt {
        let ctx = &self.0;
        let m = &ctx.metrics;
        gauge(
            enc,
            "threadcenter_requests_in_flight",
            "Compute requests received and not answered yet.",
            m.in_flight() as i64,
        )?;
        gauge(
            enc,
            "threadcenter_queue_depth",
            "Compute requests waiting for a worker.",
            ctx.pool.queue_depth() as i64,
        )?;
        gauge(
            enc,
            "threadcenter_connections_open",
            "Client connections open now.",
            m.connections_open.load(Relaxed) as i64,
        )?;
        counter(
            enc,
            "threadcenter_connections_accepted",
            "Client connections accepted.",
            None,
            m.connections_total.load(Relaxed),
        )?;
        counter(
            enc,
            "threadcenter_connections_refused",
            "Connections refused because --max-connections were open.",
            None,
            m.connections_refused.load(Relaxed),
        )?;
        counter(
            enc,
            "threadcenter_connections_timed_out",
            "Connections closed because a frame or TLS handshake exceeded --frame-timeout.",
            None,
            m.frames_timed_out.load(Relaxed),
        )?;
        Ok(())
    }

    /// The stage-duration histograms since the server started.
    fn encode_stages(&self, enc: &mut DescriptorEncoder) -> Fmt {
        let ctx = &self.0;
        let m = &ctx.metrics;
        let seconds = Unit::Seconds;
        {
            let mut fam = enc.encode_descriptor(
                "threadcenter_stage_duration",
                "Time compute requests answered with a result spent in each stage (queue, service, return, total) since the server started.",
                Some(&seconds),
                MetricType::Histogram,
            )?;
            // Bucketed under the lock, encoded after it.
            let stages: Vec<PromHistogram> = m.stages.drain(false, |r| {
                Stage::ALL
                    .iter()
                    .map(|&stage| {
                        let s = &r.since_start[stage as usize];
                        (s.sum_ns as f64 / 1e9, s.hist.len(), buckets(s))
                    })
                    .collect()
            });
            for (stage, (sum, count, b)) in Stage::ALL.iter().zip(&stages) {
                fam.encode_family(&[("stage", stage.as_str())])?
                    .encode_histogram::<NoLabelSet>(*sum, *count, b, None)?;
            }
        }
        Ok(())
    }

    /// Per worker slot: tasks, busy seconds, restarts.
    fn encode_workers(&self, enc: &mut DescriptorEncoder) -> Fmt {
        let ctx = &self.0;
        let seconds = Unit::Seconds;
        let workers = ctx.pool.workers();
        per_worker(
            enc,
            "threadcenter_worker_tasks",
            "Tasks a worker slot completed.",
            None,
            &workers,
            |w| w.tasks,
        )?;
        per_worker(
            enc,
            "threadcenter_worker_busy",
            "Seconds a worker slot spent computing.",
            Some(&seconds),
            &workers,
            |w| w.busy_s,
        )?;
        per_worker(
            enc,
            "threadcenter_worker_restarts",
            "Times a worker slot's process was replaced (it died or exceeded --task-timeout).",
            None,
            &workers,
            |w| w.restarts,
        )?;
        Ok(())
    }
}

impl Collector for ServerCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Fmt {
        let ctx = &self.0;
        let m = &ctx.metrics;
        gauge(
            &mut enc,
            "threadcenter_uptime_seconds",
            "Seconds since the server started.",
            m.uptime_s() as i64,
        )?;
        gauge(
            &mut enc,
            "threadcenter_workers",
            "Pool workers configured (--workers).",
            ctx.config.workers as i64,
        )?;
        self.encode_requests(&mut enc)?;
        self.encode_load(&mut enc)?;
        self.encode_stages(&mut enc)?;
        self.encode_workers(&mut enc)
    }
}
