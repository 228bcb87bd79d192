//! The experiment runner (`threadcenter run FILE.toml`): checks the experiment file,
//! expands its matrix, runs every cell × repetition in the recorded order with the real
//! server and client as child processes, writes the raw files of the run directory, then
//! renders the report from them (`report::render`, the same as `threadcenter report`).
//!
//! Modules: `experiment` (the file), `matrix` (cells and order), `launch` (process groups),
//! `cpu` (sampling), `ceilings` (machine limits), `pairs` (the limits per host pair of
//! a multi-host run), `cell` (one cell × repetition), `store`
//! (the run directory), `progress` (bar or plain lines), `stats` (the server's `stats`
//! around each measured window), `tls` (the certificate of a run with TLS targets),
//! `container` (targets run as containers), `overrides` (`--set` and friends, applied
//! to the file), `preflight` (the programs a run starts, checked before it starts),
//! `wording` (serde's errors in the file's terms).

pub(crate) mod ceilings;
pub(crate) mod cell;
pub(crate) mod container;
pub(crate) mod cpu;
pub(crate) mod event_echo;
pub mod experiment;
pub(crate) mod launch;
pub(crate) mod matrix;
pub(crate) mod multihost;
pub(crate) mod overrides;
pub(crate) mod pairs;
pub(crate) mod preflight;
pub(crate) mod progress;
pub(crate) mod stats;
pub mod store;
pub(crate) mod tls;
pub(crate) mod wording;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;

use crate::cli::RunArgs;
use crate::rundir::{self, varying_axes, Manifest, ResultRow, RunStatus, Status};
use experiment::{Experiment, Order, TargetKind};
use matrix::Slot;

/// Exit status of a run whose cells all succeeded, of one with failed cells, and of one
/// stopped by Ctrl-C (the shell's 128 + SIGINT).
pub const EXIT_FAILED_CELLS: u8 = 1;
pub const EXIT_INTERRUPTED: u8 = 130;

/// `1s`, `250ms`, `1500ms`, `10us`: what `parse_duration` reads back exactly.
pub fn fmt_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}us", d.as_micros())
    }
}

