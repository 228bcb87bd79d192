//! The hidden `limits-probe` subcommand a multi-host run starts on its hosts to measure
//! the machine limits per pair (docs/multi-host.md), here with both sides on loopback:
//! the echo side prints its port and leaves when its stdin closes, the client side
//! measures round trips through it, and compute times each size.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::ChildGuard;

const BIN: &str = env!("CARGO_BIN_EXE_threadcenter");

fn json(out: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(out);
    serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

#[test]
fn the_echo_side_serves_the_client_side_and_leaves_when_its_stdin_closes() {
    let mut cmd = Command::new(BIN);
    cmd.args(["limits-probe", "echo-serve", "--address", "127.0.0.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut serve = ChildGuard::spawn(cmd).unwrap();
    let stdout = serve.child_mut().stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let port = json(line.as_bytes())["port"].as_u64().expect("a port") as u16;
    assert_ne!(port, 0);

    let out = common::threadcenter(&[
        "limits-probe",
        "echo-client",
        "--address",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--levels",
        "1,3",
        "--payload-n",
        "1000",
    ]);
    assert!(out.status.success(), "{}", common::explain(&out));
    let echo = json(&out.stdout)["echo"].as_array().unwrap().clone();
    let levels: Vec<u64> = echo
        .iter()
        .map(|l| l["concurrency"].as_u64().unwrap())
        .collect();
    assert_eq!(levels, [1, 3]);
    for l in &echo {
        assert!(l["round_trips_per_s"].as_f64().unwrap() > 0.0, "{l}");
        assert!(l["p50_us"].as_f64().unwrap() > 0.0, "{l}");
    }

    // The runner closing the ssh session's stdin ends the echo side.
    drop(serve.child_mut().stdin.take());
    let status = serve.wait_timeout(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "the echo side did not leave when its stdin closed: {status:?}"
    );
}

#[test]
fn an_echo_client_with_nothing_to_reach_says_so_per_level() {
    // A port nothing listens on (bound, then released).
    let port = common::free_port().to_string();
    let out = common::threadcenter(&[
        "limits-probe",
        "echo-client",
        "--port",
        &port,
        "--levels",
        "2",
    ]);
    assert!(out.status.success(), "{}", common::explain(&out));
    let level = &json(&out.stdout)["echo"][0];
    assert!(level["round_trips_per_s"].is_null(), "{level}");
    assert!(
        level["note"].as_str().unwrap().contains("the echo failed"),
        "{level}"
    );
}

#[test]
fn compute_is_timed_for_each_size() {
    let out = common::threadcenter(&["limits-probe", "compute", "--sizes", "1000,20000"]);
    assert!(out.status.success(), "{}", common::explain(&out));
    let compute = json(&out.stdout)["compute"].as_array().unwrap().clone();
    let sizes: Vec<u64> = compute
        .iter()
        .map(|c| c["size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, [1000, 20000]);
    assert!(compute.iter().all(|c| c["min_s"].as_f64().unwrap() > 0.0));
}
