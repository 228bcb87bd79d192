//! The report of a run (`threadcenter report DIR`, and the last step of `run`): a pure
//! function of the run directory's raw files (manifest.json, results.csv, hdr/, cpu/)
//! that writes summary.csv, plots/*.svg and report.md. It reads no clock and iterates
//! only sorted collections, so rendering the same directory twice gives the same bytes.
//!
//! Modules: `load` (raw files in), `analysis` (medians, series, peak, saturation),
//! `limits` (efficiency against the machine's limits), `noise` (spread, load, a saturated
//! client), `plots` (SVG), `markdown` (report.md); and for `--baseline`, `compare` (match,
//! judge, write compare.md/csv), `compare_plot` (compare.svg) and `stats` (the tests).

pub mod analysis;
pub mod compare;
pub mod compare_plot;
pub mod limits;
pub mod load;
pub mod markdown;
pub mod noise;
pub mod output;
pub mod plots;
pub mod stats;
pub mod summary;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::ReportArgs;
use crate::rundir;
use output::Output;

pub fn run(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    if args.baseline.is_some() || args.baseline_target.is_some() {
        return run_compare(args);
    }
    if args.target.is_some() || !args.thresholds.is_empty() {
        anyhow::bail!("--target and --threshold apply to a comparison: give --baseline OTHER");
    }
    render(&args.dir)?;
    println!("{}", args.dir.join(rundir::REPORT_FILE).display());
    Ok(ExitCode::SUCCESS)
}

/// `report DIR --baseline OTHER` / `--baseline-target NAME`: compare, print, write
/// compare.{md,csv,svg} into DIR, and exit by the contract (docs/compare.md).
fn run_compare(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let base_dir = args.baseline.clone().unwrap_or_else(|| args.dir.clone());
    let same = base_dir == args.dir;
    let base = compare::Side::load(&base_dir, args.baseline_target.as_deref())
        .with_context(|| format!("cannot read the baseline {}", base_dir.display()))?;
    let target = match (&args.target, &args.baseline_target) {
        (Some(t), _) => Some(t.clone()),
        // One run holding two targets: the other one.
        (None, Some(bt)) if same => {
            let mut others = compare::target_names(&base.manifest);
            others.retain(|t| t != bt);
            match others.as_slice() {
                [one] => Some(one.to_string()),
                [] => anyhow::bail!(
                    "{} has no target besides {bt:?} to compare with it",
                    args.dir.display()
                ),
                many => anyhow::bail!(
                    "{} has several targets besides {bt:?} ({}): choose one with --target",
                    args.dir.display(),
                    many.join(", ")
                ),
            }
        }
        (None, _) => None,
    };
    if same && target == args.baseline_target {
        anyhow::bail!("the baseline and the new side are the same cells: name two targets");
    }
    let new = compare::Side::load(&args.dir, target.as_deref())
        .with_context(|| format!("cannot read {}", args.dir.display()))?;
    let cli = crate::domain::Thresholds::from_args(&args.thresholds);
    let c = compare::compare(&base, &new, &cli)?;
    compare::write_files(&args.dir, &c)?;
    print!("{}", compare::text(&c));
    println!(
        "written: {}",
        [
            compare::COMPARE_MD,
            compare::COMPARE_CSV,
            compare::COMPARE_SVG
        ]
        .map(|f| args.dir.join(f).display().to_string())
        .join(", ")
    );
    Ok(ExitCode::from(c.exit_code()))
}

/// What every output of a run's report renders from: its raw files as read, and what
/// the analysis found in them.
pub struct Analysed {
    pub data: load::RunData,
    pub analysis: analysis::Analysis,
}

/// The charts, in the order report.md's Plots section shows them.
const CHARTS: &[&dyn plots::Chart] = &[
    &plots::throughput_vs_concurrency::ThroughputVsConcurrency,
    &plots::p99_vs_concurrency::P99VsConcurrency,
    &plots::latency_vs_throughput::LatencyVsThroughput,
    &plots::cpu_vs_concurrency::CpuVsConcurrency,
    &plots::spectrum::PeakSpectra,
    &plots::cpu_timeline::CpuTimeline,
    &plots::open_loop::OpenLoop,
    &plots::over_time::OverTime,
    &plots::spectrum::SeriesSpectra,
    &plots::breakdown::Breakdown,
];

/// Every artefact of a run's report, in the order they render: summary.csv, each chart,
/// report.md (which shows the charts). Adding one is adding a line here.
fn registry() -> Vec<&'static dyn Output<Analysed>> {
    let mut all: Vec<&'static dyn Output<Analysed>> = vec![&summary::SummaryCsv];
    all.extend(CHARTS.iter().map(|&c| c as &dyn Output<Analysed>));
    all.push(&markdown::ReportMd { charts: CHARTS });
    all
}

/// Renders summary.csv, plots/ and report.md from the raw files in `dir`.
pub fn render(dir: &Path) -> anyhow::Result<()> {
    let data = load::RunData::load(dir)
        .with_context(|| format!("cannot render the report of {}", dir.display()))?;
    let analysis = analysis::analyse(&data);
    let run = Analysed { data, analysis };
    output::write(dir, &registry(), &run)?;
    Ok(())
}
