//! The report of a run (`threadcenter report DIR`, and the last step of `run`): a pure
//! function of the run directory's raw files (manifest.json, results.csv, hdr/, cpu/)
//! that writes summary.csv, plots/*.svg, report.md and report.html. It reads no clock
//! and iterates only sorted collections, so rendering the same directory twice gives the
//! same bytes.
//!
//! [`render`] loads (`load`), analyses (`analysis`, with `limits`: efficiency against the
//! machine's limits, and `noise`: spread, load, a saturated client) into an [`Analysed`]
//! run, and hands it to every output in `registry` through the seam of `output`:
//! `summary` (summary.csv), each chart of `plots/` (one file per chart), and `markdown`
//! (report.md, which shows the charts listed in `CHARTS`), then `html` (report.html:
//! report.md's markdown as one self-contained page, the charts inline). For
//! `--baseline`, `compare` (match, judge; compare.md, compare.csv, compare.svg and
//! compare.html behind the same seam) and `stats` (the tests).

pub(crate) mod analysis;
pub(crate) mod certainty;
pub(crate) mod compare;
#[cfg(test)]
mod fixture;
pub(crate) mod hosts;
pub(crate) mod html;
pub(crate) mod limits;
pub(crate) mod load;
pub(crate) mod markdown;
pub(crate) mod memory;
pub(crate) mod noise;
pub(crate) mod output;
pub(crate) mod plots;
pub(crate) mod stats;
pub(crate) mod summary;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::ReportArgs;
use crate::rundir;
use output::Output;

pub(crate) fn run(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    if args.baseline.is_some() || args.baseline_target.is_some() {
        return run_compare(args);
    }
    if args.target.is_some() || !args.thresholds.is_empty() {
        anyhow::bail!("--target and --threshold apply to a comparison: give --baseline OTHER");
    }
    render(&args.dir)?;
    crate::print_stdout(&format!(
        "{}\n",
        args.dir.join(rundir::REPORT_FILE).display()
    ))?;
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
    let written = output::write(&args.dir, compare::COMPARE_OUTPUTS, &c)?;
    let mut text = compare::text(&c);
    text.push_str(&format!(
        "written: {}\n",
        written
            .iter()
            .map(|f| args.dir.join(f).display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    crate::print_stdout(&text)?;
    Ok(ExitCode::from(c.exit_code()))
}

/// What every output of a run's report renders from: its raw files as read, and what
/// the analysis found in them.
pub(crate) struct Analysed {
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
/// report.md (which shows the charts), report.html (report.md as a page, the charts
/// inline). Adding one is adding a line here.
fn registry() -> Vec<&'static dyn Output<Analysed>> {
    let mut all: Vec<&'static dyn Output<Analysed>> = vec![&summary::SummaryCsv];
    all.extend(CHARTS.iter().map(|&c| c as &dyn Output<Analysed>));
    all.push(&markdown::ReportMd { charts: CHARTS });
    all.push(&html::ReportHtml { charts: CHARTS });
    all
}

/// Renders summary.csv, plots/ and report.md from the raw files in `dir`.
pub(crate) fn render(dir: &Path) -> anyhow::Result<()> {
    let data = load::RunData::load(dir)
        .with_context(|| format!("cannot render the report of {}", dir.display()))?;
    let analysis = analysis::analyse(&data);
    let run = Analysed { data, analysis };
    output::write(dir, &registry(), &run)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::PathBuf;

    use super::*;

    /// Every artefact of `run` by path, failing on a path written twice.
    fn artefacts(run: &Analysed) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut all = BTreeMap::new();
        for output in registry() {
            for a in output.render(run).unwrap() {
                let path = a.path.clone();
                assert!(
                    all.insert(a.path, a.bytes).is_none(),
                    "{} is written twice",
                    path.display()
                );
            }
        }
        all
    }

    /// The targets of report.md's image links: `![alt](plots/x.svg)`.
    fn images(md: &str) -> BTreeSet<PathBuf> {
        md.split("](")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
            .filter(|target| target.ends_with(".svg"))
            .map(PathBuf::from)
            .collect()
    }

    #[test]
    fn report_md_shows_every_plot_written_and_only_those() {
        for run in [fixture::closed_with_histograms(), fixture::open_loop()] {
            let files = artefacts(&run);
            let md = String::from_utf8(files[Path::new(rundir::REPORT_FILE)].clone()).unwrap();
            let plots: BTreeSet<PathBuf> = files
                .keys()
                .filter(|p| p.starts_with(rundir::PLOTS_DIR))
                .cloned()
                .collect();
            assert_eq!(images(&md), plots);
            for (path, bytes) in &files {
                if path.extension().is_some_and(|e| e == "svg") {
                    assert!(bytes.starts_with(b"<svg"), "{}", path.display());
                    assert!(bytes.ends_with(b"</svg>\n"), "{}", path.display());
                }
            }
            assert!(files.contains_key(Path::new(rundir::SUMMARY_FILE)));
        }
    }

    #[test]
    fn the_charts_drawn_follow_the_data() {
        let plot = |name: &str| PathBuf::from(rundir::PLOTS_DIR).join(name);
        let closed = artefacts(&fixture::closed_with_histograms());
        let open = artefacts(&fixture::open_loop());
        // Interval logs of 3 s only: too few intervals for an over-time chart.
        assert!(!closed.contains_key(&plot(plots::over_time::FILE)));
        assert!(!open.contains_key(&plot(plots::over_time::FILE)));
        // Stage timings: the breakdown; open-loop cells: the hockey stick.
        assert!(open.contains_key(&plot(plots::breakdown::FILE)));
        assert!(!closed.contains_key(&plot(plots::breakdown::FILE)));
        assert!(open.contains_key(&plot(plots::open_loop::FILE)));
        assert!(!closed.contains_key(&plot(plots::open_loop::FILE)));
        // A series with two concurrencies gets its own spectrum, with a line per cell.
        let spectrum = &closed[&plot("spectrum-builtin.svg")];
        let text = String::from_utf8_lossy(spectrum);
        assert!(text.contains("concurrency 1") && text.contains("concurrency 4"));
    }

    #[test]
    fn rendering_twice_gives_the_same_bytes() {
        let run = fixture::closed_with_histograms();
        assert_eq!(artefacts(&run), artefacts(&run));
    }
}
