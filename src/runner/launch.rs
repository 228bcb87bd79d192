//! Child processes: each server or client the runner starts leads a process group of its
//! own; readiness (the server's line, or a connection); stop (SIGTERM, grace, SIGKILL to
//! the group) and the check that nothing of the group is left.
//!
//! Only processes started here are ever signalled, by their pid or their group id. The
//! runner makes itself a child subreaper, so a server's orphaned workers come back to it
//! and are reaped here instead of lingering as zombies.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

/// Process groups alive right now, for the emergency stop on a second Ctrl-C.
static LIVE_GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// SIGKILLs every group this process started and has not yet reaped.
pub(crate) fn kill_all_groups() {
    let groups = LIVE_GROUPS.lock().map(|g| g.clone()).unwrap_or_default();
    for pgid in groups {
        // SAFETY: kill(2) on a process group this process created and still holds
        // (its leader is not reaped, so the id cannot have been reused).
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
    // A container outlives its killed `docker run`: remove those too.
    super::container::remove_all();
}

/// Orphaned descendants (a dead server's workers) are re-parented to this process, so it
/// can reap them and tell when a process group is really gone.
pub(crate) fn become_subreaper() {
    // SAFETY: prctl with an integer argument; affects only this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// A child process leading its own process group (pgid = pid).
pub(crate) struct Group {
    child: Child,
    pgid: i32,
    /// Set once the leader is reaped; the group id is only safe to signal before that.
    status: Option<ExitStatus>,
    /// Set once the whole group is verified gone.
    finished: bool,
}

/// How a group ended.
#[derive(Debug, Clone)]
pub(crate) struct Stopped {
    /// The leader's exit, as text ("exit status 0", "signal 9 (SIGKILL)").
    pub status: String,
    pub exit_code: Option<i32>,
    /// Whether the leader left on its own after SIGTERM, within the grace period.
    pub graceful: bool,
    /// Pids of the group still present after SIGKILL and reaping: should always be empty.
    pub leftover: Vec<i32>,
    /// What else went wrong stopping it (a container target's: `runner::container`).
    pub problems: Vec<String>,
}

impl Group {
    /// Starts `cmd` as the leader of a new process group, stdin closed.
    pub(crate) fn spawn(cmd: &mut Command) -> io::Result<Group> {
        cmd.stdin(Stdio::null());
        Group::start(cmd)
    }

    /// As [`Group::spawn`], with stdin piped (see [`Group::take_stdin`]).
    pub(crate) fn spawn_with_stdin(cmd: &mut Command) -> io::Result<Group> {
        cmd.stdin(Stdio::piped());
        Group::start(cmd)
    }

    fn start(cmd: &mut Command) -> io::Result<Group> {
        cmd.process_group(0);
        // Register before any signal can arrive for it: hold the lock across spawn.
        let mut live = crate::sync::lock(&LIVE_GROUPS);
        let child = cmd.spawn()?;
        let pgid = child.id() as i32;
        live.push(pgid);
        Ok(Group {
            child,
            pgid,
            status: None,
            finished: false,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    pub(crate) fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// The leader's exit if it has exited, without reaping it (waitid WNOWAIT), so the
    /// group id stays reserved until the group is cleaned up.
    pub(crate) fn peek_exit(&self) -> Option<String> {
        if let Some(status) = self.status {
            return Some(describe(status));
        }
        // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own child's pid with WNOWAIT leaves it unreaped.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pgid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid/si_status are valid to read after a successful waitid.
        let (pid, status, code) = unsafe { (info.si_pid(), info.si_status(), info.si_code) };
        if rc != 0 || pid == 0 {
            return None;
        }
        Some(if code == libc::CLD_EXITED {
            format!("exit status {status}")
        } else {
            format!("killed by signal {status} ({})", signal_name(status))
        })
    }

    pub(crate) fn has_exited(&self) -> bool {
        self.peek_exit().is_some()
    }

    /// Sends `sig` to the leader alone (the built-in server stops its workers itself).
    fn signal_leader(&self, sig: i32) {
        if self.status.is_none() {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(self.pgid, sig) };
        }
    }

    fn signal_group(&self, sig: i32) {
        if self.status.is_none() {
            // SAFETY: kill(2) on the group our unreaped child leads.
            unsafe { libc::kill(-self.pgid, sig) };
        }
    }

    /// Waits up to `limit` for the leader to exit by itself.
    pub(crate) fn wait_exit(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.has_exited() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM to the leader, up to `grace` for it to leave, then SIGKILL to the whole
    /// group; reaps everything and checks that the group is gone.
    pub(crate) fn stop(mut self, grace: Duration) -> Stopped {
        let graceful = if self.has_exited() {
            true
        } else {
            self.signal_leader(libc::SIGTERM);
            self.wait_exit(grace)
        };
        self.finish(graceful)
    }

    /// SIGKILL to the whole group at once; reaps and checks.
    pub(crate) fn kill(mut self) -> Stopped {
        self.finish(false)
    }

    fn finish(&mut self, graceful: bool) -> Stopped {
        // Whatever is left of the group goes now, while the leader still holds the id.
        self.signal_group(libc::SIGKILL);
        let status = match self.status {
            Some(s) => s,
            None => {
                let s = self.child.wait().unwrap_or_else(|_| ExitStatus::default());
                self.status = Some(s);
                s
            }
        };
        let leftover = reap_group(self.pgid, Duration::from_secs(3));
        self.finished = true;
        if let Ok(mut live) = LIVE_GROUPS.lock() {
            live.retain(|&g| g != self.pgid);
        }
        Stopped {
            status: describe(status),
            exit_code: status.code(),
            graceful,
            leftover,
            problems: Vec::new(),
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.finished {
            self.finish(false);
        }
    }
}

/// After the leader is reaped: reaps members that came back to this subreaper and waits
/// until kill(-pgid, 0) says ESRCH. Returns the pids still there after `limit`.
fn reap_group(pgid: i32, limit: Duration) -> Vec<i32> {
    let deadline = Instant::now() + limit;
    loop {
        // SAFETY: waitpid on our own children of that group only; never blocks.
        while unsafe { libc::waitpid(-pgid, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        // SAFETY: signal 0 only checks for existence.
        let rc = unsafe { libc::kill(-pgid, 0) };
        if rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            return Vec::new();
        }
        if Instant::now() >= deadline {
            return members_of(pgid);
        }
        // Members that are not ours to reap (e.g. re-parented elsewhere) still get killed.
        // SAFETY: the group was created by this process; nothing else can hold its id
        // while members of it are alive.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Pids whose process group is `pgid` (from /proc).
pub(crate) fn members_of(pgid: i32) -> Vec<i32> {
    let mut pids: Vec<i32> = crate::machine::pids()
        .filter(|&pid| pgrp_of(pid) == Some(pgid))
        .collect();
    pids.sort_unstable();
    pids
}

/// The process group of `pid`, while it exists.
pub(crate) fn pgrp_of(pid: i32) -> Option<i32> {
    crate::machine::stat_fields(pid)?.get(2)?.parse().ok()
}

pub(crate) fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig} ({})", signal_name(sig)),
        _ => "unknown exit".to_string(),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGKILL => "SIGKILL",
        libc::SIGINT => "SIGINT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGBUS => "SIGBUS",
        _ => "signal",
    }
}

/// Why a server did not become ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotReady {
    Exited(String),
    TimedOut(Duration),
    BadLine(String),
    Interrupted,
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::Exited(status) => {
                write!(f, "the server exited before it was ready ({status})")
            }
            NotReady::TimedOut(d) => write!(
                f,
                "the server was not ready within {}",
                crate::runner::fmt_duration(*d)
            ),
            NotReady::BadLine(line) => write!(
                f,
                "the server's first stdout line is not a readiness line: {line:?}"
            ),
            NotReady::Interrupted => write!(f, "interrupted"),
        }
    }
}

/// Reads the built-in server's readiness line (docs/formats.md) from its stdout and
/// returns the address it names. Lines after it are read and dropped.
pub(crate) fn await_ready_line(
    group: &mut Group,
    limit: Duration,
    interrupted: &AtomicBool,
) -> Result<SocketAddr, NotReady> {
    let stdout = group.take_stdout().expect("the server's stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let first = reader.read_line(&mut line).map(|_| line);
        let _ = tx.send(first);
        let _ = io::copy(&mut reader, &mut io::sink());
    });
    let deadline = Instant::now() + limit;
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(Ok(line)) if !line.is_empty() => return parse_ready_line(&line),
            // EOF or a read error: the server closed stdout, so it is exiting.
            Ok(_) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                group.wait_exit(Duration::from_secs(2));
                return Err(NotReady::Exited(
                    group
                        .peek_exit()
                        .unwrap_or_else(|| "closed its stdout".into()),
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if interrupted.load(Ordering::Relaxed) {
            return Err(NotReady::Interrupted);
        }
        if let Some(status) = group.peek_exit() {
            return Err(NotReady::Exited(status));
        }
        if Instant::now() >= deadline {
            return Err(NotReady::TimedOut(limit));
        }
    }
}

/// `threadcenter listening addr=IP:PORT …` → the address; unknown keys are ignored.
pub(crate) fn parse_ready_line(line: &str) -> Result<SocketAddr, NotReady> {
    let line = line.trim_end();
    line.strip_prefix("threadcenter listening ")
        .and_then(|rest| {
            rest.split_whitespace()
                .find_map(|kv| kv.strip_prefix("addr="))
        })
        .and_then(|addr| addr.parse().ok())
        .ok_or_else(|| NotReady::BadLine(line.to_string()))
}

/// Waits until `addr` accepts a TCP connection (for servers that print no readiness line).
pub(crate) fn await_connectable(
    group: &Group,
    addr: SocketAddr,
    limit: Duration,
    interrupted: &AtomicBool,
) -> Result<(), NotReady> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = group.peek_exit() {
            return Err(NotReady::Exited(status));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if interrupted.load(Ordering::Relaxed) {
            return Err(NotReady::Interrupted);
        }
        if Instant::now() >= deadline {
            return Err(NotReady::TimedOut(limit));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A loopback port free right now (bound, read, released), for an external server.
pub(crate) fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The last `lines` lines of a log file (at most its last 8 KiB), for error messages.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(8192)));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_lines_parse_and_ignore_unknown_keys() {
        assert_eq!(
            parse_ready_line(
                "threadcenter listening addr=127.0.0.1:4000 pid=1 workers=2 pool=process new=1\n"
            ),
            Ok("127.0.0.1:4000".parse().unwrap())
        );
        assert_eq!(
            parse_ready_line("threadcenter listening pid=1 addr=[::1]:80"),
            Ok("[::1]:80".parse().unwrap())
        );
        assert!(parse_ready_line("listening on 4000").is_err());
    }

    #[test]
    fn a_group_is_stopped_and_verified_gone() {
        become_subreaper();
        // A leader whose child ignores SIGTERM: only the group SIGKILL ends it.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "trap '' TERM; sleep 30 & wait"]);
        let group = Group::spawn(&mut cmd).unwrap();
        let pgid = group.pid() as i32;
        std::thread::sleep(Duration::from_millis(100));
        let stopped = group.stop(Duration::from_millis(200));
        assert!(stopped.leftover.is_empty(), "{stopped:?}");
        // SAFETY: existence check on the group this test created.
        let rc = unsafe { libc::kill(-pgid, 0) };
        assert_eq!(rc, -1);
        assert_eq!(io::Error::last_os_error().raw_os_error(), Some(libc::ESRCH));
    }

    #[test]
    fn an_exit_is_seen_without_reaping() {
        let group = Group::spawn(Command::new("sh").args(["-c", "exit 3"])).unwrap();
        assert!(group.wait_exit(Duration::from_secs(5)));
        assert_eq!(group.peek_exit().as_deref(), Some("exit status 3"));
        let stopped = group.kill();
        assert_eq!(stopped.exit_code, Some(3));
    }
}
