//! Containers (docs/containers.md), against a real Docker daemon: scripts/image.sh builds
//! the offline image from this build's binary; compose.yaml runs its verified load (one
//! client, then two); a one-cell experiment runs a container target next to the built-in
//! server, interleaved. Afterwards no container, network or dangling volume of the test
//! is left, and its image tag is removed.
//!
//! `#[ignore]`d: it needs `dockerd` running and docker-compose (1.29, Debian's) or the
//! `docker compose` plugin (v2); `.ci/run` installs and starts them. Everything the test
//! makes is named after its own pid, and its guard removes it also when the test fails.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_threadcenter");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// `docker ARGS`, bounded; its output (stdout, trimmed), failing the test on an error.
fn docker(args: &[&str]) -> String {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    let out = common::bounded(cmd);
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        common::explain(&out)
    );
    text(&out.stdout).trim().to_string()
}

/// Lines of `docker ARGS`' output, as a set (ids, names).
fn listed(args: &[&str]) -> BTreeSet<String> {
    docker(args).lines().map(str::to_string).collect()
}

fn docker_answers() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The compose commands present: Debian's `docker-compose` (1.29) and/or the `docker
/// compose` plugin (v2). They take the same words.
fn composes() -> Vec<Vec<&'static str>> {
    let mut found = Vec::new();
    if common::runs("docker-compose", "version") {
        found.push(vec!["docker-compose"]);
    }
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if v2 {
        found.push(vec!["docker", "compose"]);
    }
    found
}

/// Removes what the test made, by the names it gave them, even when it fails.
struct Cleanup {
    tag: String,
    project: String,
    /// The runner's pid: its containers and networks are `threadcenter-<pid>-N`.
    runner: Option<u32>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            let _ = Command::new("docker").args(args).output();
        };
        for compose in composes() {
            let _ = Command::new(compose[0])
                .args(&compose[1..])
                .args(["-p", &self.project, "-f"])
                .arg(repo().join("compose.yaml"))
                .args(["down", "--volumes", "--remove-orphans", "--timeout", "2"])
                .env("THREADCENTER_IMAGE", &self.tag)
                .output();
        }
        if let Some(pid) = self.runner {
            let prefix = format!("name=threadcenter-{pid}-");
            if let Ok(out) = Command::new("docker")
                .args(["ps", "-aq", "--filter", &prefix])
                .output()
            {
                for id in text(&out.stdout).split_whitespace() {
                    quiet(&["rm", "--force", id]);
                }
            }
            if let Ok(out) = Command::new("docker")
                .args(["network", "ls", "-q", "--filter", &prefix])
                .output()
            {
                for id in text(&out.stdout).split_whitespace() {
                    quiet(&["network", "rm", id]);
                }
            }
        }
        quiet(&["image", "rm", "--force", &self.tag]);
    }
}

#[test]
#[ignore = "needs docker: apt-get install docker.io docker-compose, and dockerd running"]
fn the_image_compose_and_a_container_target_run_and_leave_nothing() {
    common::require_peer(
        docker_answers(),
        "a running Docker daemon (`docker version` answers for the server)",
        "apt-get install docker.io, then start dockerd",
    );
    let composes = composes();
    common::require_peer(
        !composes.is_empty(),
        "docker-compose (1.29) or the `docker compose` plugin",
        "apt-get install docker-compose",
    );
    let me = std::process::id();
    let mut cleanup = Cleanup {
        tag: format!("threadcenter-test-{me}:local"),
        project: format!("tctest{me}"),
        runner: None,
    };
    let volumes_before = listed(&["volume", "ls", "-q", "--filter", "dangling=true"]);

    // The offline image answers --version as the binary does.
    let mut build = Command::new(repo().join("scripts/image.sh"));
    build.args(["--binary", BIN, "--tag", &cleanup.tag]);
    let out = common::bounded(build);
    assert!(out.status.success(), "image.sh: {}", common::explain(&out));
    let version = text(&common::threadcenter(&["--version"]).stdout);
    assert_eq!(
        docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            &cleanup.tag,
            "--version"
        ]),
        version.trim()
    );
    assert_eq!(
        docker(&[
            "image",
            "inspect",
            "--format",
            "{{.Config.User}}",
            &cleanup.tag
        ]),
        "10001:10001",
        "the image runs as an unprivileged user"
    );

    for compose in &composes {
        compose_scenario(compose, &cleanup);
    }
    container_target_next_to_the_builtin(&mut cleanup);

    // Nothing of the test is left: containers, networks, dangling volumes.
    let project = format!("label=com.docker.compose.project={}", cleanup.project);
    assert_eq!(
        listed(&["ps", "-aq", "--filter", &project]),
        BTreeSet::new()
    );
    assert_eq!(
        listed(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("name={}", cleanup.project)
        ]),
        BTreeSet::new()
    );
    let runner = format!("name=threadcenter-{}-", cleanup.runner.unwrap());
    assert_eq!(listed(&["ps", "-aq", "--filter", &runner]), BTreeSet::new());
    assert_eq!(
        listed(&["network", "ls", "-q", "--filter", &runner]),
        BTreeSet::new()
    );
    let volumes_after = listed(&["volume", "ls", "-q", "--filter", "dangling=true"]);
    assert!(
        volumes_after.is_subset(&volumes_before),
        "dangling volumes appeared: {:?}",
        volumes_after
            .difference(&volumes_before)
            .collect::<Vec<_>>()
    );
}

