//! Integration tests: the real `threadcenter server` binary over loopback sockets.

mod common;
mod sut;

use std::io::Write;
use std::time::{Duration, Instant};

use common::alive;
use serde_json::{json, Value};
use sut::{Conn, Io, Server};

fn readiness_line_names_the_bound_address(io: Io) {
    let server = Server::start_io(io, &["--workers", "1"]);
    assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
    assert_ne!(server.addr.port(), 0);
    assert!(server
        .ready_line
        .starts_with("threadcenter listening addr=127.0.0.1:"));
    assert!(
        server.ready_line.contains(" workers=1 pool=process"),
        "{}",
        server.ready_line
    );
}

fn compute_vectors_and_ids_round_trip_verbatim(io: Io) {
    for pool in ["process", "thread"] {
        let server = Server::start_io(io, &["--workers", "2", "--pool", pool]);
        let mut c = server.connect();
        for (n, want) in [
            (0u64, 48u64),
            (1, 48),
            (2, 113),
            (3, 226),
            (10, 8360),
            (100, 401_619_087),
            (1000, 933_214_789),
            (500_000, 869_502_129),
        ] {
            let r = c.call(&json!({"id": "6f1c2a9e-uuid", "cmd": "compute", "n": n}));
            assert_eq!(
                r,
                json!({"id": "6f1c2a9e-uuid", "result": want}),
                "{pool} n={n}"
            );
        }
        // Integers stay integers, even past u64; strings with escapes come back byte for byte.
        c.send_raw(br#"{"id":123456789012345678901234567890,"cmd":"ping"}"#);
        assert_eq!(
            c.recv_raw(),
            br#"{"id":123456789012345678901234567890,"ok":true,"pong":true}"#
        );
        c.send_raw(br#"{"id":"a\"b\u00e9","cmd":"compute","n":10}"#);
        assert_eq!(c.recv_raw(), br#"{"id":"a\"b\u00e9","result":8360}"#);
        assert_eq!(
            c.call(&json!({"id": -7, "cmd": "ping"})),
            json!({"id": -7, "ok": true, "pong": true})
        );
    }
}

#[test]
#[ignore = "needs python3: apt-get install python3"]
fn a_client_written_to_the_seed_readme_works_unchanged() {
    common::require_peer(
        common::runs("python3", "--version"),
        "python3",
        "apt-get install python3",
    );
    for io in [Io::Threads, Io::Events] {
        seed_client_against(io);
    }
}

fn seed_client_against(io: Io) {
    let server = Server::start_io(io, &["--workers", "2"]);
    let script = r#"
import json, socket, struct, sys, uuid
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def recv_exact(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise SystemExit("closed")
        b += c
    return b
for n in (10, 500000):
    rid = str(uuid.uuid4())
    msg = json.dumps({"id": rid, "cmd": "compute", "n": n}).encode()
    s.sendall(struct.pack(">I", len(msg)) + msg)
    (length,) = struct.unpack(">I", recv_exact(4))
    resp = json.loads(recv_exact(length))
    assert resp["id"] == rid, resp
    print(resp["result"])
"#;
    let mut python = std::process::Command::new("python3");
    python.args(["-c", script, &server.addr.port().to_string()]);
    let out = common::bounded(python);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "8360\n869502129\n");
}

fn many_concurrent_connections_all_get_right_answers(io: Io) {
    let server = Server::start_io(io, &["--workers", "2"]);
    let threads: Vec<_> = (0..64)
        .map(|t| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let mut c = Conn::connect(addr);
                for i in 0..20u64 {
                    let n = (t * 37 + i * 101) % 5000;
                    let r = c.call(&json!({"id": i, "cmd": "compute", "n": n}));
                    assert_eq!(
                        r,
                        json!({"id": i, "result": threadcenter::protocol::compute(n)})
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = server.connect().call(&json!({"id": 0, "cmd": "stats"}));
    assert_eq!(stats["stats"]["requests"]["compute"], 64 * 20);
    assert_eq!(stats["stats"]["connections"]["total"], 65);
}

fn pipelined_fast_requests_overtake_a_slow_one(io: Io) {
    for pool in ["process", "thread"] {
        let server = Server::start_io(io, &["--workers", "2", "--pool", pool]);
        let mut c = server.connect();
        let mut batch = sut::frames(
            std::iter::once(json!({"id": "slow", "cmd": "compute", "n": 50_000_000}))
                .chain((0..20).map(|i| json!({"id": i, "cmd": "compute", "n": 100}))),
        );
        sut::frame(&mut batch, br#"{"id":"p","cmd":"ping"}"#);
        c.stream.write_all(&batch).unwrap();
        let answers: Vec<Value> = (0..22).map(|_| c.recv()).collect();
        let slow_at = answers.iter().position(|a| a["id"] == "slow").unwrap();
        assert_eq!(
            slow_at, 21,
            "{pool}: the slow request should come last: {answers:?}"
        );
        let mut ids: Vec<String> = answers.iter().map(|a| a["id"].to_string()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 22, "every request answered exactly once");
    }
}

/// Each bad input, the answer protocol.md gives it, and whether the connection lives.
fn bad_input_gets_the_documented_error_and_spares_the_connection(io: Io) {
    let server = Server::start_io(
        io,
        &[
            "--workers",
            "1",
            "--max-frame",
            "4096",
            "--max-n",
            "1000000",
        ],
    );
    let mut c = server.connect();
    let mut neighbour = server.connect();
    let cases: &[(&[u8], Value, &str, &str)] = &[
        (b"", Value::Null, "BAD_REQUEST", "empty frame"),
        (
            b"{\"id\":1,\"cmd\":\"ping\xc3\x28\"}",
            Value::Null,
            "BAD_REQUEST",
            "UTF-8",
        ),
        (b"{\"id\":1,\"cmd\":", Value::Null, "BAD_REQUEST", "JSON"),
        (b"[1,2,3]", Value::Null, "BAD_REQUEST", "not an object"),
        (
            b"{\"cmd\":\"ping\"}",
            Value::Null,
            "BAD_REQUEST",
            "missing field `id`",
        ),
        (
            b"{\"id\":[1],\"cmd\":\"ping\"}",
            Value::Null,
            "BAD_REQUEST",
            "`id` must be",
        ),
        (
            b"{\"id\":2}",
            json!(2),
            "BAD_REQUEST",
            "missing field `cmd`",
        ),
        (
            b"{\"id\":2,\"cmd\":true}",
            json!(2),
            "BAD_REQUEST",
            "`cmd` must be a string",
        ),
        (
            b"{\"id\":3,\"cmd\":\"compute\"}",
            json!(3),
            "BAD_REQUEST",
            "missing field `n`",
        ),
        (
            b"{\"id\":4,\"cmd\":\"compute\",\"n\":-5}",
            json!(4),
            "BAD_REQUEST",
            ">= 0",
        ),
        (
            b"{\"id\":5,\"cmd\":\"compute\",\"n\":2.5}",
            json!(5),
            "BAD_REQUEST",
            "integer",
        ),
        (
            b"{\"id\":6,\"cmd\":\"compute\",\"n\":\"100\"}",
            json!(6),
            "BAD_REQUEST",
            "string",
        ),
        (
            b"{\"id\":7,\"cmd\":\"compute\",\"n\":1000001}",
            json!(7),
            "BAD_REQUEST",
            "--max-n",
        ),
        (
            b"{\"id\":8,\"cmd\":\"compute\",\"n\":123456789012345678901234567890}",
            json!(8),
            "BAD_REQUEST",
            "out of range",
        ),
        (
            b"{\"id\":9,\"cmd\":\"launch\"}",
            json!(9),
            "UNKNOWN_CMD",
            "unknown cmd",
        ),
    ];
    for (payload, id, code, needle) in cases {
        c.send_raw(payload);
        let r = c.recv();
        assert_eq!(r["id"], *id, "{}", String::from_utf8_lossy(payload));
        assert_eq!(r["error"]["code"], *code, "{r}");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        // The connection stays open and useful.
        assert_eq!(
            c.call(&json!({"id": "ok", "cmd": "compute", "n": 10}))["result"],
            8360
        );
    }

    // A declared length over --max-frame: FRAME_TOO_LARGE, then the connection closes.
    c.stream.write_all(&5000u32.to_be_bytes()).unwrap();
    let r = c.recv();
    assert_eq!(r["error"]["code"], "FRAME_TOO_LARGE", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("4096"));
    assert!(
        c.at_eof(),
        "the server closes the connection after FRAME_TOO_LARGE"
    );

    // A little-endian length prefix (a classic framing bug) is named as such.
    let mut c = server.connect();
    let payload = br#"{"id":1,"cmd":"ping"}"#;
    c.stream
        .write_all(&(payload.len() as u32).to_le_bytes())
        .unwrap();
    c.stream.write_all(payload).unwrap();
    let r = c.recv();
    assert_eq!(r["error"]["code"], "FRAME_TOO_LARGE", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("must be big-endian"),
        "{r}"
    );

    // None of it touched the neighbour.
    assert_eq!(
        neighbour.call(&json!({"id": 1, "cmd": "ping"}))["pong"],
        true
    );
}

fn clients_that_leave_mid_frame_or_mid_request_do_not_hurt_the_server(io: Io) {
    let server = Server::start_io(io, &["--workers", "1"]);
    for _ in 0..5 {
        // Half a header, half a payload, then gone.
        let mut c = server.connect();
        c.stream.write_all(&[0, 0]).unwrap();
        drop(c);
        let mut c = server.connect();
        c.stream.write_all(&100u32.to_be_bytes()).unwrap();
        c.stream.write_all(b"{\"id\":").unwrap();
        drop(c);
        // A request in flight, then gone before the answer.
        let mut c = server.connect();
        c.send(&json!({"id": 1, "cmd": "compute", "n": 20_000_000}));
        drop(c);
    }
    let mut c = server.connect();
    assert_eq!(
        c.call(&json!({"id": 1, "cmd": "compute", "n": 1000}))["result"],
        933_214_789
    );
    // All those connections are eventually closed on the server's side.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = c.call(&json!({"id": 2, "cmd": "stats"}))["stats"]["connections"]["open"]
            .as_u64()
            .unwrap();
        if open == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{open} connections still open");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn a_worker_killed_mid_task_fails_only_its_request_and_is_replaced(io: Io) {
    // A long --task-timeout: however slow a loaded machine makes them, only the kill
    // fails a task here.
    let server = Server::start_io(io, &["--workers", "2", "--task-timeout", "10m"]);
    let mut c = server.connect();
    let before = c.call(&json!({"id": "s", "cmd": "stats"}))["stats"]["worker_stats"].clone();
    let pids: Vec<i32> = before
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["pid"].as_i64().unwrap() as i32)
        .collect();
    // Both workers are stopped, so each still holds its long task when one is killed,
    // however fast compute runs: a task goes to an idle worker while there is one, and
    // the small ones queue behind.
    let stopped: Vec<sut::Stopped> = pids
        .iter()
        .map(|&p| {
            sut::kill(p, libc::SIGSTOP);
            sut::Stopped(p)
        })
        .collect();
    c.send(&json!({"id": "a", "cmd": "compute", "n": 10_000_000}));
    c.send(&json!({"id": "b", "cmd": "compute", "n": 10_000_000}));
    for i in 0..6 {
        c.send(&json!({"id": i, "cmd": "compute", "n": 1000}));
    }
    sut::wait_until(Duration::from_secs(10), || {
        server.connect().call(&json!({"id": "s", "cmd": "stats"}))["stats"]["requests"]["compute"]
            == 8
    });
    sut::kill(pids[0], libc::SIGKILL);
    drop(stopped); // SIGCONT to the other worker.
    let answers: Vec<Value> = (0..8).map(|_| c.recv()).collect();
    let failed: Vec<&Value> = answers
        .iter()
        .filter(|a| a.get("error").is_some())
        .collect();
    assert_eq!(failed.len(), 1, "exactly one request fails: {answers:?}");
    assert_eq!(failed[0]["error"]["code"], "WORKER_FAILED");
    assert!(["a", "b"].contains(&failed[0]["id"].as_str().unwrap()));
    let msg = failed[0]["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&pids[0].to_string()) && msg.contains("signal 9"),
        "{msg}"
    );
    for a in answers.iter().filter(|a| a.get("error").is_none()) {
        let want = if a["id"].is_string() {
            583_064_283
        } else {
            933_214_789
        };
        assert_eq!(a["result"], want, "{a}");
    }
    let after = c.call(&json!({"id": "s", "cmd": "stats"}))["stats"]["worker_stats"].clone();
    assert_eq!(after[0]["restarts"], 1, "{after}");
    assert_ne!(after[0]["pid"], before[0]["pid"]);
    assert_eq!(
        c.call(&json!({"id": "z", "cmd": "compute", "n": 10}))["result"],
        8360
    );
}

fn sigterm_answers_every_request_in_flight_then_exits_cleanly(io: Io) {
    for pool in ["process", "thread"] {
        // Three tasks of ~0.3 s (debug build) per worker: still in flight when the signal
        // lands. A loaded machine may stretch them past the default --task-timeout of
        // 30 s, which would fail them: these tests are about the drain, not that limit.
        let mut server = Server::start_io(
            io,
            &["--workers", "2", "--pool", pool, "--task-timeout", "10m"],
        );
        let mut c = server.connect();
        let workers = server.worker_pids();
        for i in 0..6 {
            c.send(&json!({"id": i, "cmd": "compute", "n": 10_000_000}));
        }
        // Make sure the server has read them all before the signal.
        sut::wait_until(Duration::from_secs(10), || {
            server.connect().call(&json!({"id": "s", "cmd": "stats"}))["stats"]["requests"]
                ["compute"]
                == 6
        });
        sut::kill(server.pid() as i32, libc::SIGTERM);
        let mut got: Vec<i64> = (0..6)
            .map(|_| {
                let r = c.recv();
                assert_eq!(r["result"], 583_064_283, "{r}");
                r["id"].as_i64().unwrap()
            })
            .collect();
        got.sort();
        assert_eq!(got, vec![0, 1, 2, 3, 4, 5]);
        assert!(c.at_eof(), "closed once drained");
        let status = server.wait(Duration::from_secs(10));
        assert_eq!(status.code(), Some(0), "{pool}: {}", server.stderr_tail());
        for pid in workers {
            sut::wait_until(Duration::from_secs(5), || !alive(pid));
        }
    }
}

fn requests_sent_during_the_drain_get_shutting_down(io: Io) {
    // A long --task-timeout: the long request is stopped, then slow on a loaded machine.
    let server = Server::start_io(io, &["--workers", "1", "--task-timeout", "10m"]);
    // The one worker is stopped before the long request is sent, so that request is
    // still in flight when the late one arrives, however fast compute runs; it is
    // continued once the late one has been refused.
    let worker = server.worker_pids()[0];
    sut::kill(worker, libc::SIGSTOP);
    let stopped = sut::Stopped(worker);
    let mut c = server.connect();
    c.send(&json!({"id": "long", "cmd": "compute", "n": 10_000_000}));
    sut::wait_until(Duration::from_secs(5), || {
        server.connect().call(&json!({"id": "s", "cmd": "stats"}))["stats"]["requests"]["compute"]
            == 1
    });
    sut::kill(server.pid() as i32, libc::SIGTERM);
    // The server prints this once its accept loop has stopped, after it set the flag
    // every connection checks before taking a request.
    server.wait_for_stderr("shutting down; draining", Duration::from_secs(10));
    c.send(&json!({"id": "late", "cmd": "compute", "n": 10}));
    let late = c.recv();
    assert_eq!(late["id"], "late", "{late}");
    assert_eq!(late["error"]["code"], "SHUTTING_DOWN", "{late}");
    drop(stopped); // SIGCONT: the worker finishes the long request, the drain ends.
    let long = c.recv();
    assert_eq!(
        (&long["id"], &long["result"]),
        (&json!("long"), &json!(583_064_283))
    );
}

fn workers_die_with_a_killed_server(io: Io) {
    let mut server = Server::start_io(io, &["--workers", "2"]);
    let workers = server.worker_pids();
    let mut c = server.connect();
    c.send(&json!({"id": 1, "cmd": "compute", "n": 1_000_000_000}));
    // A worker is busy with it when the server dies.
    sut::wait_until(Duration::from_secs(10), || {
        server.connect().call(&json!({"id": "s", "cmd": "stats"}))["stats"]["in_flight"] == 1
    });
    sut::kill(server.pid() as i32, libc::SIGKILL);
    server.wait(Duration::from_secs(5));
    for pid in workers {
        sut::wait_until(Duration::from_secs(5), || !alive(pid));
    }
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = std::process::Command::new(sut::BIN)
        .args(["server", "--port", &port, "--workers", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "no readiness line");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Address already in use") && err.contains("--port"),
        "{err}"
    );
}

sut::io_tests!(
    readiness_line_names_the_bound_address,
    compute_vectors_and_ids_round_trip_verbatim,
    many_concurrent_connections_all_get_right_answers,
    pipelined_fast_requests_overtake_a_slow_one,
    bad_input_gets_the_documented_error_and_spares_the_connection,
    clients_that_leave_mid_frame_or_mid_request_do_not_hurt_the_server,
    a_worker_killed_mid_task_fails_only_its_request_and_is_replaced,
    sigterm_answers_every_request_in_flight_then_exits_cleanly,
    requests_sent_during_the_drain_get_shutting_down,
    workers_die_with_a_killed_server,
);

/// A worker process writes each batch of results in one write, so that its server's
/// supervisor wakes once per batch. Its stdout here is a datagram socket, which keeps
/// each write whole as one datagram: one task in, one 32-byte record out, although the
/// record is full of 0x0a bytes (at which a line-buffered stdout splits a write).
#[test]
fn a_worker_writes_its_results_whole() {
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixDatagram;
    use std::process::{Command, Stdio};
    let (results, theirs) = UnixDatagram::pair().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_threadcenter"));
    cmd.arg("worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::from(OwnedFd::from(theirs)));
    let mut worker = common::ChildGuard::spawn(cmd).unwrap();
    let mut tasks = worker.child_mut().stdin.take().unwrap();
    results
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    for round in 0..5u64 {
        let seq = u64::from_le_bytes([0x0a; 8]) + (round << 8);
        let mut task = seq.to_le_bytes().to_vec();
        task.extend_from_slice(&10u64.to_le_bytes());
        tasks.write_all(&task).unwrap();
        let mut record = [0u8; 64];
        let got = results.recv(&mut record).unwrap();
        assert_eq!(got, 32, "round {round}: one write of {:?}", &record[..got]);
        assert_eq!(record[..8], seq.to_le_bytes());
        assert_eq!(u64::from_le_bytes(record[8..16].try_into().unwrap()), 8360);
    }
    drop(tasks);
    let status = worker
        .wait_timeout(Duration::from_secs(10))
        .expect("the worker exits when its stdin closes");
    assert!(status.success(), "{status:?}");
}