/// Runs the experiment `args` names; `render` writes the run's report from its directory
/// once the cells are done (the report is the caller's, so the runner does not know it).
pub fn run(
    args: &RunArgs,
    render: &dyn Fn(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<ExitCode> {
    let plan = Plan::new(args)?;
    container::preflight(&plan.exp)?;
    let exe = std::env::current_exe()
        .context("cannot find this executable to run the server and client")?;
    let fleet = (!plan.exp.hosts.hosts.is_empty())
        .then(|| crate::remote::ssh::Fleet::new(plan.exp.hosts.hosts.clone(), &exe))
        .transpose()?;
    if args.dry_run {
        print_plan(&plan);
        if let Some(fleet) = &fleet {
            fleet.dry_run()?;
        }
        return Ok(ExitCode::SUCCESS);
    }

    launch::become_subreaper();
    let interrupted = install_interrupt_handler()?;
    let sys = cpu::Sampler::system()?;
    let (dir, mut manifest) = open_run_dir(&plan, &args.out, &sys)?;
    let mut results = rundir::ResultsWriter::create(&dir)?;
    let run_cert = if plan.exp.targets.values().any(|t| t.tls) {
        Some(tls::RunCert::generate(&dir)?)
    } else {
        None
    };
    let exp = &plan.exp;
    let progress = progress::Progress::new(plan.slots.len());
    // The plan line first, so that a Ctrl-C while the limits are measured comes after it.
    progress.note(&format!(
        "threadcenter run {}: {}{} → {}",
        exp.name,
        plan.size(),
        estimate(exp, plan.slots.len()).map_or(String::new(), |d| format!(", about {d}")),
        dir.display()
    ));
    measure_limits(&plan, &dir, &mut manifest, &interrupted, fleet.as_ref())?;
    let env = cell::Env {
        exe: &exe,
        exp,
        dir: &dir,
        exp_dir: exp_dir(exp),
        interrupted: &interrupted,
        tls: run_cert.as_ref(),
        fleet: fleet.as_ref(),
    };
    let run_started = Instant::now();
    run_cells(&env, &plan, sys, &progress, &mut manifest, &mut results)?;
    progress.finish();
    finish(
        args,
        render,
        &plan,
        &dir,
        &mut manifest,
        run_started,
        &interrupted,
    )
}

/// What a run executes: the experiment, its cells' ids, and its runs in their order.
struct Plan {
    exp: Experiment,
    /// `c001`, `c002`, … in matrix order.
    ids: Vec<String>,
    slots: Vec<Slot>,
    /// The seed of a shuffled order (the command line's, the file's, or drawn now).
    seed: Option<u64>,
    /// The command line's overrides of the file, as applied.
    overrides: Vec<overrides::Override>,
}

/// What `{dir}` stands for: the experiment file's directory, absolute when it can be.
fn exp_dir(exp: &Experiment) -> PathBuf {
    let dir = exp
        .path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

impl Plan {
    fn new(args: &RunArgs) -> anyhow::Result<Plan> {
        let overrides = overrides::from_args(args)?;
        let exp = experiment::load_with(&args.file, &overrides)?;
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        preflight::check(&exp, &exp_dir(&exp), &cwd)?;
        let seed = match exp.settings.order {
            Order::Shuffled => Some(args.seed.or(exp.settings.seed).unwrap_or_else(rand::random)),
            Order::Sequential | Order::Interleaved => None,
        };
        let slots = match exp.settings.order {
            Order::Interleaved => {
                matrix::schedule_interleaved(&exp.cells, exp.settings.repetitions)
            }
            _ => matrix::schedule(exp.cells.len(), exp.settings.repetitions, seed),
        };
        let ids: Vec<String> = (0..exp.cells.len())
            .map(|i| matrix::cell_id(i, exp.cells.len()))
            .collect();
        Ok(Plan {
            exp,
            ids,
            slots,
            seed,
            overrides,
        })
    }

    /// `2 cells × 3 repetitions = 6 runs`.
    fn size(&self) -> String {
        use crate::human::count;
        format!(
            "{} × {} = {}",
            count(self.exp.cells.len() as u64, "cell", "cells"),
            count(
                u64::from(self.exp.settings.repetitions),
                "repetition",
                "repetitions"
            ),
            count(self.slots.len() as u64, "run", "runs"),
        )
    }

    /// The runs' names, `c001-r1`, … in the order they run.
    fn run_names(&self) -> Vec<String> {
        self.slots
            .iter()
            .map(|s| rundir::run_name(&self.ids[s.cell], s.rep))
            .collect()
    }
}

/// Creates the run directory: the experiment file, and the manifest with the machine.
fn open_run_dir(
    plan: &Plan,
    out: &Path,
    sys: &sysinfo::System,
) -> anyhow::Result<(PathBuf, Manifest)> {
    let exp = &plan.exp;
    let machine = store::machine_info(sys);
    let dir = rundir::create_run_dir(out, &exp.name)?;
    std::fs::write(dir.join(rundir::EXPERIMENT_FILE), &exp.source)
        .with_context(|| format!("cannot write {}", dir.display()))?;
    let mut manifest = store::new_manifest(exp, machine, &plan.ids, plan.seed, plan.run_names());
    manifest.experiment.overrides = plan.overrides.iter().map(|o| o.entry()).collect();
    manifest.write(&dir).context("cannot write manifest.json")?;
    Ok((dir, manifest))
}

/// Measures the machine's limits before the first cell and records them in the manifest.
fn measure_limits(
    plan: &Plan,
    dir: &Path,
    manifest: &mut Manifest,
    interrupted: &AtomicBool,
    fleet: Option<&crate::remote::ssh::Fleet>,
) -> anyhow::Result<()> {
    // After `machine_info` read the load average: this measurement loads the machine.
    eprintln!(
        "threadcenter run {}: measuring the machine's limits (loopback echo, compute)…",
        plan.exp.name
    );
    let mut limits = ceilings::measure(&plan.exp.cells, interrupted);
    if let Some(fleet) = fleet {
        eprintln!(
            "threadcenter run {}: measuring the limits per host pair (echo between hosts, compute on the server hosts)…",
            plan.exp.name
        );
        (limits.pairs, limits.server_host_compute) =
            pairs::measure(fleet, &plan.exp.hosts, &plan.exp.cells, interrupted);
    }
    manifest.limits = Some(limits);
    manifest.write(dir).context("cannot write manifest.json")
}

/// Runs every cell × repetition in the plan's order (until Ctrl-C), appending each
/// row to results.csv and counting it in the manifest as it ends.
fn run_cells(
    env: &cell::Env<'_>,
    plan: &Plan,
    sys: sysinfo::System,
    progress: &progress::Progress,
    manifest: &mut Manifest,
    results: &mut rundir::ResultsWriter,
) -> anyhow::Result<()> {
    let label_axes = label_axes(&plan.exp.cells);
    let mut sys = Some(sys);
    for (i, slot) in plan.slots.iter().enumerate() {
        if env.interrupted.load(Ordering::Relaxed) {
            break;
        }
        let seq = i + 1;
        let id = &plan.ids[slot.cell];
        let cell = &plan.exp.cells[slot.cell];
        let what = format!(
            "{id} r{} {}",
            slot.rep,
            crate::rundir::axes_label(label_axes.iter().map(|&a| (a, cell.get(a))))
        );
        progress.start(seq, &what);
        let row = cell::run(env, &mut sys, id, cell, slot.rep, seq);
        if row.status == Status::Failed && env.interrupted.load(Ordering::Relaxed) {
            // Cut short by Ctrl-C: not a failure of the cell, and nothing measured. It is
            // not run, like the runs after it.
            progress.done(seq, &what, "cut short by Ctrl-C: not run");
            break;
        }
        results.append(&row)?;
        manifest.runs_done += 1;
        if row.status == Status::Failed {
            manifest.runs_failed += 1;
        }
        manifest
            .write(env.dir)
            .context("cannot update manifest.json")?;
        progress.done(seq, &what, &describe(&row));
        if seq < plan.slots.len() {
            sleep_unless(plan.exp.settings.cooldown, env.interrupted);
        }
    }
    Ok(())
}

/// The axes a progress line names: those that vary, and concurrency always, so a
/// one-cell run's lines still say what runs (as report.md names cells).
fn label_axes(cells: &[rundir::Cell]) -> Vec<rundir::Axis> {
    let mut axes = varying_axes(cells);
    if !axes.contains(&rundir::Axis::Concurrency) {
        axes.push(rundir::Axis::Concurrency);
        axes.sort();
    }
    axes
}

/// Closes the manifest, renders the report, points `latest` at the run, and says how
/// it went; the exit status.
fn finish(
    args: &RunArgs,
    render: &dyn Fn(&Path) -> anyhow::Result<()>,
    plan: &Plan,
    dir: &Path,
    manifest: &mut Manifest,
    run_started: Instant,
    interrupted: &AtomicBool,
) -> anyhow::Result<ExitCode> {
    let was_interrupted = interrupted.load(Ordering::Relaxed);
    manifest.status = if was_interrupted {
        RunStatus::Interrupted
    } else {
        RunStatus::Complete
    };
    manifest.finished_at = Some(rundir::rfc3339(SystemTime::now()));
    manifest.write(dir).context("cannot write manifest.json")?;
    let rendered = render(dir);
    // `latest` is the newest run that measured something: an empty or all-failed run
    // leaves it where it was (its own path is printed below either way).
    let measured = manifest.runs_done > manifest.runs_failed;
    if measured {
        rundir::update_latest(&args.out, dir)
            .with_context(|| format!("cannot point {}/latest at the run", args.out.display()))?;
    }
    if let Err(e) = rendered {
        crate::print_stdout(&format!("{}\n", dir.display()))?;
        return Err(e.context(format!(
            "the run's raw files are in {}, but its report could not be rendered",
            dir.display()
        )));
    }

    let not_run = plan.slots.len().saturating_sub(manifest.runs_done);
    eprintln!(
        "{} {} of {} in {}, {} failed{}; report: {}",
        if was_interrupted {
            "interrupted after"
        } else {
            "done:"
        },
        manifest.runs_done,
        crate::human::count(plan.slots.len() as u64, "run", "runs"),
        crate::human::duration(Duration::from_secs_f64(
            (run_started.elapsed().as_secs_f64() * 10.0).round() / 10.0
        )),
        manifest.runs_failed,
        if not_run > 0 {
            format!(", {not_run} not run")
        } else {
            String::new()
        },
        dir.join(rundir::REPORT_FILE).display()
    );
    if !measured {
        eprintln!(
            "{}/latest not moved: this run measured nothing",
            args.out.display()
        );
    }
    crate::print_stdout(&format!("{}\n", dir.display()))?;
    Ok(if was_interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if manifest.runs_failed > 0 {
        ExitCode::from(EXIT_FAILED_CELLS)
    } else {
        ExitCode::SUCCESS
    })
}

/// SIGINT/SIGTERM: the first sets the flag (the current cell stops, its children are
/// killed, a partial report is written); the second kills every child group and exits.
fn install_interrupt_handler() -> anyhow::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install the Ctrl-C handler")?;
    let f = Arc::clone(&flag);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                if f.swap(true, Ordering::SeqCst) {
                    launch::kill_all_groups();
                    eprintln!("\nthreadcenter run: interrupted twice: children killed, exiting now");
                    std::process::exit(i32::from(EXIT_INTERRUPTED));
                }
                eprintln!(
                    "\nthreadcenter run: interrupted: stopping the current cell and writing a partial report \
                     (Ctrl-C again to quit at once)"
                );
            }
        })?;
    Ok(flag)
}

