//! Shared test support: a guard that kills and reaps spawned processes, a bounded runner
//! for the real binary (and its client with a `--json` document read back), small
//! protocol servers with scripted misbehaviour, (`java`) Java HdrHistogram as a
//! reference, and [`require_peer`] for the tests that need an outside program.

#![allow(dead_code)] // each test crate uses a different part of this module

pub mod java;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use threadcenter::client::ClientDocument;
use threadcenter::protocol::message::{encode_pong, encode_result};
use threadcenter::protocol::{compute, frame, parse_request, Command as Cmd, FrameReader};

/// The longest any spawned process may run before the test fails.
pub const PROCESS_LIMIT: Duration = Duration::from_secs(60);

/// Owns a child process and kills it (SIGKILL) and reaps it on drop, unless it was
/// already reaped.
pub struct ChildGuard {
    child: Child,
    reaped: bool,
    /// Started in a process group of its own: drop kills that whole group.
    own_group: bool,
}

impl ChildGuard {
    /// Starts `cmd` in its own process group. On drop, SIGKILLs that group (the child and
    /// anything it forked, such as a Python pool's workers: only processes this test
    /// started).
    pub fn spawn(mut cmd: Command) -> io::Result<ChildGuard> {
        cmd.process_group(0);
        Ok(ChildGuard {
            child: cmd.spawn()?,
            reaped: false,
            own_group: true,
        })
    }

