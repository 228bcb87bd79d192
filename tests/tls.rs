//! TLS (`--tls-cert`/`--tls-key`) with a certificate generated here by rcgen.

mod common;
mod sut;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sut::{Io, Server, TlsConn};
use threadcenter::protocol::compute;

struct TlsServer {
    server: Server,
    client: std::sync::Arc<rustls::ClientConfig>,
    _dir: tempfile::TempDir,
}

fn start(io: Io, extra: &[&str]) -> TlsServer {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, der) = sut::self_signed(dir.path());
    let mut args = vec![
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    TlsServer {
        server: Server::start_io(io, &args),
        client: sut::tls_client_config(&der),
        _dir: dir,
    }
}

fn requests_over_tls_get_the_same_answers(io: Io) {
    for pool in ["process", "thread"] {
        let t = start(io, &["--workers", "2", "--pool", pool]);
        assert!(
            t.server.ready_line.ends_with(" tls=on"),
            "{}",
            t.server.ready_line
        );
        let mut c = TlsConn::connect(t.server.addr, &t.client);
        for (n, want) in [
            (0u64, 48u64),
            (10, 8360),
            (1000, 933_214_789),
            (500_000, 869_502_129),
        ] {
            let r = c.call(&json!({"id": "u", "cmd": "compute", "n": n}));
            assert_eq!(r, json!({"id": "u", "result": want}), "{pool}");
        }
        assert_eq!(c.call(&json!({"id": 1, "cmd": "ping"}))["pong"], true);
        c.send_raw(b"{\"id\":2,\"cmd\":\"fly\"}");
        assert_eq!(c.recv()["error"]["code"], "UNKNOWN_CMD");
        let s = c.call(&json!({"id": 3, "cmd": "stats"}));
        assert_eq!(s["stats"]["requests"]["compute"], 4, "{s}");
    }
}

fn pipelined_requests_over_tls_are_each_answered_once(io: Io) {
    const N: u64 = 3000;
    let t = start(io, &["--workers", "2"]);
    let mut c = TlsConn::connect(t.server.addr, &t.client);
    let batch = sut::frames((0..N).map(|i| json!({"id": i, "cmd": "compute", "n": i % 500})));
    // Responses flow back while requests still go out: the server must not deadlock
    // on a client that writes a lot before it reads.
    for chunk in batch.chunks(16 * 1024) {
        c.stream.write_all(chunk).unwrap();
    }
    c.stream.flush().unwrap();
    let mut seen = vec![false; N as usize];
    for _ in 0..N {
        let r = c.recv();
        let i = r["id"].as_u64().unwrap();
        assert!(!std::mem::replace(&mut seen[i as usize], true));
        assert_eq!(r["result"], compute(i % 500));
    }
}

fn a_plaintext_client_gets_no_answer_and_is_closed(io: Io) {
    let t = start(io, &["--workers", "1"]);
    let mut c = t.server.connect();
    c.send(&json!({"id": 1, "cmd": "ping"}));
    // The server answers with a TLS alert at most, never a frame, then closes.
    let mut got = Vec::new();
    // A reset is a close too; a read timeout is not: the server held the connection.
    if let Err(e) = c.stream.read_to_end(&mut got) {
        assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "not closed: {e}"
        );
    }
    assert!(
        got.len() < 64 && !got.windows(4).any(|w| w == b"pong"),
        "{got:?}"
    );
    // TLS clients are unaffected.
    let mut ok = TlsConn::connect(t.server.addr, &t.client);
    assert_eq!(ok.call(&json!({"id": 1, "cmd": "ping"}))["pong"], true);
}

