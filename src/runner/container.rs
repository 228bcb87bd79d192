//! Container targets (`[targets.X] image = "…"`): the server image run with
//! `docker run --rm --cpus` on a bridge network made for that one run, on a subnet the
//! runner sets (10.232.N.0/24); its address and host pid from `docker inspect`; ready
//! once it accepts a connection; stopped with `docker stop` and the target's grace time;
//! then the check that the container and the network are gone.
//!
//! The server's CPU is sampled like a process's: a container's processes are the host's
//! processes, and the container's main process (its pid from `docker inspect`) with its
//! descendants is the server (cpu.rs follows the tree). Only containers and networks
//! made here are ever stopped or removed, by the names given them here.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::experiment::{ContainerTarget, Experiment, TargetKind};
use super::launch::{self, Group, NotReady, Stopped};

/// What a container target's `args` may hold; `{host}` is 0.0.0.0 (the container's own
/// network namespace, reached only over the run's network), `{port}` is [`PORT`].
pub(crate) const PLACEHOLDERS: [&str; 3] = ["host", "port", "workers"];

/// A container target's command when its `args` are not given.
pub(crate) const DEFAULT_ARGS: [&str; 7] = [
    "server",
    "--host",
    "{host}",
    "--port",
    "{port}",
    "--workers",
    "{workers}",
];

/// The port the server listens on inside its container.
const PORT: u16 = 5050;

/// Networks are 10.232.N.0/24, N in 1..=254; the server is .2 on it.
const SUBNET: [u8; 2] = [10, 232];

/// How long `docker stop`'s aftermath (the CLI's exit, the removal of the container, of
/// the network) may take beyond the grace time.
const CLEANUP_LIMIT: Duration = Duration::from_secs(15);

/// Containers and networks made and not yet removed, for the emergency stop.
static LIVE: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Names made by this process: `threadcenter-<pid>-<n>`.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// How the dry run lists a container target.
pub(crate) fn describe(c: &ContainerTarget) -> String {
    format!(
        "docker run --rm --cpus {} {} {}",
        c.cpus,
        c.image,
        c.args.join(" ")
    )
}

/// Runs `docker ARGS`: its stdout, or an error quoting the command and its stderr.
fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!("cannot run `docker`: {e}; install Docker (Debian: apt-get install docker.io)")
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "`docker {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Before anything runs (and in `--dry-run`): when the experiment has container targets,
/// the Docker daemon answers and every image they name is in the local store.
pub(crate) fn preflight(exp: &Experiment) -> anyhow::Result<()> {
    let mut images: Vec<(&str, &str)> = Vec::new();
    for (name, t) in &exp.targets {
        if let TargetKind::Container(c) = &t.kind {
            images.push((name, &c.image));
        }
    }
    if images.is_empty() {
        return Ok(());
    }
    if let Err(e) = docker(&["version", "--format", "{{.Server.Version}}"]) {
        let fix = if e.starts_with("cannot run") {
            ""
        } else {
            "\nStart the Docker daemon (`dockerd`, or `systemctl start docker`) and check \
             that `docker info` works for this user"
        };
        anyhow::bail!(
            "target `{}` runs in a container, and Docker does not answer: {e}{fix}",
            images[0].0
        );
    }
    for (target, image) in images {
        if docker(&["image", "inspect", "--format", "{{.Id}}", image]).is_err() {
            anyhow::bail!(
                "target `{target}`: the image {image:?} is not in Docker's local store; build it \
                 with scripts/image.sh (offline, from a release build) or `docker build -t {image} .`, \
                 or docker pull/load it (the runner never pulls)"
            );
        }
    }
    Ok(())
}

/// The emergency stop (a second Ctrl-C): removes every container and network this
/// process made and still holds.
pub(crate) fn remove_all() {
    let live = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
    for (container, network) in live {
        let _ = docker(&["rm", "--force", &container]);
        let _ = docker(&["network", "rm", &network]);
    }
}

fn forget(container: &str) {
    if let Ok(mut live) = LIVE.lock() {
        live.retain(|(c, _)| c != container);
    }
}