    /// Starts `cmd` in the test's own process group, so that an interrupted `cargo test`
    /// interrupts it too; on drop, SIGKILLs the child alone.
    pub fn spawn_in_our_group(mut cmd: Command) -> io::Result<ChildGuard> {
        Ok(ChildGuard {
            child: cmd.spawn()?,
            reaped: false,
            own_group: false,
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status if the child has exited (reaping it), without blocking.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().expect("try_wait on our own child");
        if status.is_some() {
            self.reaped = true;
        }
        status
    }

    /// Waits up to `limit` for the child to exit.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        if self.own_group {
            // The group id is the child's pid: it cannot be reused while the child is
            // unreaped.
            let pgid = self.child.id() as libc::pid_t;
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        } else {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// True if `program ARG` starts and exits with success (`--version` and the like).
pub fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Fails the test unless its outside peer (python3, Java HdrHistogram, Prometheus) is
/// there. Such tests are `#[ignore]`d, so a plain `cargo test` lists them as ignored
/// rather than passing them unrun; `cargo test -- --ignored` (what .ci/run does after
/// installing the peers) runs them, and there a missing peer is a failure, not a skip.
pub fn require_peer(present: bool, peer: &str, install: &str) {
    assert!(
        present,
        "this test needs {peer}, which is not installed ({install}); \
         .ci/run installs it before running the ignored tests"
    );
}

/// Runs the real `threadcenter` binary with `args`, bounded by [`PROCESS_LIMIT`].
pub fn threadcenter(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_threadcenter"));
    cmd.args(args);
    bounded(cmd)
}

/// Runs `cmd` to its end with stdin closed and its output captured, under a
/// [`ChildGuard`]; fails the test if it is still running after [`PROCESS_LIMIT`].
pub fn bounded(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("{cmd:?}");
    let mut guard = ChildGuard::spawn(cmd).unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let out = drain(guard.child_mut().stdout.take().unwrap());
    let err = drain(guard.child_mut().stderr.take().unwrap());
    let status = guard.wait_timeout(PROCESS_LIMIT);
    let Some(status) = status else {
        drop(guard); // kills it
        panic!(
            "{what} still running after {PROCESS_LIMIT:?}; stderr: {}",
            String::from_utf8_lossy(&err.join().unwrap())
        );
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// `threadcenter client --host 127.0.0.1 --port PORT ARGS...`.
pub fn client(port: u16, args: &[&str]) -> Output {
    let port = port.to_string();
    let mut full = vec!["client", "--host", "127.0.0.1", "--port", &port];
    full.extend_from_slice(args);
    threadcenter(&full)
}

/// A process's exit status, stdout and stderr, for an assertion's message.
pub fn explain(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs the client against `port` with `args` plus `--json DIR/NAME.json`, and reads the
/// document back (panicking with the client's output if it wrote none).
pub fn client_json(port: u16, args: &[&str], dir: &Path, name: &str) -> (Output, ClientDocument) {
    let json = dir.join(format!("{name}.json"));
    let mut full = args.to_vec();
    full.extend_from_slice(&["--json", json.to_str().unwrap()]);
    let out = client(port, &full);
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("no JSON document ({e}):\n{}", explain(&out)));
    (out, ClientDocument::parse(&text).unwrap())
}

fn drain<R: Read + Send + 'static>(mut r: R) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What a [`TestServer`] does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// The protocol's answer: compute(n), or a pong.
    Correct,
    /// compute(n) + 1.
    Wrong,
    /// This payload, framed.
    Raw(Vec<u8>),
    /// An error response with this code and the request's id.
    Error(&'static str),
    /// Never answer; keep the connection open.
    Stall,
    /// Close this connection without answering.
    Close,
    /// Stop listening, close every connection, answer nothing more.
    GoAway,
}

/// Counters a test can check after a run.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Requests parsed.
    pub requests: AtomicU64,
    /// Connections accepted (the client's preflight included).
    pub connections: AtomicU64,
    /// Requests parsed on each connection that sent any, by order of acceptance.
    pub per_connection: Mutex<std::collections::BTreeMap<u64, u64>>,
}

type Behaviour = dyn Fn(u64, &Cmd) -> Reply + Send + Sync;

/// A protocol server on 127.0.0.1 (a thread per connection) that answers each request as
/// `behave(request_number, command)` says; request numbers count from 1 across connections.
pub struct TestServer {
    pub addr: SocketAddr,
    pub stats: Arc<ServerStats>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start<F>(behave: F) -> TestServer
    where
        F: Fn(u64, &Cmd) -> Reply + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(ServerStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let behave: Arc<Behaviour> = Arc::new(behave);
        let accept = {
            let (stats, stop) = (Arc::clone(&stats), Arc::clone(&stop));
            thread::spawn(move || accept_loop(listener, addr, behave, stats, stop))
        };
        TestServer {
            addr,
            stats,
            stop,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    behave: Arc<Behaviour>,
    stats: Arc<ServerStats>,
    stop: Arc<AtomicBool>,
) {
    let mut handlers = Vec::new();
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(conn) = conn else { continue };
        let number = stats.connections.fetch_add(1, Ordering::SeqCst);
        let (behave, stats, stop) = (Arc::clone(&behave), Arc::clone(&stats), Arc::clone(&stop));
        handlers.push(thread::spawn(move || {
            serve(conn, number, addr, &*behave, &stats, &stop)
        }));
    }
    drop(listener);
    for h in handlers {
        let _ = h.join();
    }
}

/// Serves one connection until the client leaves, the server stops, or a reply ends it.
fn serve(
    conn: TcpStream,
    conn_number: u64,
    addr: SocketAddr,
    behave: &Behaviour,
    stats: &ServerStats,
    stop: &AtomicBool,
) {
    // A short read timeout lets the thread notice `stop`; FrameReader keeps partial frames.
    conn.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut writer = conn.try_clone().unwrap();
    let mut reader = FrameReader::new(conn, frame::DEFAULT_MAX_FRAME);
    let mut out = Vec::new();
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let payload = match reader.next_frame() {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) if e.is_timeout() => continue,
            Err(_) => return,
        };
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(request) = parse_request(payload, u64::MAX) else {
            return;
        };
        let number = stats.requests.fetch_add(1, Ordering::SeqCst) + 1;
        *stats
            .per_connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(conn_number)
            .or_default() += 1;
        let id = request.id.json().as_bytes();
        out.clear();
        match behave(number, &request.cmd) {
            Reply::Correct => match request.cmd {
                Cmd::Compute { n } => encode_result(&mut out, id, compute(n)),
                _ => encode_pong(&mut out, id),
            },
            Reply::Wrong => match request.cmd {
                Cmd::Compute { n } => encode_result(&mut out, id, compute(n) + 1),
                _ => panic!("Reply::Wrong is for compute"),
            },
            Reply::Raw(payload) => frame::encode(&payload, &mut out),
            Reply::Error(code) => {
                let at = frame::begin_frame(&mut out);
                out.extend_from_slice(b"{\"id\":");
                out.extend_from_slice(id);
                out.extend_from_slice(b",\"error\":{\"code\":\"");
                out.extend_from_slice(code.as_bytes());
                out.extend_from_slice(b"\",\"message\":\"scripted by the test\"}}");
                frame::end_frame(&mut out, at);
            }
            Reply::Stall => continue,
            Reply::Close => return,
            Reply::GoAway => {
                stop.store(true, Ordering::SeqCst);
                let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
                return;
            }
        }
        if writer.write_all(&out).is_err() {
            return;
        }
    }
}

/// The pid of every process /proc lists now.
pub fn pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
}

/// The fields of /proc/PID/stat after the command (0 state, 1 ppid, 2 pgrp, … 11 utime,
/// 12 stime, … 19 starttime); empty if there is no such process.
pub fn stat_fields(pid: i32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// True if `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    stat_fields(pid).first().is_some_and(|state| state != "Z")
}

/// Live (non-zombie) child processes of `pid`, from /proc.
pub fn children(pid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for child in pids() {
        let fields = stat_fields(child);
        // After the command: state, ppid, ...
        if fields.get(1) == Some(&pid.to_string()) && fields.first().is_some_and(|s| s != "Z") {
            out.push(child);
        }
    }
    out
}

/// A CSV file's rows, each as column name → text.
pub fn read_csv(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let headers: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    r.records()
        .map(|rec| {
            headers
                .iter()
                .cloned()
                .zip(rec.unwrap().iter().map(str::to_string))
                .collect()
        })
        .collect()
}

/// A row's column as a number, or a panic naming the column and the row.
pub fn num(row: &std::collections::HashMap<String, String>, col: &str) -> f64 {
    row[col]
        .parse()
        .unwrap_or_else(|_| panic!("{col} = {:?} in {row:?}", row[col]))
}

/// Writes `toml` as `name` in `dir`, runs it with the real binary (`--out dir/out`),
/// checks that the run succeeded and returns its run directory (its stdout).
pub fn run_experiment(dir: &Path, name: &str, toml: &str) -> std::path::PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, toml).unwrap();
    let out = dir.join("out");
    let run = threadcenter(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    std::path::PathBuf::from(String::from_utf8_lossy(&run.stdout).trim())
}
