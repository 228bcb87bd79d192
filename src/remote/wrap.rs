//! The hidden `remote-wrap` subcommand: what the runner starts on a host (over ssh, or
//! here for a local client of a multi-host run) around a server or a client. It starts
//! the command in a process group of its own, pinned to `--cpus`, and reports on its
//! stdout, one line each (see [`Event`]): the child's stdout lines, a CPU sample every
//! 100 ms (the group's and the host's), the child's exit, what was left of the group,
//! and the files asked for with `--send`. Its stdin is the runner: `go` is passed on to
//! the child, `term` sends it SIGTERM, and end of file (the runner exited, was
//! interrupted, or the network dropped) kills the group at once. Nothing outlives the
//! wrapper: the child also dies with it (PR_SET_PDEATHSIG).
//!
//! `--check TAG` instead kills and lists every process of this user that carries the
//! run's tag in its environment: the runner's after-cell check that nothing is left.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::cpus::CpuList;
use crate::cli::WrapArgs;

/// The environment variable that marks every process a wrapper starts with the run's tag.
pub(crate) const TAG_ENV: &str = "THREADCENTER_REMOTE_TAG";

/// How often the wrapper samples CPU.
pub(crate) const PERIOD: Duration = Duration::from_millis(100);

/// One line of the wrapper's stdout.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// The child runs with this pid (its process group's id).
    Started { pid: u32 },
    /// A line the child wrote on its stdout.
    Out(String),
    /// Cumulative CPU seconds since the wrapper started: its child's group, and the
    /// host's busy time over `cores` cores (the `--cpus` ones, or all).
    Cpu {
        t_s: f64,
        group_s: f64,
        host_busy_s: f64,
        cores: u32,
    },
    /// The child exited ("exit status 0", "killed by signal 9 (SIGKILL)"), or could not
    /// start (the reason).
    Exit { status: String, code: Option<i32> },
    /// Pids of the child's group still there after SIGKILL: should be empty.
    Left(Vec<i32>),
    /// A `--send` file's bytes.
    File { name: String, bytes: Vec<u8> },
    /// The last line.
    Done,
}

impl Event {
    pub(crate) fn to_line(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        match self {
            Event::Started { pid } => format!("started {pid}"),
            Event::Out(line) => format!("out {line}"),
            Event::Cpu {
                t_s,
                group_s,
                host_busy_s,
                cores,
            } => format!("cpu {t_s:.4} {group_s:.4} {host_busy_s:.4} {cores}"),
            Event::Exit { status, code } => format!(
                "exit {} {status}",
                code.map_or("-".to_string(), |c| c.to_string())
            ),
            Event::Left(pids) => format!(
                "left {}",
                pids.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Event::File { name, bytes } => format!("file {name} {}", b64.encode(bytes)),
            Event::Done => "done".to_string(),
        }
    }

    /// The event a line holds; `None` for a line that is not the wrapper's (e.g. a
    /// login banner).
    pub(crate) fn parse(line: &str) -> Option<Event> {
        let line = line.trim_end_matches(['\n', '\r']);
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        Some(match word {
            "started" => Event::Started {
                pid: rest.parse().ok()?,
            },
            "out" => Event::Out(rest.to_string()),
            "cpu" => {
                let f: Vec<&str> = rest.split(' ').collect();
                Event::Cpu {
                    t_s: f.first()?.parse().ok()?,
                    group_s: f.get(1)?.parse().ok()?,
                    host_busy_s: f.get(2)?.parse().ok()?,
                    cores: f.get(3)?.parse().ok()?,
                }
            }
            "exit" => {
                let (code, status) = rest.split_once(' ')?;
                Event::Exit {
                    status: status.to_string(),
                    code: code.parse().ok(),
                }
            }
            "left" => Event::Left(
                rest.split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().ok())
                    .collect::<Option<Vec<i32>>>()?,
            ),
            "file" => {
                let (name, data) = rest.split_once(' ').unwrap_or((rest, ""));
                Event::File {
                    name: name.to_string(),
                    bytes: base64::engine::general_purpose::STANDARD
                        .decode(data)
                        .ok()?,
                }
            }
            "done" => Event::Done,
            _ => return None,
        })
    }
}

/// Writes events to stdout; once a write fails, the runner is gone.
#[derive(Clone)]
struct Emitter {
    out: Arc<Mutex<io::Stdout>>,
    gone: Arc<AtomicBool>,
}

impl Emitter {
    fn emit(&self, e: &Event) {
        let mut out = crate::sync::lock(&self.out);
        let ok = writeln!(out, "{}", e.to_line()).and_then(|()| out.flush());
        if ok.is_err() {
            self.gone.store(true, Ordering::SeqCst);
        }
    }
}

