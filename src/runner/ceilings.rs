//! Machine limits, measured at the start of a run and recorded in manifest.json, so the
//! report can say how close each cell came to what this machine allows:
//!
//! - the **loopback round-trip floor**: a raw framed echo over loopback (the protocol's
//!   framing, a request-sized payload echoed verbatim; no JSON, no pool), in this process:
//!   an echo thread per connection and a closed-loop client thread per connection, at each
//!   of the run's concurrency levels. Its round trips per second bound what any server
//!   speaking this framing over loopback can answer at that concurrency, and its median
//!   round trip bounds the latency.
//! - the **event-loop echo floor** (`event_echo.rs`), at the levels of
//!   [`MANY_CONNECTIONS`] or more: the same echo on a few mio loops at each end, which is
//!   what a server built for many connections could reach there (the thread echo is not
//!   measured above [`ECHO_MAX_CONCURRENCY`], and thousands of threads would make a poor
//!   reference anyway). The report judges a cell against the better of the two floors.
//! - the **compute ceiling**: the time of one `compute(n)` in one process, for each size;
//!   `min(workers, cores) / time` bounds the compute throughput of a pool (the report
//!   computes it per cell).
//!
//! Both are ceilings, so both keep the best that was seen: the fastest of several timings
//! of compute, the best of several echo trials. Interference from other processes can
//! only lower a measurement, and a ceiling measured low would make cells look more than
//! 100% efficient. Everything here is bounded in time (a few hundred milliseconds per
//! level and size) and checks the run's interrupt flag between steps.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::domain::ClientCmd;
use crate::protocol::{self, frame, FrameReader};
use crate::rundir::{Cell, ComputeTime, Limits, Loopback, LoopbackLevel, MANY_CONNECTIONS};

/// Echo trials per concurrency level; the best is kept.
pub(crate) const ECHO_TRIALS: u32 = 3;
/// The length of one echo trial.
pub(crate) const ECHO_TRIAL: Duration = Duration::from_millis(150);
/// Round trips before the first trial (connections, caches).
pub(crate) const ECHO_WARMUP: Duration = Duration::from_millis(50);
/// Levels above this many connections are not measured (2 threads per connection).
pub(crate) const ECHO_MAX_CONCURRENCY: u64 = 1024;
/// Timings of compute(n) per size, at most (fewer when one takes long).
pub(crate) const COMPUTE_SAMPLES: u32 = 9;
/// Time budget for timing one size.
pub(crate) const COMPUTE_BUDGET: Duration = Duration::from_millis(400);

/// Measures the limits for the concurrencies and compute sizes of `cells`.
pub(crate) fn measure(cells: &[Cell], interrupted: &AtomicBool) -> Limits {
    let mut levels: Vec<u64> = cells.iter().map(|c| c.concurrency).collect();
    levels.sort_unstable();
    levels.dedup();
    let mut sizes: Vec<u64> = cells
        .iter()
        .filter(|c| c.cmd == ClientCmd::Compute)
        .map(|c| c.size)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();

    let payload = request_payload(sizes.last().copied().unwrap_or(500_000));
    let loopback = Loopback {
        payload_bytes: payload.len(),
        trials: ECHO_TRIALS,
        trial_s: ECHO_TRIAL.as_secs_f64(),
        levels: levels
            .iter()
            .map(|&c| {
                let missing = |note: String| LoopbackLevel::missing(c, note);
                if interrupted.load(Ordering::Relaxed) {
                    missing("interrupted".into())
                } else if c > ECHO_MAX_CONCURRENCY {
                    missing(format!(
                        "not measured above {ECHO_MAX_CONCURRENCY} connections (two threads each)"
                    ))
                } else {
                    echo_level(c as usize, &payload, ECHO_TRIALS, ECHO_TRIAL)
                        .unwrap_or_else(|e| missing(format!("the echo failed: {e}")))
                }
            })
            .collect(),
        loops: None,
    };
    let loopback_events = event_floor(&levels, &payload, interrupted);
    let compute = sizes
        .iter()
        .take_while(|_| !interrupted.load(Ordering::Relaxed))
        .map(|&n| time_compute(n, COMPUTE_SAMPLES, COMPUTE_BUDGET))
        .collect();
    Limits {
        loopback,
        loopback_events,
        compute,
        pairs: Vec::new(),
        server_host_compute: Vec::new(),
    }
}

