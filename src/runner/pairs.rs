//! Machine limits per host pair in a multi-host run (docs/multi-host.md): the raw echo
//! floor between each client host and each server host, with the echo on the server host
//! and the client on the client host, and compute(n)'s time on each server host. Both
//! sides are the hidden `threadcenter limits-probe` (this module's [`probe`]), started
//! over the fleet's ssh, reusing `ceilings`' echo and compute timing; each prints one
//! JSON line. Everything is bounded: the echo side exits when its ssh stdin closes or
//! after `--max-time`, the client side after its trials, every ssh command within
//! `Fleet::command`'s limit.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{TcpListener, ToSocketAddrs};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::ceilings::{self, ECHO_MAX_CONCURRENCY, ECHO_TRIAL, ECHO_TRIALS};
use super::experiment::Hosts;
use super::launch::Group;
use crate::cli::{Probe, ProbeArgs};
use crate::domain::ClientCmd;
use crate::remote::ssh::{sh_quote, Fleet};
use crate::rundir::{Cell, ComputeTime, HostCompute, LoopbackLevel, PairEcho};

/// The client host's name for a load that runs on the runner's own machine.
const HERE: &str = "local";
/// How long the echo side may live, whatever happens.
const SERVE_LIMIT: Duration = Duration::from_secs(60);
/// How long to wait for the echo side's port.
const PORT_WAIT: Duration = Duration::from_secs(30);

/// What a probe prints.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ProbeOut {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    echo: Vec<LoopbackLevel>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    compute: Vec<ComputeTime>,
}

fn print_json(out: &ProbeOut) -> anyhow::Result<()> {
    let line = serde_json::to_string(out)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    Ok(())
}

