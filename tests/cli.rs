//! The command line as a person meets it: overrides and --dry-run's checks, the messages
//! for bad flags and paths, `docs`, `--version`, and the client's live line on a
//! terminal (a real pseudo-terminal, through util-linux's `script`) against its silence
//! off one. The real binary throughout, its output read back.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{bounded, explain, threadcenter, Reply, TestServer};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `threadcenter ARGS` run in `cwd`.
fn threadcenter_in(cwd: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_threadcenter"));
    cmd.args(args).current_dir(cwd);
    bounded(cmd)
}

const SMALL: &str =
    "name = \"small\"\nrequests = 5\n[matrix]\nworkers = [1]\nconcurrency = [1]\nsize = [1000]\n";

#[test]
fn dry_run_shows_the_effective_values_of_the_overrides() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(tmp.path(), "small.toml", SMALL);
    let out = threadcenter(&[
        "run",
        "--dry-run",
        file.to_str().unwrap(),
        "--repetitions",
        "3",
        "--warmup",
        "250ms",
        "--duration",
        "1500ms",
        "--set",
        "matrix.workers=[1,2]",
        "--set",
        "client.timeout=5s",
    ]);
    assert!(out.status.success(), "{}", explain(&out));
    let plan = stdout(&out);
    for needle in [
        "overridden: --set matrix.workers=[1,2], --set client.timeout=5s, --repetitions 3, --warmup 250ms, --duration 1500ms",
        "2 cells × 3 repetitions = 6 runs; warm-up 250 ms, measured for 1.5 s; cooldown 0 s; cell timeout 31.8 s",
        "client timeout 5 s",
        "workers=2",
    ] {
        assert!(plan.contains(needle), "{needle:?} missing from:\n{plan}");
    }
    // One cell, one repetition: singular nouns.
    let out = threadcenter(&["run", "--dry-run", file.to_str().unwrap()]);
    let plan = stdout(&out);
    assert!(
        plan.contains("1 cell × 1 repetition = 1 run;"),
        "{}",
        explain(&out)
    );
    assert!(plan.contains("5 requests per connection"), "{plan}");
}

#[test]
fn overrides_meet_the_same_checks_as_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(tmp.path(), "small.toml", SMALL);
    let f = file.to_str().unwrap();
    for (args, needles) in [
        (
            vec!["--set", "matrix.threads=[2]"],
            vec![
                "`matrix.threads`",
                "unknown field `threads`",
                "(given by --set matrix.threads=[2])",
            ],
        ),
        (
            vec!["--repetitions", "0"],
            vec![
                "`repetitions`",
                "at least 1, not 0",
                "(given by --repetitions 0)",
            ],
        ),
        (
            vec!["--repetitions", "three"],
            vec!["expected a whole number, found the text \"three\""],
        ),
        (
            vec!["--set", "matrix.workers=[a,b]"],
            vec!["--set matrix.workers=[a,b]", "quote the strings"],
        ),
        (
            vec!["--duration", "1 year"],
            vec![
                "`duration`",
                "longer than 24 h",
                "(given by --duration 1 year)",
            ],
        ),
        (
            vec!["--set", "repetitions=2", "--repetitions", "3"],
            vec!["set twice"],
        ),
        (vec!["--set", "repetitions"], vec!["has no `=`"]),
    ] {
        let mut all = vec!["run", "--dry-run", f];
        all.extend(&args);
        let out = threadcenter(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", explain(&out));
        let err = stderr(&out);
        for needle in needles {
            assert!(
                err.contains(needle),
                "{args:?}: {needle:?} missing from:\n{err}"
            );
        }
    }
}

