//! The runner's side of the hosts: the system's `ssh` with one ControlMaster per host
//! (control sockets in a private temporary directory, `BatchMode=yes`), the version
//! check, the binary copied once to a per-version cache directory on a host that lacks
//! it, and [`Session`]: one wrapped command on a host, its events read on a thread.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::wrap::Event;
use crate::runner::experiment::Host as HostSpec;
use crate::runner::launch::Group;

/// What `threadcenter --version` prints (the version and the commit it was built
/// from): what a host's binary must print too.
pub(crate) fn local_version() -> String {
    format!("threadcenter {}", crate::cli::VERSION)
}

/// A wrapper that hears nothing from the runner for this long kills its group; the
/// runner writes a line every [`HEARTBEAT`].
const ALIVE_TIMEOUT: Duration = Duration::from_secs(15);
const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long a one-off ssh command (version check, copy, leftover check) may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// Every host of a run and the ssh connections to them.
pub(crate) struct Fleet {
    /// Private (0700) directory holding the control sockets; removed on drop.
    control_dir: PathBuf,
    pub hosts: BTreeMap<String, HostSpec>,
    /// This executable, copied to hosts that lack it.
    exe: PathBuf,
    /// The binary to run on each host once it has been checked (or copied).
    ready: Mutex<BTreeMap<String, String>>,
    /// The cache directory's name for this binary (`VERSION-HASH`), once computed.
    key: std::sync::OnceLock<Result<String, String>>,
}