/// `threadcenter remote-wrap …` (hidden): see the module's comment.
pub(crate) fn run(args: &WrapArgs) -> anyhow::Result<ExitCode> {
    if args.check {
        return check(&args.tag);
    }
    // A broken pipe is an error to see, not a signal that kills the wrapper first.
    // SAFETY: setting a signal's disposition to ignore.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let cpus = match &args.cpus {
        Some(text) => {
            let list: CpuList = text.parse().map_err(anyhow::Error::msg)?;
            list.apply().map_err(|e| {
                anyhow::anyhow!("cannot pin to CPUs {text}: {e}; check `cpus` against this host's cores (nproc)")
            })?;
            Some(list)
        }
        None => None,
    };
    crate::runner::launch::become_subreaper();
    let tmp = private_dir()?;
    let fill = |w: &str| w.replace("{tmp}", &tmp.display().to_string());
    let words: Vec<String> = args.command.iter().map(|w| fill(w)).collect();
    let sends: Vec<(String, PathBuf)> = args
        .send
        .iter()
        .map(|s| {
            let (name, path) = s.split_once('=').unwrap_or((s.as_str(), s.as_str()));
            (name.to_string(), PathBuf::from(fill(path)))
        })
        .collect();
    let gone = Arc::new(AtomicBool::new(false));
    let em = Emitter {
        out: Arc::new(Mutex::new(io::stdout())),
        gone: Arc::clone(&gone),
    };
    let result = supervise(
        &words,
        &args.tag,
        cpus.as_ref(),
        &sends,
        &em,
        args.alive_timeout,
    );
    let _ = std::fs::remove_dir_all(&tmp);
    result?;
    Ok(ExitCode::SUCCESS)
}

/// A directory only this user reads, for the child's files (`{tmp}`).
fn private_dir() -> anyhow::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir =
        std::env::temp_dir().join(format!("threadcenter-wrap-{}-{nanos}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Starts the child, reports on it until it exits or the runner goes, then cleans up
/// its group and sends the files.
fn supervise(
    words: &[String],
    tag: &str,
    cpus: Option<&CpuList>,
    sends: &[(String, PathBuf)],
    em: &Emitter,
    alive_timeout: Option<Duration>,
) -> anyhow::Result<()> {
    let Some((program, rest)) = words.split_first() else {
        anyhow::bail!("remote-wrap: no command given after --");
    };
    let mut cmd = Command::new(program);
    cmd.args(rest)
        .env(super::wrap::TAG_ENV, tag)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0);
    // SAFETY: prctl is async-signal-safe; the child dies with the wrapper.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            em.emit(&Event::Exit {
                status: format!("cannot start {program}: {e}"),
                code: None,
            });
            em.emit(&Event::Done);
            return Ok(());
        }
    };
    let pid = child.id();
    let pgid = pid as i32;
    em.emit(&Event::Started { pid });
    if let Some(stdout) = child.stdout.take() {
        let em = em.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => em.emit(&Event::Out(l)),
                    Err(_) => break,
                }
            }
        });
    }
    let mut child_in = child.stdin.take();
    let gone = Arc::clone(&em.gone);
    let began = Instant::now();
    // Milliseconds after `began` of the last line from the runner.
    let heard = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let heard_in = Arc::clone(&heard);
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines() {
            heard_in.store(began.elapsed().as_millis() as u64, Ordering::SeqCst);
            match line.as_deref().map(str::trim) {
                Ok("go") => {
                    if let Some(w) = child_in.as_mut() {
                        let _ = w.write_all(b"go\n").and_then(|()| w.flush());
                    }
                }
                // SAFETY: kill(2) on the child this wrapper started and has not reaped
                // (the main loop reaps it only after this thread's signal is moot).
                Ok("term") => unsafe {
                    libc::kill(pgid, libc::SIGTERM);
                },
                Ok(_) => {}
                Err(_) => break,
            }
        }
        gone.store(true, Ordering::SeqCst);
    });

    let mut sampler = CpuSampler::new(cpus);
    let mut next = Instant::now();
    let status = loop {
        if let Some(limit) = alive_timeout {
            let silent =
                (began.elapsed().as_millis() as u64).saturating_sub(heard.load(Ordering::SeqCst));
            if silent > limit.as_millis() as u64 && !em.gone.swap(true, Ordering::SeqCst) {
                eprintln!(
                    "remote-wrap: nothing from the runner for {}s: it is gone (or the network is); killing the group",
                    silent / 1000
                );
            }
        }
        if em.gone.load(Ordering::SeqCst) {
            // SAFETY: the group this wrapper created; its leader is not reaped yet.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= next {
            em.emit(&sampler.sample(pgid));
            next += PERIOD;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    em.emit(&sampler.sample(pgid));
    em.emit(&Event::Exit {
        status: crate::runner::launch::describe(status),
        code: status.code(),
    });
    em.emit(&Event::Left(clear_group(pgid)));
    for (name, path) in sends {
        match std::fs::read(path) {
            Ok(bytes) => em.emit(&Event::File {
                name: name.clone(),
                bytes,
            }),
            Err(e) => eprintln!("remote-wrap: cannot read {}: {e}", path.display()),
        }
    }
    em.emit(&Event::Done);
    Ok(())
}

/// SIGKILL to what is left of the group, reaping what comes back to this subreaper;
/// the pids still there after 3 s.
fn clear_group(pgid: i32) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        // SAFETY: the group this wrapper created (members keep its id reserved).
        let rc = unsafe { libc::kill(-pgid, libc::SIGKILL) };
        // errno now, before waitpid sets it (ECHILD once nothing is left to reap).
        let gone = rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        // SAFETY: reaps this process's own exited children; never blocks.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        if gone {
            return Vec::new();
        }
        if Instant::now() >= deadline {
            return crate::runner::launch::members_of(pgid);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// CPU seconds of a process group and of the host (or its `--cpus`), from /proc.
struct CpuSampler {
    start: Instant,
    tick: f64,
    cpus: Option<Vec<usize>>,
    cores: u32,
}

impl CpuSampler {
    fn new(cpus: Option<&CpuList>) -> CpuSampler {
        // SAFETY: sysconf with constant names.
        let (tck, online) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_NPROCESSORS_ONLN),
            )
        };
        let cpus: Option<Vec<usize>> = cpus.map(|c| c.cpus.iter().copied().collect());
        CpuSampler {
            start: Instant::now(),
            tick: if tck > 0 { tck as f64 } else { 100.0 },
            cores: cpus
                .as_ref()
                .map_or(online.max(1) as u32, |c| c.len() as u32),
            cpus,
        }
    }

    fn sample(&mut self, pgid: i32) -> Event {
        Event::Cpu {
            t_s: self.start.elapsed().as_secs_f64(),
            group_s: self.group_ticks(pgid) / self.tick,
            host_busy_s: self.host_ticks() / self.tick,
            cores: self.cores,
        }
    }

    /// The group's live members' user + system ticks, its leader's reaped children's,
    /// and what this wrapper reaped (the leader itself, once it exited; orphans).
    fn group_ticks(&self, pgid: i32) -> f64 {
        let mut ticks = 0.0;
        for pid in crate::machine::pids() {
            let Some(f) = crate::machine::stat_fields(pid) else {
                continue;
            };
            if f.get(2).and_then(|v| v.parse::<i32>().ok()) != Some(pgid) {
                continue;
            }
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            // utime, stime (fields 14, 15); the leader's cutime, cstime (16, 17).
            ticks += n(11) + n(12);
            if pid == pgid {
                ticks += n(13) + n(14);
            }
        }
        // SAFETY: getrusage into a zeroed struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } == 0 {
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            ticks += (secs(ru.ru_utime) + secs(ru.ru_stime)) * self.tick;
        }
        ticks
    }

    /// Busy ticks (all but idle and iowait) of the host, or of the `--cpus` ones.
    fn host_ticks(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
            return 0.0;
        };
        let busy = |rest: &str| -> f64 {
            let v: Vec<f64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0.0))
                .collect();
            let all: f64 = v.iter().take(8).sum();
            all - v.get(3).copied().unwrap_or(0.0) - v.get(4).copied().unwrap_or(0.0)
        };
        let mut total = 0.0;
        for line in stat.lines() {
            let Some((name, rest)) = line.split_once(' ') else {
                continue;
            };
            match (&self.cpus, name) {
                (None, "cpu") => return busy(rest),
                (Some(cpus), n)
                    if n.strip_prefix("cpu")
                        .and_then(|c| c.parse::<usize>().ok())
                        .is_some_and(|c| cpus.contains(&c)) =>
                {
                    total += busy(rest);
                }
                _ => {}
            }
        }
        total
    }
}

