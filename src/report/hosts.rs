//! report.md's "Hosts" section for a multi-host run (hosts.csv): each cell's hosts with
//! their share of the load and their CPU, the start-skew bound, and the client hosts
//! that were CPU-saturated (the generator, not the server, may have set the figures).
//! Then the machine limits per host pair (manifest.json `limits.pairs` and
//! `server_host_compute`). Empty for a run without hosts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::load::RunData;
use crate::rundir::hosts::{HostRow, Role};
use crate::rundir::Status;

/// A client host busy above this share of its capacity over the measured window may
/// have limited the measurement.
pub(crate) const SATURATED_PCT: f64 = 90.0;

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = v.filter(|x| x.is_finite()).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

pub(crate) fn markdown(data: &RunData) -> String {
    if data.hosts.is_empty() {
        return String::new();
    }
    let mut groups: BTreeMap<(String, u8, String), Vec<&HostRow>> = BTreeMap::new();
    for h in &data.hosts {
        let role = match h.role {
            Role::Server => 0,
            Role::Client => 1,
        };
        groups
            .entry((h.cell_id.clone(), role, h.host.clone()))
            .or_default()
            .push(h);
    }
    let mut w = String::new();
    let _ = writeln!(w, "## Hosts\n");
    let _ = writeln!(
        w,
        "Each cell's hosts (hosts.csv), means over the host's successful repetitions. A client \
         row is that host's share of the load; the cell's figures above are the exact merge of \
         their histograms and the sum of their throughputs. CPU: the process group started there \
         (% of one core) and the whole host's busy time (% of its `cpus`, or of all its cores).\n"
    );
    let _ = writeln!(
        w,
        "| cell | role | host | runs ok | throughput (req/s) | p50 | p99 | CPU group | CPU host | |"
    );
    let _ = writeln!(w, "|---|---|---|--:|--:|--:|--:|--:|--:|---|");
    let mut saturated: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ((cell, role, host), rows) in &groups {
        let ok: Vec<&&HostRow> = rows.iter().filter(|h| h.status == Status::Ok).collect();
        let m = |f: &dyn Fn(&HostRow) -> Option<f64>| mean(ok.iter().filter_map(|h| f(h)));
        let cpu_host = m(&|h| h.cpu_host_pct);
        let cores = ok.iter().find_map(|h| h.cpu_host_cores);
        let flag = *role == 1 && cpu_host.is_some_and(|c| c >= SATURATED_PCT);
        if flag {
            saturated
                .entry(host.clone())
                .or_default()
                .push(cell.clone());
        }
        let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("–".to_string(), f);
        let _ = writeln!(
            w,
            "| {cell} | {} | {host} | {}/{} | {} | {} | {} | {} | {} | {} |",
            if *role == 0 { "server" } else { "client" },
            ok.len(),
            rows.len(),
            opt(m(&|h| h.throughput_rps), &super::markdown::fmt_rps),
            opt(m(&|h| h.latency_p50_us), &super::markdown::fmt_us),
            opt(m(&|h| h.latency_p99_us), &super::markdown::fmt_us),
            opt(m(&|h| h.cpu_group_pct), &|v| format!("{v:.0}%")),
            opt(cpu_host, &|v| format!(
                "{v:.0}% of {}",
                cores.map_or("?".into(), |c| format!(
                    "{c} core{}",
                    if c == 1 { "" } else { "s" }
                ))
            )),
            if flag { "**saturated**" } else { "" },
        );
    }
    let skew = data
        .hosts
        .iter()
        .filter_map(|h| h.start_skew_bound_ms)
        .fold(f64::NAN, f64::max);
    if skew.is_finite() {
        let _ = writeln!(
            w,
            "\nThe client hosts began measuring at most {skew:.1} ms apart in any run: the runner \
             sent one `go` to every host and each answered the moment it started, so each start lies \
             between its `go` and its answer (no clock is compared)."
        );
    }
    for (host, cells) in &saturated {
        let _ = writeln!(
            w,
            "\n**Client host {host} was CPU-saturated** (≥ {SATURATED_PCT:.0}% of its capacity) in \
             {}: the load generator may have limited those measurements. Add client hosts, or give \
             this one more `cpus`.",
            cells.join(", ")
        );
    }
    pairs_table(&mut w, data);
    w.push('\n');
    w
}

/// The echo floor of each client host → server host pair, beside the runner's own
/// loopback floor at the same connection count, and compute(n) on each server host.
fn pairs_table(w: &mut String, data: &RunData) {
    let Some(limits) = data.manifest.limits.as_ref() else {
        return;
    };
    if limits.pairs.is_empty() && limits.server_host_compute.is_empty() {
        return;
    }
    let _ = writeln!(w, "\n### Machine limits per host pair\n");
    let _ = writeln!(
        w,
        "The raw framed echo (no JSON, no pool) with the echo on the server host and the \
         client on the client host, at the connections one client host opens in the run's \
         cells; best of {} trials. Beside it, the runner's own loopback echo at that many \
         connections (Machine limits above).\n",
        limits.loopback.trials
    );
    let _ = writeln!(
        w,
        "| client host | server host | connections | echo (round trips/s) | p50 | p99 | loopback here (round trips/s) |"
    );
    let _ = writeln!(w, "|---|---|--:|--:|--:|--:|--:|");
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("–".to_string(), f);
    for p in &limits.pairs {
        if p.echo.is_empty() {
            let _ = writeln!(
                w,
                "| {} | {} | – | not measured: {} | | | |",
                p.client_host,
                p.server_host,
                p.note.as_deref().unwrap_or("no level")
            );
        }
        for l in &p.echo {
            let here = limits
                .loopback_at(l.concurrency)
                .and_then(|h| h.round_trips_per_s);
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} |",
                p.client_host,
                p.server_host,
                l.concurrency,
                match (l.round_trips_per_s, &l.note) {
                    (Some(r), _) => format!("{r:.0}"),
                    (None, Some(n)) => format!("not measured: {n}"),
                    (None, None) => "–".into(),
                },
                opt(l.p50_us, &super::markdown::fmt_us),
                opt(l.p99_us, &super::markdown::fmt_us),
                opt(here, &|v| format!("{v:.0}")),
            );
        }
    }
    if !limits.server_host_compute.is_empty() {
        let _ = writeln!(
            w,
            "\ncompute(n) on each server host, fastest of its timings (pinned to its `cpus`), \
             beside the runner's own:\n"
        );
        let _ = writeln!(w, "| server host | n | time | time here |");
        let _ = writeln!(w, "|---|--:|--:|--:|");
        for h in &limits.server_host_compute {
            if h.compute.is_empty() {
                let _ = writeln!(
                    w,
                    "| {} | – | {} | |",
                    h.host,
                    h.note
                        .as_deref()
                        .map_or("no compute size".into(), |n| format!("not measured: {n}"))
                );
            }
            for t in &h.compute {
                let here = limits.compute_of(t.size).map(|c| c.min_s * 1e6);
                let _ = writeln!(
                    w,
                    "| {} | {} | {} | {} |",
                    h.host,
                    t.size,
                    super::markdown::fmt_us(t.min_s * 1e6),
                    opt(here, &super::markdown::fmt_us),
                );
            }
        }
    }
}