impl Fleet {
    pub(crate) fn new(hosts: BTreeMap<String, HostSpec>, exe: &Path) -> anyhow::Result<Fleet> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let control_dir =
            std::env::temp_dir().join(format!("threadcenter-ssh-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&control_dir)
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot create {} for ssh's control sockets: {e}",
                    control_dir.display()
                )
            })?;
        Ok(Fleet {
            control_dir,
            hosts,
            exe: exe.to_path_buf(),
            ready: Mutex::new(BTreeMap::new()),
            key: std::sync::OnceLock::new(),
        })
    }

    /// This executable (what runs here, and what hosts lacking it get).
    pub(crate) fn exe(&self) -> &Path {
        &self.exe
    }

    /// ssh's options for `host`: connection sharing, no prompts, the host's own.
    fn options(&self, host: &str) -> Vec<String> {
        let mut o: Vec<String> = [
            "-o",
            "BatchMode=yes",
            "-o",
            "ControlMaster=auto",
            "-o",
            &format!("ControlPath={}/%C", self.control_dir.display()),
            // An idle master leaves by itself a minute after the run, even a killed one.
            "-o",
            "ControlPersist=60",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "LogLevel=ERROR",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        o.extend(self.hosts[host].ssh_options.iter().cloned());
        o
    }

    /// `ssh` to `host` running `remote` as one shell command line there.
    pub(crate) fn ssh(&self, host: &str, remote: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(self.options(host))
            .arg("--")
            .arg(&self.hosts[host].ssh)
            .arg(remote);
        cmd
    }

    /// Runs `remote` on `host` with `input` on its stdin; its stdout, or why it failed.
    pub(crate) fn command(
        &self,
        host: &str,
        remote: &str,
        input: Option<&Path>,
    ) -> Result<String, String> {
        let mut cmd = self.ssh(host, remote);
        let stdin = match input {
            Some(p) => {
                Stdio::from(File::open(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?)
            }
            None => Stdio::null(),
        };
        cmd.stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run ssh: {e}; install the OpenSSH client"))?;
        let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
        let reader = std::thread::spawn(move || {
            let mut o = String::new();
            let mut e = String::new();
            if let Some(s) = out.as_mut() {
                let _ = s.read_to_string(&mut o);
            }
            if let Some(s) = err.as_mut() {
                let _ = s.read_to_string(&mut e);
            }
            (o, e)
        });
        let deadline = Instant::now() + COMMAND_LIMIT;
        let status = loop {
            if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "ssh to {host} did not finish within {}s",
                    COMMAND_LIMIT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let (o, e) = reader.join().unwrap_or_default();
        if status.success() {
            Ok(o)
        } else {
            let e = e.trim().replace('\n', " | ");
            Err(format!(
                "`ssh {}` failed ({status}){}",
                self.hosts[host].ssh,
                if e.is_empty() {
                    String::new()
                } else {
                    format!(": {e}")
                }
            ))
        }
    }

    /// The binary to run on `host`: checked to be this version, copied to the cache
    /// directory first when the host lacks it. Done once per host and run.
    pub(crate) fn prepare(&self, host: &str) -> Result<String, String> {
        if let Some(b) = crate::sync::lock(&self.ready).get(host) {
            return Ok(b.clone());
        }
        let probe = self.probe(host)?;
        if probe.version.is_none() {
            self.copy(host, &probe.binary)?;
        }
        crate::sync::lock(&self.ready).insert(host.to_string(), probe.binary.clone());
        Ok(probe.binary)
    }

    /// `--dry-run`: connects to every host (`BatchMode=yes`) and says what runs there;
    /// an unreachable host or another version is an error naming the host and the fix.
    pub(crate) fn dry_run(&self) -> anyhow::Result<()> {
        let mut text = String::from("hosts:\n");
        let mut errors = Vec::new();
        for (name, spec) in &self.hosts {
            match self.probe(name) {
                Ok(p) => text.push_str(&format!(
                    "  {name}: {} ({}): {}\n",
                    spec.ssh,
                    spec.address,
                    match &p.version {
                        Some(v) => format!("{v} at {}", p.binary),
                        None => format!(
                            "no {} there yet: the run copies this binary to {}",
                            local_version(),
                            p.binary.replace("\"$HOME\"", "~")
                        ),
                    }
                )),
                Err(e) => {
                    text.push_str(&format!("  {name}: {}: FAILED\n", spec.ssh));
                    errors.push(e);
                }
            }
        }
        let _ = crate::print_stdout(&text);
        if errors.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{}", errors.join("\n"))
        }
    }

    /// Connects to `host` and asks its binary for its version: that it is this one, or
    /// (no `binary` given) that the cache directory does not hold it yet.
    fn probe(&self, host: &str) -> Result<Probe, String> {
        let spec = &self.hosts[host];
        let want = local_version();
        let (binary, cached) = match &spec.binary {
            Some(b) => (sh_quote(b), false),
            None => (
                format!(
                    "\"$HOME\"/.cache/threadcenter/{}/threadcenter",
                    self.key.get_or_init(|| cache_key(&self.exe)).clone()?
                ),
                true,
            ),
        };
        let script = format!("if [ -x {binary} ]; then {binary} --version; else echo missing; fi");
        let got = self.command(host, &script, None).map_err(|e| {
            format!(
                "host {host}: {e}; check that `ssh {}{}` logs in without a password or prompt (docs/multi-host.md: keys)",
                spec.ssh_options
                    .iter()
                    .map(|o| format!("{} ", sh_quote(o)))
                    .collect::<String>(),
                spec.ssh
            )
        })?;
        let got = got.trim().to_string();
        match (got.as_str(), cached) {
            ("missing", true) => Ok(Probe {
                binary,
                version: None,
            }),
            ("missing", false) => Err(format!(
                "host {host}: `binary` {} is not there (or not executable): install threadcenter there, or remove `binary` so the run copies this one",
                spec.binary.as_deref().unwrap_or_default()
            )),
            (v, _) if v == want => Ok(Probe {
                binary,
                version: Some(got),
            }),
            (v, _) => Err(format!(
                "host {host}: its threadcenter says {v:?} and this one is {want:?}: install the same version there{}",
                if cached { "" } else { ", or remove `binary` so the run copies this one" }
            )),
        }
    }

    /// Copies this executable to `binary` (the cache directory's path) on `host`, under
    /// a temporary name first so a half copy is never run; checks it runs there.
    fn copy(&self, host: &str, binary: &str) -> Result<(), String> {
        let dir = binary.trim_end_matches("/threadcenter");
        let part = format!("{dir}/.part.$$");
        let install = format!(
            "mkdir -p {dir} && cat > {part} && chmod 755 {part} && mv -f {part} {binary} && {binary} --version"
        );
        let got = self
            .command(host, &install, Some(&self.exe))
            .map_err(|e| format!("host {host}: cannot copy the binary there: {e}"))?;
        let want = local_version();
        if got.trim() != want {
            return Err(format!(
                "host {host}: the copied binary says {:?}, not {want:?}: is the host another OS or architecture? give it its own build with `binary`",
                got.trim()
            ));
        }
        Ok(())
    }

    /// Starts `words` under the wrapper on `host` (or here, for `None`), with the run's
    /// `tag`, pinned to the host's `cpus`; `--send` files come back as events.
    pub(crate) fn spawn(
        &self,
        host: Option<&str>,
        tag: &str,
        sends: &[(&str, &str)],
        words: &[String],
        log: &Path,
    ) -> Result<Session, String> {
        let mut wrap_args: Vec<String> = vec![
            "remote-wrap".into(),
            "--tag".into(),
            tag.into(),
            "--alive-timeout".into(),
            format!("{}s", ALIVE_TIMEOUT.as_secs()),
        ];
        if let Some(c) = host.and_then(|h| self.hosts[h].cpus.as_ref()) {
            wrap_args.extend(["--cpus".into(), c.clone()]);
        }
        for (name, path) in sends {
            wrap_args.extend(["--send".into(), format!("{name}={path}")]);
        }
        wrap_args.push("--".into());
        let mut cmd = match host {
            Some(h) => {
                let binary = self.prepare(h)?;
                let words = words.iter().map(|w| {
                    if w == "{exe}" {
                        binary.clone()
                    } else {
                        sh_quote(w)
                    }
                });
                let line: Vec<String> = std::iter::once(binary.clone())
                    .chain(wrap_args.iter().map(|a| sh_quote(a)))
                    .chain(words)
                    .collect();
                // `exec`: the wrapper is the session's process, its stdin the channel.
                self.ssh(h, &format!("exec {}", line.join(" ")))
            }
            None => {
                let mut c = Command::new(&self.exe);
                c.args(&wrap_args).args(words.iter().map(|w| {
                    if w == "{exe}" {
                        self.exe.display().to_string()
                    } else {
                        w.clone()
                    }
                }));
                c
            }
        };
        let log_file =
            File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        cmd.stdout(Stdio::piped()).stderr(Stdio::from(log_file));
        let mut group = Group::spawn_with_stdin(&mut cmd)
            .map_err(|e| format!("cannot start ssh: {e}; install the OpenSSH client"))?;
        let stdin = Arc::new(Mutex::new(group.take_stdin()));
        let beat = Arc::clone(&stdin);
        std::thread::spawn(move || loop {
            std::thread::sleep(HEARTBEAT);
            let mut w = crate::sync::lock(&beat);
            let Some(pipe) = w.as_mut() else { break };
            if pipe
                .write_all(b"alive\n")
                .and_then(|()| pipe.flush())
                .is_err()
            {
                break;
            }
        });
        let stdout = group.take_stdout().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(e) = Event::parse(&line) {
                    if tx.send((Instant::now(), e)).is_err() {
                        break;
                    }
                }
            }
        });
        Ok(Session {
            host: host.map(str::to_string),
            group: Some(group),
            stdin,
            events: rx,
            log: log.to_path_buf(),
        })
    }

    /// The after-cell check on `host`: processes carrying `tag` (killed, and listed).
    pub(crate) fn leftovers(&self, host: &str, tag: &str) -> Result<Vec<i32>, String> {
        let binary = self.prepare(host)?;
        let out = self.command(
            host,
            &format!("{binary} remote-wrap --check --tag {}", sh_quote(tag)),
            None,
        )?;
        match out.lines().find_map(Event::parse) {
            Some(Event::Left(pids)) => Ok(pids),
            _ => Err(format!("host {host}: the leftover check printed {out:?}")),
        }
    }
}

