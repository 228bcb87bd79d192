//! The event-loop echo floor: the loopback round-trip floor of `ceilings.rs` measured the
//! way a server and a client built for many connections run, so that a cell at 1,000 or
//! 10,000 connections is judged against what an event-loop server could do, not against
//! 20,000 echo threads. A few mio loops echo every byte they read (the frames come back
//! verbatim), and as many client loops keep each connection in a closed loop of one
//! framed payload out and its echo back, all in this process.
//!
//! Both ends of every connection are in this process, so it needs two descriptors per
//! connection: the soft open-file limit is raised to the hard one, and a level that
//! still does not fit is measured at the most connections that do (the level records
//! how many: [`LoopbackLevel::measured_connections`]). With one request in flight per
//! connection and a few loops, a few hundred connections either way change nothing of
//! the rate.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

use super::ceilings::{best_trial, drive_trials, no_trials, Trials};
use crate::protocol::frame;
use crate::rundir::LoopbackLevel;

/// Descriptors kept for everything else in this process (the run's files, sysinfo's).
const FD_RESERVE: u64 = 256;

/// How long a loop waits for events before it looks at the stop flag.
const TICK: Duration = Duration::from_millis(20);

/// The most connections this process can hold both ends of: its open-file limit
/// (raised to the hard one) less what is open and a reserve, halved.
pub(crate) fn connections_that_fit() -> u64 {
    let limit = crate::server::capacity::raise_nofile();
    let open = std::fs::read_dir("/proc/self/fd").map_or(64, |d| d.count() as u64);
    limit.saturating_sub(open + FD_RESERVE) / 2
}

/// One level: `c` connections (fewer when they do not fit, see the module's doc) over
/// `loops` echo loops and `loops` client loops; `trials` windows of `trial` after a
/// warm-up. The best window's rate, the lowest median and 99th percentile.
pub(crate) fn echo_level(
    c: usize,
    payload: &[u8],
    trials: u32,
    trial: Duration,
    loops: usize,
) -> io::Result<LoopbackLevel> {
    let fit = connections_that_fit() as usize;
    if fit == 0 {
        return Err(io::Error::other(
            "the open-file limit leaves no room for a connection",
        ));
    }
    let n = c.min(fit);
    let loops = loops.clamp(1, n);
    let (servers, clients) = connect_pairs(n, loops)?;
    let mut frame_bytes = Vec::new();
    frame::encode(payload, &mut frame_bytes);
    let frame_bytes = Arc::new(frame_bytes);
    let stop = Arc::new(AtomicBool::new(false));
    // Phase 0 is the warm-up, 1..=trials the trials, then stop.
    let phase = Arc::new(AtomicUsize::new(0));
    let mut echo_threads: Vec<JoinHandle<io::Result<()>>> = Vec::new();
    let mut client_threads: Vec<JoinHandle<io::Result<Trials>>> = Vec::new();
    let mut failure: Option<io::Error> = None;
    for streams in servers {
        let stop = Arc::clone(&stop);
        match spawn("echo-loop", move || echo_loop(streams, &stop)) {
            Ok(h) => echo_threads.push(h),
            Err(e) => failure = Some(e),
        }
    }
    if failure.is_none() {
        for streams in clients {
            let (phase, frame_bytes) = (Arc::clone(&phase), Arc::clone(&frame_bytes));
            let t = trials as usize;
            match spawn("echo-client-loop", move || {
                client_loop(streams, &frame_bytes, &phase, t)
            }) {
                Ok(h) => client_threads.push(h),
                Err(e) => failure = Some(e),
            }
        }
    }
    let (windows, ended) = drive_trials(&phase, failure.is_none(), trials, trial);
    let mut per_trial = no_trials(trials as usize);
    for h in client_threads {
        match h.join() {
            Ok(Ok(results)) => {
                for (k, (count, hist)) in results.into_iter().enumerate() {
                    per_trial[k].0 += count;
                    let _ = per_trial[k].1.add(&hist);
                }
            }
            Ok(Err(e)) => failure = Some(failure.take().unwrap_or(e)),
            Err(_) => failure = Some(io::Error::other("an echo client loop panicked")),
        }
    }
    stop.store(true, Ordering::SeqCst);
    for h in echo_threads {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = Some(failure.take().unwrap_or(e)),
            Err(_) => failure = Some(io::Error::other("an echo loop panicked")),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let mut level = best_trial(n, &per_trial, &windows, ended)?;
    level.concurrency = c as u64;
    if n < c {
        level.measured_connections = Some(n as u64);
    }
    Ok(level)
}

fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
    std::thread::Builder::new().name(name.into()).spawn(f)
}

/// `n` connected pairs, made one at a time (connect, then accept: the listen queue never
/// overflows), dealt round-robin over `loops` echo loops and `loops` client loops.
type Dealt = Vec<Vec<MioStream>>;

fn connect_pairs(n: usize, loops: usize) -> io::Result<(Dealt, Dealt)> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    let addr = listener.local_addr()?;
    let mut servers: Dealt = (0..loops).map(|_| Vec::new()).collect();
    let mut clients: Dealt = (0..loops).map(|_| Vec::new()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..n {
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "only {i} of {n} connections made in 30 s"
            )));
        }
        let client = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        let (server, _) = listener.accept()?;
        for s in [&client, &server] {
            s.set_nodelay(true)?;
            s.set_nonblocking(true)?;
        }
        servers[i % loops].push(MioStream::from_std(server));
        clients[i % loops].push(MioStream::from_std(client));
    }
    Ok((servers, clients))
}