fn sleep_unless(d: Duration, flag: &AtomicBool) {
    let end = Instant::now() + d;
    while !flag.load(Ordering::Relaxed) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

fn describe(row: &ResultRow) -> String {
    match (&row.status, &row.measured) {
        (Status::Ok, Some(m)) => format!(
            "ok, {:.1} req/s, p99 {}, server CPU {}",
            m.throughput_rps,
            crate::human::latency_us(m.latency_p99_us),
            row.cpu
                .map_or("?".into(), |c| format!("{:.0}%", c.server_pct))
        ),
        _ => format!("FAILED: {}", row.reason),
    }
}

/// About how long the run takes, when cells are timed (not counted in requests).
fn estimate(exp: &Experiment, runs: usize) -> Option<String> {
    let s = &exp.settings;
    let per = s.warmup + s.duration? + s.cooldown + Duration::from_millis(300);
    let total = (per.as_secs_f64() * runs as f64).round().max(1.0) as u64;
    Some(crate::human::duration(Duration::from_secs(total)))
}

fn print_plan(plan: &Plan) {
    use std::fmt::Write as _;
    let mut out = String::new();
    macro_rules! println {
        ($($arg:tt)*) => {{ let _ = writeln!(out, $($arg)*); }};
    }
    use crate::human::duration as human;
    let (exp, ids, slots, seed) = (&plan.exp, &plan.ids, &plan.slots, plan.seed);
    let s = &exp.settings;
    println!("experiment {:?}: {}", exp.name, exp.description);
    if !plan.overrides.is_empty() {
        let flags: Vec<&str> = plan.overrides.iter().map(|o| o.flag.as_str()).collect();
        println!("  overridden: {}", flags.join(", "));
    }
    println!(
        "  {}; warm-up {}, {}; cooldown {}; cell timeout {}",
        plan.size(),
        human(s.warmup),
        match (s.duration, s.requests) {
            (Some(d), _) => format!("measured for {}", human(d)),
            (_, Some(n)) => format!("{n} requests per connection"),
            _ => String::new(),
        },
        human(s.cooldown),
        human(s.cell_timeout),
    );
    println!(
        "  client timeout {}{}{}",
        human(exp.client.timeout),
        if exp.client.pipeline > 1 {
            format!(", pipeline {}", exp.client.pipeline)
        } else {
            String::new()
        },
        exp.client
            .slo_p99
            .map_or(String::new(), |p| format!(", SLO p99 {}", human(p)))
    );
    if let Some(e) = estimate(exp, slots.len()) {
        println!("  about {e}");
    }
    println!("targets:");
    for (name, t) in &exp.targets {
        match &t.kind {
            TargetKind::Builtin { pool, args, binary } => println!(
                "  {name}: {} server --pool {}{}{}",
                binary.as_deref().unwrap_or("threadcenter"),
                pool.as_str(),
                if t.tls {
                    " --tls-cert <run>/tls/cert.pem --tls-key <run>/tls/key.pem"
                } else {
                    ""
                },
                args.iter().map(|a| format!(" {a}")).collect::<String>()
            ),
            TargetKind::External { command } => println!(
                "  {name}: {}{}",
                command.join(" "),
                if t.tls { " (TLS)" } else { "" }
            ),
            TargetKind::Container(c) => println!("  {name}: {}", container::describe(c)),
        }
    }
    println!("cells:");
    for (id, cell) in ids.iter().zip(&exp.cells) {
        println!("  {id}  {}", cell.label());
    }
    match (seed, s.order) {
        (Some(seed), _) => println!("order: shuffled, seed {seed}"),
        (None, Order::Interleaved) => println!("order: interleaved"),
        (None, _) => println!("order: sequential"),
    }
    println!("  {}", plan.run_names().join(" "));
    // `threadcenter run --dry-run x.toml | head` must not panic on a closed pipe.
    let _ = crate::print_stdout(&out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_name_a_lone_cells_concurrency() {
        let exp = experiment::parse(
            Path::new("x.toml"),
            "name = \"t\"\nduration = \"1s\"\n[matrix]\nworkers = [1, 2]\nconcurrency = [4]\n",
        )
        .unwrap();
        let label = |cells: &[rundir::Cell], cell: &rundir::Cell| {
            rundir::axes_label(label_axes(cells).iter().map(|&a| (a, cell.get(a))))
        };
        assert_eq!(label(&exp.cells, &exp.cells[1]), "workers=2 concurrency=4");
        assert_eq!(label(&exp.cells[..1], &exp.cells[0]), "concurrency=4");
    }

    #[test]
    fn durations_print_as_the_cli_reads_them() {
        for d in [
            Duration::from_secs(2),
            Duration::from_millis(1500),
            Duration::from_micros(1200),
            Duration::ZERO,
        ] {
            assert_eq!(crate::cli::parse_duration(&fmt_duration(d)), Ok(d));
        }
    }
}
