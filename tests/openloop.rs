//! The open-loop client (`--rate`) and `--interval-log`, end to end: the real binary
//! against the real server on 127.0.0.1 (with its test-only stall), scripted servers for
//! failures, and the files read back.
//!
//! Timing tests run one at a time (the `SERIAL` lock) so they do not load each other,
//! and assert counts with stated tolerances, not absolute times: this runs on a noisy,
//! shared 2-core machine.

mod common;
mod sut;

use std::fs;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use common::{client, client_json, explain, Reply, TestServer};
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::Histogram;
use sut::Server;
use threadcenter::client::document::DocOpenLoop;
use threadcenter::client::ClientDocument;

/// Timing-sensitive tests take this, so they never run side by side.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_loop(doc: &ClientDocument) -> &DocOpenLoop {
    assert_eq!(doc.load_model, "open");
    doc.open_loop
        .as_ref()
        .expect("an open-loop document has open_loop")
}

/// Runs the client with `args` against a fresh one-worker server (its environment `env`),
/// stops the server, and asserts the client succeeded; returns its output and document.
fn run_ok(
    env: &[(&str, &str)],
    args: &[&str],
    dir: &Path,
    name: &str,
) -> (std::process::Output, ClientDocument) {
    let server = Server::start_with_env(&["--workers", "1"], env);
    let (out, doc) = client_json(server.addr.port(), args, dir, name);
    drop(server);
    assert!(out.status.success(), "{}", explain(&out));
    (out, doc)
}

/// Recorded values at or above `ns`.
fn count_at_least(h: &Histogram<u64>, ns: u64) -> u64 {
    h.iter_recorded()
        .filter(|v| v.value_iterated_to() >= ns)
        .map(|v| v.count_at_value())
        .sum()
}

const MS: u64 = 1_000_000;

/// What an interval log holds, read with the hdrhistogram crate's reader.
struct ReadLog {
    /// (start s, length s, histogram) of the untagged intervals.
    main: Vec<(f64, f64, Histogram<u64>)>,
    /// Histograms tagged `uncorrected`.
    uncorrected: Vec<Histogram<u64>>,
    start_time: Option<Duration>,
}

impl ReadLog {
    /// Latencies recorded in the untagged intervals.
    fn total(&self) -> u64 {
        self.main.iter().map(|(_, _, h)| h.len()).sum()
    }
}

fn read_interval_log(path: &Path) -> ReadLog {
    let text = fs::read_to_string(path).unwrap();
    assert_eq!(
        text.lines().next(),
        Some("#[Histogram log format version 1.3]")
    );
    assert!(
        text.contains(
            "\n\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n"
        ),
        "no legend line:\n{text}"
    );
    let mut log = ReadLog {
        main: Vec::new(),
        uncorrected: Vec::new(),
        start_time: None,
    };
    for entry in IntervalLogIterator::new(text.as_bytes()) {
        match entry.unwrap_or_else(|e| panic!("unreadable interval log ({e:?}):\n{text}")) {
            LogEntry::StartTime(t) => log.start_time = Some(t),
            LogEntry::BaseTime(_) => {}
            LogEntry::Interval(i) => {
                let h = threadcenter::hdr::decode_base64_v2(i.encoded_histogram()).unwrap();
                // Interval_Max is in milliseconds.
                let max_ms = if h.is_empty() {
                    0.0
                } else {
                    h.max() as f64 / 1e6
                };
                assert!(
                    (i.max() - max_ms).abs() < 0.001 + max_ms * 1e-3,
                    "{}",
                    i.max()
                );
                match i.tag().map(|t| t.as_str().to_string()) {
                    None => log.main.push((
                        i.start_timestamp().as_secs_f64(),
                        i.duration().as_secs_f64(),
                        h,
                    )),
                    Some(t) if t == "uncorrected" => log.uncorrected.push(h),
                    Some(t) => panic!("unexpected tag {t}"),
                }
            }
        }
    }
    log
}