impl Drop for Fleet {
    /// Each master connection is told to exit; the control directory goes.
    fn drop(&mut self) {
        for (host, spec) in &self.hosts {
            let _ = Command::new("ssh")
                .args(self.options(host))
                .args(["-O", "exit", "--", &spec.ssh])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.control_dir);
    }
}

/// What a host has: the binary's path there (a shell word), and its version when it
/// is there.
struct Probe {
    binary: String,
    version: Option<String>,
}

/// One wrapped command: its ssh (or local wrapper) process, the wrapper's stdin, and
/// its events as they arrive, each with when it arrived.
pub(crate) struct Session {
    /// `None`: the wrapper runs here.
    pub host: Option<String>,
    group: Option<Group>,
    /// Shared with the heartbeat thread; `None` once closed.
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    pub events: mpsc::Receiver<(Instant, Event)>,
    /// The session's stderr (ssh's and the remote command's).
    pub log: PathBuf,
}

impl Session {
    /// Sends a control line (`go`, `term`); false if the session is gone.
    pub(crate) fn send(&mut self, line: &str) -> bool {
        match crate::sync::lock(&self.stdin).as_mut() {
            Some(w) => w
                .write_all(format!("{line}\n").as_bytes())
                .and_then(|()| w.flush())
                .is_ok(),
            None => false,
        }
    }

    /// Closes the wrapper's stdin (it kills its group and exits), then stops the ssh
    /// process; what its log says, when it failed.
    pub(crate) fn close(&mut self, grace: Duration) -> String {
        *crate::sync::lock(&self.stdin) = None;
        match self.group.take() {
            Some(g) => {
                g.wait_exit(grace);
                g.stop(Duration::ZERO).status
            }
            None => String::new(),
        }
    }

    /// The last lines of the session's log, for a reason.
    pub(crate) fn log_tail(&self) -> String {
        crate::runner::launch::tail(&self.log, 4)
            .lines()
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        *crate::sync::lock(&self.stdin) = None;
        if let Some(g) = self.group.take() {
            g.stop(Duration::from_secs(2));
        }
    }
}

/// A word quoted for a POSIX shell (ssh runs the remote command line through one).
pub(crate) fn sh_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// `VERSION-HASH`: the cache directory's name for this exact binary.
fn cache_key(exe: &Path) -> Result<String, String> {
    use std::hash::Hasher as _;
    let mut f = File::open(exe).map_err(|e| format!("cannot read {}: {e}", exe.display()))?;
    let mut h = std::hash::DefaultHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("cannot read {}: {e}", exe.display()))?;
        if n == 0 {
            break;
        }
        h.write(&buf[..n]);
    }
    Ok(format!("{}-{:016x}", env!("CARGO_PKG_VERSION"), h.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_the_remote_shell() {
        assert_eq!(sh_quote("--port"), "--port");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("$HOME"), "'$HOME'");
    }
}
