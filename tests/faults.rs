//! Fault injection: workers killed and stopped, clients that vanish, flood, pipeline
//! or never read. Each test is bounded in count and time (a few seconds in a debug
//! build) and ends with the same checks, in [`check_recovered`]:
//!
//! - every request was answered exactly once, or its connection was closed as
//!   protocol.md says (each test asserts this for its own clients);
//! - a fresh client is answered within [`FRESH_CLIENT_LIMIT`];
//! - no process or thread is left behind: the server's children are exactly its
//!   workers, every connection thread has ended;
//! - the server's RSS is back within [`RSS_SLACK_KIB`] of what it was before.
//!
//! Figures (RSS, latency) are printed on stderr: `cargo test --release --test faults
//! -- --nocapture --test-threads 1` shows them.

mod common;
mod sut;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sut::{Conn, Io, Server};
use threadcenter::protocol::compute;

/// A fresh client must be answered within this, after any fault.
const FRESH_CLIENT_LIMIT: Duration = Duration::from_secs(10);
/// The server's RSS after a fault may exceed its RSS before by at most this.
const RSS_SLACK_KIB: u64 = 32 * 1024;

fn stats(c: &mut Conn) -> Value {
    c.call(&json!({"id": "stats", "cmd": "stats"}))["stats"].clone()
}

/// Serves one connection so allocator arenas and thread stacks exist, then returns
/// the server's RSS (KiB) and thread count at rest, with that one connection open;
/// [`check_recovered`] measures in the same state.
fn baseline(server: &Server) -> (u64, u64) {
    let mut c = server.connect();
    assert_eq!(
        c.call(&json!({"id": 0, "cmd": "compute", "n": 10}))["result"],
        8360
    );
    assert_eq!(stats(&mut c)["connections"]["open"], 1);
    let at_rest = (
        sut::rss_kib(server.pid()),
        sut::status_field(server.pid(), "Threads"),
    );
    drop(c);
    at_rest
}

