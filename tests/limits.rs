//! Each limit of docs/limits.md, seen from a client: what it answers and what it spares.

mod common;
mod sut;

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sut::{Conn, Io, Server};

fn stats(server: &Server) -> Value {
    server.connect().call(&json!({"id": "s", "cmd": "stats"}))["stats"].clone()
}

fn connections_past_max_connections_get_overloaded_and_are_closed(io: Io) {
    let server = Server::start_io(io, &["--workers", "1", "--max-connections", "3"]);
    let mut open: Vec<Conn> = (0..3).map(|_| server.connect()).collect();
    for (i, c) in open.iter_mut().enumerate() {
        assert_eq!(c.call(&json!({"id": i, "cmd": "ping"}))["pong"], true);
    }
    for _ in 0..5 {
        let mut extra = server.connect();
        let r = extra.recv();
        assert_eq!(r["id"], Value::Null, "{r}");
        assert_eq!(r["error"]["code"], "OVERLOADED", "{r}");
        let msg = r["error"]["message"].as_str().unwrap();
        assert!(msg.contains("--max-connections"), "{msg}");
        assert!(extra.at_eof(), "a refused connection is closed");
    }
    // The open ones never noticed.
    for (i, c) in open.iter_mut().enumerate() {
        assert_eq!(
            c.call(&json!({"id": i, "cmd": "compute", "n": 10}))["result"],
            8360
        );
    }
    // Once one leaves, a newcomer gets its place.
    open.pop();
    sut::wait_until(Duration::from_secs(10), || {
        let mut c = server.connect();
        c.send(&json!({"id": "new", "cmd": "stats"}));
        let r = c.recv();
        r.get("stats")
            .is_some_and(|s| s["connections"]["refused"].as_u64() >= Some(5))
    });
}