/// `--check TAG`: SIGKILLs every process whose environment carries the tag (other
/// than this one), and prints `left PIDS` (empty when there were none).
fn check(tag: &str) -> anyhow::Result<ExitCode> {
    let needle = format!("{TAG_ENV}={tag}");
    let me = std::process::id() as i32;
    let found: Vec<i32> = crate::machine::pids()
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == needle.as_bytes()))
        })
        .collect();
    for &pid in &found {
        // SAFETY: kill(2) on a process carrying this run's tag: one the runner started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    println!("{}", Event::Left(found).to_line());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_back_as_written() {
        for e in [
            Event::Started { pid: 42 },
            Event::Out("threadcenter listening addr=0.0.0.0:5 pid=1".into()),
            Event::Cpu {
                t_s: 1.5,
                group_s: 0.25,
                host_busy_s: 3.0,
                cores: 2,
            },
            Event::Exit {
                status: "exit status 0".into(),
                code: Some(0),
            },
            Event::Exit {
                status: "killed by signal 9 (SIGKILL)".into(),
                code: None,
            },
            Event::Left(vec![]),
            Event::Left(vec![3, 4]),
            Event::File {
                name: "json".into(),
                bytes: b"{\"a\": 1}\n".to_vec(),
            },
            Event::Done,
        ] {
            assert_eq!(Event::parse(&e.to_line()), Some(e.clone()), "{e:?}");
        }
        assert_eq!(Event::parse("Welcome to the host"), None);
    }
}