/// `threadcenter limits-probe …`: one side of a pair's measurement, on this host.
pub(crate) fn probe(args: &ProbeArgs) -> anyhow::Result<ExitCode> {
    if let Some(cpus) = &args.cpus {
        let list: crate::remote::cpus::CpuList = cpus.parse().map_err(anyhow::Error::msg)?;
        list.apply()
            .with_context(|| format!("cannot pin to CPUs {cpus}"))?;
    }
    // Whatever happens below, this process ends within --max-time.
    let limit = args.max_time;
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        std::process::exit(3);
    });
    match args.probe {
        Probe::EchoServe => serve(args),
        Probe::EchoClient => {
            let addr = (args.address.as_str(), args.port)
                .to_socket_addrs()
                .with_context(|| format!("cannot resolve {}", args.address))?
                .next()
                .with_context(|| format!("{} has no address", args.address))?;
            let payload = ceilings::request_payload(args.payload_n);
            let echo = args
                .levels
                .iter()
                .map(|&c| {
                    ceilings::echo_to(addr, c as usize, &payload, ECHO_TRIALS, ECHO_TRIAL)
                        .unwrap_or_else(|e| {
                            LoopbackLevel::missing(c, format!("the echo failed: {e}"))
                        })
                })
                .collect();
            print_json(&ProbeOut {
                echo,
                ..ProbeOut::default()
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Probe::Compute => {
            let compute = args
                .sizes
                .iter()
                .map(|&n| {
                    ceilings::time_compute(n, ceilings::COMPUTE_SAMPLES, ceilings::COMPUTE_BUDGET)
                })
                .collect();
            print_json(&ProbeOut {
                compute,
                ..ProbeOut::default()
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The echo side: prints its port, echoes every connection on a thread of its own, and
/// exits when stdin closes (the runner is done, or gone).
fn serve(args: &ProbeArgs) -> anyhow::Result<ExitCode> {
    let listener = TcpListener::bind((args.address.as_str(), 0))
        .with_context(|| format!("cannot listen on {}", args.address))?;
    let port = listener.local_addr()?.port();
    print_json(&ProbeOut {
        port: Some(port),
        ..ProbeOut::default()
    })?;
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        std::process::exit(0);
    });
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let _ = std::thread::Builder::new()
            .name("echo".into())
            .stack_size(256 * 1024)
            .spawn(move || ceilings::echo(stream));
    }
    Ok(ExitCode::SUCCESS)
}

/// The pairs' echo floors and the server hosts' compute times of a multi-host run.
pub(crate) fn measure(
    fleet: &Fleet,
    hosts: &Hosts,
    cells: &[Cell],
    interrupted: &AtomicBool,
) -> (Vec<PairEcho>, Vec<HostCompute>) {
    let servers: BTreeSet<&String> = hosts.target_host.values().collect();
    let clients: Vec<Option<&String>> = if hosts.client_hosts.is_empty() {
        vec![None]
    } else {
        hosts.client_hosts.iter().map(Some).collect()
    };
    // Each client host opens its share of a cell's connections (the larger share).
    let n = clients.len() as u64;
    let levels: BTreeSet<u64> = cells
        .iter()
        .map(|c| c.concurrency.div_ceil(n).max(1))
        .filter(|&c| c <= ECHO_MAX_CONCURRENCY)
        .collect();
    let levels: Vec<u64> = levels.into_iter().collect();
    let sizes: BTreeSet<u64> = cells
        .iter()
        .filter(|c| c.cmd == ClientCmd::Compute)
        .map(|c| c.size)
        .collect();
    let payload_n = sizes.last().copied().unwrap_or(500_000);
    let payload_bytes = ceilings::request_payload(payload_n).len();

    let mut pairs = Vec::new();
    let mut computes = Vec::new();
    for server in &servers {
        for client in &clients {
            let mut pair = PairEcho {
                client_host: client.map_or(HERE.to_string(), |c| c.to_string()),
                server_host: server.to_string(),
                payload_bytes,
                echo: Vec::new(),
                note: None,
            };
            if interrupted.load(Ordering::Relaxed) {
                pair.note = Some("interrupted".into());
            } else {
                match echo_pair(fleet, server, *client, &levels, payload_n) {
                    Ok(echo) => pair.echo = echo,
                    Err(e) => pair.note = Some(e),
                }
            }
            pairs.push(pair);
        }
        let mut hc = HostCompute {
            host: server.to_string(),
            compute: Vec::new(),
            note: None,
        };
        if interrupted.load(Ordering::Relaxed) {
            hc.note = Some("interrupted".into());
        } else if !sizes.is_empty() {
            let list: Vec<String> = sizes.iter().map(u64::to_string).collect();
            match run_probe(
                fleet,
                Some(server),
                &["compute", "--sizes", &list.join(",")],
            ) {
                Ok(out) => hc.compute = out.compute,
                Err(e) => hc.note = Some(e),
            }
        }
        computes.push(hc);
    }
    (pairs, computes)
}

/// `limits-probe WORDS` on `host` (or here), pinned to its `cpus`; its JSON line.
fn run_probe(fleet: &Fleet, host: Option<&str>, words: &[&str]) -> Result<ProbeOut, String> {
    let mut args: Vec<String> = vec!["limits-probe".into()];
    args.extend(words.iter().map(|w| w.to_string()));
    let text = match host {
        Some(h) => {
            let binary = fleet.prepare(h)?;
            if let Some(c) = &fleet.hosts[h].cpus {
                args.extend(["--cpus".into(), c.clone()]);
            }
            let line: Vec<String> = std::iter::once(binary)
                .chain(args.iter().map(|a| sh_quote(a)))
                .collect();
            fleet
                .command(h, &line.join(" "), None)
                .map_err(|e| format!("host {h}: {e}"))?
        }
        None => {
            let out = std::process::Command::new(fleet.exe())
                .args(&args)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run the probe here: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "the probe here failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| format!("the probe printed {line:?}: {e}"))
}

/// The echo on `server`, the client side on `client` (or here), at each level.
fn echo_pair(
    fleet: &Fleet,
    server: &str,
    client: Option<&String>,
    levels: &[u64],
    payload_n: u64,
) -> Result<Vec<LoopbackLevel>, String> {
    let spec = &fleet.hosts[server];
    let binary = fleet.prepare(server)?;
    let mut words = vec![
        binary,
        "limits-probe".into(),
        "echo-serve".into(),
        "--address".into(),
        sh_quote(&spec.address),
        "--max-time".into(),
        format!("{}s", SERVE_LIMIT.as_secs()),
    ];
    if let Some(c) = &spec.cpus {
        words.extend(["--cpus".into(), sh_quote(c)]);
    }
    // `exec`: the probe is the session's process, its stdin the channel; it exits when
    // the runner closes that (below, or by dying).
    let mut cmd = fleet.ssh(server, &format!("exec {}", words.join(" ")));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut group = Group::spawn_with_stdin(&mut cmd)
        .map_err(|e| format!("cannot start ssh: {e}; install the OpenSSH client"))?;
    let stdin = group.take_stdin();
    let stdout = group.take_stdout().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let started = Instant::now();
    let result = match rx.recv_timeout(PORT_WAIT) {
        Ok(line) => match serde_json::from_str::<ProbeOut>(line.trim()) {
            Ok(ProbeOut {
                port: Some(port), ..
            }) => {
                let list: Vec<String> = levels.iter().map(u64::to_string).collect();
                let port = port.to_string();
                let payload = payload_n.to_string();
                run_probe(
                    fleet,
                    client.map(String::as_str),
                    &[
                        "echo-client",
                        "--address",
                        &spec.address,
                        "--port",
                        &port,
                        "--levels",
                        &list.join(","),
                        "--payload-n",
                        &payload,
                    ],
                )
                .map(|o| o.echo)
            }
            _ => Err(format!(
                "host {server}: the echo did not start (it printed {:?})",
                line.trim()
            )),
        },
        Err(_) => Err(format!(
            "host {server}: the echo gave no port within {}s",
            started.elapsed().as_secs()
        )),
    };
    drop(stdin);
    let _ = group.stop(Duration::from_secs(2));
    result
}
