//! `threadcenter client` end to end: the real binary against small servers on 127.0.0.1
//! that these tests start themselves, some of them scripted to misbehave.

mod common;
mod sut;

use std::collections::BTreeSet;
use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use common::{client, client_json, explain, free_port, ChildGuard, Reply, TestServer};
use threadcenter::client::ClientDocument;
use threadcenter::protocol::{compute, ErrorCode};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn read_doc(path: &Path) -> ClientDocument {
    ClientDocument::parse(&fs::read_to_string(path).unwrap()).unwrap()
}

/// The document's own invariants, true of every run.
fn check_doc_invariants(doc: &ClientDocument) {
    let r = doc.requests;
    assert_eq!(r.sent, r.ok + r.failed, "{r:?}");
    let f = &doc.failures;
    let by_kind = f.connect + f.io + f.timeout + f.malformed + f.wrong_result;
    assert_eq!(
        r.failed,
        by_kind + f.server_error.values().sum::<u64>(),
        "{f:?}"
    );
    for code in ErrorCode::ALL {
        assert!(f.server_error.contains_key(code.as_str()), "{code} missing");
    }
    if doc.elapsed_s > 0.0 {
        let want = r.ok as f64 / doc.elapsed_s;
        assert!(
            (doc.throughput_rps - want).abs() <= want * 1e-9,
            "{} vs {want}",
            doc.throughput_rps
        );
    }
    let hist = doc.decode_histogram().unwrap();
    assert_eq!(hist.len(), r.ok, "histogram holds one latency per success");
    assert_eq!(doc.histogram.unit, "ns");
    assert_eq!(doc.histogram.encoding, "hdr-v2-deflate-base64");
    assert_eq!(doc.histogram.significant_digits, 3);
    if r.ok > 0 {
        let l = doc.latency_us;
        let ordered = [l.min, l.p50, l.p90, l.p99, l.p99_9, l.max];
        assert!(ordered.windows(2).all(|w| w[0] <= w[1]), "{l:?}");
        assert!(l.min > 0.0 && l.min <= l.mean && l.mean <= l.max, "{l:?}");
        assert_eq!(l.max, hist.max() as f64 / 1000.0);
        assert_eq!(l.p50, hist.value_at_quantile(0.5) as f64 / 1000.0);
    }
}

/// Every key docs/formats.md names is present under its documented name.
fn check_documented_keys(raw: &str) {
    let v: serde_json::Value = serde_json::from_str(raw).unwrap();
    let keys = |path: &str| -> BTreeSet<String> {
        let node = if path.is_empty() { &v } else { &v[path] };
        node.as_object()
            .unwrap_or_else(|| panic!("{path} is not an object"))
            .keys()
            .cloned()
            .collect()
    };
    let has = |path: &str, names: &[&str]| {
        let got = keys(path);
        for n in names {
            assert!(got.contains(*n), "{path}.{n} missing from {got:?}");
        }
    };
    has(
        "",
        &[
            "format",
            "version",
            "config",
            "elapsed_s",
            "requests",
            "failures",
            "throughput_rps",
            "latency_us",
            "histogram",
        ],
    );
    has(
        "config",
        &[
            "host",
            "port",
            "cmd",
            "size",
            "concurrency",
            "requests_per_thread",
            "duration_s",
            "warmup_s",
            "timeout_s",
        ],
    );
    has("requests", &["sent", "ok", "failed"]);
    has(
        "failures",
        &[
            "connect",
            "io",
            "timeout",
            "malformed",
            "wrong_result",
            "server_error",
        ],
    );
    has(
        "latency_us",
        &["mean", "stdev", "min", "p50", "p90", "p99", "p99_9", "max"],
    );
    has(
        "histogram",
        &["unit", "significant_digits", "encoding", "data"],
    );
    assert_eq!(v["format"], "threadcenter-client");
    assert_eq!(v["version"], 1);
}

/// A .hgrm data row: value, quantile, total count.
type HgrmRow = (f64, f64, u64);

/// Parses a .hgrm file: its data rows and the numbers of each footer line.
fn read_hgrm(path: &Path) -> (Vec<HgrmRow>, Vec<Vec<f64>>) {
    let body = fs::read_to_string(path).unwrap();
    let mut lines = body.lines();
    assert_eq!(
        lines.next(),
        Some("       Value     Percentile TotalCount 1/(1-Percentile)")
    );
    assert_eq!(lines.next(), Some(""));
    let mut rows = Vec::new();
    let mut footer = Vec::new();
    for line in lines {
        if let Some(rest) = line.strip_prefix("#[") {
            footer.push(
                rest.split(['=', ',', ']'])
                    .filter_map(|s| s.trim().parse().ok())
                    .collect(),
            );
        } else {
            let cols: Vec<&str> = line.split_whitespace().collect();
            rows.push((
                cols[0].parse().unwrap(),
                cols[1].parse().unwrap(),
                cols[2].parse().unwrap(),
            ));
        }
    }
    (rows, footer)
}