/// The event-loop echo at each level of [`MANY_CONNECTIONS`] or more; `None` when the run
/// has none.
fn event_floor(levels: &[u64], payload: &[u8], interrupted: &AtomicBool) -> Option<Loopback> {
    let many: Vec<u64> = levels
        .iter()
        .copied()
        .filter(|&c| c >= MANY_CONNECTIONS)
        .collect();
    if many.is_empty() {
        return None;
    }
    let loops = crate::machine::available_cores().max(1);
    Some(Loopback {
        payload_bytes: payload.len(),
        trials: ECHO_TRIALS,
        trial_s: ECHO_TRIAL.as_secs_f64(),
        levels: many
            .into_iter()
            .map(|c| {
                if interrupted.load(Ordering::Relaxed) {
                    return LoopbackLevel::missing(c, "interrupted".into());
                }
                super::event_echo::echo_level(c as usize, payload, ECHO_TRIALS, ECHO_TRIAL, loops)
                    .unwrap_or_else(|e| {
                        LoopbackLevel::missing(c, format!("the event-loop echo failed: {e}"))
                    })
            })
            .collect(),
        loops: Some(loops as u64),
    })
}

/// The payload of a compute request as the client sends it (the frame without its header).
pub(crate) fn request_payload(n: u64) -> Vec<u8> {
    let mut framed = Vec::new();
    protocol::message::encode_request(&mut framed, 1_000_000, &protocol::Command::Compute { n });
    framed[4..].to_vec()
}

/// Times compute(n): up to `samples` timings within `budget` (at least one), each of
/// enough calls to last a millisecond or more, so that tiny sizes are not timer noise.
pub(crate) fn time_compute(n: u64, samples: u32, budget: Duration) -> ComputeTime {
    let once = || {
        let t = Instant::now();
        std::hint::black_box(protocol::compute(std::hint::black_box(n)));
        t.elapsed()
    };
    // Warm-up, and a first estimate of how many calls make a millisecond.
    let first = once().max(Duration::from_nanos(1));
    let calls = (Duration::from_millis(1).as_nanos() / first.as_nanos()).clamp(1, 1_000_000) as u32;
    let started = Instant::now();
    let mut times = Vec::new();
    while times.len() < samples as usize && (times.is_empty() || started.elapsed() < budget) {
        let t = Instant::now();
        for _ in 0..calls {
            std::hint::black_box(protocol::compute(std::hint::black_box(n)));
        }
        times.push(t.elapsed().as_secs_f64() / f64::from(calls));
    }
    times.sort_by(f64::total_cmp);
    ComputeTime {
        size: n,
        samples: times.len() as u32,
        min_s: times[0],
        median_s: times[times.len() / 2],
    }
}

/// Per trial: the round trips that completed in it, and their latencies.
pub(crate) type Trials = Vec<(u64, Histogram<u64>)>;

pub(crate) fn no_trials(trials: usize) -> Trials {
    (0..trials)
        .map(|_| (0, crate::hdr::new_latency_histogram()))
        .collect()
}

/// One echo level: `c` connections, each a closed loop of one framed payload out and its
/// echo back; `trials` windows of `trial` after a warm-up. The best window's rate, and
/// the lowest median and 99th percentile of any window.
pub(crate) fn echo_level(
    c: usize,
    payload: &[u8],
    trials: u32,
    trial: Duration,
) -> io::Result<LoopbackLevel> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("echo-accept".into())
            .spawn(move || accept_echoes(listener, c, &stop))?
    };
    let level = echo_to(addr, c, payload, trials, trial);
    stop.store(true, Ordering::SeqCst);
    let _ = server.join();
    level
}

/// The client side of one echo level against an echo at `addr` (here, or on another
/// host: `limits-probe echo-client`).
/// Moves the clients through `phase`: after [`ECHO_WARMUP`], trials `1..=trials` of
/// `trial` each (none if `started` is false), then the stop phase. Returns when each
/// trial began and when the last one ended.
pub(crate) fn drive_trials(
    phase: &AtomicUsize,
    started: bool,
    trials: u32,
    trial: Duration,
) -> (Vec<Instant>, Instant) {
    let mut windows = Vec::with_capacity(trials as usize);
    if started {
        std::thread::sleep(ECHO_WARMUP);
        for k in 1..=trials as usize {
            let t = Instant::now();
            phase.store(k, Ordering::SeqCst);
            std::thread::sleep(trial);
            windows.push(t);
        }
    }
    let ended = Instant::now();
    phase.store(trials as usize + 1, Ordering::SeqCst);
    (windows, ended)
}