/// The checks every fault test ends with (see the module doc).
fn check_recovered(server: &Server, (rss_before, threads_before): (u64, u64), what: &str) {
    let started = Instant::now();
    let mut c = server.connect();
    c.stream.set_read_timeout(Some(FRESH_CLIENT_LIMIT)).unwrap();
    assert_eq!(
        c.call(&json!({"id": "fresh", "cmd": "ping"}))["pong"],
        true,
        "{what}"
    );
    assert_eq!(
        c.call(&json!({"id": "fresh", "cmd": "compute", "n": 1000}))["result"],
        933_214_789,
        "{what}"
    );
    let answered = started.elapsed();
    assert!(
        answered < FRESH_CLIENT_LIMIT,
        "{what}: fresh client answered after {answered:?}"
    );
    // Every other connection is gone on the server's side, with its threads.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = stats(&mut c);
        if s["connections"]["open"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: connections still open after 15 s: {s}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // No process left behind: the server's children are its workers, all alive.
    let mut workers = server.worker_pids();
    workers.sort();
    sut::wait_until(Duration::from_secs(5), || {
        let mut kids = common::children(server.pid());
        kids.sort();
        kids == workers
    });
    // Measured as `baseline` did: with this one connection open.
    let pid = server.pid();
    sut::wait_until(Duration::from_secs(10), || {
        sut::status_field(pid, "Threads") <= threads_before
    });
    let mut rss = 0;
    let settled = (0..100).any(|_| {
        rss = sut::rss_kib(pid);
        rss <= rss_before + RSS_SLACK_KIB || {
            std::thread::sleep(Duration::from_millis(100));
            false
        }
    });
    drop(c);
    eprintln!(
        "[{what}] fresh client answered in {answered:?}; RSS before {rss_before} KiB, after {rss} KiB"
    );
    assert!(
        settled,
        "{what}: RSS {rss} KiB, more than {RSS_SLACK_KIB} KiB over {rss_before} KiB"
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A tiny deterministic generator, so a failing run can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn sigkill_random_workers_under_sustained_load(io: Io) {
    let server = Server::start_io(io, &["--workers", "2"]);
    let base = baseline(&server);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6u64)
        .map(|t| {
            let addr = server.addr;
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut c = Conn::connect(addr);
                let (mut ok, mut failed) = (0u64, 0u64);
                for i in 0..2000u64 {
                    if stop.load(Relaxed) {
                        break;
                    }
                    let n = 50_000 + (t * 7919 + i * 104_729) % 300_000;
                    let r = c.call(&json!({"id": i, "cmd": "compute", "n": n}));
                    // One request at a time: this answer is this request's, and only one.
                    assert_eq!(r["id"], i, "{r}");
                    if r["error"]["code"] == "WORKER_FAILED" {
                        failed += 1;
                    } else {
                        assert_eq!(r["result"], compute(n), "{r}");
                        ok += 1;
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    // Kills land while the load flows: each waits for 20 more answers than the last.
    let answered = || stats(&mut server.connect())["responses"]["compute"]["ok"].as_u64();
    let more_answers = || {
        let from = answered().unwrap();
        sut::wait_until(Duration::from_secs(30), || answered().unwrap() >= from + 20);
    };
    let mut rng = Lcg(7);
    let mut killed = Vec::new();
    for _ in 0..6 {
        more_answers();
        let pids = server.worker_pids();
        let victim = pids[rng.next() as usize % pids.len()];
        sut::kill(victim, libc::SIGKILL);
        killed.push(victim);
        // The server reaps it and starts a replacement before the next kill.
        sut::wait_until(Duration::from_secs(10), || {
            !common::alive(victim) && !server.worker_pids().contains(&victim)
        });
    }
    more_answers();
    stop.store(true, Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for c in clients {
        let (o, f) = c.join().unwrap();
        ok += o;
        failed += f;
    }
    eprintln!(
        "[sigkill] {ok} answered, {failed} WORKER_FAILED, {} workers killed",
        killed.len()
    );
    assert!(ok > 0);
    assert!(
        failed <= killed.len() as u64,
        "a kill fails at most the task it interrupts"
    );
    let mut c = server.connect();
    let s = stats(&mut c);
    let restarts: u64 = s["worker_stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["restarts"].as_u64().unwrap())
        .sum();
    assert_eq!(restarts, killed.len() as u64, "{s}");
    assert_eq!(s["errors"]["WORKER_FAILED"], failed, "{s}");
    drop(c);
    check_recovered(&server, base, "sigkill");
}

fn a_stopped_worker_is_killed_at_the_task_timeout_and_replaced(io: Io) {
    let server = Server::start_io(io, &["--workers", "2", "--task-timeout", "1s"]);
    let base = baseline(&server);
    let pids = server.worker_pids();
    let _cont = sut::Stopped(pids[0]);
    sut::kill(pids[0], libc::SIGSTOP);
    let started = Instant::now();
    let mut c = server.connect();
    // The first two tasks go to the two idle workers, one of them the stopped one; the
    // rest are shared out by the live one and, later, the replacement.
    for i in 0..6u64 {
        c.send(&json!({"id": i, "cmd": "compute", "n": 1_000_000 + i}));
    }
    let answers: Vec<Value> = (0..6).map(|_| c.recv()).collect();
    let took = started.elapsed();
    let failed: Vec<&Value> = answers
        .iter()
        .filter(|a| a.get("error").is_some())
        .collect();
    assert_eq!(failed.len(), 1, "{answers:?}");
    assert_eq!(failed[0]["error"]["code"], "WORKER_FAILED");
    let msg = failed[0]["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&pids[0].to_string()) && msg.contains("--task-timeout"),
        "{msg}"
    );
    for a in answers.iter().filter(|a| a.get("result").is_some()) {
        let i = a["id"].as_u64().unwrap();
        assert_eq!(a["result"], compute(1_000_000 + i), "{a}");
    }
    let mut ids: Vec<u64> = answers.iter().map(|a| a["id"].as_u64().unwrap()).collect();
    ids.sort();
    assert_eq!(
        ids,
        (0..6).collect::<Vec<_>>(),
        "each answered exactly once"
    );
    eprintln!("[sigstop] 6 requests answered in {took:?} (task timeout 1s)");
    assert!(took < Duration::from_secs(20), "{took:?}");
    // The stopped worker was killed (SIGKILL ends a stopped process) and reaped.
    sut::wait_until(Duration::from_secs(5), || !common::alive(pids[0]));
    let s = stats(&mut c);
    assert_eq!(s["worker_stats"][0]["restarts"], 1, "{s}");
    drop(c);
    check_recovered(&server, base, "sigstop");
}

fn clients_that_close_mid_response_leave_nothing_behind(io: Io) {
    let server = Server::start_io(io, &["--workers", "2"]);
    let base = baseline(&server);
    for round in 0..40u64 {
        let mut c = server.connect();
        let batch = sut::frames((0..100u64).map(|i| {
            if i % 2 == 0 {
                json!({"id": i, "cmd": "stats"})
            } else {
                json!({"id": i, "cmd": "compute", "n": 20_000 + i})
            }
        }));
        c.stream.write_all(&batch).unwrap();
        // Read part of the first response, then vanish: half with a reset, half with FIN.
        let mut some = [0u8; 7];
        c.stream.read_exact(&mut some).unwrap();
        if round % 2 == 0 {
            socket2::SockRef::from(&c.stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        drop(c);
    }
    let mut c = server.connect();
    let s = stats(&mut c);
    assert_eq!(s["errors"]["INTERNAL"], 0, "{s}");
    drop(c);
    check_recovered(&server, base, "close mid-response");
}

fn a_connection_flood_past_the_limit_spares_open_connections(io: Io) {
    let server = Server::start_io(io, &["--workers", "2", "--max-connections", "32"]);
    let base = baseline(&server);
    let mut probe = server.connect();
    let measure = |probe: &mut Conn| {
        let mut lat: Vec<Duration> = (0..300u64)
            .map(|i| {
                let t = Instant::now();
                let r = probe.call(&json!({"id": i, "cmd": "compute", "n": 10_000}));
                let d = t.elapsed();
                assert_eq!(r, json!({"id": i, "result": compute(10_000)}));
                d
            })
            .collect();
        lat.sort();
        (percentile(&lat, 0.5), percentile(&lat, 0.99))
    };
    let quiet = measure(&mut probe);

    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let flooders: Vec<_> = (0..4)
        .map(|_| {
            let addr = server.addr;
            let stop = Arc::clone(&stop);
            let refused = Arc::clone(&refused);
            std::thread::spawn(move || {
                let mut held: Vec<Conn> = Vec::new();
                let mut accepted = 0u64;
                for _ in 0..3000 {
                    if stop.load(Relaxed) {
                        break;
                    }
                    let mut c = Conn::connect(addr);
                    c.stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    // A refused connection may already be shut for writing: ignore errors.
                    let _ = c.stream.write_all(&{
                        let mut b = Vec::new();
                        sut::frame(&mut b, br#"{"id":"f","cmd":"ping"}"#);
                        b
                    });
                    let r = c.recv();
                    if r["id"] == "f" {
                        assert_eq!(r["pong"], true, "{r}");
                        accepted += 1;
                        if held.len() < 10 {
                            held.push(c);
                        }
                    } else {
                        assert_eq!(r["id"], Value::Null, "{r}");
                        assert_eq!(r["error"]["code"], "OVERLOADED", "{r}");
                        assert!(c.at_eof(), "a refused connection is closed");
                        refused.fetch_add(1, Relaxed);
                    }
                }
                accepted
            })
        })
        .collect();
    // Measured once the flood is past the limit.
    sut::wait_until(Duration::from_secs(30), || refused.load(Relaxed) > 0);
    let flooded = measure(&mut probe);
    stop.store(true, Relaxed);
    let accepted: u64 = flooders.into_iter().map(|f| f.join().unwrap()).sum();
    let refused = refused.load(Relaxed);
    eprintln!(
        "[flood] well-behaved client, compute n=10000: p50 {:?} p99 {:?} alone; p50 {:?} p99 {:?} during a flood ({refused} connections refused, {accepted} accepted)",
        quiet.0, quiet.1, flooded.0, flooded.1
    );
    assert!(refused > 0, "the flood went past the limit");
    let s = stats(&mut probe);
    assert_eq!(
        s["connections"]["refused"], refused,
        "each refusal was answered: {s}"
    );
    drop(probe);
    check_recovered(&server, base, "flood");
}

fn ten_thousand_pipelined_requests_on_one_connection(io: Io) {
    const N: u64 = 10_000;
    let server = Server::start_io(io, &["--workers", "2"]);
    let base = baseline(&server);
    let mut c = server.connect();
    let mut writer = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let batch = sut::frames((0..N).map(|i| json!({"id": i, "cmd": "compute", "n": i % 3000})));
        writer.write_all(&batch).unwrap();
    });
    let pid = server.pid();
    let mut seen = vec![false; N as usize];
    let mut peak = 0;
    for k in 0..N {
        let r = c.recv();
        let i = r["id"].as_u64().unwrap();
        assert!(!std::mem::replace(&mut seen[i as usize], true), "{i} twice");
        assert_eq!(r["result"], compute(i % 3000), "{r}");
        if k % 500 == 0 {
            peak = peak.max(sut::rss_kib(pid));
        }
    }
    sender.join().unwrap();
    assert!(seen.iter().all(|s| *s));
    eprintln!(
        "[pipeline] {N} requests answered once each; server RSS peak {peak} KiB (at rest {} KiB)",
        base.0
    );
    drop(c);
    check_recovered(&server, base, "pipeline 10000");
}

fn a_client_that_never_reads_cannot_grow_the_server(io: Io) {
    let server = Server::start_io(io, &["--workers", "2"]);
    let base = baseline(&server);
    let pid = server.pid();
    let stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut w = &stream;
    // 10,000 compute requests, never reading an answer.
    let batch = sut::frames((0..10_000u64).map(|i| json!({"id": i, "cmd": "compute", "n": 1000})));
    let answered = || stats(&mut server.connect())["responses"]["compute"]["ok"].as_u64();
    let before = answered().unwrap();
    w.write_all(&batch).unwrap();
    // Read and answered (into the socket and the outbox: 10,000 answers fit in its 4 MiB).
    sut::wait_until(Duration::from_secs(30), || {
        answered() == Some(before + 10_000)
    });
    let after_10k = sut::rss_kib(pid);
    // Then pings, as fast as it can, until the server stops taking them (a write
    // blocks for a second) or 256 MiB went out.
    let mut pings = Vec::new();
    for _ in 0..2048 {
        sut::frame(&mut pings, br#"{"id":1,"cmd":"ping"}"#);
    }
    let mut sent = batch.len();
    let mut blocked = false;
    while sent < 256 << 20 {
        match w.write(&pings) {
            Ok(n) => sent += n,
            Err(_) => {
                blocked = true;
                break;
            }
        }
    }
    let peak = sut::rss_kib(pid);
    // Others are served all the while.
    let mut other = server.connect();
    assert_eq!(
        other.call(&json!({"id": 1, "cmd": "compute", "n": 10}))["result"],
        8360
    );
    drop(other);
    eprintln!(
        "[never reads] server RSS at rest {} KiB; after 10,000 unread compute requests {after_10k} KiB; after {} MiB of unread pings {peak} KiB (the server stopped reading: {blocked})",
        base.0,
        sent >> 20
    );
    assert!(
        blocked,
        "the server stops reading a client that never reads"
    );
    assert!(
        peak < base.0 + RSS_SLACK_KIB,
        "RSS {peak} KiB grew more than {RSS_SLACK_KIB} KiB over {} KiB",
        base.0
    );
    drop(stream);
    check_recovered(&server, base, "never reads");
}

sut::io_tests!(
    sigkill_random_workers_under_sustained_load,
    a_stopped_worker_is_killed_at_the_task_timeout_and_replaced,
    clients_that_close_mid_response_leave_nothing_behind,
    a_connection_flood_past_the_limit_spares_open_connections,
    ten_thousand_pipelined_requests_on_one_connection,
    a_client_that_never_reads_cannot_grow_the_server,
);