#[test]
fn a_normal_run_counts_verifies_and_writes_json_and_hgrm() {
    let server = TestServer::start(|_, _| Reply::Correct);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let hgrm = dir.path().join("run.hgrm");
    let out = client(
        server.port(),
        &[
            "-c",
            "3",
            "-n",
            "20",
            "--size",
            "1000",
            "--json",
            json.to_str().unwrap(),
            "--hgrm",
            hgrm.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("60 ok, 0 failed"), "{stdout}");
    for word in ["throughput", "mean", "p50", "p90", "p99", "p99.9", "max"] {
        assert!(stdout.contains(word), "{word} missing: {stdout}");
    }
    // Closed loop: exactly --requests per thread reached the server.
    assert_eq!(server.requests(), 60);

    let raw = fs::read_to_string(&json).unwrap();
    check_documented_keys(&raw);
    let doc = read_doc(&json);
    check_doc_invariants(&doc);
    assert_eq!(
        (doc.requests.sent, doc.requests.ok, doc.requests.failed),
        (60, 60, 0)
    );
    let c = &doc.config;
    assert_eq!(
        (
            c.host.as_str(),
            c.port,
            c.cmd.as_str(),
            c.size,
            c.concurrency
        ),
        ("127.0.0.1", server.port(), "compute", 1000, 3)
    );
    assert_eq!((c.requests_per_thread, c.duration_s), (Some(20), None));
    assert_eq!((c.warmup_s, c.timeout_s), (0.0, 30.0));
    assert!(doc.elapsed_s > 0.0);

    let hist = doc.decode_histogram().unwrap();
    let (rows, footer) = read_hgrm(&hgrm);
    assert!(rows
        .windows(2)
        .all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1 && w[0].2 <= w[1].2));
    assert_eq!(rows.last().unwrap().1, 1.0);
    assert_eq!(rows.last().unwrap().2, 60);
    assert_eq!(footer[1], vec![hist.max() as f64 / 1000.0, 60.0]);

    // Only the two files: the temporary files were renamed away.
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["run.hgrm", "run.json"]);
}

#[test]
fn five_requests_per_thread_by_default_and_quiet_prints_nothing() {
    let server = TestServer::start(|_, _| Reply::Correct);
    let out = client(server.port(), &["-c", "2", "--size", "10", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    assert!(out.stdout.is_empty(), "{}", explain(&out));
    assert_eq!(server.requests(), 10);
}

#[test]
fn wrong_results_are_caught_and_fail_the_run() {
    let server = TestServer::start(|_, _| Reply::Wrong);
    let dir = tempfile::tempdir().unwrap();
    let (out, doc) = client_json(
        server.port(),
        &["-c", "2", "-n", "5", "--size", "100"],
        dir.path(),
        "run",
    );
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("0 ok, 10 failed"), "{stdout}");
    assert!(stdout.contains("wrong_result 10"), "{stdout}");
    let want = compute(100);
    assert!(
        stdout.contains(&format!(
            "compute(100) answered {}, expected {want}",
            want + 1
        )),
        "{stdout}"
    );
    check_doc_invariants(&doc);
    assert_eq!((doc.requests.ok, doc.failures.wrong_result), (0, 10));
    // A wrong answer is still an answer: no reconnect (preflight + 2 connections).
    assert_eq!(server.stats.connections.load(Ordering::SeqCst), 3);
}

#[test]
fn malformed_responses_and_mismatched_ids_count_as_malformed_and_reconnect() {
    // Request 1 gets garbage, 2 another request's id, 3 the right answer; and so on.
    let server = TestServer::start(|k, _| match k % 3 {
        1 => Reply::Raw(b"{not json".to_vec()),
        2 => Reply::Raw(br#"{"id":999999,"result":1}"#.to_vec()),
        _ => Reply::Correct,
    });
    let dir = tempfile::tempdir().unwrap();
    let (out, doc) = client_json(
        server.port(),
        &["-c", "1", "-n", "9", "--size", "10"],
        dir.path(),
        "run",
    );
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    check_doc_invariants(&doc);
    assert_eq!((doc.requests.ok, doc.failures.malformed), (3, 6));
    assert!(doc.first_errors["malformed"].contains("invalid JSON"));
    // Each malformed answer cost the connection: preflight, first connect, 6 reconnects.
    assert_eq!(server.stats.connections.load(Ordering::SeqCst), 8);
}

#[test]
fn server_error_codes_are_counted_by_code_as_sent() {
    let server = TestServer::start(|k, _| match k % 4 {
        1 => Reply::Error("OVERLOADED"),
        2 => Reply::Error("TEAPOT"),
        _ => Reply::Correct,
    });
    let dir = tempfile::tempdir().unwrap();
    let (out, doc) = client_json(
        server.port(),
        &["-c", "1", "-n", "8", "--size", "10"],
        dir.path(),
        "run",
    );
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("server error OVERLOADED 2, server error TEAPOT 2"),
        "{stdout}"
    );
    check_doc_invariants(&doc);
    let codes = &doc.failures.server_error;
    assert_eq!((codes["OVERLOADED"], codes["TEAPOT"]), (2, 2));
    assert_eq!(codes["BAD_REQUEST"], 0);
    assert_eq!(doc.requests.ok, 4);
    // The errors carried our ids: the connection was kept.
    assert_eq!(server.stats.connections.load(Ordering::SeqCst), 2);
}

#[test]
fn a_stalled_server_gives_timeouts() {
    let server = TestServer::start(|_, _| Reply::Stall);
    let dir = tempfile::tempdir().unwrap();
    let (out, doc) = client_json(
        server.port(),
        &["-c", "2", "-n", "2", "--timeout", "200ms"],
        dir.path(),
        "run",
    );
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("timeout 4"), "{stdout}");
    assert!(stdout.contains("no response within 200 ms"), "{stdout}");
    check_doc_invariants(&doc);
    assert_eq!((doc.requests.ok, doc.failures.timeout), (0, 4));
    assert_eq!(server.requests(), 4);
}

