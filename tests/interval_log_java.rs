//! `client --interval-log` against Java HdrHistogram's own `HistogramLogReader` (what
//! HistogramLogAnalyzer and HistogramLogProcessor use): it must read every interval, and
//! their counts must add up to the run's total. Skipped with a notice where `javac` or
//! the HdrHistogram jar is missing (Debian: `apt-get install libhdrhistogram-java`; or
//! set HDRHISTOGRAM_JAR).

mod common;
mod sut;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{client, ChildGuard};
use sut::Server;
use threadcenter::client::ClientDocument;

fn available(tool: &str) -> bool {
    Command::new(tool)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cmd` under a guard, bounded in time; returns stdout.
fn run(mut cmd: Command) -> String {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut guard = ChildGuard::spawn(cmd).expect("spawn");
    let mut stdout = guard.child_mut().stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
        s
    });
    let status = guard
        .wait_timeout(Duration::from_secs(120))
        .expect("java did not finish in time");
    assert!(status.success(), "{status:?}");
    reader.join().unwrap()
}

#[test]
fn java_hdrhistogram_reads_the_interval_log_and_its_counts_add_up() {
    let jar = std::env::var("HDRHISTOGRAM_JAR")
        .unwrap_or_else(|_| "/usr/share/java/hdrhistogram.jar".to_string());
    if !Path::new(&jar).exists() || !available("javac") || !available("java") {
        eprintln!(
            "SKIPPED java_hdrhistogram_reads_the_interval_log_and_its_counts_add_up: needs \
             javac, java and {jar} (apt-get install libhdrhistogram-java)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/IntervalLogTotals.java"
    );
    let mut javac = Command::new("javac");
    javac.args(["-cp", &jar, "-d"]).arg(dir.path()).arg(source);
    run(javac);
    let classpath = format!("{jar}:{}", dir.path().display());

    let server = Server::start(&["--workers", "1"]);
    let port = server.addr.port();
    for (name, extra) in [
        ("open", &["--rate", "500", "--pipeline", "8"][..]),
        ("closed", &[][..]),
    ] {
        let log = dir.path().join(format!("{name}.hlog"));
        let json = dir.path().join(format!("{name}.json"));
        let mut args = vec![
            "-c",
            "2",
            "--cmd",
            "ping",
            "-d",
            "2200ms",
            "--interval-log",
            log.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = client(port, &args);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc = ClientDocument::parse(&fs::read_to_string(&json).unwrap()).unwrap();

        let mut java = Command::new("java");
        java.args(["-cp", &classpath, "IntervalLogTotals"])
            .arg(&log);
        let text = run(java);
        let field = |key: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key} ")))
                .unwrap_or_else(|| panic!("{key} missing from Java's output:\n{text}"))
                .parse()
                .unwrap()
        };
        assert_eq!(field("intervals"), 3, "{name}: 2.2 s is three intervals");
        assert_eq!(
            field("untagged"),
            doc.requests.ok,
            "{name}: Java's interval counts add up to the run's total"
        );
        let uncorrected = if name == "open" { doc.requests.ok } else { 0 };
        assert_eq!(field("uncorrected"), uncorrected, "{name}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            now.abs_diff(field("start")) < 600,
            "{name}: StartTime {text}"
        );
    }
}
