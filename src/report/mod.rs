//! The report of a run (`threadcenter report DIR`, and the last step of `run`): a pure
//! function of the run directory's raw files (manifest.json, results.csv, hdr/, cpu/)
//! that writes summary.csv, plots/*.svg and report.md. It reads no clock and iterates
//! only sorted collections, so rendering the same directory twice gives the same bytes.
//!
//! Modules: `load` (raw files in), `analysis` (medians, series, peak, saturation),
//! `plots` (SVG), `markdown` (report.md).

pub mod analysis;
pub mod load;
pub mod markdown;
pub mod plots;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::ReportArgs;
use crate::runner::store;

pub fn run(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    render(&args.dir)?;
    println!("{}", args.dir.join(store::REPORT_FILE).display());
    Ok(ExitCode::SUCCESS)
}

/// Renders summary.csv, plots/ and report.md from the raw files in `dir`.
pub fn render(dir: &Path) -> anyhow::Result<()> {
    let data = load::RunData::load(dir)
        .with_context(|| format!("cannot render the report of {}", dir.display()))?;
    let a = analysis::analyse(&data);
    analysis::write_summary_csv(&dir.join(store::SUMMARY_FILE), &a)
        .context("cannot write summary.csv")?;
    plots::write_all(&dir.join(store::PLOTS_DIR), &data, &a)?;
    let text = markdown::render(&data, &a);
    std::fs::write(dir.join(store::REPORT_FILE), text).context("cannot write report.md")?;
    Ok(())
}