/// `compose ARGS` on compose.yaml with the test's project and image.
fn compose(words: &[&str], cleanup: &Cleanup, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(words[0]);
    cmd.args(&words[1..])
        .args(["-p", &cleanup.project, "-f"])
        .arg(repo().join("compose.yaml"))
        .args(args)
        .env("THREADCENTER_IMAGE", &cleanup.tag)
        .env("CLIENT_REQUESTS", "150")
        .envs(env.iter().copied());
    common::bounded(cmd)
}

/// The documented command, then two clients; each client checks all its answers.
fn compose_scenario(words: &[&str], cleanup: &Cleanup) {
    let one = compose(
        words,
        cleanup,
        &[
            "up",
            "--abort-on-container-exit",
            "--exit-code-from",
            "client",
        ],
        &[],
    );
    let all = format!("{}{}", text(&one.stdout), text(&one.stderr));
    assert!(one.status.success(), "{words:?} up: {all}");
    // 4 connections × 150 requests, each answer checked by the client.
    assert!(
        all.contains("requests    600 ok, 0 failed"),
        "{words:?}: {all}"
    );
    down(words, cleanup);

    // Scaled: both clients run to their end (`up -d`, then `docker wait` on each).
    let up = compose(words, cleanup, &["up", "-d", "--scale", "client=2"], &[]);
    assert!(
        up.status.success(),
        "{words:?} up -d: {}",
        common::explain(&up)
    );
    let ps = compose(words, cleanup, &["ps", "-a", "-q", "client"], &[]);
    let clients: Vec<String> = text(&ps.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(clients.len(), 2, "{words:?} ps: {}", common::explain(&ps));
    for id in &clients {
        assert_eq!(docker(&["wait", id]), "0", "client {id} exited non-zero");
        let logs = docker(&["logs", id]);
        assert!(logs.contains("requests    600 ok, 0 failed"), "{logs}");
    }
    down(words, cleanup);
}

fn down(words: &[&str], cleanup: &Cleanup) {
    let out = compose(
        words,
        cleanup,
        &["down", "--volumes", "--timeout", "5"],
        &[],
    );
    assert!(
        out.status.success(),
        "{words:?} down: {}",
        common::explain(&out)
    );
}

/// One cell, two targets (a container of the test's image, the built-in server as a
/// process), two repetitions in interleaved order: all four runs succeed.
fn container_target_next_to_the_builtin(cleanup: &mut Cleanup) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("containers.toml");
    fs::write(
        &file,
        format!(
            r#"name = "containers"
repetitions = 2
warmup = "200ms"
duration = "1s"
order = "interleaved"

[targets.process]

[targets.container]
image = "{}"
cpus = 1.5
stop_grace = "5s"

[matrix]
workers = [1]
concurrency = [2]
size = [20_000]
"#,
            cleanup.tag
        ),
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let mut cmd = Command::new(BIN);
    cmd.arg("run")
        .arg(&file)
        .arg("-o")
        .arg(&out_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut guard = common::ChildGuard::spawn(cmd).unwrap();
    cleanup.runner = Some(guard.id());
    let status = guard.wait_timeout(common::PROCESS_LIMIT * 2);
    let mut err = String::new();
    if let Some(mut e) = guard.child_mut().stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    let status = status.unwrap_or_else(|| panic!("the run did not end in time: {err}"));
    let run = out_dir.join("latest");
    assert!(status.success(), "threadcenter run: {status}: {err}");
    assert_runs(&run);
}

fn assert_runs(run: &Path) {
    let mut csv = csv::Reader::from_path(run.join("results.csv")).unwrap();
    let head = csv.headers().unwrap().clone();
    let col = |name: &str| head.iter().position(|h| h == name).unwrap();
    let (target, status, seq, failed, cpu) = (
        col("target"),
        col("status"),
        col("seq"),
        col("failed"),
        col("server_cpu_pct"),
    );
    let mut rows: Vec<(u32, String, String, String, f64)> = csv
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[seq].parse().unwrap(),
                r[target].to_string(),
                r[status].to_string(),
                r[failed].to_string(),
                r[cpu].parse().unwrap_or(0.0),
            )
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    let order: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    // Interleaved: each repetition runs both targets back to back. (Not A B then B A:
    // the built-in target's cell has a pool and the container's none, so the matrix
    // does not pair them as one cell; matrix::schedule_interleaved.)
    assert_eq!(order.len(), 4, "{rows:?}");
    assert_ne!(order[0], order[1], "{rows:?}");
    assert_ne!(order[2], order[3], "{rows:?}");
    for (_, target, status, failed, cpu) in &rows {
        assert_eq!((status.as_str(), failed.as_str()), ("ok", "0"), "{rows:?}");
        // The container's processes were found and sampled: a loaded server uses CPU.
        assert!(*cpu > 0.0, "{target}: no server CPU measured: {rows:?}");
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["experiment"]["targets"]["container"]["kind"],
        "container"
    );
    assert_eq!(manifest["experiment"]["targets"]["container"]["cpus"], 1.5);
    // The container's output went to the run's server log: its readiness line.
    let logs: Vec<PathBuf> = fs::read_dir(run.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let container_logs = rows.iter().filter(|r| r.1 == "container").count();
    let ready = logs
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".server.log"))
        .filter(|p| {
            fs::read_to_string(p)
                .unwrap()
                .contains("threadcenter listening addr=0.0.0.0:5050 pid=1 ")
        })
        .count();
    assert_eq!(ready, container_logs, "{logs:?}");
}