pub(crate) fn echo_to(
    addr: SocketAddr,
    c: usize,
    payload: &[u8],
    trials: u32,
    trial: Duration,
) -> io::Result<LoopbackLevel> {
    // Phase 0 is the warm-up, 1..=trials the trials, then stop.
    let phase = Arc::new(AtomicUsize::new(0));
    let (clients, mut failure) = spawn_echo_clients(addr, c, payload, &phase, trials as usize);
    let (windows, ended) = drive_trials(&phase, failure.is_none(), trials, trial);
    let per_trial = join_echo_clients(clients, trials as usize, &mut failure);
    if let Some(e) = failure {
        return Err(e);
    }
    best_trial(c, &per_trial, &windows, ended)
}

/// `c` echo client threads; the error that stopped the spawning, if one did.
fn spawn_echo_clients(
    addr: SocketAddr,
    c: usize,
    payload: &[u8],
    phase: &Arc<AtomicUsize>,
    trials: usize,
) -> (Vec<JoinHandle<io::Result<Trials>>>, Option<io::Error>) {
    let mut frame_bytes = Vec::new();
    frame::encode(payload, &mut frame_bytes);
    let frame_bytes = Arc::new(frame_bytes);
    let mut clients = Vec::with_capacity(c);
    for _ in 0..c {
        let (phase, frame_bytes) = (Arc::clone(phase), Arc::clone(&frame_bytes));
        let spawned = std::thread::Builder::new()
            .name("echo-client".into())
            .stack_size(256 * 1024)
            .spawn(move || echo_client(addr, &frame_bytes, &phase, trials));
        match spawned {
            Ok(h) => clients.push(h),
            Err(e) => return (clients, Some(e)),
        }
    }
    (clients, None)
}

/// Every client's trials added up; the first failure is kept in `failure`.
fn join_echo_clients(
    clients: Vec<JoinHandle<io::Result<Trials>>>,
    trials: usize,
    failure: &mut Option<io::Error>,
) -> Trials {
    let mut per_trial = no_trials(trials);
    for h in clients {
        match h.join() {
            Ok(Ok(results)) => {
                for (k, (count, hist)) in results.into_iter().enumerate() {
                    per_trial[k].0 += count;
                    let _ = per_trial[k].1.add(&hist);
                }
            }
            Ok(Err(e)) => *failure = Some(failure.take().unwrap_or(e)),
            Err(_) => *failure = Some(io::Error::other("an echo client thread panicked")),
        }
    }
    per_trial
}

/// The best rate of any trial (trial k ran from `windows[k]` to the next start, the last
/// one until `ended`), and the lowest median and 99th percentile.
pub(crate) fn best_trial(
    c: usize,
    per_trial: &Trials,
    windows: &[Instant],
    ended: Instant,
) -> io::Result<LoopbackLevel> {
    let mut best_rate: f64 = 0.0;
    let mut p50 = f64::INFINITY;
    let mut p99 = f64::INFINITY;
    for (k, (count, hist)) in per_trial.iter().enumerate() {
        let until = windows.get(k + 1).copied().unwrap_or(ended);
        let secs = until.duration_since(windows[k]).as_secs_f64();
        if *count == 0 || secs <= 0.0 {
            continue;
        }
        best_rate = best_rate.max(*count as f64 / secs);
        p50 = p50.min(hist.value_at_quantile(0.5) as f64 / 1000.0);
        p99 = p99.min(hist.value_at_quantile(0.99) as f64 / 1000.0);
    }
    if best_rate == 0.0 {
        return Err(io::Error::other("no round trip completed"));
    }
    Ok(LoopbackLevel {
        concurrency: c as u64,
        round_trips_per_s: Some(best_rate),
        p50_us: Some(p50),
        p99_us: Some(p99),
        note: None,
        measured_connections: None,
    })
}

