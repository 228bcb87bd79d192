//! The load client: threads with a connection each, per-thread HDR histograms, verification, summary.
//!
//! [`run_load`] is the library entry point (the runner and tests call it); [`run`] is the
//! `threadcenter client` command: it runs the load, prints the summary and writes files.

pub mod document;
pub mod load;
pub mod print;
pub mod report;
pub mod tls;

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail};

use crate::cli::{ClientArgs, ClientCmd};

pub use document::ClientDocument;
pub use load::run_load;
pub use report::{Failures, LatencyUs, Report};

/// Requests per thread when neither `--requests` nor `--duration` is given (the seed's).
pub const DEFAULT_REQUESTS: u64 = 5;

/// When the measured phase ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Each thread sends this many requests, one after another.
    Requests(u64),
    /// Each thread sends for this long.
    Duration(Duration),
}

/// Everything a load run needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadConfig {
    pub host: String,
    pub port: u16,
    pub cmd: ClientCmd,
    /// n of compute.
    pub size: u64,
    /// Threads, one connection each.
    pub concurrency: usize,
    pub mode: Mode,
    /// Load sent first, time-based, whose requests are neither recorded nor counted.
    pub warmup: Duration,
    /// Longest wait for a connection or a response.
    pub timeout: Duration,
    /// Speak TLS (`--tls`).
    pub tls: bool,
    /// The CA that `--tls` trusts instead of the system's roots (`--ca`).
    pub ca: Option<PathBuf>,
}

impl LoadConfig {
    pub fn from_args(args: &ClientArgs) -> anyhow::Result<LoadConfig> {
        let mode = match (args.requests, args.duration) {
            (Some(_), Some(_)) => bail!("give --requests or --duration, not both"),
            (_, Some(d)) if d.is_zero() => bail!("--duration must be more than 0"),
            (_, Some(d)) => Mode::Duration(d),
            (Some(n), None) => Mode::Requests(n),
            (None, None) => Mode::Requests(DEFAULT_REQUESTS),
        };
        if args.timeout.is_zero() {
            bail!("--timeout must be more than 0");
        }
        Ok(LoadConfig {
            host: args.host.clone(),
            port: args.port,
            cmd: args.cmd,
            size: args.size,
            concurrency: usize::try_from(args.concurrency)
                .map_err(|_| anyhow!("--concurrency {} is too large", args.concurrency))?,
            mode,
            warmup: args.warmup,
            timeout: args.timeout,
            tls: args.tls,
            ca: args.ca.clone(),
        })
    }
}

/// `threadcenter client`: exit 0 if every request succeeded, 1 if any failed; `Err` (exit 2)
/// if the run could not start or its files could not be written.
pub fn run(args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let config = LoadConfig::from_args(args)?;
    let report = run_load(&config)?;
    if !args.quiet {
        let mut out = io::stdout().lock();
        print::print_report(&report, &mut out)?;
        out.flush()?;
    }
    if let Some(path) = &args.json {
        let doc = ClientDocument::from_report(&report);
        write_atomically(path, |w| doc.write(w))?;
    }
    if let Some(path) = &args.hgrm {
        write_atomically(path, |w| {
            crate::hdr::write_hgrm(&report.histogram, 1000.0, w)
        })?;
    }
    Ok(if report.all_succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Writes `path` through a temporary file in the same directory, renamed over `path` only
/// once complete, so a crash never leaves a half-written file behind.
pub fn write_atomically<F>(path: &Path, write: F) -> anyhow::Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("cannot write {}: not a file name", path.display()))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut w = BufWriter::new(File::create(&tmp)?);
        write(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        bail!("cannot write {}: {e}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(argv: &[&str]) -> anyhow::Result<LoadConfig> {
        let mut full = vec!["threadcenter", "client"];
        full.extend_from_slice(argv);
        match crate::cli::Cli::try_parse_from(full)?.command {
            crate::cli::Command::Client(args) => LoadConfig::from_args(&args),
            _ => unreachable!(),
        }
    }

    #[test]
    fn modes_from_flags() {
        assert_eq!(config(&[]).unwrap().mode, Mode::Requests(DEFAULT_REQUESTS));
        assert_eq!(config(&["-n", "7"]).unwrap().mode, Mode::Requests(7));
        assert_eq!(
            config(&["-d", "2s"]).unwrap().mode,
            Mode::Duration(Duration::from_secs(2))
        );
        assert!(config(&["-d", "0s"]).is_err());
        assert!(config(&["--timeout", "0s"]).is_err());
        assert!(config(&["-d", "1s", "-n", "3"]).is_err());
    }

    #[test]
    fn atomic_write_replaces_whole_files_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_atomically(&path, |w| w.write_all(b"first")).unwrap();
        write_atomically(&path, |w| w.write_all(b"second")).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "second");
        let err = write_atomically(&path, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "second");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "a temporary file was left: {names:?}");
        let missing = dir.path().join("no/such/dir/out.txt");
        let err = write_atomically(&missing, |w| w.write_all(b"x")).unwrap_err();
        assert!(err.to_string().starts_with("cannot write "), "{err}");
    }
}
