//! The .hgrm writer against Java HdrHistogram itself: Java decodes our base64 V2
//! histograms and prints them with `outputPercentileDistribution(out, 1000.0)`; the text
//! must be identical to `write_hgrm`. Ignored by a plain `cargo test`; run with
//! `-- --ignored` where `javac` and the HdrHistogram jar are installed (Debian:
//! `apt-get install default-jdk-headless libhdrhistogram-java`; or set HDRHISTOGRAM_JAR
//! to the jar's path), as .ci/run does. There, a missing peer fails the test.

mod common;

use common::java::Java;
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

#[test]
#[ignore = "needs Java HdrHistogram: apt-get install default-jdk-headless libhdrhistogram-java"]
fn hgrm_is_identical_to_java_hdrhistogram() {
    let java = Java::compile("HgrmFromBase64.java");

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
    let theirs = java.run("HgrmFromBase64", &[], input.as_bytes());

    let ours: Vec<&str> = ours.split("--- end\n").collect();
    let theirs: Vec<&str> = theirs.split("--- end\n").collect();
    assert_eq!(ours.len(), theirs.len());
    for ((name, _), (a, b)) in cases.iter().zip(ours.iter().zip(&theirs)) {
        assert_eq!(a, b, "{name}: ours (left) differs from Java's (right)");
    }
}