fn when_full_reject_answers_overloaded_at_once(io: Io) {
    for pool in ["process", "thread"] {
        let server = Server::start_io(
            io,
            &[
                "--workers",
                "1",
                "--pool",
                pool,
                "--queue-capacity",
                "2",
                "--when-full",
                "reject",
            ],
        );
        let mut c = server.connect();
        let mut batch = Vec::new();
        sut::frame(&mut batch, br#"{"id":"slow","cmd":"compute","n":50000000}"#);
        batch.extend(sut::frames(
            (0..7).map(|i| json!({"id": i, "cmd": "compute", "n": 10})),
        ));
        let sent = Instant::now();
        c.stream.write_all(&batch).unwrap();
        let mut at = Vec::new();
        let answers: Vec<Value> = (0..8)
            .map(|_| {
                let r = c.recv();
                at.push(sent.elapsed());
                r
            })
            .collect();
        let overloaded: Vec<&Value> = answers
            .iter()
            .filter(|a| a["error"]["code"] == "OVERLOADED")
            .collect();
        // One runs and two wait in the queue; the other five are refused (six, if the
        // thread pool's worker had not yet taken the first task off the queue).
        assert!((5..=6).contains(&overloaded.len()), "{pool}: {answers:?}");
        if pool == "process" {
            assert_eq!(overloaded.len(), 5, "{answers:?}");
        }
        assert!(overloaded[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--queue-capacity"));
        // Refusals come at once, before the slow request's answer.
        let slow_at = answers.iter().position(|a| a["id"] == "slow").unwrap();
        assert_eq!(slow_at, overloaded.len(), "{pool}: {answers:?}");
        eprintln!(
            "[when-full reject, {pool}] {} OVERLOADED, the last after {:?}; the running request answered after {:?}",
            overloaded.len(),
            at[slow_at - 1],
            at[slow_at]
        );
        let mut ids: Vec<String> = answers.iter().map(|a| a["id"].to_string()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 8, "each request answered exactly once");
        assert_eq!(
            c.call(&json!({"id": "after", "cmd": "compute", "n": 10}))["result"],
            8360
        );
    }
}

fn a_task_past_the_task_timeout_is_answered_worker_failed(io: Io) {
    for pool in ["process", "thread"] {
        let server = Server::start_io(
            io,
            &["--workers", "1", "--pool", pool, "--task-timeout", "300ms"],
        );
        let before = server.worker_pids();
        let mut c = server.connect();
        let started = Instant::now();
        // Far longer than 300 ms in any build.
        c.send(&json!({"id": "huge", "cmd": "compute", "n": 1_000_000_000}));
        c.send(&json!({"id": "next", "cmd": "compute", "n": 1000}));
        let a = c.recv();
        assert_eq!(a["id"], "huge", "{pool}: {a}");
        assert_eq!(a["error"]["code"], "WORKER_FAILED", "{pool}: {a}");
        let msg = a["error"]["message"].as_str().unwrap();
        assert!(msg.contains("--task-timeout"), "{msg}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{pool}: answered after {:?}",
            started.elapsed()
        );
        eprintln!(
            "[task-timeout 300ms, {pool}] n=10^9 answered WORKER_FAILED after {:?}",
            started.elapsed()
        );
        // The task queued behind it is served by the replacement.
        let b = c.recv();
        assert_eq!(b, json!({"id": "next", "result": 933_214_789}), "{pool}");
        let workers = stats(&server)["worker_stats"].clone();
        if pool == "process" {
            assert_eq!(workers[0]["restarts"], 1, "{workers}");
            assert_ne!(workers[0]["pid"], before[0]);
            sut::wait_until(Duration::from_secs(5), || !common::alive(before[0]));
        } else {
            assert_eq!(workers[0]["tasks"], 2, "{workers}");
        }
    }
}

fn a_frame_that_does_not_arrive_in_time_closes_the_connection(io: Io) {
    let server = Server::start_io(io, &["--workers", "1", "--frame-timeout", "300ms"]);
    let mut idle = server.connect();
    // Half a header, then nothing.
    let mut half = server.connect();
    half.stream.write_all(&[0, 0]).unwrap();
    // A whole frame, trickled a byte every 50 ms: still alive, but far too slow.
    let mut trickle = server.connect();
    let mut wire = Vec::new();
    sut::frame(
        &mut wire,
        br#"{"id":"slow","cmd":"ping","pad":"xxxxxxxxxxxxxxxx"}"#,
    );
    let started = Instant::now();
    let mut closed_after = None;
    for b in &wire {
        if trickle.stream.write_all(&[*b]).is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        // Not synchronisation: the pause is what makes this client slow (a frame of
        // ~60 bytes over ~3 s, ten times the 300 ms allowed).
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        closed_after.is_some() || trickle.at_eof(),
        "trickler closed"
    );
    assert!(half.at_eof(), "half a header then silence: closed");
    eprintln!(
        "[frame-timeout 300ms] a frame trickled at a byte per 50 ms: closed after {:?}; half a header then silence: closed (checked at {:?})",
        closed_after,
        started.elapsed()
    );
    // Idle between frames is not timed; a prompt client is unaffected.
    assert_eq!(idle.call(&json!({"id": 1, "cmd": "ping"}))["pong"], true);
    assert_eq!(stats(&server)["connections"]["timed_out"], 2);
}

fn binding_beyond_loopback_without_tls_warns(io: Io) {
    let server = Server::start_io(io, &["--workers", "1", "--host", "0.0.0.0"]);
    sut::wait_until(Duration::from_secs(5), || {
        server.stderr_tail().contains("WARNING")
    });
    let err = server.stderr_tail();
    assert!(
        err.contains("not a loopback address") && err.contains("--tls-cert"),
        "{err}"
    );
    // On loopback: nothing said. All of its stderr, read to the end once it stopped.
    let mut quiet = Server::start_io(io, &["--workers", "1"]);
    let (status, err) = quiet.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status:?}: {err}");
    assert!(err.contains("threadcenter server: stopped"), "{err}");
    assert!(!err.contains("WARNING"), "{err}");
}

/// A full queue under `--when-full wait` pauses only the connection that met it: the
/// others, on the same event loop too, are served meanwhile, and the paused request
/// is run once there is room.
fn when_full_wait_pauses_only_its_connection(io: Io) {
    let server = Server::start_io(
        io,
        &[
            "--workers",
            "1",
            "--queue-capacity",
            "1",
            "--when-full",
            "wait",
            "--io-threads",
            "1",
        ],
    );
    // One on the (stopped) worker, one in the queue, the third waits for room.
    let (stopped, mut c) = computes_on_a_stopped_worker(&server, 3);
    sut::wait_until(Duration::from_secs(10), || {
        stats(&server)["requests"]["compute"] == 3
    });
    assert_eq!(stats(&server)["queue_depth"], 1);
    let mut other = server.connect();
    assert_eq!(other.call(&json!({"id": "p", "cmd": "ping"}))["pong"], true);
    drop(stopped); // SIGCONT
    let mut ids: Vec<u64> = (0..3)
        .map(|_| {
            let r = c.recv();
            assert_eq!(r["result"], 933_214_789, "{r}");
            r["id"].as_u64().unwrap()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, [0, 1, 2]);
}

/// Stops the server's only worker (SIGCONT when the guard drops) and sends `n` computes
/// with ids 0..n on a new connection.
fn computes_on_a_stopped_worker(server: &Server, n: u64) -> (sut::Stopped, sut::Conn) {
    let worker = server.worker_pids()[0];
    let stopped = sut::Stopped(worker);
    sut::kill(worker, libc::SIGSTOP);
    let mut c = server.connect();
    for i in 0..n {
        c.send(&json!({"id": i, "cmd": "compute", "n": 1000}));
    }
    (stopped, c)
}

/// `--max-in-flight`: a connection with that many requests in the pool is not read
/// until answers go out; other connections are served meanwhile.
fn max_in_flight_pauses_reading_a_connection(io: Io) {
    let server = Server::start_io(
        io,
        &[
            "--workers",
            "1",
            "--max-in-flight",
            "2",
            "--io-threads",
            "1",
        ],
    );
    let (stopped, mut c) = computes_on_a_stopped_worker(&server, 5);
    sut::wait_until(Duration::from_secs(10), || {
        stats(&server)["requests"]["compute"] == 2
    });
    // A window in which a reader that did not pause would read the other three.
    std::thread::sleep(Duration::from_millis(300));
    let s = stats(&server);
    assert_eq!(s["requests"]["compute"], 2, "{s}");
    let mut other = server.connect();
    assert_eq!(other.call(&json!({"id": "p", "cmd": "ping"}))["pong"], true);
    drop(stopped); // SIGCONT
    let mut ids: Vec<u64> = (0..5).map(|_| c.recv()["id"].as_u64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, [0, 1, 2, 3, 4]);
}

/// The soft open-file limit is raised to the hard one, and the default
/// `--max-connections` follows from it (256 kept, or a quarter of a small limit; 2
/// descriptors a connection with threads, 1 with events).
fn the_default_max_connections_follows_the_open_file_limit(io: Io) {
    let server = Server::start_io_with_nofile(io, &["--workers", "1"], (100, 200));
    let s = stats(&server);
    let want = match io {
        Io::Threads => 75,
        Io::Events => 150,
    };
    assert_eq!(s["connections"]["max"], want, "{s}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>()[3..5],
        ["200", "200"],
        "{line}"
    );
}

/// Out of descriptors (a 64-descriptor limit, --max-connections far above it): new
/// connections are refused, OVERLOADED or closed, and the open ones are still served;
/// once some leave, newcomers are served again.
fn running_out_of_descriptors_refuses_new_connections_only(io: Io) {
    let server = Server::start_io_with_nofile(
        io,
        &["--workers", "1", "--max-connections", "1000"],
        (64, 64),
    );
    let (mut held, mut refused, mut overloaded) = (Vec::new(), 0, 0);
    for i in 0..120u64 {
        let mut c = server.connect();
        c.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = c
            .stream
            .write_all(&sut::frames([json!({"id": i, "cmd": "ping"})]));
        match read_answer(&mut c) {
            Some(r) if r["pong"] == true => held.push(c),
            Some(r) => {
                assert_eq!(r["error"]["code"], "OVERLOADED", "{r}");
                assert!(c.at_eof(), "a refused connection is closed");
                refused += 1;
                overloaded += 1;
            }
            // Closed without a word: refused as well.
            None => refused += 1,
        }
    }
    eprintln!(
        "[nofile 64, --io {}] {} connections served, {refused} refused ({overloaded} of them answered OVERLOADED)",
        io.flag(),
        held.len()
    );
    assert!(held.len() >= 10, "only {} served", held.len());
    assert!(refused > 0, "the limit was never reached");
    for (i, c) in held.iter_mut().enumerate() {
        assert_eq!(
            c.call(&json!({"id": i, "cmd": "compute", "n": 10}))["result"],
            8360
        );
    }
    held.truncate(held.len() / 2);
    sut::wait_until(Duration::from_secs(10), || {
        let mut c = server.connect();
        let _ = c
            .stream
            .write_all(&sut::frames([json!({"id": "n", "cmd": "ping"})]));
        read_answer(&mut c).is_some_and(|r| r["pong"] == true)
    });
    let s = stats(&server);
    assert!(s["connections"]["refused"].as_u64() >= Some(1), "{s}");
}

/// The next answer on `c`, or `None` if the server closed the connection first (an
/// end of stream or a reset). A connection left unanswered and open (a read timeout)
/// fails the test.
fn read_answer(c: &mut Conn) -> Option<Value> {
    use std::io::{ErrorKind, Read};
    let mut header = [0u8; 4];
    let got = c.stream.read_exact(&mut header).and_then(|()| {
        let mut payload = vec![0; u32::from_be_bytes(header) as usize];
        c.stream.read_exact(&mut payload).map(|()| payload)
    });
    match got {
        Ok(payload) => Some(serde_json::from_slice(&payload).expect("an answer is JSON")),
        Err(e) => {
            assert!(
                !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "neither answered nor closed: {e}"
            );
            None
        }
    }
}

sut::io_tests!(
    connections_past_max_connections_get_overloaded_and_are_closed,
    when_full_reject_answers_overloaded_at_once,
    a_task_past_the_task_timeout_is_answered_worker_failed,
    a_frame_that_does_not_arrive_in_time_closes_the_connection,
    binding_beyond_loopback_without_tls_warns,
    when_full_wait_pauses_only_its_connection,
    max_in_flight_pauses_reading_a_connection,
    the_default_max_connections_follows_the_open_file_limit,
    running_out_of_descriptors_refuses_new_connections_only,
);