#[test]
fn a_stall_shows_in_every_request_scheduled_during_it_only_in_the_open_loop() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // The server freezes for 1 s, 1.5 s after it is ready; both runs last 4 s, so the
    // stall falls inside each (the client starts well within 0.5 s of the server).
    let stall = [("THREADCENTER_TEST_STALL", "1500:1000")];
    const RATE: f64 = 200.0;

    let log = dir.path().join("open.hlog");
    let (out, open) = run_ok(
        &stall,
        &[
            "--rate",
            "200",
            "-c",
            "2",
            "--pipeline",
            "128",
            "--cmd",
            "ping",
            "-d",
            "4s",
            "--interval-log",
            log.to_str().unwrap(),
        ],
        dir.path(),
        "open",
    );
    assert_eq!(open.requests.sent, 800, "4 s at 200/s");
    assert_eq!(open.requests.ok, 800, "{}", explain(&out));
    let corrected = open.decode_histogram().unwrap();
    let uncorrected = open_loop(&open).uncorrected_histogram.decode().unwrap();

    // A request due t into the 1 s stall is answered when it ends: its latency from
    // the intended send time is about 1 s - t. So about RATE x (1 s - X) requests take
    // X or more: a ramp down from every request due in that second. Tolerance: 20% of
    // the expected count plus 10, for scheduling noise on a loaded machine.
    let mut ramp = Vec::new();
    for x_ms in [100u64, 250, 500, 750] {
        let expected = RATE * (1000 - x_ms) as f64 / 1000.0;
        let got = count_at_least(&corrected, x_ms * MS) as f64;
        ramp.push((x_ms, expected, got));
        assert!(
            (got - expected).abs() <= 0.2 * expected + 10.0,
            "latencies >= {x_ms} ms: {got}, expected {expected} +- 20%+10; ramp so far {ramp:?}\n{}",
            explain(&out)
        );
    }
    let open_500 = count_at_least(&corrected, 500 * MS);
    let open_p99 = corrected.value_at_quantile(0.99);
    assert!(open_p99 >= 500 * MS, "open-loop p99 {open_p99} ns");
    // Every request's corrected latency is at least its uncorrected one.
    for q in [0.5, 0.9, 0.99, 1.0] {
        assert!(uncorrected.value_at_quantile(q) <= corrected.value_at_quantile(q));
    }
    // The interval log adds up and shows the stall in one second.
    let read = read_interval_log(&log);
    assert_eq!(
        read.total(),
        open.requests.ok,
        "interval counts add up to the run's total"
    );
    assert_eq!(
        read.uncorrected.iter().map(Histogram::len).sum::<u64>(),
        800
    );
    let worst = read.main.iter().map(|(_, _, h)| h.max()).max().unwrap();
    assert!(
        worst >= 900 * MS,
        "no interval shows the stall: max {worst} ns"
    );

    // The closed loop, same server, same stall: each connection has one request stuck
    // in it and then simply sends less, so the stall shows in about one latency per
    // connection, lost among thousands.
    let (_, closed) = run_ok(
        &stall,
        &["-c", "2", "--cmd", "ping", "-d", "4s"],
        dir.path(),
        "closed",
    );
    assert_eq!(closed.load_model, "closed");
    assert!(closed.open_loop.is_none());
    let closed_h = closed.decode_histogram().unwrap();
    let closed_500 = count_at_least(&closed_h, 500 * MS);
    let closed_p99 = closed_h.value_at_quantile(0.99);
    eprintln!(
        "stall figures: open loop {} requests, {open_500} >= 500 ms, p99 {:.1} ms, ramp {ramp:?}; closed loop {} requests, {closed_500} >= 500 ms, p99 {:.3} ms",
        open.requests.ok,
        open_p99 as f64 / 1e6,
        closed.requests.ok,
        closed_p99 as f64 / 1e6
    );
    assert!(
        closed.requests.ok >= 1000,
        "closed loop too slow to compare: {}",
        closed.requests.ok
    );
    assert!(
        (1..=4).contains(&closed_500),
        "closed loop: {closed_500} latencies >= 500 ms, expected one per connection (2), at most 4"
    );
    assert!(
        closed_p99 < 100 * MS,
        "closed-loop p99 {closed_p99} ns: the stall should vanish from it"
    );
    assert!(
        open_500 >= 10 * closed_500,
        "the open loop should see the stall in far more requests: {open_500} vs {closed_500}"
    );
}

