//! The client's live line on a terminal: requests sent, answered and failed, the rate
//! and the p99 of the last second, redrawn in place four times a second until the run
//! ends. The event-loop threads count into a [`LiveLocal`] of their own and publish it
//! to the shared [`Live`] at most every [`PUBLISH`]; a printer thread reads and draws.
//! Off a terminal none of this exists: `Shared::live` is `None`.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::sync;

/// How often the line is redrawn.
pub(crate) const REFRESH: Duration = Duration::from_millis(250);
/// How often a thread publishes its counts: well within a refresh.
const PUBLISH: Duration = Duration::from_millis(50);
/// The window the rate and the p99 are taken over.
const WINDOW: Duration = Duration::from_secs(1);

/// What the threads have published.
pub(crate) struct Live {
    sent: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    /// Latencies (ns) of the answers published since the printer last took them.
    recent: Mutex<Histogram<u64>>,
}

impl Live {
    pub(crate) fn new() -> Arc<Live> {
        Arc::new(Live {
            sent: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            recent: Mutex::new(crate::hdr::new_latency_histogram()),
        })
    }
}

/// One thread's counts since it last published.
pub(super) struct LiveLocal {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub recent: Histogram<u64>,
    publish_at: Instant,
}

impl LiveLocal {
    pub(super) fn new(now: Instant) -> LiveLocal {
        LiveLocal {
            sent: 0,
            ok: 0,
            failed: 0,
            recent: crate::hdr::new_latency_histogram(),
            publish_at: now + PUBLISH,
        }
    }

    /// Publishes the counts to `live` if it is time (or `force`), and starts anew.
    pub(super) fn publish(&mut self, live: &Live, now: Instant, force: bool) {
        if !force && now < self.publish_at {
            return;
        }
        self.publish_at = now + PUBLISH;
        live.sent.fetch_add(std::mem::take(&mut self.sent), Relaxed);
        live.ok.fetch_add(std::mem::take(&mut self.ok), Relaxed);
        live.failed
            .fetch_add(std::mem::take(&mut self.failed), Relaxed);
        if !self.recent.is_empty() {
            // An auto-resizing histogram takes whatever range the thread recorded.
            let _ = sync::lock(&live.recent).add(&self.recent);
            self.recent.reset();
        }
    }
}

/// The thread that draws the line; [`Printer::stop`] ends it and erases the line.
pub(crate) struct Printer {
    stop: mpsc::Sender<()>,
    handle: Option<JoinHandle<()>>,
}

impl Printer {
    /// Starts drawing what `live` counts onto `out`; `warmup` is said while it lasts.
    pub(crate) fn start(live: Arc<Live>, warmup: Duration, out: Box<dyn Write + Send>) -> Printer {
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("client-live".into())
            .spawn(move || draw_until_stopped(&live, warmup, out, &stopped))
            .ok();
        Printer { stop, handle }
    }

    /// Stops drawing; the line is erased when this returns.
    pub(crate) fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// One redraw's reading: when, the counts, and that moment's slice of latencies.
struct Tick {
    at: Instant,
    ok: u64,
    latencies: Histogram<u64>,
}

fn draw_until_stopped(
    live: &Live,
    warmup: Duration,
    mut out: Box<dyn Write + Send>,
    stopped: &mpsc::Receiver<()>,
) {
    let start = Instant::now();
    let mut window: VecDeque<Tick> = VecDeque::new();
    window.push_back(Tick {
        at: start,
        ok: 0,
        latencies: crate::hdr::new_latency_histogram(),
    });
    // A stop (or the sender dropped) ends the loop; each timeout is a redraw.
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(REFRESH) {
        let now = Instant::now();
        let latencies = std::mem::replace(
            &mut *sync::lock(&live.recent),
            crate::hdr::new_latency_histogram(),
        );
        window.push_back(Tick {
            at: now,
            ok: live.ok.load(Relaxed),
            latencies,
        });
        while window.len() > 2 && now.duration_since(window[1].at) >= WINDOW {
            window.pop_front();
        }
        let line = line(live, &window, now.duration_since(start), warmup);
        if write!(out, "\r\x1b[2K{line}")
            .and_then(|()| out.flush())
            .is_err()
        {
            return;
        }
    }
    let _ = write!(out, "\r\x1b[2K");
    let _ = out.flush();
}

/// `sent 1234  ok 1230  failed 0  4321 req/s  p99 2.53 ms  (3.2 s)`.
fn line(live: &Live, window: &VecDeque<Tick>, elapsed: Duration, warmup: Duration) -> String {
    let sent = live.sent.load(Relaxed);
    let clock = crate::human::duration(Duration::from_millis(
        (elapsed.as_millis() as u64 / 100) * 100,
    ));
    if sent == 0 && elapsed < warmup + REFRESH {
        return format!(
            "warming up ({clock} of {}): latencies are not recorded yet",
            crate::human::duration(warmup)
        );
    }
    let (first, last) = (&window[0], &window[window.len() - 1]);
    let span = last.at.duration_since(first.at).as_secs_f64();
    let rate = if span > 0.0 {
        (last.ok - first.ok) as f64 / span
    } else {
        0.0
    };
    let mut merged = crate::hdr::new_latency_histogram();
    for t in window.iter().skip(1) {
        let _ = merged.add(&t.latencies);
    }
    let p99 = if merged.is_empty() {
        "–".to_string()
    } else {
        crate::human::latency_us(merged.value_at_quantile(0.99) as f64 / 1000.0)
    };
    format!(
        "sent {sent}  ok {}  failed {}  {rate:.0} req/s  p99 {p99}  ({clock})",
        live.ok.load(Relaxed),
        live.failed.load(Relaxed),
    )
}