/// The server a cell runs against: a process group, or a container.
pub(crate) enum Server {
    Process(Group),
    Container(Container),
}

impl Server {
    /// The pid whose process tree is the server (for CPU sampling).
    pub(crate) fn pid(&self) -> u32 {
        match self {
            Server::Process(g) => g.pid(),
            Server::Container(c) => c.pid,
        }
    }

    /// How the server ended, if it has (a container: the `docker run` that waits on it).
    pub(crate) fn peek_exit(&self) -> Option<String> {
        match self {
            Server::Process(g) => g.peek_exit(),
            Server::Container(c) => c.cli.as_ref().and_then(Group::peek_exit),
        }
    }

    pub(crate) fn stop(self, grace: Duration) -> Stopped {
        match self {
            Server::Process(g) => g.stop(grace),
            Server::Container(c) => c.stop(grace),
        }
    }
}

/// A running server container, its network, and the `docker run` client attached to it
/// (its output goes to the server's log; it exits with the container's status).
pub(crate) struct Container {
    cli: Option<Group>,
    name: String,
    network: String,
    /// The container's main process, as the host sees it.
    pid: u32,
    /// Set once the container and the network are removed (or found gone).
    removed: bool,
}

/// Starts `spec`'s image for a cell with `workers`, and waits until its server accepts
/// connections; on failure everything made is removed and the reason returned.
pub(crate) fn start(
    spec: &ContainerTarget,
    workers: u64,
    ready_timeout: Duration,
    interrupted: &AtomicBool,
    log: File,
) -> Result<(Container, SocketAddr), String> {
    let started = Instant::now();
    let base = format!(
        "threadcenter-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let (network, ip) = create_network(&base)?;
    let mut container = Container {
        cli: None,
        name: base,
        network,
        pid: 0,
        removed: false,
    };
    crate::sync::lock(&LIVE).push((container.name.clone(), container.network.clone()));
    let args: Vec<String> = spec
        .args
        .iter()
        .map(|a| {
            a.replace("{host}", "0.0.0.0")
                .replace("{port}", &PORT.to_string())
                .replace("{workers}", &workers.to_string())
        })
        .collect();
    let out = log
        .try_clone()
        .map_err(|e| format!("cannot open the log: {e}"))?;
    let mut cmd = Command::new("docker");
    cmd.args(["run", "--rm", "--pull", "never", "--name", &container.name])
        .args(["--network", &container.network, "--ip", &ip.to_string()])
        .args(["--cpus", &spec.cpus.to_string()])
        .args(["--label", "threadcenter.runner=1"])
        .arg(&spec.image)
        .args(&args)
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(log));
    let cli = Group::spawn(&mut cmd).map_err(|e| format!("cannot run `docker run`: {e}"))?;
    let cli = container.cli.insert(cli);
    let (pid, addr) = match running(&container.name, cli, ready_timeout, interrupted) {
        Ok(x) => x,
        Err(why) => {
            container.remove();
            return Err(why.to_string());
        }
    };
    container.pid = pid;
    let left = ready_timeout.saturating_sub(started.elapsed());
    if let Err(why) = launch::await_connectable(cli, addr, left, interrupted) {
        container.remove();
        return Err(format!("{why} (container {})", spec.image));
    }
    Ok((container, addr))
}

/// A network of its own for a run, on the first free 10.232.N.0/24 from a point that
/// differs between runners; returns its name and the server's address on it.
fn create_network(name: &str) -> Result<(String, Ipv4Addr), String> {
    let start = std::process::id() as usize * 31 + NEXT.load(Ordering::Relaxed) as usize;
    let mut last = String::new();
    for i in 0..16 {
        let n = ((start + i * 17) % 254 + 1) as u8;
        let subnet = format!("{}.{}.{n}.0/24", SUBNET[0], SUBNET[1]);
        match docker(&[
            "network",
            "create",
            "--driver",
            "bridge",
            "--subnet",
            &subnet,
            "--label",
            "threadcenter.runner=1",
            name,
        ]) {
            Ok(_) => return Ok((name.to_string(), Ipv4Addr::new(SUBNET[0], SUBNET[1], n, 2))),
            // Another network (another run's, or the machine's) holds that subnet.
            Err(e) if e.contains("overlap") => last = e,
            Err(e) => return Err(format!("cannot create the run's network: {e}")),
        }
    }
    Err(format!(
        "cannot create the run's network: 16 subnets of {}.{}.0.0/16 are taken ({last})",
        SUBNET[0], SUBNET[1]
    ))
}