fn a_handshake_that_does_not_finish_in_time_is_closed(io: Io) {
    let t = start(io, &["--workers", "1", "--frame-timeout", "300ms"]);
    let started = Instant::now();
    let mut silent = t.server.connect();
    let mut partial = t.server.connect();
    // The first bytes of a ClientHello record, then nothing.
    partial.stream.write_all(&[0x16, 0x03, 0x01, 0x01]).unwrap();
    for c in [&mut silent, &mut partial] {
        // At most a TLS alert, then the end of the stream.
        let mut got = Vec::new();
        c.stream.read_to_end(&mut got).unwrap();
        assert!(got.len() < 64, "{got:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let mut ok = TlsConn::connect(t.server.addr, &t.client);
    let s = ok.call(&json!({"id": 1, "cmd": "stats"}));
    assert_eq!(s["stats"]["connections"]["timed_out"], 2, "{s}");
}

fn sigterm_drains_tls_connections_too(io: Io) {
    let mut t = start(io, &["--workers", "2"]);
    let mut c = TlsConn::connect(t.server.addr, &t.client);
    for i in 0..4 {
        c.send(&json!({"id": i, "cmd": "compute", "n": 20_000_000}));
    }
    // Let the server read them, then ask it to stop.
    assert_eq!(c.call(&json!({"id": "p", "cmd": "ping"}))["pong"], true);
    sut::kill(t.server.pid() as i32, libc::SIGTERM);
    let mut ids: Vec<i64> = (0..4)
        .map(|_| {
            let r: Value = c.recv();
            assert_eq!(r["result"], compute(20_000_000), "{r}");
            r["id"].as_i64().unwrap()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, vec![0, 1, 2, 3]);
    let status = t.server.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", t.server.stderr_tail());
}

#[test]
fn bad_certificate_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = sut::self_signed(dir.path());
    let other = tempfile::tempdir().unwrap();
    let (_, other_key, _) = sut::self_signed(other.path());
    let missing = dir.path().join("missing.pem");
    for (c, k, needle) in [
        (&missing, &key, "cannot read --tls-cert"),
        (&key, &key, "holds no certificate"),
        (&cert, &cert, "no PEM private key"),
        (&cert, &other_key, "does not fit"),
    ] {
        let out = common::threadcenter(&[
            "server",
            "--port",
            "0",
            "--workers",
            "1",
            "--tls-cert",
            c.to_str().unwrap(),
            "--tls-key",
            k.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{needle}: {err}");
    }
    let out = common::threadcenter(&[
        "server",
        "--port",
        "0",
        "--tls-cert",
        cert.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "--tls-cert without --tls-key");
}

fn tls_beyond_loopback_does_not_warn(io: Io) {
    let mut t = start(io, &["--workers", "1", "--host", "0.0.0.0"]);
    // All of its stderr, read to the end once it stopped.
    let (status, err) = t.server.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status:?}: {err}");
    assert!(err.contains("threadcenter server: stopped"), "{err}");
    assert!(!err.contains("WARNING"), "{err}");
}

/// `threadcenter client ARGS...`, bounded in time (unlike `common::client`, the
/// host is the test's to choose).
fn client(args: &[&str]) -> std::process::Output {
    common::threadcenter(&[&["client"], args].concat())
}

fn the_load_client_speaks_tls_with_ca(io: Io) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = sut::self_signed(dir.path());
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let server = Server::start_io(
        io,
        &["--workers", "2", "--tls-cert", cert, "--tls-key", key],
    );
    let port = server.addr.port().to_string();
    for host in ["127.0.0.1", "localhost"] {
        let out = client(&[
            "--host", host, "--port", &port, "--tls", "--ca", cert, "-c", "2", "-n", "20",
            "--size", "1000",
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{host}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("40 ok, 0 failed"), "{text}");
    }
    // Many connections on few event-loop threads, and the open loop, over TLS too:
    // every answer verified.
    let json = dir.path().join("open.json");
    for (args, want) in [
        (
            &["-c", "12", "--threads", "2", "-n", "10", "--size", "1000"][..],
            120,
        ),
        (
            &[
                "--rate",
                "400",
                "-c",
                "4",
                "--threads",
                "2",
                "--pipeline",
                "4",
                "--cmd",
                "ping",
                "-d",
                "1s",
            ][..],
            400,
        ),
    ] {
        let out = client(
            &[
                &["--port", &port, "--tls", "--ca", cert, "--json"][..],
                &[json.to_str().unwrap()],
                args,
            ]
            .concat(),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc =
            threadcenter::client::ClientDocument::parse(&std::fs::read_to_string(&json).unwrap())
                .unwrap();
        assert_eq!(
            (doc.requests.ok, doc.requests.failed),
            (want, 0),
            "{args:?}"
        );
    }
    // Without --ca the system's roots do not know this certificate: one clear error.
    let out = client(&["--port", &port, "--tls", "-n", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--ca"), "{err}");
    // A plaintext client against a TLS server fails, and says so, without hanging.
    let out = client(&["--port", &port, "-n", "1", "--timeout", "5s"]);
    assert_eq!(out.status.code(), Some(1));
    // --ca means nothing without --tls.
    let out = client(&["--port", &port, "--ca", cert]);
    assert_eq!(out.status.code(), Some(2));
    // And a TLS client against a plaintext server: a handshake error, not a hang.
    let plain = Server::start_io(io, &["--workers", "1"]);
    let out = client(&[
        "--port",
        &plain.addr.port().to_string(),
        "--tls",
        "--ca",
        cert,
        "--timeout",
        "5s",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TLS handshake failed"), "{err}");
}

fn a_tls_client_that_never_reads_cannot_grow_the_server(io: Io) {
    let t = start(io, &["--workers", "1"]);
    let pid = t.server.pid();
    let mut other = TlsConn::connect(t.server.addr, &t.client);
    assert_eq!(other.call(&json!({"id": 0, "cmd": "ping"}))["pong"], true);
    let rest = sut::rss_kib(pid);
    let mut c = TlsConn::connect(t.server.addr, &t.client);
    assert_eq!(c.call(&json!({"id": 0, "cmd": "ping"}))["pong"], true);
    c.stream
        .sock
        .set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut pings = Vec::new();
    for _ in 0..2048 {
        sut::frame(&mut pings, br#"{"id":1,"cmd":"ping"}"#);
    }
    // Pings, never reading an answer, until a write blocks for a second or 256 MiB went.
    let (mut sent, mut blocked) = (0usize, false);
    while sent < 256 << 20 {
        match c.stream.write_all(&pings).and_then(|()| c.stream.flush()) {
            Ok(()) => sent += pings.len(),
            Err(_) => {
                blocked = true;
                break;
            }
        }
    }
    let peak = sut::rss_kib(pid);
    eprintln!(
        "[tls never reads] server RSS {rest} KiB at rest, {peak} KiB after {} MiB of unread pings (stopped reading: {blocked})",
        sent >> 20
    );
    assert!(
        blocked,
        "the server stops reading a TLS client that never reads"
    );
    assert!(
        peak < rest + 48 * 1024,
        "RSS {peak} KiB over {rest} KiB at rest"
    );
    // Others are served all the while.
    assert_eq!(
        other.call(&json!({"id": 1, "cmd": "compute", "n": 10}))["result"],
        8360
    );
}

sut::io_tests!(
    requests_over_tls_get_the_same_answers,
    pipelined_requests_over_tls_are_each_answered_once,
    a_plaintext_client_gets_no_answer_and_is_closed,
    a_handshake_that_does_not_finish_in_time_is_closed,
    sigterm_drains_tls_connections_too,
    tls_beyond_loopback_does_not_warn,
    the_load_client_speaks_tls_with_ca,
    a_tls_client_that_never_reads_cannot_grow_the_server,
);