#[test]
fn pacing_keeps_the_offered_rate_and_reports_lateness() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pace.hlog");
    // 5000/s on one connection for 3 s after a warm-up; the rerun below repeats these.
    let pace = [
        "--rate",
        "5000",
        "-c",
        "1",
        "--pipeline",
        "32",
        "--cmd",
        "ping",
        "-d",
        "3s",
        "--warmup",
        "200ms",
    ];
    let (out, doc) = run_ok(
        &[],
        &[&pace[..], &["--interval-log", log.to_str().unwrap()]].concat(),
        dir.path(),
        "pace",
    );
    let o = open_loop(&doc);
    // The schedule is exact: 3 s at 5000/s after the warm-up, all on one connection
    // (5 per millisecond: a generator that paced on millisecond ticks could not).
    assert_eq!(doc.requests.sent, 15_000);
    assert_eq!(o.sent, 15_000, "every scheduled request was written");
    assert_eq!(doc.config.rate, Some(5000.0));
    assert_eq!(doc.config.pipeline, Some(32));
    assert_eq!(o.offered_rps, 5000.0);
    // No request leaves before it is due, so neither the send rate nor the answer rate
    // can beat the offered rate (the answers span at least the 14,999 gaps between the
    // first and the last send). How close they come, and how late the sends leave, is
    // up to the scheduler on a loaded machine: printed below, not asserted.
    assert!(
        o.sent_rps <= 5000.0 * (1.0 + 1e-9),
        "sent {} req/s for 5000 offered\n{}",
        o.sent_rps,
        explain(&out)
    );
    assert!(
        doc.throughput_rps <= 5000.0 * 15_000.0 / 14_999.0 * (1.0 + 1e-9),
        "throughput {}\n{}",
        doc.throughput_rps,
        explain(&out)
    );
    // Lateness is reported, consistently.
    let lateness = o.lateness_histogram.decode().unwrap();
    assert_eq!(lateness.len(), o.sent, "one lateness per send");
    let l = o.lateness_us;
    assert!(0.0 <= l.p50 && l.p50 <= l.p99 && l.p99 <= l.max, "{l:?}");
    // The send window ends with the last send, 3 s after the first due time plus that
    // send's lateness: the worst lateness is at least that (to the histogram's 0.1%).
    let last_late_us = (o.sent as f64 / o.sent_rps - 3.0) * 1e6;
    assert!(
        l.max * 1.001 + 1.0 >= last_late_us,
        "the last send left {last_late_us} us late, the worst lateness is {} us",
        l.max
    );
    assert_eq!(l.max, lateness.max() as f64 / 1000.0);
    assert!(o.late_own <= o.late && o.late <= o.sent, "{o:?}");
    assert_eq!(o.late_threshold_us, 1000.0);
    assert!(o.busy_mean <= o.busy_max && o.busy_max <= 1.0);
    let cpu = doc.client_cpu.unwrap();
    assert!(cpu.cpu_s > 0.0 && cpu.wall_s >= 3.0, "{cpu:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "rate        offered 5000.00 req/s",
        "lateness    ",
        "corrected  ",
        "uncorrected",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing:\n{stdout}");
    }
    eprintln!(
        "pacing figures: offered 5000/s on one connection, sent {:.1}/s, answered {:.1}/s, lateness p50 {:.1} us p99 {:.1} us max {:.1} us, {} late ({} own)",
        o.sent_rps, doc.throughput_rps, l.p50, l.p99, l.max, o.late, o.late_own
    );

    // The interval log: the warm-up is not in it, the seconds add up to the run.
    let read = read_interval_log(&log);
    assert_eq!(read.total(), doc.requests.ok);
    assert_eq!(
        read.uncorrected.iter().map(Histogram::len).sum::<u64>(),
        doc.requests.ok
    );
    assert!(
        (3..=4).contains(&read.main.len()),
        "{} intervals",
        read.main.len()
    );
    for (i, (start, length, _)) in read.main.iter().enumerate() {
        assert_eq!(*start, i as f64);
        assert!(
            *length >= 0.05 && *length <= 1.05,
            "interval {i}: {length} s"
        );
    }
    assert!(read.start_time.is_some());
}

#[test]
fn the_closed_loop_writes_an_interval_log_that_adds_up() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("closed.hlog");
    let (_, doc) = run_ok(
        &[],
        &[
            "-c",
            "2",
            "--cmd",
            "ping",
            "-d",
            "2500ms",
            "--interval-log",
            log.to_str().unwrap(),
        ],
        dir.path(),
        "closed",
    );
    let read = read_interval_log(&log);
    assert!(
        read.uncorrected.is_empty(),
        "no tagged histograms in closed loop"
    );
    let counts: Vec<u64> = read.main.iter().map(|(_, _, h)| h.len()).collect();
    assert_eq!(counts.iter().sum::<u64>(), doc.requests.ok, "{counts:?}");
    assert_eq!(counts.len(), 3, "2.5 s is three intervals: {counts:?}");
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
    assert_eq!(doc.load_model, "closed");
}