#[test]
fn dry_run_refuses_programs_that_cannot_start_and_absurd_durations() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ext = |command: &str| {
        format!("name = \"e\"\nduration = \"1s\"\n[targets.srv]\ncommand = {command}\n[matrix]\nconcurrency = [1]\n")
    };
    fs::write(dir.join("plain.sh"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(dir.join("plain.sh"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(dir.join("ok.sh"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(dir.join("ok.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    for (body, needles) in [
        (
            ext("[\"no-such-program-xyz\", \"{port}\"]"),
            vec!["`targets.srv.command`", "\"no-such-program-xyz\" is not found on PATH"],
        ),
        (
            ext("[\"./missing.sh\", \"{port}\"]"),
            vec!["\"./missing.sh\" does not exist", "taken from the directory the run starts in"],
        ),
        (
            "name = \"e\"\nduration = \"1s\"\n[server]\ncommand = [\"./missing.sh\"]\n[matrix]\nconcurrency = [1]\n".to_string(),
            vec!["`server.command`", "does not exist"],
        ),
        (
            ext("[\"./plain.sh\", \"{port}\"]"),
            vec!["is not executable", "chmod +x ./plain.sh"],
        ),
        (
            "name = \"e\"\nduration = \"1s\"\n[targets.b]\nbinary = \"{dir}/nope\"\n[matrix]\nconcurrency = [1]\n".to_string(),
            vec!["`targets.b.binary`", "does not exist"],
        ),
        (
            "name = \"d\"\nduration = \"1 year\"\n[matrix]\nconcurrency = [1]\n".to_string(),
            vec!["x.toml:2:12: `duration`", "longer than 24 h"],
        ),
        (
            "name = \"d\"\nrepetitions = \"3\"\nduration = \"1s\"\n[matrix]\nconcurrency = [1]\n".to_string(),
            vec![
                "x.toml:2:15: `repetitions`",
                "expected a whole number, found the text \"3\": write `repetitions = 3`, without quotes",
            ],
        ),
    ] {
        write(dir, "x.toml", &body);
        let out = threadcenter_in(dir, &["run", "--dry-run", "x.toml"]);
        assert_eq!(out.status.code(), Some(2), "{body}\n{}", explain(&out));
        let err = stderr(&out);
        for needle in needles {
            assert!(err.contains(needle), "{needle:?} missing for\n{body}\n{err}");
        }
        // The real run refuses it the same way, before it creates anything.
        let real = threadcenter_in(dir, &["run", "x.toml", "--out", "out"]);
        assert_eq!(real.status.code(), Some(2), "{}", explain(&real));
        assert_eq!(stderr(&real), err);
        assert!(!dir.join("out").exists(), "the refused run wrote its directory");
    }
    // `{dir}/…` and a relative path that is there pass.
    write(dir, "x.toml", &ext("[\"{dir}/ok.sh\", \"{port}\"]"));
    let out = threadcenter_in(dir, &["run", "--dry-run", "x.toml"]);
    assert!(out.status.success(), "{}", explain(&out));
    write(dir, "x.toml", &ext("[\"./ok.sh\", \"{port}\"]"));
    let out = threadcenter_in(dir, &["run", "--dry-run", "x.toml"]);
    assert!(out.status.success(), "{}", explain(&out));
}

#[test]
fn bad_client_numbers_say_what_to_write() {
    for (args, needles) in [
        (
            vec!["--size", "-1"],
            vec!["\"-1\" is negative", "--size 500000"],
        ),
        (vec!["--size=-1"], vec!["\"-1\" is negative"]),
        (vec!["--size", "big"], vec!["\"big\" is not a number"]),
        (
            vec!["--requests", "0"],
            vec!["must be at least 1, not 0", "--requests 100", "--duration"],
        ),
        (vec!["-n", "1.5"], vec!["\"1.5\" is not a whole number"]),
        (vec!["--duration", "2days"], vec!["longer than 24h"]),
    ] {
        let mut all = vec!["client"];
        all.extend(&args);
        let out = threadcenter(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", explain(&out));
        let err = stderr(&out);
        assert!(!err.contains("unexpected argument"), "{err}");
        assert!(!err.contains("invalid digit"), "{err}");
        assert!(!err.contains("18446744073709551615"), "{err}");
        for needle in needles {
            assert!(
                err.contains(needle),
                "{args:?}: {needle:?} missing from:\n{err}"
            );
        }
    }
}

#[test]
fn report_says_what_a_wrong_path_is() {
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("reports");
    fs::create_dir(&reports).unwrap();
    let check = |path: &Path, needle: &str| {
        let out = threadcenter(&["report", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(3), "{}", explain(&out));
        assert!(
            stderr(&out).contains(needle),
            "{needle:?}: {}",
            explain(&out)
        );
    };
    check(&tmp.path().join("nonexistent"), "does not exist");
    check(&reports, "is not a run directory: it has no manifest.json");
    let file = write(tmp.path(), "f.toml", "");
    check(&file, "is a file, not a run directory");
    // A directory of runs points at its newest run, then at `latest`.
    let run = reports.join("20250101T000000Z-quick");
    fs::create_dir(&run).unwrap();
    fs::write(run.join("manifest.json"), "{}").unwrap();
    check(&reports, "holds runs but is not one");
    check(&reports, "20250101T000000Z-quick (the newest)");
    std::os::unix::fs::symlink("20250101T000000Z-quick", reports.join("latest")).unwrap();
    check(&reports, "latest (the latest run)");
}

#[test]
fn docs_are_built_in_and_help_points_at_them() {
    let out = threadcenter(&["docs"]);
    assert!(out.status.success(), "{}", explain(&out));
    assert!(
        stdout(&out).contains("experiments  Experiment files"),
        "{}",
        explain(&out)
    );
    for page in ["experiments", "results", "open-loop"] {
        let out = threadcenter(&["docs", page]);
        let file = fs::read_to_string(repo().join(format!("docs/{page}.md"))).unwrap();
        assert_eq!(stdout(&out), file, "{page}");
    }
    let out = threadcenter(&["docs", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    // The list names every page docs/ holds, so a page added there is listed too.
    let err = stderr(&out);
    assert!(err.contains("the pages are compare, "), "{}", explain(&out));
    for entry in fs::read_dir(repo().join("docs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(page) = name.strip_suffix(".md") {
            assert!(err.contains(page), "{page} not listed: {}", explain(&out));
        }
    }

    // Every `threadcenter docs TOPIC` a help text names is a page; no help names a file.
    for cmd in ["server", "client", "run", "report"] {
        let help = stdout(&threadcenter(&[cmd, "--help"]));
        assert!(
            !help.contains("docs/"),
            "{cmd} --help names a file:\n{help}"
        );
        for topic in help.split("threadcenter docs ").skip(1) {
            let topic: String = topic
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect();
            let out = threadcenter(&["docs", &topic]);
            assert!(
                out.status.success(),
                "{cmd} --help: docs {topic}: {}",
                explain(&out)
            );
        }
    }
    let help = stdout(&threadcenter(&["server", "--help"]));
    assert!(help.contains("Exit status: 0 after a clean stop"), "{help}");
    assert!(!help.contains("seed's"), "{help}");
    assert!(!stdout(&threadcenter(&["client", "--help"])).contains("seed's"));
}

#[test]
fn version_names_the_commit_manifests_record() {
    let out = threadcenter(&["--version"]);
    let v = stdout(&out);
    let commit = env!("THREADCENTER_GIT_COMMIT");
    assert_eq!(
        v.trim(),
        format!(
            "threadcenter {} (commit {commit})",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert!(!commit.is_empty());
    // The subcommands say the same (after their own name).
    let sub = stdout(&threadcenter(&["run", "--version"]));
    assert_eq!(
        sub.split_once(' ').map(|(_, rest)| rest),
        v.split_once(' ').map(|(_, rest)| rest)
    );
}

/// A server that answers every ping, and a client command line against it.
fn ping_client(server: &TestServer, extra: &str) -> String {
    format!(
        "{} client --host 127.0.0.1 --port {} --cmd ping -c 2 {extra}",
        env!("CARGO_BIN_EXE_threadcenter"),
        server.port()
    )
}

#[test]
fn off_a_terminal_the_client_is_silent_until_its_summary() {
    let server = TestServer::start(|_, _| Reply::Correct);
    // Its stdout a pipe, as the runner has it…
    let out = common::client(server.port(), &["--cmd", "ping", "-c", "2", "-d", "1s"]);
    assert!(out.status.success(), "{}", explain(&out));
    let text = stdout(&out);
    // …and a file.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("out.txt");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} -d 1s > {}",
            ping_client(&server, ""),
            file.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let in_file = fs::read_to_string(&file).unwrap();
    for text in [&text, &in_file] {
        assert!(text.starts_with("target      127.0.0.1:"), "{text}");
        assert!(!text.contains('\r') && !text.contains('\x1b'), "{text:?}");
        assert!(!text.contains("sent "), "{text}");
        assert!(text.contains("\nthroughput  "), "{text}");
    }
}

#[test]
fn on_a_terminal_the_client_shows_its_target_at_once_and_a_live_line() {
    assert!(
        common::runs("script", "--version"),
        "util-linux's `script` (Debian's bsdutils) gives this test its terminal"
    );
    let server = TestServer::start(|_, _| Reply::Correct);
    // script(1) runs the client on a pseudo-terminal and copies what it wrote to our
    // pipe; -e passes on its exit status.
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &ping_client(&server, "-d 2s"), "/dev/null"]);
    let out = bounded(cmd);
    assert!(out.status.success(), "{}", explain(&out));
    let text = stdout(&out);
    // The target line first, then the live line redrawn in place (each frame starts by
    // erasing the line), then the summary from a clean line.
    let erase = "\r\x1b[2K";
    let frames: Vec<&str> = text.split(erase).collect();
    assert!(frames[0].starts_with("target      127.0.0.1:"), "{text:?}");
    assert!(!frames[0].contains("sent "), "{text:?}");
    let live: Vec<&&str> = frames.iter().filter(|f| f.starts_with("sent ")).collect();
    assert!(live.len() >= 2, "fewer than two redraws in 2 s: {text:?}");
    for f in &live {
        assert!(
            f.contains(" ok ") && f.contains(" req/s ") && f.contains(" p99 "),
            "{f:?}"
        );
        assert!(!f.contains('\n'), "a live frame ends the line: {f:?}");
    }
    let last = frames.last().unwrap();
    assert!(last.starts_with("load        2 connections"), "{text:?}");
    assert!(last.contains("\r\nthroughput  "), "{text:?}");
    assert_eq!(text.matches("target      ").count(), 1, "{text:?}");
}
