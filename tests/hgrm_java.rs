//! The .hgrm writer against Java HdrHistogram itself: Java decodes our base64 V2
//! histograms and prints them with `outputPercentileDistribution(out, 1000.0)`; the text
//! must be identical to `write_hgrm`. Skipped with a notice where `javac` or the
//! HdrHistogram jar is missing (Debian: `apt-get install libhdrhistogram-java`; or set
//! HDRHISTOGRAM_JAR to the jar's path).

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::ChildGuard;
use hdrhistogram::Histogram;
use threadcenter::hdr::{encode_base64_v2, new_latency_histogram, write_hgrm};

/// Deterministic histograms covering single values, ties, wide ranges and large counts.
fn histograms() -> Vec<(&'static str, Histogram<u64>)> {
    let mut x: u64 = 88172645463325252;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut cases: Vec<(&'static str, Vec<(u64, u64)>)> = vec![
        ("four", vec![(1, 1), (2, 1), (3, 1), (4, 1)]),
        ("one", vec![(1000, 1)]),
        ("empty", vec![]),
    ];
    cases.push((
        "latency-like",
        (0..50_000)
            .map(|_| {
                let r = next();
                (20_000 + (r % 1000) * (r % 1000) * (1 + r % 40), 1)
            })
            .collect(),
    ));
    cases.push((
        "wide",
        (0..100_000)
            .map(|_| {
                let r = next();
                (1 + (r % 1_000_000_007) * (1 + r % 3000), 1 + r % 5)
            })
            .collect(),
    ));
    cases.push((
        "bimodal",
        (0..10_000u64)
            .map(|i| {
                if i % 100 == 0 {
                    (5_000_000_000 + i, 1)
                } else {
                    (150_000 + i * 7, 3)
                }
            })
            .collect(),
    ));
    cases
        .into_iter()
        .map(|(name, values)| {
            let mut h = new_latency_histogram();
            for (v, n) in values {
                h.record_n(v, n).unwrap();
            }
            (name, h)
        })
        .collect()
}

fn available(tool: &str) -> bool {
    Command::new(tool)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cmd` under a guard, feeding `input`, bounded in time; returns stdout.
fn run(mut cmd: Command, input: &[u8]) -> String {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut guard = ChildGuard::spawn(cmd).expect("spawn");
    let mut stdin = guard.child_mut().stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = guard.child_mut().stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
        s
    });
    let status = guard
        .wait_timeout(Duration::from_secs(120))
        .expect("java did not finish in time");
    feeder.join().unwrap();
    assert!(status.success(), "{status:?}");
    reader.join().unwrap()
}

#[test]
fn hgrm_is_identical_to_java_hdrhistogram() {
    let jar = std::env::var("HDRHISTOGRAM_JAR")
        .unwrap_or_else(|_| "/usr/share/java/hdrhistogram.jar".to_string());
    if !Path::new(&jar).exists() || !available("javac") || !available("java") {
        eprintln!(
            "SKIPPED hgrm_is_identical_to_java_hdrhistogram: needs javac, java and {jar} \
             (apt-get install libhdrhistogram-java)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/HgrmFromBase64.java"
    );
    let mut javac = Command::new("javac");
    javac.args(["-cp", &jar, "-d"]).arg(dir.path()).arg(source);
    run(javac, b"");

    let cases = histograms();
    let mut input = String::new();
    let mut ours = String::new();
    for (_, h) in &cases {
        input.push_str(&encode_base64_v2(h));
        input.push('\n');
        let mut text = Vec::new();
        write_hgrm(h, 1000.0, &mut text).unwrap();
        ours.push_str(&String::from_utf8(text).unwrap());
        ours.push_str("--- end\n");
    }
    let classpath = format!("{jar}:{}", dir.path().display());
    let mut java = Command::new("java");
    java.args(["-cp", &classpath, "HgrmFromBase64"]);
    let theirs = run(java, input.as_bytes());

    let ours: Vec<&str> = ours.split("--- end\n").collect();
    let theirs: Vec<&str> = theirs.split("--- end\n").collect();
    assert_eq!(ours.len(), theirs.len());
    for ((name, _), (a, b)) in cases.iter().zip(ours.iter().zip(&theirs)) {
        assert_eq!(a, b, "{name}: ours (left) differs from Java's (right)");
    }
}