/// Accepts `c` connections (or gives up after a few seconds) and echoes each on a thread
/// of its own until its client closes it.
fn accept_echoes(listener: TcpListener, c: usize, stop: &AtomicBool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let _ = listener.set_nonblocking(true);
    let mut echoes = Vec::with_capacity(c);
    while echoes.len() < c && Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let spawned = std::thread::Builder::new()
                    .name("echo".into())
                    .stack_size(256 * 1024)
                    .spawn(move || echo(stream));
                match spawned {
                    Ok(h) => echoes.push(h),
                    Err(_) => break,
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(_) => break,
        }
    }
    for h in echoes {
        let _ = h.join();
    }
}

/// Echoes every frame back until end of stream (or an error, or 10 s without a frame).
pub(crate) fn echo(stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = FrameReader::new(stream, frame::DEFAULT_MAX_FRAME);
    let mut buf = Vec::with_capacity(256);
    while let Ok(Some(payload)) = reader.next_frame() {
        buf.clear();
        frame::encode(payload, &mut buf);
        if out.write_all(&buf).is_err() {
            break;
        }
    }
}

/// One closed-loop connection: send, wait for the echo, record, repeat until the phase
/// passes the last trial. Round trips count in the trial during which they complete.
fn echo_client(
    addr: SocketAddr,
    frame_bytes: &[u8],
    phase: &AtomicUsize,
    trials: usize,
) -> io::Result<Trials> {
    let mut results = no_trials(trials);
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = FrameReader::new(stream.try_clone()?, frame::DEFAULT_MAX_FRAME);
    loop {
        if phase.load(Ordering::Relaxed) > trials {
            break;
        }
        let t = Instant::now();
        stream.write_all(frame_bytes)?;
        match reader.next_frame() {
            Ok(Some(_)) => {}
            Ok(None) => return Err(io::Error::other("the echo closed the connection")),
            Err(e) => return Err(io::Error::other(format!("echo read: {e}"))),
        }
        let ns = t.elapsed().as_nanos() as u64;
        let k = phase.load(Ordering::Relaxed);
        if (1..=trials).contains(&k) {
            let (count, hist) = &mut results[k - 1];
            *count += 1;
            let _ = hist.record(ns.max(1));
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_level_measures_round_trips() {
        let level = echo_level(2, &request_payload(1000), 2, Duration::from_millis(40)).unwrap();
        let rate = level.round_trips_per_s.unwrap();
        let p50 = level.p50_us.unwrap();
        assert!(rate > 100.0, "{level:?}");
        assert!(p50 > 0.0 && p50 <= level.p99_us.unwrap(), "{level:?}");
        // Two connections in a closed loop: rate ≈ 2 / round trip, within scheduling slack.
        assert!(rate < 2.0 / (p50 * 1e-6) * 3.0, "{level:?}");
    }

    #[test]
    fn compute_is_timed_per_call() {
        let small = time_compute(1_000, 5, Duration::from_millis(50));
        let big = time_compute(100_000, 5, Duration::from_millis(50));
        assert!(small.min_s > 0.0 && small.min_s <= small.median_s);
        // A hundred times the steps takes far longer (linear cost, loose bounds).
        assert!(big.min_s > small.min_s * 20.0, "{small:?} {big:?}");
    }

    #[test]
    fn levels_and_sizes_come_from_the_cells() {
        let cell = |c: u64, cmd: ClientCmd, size: u64| Cell {
            target: "t".into(),
            pool: None,
            io: None,
            workers: 1,
            cmd,
            size,
            concurrency: c,
            rate: None,
        };
        let cells = [
            cell(2, ClientCmd::Compute, 1000),
            cell(1, ClientCmd::Ping, 5),
            cell(2, ClientCmd::Compute, 500),
        ];
        let limits = measure(&cells, &AtomicBool::new(false));
        let levels: Vec<u64> = limits
            .loopback
            .levels
            .iter()
            .map(|l| l.concurrency)
            .collect();
        assert_eq!(levels, [1, 2]);
        let sizes: Vec<u64> = limits.compute.iter().map(|c| c.size).collect();
        assert_eq!(sizes, [500, 1000], "ping sizes are not timed");
        assert!(limits.loopback_at(2).unwrap().round_trips_per_s.is_some());
    }
}