/// A connection's unsent bytes, when the socket would not take them all. The connection
/// is registered for WRITABLE only while some are pending: with edge-triggered epoll, a
/// socket always registered for it wakes its loop each time an ACK frees send buffer,
/// which would double the loop's wake-ups and make the floor a loop's overhead.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Registered for WRITABLE too.
    watching: bool,
}

impl Pending {
    /// Writes what is pending then `more` (as much as the socket takes), keeping the
    /// rest, and watches for WRITABLE exactly while something is kept. `Ok(true)` when
    /// everything went out.
    fn write(
        &mut self,
        s: &mut MioStream,
        token: Token,
        registry: &mio::Registry,
        more: &[u8],
    ) -> io::Result<bool> {
        let done = self.send(s, more)?;
        if done == self.watching {
            let interest = if done {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            registry.reregister(s, token, interest)?;
            self.watching = !done;
        }
        Ok(done)
    }

    fn send(&mut self, s: &mut MioStream, more: &[u8]) -> io::Result<bool> {
        if self.bytes.is_empty() {
            // The usual case: nothing pending, write straight from `more`.
            let mut sent = 0;
            while sent < more.len() {
                match s.write(&more[sent..]) {
                    Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                    Ok(k) => sent += k,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.bytes.extend_from_slice(&more[sent..]);
            return Ok(self.bytes.is_empty());
        }
        self.bytes.extend_from_slice(more);
        let mut sent = 0;
        while sent < self.bytes.len() {
            match s.write(&self.bytes[sent..]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(k) => sent += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.bytes.drain(..sent);
        Ok(self.bytes.is_empty())
    }
}

/// Echoes every byte each connection sends until `stop`, or until the peer closes.
fn echo_loop(mut streams: Vec<MioStream>, stop: &AtomicBool) -> io::Result<()> {
    let mut poll = Poll::new()?;
    for (i, s) in streams.iter_mut().enumerate() {
        poll.registry().register(s, Token(i), Interest::READABLE)?;
    }
    let mut pending: HashMap<usize, Pending> = HashMap::new();
    let mut open = vec![true; streams.len()];
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match poll.poll(&mut events, Some(TICK)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in &events {
            let i = ev.token().0;
            if !open[i] {
                continue;
            }
            let s = &mut streams[i];
            let p = pending.entry(i).or_default();
            let (token, registry) = (ev.token(), poll.registry());
            if !p.write(s, token, registry, &[])? {
                continue;
            }
            loop {
                match s.read(&mut buf) {
                    Ok(0) => {
                        open[i] = false;
                        break;
                    }
                    Ok(k) => {
                        if !p.write(s, token, registry, &buf[..k])? {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        open[i] = false;
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}

/// One client connection's state: when its request went out, and how much of the echo
/// is in.
struct Trip {
    sent_at: Instant,
    received: usize,
    out: Pending,
}

/// Keeps each connection in a closed loop until the phase passes the last trial; round
/// trips count in the trial during which they complete.
fn client_loop(
    mut streams: Vec<MioStream>,
    frame_bytes: &[u8],
    phase: &AtomicUsize,
    trials: usize,
) -> io::Result<Trials> {
    let mut results = no_trials(trials);
    let mut poll = Poll::new()?;
    let mut trips = Vec::with_capacity(streams.len());
    for (i, s) in streams.iter_mut().enumerate() {
        poll.registry().register(s, Token(i), Interest::READABLE)?;
        let mut out = Pending::default();
        out.write(s, Token(i), poll.registry(), frame_bytes)?;
        trips.push(Trip {
            sent_at: Instant::now(),
            received: 0,
            out,
        });
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let deadline_quiet = Duration::from_secs(5);
    let mut last_trip = Instant::now();
    while phase.load(Ordering::Relaxed) <= trials {
        match poll.poll(&mut events, Some(TICK)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if events.is_empty() && last_trip.elapsed() > deadline_quiet {
            return Err(io::Error::other("no echo came back for 5 s"));
        }
        for ev in &events {
            let i = ev.token().0;
            let (s, trip) = (&mut streams[i], &mut trips[i]);
            let (token, registry) = (ev.token(), poll.registry());
            if ev.is_writable() {
                trip.out.write(s, token, registry, &[])?;
            }
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return Err(io::Error::other("the echo closed the connection")),
                    Ok(k) => {
                        trip.received += k;
                        if trip.received >= frame_bytes.len() {
                            record(&mut results, phase, trip.sent_at.elapsed());
                            last_trip = Instant::now();
                            trip.received -= frame_bytes.len();
                            trip.sent_at = Instant::now();
                            trip.out.write(s, token, registry, frame_bytes)?;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io::Error::other(format!("echo read: {e}"))),
                }
            }
        }
    }
    for s in &mut streams {
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
    Ok(results)
}

fn record(results: &mut [(u64, Histogram<u64>)], phase: &AtomicUsize, took: Duration) {
    let k = phase.load(Ordering::Relaxed);
    if (1..=results.len()).contains(&k) {
        let (count, hist) = &mut results[k - 1];
        *count += 1;
        let _ = hist.record((took.as_nanos() as u64).max(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_loop_level_measures_round_trips_over_many_connections() {
        let payload = super::super::ceilings::request_payload(1000);
        let level = echo_level(64, &payload, 2, Duration::from_millis(40), 2).unwrap();
        assert_eq!(level.concurrency, 64);
        assert_eq!(level.measured_connections, None, "64 connections fit");
        let rate = level.round_trips_per_s.unwrap();
        let (p50, p99) = (level.p50_us.unwrap(), level.p99_us.unwrap());
        assert!(rate > 100.0, "{level:?}");
        assert!(p50 > 0.0 && p50 <= p99, "{level:?}");
    }
}
