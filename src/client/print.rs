//! The human summary on stdout: target, load, counts, failures by kind, window,
//! throughput, percentiles. Durations and latencies in `crate::human`'s format.

use std::io::{self, Write};
use std::net::SocketAddr;

use super::report::{LatencyUs, Report, LATE_THRESHOLD};
use super::{LoadConfig, Mode};
use crate::human;

/// Writes the summary of `report` to `w`.
pub(crate) fn print_report<W: Write>(report: &Report, w: &mut W) -> io::Result<()> {
    print_target(&report.config, report.addr, w)?;
    print_results(report, w)
}

/// The first line: where the load goes and what it asks (on a terminal, printed as
/// soon as the server accepted a connection).
pub(crate) fn print_target<W: Write>(
    cfg: &LoadConfig,
    addr: SocketAddr,
    w: &mut W,
) -> io::Result<()> {
    let what = match cfg.cmd {
        crate::domain::ClientCmd::Compute => format!("compute n={}", cfg.size),
        crate::domain::ClientCmd::Ping => "ping".to_string(),
    };
    writeln!(w, "target      {addr} ({what})")
}

/// Everything after the target line.
///
/// Longer than most (~80 lines): the summary screen top to bottom, a few lines per
/// block in the order a person reads it; the blocks share the widths and units.
pub(crate) fn print_results<W: Write>(report: &Report, w: &mut W) -> io::Result<()> {
    let cfg = &report.config;
    let span = match cfg.mode {
        Mode::Requests(n) => format!("x {}", human::count(n, "request", "requests")),
        Mode::Duration(d) => format!("for {}", human::duration(d)),
    };
    let load = match &report.open {
        None => format!(
            "{} on {} {span}, one request at a time per connection",
            human::count(cfg.concurrency as u64, "connection", "connections"),
            human::count(cfg.threads as u64, "thread", "threads")
        ),
        Some(o) => format!(
            "open loop, {} req/s over {} on {} {span}, up to {} in flight each",
            o.rate,
            human::count(cfg.concurrency as u64, "connection", "connections"),
            human::count(cfg.threads as u64, "thread", "threads"),
            o.pipeline
        ),
    };
    write!(w, "load        {load}")?;
    if !cfg.warmup.is_zero() {
        write!(w, ", after {} of warm-up", human::duration(cfg.warmup))?;
    }
    writeln!(w)?;
    writeln!(
        w,
        "requests    {} ok, {} failed",
        report.ok,
        report.failed()
    )?;
    let failed = report.failures.nonzero();
    if !failed.is_empty() {
        let list: Vec<String> = failed.iter().map(|(k, n)| format!("{k} {n}")).collect();
        writeln!(w, "failed      {}", list.join(", "))?;
        for (kind, message) in &report.first_errors {
            writeln!(w, "            first {kind}: {message}")?;
        }
    }
    writeln!(w, "elapsed     {:.3} s", report.elapsed.as_secs_f64())?;
    writeln!(w, "throughput  {:.2} req/s", report.throughput_rps())?;
    if let Some(o) = &report.open {
        writeln!(
            w,
            "rate        offered {:.2} req/s, sent {:.2} req/s ({} of {} requests sent)",
            o.rate,
            o.achieved_rps(),
            o.sent,
            report.sent()
        )?;
        let l = o.lateness_us();
        writeln!(
            w,
            "lateness    {} sends >= {} late ({} of them the client's own); p50 {}, p99 {}, max {}",
            o.late,
            human::duration(LATE_THRESHOLD),
            o.late_own,
            human::latency_us(l.p50),
            human::latency_us(l.p99),
            human::latency_us(l.max)
        )?;
        writeln!(
            w,
            "client      {:.2} cores of CPU; event-loop threads busy {:.0}% (busiest {:.0}%)",
            report.cpu.cores_used(),
            o.busy_mean * 100.0,
            o.busy_max * 100.0
        )?;
    }
    if report.ok == 0 {
        writeln!(w, "latency     no successful request to measure")?;
        return Ok(());
    }
    latency_header(w)?;
    match &report.open {
        None => latency_row(w, "", &report.latency_us()),
        Some(o) => {
            latency_row(w, "corrected", &report.latency_us())?;
            latency_row(w, "uncorrected", &LatencyUs::from_histogram(&o.uncorrected))?;
            writeln!(
                w,
                "            (corrected: from each request's intended send time; uncorrected: from its actual send)"
            )
        }
    }
}

const PERCENTILES: [&str; 6] = ["mean", "p50", "p90", "p99", "p99.9", "max"];

fn latency_header<W: Write>(w: &mut W) -> io::Result<()> {
    write!(w, "latency    ")?;
    for name in PERCENTILES {
        write!(w, " {name:>9}")?;
    }
    writeln!(w)
}

/// One row of latency figures under [`latency_header`], `label` in the first column.
fn latency_row<W: Write>(w: &mut W, label: &str, l: &LatencyUs) -> io::Result<()> {
    write!(w, "{label:<11}")?;
    for us in [l.mean, l.p50, l.p90, l.p99, l.p99_9, l.max] {
        write!(w, " {:>9}", human::latency_us(us))?;
    }
    writeln!(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::report::Failures;
    use crate::client::LoadConfig;
    use crate::domain::ClientCmd;
    use std::time::Duration;

    fn report(ok: u64, failures: Failures) -> Report {
        let mut histogram = crate::hdr::new_latency_histogram();
        for i in 0..ok {
            histogram.record(100_000 + i * 1000).unwrap();
        }
        Report {
            config: LoadConfig {
                host: "127.0.0.1".into(),
                port: 5050,
                cmd: ClientCmd::Compute,
                size: 1000,
                concurrency: 2,
                threads: 1,
                mode: Mode::Requests(5),
                warmup: Duration::ZERO,
                timeout: Duration::from_secs(1),
                model: crate::client::LoadModel::Closed,
                intervals: false,
                tls: false,
                ca: None,
                ids: crate::client::ids::IdStyle::Uuid,
                wait_go: false,
            },
            addr: "127.0.0.1:5050".parse().unwrap(),
            ok,
            failures,
            elapsed: Duration::from_millis(500),
            histogram,
            first_errors: [("timeout".to_string(), "no response within 1 s".to_string())]
                .into_iter()
                .collect(),
            measure_start: std::time::SystemTime::now(),
            intervals: None,
            open: None,
            cpu: Default::default(),
            warnings: Vec::new(),
        }
    }

    fn printed(r: &Report) -> String {
        let mut out = Vec::new();
        print_report(r, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn summary_lines() {
        let text = printed(&report(10, Failures::default()));
        assert!(text.contains("requests    10 ok, 0 failed\n"), "{text}");
        assert!(text.contains("throughput  20.00 req/s\n"), "{text}");
        assert!(text.contains("elapsed     0.500 s\n"), "{text}");
        assert!(text.contains("p99.9"), "{text}");
        assert!(
            text.contains("load        2 connections on 1 thread x 5 requests"),
            "{text}"
        );
        assert!(!text.contains("failed      "), "{text}");

        let mut f = Failures {
            timeout: 2,
            ..Default::default()
        };
        f.add_server_error("OVERLOADED", 1);
        let text = printed(&report(0, f));
        assert!(text.contains("requests    0 ok, 3 failed\n"), "{text}");
        assert!(
            text.contains("failed      timeout 2, server error OVERLOADED 1\n"),
            "{text}"
        );
        assert!(
            text.contains("first timeout: no response within 1 s"),
            "{text}"
        );
        assert!(text.contains("no successful request"), "{text}");
    }
}