#[test]
fn impossible_settings_are_refused_with_a_clear_message() {
    // Checked before any connection: port 1 is never contacted.
    let cases: &[(&[&str], &str)] = &[
        (&["--rate", "0"], "not a usable rate"),
        (&["--rate", "-5"], "not a usable rate"),
        (&["--rate", "nan"], "not a usable rate"),
        (&["--rate", "fast"], "is not a number"),
        (&["--rate", "100", "--pipeline", "0"], "--pipeline"),
        (
            &["--pipeline", "4"],
            "--pipeline is for the open loop: give --rate too",
        ),
        (
            // 4 connections, 1 in flight each, compute(500000) >= 0.5 ms: at most ~8000/s.
            &["--rate", "10000", "-c", "4", "--size", "500000"],
            "cannot be carried by 4 connections with 1 request in flight each",
        ),
        (
            &["--rate", "600000", "-c", "1", "--cmd", "ping"],
            "Raise --pipeline or --concurrency",
        ),
        (
            &[
                "--rate",
                "3000000",
                "-c",
                "2",
                "--pipeline",
                "1000",
                "--cmd",
                "ping",
            ],
            "one connection is paced at most 1000000/s: raise --concurrency to at least 3",
        ),
        (
            &["--rate", "10", "-c", "8", "-d", "500ms"],
            "schedules 5.0 requests, fewer than the 8 connections",
        ),
        (
            &["--rate", "10", "--size", "100000000", "--timeout", "50ms"],
            "is shorter than the least time a request takes",
        ),
        (
            &["--rate", "10", "-c", "2", "--threads", "3"],
            "--threads 3 is more than the 2 connections",
        ),
    ];
    for (args, needle) in cases {
        let out = client(1, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", explain(&out));
        assert!(
            stderr.contains(needle),
            "{args:?}: {needle:?} not in:\n{stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // The closest feasible setting to a refused one is accepted (and then finds no server).
    let out = client(
        1,
        &[
            "--rate",
            "10000",
            "-c",
            "4",
            "--pipeline",
            "2",
            "--size",
            "500000",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
}

#[test]
fn a_silent_server_gives_timeouts_for_every_scheduled_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(|_, _| Reply::Stall);
    let (out, doc) = client_json(
        server.port(),
        &[
            "--rate",
            "50",
            "-c",
            "1",
            "--pipeline",
            "8",
            "--cmd",
            "ping",
            "-d",
            "1s",
            "--timeout",
            "300ms",
        ],
        dir.path(),
        "silent",
    );
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    assert_eq!(doc.requests.sent, 50);
    assert_eq!(doc.requests.ok, 0);
    assert_eq!(doc.failures.timeout, 50, "{:?}", doc.failures);
    assert!(doc.first_errors["timeout"].contains("300 ms"));
    // The pipeline filled, so sends were held back: late, but not the client's doing.
    let o = open_loop(&doc);
    assert!(o.late > 0 && o.late_own <= o.late / 4, "{o:?}");
}

#[test]
fn an_answer_to_no_request_in_flight_is_malformed_and_the_client_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(|n, _| {
        if n == 3 {
            Reply::Raw(br#"{"id":999999,"ok":true,"pong":true}"#.to_vec())
        } else {
            Reply::Correct
        }
    });
    let (out, doc) = client_json(
        server.port(),
        &[
            "--rate",
            "100",
            "-c",
            "1",
            "--pipeline",
            "4",
            "--cmd",
            "ping",
            "-d",
            "500ms",
        ],
        dir.path(),
        "mismatch",
    );
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    assert_eq!(doc.requests.sent, 50);
    let f = &doc.failures;
    assert!(f.malformed >= 1, "{f:?}");
    assert_eq!(doc.requests.ok + f.malformed, 50, "{f:?}");
    assert!(
        doc.first_errors["malformed"].contains("matches no request in flight"),
        "{:?}",
        doc.first_errors
    );
    assert!(
        server
            .stats
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 3
    );
}

#[test]
fn a_server_that_goes_away_leaves_the_rest_of_the_schedule_as_connect_failures() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(|n, _| {
        if n == 10 {
            Reply::GoAway
        } else {
            Reply::Correct
        }
    });
    let (out, doc) = client_json(
        server.port(),
        &[
            "--rate",
            "100",
            "-c",
            "1",
            "--cmd",
            "ping",
            "-d",
            "1s",
            "--timeout",
            "1s",
        ],
        dir.path(),
        "goaway",
    );
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    assert_eq!(
        doc.requests.sent, 100,
        "every scheduled request is accounted for"
    );
    assert_eq!(doc.requests.ok, 9);
    let f = &doc.failures;
    assert!(f.connect > 0, "{f:?}");
    assert_eq!(doc.requests.ok + doc.requests.failed, 100);
    assert!(open_loop(&doc).sent < 100);
}
