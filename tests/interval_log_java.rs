//! `client --interval-log` against Java HdrHistogram's own `HistogramLogReader` (what
//! HistogramLogAnalyzer and HistogramLogProcessor use): it must read every interval, and
//! their counts must add up to the run's total. Ignored by a plain `cargo test`; run with
//! `-- --ignored` where `javac` and the HdrHistogram jar are installed (Debian:
//! `apt-get install default-jdk-headless libhdrhistogram-java`; or set HDRHISTOGRAM_JAR),
//! as .ci/run does. There, a missing peer fails the test.

mod common;
mod sut;

use common::client_json;
use common::java::Java;
use sut::Server;

#[test]
#[ignore = "needs Java HdrHistogram: apt-get install default-jdk-headless libhdrhistogram-java"]
fn java_hdrhistogram_reads_the_interval_log_and_its_counts_add_up() {
    let java = Java::compile("IntervalLogTotals.java");
    let dir = java.dir.path();

    let server = Server::start(&["--workers", "1"]);
    let port = server.addr.port();
    for (name, extra) in [
        ("open", &["--rate", "500", "--pipeline", "8"][..]),
        ("closed", &[][..]),
    ] {
        let log = dir.join(format!("{name}.hlog"));
        let mut args = vec![
            "-c",
            "2",
            "--cmd",
            "ping",
            "-d",
            "2200ms",
            "--interval-log",
            log.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let (out, doc) = client_json(port, &args, dir, name);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let text = java.run("IntervalLogTotals", &[&log], b"");
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