/// Waits until `docker inspect` says the container runs: its host pid and its address
/// on the run's network.
fn running(
    name: &str,
    cli: &Group,
    limit: Duration,
    interrupted: &AtomicBool,
) -> Result<(u32, SocketAddr), NotReady> {
    let deadline = Instant::now() + limit;
    let format = "{{.State.Running}} {{.State.Pid}} {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}";
    loop {
        if let Some(status) = cli.peek_exit() {
            return Err(NotReady::Exited(format!("docker run: {status}")));
        }
        if let Ok(line) = docker(&["container", "inspect", "--format", format, name]) {
            let mut words = line.split_whitespace();
            if let (Some("true"), Some(pid), Some(ip)) = (words.next(), words.next(), words.next())
            {
                if let (Ok(pid @ 1..), Ok(ip)) = (pid.parse::<u32>(), ip.parse::<IpAddr>()) {
                    return Ok((pid, SocketAddr::new(ip, PORT)));
                }
            }
        }
        if interrupted.load(Ordering::Relaxed) {
            return Err(NotReady::Interrupted);
        }
        if Instant::now() >= deadline {
            return Err(NotReady::TimedOut(limit));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Container {
    /// `docker stop` with the grace time (then Docker's SIGKILL), the `docker run` client
    /// reaped, and the container and network checked gone; what was left is a problem.
    fn stop(mut self, grace: Duration) -> Stopped {
        let secs = grace.as_secs_f64().ceil().to_string();
        let mut problems = Vec::new();
        if let Err(e) = docker(&["stop", "--time", &secs, &self.name]) {
            // Already gone is fine (it exited by itself: the cell says so); else tell.
            if !e.contains("No such container") {
                problems.push(e);
            }
        }
        let cli = self.cli.take().expect("a started container has its client");
        cli.wait_exit(CLEANUP_LIMIT);
        let stopped = cli.stop(Duration::from_secs(1));
        // 137 = 128 + SIGKILL: Docker killed it once the grace time was over.
        let graceful = stopped.exit_code != Some(137);
        match stopped.exit_code {
            // 143 = 128 + SIGTERM: an image whose server ends by the signal itself.
            Some(0 | 143) => {}
            Some(137) => problems.push(format!(
                "the container did not stop within its grace time ({secs} s) and Docker killed it"
            )),
            _ => problems.push(format!(
                "the container did not exit cleanly on docker stop (docker run: {})",
                stopped.status
            )),
        }
        problems.extend(self.remove());
        Stopped {
            graceful,
            problems,
            ..stopped
        }
    }

    /// Removes the container (if still there) and the network, waiting until Docker no
    /// longer knows either; returns what is still there.
    fn remove(&mut self) -> Vec<String> {
        let mut left = Vec::new();
        if let Some(cli) = self.cli.take() {
            let _ = docker(&["rm", "--force", &self.name]);
            cli.kill();
        }
        if !gone(&["container", "inspect", &self.name]) {
            let _ = docker(&["rm", "--force", &self.name]);
            if !gone(&["container", "inspect", &self.name]) {
                left.push(format!("the container {} is still there", self.name));
            }
        }
        let _ = docker(&["network", "rm", &self.network]);
        if !gone(&["network", "inspect", &self.network]) {
            left.push(format!("the network {} is still there", self.network));
        }
        forget(&self.name);
        self.removed = true;
        left
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // `stop` and a failed start have removed everything already; this is for an
        // early return between the network's creation and the container's start.
        if !self.removed {
            self.remove();
        }
    }
}

/// Whether `docker ARGS` (an inspect) says the object does not exist within
/// [`CLEANUP_LIMIT`] ("No such container: …", "network … not found").
fn gone(args: &[&str]) -> bool {
    let deadline = Instant::now() + CLEANUP_LIMIT;
    loop {
        match docker(args) {
            Err(e) if e.contains("No such") || e.contains("not found") => return true,
            _ if Instant::now() >= deadline => return false,
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::experiment::parse;
    use std::path::Path;

    const HEAD: &str = "name = \"t\"\nduration = \"1s\"\n[matrix]\nconcurrency = [1]\nworkers = [2]\nsize = [10]\n";

    fn file(target: &str) -> String {
        format!("{HEAD}[targets.p]\n[targets.c]\n{target}\n")
    }

    fn refused(target: &str) -> String {
        parse(Path::new("x.toml"), &file(target))
            .expect_err("should be refused")
            .to_string()
    }

    #[test]
    fn a_container_target_is_read_with_its_defaults() {
        let e = parse(Path::new("x.toml"), &file("image = \"tc:local\"")).unwrap();
        let TargetKind::Container(c) = &e.targets["c"].kind else {
            panic!("{:?}", e.targets["c"]);
        };
        assert_eq!(c.image, "tc:local");
        assert_eq!(c.args, DEFAULT_ARGS);
        assert_eq!(c.cpus, crate::machine::available_cores() as f64);
        // No pool: the container's cell and the process's differ in it.
        let pools: Vec<_> = e
            .cells
            .iter()
            .map(|c| (c.target.as_str(), c.pool))
            .collect();
        assert_eq!(
            pools,
            [("c", None), ("p", Some(crate::domain::PoolKind::Process))]
        );
        let e = parse(
            Path::new("x.toml"),
            &file("image = \"other\"\ncpus = 1.5\nargs = [\"--listen\", \"{host}:{port}\", \"-j{workers}\"]"),
        )
        .unwrap();
        let TargetKind::Container(c) = &e.targets["c"].kind else {
            panic!()
        };
        assert_eq!((c.cpus, c.args.len()), (1.5, 3));
        let e = parse(Path::new("x.toml"), &file("image = \"a\"\ncpus = 2")).unwrap();
        let TargetKind::Container(c) = &e.targets["c"].kind else {
            panic!()
        };
        assert_eq!(c.cpus, 2.0, "a whole number of CPUs reads too");
    }

    #[test]
    fn what_a_container_target_cannot_take_is_refused_with_the_key() {
        for (target, key, says) in [
            ("image = \"\"", "targets.c.image", "must name an image"),
            (
                "image = \"a\"\ncommand = [\"x\"]",
                "targets.c.image",
                "not both",
            ),
            (
                "image = \"a\"\npool = \"thread\"",
                "targets.c.pool",
                "--pool",
            ),
            ("image = \"a\"\ntls = true", "targets.c.tls", "TLS"),
            (
                "image = \"a\"\nclient_image = \"a\"",
                "targets.c.client_image",
                "compose.yaml",
            ),
            ("image = \"a\"\ncpus = 0.0", "targets.c.cpus", "positive"),
            (
                "image = \"a\"\nargs = [\"{dir}\"]",
                "targets.c.args",
                "{dir}",
            ),
            ("cpus = 1.0", "targets.c.cpus", "container target"),
        ] {
            let e = refused(target);
            assert!(e.contains(key) && e.contains(says), "{target}: {e}");
        }
    }

    #[test]
    fn the_dry_run_shows_the_docker_command() {
        let c = ContainerTarget {
            image: "threadcenter:local".into(),
            args: DEFAULT_ARGS.iter().map(|a| a.to_string()).collect(),
            cpus: 1.5,
        };
        assert_eq!(
            describe(&c),
            "docker run --rm --cpus 1.5 threadcenter:local server --host {host} --port {port} --workers {workers}"
        );
    }
}