#[test]
fn a_server_closing_connections_gives_io_failures_and_the_client_reconnects() {
    let server = TestServer::start(|k, _| {
        if k % 2 == 0 {
            Reply::Close
        } else {
            Reply::Correct
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let (out, doc) = client_json(
        server.port(),
        &["-c", "1", "-n", "6", "--size", "10"],
        dir.path(),
        "run",
    );
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    check_doc_invariants(&doc);
    assert_eq!((doc.requests.ok, doc.failures.io), (3, 3));
    assert!(
        doc.first_errors["io"].contains("closed"),
        "{:?}",
        doc.first_errors
    );
}

#[test]
fn a_server_that_goes_away_mid_run_gives_connect_failures_for_what_was_not_sent() {
    // Four answers, then the server stops listening and drops every connection.
    let server = TestServer::start(|k, _| {
        if k >= 5 {
            Reply::GoAway
        } else {
            Reply::Correct
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let (out, doc) = client_json(
        server.port(),
        &["-c", "2", "-n", "30", "--size", "10"],
        dir.path(),
        "run",
    );
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    check_doc_invariants(&doc);
    // 30 planned per thread is more than 8 failed connects can use up: the thread gives
    // up and counts what it never sent.
    assert_eq!(doc.requests.sent, 60, "ok + failed = requests planned");
    assert!(doc.failures.connect > 2 * 8, "{:?}", doc.failures);
    assert_eq!(doc.requests.ok, 4);
    assert!(doc.failures.io >= 1, "{:?}", doc.failures);
    assert!(
        doc.first_errors["connect"].contains("refused"),
        "{:?}",
        doc.first_errors
    );
}

#[test]
fn an_unreachable_server_is_one_clear_line_and_exit_2() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let out = client(port, &["-n", "1", "--json", json.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", explain(&out));
    assert!(out.stdout.is_empty(), "{}", explain(&out));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let line = lines[0];
    assert!(
        line.starts_with(&format!("error: cannot connect to 127.0.0.1:{port}: ")),
        "{line}"
    );
    assert!(line.contains("is the server running?"), "{line}");
    assert!(line.contains("--host/--port"), "{line}");
    assert!(!json.exists());
}

#[test]
fn duration_mode_stops_by_itself() {
    let server = TestServer::start(|_, _| Reply::Correct);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (out, doc) = client_json(
        server.port(),
        &["-c", "2", "-d", "300ms", "--cmd", "ping"],
        dir.path(),
        "run",
    );
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    assert!(started.elapsed() >= Duration::from_millis(300));
    check_doc_invariants(&doc);
    assert_eq!(doc.config.cmd, "ping");
    assert_eq!(
        (doc.config.requests_per_thread, doc.config.duration_s),
        (None, Some(0.3))
    );
    assert!(doc.requests.ok > 0 && doc.requests.failed == 0);
    // The window covers the duration (the last response may land a hair before its end).
    assert!(doc.elapsed_s > 0.25, "{}", doc.elapsed_s);
    // Everything sent was awaited and counted.
    assert_eq!(server.requests(), doc.requests.sent);
}

#[test]
fn warmup_requests_are_sent_but_not_counted() {
    let server = TestServer::start(|_, _| Reply::Correct);
    let dir = tempfile::tempdir().unwrap();
    let (out, doc) = client_json(
        server.port(),
        &["-c", "2", "-n", "5", "--size", "100", "--warmup", "300ms"],
        dir.path(),
        "run",
    );
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    check_doc_invariants(&doc);
    assert_eq!((doc.requests.sent, doc.requests.ok), (10, 10));
    assert_eq!(doc.config.warmup_s, 0.3);
    // Each thread sent at least one warm-up request before its five measured ones.
    assert!(server.requests() >= 12, "server saw {}", server.requests());
}

/// Starts tests/fixtures/seed_server.py on a free port and waits until it accepts.
fn start_seed_server() -> (ChildGuard, u16) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seed_server.py");
    for _ in 0..3 {
        let port = free_port();
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--workers", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let mut guard = ChildGuard::spawn(cmd).expect("spawn python3");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let addr = ([127, 0, 0, 1], port).into();
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return (guard, port);
            }
            if guard.try_wait().is_some() {
                break; // most likely the port was taken meanwhile: try another
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("the seed server did not start accepting connections");
}

#[test]
#[ignore = "needs python3: apt-get install python3"]
fn works_against_a_server_written_to_the_seed_readme() {
    common::require_peer(
        common::runs("python3", "--version"),
        "python3",
        "apt-get install python3",
    );
    // The fixture models the original server: one pending map keyed by str(id) for
    // every connection, ids echoed as strings. With 8 connections at once, any id sent
    // twice in the run would lose an answer (a timeout) or deliver it to the wrong
    // connection (malformed); every answer must come back to its request and verify.
    let (server, port) = start_seed_server();
    let dir = tempfile::tempdir().unwrap();
    let runs: [(&str, &[&str]); 4] = [
        ("compute", &["--size", "2000"]),
        ("ping", &["--cmd", "ping"]),
        ("integer-ids", &["--size", "2000", "--ids", "integer"]),
        (
            "open-loop",
            &["--size", "2000", "--rate", "400", "--pipeline", "4"],
        ),
    ];
    for (name, extra) in runs {
        let mut args = vec!["-c", "8", "-n", "10", "--timeout", "10s"];
        args.extend_from_slice(extra);
        let (out, doc) = client_json(port, &args, dir.path(), name);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", explain(&out));
        check_doc_invariants(&doc);
        assert_eq!((doc.requests.ok, doc.requests.failed), (80, 0), "{name}");
    }
    drop(server);
}

#[test]
fn many_connections_on_two_event_loop_threads_are_all_answered_and_verified() {
    // Our own server: 200 connections on 2 client threads, every answer checked against
    // compute(n) on the client's side.
    let server = sut::Server::start(&["--workers", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let (out, doc) = client_json(
        server.addr.port(),
        &["-c", "200", "--threads", "2", "-n", "10", "--size", "100"],
        dir.path(),
        "many",
    );
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    check_doc_invariants(&doc);
    assert_eq!((doc.requests.ok, doc.requests.failed), (2000, 0));
    assert_eq!((doc.config.concurrency, doc.config.threads), (200, Some(2)));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("200 connections on 2 threads"), "{stdout}");
    // The default: as many threads as cores, never more than connections.
    let (out, doc) = client_json(
        server.addr.port(),
        &["-c", "1", "-n", "3"],
        dir.path(),
        "one",
    );
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    assert_eq!(doc.config.threads, Some(1));
}

#[test]
fn connections_sharing_a_thread_each_get_their_share_of_a_timed_run() {
    // A closed loop for a fixed time: a connection that its thread neglected would send
    // little or nothing. 120 connections on 2 threads against a server that answers
    // each connection on a thread of its own.
    let server = TestServer::start(|_, _| Reply::Correct);
    let dir = tempfile::tempdir().unwrap();
    let (out, doc) = client_json(
        server.port(),
        &["-c", "120", "--threads", "2", "-d", "1s", "--cmd", "ping"],
        dir.path(),
        "fair",
    );
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    assert_eq!(doc.requests.failed, 0);
    let counts: Vec<u64> = server
        .stats
        .per_connection
        .lock()
        .unwrap()
        .values()
        .copied()
        .collect();
    // Each of the 120 connections sent requests (the preflight connection sends none),
    // and none reconnected.
    assert_eq!(counts.len(), 120, "{counts:?}");
    let mut sorted = counts.clone();
    sorted.sort_unstable();
    let (min, median) = (sorted[0], sorted[sorted.len() / 2]);
    // A generous bound: scheduling on a loaded machine moves counts by a few times,
    // never by ten between a connection and the median of its peers.
    assert!(
        min >= 1 && min * 10 >= median,
        "least {min}, median {median}: {sorted:?}"
    );
    assert_eq!(counts.iter().sum::<u64>(), server.requests());
}
