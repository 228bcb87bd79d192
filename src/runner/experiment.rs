//! The experiment file: its TOML schema, validation with the key and line at fault, and the
//! resolved [`Experiment`] the runner executes. docs/experiments.md documents the schema.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::matrix::{self, Filter};
use crate::domain::{parse_pct, CMetric, ClientCmd, IoModel, PoolKind, Thresholds, CLIENT_TIMEOUT};
use crate::rundir::{Axis, AxisValue, Cell};

/// What the runner gives a placeholder in an external target's `command`.
pub const PLACEHOLDERS: [&str; 4] = ["host", "port", "workers", "dir"];

/// The placeholders an external target with `tls = true` may use besides: the run's
/// generated certificate and key (PEM files in the run directory's `tls/`).
pub const TLS_PLACEHOLDERS: [&str; 2] = ["tls_cert", "tls_key"];

/// An experiment file, checked and resolved: every default filled in, every axis expanded.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub path: PathBuf,
    /// The file's bytes, copied verbatim into the run directory.
    pub source: String,
    pub name: String,
    pub description: String,
    pub settings: Settings,
    pub client: ClientSettings,
    /// Targets by name; `BTreeMap` so every listing of them is in one stable order.
    pub targets: BTreeMap<String, Target>,
    pub axes: BTreeMap<Axis, Vec<AxisValue>>,
    pub exclude: Vec<Filter>,
    pub include: Vec<Filter>,
    /// The matrix after product, exclude and include, in matrix order.
    pub cells: Vec<Cell>,
    /// `[compare]`: thresholds for `threadcenter report --baseline` (recorded in the manifest).
    pub compare: Thresholds,
    /// `[hosts.NAME]`, each target's `host` and `[client] hosts`: where a multi-host
    /// run's processes go (docs/multi-host.md). Empty: everything runs here.
    pub hosts: Hosts,
}

/// Where the processes of a multi-host run go.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Hosts {
    /// `[hosts.NAME]` by name.
    pub hosts: BTreeMap<String, Host>,
    /// A target's `host`, by target name (a target not here runs its server here).
    pub target_host: BTreeMap<String, String>,
    /// `[client] hosts`: the load is split evenly over them (empty: it runs here).
    pub client_hosts: Vec<String>,
}

impl Hosts {
    /// Whether the cells of `target` run on other hosts (the multi-host runner's).
    pub fn is_remote(&self, target: &str) -> bool {
        self.target_host.contains_key(target) || !self.client_hosts.is_empty()
    }
}

/// `[hosts.NAME]`: a machine reached with the system's `ssh`.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// The destination, as `ssh` takes it (`bench@10.0.0.2`).
    pub ssh: String,
    /// Extra flags for `ssh`.
    pub ssh_options: Vec<String>,
    /// Where clients reach a server on this host.
    pub address: String,
    /// The CPUs to pin what is started there to (taskset's list syntax).
    pub cpus: Option<String>,
    /// The threadcenter binary there (instead of copying this one).
    pub binary: Option<String>,
}

/// How each cell is measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub repetitions: u32,
    pub warmup: Duration,
    /// Measured for this long, or…
    pub duration: Option<Duration>,
    /// …this many requests per client thread.
    pub requests: Option<u64>,
    pub cooldown: Duration,
    /// A cell × repetition still running after this long is stopped and recorded failed.
    pub cell_timeout: Duration,
    pub order: Order,
    /// The seed of a shuffled order (drawn at random when the file gives none; recorded).
    pub seed: Option<u64>,
}

/// Options passed to every client run.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSettings {
    /// A request with no answer after this long counts as a timeout.
    pub timeout: Duration,
    /// `--pipeline` for open-loop cells (those with a `rate`): requests in flight per
    /// connection.
    pub pipeline: u64,
    /// `[slo] p99`: the latency the report holds open-loop cells to, to find the highest
    /// rate whose p99 stays under it.
    pub slo_p99: Option<Duration>,
    /// `[client] threads`: the client's `--threads` (event-loop threads), at most the
    /// cell's concurrency; `None`: the client's own default.
    pub threads: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Repetition by repetition, each sweeping the matrix in order.
    Sequential,
    /// Every cell × repetition in a seeded random order.
    Shuffled,
    /// Repetition by repetition; within one, cells that differ only in their target run
    /// back to back, the targets' order alternating between repetitions (A B, B A, …), so
    /// drift in the machine hits every target alike. For comparing builds in one run.
    Interleaved,
}

impl Order {
    pub const ALL: [Order; 3] = [Order::Sequential, Order::Shuffled, Order::Interleaved];

    /// The name in the experiment file and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Order::Sequential => "sequential",
            Order::Shuffled => "shuffled",
            Order::Interleaved => "interleaved",
        }
    }
}

/// One server implementation a run measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub kind: TargetKind,
    /// How long to wait for readiness (the line, or a successful connection).
    pub ready_timeout: Duration,
    /// After SIGTERM, how long before the whole process group gets SIGKILL.
    pub stop_grace: Duration,
    /// Serve and measure over TLS, with a certificate the run generates (`tls = true`).
    pub tls: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TargetKind {
    /// `threadcenter server`, with extra flags; `pool` unless the matrix sets it. `binary`
    /// runs another threadcenter executable's server instead of this one's (`{dir}`
    /// filled in): how one run compares two builds.
    Builtin {
        pool: PoolKind,
        args: Vec<String>,
        binary: Option<String>,
    },
    /// Any program that speaks the protocol; placeholders filled per cell.
    External { command: Vec<String> },
    /// A server run as a container (`image`); see `runner::container`.
    Container(ContainerTarget),
}

/// `[targets.X] image = "…"`: a server image run with `docker run` on a network of the
/// run's own. Any image whose command takes `{host}`, `{port}` and `{workers}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerTarget {
    pub image: String,
    /// The container's command (after the image's entrypoint), placeholders filled per
    /// cell; `server --host {host} --port {port} --workers {workers}` when not given.
    pub args: Vec<String>,
    /// `docker run --cpus`: the machine's cores unless given.
    pub cpus: f64,
}

impl Target {
    /// Not the built-in server run as this machine's process: its exit status on SIGTERM
    /// is its own business (a container's is checked by `runner::container`).
    pub fn is_external(&self) -> bool {
        !matches!(self.kind, TargetKind::Builtin { .. })
    }
}

/// A problem in an experiment file, located by line, column and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimentError {
    pub path: PathBuf,
    /// 1-based; 0 when the problem has no place in the file (e.g. it cannot be read).
    pub line: usize,
    pub column: usize,
    /// The dotted key at fault, e.g. `matrix.workers` or `exclude[1].size`.
    pub key: Option<String>,
    pub message: String,
    /// The text of the line at fault.
    pub snippet: Option<String>,
}

impl fmt::Display for ExperimentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "`{key}`: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(snippet) = &self.snippet {
            let gutter = self.line.to_string();
            write!(f, "\n  {gutter} | {snippet}")?;
            write!(
                f,
                "\n  {} | {}^",
                " ".repeat(gutter.len()),
                " ".repeat(self.column.saturating_sub(1))
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ExperimentError {}

// ---------------------------------------------------------------------------------------------
// The file as written: serde structs with spans, unknown keys refused.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExperiment {
    name: Spanned<String>,
    description: Option<String>,
    repetitions: Option<Spanned<i64>>,
    warmup: Option<Spanned<String>>,
    duration: Option<Spanned<String>>,
    requests: Option<Spanned<i64>>,
    cooldown: Option<Spanned<String>>,
    cell_timeout: Option<Spanned<String>>,
    order: Option<Spanned<String>>,
    seed: Option<Spanned<i64>>,
    server: Option<Spanned<RawTarget>>,
    targets: Option<Spanned<BTreeMap<String, Spanned<RawTarget>>>>,
    client: Option<RawClient>,
    hosts: Option<Spanned<BTreeMap<String, Spanned<RawHost>>>>,
    slo: Option<RawSlo>,
    compare: Option<RawCompare>,
    matrix: Spanned<RawMatrix>,
    #[serde(default)]
    exclude: Vec<RawFilter>,
    #[serde(default)]
    include: Vec<RawFilter>,
}

/// An `[[exclude]]` or `[[include]]` table: axis names to values.
type RawFilter = Spanned<BTreeMap<String, Spanned<AxisInput>>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    command: Option<Spanned<Vec<Spanned<String>>>>,
    args: Option<Spanned<Vec<String>>>,
    binary: Option<Spanned<String>>,
    pool: Option<Spanned<String>>,
    ready_timeout: Option<Spanned<String>>,
    stop_grace: Option<Spanned<String>>,
    tls: Option<Spanned<bool>>,
    image: Option<Spanned<String>>,
    client_image: Option<Spanned<String>>,
    cpus: Option<Spanned<f64>>,
    host: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    ssh: Spanned<String>,
    #[serde(default)]
    ssh_options: Vec<String>,
    address: Option<Spanned<String>>,
    cpus: Option<Spanned<String>>,
    binary: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    timeout: Option<Spanned<String>>,
    pipeline: Option<Spanned<i64>>,
    threads: Option<Spanned<i64>>,
    hosts: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `[slo]`: service-level objectives the report checks open-loop cells against.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlo {
    p99: Spanned<String>,
}

/// `[compare]`: `threshold` for every metric, or one per metric, as "5%".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompare {
    threshold: Option<Spanned<String>>,
    throughput: Option<Spanned<String>>,
    p50: Option<Spanned<String>>,
    p99: Option<Spanned<String>>,
    p99_9: Option<Spanned<String>>,
    cpu_per_request: Option<Spanned<String>>,
}

impl RawCompare {
    fn thresholds(&self, src: &Source<'_>) -> Result<Thresholds, ExperimentError> {
        let pct = |v: &Spanned<String>, key: &str| {
            parse_pct(v.get_ref()).map_err(|m| src.error(v.span(), &format!("compare.{key}"), m))
        };
        let mut t = Thresholds::default();
        if let Some(v) = &self.threshold {
            t.all_pct = Some(pct(v, "threshold")?);
        }
        for (m, v) in [
            (CMetric::Throughput, &self.throughput),
            (CMetric::P50, &self.p50),
            (CMetric::P99, &self.p99),
            (CMetric::P999, &self.p99_9),
            (CMetric::CpuPerRequest, &self.cpu_per_request),
        ] {
            if let Some(v) = v {
                t.metric_pct.insert(m.key().to_string(), pct(v, m.key())?);
            }
        }
        Ok(t)
    }
}

/// `[matrix]`: one optional list per axis (see [`Axis`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatrix {
    target: Option<Spanned<AxisInput>>,
    pool: Option<Spanned<AxisInput>>,
    io: Option<Spanned<AxisInput>>,
    workers: Option<Spanned<AxisInput>>,
    cmd: Option<Spanned<AxisInput>>,
    size: Option<Spanned<AxisInput>>,
    concurrency: Option<Spanned<AxisInput>>,
    rate: Option<Spanned<AxisInput>>,
}

impl RawMatrix {
    fn get(&self, axis: Axis) -> Option<&Spanned<AxisInput>> {
        match axis {
            Axis::Target => self.target.as_ref(),
            Axis::Pool => self.pool.as_ref(),
            Axis::Io => self.io.as_ref(),
            Axis::Workers => self.workers.as_ref(),
            Axis::Cmd => self.cmd.as_ref(),
            Axis::Size => self.size.as_ref(),
            Axis::Concurrency => self.concurrency.as_ref(),
            Axis::Rate => self.rate.as_ref(),
        }
    }
}

/// An axis as written: a list of values, one value, or (integer axes) a range string such
/// as `"1..=cores"`.
#[derive(Debug)]
enum AxisInput {
    List(Vec<Spanned<toml::Value>>),
    One(toml::Value),
}

impl<'de> Deserialize<'de> for AxisInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AxisInput;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of values, one value, or a range such as \"1..=cores\"")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AxisInput, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<toml::Value>>()? {
                    items.push(item);
                }
                Ok(AxisInput::List(items))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<AxisInput, E> {
                Ok(AxisInput::One(toml::Value::Integer(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<AxisInput, E> {
                i64::try_from(v)
                    .map(|v| AxisInput::One(toml::Value::Integer(v)))
                    .map_err(|_| E::custom("integer too large"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AxisInput, E> {
                Ok(AxisInput::One(toml::Value::String(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<AxisInput, E> {
                Ok(AxisInput::One(toml::Value::Float(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<AxisInput, E> {
                Ok(AxisInput::One(toml::Value::Boolean(v)))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------

/// Where errors are located: the file's text, for lines, columns and key paths.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn error(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ExperimentError {
        let (line, column) = line_col(self.text, span.start);
        ExperimentError {
            path: self.path.to_path_buf(),
            line,
            column,
            key: (!key.is_empty()).then(|| key.to_string()),
            message: message.into(),
            snippet: self
                .text
                .lines()
                .nth(line - 1)
                .map(|l| l.trim_end().to_string()),
        }
    }

    /// A duration, at most [`crate::cli::MAX_RUN_DURATION`] (24 h): longer is a typo.
    fn duration(&self, value: &Spanned<String>, key: &str) -> Result<Duration, ExperimentError> {
        let d = crate::cli::parse_duration(value.get_ref()).map_err(|e| {
            self.error(
                value.span(),
                key,
                format!("bad duration {:?}: {e}", value.get_ref()),
            )
        })?;
        if d > crate::cli::MAX_RUN_DURATION {
            return Err(self.error(
                value.span(),
                key,
                format!(
                    "{:?} is longer than 24 h, the longest duration an experiment takes (cells are measured for seconds to minutes): write e.g. \"30s\" or \"10m\"",
                    value.get_ref()
                ),
            ));
        }
        Ok(d)
    }

    /// A duration that must not be zero (how long something lasts or may take).
    fn nonzero_duration(
        &self,
        value: &Spanned<String>,
        key: &str,
    ) -> Result<Duration, ExperimentError> {
        let v = self.duration(value, key)?;
        if v.is_zero() {
            return Err(self.error(value.span(), key, "must be longer than 0s"));
        }
        Ok(v)
    }

    fn positive(&self, value: &Spanned<i64>, key: &str) -> Result<u64, ExperimentError> {
        match u64::try_from(*value.get_ref()) {
            Ok(v) if v > 0 => Ok(v),
            _ => Err(self.error(
                value.span(),
                key,
                format!("must be at least 1, not {}", value.get_ref()),
            )),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The dotted path of the innermost key whose entry (key and value) holds `span`: the key
/// a serde error is about. `None` when the text does not parse as TOML at all.
///
/// Every entry is searched, not only those whose span holds the error: a `[table]`
/// header's span does not cover the lines of its keys.
fn key_at(text: &str, span: &Range<usize>) -> Option<String> {
    use toml::de::{DeTable, DeValue};
    let holds = |s: Range<usize>| s.start <= span.start && span.end <= s.end.max(span.start + 1);
    fn search(
        value: &DeValue<'_>,
        holds: &dyn Fn(Range<usize>) -> bool,
        prefix: &str,
    ) -> Option<String> {
        match value {
            DeValue::Table(table) => {
                for (key, value) in table.iter() {
                    let path = if prefix.is_empty() {
                        key.get_ref().to_string()
                    } else {
                        format!("{prefix}.{}", key.get_ref())
                    };
                    if let Some(inner) = search(value.get_ref(), holds, &path) {
                        return Some(inner);
                    }
                    let (k, v) = (key.span(), value.span());
                    if holds(k.clone())
                        || holds(v.clone())
                        || holds(k.start.min(v.start)..k.end.max(v.end))
                    {
                        return Some(path);
                    }
                }
                None
            }
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let path = if item.get_ref().is_table() {
                        format!("{prefix}[{}]", i + 1)
                    } else {
                        prefix.to_string()
                    };
                    if let Some(inner) = search(item.get_ref(), holds, &path) {
                        return Some(inner);
                    }
                    if holds(item.span()) {
                        return Some(path);
                    }
                }
                None
            }
            _ => None,
        }
    }
    let root = DeTable::parse(text).ok()?;
    search(&DeValue::Table(root.into_inner()), &holds, "")
}

/// Reads and checks an experiment file.
pub fn load(path: &Path) -> Result<Experiment, ExperimentError> {
    load_with(path, &[])
}

/// Reads an experiment file, applies `run`'s overrides to it (`overrides.rs`), and checks
/// the result; `source` is then the effective file.
pub(crate) fn load_with(
    path: &Path,
    overrides: &[super::overrides::Override],
) -> Result<Experiment, ExperimentError> {
    let text = std::fs::read_to_string(path).map_err(|e| ExperimentError {
        path: path.to_path_buf(),
        line: 0,
        column: 0,
        key: None,
        message: format!("cannot read the experiment file: {e}"),
        snippet: None,
    })?;
    if overrides.is_empty() {
        return parse(path, &text);
    }
    let effective = super::overrides::apply(path, &text, overrides)?;
    let mut exp = parse(path, &effective)
        .map_err(|e| super::overrides::relocate(e, &text, &effective, overrides))?;
    exp.source = super::overrides::annotate(path, &effective, overrides);
    Ok(exp)
}

/// Checks an experiment given as text; `path` names it in errors and anchors `{dir}`.
pub fn parse(path: &Path, text: &str) -> Result<Experiment, ExperimentError> {
    let src = Source { path, text };
    let raw: RawExperiment = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let key = key_at(text, &span).unwrap_or_default();
        let message = e.message().trim_end().replace('\n', "; ");
        let message = super::wording::user_words(&message, &key);
        src.error(span, &key, message)
    })?;
    resolve(&src, raw)
}

/// Turns the file as written into the [`Experiment`]. Each step checks one part of the
/// file; they run in the order below, so a file with several problems is told of the
/// same one first, whatever the steps' sizes.
fn resolve(src: &Source<'_>, raw: RawExperiment) -> Result<Experiment, ExperimentError> {
    let name = raw.name.get_ref().trim().to_string();
    if name.is_empty() {
        return Err(src.error(raw.name.span(), "name", "must not be empty"));
    }
    let (settings, client) = settings(src, &raw)?;
    let (targets, tls_at) = targets(src, &raw)?;
    let axes = axes(src, &raw.matrix, &targets)?;
    let exclude = filters(src, &raw.exclude, "exclude", &targets, false, &axes)?;
    let include = filters(src, &raw.include, "include", &targets, true, &axes)?;
    let compare = match &raw.compare {
        Some(c) => c.thresholds(src)?,
        None => Thresholds::default(),
    };
    let cells = matrix::expand(&axes, &exclude, &include, &targets);
    if cells.is_empty() {
        return Err(src.error(
            raw.matrix.span(),
            "matrix",
            "no cell is left to run once `exclude` is applied",
        ));
    }
    refuse_open_loop_over_tls(src, &cells, &tls_at)?;
    let hosts = hosts(src, &raw, &targets, &cells)?;
    Ok(Experiment {
        path: src.path.to_path_buf(),
        source: src.text.to_string(),
        name,
        description: raw.description.unwrap_or_default().trim().to_string(),
        settings,
        client,
        targets,
        axes,
        exclude,
        include,
        cells,
        compare,
        hosts,
    })
}

/// The top-level settings, then `[client]` and `[slo]`, then `cell_timeout` (whose
/// default depends on the measured length).
fn settings(
    src: &Source<'_>,
    raw: &RawExperiment,
) -> Result<(Settings, ClientSettings), ExperimentError> {
    let repetitions = match &raw.repetitions {
        None => 1,
        Some(r) => u32::try_from(src.positive(r, "repetitions")?)
            .map_err(|_| src.error(r.span(), "repetitions", "too many repetitions"))?,
    };
    let warmup = match &raw.warmup {
        None => Duration::ZERO,
        Some(w) => src.duration(w, "warmup")?,
    };
    let (duration, requests) = measured_length(src, raw)?;
    let cooldown = match &raw.cooldown {
        None => Duration::ZERO,
        Some(c) => src.duration(c, "cooldown")?,
    };
    let order = match &raw.order {
        None => Order::Sequential,
        Some(o) => order(src, o)?,
    };
    let seed = match &raw.seed {
        None => None,
        Some(s) => Some(
            u64::try_from(*s.get_ref())
                .map_err(|_| src.error(s.span(), "seed", "must not be negative"))?,
        ),
    };
    let client = client_settings(src, raw)?;
    let cell_timeout = match &raw.cell_timeout {
        // Generous: the measured time, the warm-up, and half a minute for start and stop.
        None => warmup + duration.unwrap_or(Duration::from_secs(120)) + Duration::from_secs(30),
        Some(t) => src.nonzero_duration(t, "cell_timeout")?,
    };
    let settings = Settings {
        repetitions,
        warmup,
        duration,
        requests,
        cooldown,
        cell_timeout,
        order,
        seed,
    };
    Ok((settings, client))
}

/// `duration` or `requests`: exactly one of them.
fn measured_length(
    src: &Source<'_>,
    raw: &RawExperiment,
) -> Result<(Option<Duration>, Option<u64>), ExperimentError> {
    match (&raw.duration, &raw.requests) {
        (Some(_), Some(r)) => Err(src.error(
            r.span(),
            "requests",
            "give `duration` or `requests`, not both",
        )),
        (None, None) => Err(src.error(
            0..0,
            "",
            "say how long each cell is measured: `duration = \"5s\"` or `requests = N` (per client thread)",
        )),
        (Some(d), None) => Ok((Some(src.nonzero_duration(d, "duration")?), None)),
        (None, Some(r)) => Ok((None, Some(src.positive(r, "requests")?))),
    }
}

fn order(src: &Source<'_>, o: &Spanned<String>) -> Result<Order, ExperimentError> {
    let name = o.get_ref().as_str();
    Order::ALL
        .into_iter()
        .find(|order| order.name() == name)
        .ok_or_else(|| {
            src.error(
                o.span(),
                "order",
                format!(
                    "unknown order {name:?}: use \"sequential\", \"shuffled\" or \"interleaved\""
                ),
            )
        })
}

/// `[client]` and `[slo]`.
fn client_settings(
    src: &Source<'_>,
    raw: &RawExperiment,
) -> Result<ClientSettings, ExperimentError> {
    let timeout = match raw.client.as_ref().and_then(|c| c.timeout.as_ref()) {
        None => default_client_timeout(),
        Some(t) => src.nonzero_duration(t, "client.timeout")?,
    };
    let pipeline = match raw.client.as_ref().and_then(|c| c.pipeline.as_ref()) {
        None => 1,
        Some(p) => {
            let v = src.positive(p, "client.pipeline")?;
            if v > crate::cli::MAX_PIPELINE {
                return Err(src.error(
                    p.span(),
                    "client.pipeline",
                    format!("at most {}", crate::cli::MAX_PIPELINE),
                ));
            }
            v
        }
    };
    let slo_p99 = match &raw.slo {
        None => None,
        Some(slo) => Some(src.nonzero_duration(&slo.p99, "slo.p99")?),
    };
    let threads = match raw.client.as_ref().and_then(|c| c.threads.as_ref()) {
        None => None,
        Some(t) => Some(client_threads(src, t)?),
    };
    Ok(ClientSettings {
        timeout,
        pipeline,
        slo_p99,
        threads,
    })
}

/// The most `--threads` the client takes.
pub const MAX_CLIENT_THREADS: u64 = 100_000;

/// `[client] threads`: 1 to [`MAX_CLIENT_THREADS`].
fn client_threads(src: &Source<'_>, t: &Spanned<i64>) -> Result<u64, ExperimentError> {
    let key = "client.threads";
    let v = src.positive(t, key).map_err(|mut e| {
        e.message.push_str(
            " (the client's event-loop threads; leave it out for the client's default, min(concurrency, cores))",
        );
        e
    })?;
    if v > MAX_CLIENT_THREADS {
        return Err(src.error(
            t.span(),
            key,
            format!("at most {MAX_CLIENT_THREADS} client threads, not {v}"),
        ));
    }
    Ok(v)
}

/// Where each target that sets `tls = true` sets it (its key and span), by target name:
/// errors about that target's cells point there.
type TlsAt = BTreeMap<String, (String, Range<usize>)>;

/// Targets: `[server]` alone, or named `[targets.NAME]` tables.
fn targets(
    src: &Source<'_>,
    raw: &RawExperiment,
) -> Result<(BTreeMap<String, Target>, TlsAt), ExperimentError> {
    let mut targets = BTreeMap::new();
    let mut tls_at = TlsAt::new();
    let mut add_target = |name: &str, raw: &RawTarget, key: &str| {
        targets.insert(name.to_string(), resolve_target(src, raw, key)?);
        if let Some(tls) = raw.tls.as_ref().filter(|t| *t.get_ref()) {
            tls_at.insert(name.to_string(), (format!("{key}.tls"), tls.span()));
        }
        Ok::<(), ExperimentError>(())
    };
    match (&raw.server, &raw.targets) {
        (Some(_), Some(t)) => {
            return Err(src.error(
                t.span(),
                "targets",
                "give either one [server] table or named [targets.NAME] tables, not both",
            ))
        }
        (Some(server), None) => {
            let name = if server.get_ref().command.is_some() {
                "external"
            } else if server.get_ref().image.is_some() {
                "container"
            } else {
                "builtin"
            };
            add_target(name, server.get_ref(), "server")?;
        }
        (None, Some(named)) => {
            if named.get_ref().is_empty() {
                return Err(src.error(named.span(), "targets", "define at least one target"));
            }
            for (name, t) in named.get_ref() {
                let key = format!("targets.{name}");
                if !is_target_name(name) {
                    return Err(src.error(
                        t.span(),
                        &key,
                        "a target name may hold only letters, digits, '-', '_' and '.'",
                    ));
                }
                add_target(name, t.get_ref(), &key)?;
            }
        }
        // An empty `[server]`: the built-in server with every default.
        (None, None) => add_target("builtin", &RawTarget::default(), "server")?,
    }
    Ok((targets, tls_at))
}

fn is_target_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// `[matrix]`: each list checked value by value; defaults for the axes not given.
fn axes(
    src: &Source<'_>,
    matrix: &Spanned<RawMatrix>,
    targets: &BTreeMap<String, Target>,
) -> Result<BTreeMap<Axis, Vec<AxisValue>>, ExperimentError> {
    let mut axes = BTreeMap::new();
    for axis in Axis::ALL {
        let key = format!("matrix.{}", axis.name());
        let values = match matrix.get_ref().get(axis) {
            Some(input) => axis_values(src, axis, input, &key, targets)?,
            None => default_axis(axis, targets),
        };
        axes.insert(axis, values);
    }
    if matrix.get_ref().concurrency.is_none() {
        return Err(src.error(
            matrix.span(),
            "matrix.concurrency",
            "missing: list the client concurrencies to measure, e.g. concurrency = [1, 2, 4]",
        ));
    }
    Ok(axes)
}

/// `[[exclude]]` or `[[include]]` (`kind`) tables, in the file's order.
fn filters(
    src: &Source<'_>,
    tables: &[RawFilter],
    kind: &str,
    targets: &BTreeMap<String, Target>,
    is_include: bool,
    axes: &BTreeMap<Axis, Vec<AxisValue>>,
) -> Result<Vec<Filter>, ExperimentError> {
    tables
        .iter()
        .enumerate()
        .map(|(i, table)| {
            let key = format!("{kind}[{}]", i + 1);
            filter(src, table, &key, targets, is_include, axes)
        })
        .collect()
}

/// The open loop drives plain non-blocking sockets; the client refuses --rate with
/// --tls, so such a cell is refused here, before anything runs.
fn refuse_open_loop_over_tls(
    src: &Source<'_>,
    cells: &[Cell],
    tls_at: &TlsAt,
) -> Result<(), ExperimentError> {
    match cells
        .iter()
        .filter(|c| c.rate.is_some())
        .find_map(|c| Some((c, tls_at.get(&c.target)?)))
    {
        Some((cell, (key, span))) => Err(src.error(
            span.clone(),
            key,
            format!(
                "the open loop (`rate`, here {}) does not run over TLS yet: exclude this target's rate cells, or measure it closed-loop (rate = \"closed\")",
                cell.label()
            ),
        )),
        None => Ok(()),
    }
}

fn resolve_target(src: &Source<'_>, raw: &RawTarget, key: &str) -> Result<Target, ExperimentError> {
    let ready_timeout = match &raw.ready_timeout {
        None => Duration::from_secs(10),
        Some(t) => src.duration(t, &format!("{key}.ready_timeout"))?,
    };
    let stop_grace = match &raw.stop_grace {
        None => Duration::from_secs(5),
        Some(t) => src.duration(t, &format!("{key}.stop_grace"))?,
    };
    let tls = raw.tls.as_ref().is_some_and(|t| *t.get_ref());
    let kind = match (&raw.command, &raw.image) {
        (Some(_), Some(image)) => return Err(src.error(
            image.span(),
            &format!("{key}.image"),
            "give a target either a `command` (a program) or an `image` (a container), not both",
        )),
        (Some(command), None) => external_target(src, raw, command, key, tls)?,
        (None, Some(image)) => container_target(src, raw, image, key, tls)?,
        (None, None) => builtin_target(src, raw, key)?,
    };
    if raw.image.is_none() {
        let only = [
            (raw.client_image.as_ref().map(Spanned::span), "client_image"),
            (raw.cpus.as_ref().map(Spanned::span), "cpus"),
        ];
        if let Some((span, field)) = only.iter().find_map(|(s, f)| Some((s.clone()?, f))) {
            return Err(src.error(
                span,
                &format!("{key}.{field}"),
                format!("`{field}` is for a container target: add `image = \"threadcenter:local\"` (scripts/image.sh), or remove it"),
            ));
        }
    }
    Ok(Target {
        kind,
        ready_timeout,
        stop_grace,
        tls,
    })
}

/// A target with a `command`: none of the built-in server's keys, and only known
/// placeholders in its words.
fn external_target(
    src: &Source<'_>,
    raw: &RawTarget,
    command: &Spanned<Vec<Spanned<String>>>,
    key: &str,
    tls: bool,
) -> Result<TargetKind, ExperimentError> {
    let builtin_only = [
        (
            raw.args.as_ref().map(Spanned::span),
            "args",
            "`args` is for the built-in server; put an external server's arguments in `command`",
        ),
        (
            raw.pool.as_ref().map(Spanned::span),
            "pool",
            "`pool` is for the built-in server; an external command chooses its own",
        ),
        (
            raw.binary.as_ref().map(Spanned::span),
            "binary",
            "`binary` is for the built-in server; an external target names its program in `command`",
        ),
    ];
    for (span, field, message) in builtin_only {
        if let Some(span) = span {
            return Err(src.error(span, &format!("{key}.{field}"), message));
        }
    }
    let ckey = format!("{key}.command");
    if command.get_ref().is_empty() {
        return Err(src.error(
            command.span(),
            &ckey,
            "must name a program, e.g. [\"python3\", \"server.py\", \"--port\", \"{port}\"]",
        ));
    }
    for word in command.get_ref() {
        if let Err(bad) = check_placeholders(word.get_ref(), tls) {
            let tls_note = if TLS_PLACEHOLDERS.contains(&bad.as_str()) {
                format!(" ({{{bad}}} only with `tls = true` on this target)")
            } else {
                String::new()
            };
            return Err(src.error(
                word.span(),
                &ckey,
                format!(
                    "unknown placeholder {{{bad}}}: the runner fills {}{tls_note}",
                    known_placeholders(tls).join(", ")
                ),
            ));
        }
    }
    Ok(TargetKind::External {
        command: command
            .get_ref()
            .iter()
            .map(|w| w.get_ref().clone())
            .collect(),
    })
}

/// A target with an `image`: `args` with `{host}`, `{port}`, `{workers}` only, no TLS
/// yet, and none of the built-in server's process keys.
fn container_target(
    src: &Source<'_>,
    raw: &RawTarget,
    image: &Spanned<String>,
    key: &str,
    tls: bool,
) -> Result<TargetKind, ExperimentError> {
    let not_here = [
        (raw.pool.as_ref().map(Spanned::span), "pool", "`pool` is for the built-in server run as a process; pass `--pool` in a container target's `args`"),
        (raw.binary.as_ref().map(Spanned::span), "binary", "`binary` is for the built-in server run as a process; a container target names its `image`"),
        (raw.tls.as_ref().filter(|t| *t.get_ref()).map(Spanned::span), "tls", "a container target does not serve TLS yet: measure it in plaintext (remove `tls`)"),
        (raw.client_image.as_ref().map(Spanned::span), "client_image", "the runner does not run its client in a container yet (it runs on the host, against the container's address); compose.yaml runs clients in containers (docs/containers.md)"),
    ];
    if let Some((span, field, message)) = not_here
        .iter()
        .find_map(|(s, f, m)| Some((s.clone()?, f, m)))
    {
        return Err(src.error(span, &format!("{key}.{field}"), *message));
    }
    debug_assert!(!tls);
    let image_of = |i: &Spanned<String>, field: &str| {
        let name = i.get_ref().trim();
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            Err(src.error(
                i.span(),
                &format!("{key}.{field}"),
                "must name an image, e.g. \"threadcenter:local\" (scripts/image.sh builds it)",
            ))
        } else {
            Ok(name.to_string())
        }
    };
    let akey = format!("{key}.args");
    let args = match &raw.args {
        None => super::container::DEFAULT_ARGS
            .iter()
            .map(|a| a.to_string())
            .collect(),
        Some(a) => {
            if let Some(bad) = a.get_ref().iter().find_map(|w| {
                placeholders(w)
                    .into_iter()
                    .find(|p| !super::container::PLACEHOLDERS.contains(p))
            }) {
                return Err(src.error(a.span(), &akey, format!("unknown placeholder {{{bad}}}: a container target's args take {{host}}, {{port}} and {{workers}}")));
            }
            a.get_ref().clone()
        }
    };
    let cpus = match &raw.cpus {
        None => available_cores() as f64,
        Some(c) if c.get_ref().is_finite() && *c.get_ref() > 0.0 => *c.get_ref(),
        Some(c) => {
            return Err(src.error(
                c.span(),
                &format!("{key}.cpus"),
                "must be a positive number of CPUs, e.g. cpus = 1.5",
            ))
        }
    };
    Ok(TargetKind::Container(ContainerTarget {
        image: image_of(image, "image")?,
        args,
        cpus,
    }))
}

/// A target without a `command`: this executable's server (or `binary`'s).
fn builtin_target(
    src: &Source<'_>,
    raw: &RawTarget,
    key: &str,
) -> Result<TargetKind, ExperimentError> {
    let pool = match &raw.pool {
        None => PoolKind::Process,
        Some(p) => {
            parse_pool(p.get_ref()).map_err(|m| src.error(p.span(), &format!("{key}.pool"), m))?
        }
    };
    let binary = match &raw.binary {
        None => None,
        Some(b) => {
            let bkey = format!("{key}.binary");
            if b.get_ref().trim().is_empty() {
                return Err(src.error(b.span(), &bkey, "must name an executable"));
            }
            if placeholders(b.get_ref()).iter().any(|p| *p != "dir") {
                return Err(src.error(
                    b.span(),
                    &bkey,
                    "the only placeholder a `binary` takes is {dir} (the experiment file's directory)",
                ));
            }
            Some(b.get_ref().clone())
        }
    };
    Ok(TargetKind::Builtin {
        pool,
        args: raw
            .args
            .as_ref()
            .map(|a| a.get_ref().clone())
            .unwrap_or_default(),
        binary,
    })
}

/// `{host}`, `{port}`, … as an error message lists them.
fn known_placeholders(tls: bool) -> Vec<String> {
    let extra: &[&str] = if tls { &TLS_PLACEHOLDERS } else { &[] };
    PLACEHOLDERS
        .iter()
        .chain(extra)
        .map(|p| format!("{{{p}}}"))
        .collect()
}

/// Every `{name}` in a word.
fn placeholders(word: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = word;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        out.push(&after[..close]);
        rest = &after[close + 1..];
    }
    out
}

/// `Err(name)` for the first `{name}` that is not a known placeholder (the TLS ones
/// count only for a target with `tls`).
fn check_placeholders(word: &str, tls: bool) -> Result<(), String> {
    let known =
        |name: &str| PLACEHOLDERS.contains(&name) || tls && TLS_PLACEHOLDERS.contains(&name);
    match placeholders(word).into_iter().find(|name| !known(name)) {
        Some(bad) => Err(bad.to_string()),
        None => Ok(()),
    }
}

/// A pool's name, read by [`PoolKind`]'s `FromStr`; the error in the experiment file's words.
fn parse_pool(s: &str) -> Result<PoolKind, String> {
    s.parse()
        .map_err(|_| format!("unknown pool {s:?}: use \"process\" or \"thread\""))
}

fn default_axis(axis: Axis, targets: &BTreeMap<String, Target>) -> Vec<AxisValue> {
    match axis {
        Axis::Target => targets.keys().map(|k| AxisValue::Str(k.clone())).collect(),
        // Each target's own pool (see matrix::expand); a placeholder value here.
        Axis::Pool => vec![AxisValue::Str(String::new())],
        // The server's own default: no `--io` passed.
        Axis::Io => vec![AxisValue::Str(String::new())],
        Axis::Workers => vec![AxisValue::Int(available_cores())],
        Axis::Cmd => vec![AxisValue::Str("compute".into())],
        Axis::Size => vec![AxisValue::Int(500_000)],
        // Required: checked by the caller.
        Axis::Concurrency => vec![AxisValue::Int(1)],
        Axis::Rate => vec![AxisValue::Str(crate::rundir::CLOSED.into())],
    }
}

/// The machine's cores: the default `workers`, and what `cores` in a range stands for.
fn available_cores() -> u64 {
    crate::machine::available_cores() as u64
}

/// `[client] timeout` when the file gives none: the client's own `--timeout` default.
fn default_client_timeout() -> Duration {
    crate::cli::parse_duration(CLIENT_TIMEOUT).expect("domain::CLIENT_TIMEOUT is a duration")
}

/// One axis value checked against the axis's type and range.
fn axis_value(
    axis: Axis,
    value: &toml::Value,
    targets: &BTreeMap<String, Target>,
) -> Result<AxisValue, String> {
    match axis {
        Axis::Workers | Axis::Concurrency | Axis::Size => {
            let v = value
                .as_integer()
                .ok_or_else(|| format!("expected an integer, found {}", value.type_str()))?;
            let min = if axis == Axis::Size { 0 } else { 1 };
            if v < min {
                return Err(format!("must be at least {min}, not {v}"));
            }
            if axis == Axis::Concurrency && v > 100_000 {
                return Err(format!("at most 100000 client threads, not {v}"));
            }
            Ok(AxisValue::Int(v as u64))
        }
        Axis::Rate => match value {
            toml::Value::Integer(v) if *v >= 1 => Ok(AxisValue::Int(*v as u64)),
            toml::Value::String(s) if s == crate::rundir::CLOSED => {
                Ok(AxisValue::Str(crate::rundir::CLOSED.into()))
            }
            other => Err(format!(
                "expected a rate in requests per second (an integer, at least 1) or \"closed\", found {other}"
            )),
        },
        Axis::Pool => {
            let s = value.as_str().ok_or_else(|| {
                format!(
                    "expected \"process\" or \"thread\", found {}",
                    value.type_str()
                )
            })?;
            parse_pool(s).map(|p| AxisValue::Str(p.as_str().into()))
        }
        Axis::Io => match value.as_str().map(str::parse::<IoModel>) {
            Some(Ok(io)) => Ok(AxisValue::Str(io.as_str().into())),
            _ => Err(format!(
                "expected \"threads\" (a reader and a writer thread per connection) or \"events\" (epoll loops), found {value}"
            )),
        },
        Axis::Cmd => match value.as_str().map(str::parse::<ClientCmd>) {
            Some(Ok(cmd)) => Ok(AxisValue::Str(cmd.as_str().into())),
            _ => Err(format!("expected \"compute\" or \"ping\", found {value}")),
        },
        Axis::Target => {
            let s = value
                .as_str()
                .ok_or_else(|| format!("expected a target name, found {}", value.type_str()))?;
            if targets.contains_key(s) {
                Ok(AxisValue::Str(s.into()))
            } else {
                Err(format!(
                    "unknown target {s:?}: the file defines {}",
                    targets
                        .keys()
                        .map(|k| format!("{k:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        }
    }
}

/// The most rates one sweep may make.
pub const MAX_SWEEP_STEPS: u64 = 100;

/// A rate sweep: `"LO..=HI in N steps"`, N rates evenly spaced from LO to HI (both
/// included, rounded to whole requests per second).
fn rate_sweep(s: &str) -> Result<Vec<AxisValue>, String> {
    let usage = || {
        format!(
            "expected a list of rates such as [1000, 2000, \"closed\"] or a sweep such as \"1000..=20000 in 8 steps\", found {s:?}"
        )
    };
    let (range, steps) = s.split_once(" in ").ok_or_else(usage)?;
    let (lo, hi) = range.split_once("..=").ok_or_else(usage)?;
    let steps = steps.trim();
    let steps = steps
        .strip_suffix("steps")
        .or_else(|| steps.strip_suffix("step"))
        .ok_or_else(usage)?;
    let parse = |t: &str, what: &str| -> Result<u64, String> {
        t.trim()
            .replace('_', "")
            .parse()
            .map_err(|_| format!("bad sweep {what} in {s:?}"))
    };
    let (lo, hi, steps) = (
        parse(lo, "start")?,
        parse(hi, "end")?,
        parse(steps, "step count")?,
    );
    if lo == 0 {
        return Err(format!("the sweep {s:?} starts at 0: rates start at 1"));
    }
    if hi <= lo {
        return Err(format!("the sweep {s:?} must end above its start"));
    }
    if !(2..=MAX_SWEEP_STEPS).contains(&steps) {
        return Err(format!(
            "the sweep {s:?} needs 2 to {MAX_SWEEP_STEPS} steps"
        ));
    }
    let mut rates: Vec<AxisValue> = Vec::new();
    for i in 0..steps {
        let r = lo as f64 + (hi - lo) as f64 * i as f64 / (steps - 1) as f64;
        let v = AxisValue::Int(r.round() as u64);
        if !rates.contains(&v) {
            rates.push(v);
        }
    }
    Ok(rates)
}

/// A range string for an integer axis: `"LO..=HI"`, HI an integer or `cores`.
fn axis_range(axis: Axis, s: &str) -> Result<Vec<AxisValue>, String> {
    if !matches!(axis, Axis::Workers | Axis::Concurrency | Axis::Size) {
        return Err(format!("expected a list of values, found the string {s:?}"));
    }
    let Some((lo, hi)) = s.split_once("..=") else {
        return Err(format!(
            "expected a list such as [1, 2, 4] or a range such as \"1..=cores\", found {s:?}"
        ));
    };
    let lo: u64 = lo
        .trim()
        .parse()
        .map_err(|_| format!("bad range start in {s:?}"))?;
    let hi: u64 = match hi.trim() {
        "cores" => available_cores(),
        h => h.parse().map_err(|_| format!("bad range end in {s:?}"))?,
    };
    if hi < lo {
        return Err(format!("the range {s:?} is empty ({lo}..={hi})"));
    }
    if hi - lo >= 1000 {
        return Err(format!("the range {s:?} has more than 1000 values"));
    }
    (lo..=hi)
        .map(|v| axis_value(axis, &toml::Value::Integer(v as i64), &BTreeMap::new()))
        .collect()
}

fn axis_values(
    src: &Source<'_>,
    axis: Axis,
    input: &Spanned<AxisInput>,
    key: &str,
    targets: &BTreeMap<String, Target>,
) -> Result<Vec<AxisValue>, ExperimentError> {
    let values: Vec<(AxisValue, Range<usize>)> = match input.get_ref() {
        AxisInput::List(items) => {
            if items.is_empty() {
                return Err(src.error(input.span(), key, "must list at least one value"));
            }
            items
                .iter()
                .map(|item| {
                    axis_value(axis, item.get_ref(), targets)
                        .map(|v| (v, item.span()))
                        .map_err(|m| src.error(item.span(), key, m))
                })
                .collect::<Result<_, _>>()?
        }
        AxisInput::One(toml::Value::String(s))
            if axis == Axis::Rate && s != crate::rundir::CLOSED =>
        {
            rate_sweep(s)
                .map_err(|m| src.error(input.span(), key, m))?
                .into_iter()
                .map(|v| (v, input.span()))
                .collect()
        }
        AxisInput::One(toml::Value::String(s))
            if matches!(axis, Axis::Workers | Axis::Concurrency | Axis::Size) =>
        {
            axis_range(axis, s)
                .map_err(|m| src.error(input.span(), key, m))?
                .into_iter()
                .map(|v| (v, input.span()))
                .collect()
        }
        AxisInput::One(v) => vec![(
            axis_value(axis, v, targets).map_err(|m| src.error(input.span(), key, m))?,
            input.span(),
        )],
    };
    let mut seen: Vec<AxisValue> = Vec::with_capacity(values.len());
    for (v, span) in values {
        if seen.contains(&v) {
            return Err(src.error(span, key, format!("the value {v} is listed twice")));
        }
        seen.push(v);
    }
    Ok(seen)
}

fn filter(
    src: &Source<'_>,
    table: &RawFilter,
    key: &str,
    targets: &BTreeMap<String, Target>,
    is_include: bool,
    axes: &BTreeMap<Axis, Vec<AxisValue>>,
) -> Result<Filter, ExperimentError> {
    if table.get_ref().is_empty() {
        return Err(src.error(table.span(), key, "names no axis"));
    }
    let mut values = BTreeMap::new();
    for (name, input) in table.get_ref() {
        let k = format!("{key}.{name}");
        let Some(axis) = Axis::from_name(name) else {
            return Err(src.error(
                input.span(),
                &k,
                format!(
                    "unknown axis {name:?}: the axes are {}",
                    Axis::ALL.map(|a| a.name()).join(", ")
                ),
            ));
        };
        values.insert(axis, axis_values(src, axis, input, &k, targets)?);
    }
    if is_include {
        for axis in Axis::ALL {
            if !values.contains_key(&axis) && axes[&axis].len() > 1 && axis != Axis::Pool {
                return Err(src.error(
                    table.span(),
                    key,
                    format!(
                        "must set `{}`: the matrix has several values for it",
                        axis.name()
                    ),
                ));
            }
        }
    }
    Ok(Filter { values })
}

/// `[hosts.NAME]`, the targets' `host` and `[client] hosts`, checked against each other
/// and against the cells (each client host needs a connection at least).
fn hosts(
    src: &Source<'_>,
    raw: &RawExperiment,
    targets: &BTreeMap<String, Target>,
    cells: &[Cell],
) -> Result<Hosts, ExperimentError> {
    let mut out = Hosts::default();
    if let Some(table) = &raw.hosts {
        for (name, h) in table.get_ref() {
            let key = format!("hosts.{name}");
            if !is_target_name(name) {
                return Err(src.error(
                    h.span(),
                    &key,
                    "a host name may hold only letters, digits, '-', '_' and '.'",
                ));
            }
            out.hosts
                .insert(name.clone(), host(src, h.get_ref(), &key)?);
        }
    }
    let undefined = |name: &str| {
        if out.hosts.is_empty() {
            format!("there is no host {name:?}: define it as [hosts.{name}] with at least `ssh = \"user@machine\"`")
        } else {
            format!(
                "there is no host {name:?}: the [hosts] tables define {}",
                out.hosts.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        }
    };
    let mut raw_targets: Vec<(String, String, &RawTarget)> = Vec::new();
    match (&raw.server, &raw.targets) {
        (Some(s), _) => {
            if let Some(name) = targets.keys().next() {
                raw_targets.push((name.clone(), "server".into(), s.get_ref()));
            }
        }
        (None, Some(t)) => {
            for (name, t) in t.get_ref() {
                raw_targets.push((name.clone(), format!("targets.{name}"), t.get_ref()));
            }
        }
        (None, None) => {}
    }
    for (name, key, t) in raw_targets {
        let Some(h) = &t.host else { continue };
        let hkey = format!("{key}.host");
        if !out.hosts.contains_key(h.get_ref()) {
            return Err(src.error(h.span(), &hkey, undefined(h.get_ref())));
        }
        let target = &targets[&name];
        let refuse = match &target.kind {
            TargetKind::External { .. } => Some("an external `command` runs here only: a target on a host is the built-in server"),
            TargetKind::Container(_) => Some("a container target runs here only: a target on a host is the built-in server"),
            TargetKind::Builtin { binary: Some(_), .. } => Some("a target on a host runs that host's binary: give `binary` in its [hosts] table instead"),
            _ if target.tls => Some("TLS targets run here only for now: remove `tls` or `host`"),
            _ => None,
        };
        if let Some(why) = refuse {
            return Err(src.error(h.span(), &hkey, why));
        }
        out.target_host.insert(name, h.get_ref().clone());
    }
    if let Some(list) = raw.client.as_ref().and_then(|c| c.hosts.as_ref()) {
        if list.get_ref().is_empty() {
            return Err(src.error(
                list.span(),
                "client.hosts",
                "must name at least one host (remove it to run the load here)",
            ));
        }
        for h in list.get_ref() {
            if !out.hosts.contains_key(h.get_ref()) {
                return Err(src.error(h.span(), "client.hosts", undefined(h.get_ref())));
            }
            if out.client_hosts.contains(h.get_ref()) {
                return Err(src.error(
                    h.span(),
                    "client.hosts",
                    format!("{:?} is listed twice", h.get_ref()),
                ));
            }
            out.client_hosts.push(h.get_ref().clone());
        }
        if let Some(local) = targets.keys().find(|t| !out.target_host.contains_key(*t)) {
            return Err(src.error(
                list.span(),
                "client.hosts",
                format!(
                    "the load runs on hosts, so every target needs a `host` for its server (target {local:?} has none): the clients must reach it at a host's address"
                ),
            ));
        }
        let n = out.client_hosts.len() as u64;
        if let Some(cell) = cells.iter().find(|c| c.concurrency < n) {
            let span = raw
                .matrix
                .get_ref()
                .concurrency
                .as_ref()
                .map_or(raw.matrix.span(), Spanned::span);
            return Err(src.error(
                span,
                "matrix.concurrency",
                format!(
                    "{} cannot be split over the {n} client hosts (cell {}): give each host one at least",
                    crate::human::count(cell.concurrency, "connection", "connections"),
                    cell.label()
                ),
            ));
        }
    }
    Ok(out)
}

/// One `[hosts.NAME]` table.
fn host(src: &Source<'_>, raw: &RawHost, key: &str) -> Result<Host, ExperimentError> {
    let ssh = raw.ssh.get_ref().trim().to_string();
    if ssh.is_empty() || ssh.starts_with('-') {
        return Err(src.error(
            raw.ssh.span(),
            &format!("{key}.ssh"),
            "must be the destination as `ssh` takes it, e.g. \"bench@10.0.0.2\" (flags go in `ssh_options`)",
        ));
    }
    let address = match &raw.address {
        Some(a) if a.get_ref().trim().is_empty() => {
            return Err(src.error(a.span(), &format!("{key}.address"), "must not be empty"))
        }
        Some(a) => a.get_ref().trim().to_string(),
        None => ssh_host_part(&ssh),
    };
    let cpus = match &raw.cpus {
        None => None,
        Some(c) => {
            c.get_ref()
                .parse::<crate::remote::cpus::CpuList>()
                .map_err(|m| src.error(c.span(), &format!("{key}.cpus"), m))?;
            Some(c.get_ref().trim().to_string())
        }
    };
    let binary = match &raw.binary {
        Some(b) if b.get_ref().trim().is_empty() => {
            return Err(src.error(
                b.span(),
                &format!("{key}.binary"),
                "must name the threadcenter executable on that host (or remove it to copy this one there)",
            ))
        }
        b => b.as_ref().map(|b| b.get_ref().trim().to_string()),
    };
    Ok(Host {
        ssh,
        ssh_options: raw.ssh_options.clone(),
        address,
        cpus,
        binary,
    })
}

/// The machine in an ssh destination: `bench@10.0.0.2` → `10.0.0.2`;
/// `ssh://bench@[::1]:2222` → `::1`.
fn ssh_host_part(dest: &str) -> String {
    let (uri, rest) = match dest.strip_prefix("ssh://") {
        Some(r) => (true, r),
        None => (false, dest),
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if let Some(v6) = rest.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6).to_string();
    }
    if uri {
        return rest.split(':').next().unwrap_or(rest).to_string();
    }
    rest.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ExperimentError {
        parse(Path::new("x.toml"), text).expect_err("should be refused")
    }

    const OK: &str = "name = \"t\"\nduration = \"1s\"\n[matrix]\nconcurrency = [1, 2]\nworkers = [1]\nsize = [10]\n";

    #[test]
    fn hosts_are_read_and_their_mistakes_named() {
        let hosts = "[hosts.srv]\nssh = \"bench@10.0.0.2\"\nssh_options = [\"-p\", \"2222\"]\ncpus = \"0\"\n\
                     [hosts.lg1]\nssh = \"ssh://me@[fd00::3]:22\"\nbinary = \"/opt/tc\"\n";
        let file = |server: &str, client: &str| {
            format!("name = \"t\"\nduration = \"1s\"\n{client}\n[matrix]\nconcurrency = [1, 2]\nworkers = [1]\n\n{hosts}\n[server]\n{server}\n")
        };
        let exp = parse(Path::new("x.toml"), &file("host = \"srv\"", "")).unwrap();
        let h = &exp.hosts;
        assert_eq!(h.hosts["srv"].address, "10.0.0.2");
        assert_eq!(h.hosts["srv"].ssh_options, ["-p", "2222"]);
        assert_eq!(h.hosts["lg1"].address, "fd00::3");
        assert_eq!(h.hosts["lg1"].binary.as_deref(), Some("/opt/tc"));
        assert_eq!(h.target_host["builtin"], "srv");
        assert!(h.client_hosts.is_empty() && h.is_remote("builtin"));
        let exp = parse(
            Path::new("x.toml"),
            &file("host = \"srv\"", "[client]\nhosts = [\"lg1\"]"),
        )
        .unwrap();
        assert_eq!(exp.hosts.client_hosts, ["lg1"]);
        // Without [hosts], nothing changes.
        assert_eq!(
            parse(Path::new("x.toml"), OK).unwrap().hosts,
            Hosts::default()
        );

        let e = err(&file("host = \"nope\"", ""));
        assert_eq!(e.key.as_deref(), Some("server.host"));
        assert!(e.message.contains("srv"), "{e}");
        let e = err(&file("", "[client]\nhosts = [\"lg1\"]"));
        assert!(e.message.contains("needs a `host`"), "{e}");
        let e = err(&file(
            "host = \"srv\"",
            "[client]\nhosts = [\"lg1\", \"srv\", \"lg1\"]",
        ));
        assert!(e.message.contains("twice"), "{e}");
        let e = err(&file(
            "host = \"srv\"",
            "[client]\nhosts = [\"lg1\", \"srv\"]",
        ));
        assert_eq!(e.key.as_deref(), Some("matrix.concurrency"), "{e}");
        let e = err(&file("host = \"srv\"\ntls = true", ""));
        assert!(e.message.contains("TLS"), "{e}");
        let e = err(&file("", "").replace("cpus = \"0\"", "cpus = \"0-\""));
        assert_eq!(e.key.as_deref(), Some("hosts.srv.cpus"), "{e}");
        let e = err(&file("", "").replace("ssh = \"bench@10.0.0.2\"", "ssh = \"-p 22\""));
        assert_eq!(e.key.as_deref(), Some("hosts.srv.ssh"), "{e}");
        let e = err(&file("", "").replace("binary = \"/opt/tc\"", "binery = \"x\""));
        assert!(e.message.contains("binery"), "{e}");
    }

    #[test]
    fn rates_are_lists_sweeps_or_closed_and_the_slo_and_pipeline_are_read() {
        let with = |rate: &str| format!("{OK}rate = {rate}\n");
        let e = parse(Path::new("x.toml"), OK).unwrap();
        assert!(
            e.cells.iter().all(|c| c.rate.is_none()),
            "closed by default"
        );
        assert_eq!((e.client.pipeline, e.client.slo_p99), (1, None));

        let e = parse(Path::new("x.toml"), &with("[\"closed\", 1000, 2500]")).unwrap();
        let rates: Vec<_> = e.cells.iter().map(|c| c.rate).collect();
        // Rate varies fastest: concurrency 1's three cells, then concurrency 2's.
        assert_eq!(
            rates,
            [None, Some(1000), Some(2500), None, Some(1000), Some(2500)]
        );

        let e = parse(Path::new("x.toml"), &with("\"1000..=2000 in 5 steps\"")).unwrap();
        let rates: Vec<_> = e.cells.iter().take(5).map(|c| c.rate.unwrap()).collect();
        assert_eq!(rates, [1000, 1250, 1500, 1750, 2000]);

        let text = "name = \"t\"\nduration = \"1s\"\n[client]\npipeline = 16\n[slo]\np99 = \"5ms\"\n[matrix]\nconcurrency = [2]\nrate = 100\n";
        let e = parse(Path::new("x.toml"), text).unwrap();
        assert_eq!(e.client.pipeline, 16);
        assert_eq!(e.client.slo_p99, Some(Duration::from_millis(5)));
        assert_eq!(e.cells[0].rate, Some(100));

        for (rate, needle) in [
            ("[0]", "at least 1"),
            ("[\"fast\"]", "or \"closed\""),
            ("\"1000..=2000\"", "a sweep such as"),
            ("\"2000..=1000 in 3 steps\"", "must end above its start"),
            ("\"0..=1000 in 3 steps\"", "starts at 0"),
            ("\"1000..=2000 in 1 steps\"", "2 to 100 steps"),
            ("[1000, 1000]", "listed twice"),
        ] {
            let e = err(&with(rate));
            assert_eq!(e.key.as_deref(), Some("matrix.rate"), "{rate}: {e}");
            assert!(e.message.contains(needle), "{rate}: {e}");
        }
        let e = err(&format!("{OK}[client]\npipeline = 0\n"));
        assert_eq!(e.key.as_deref(), Some("client.pipeline"), "{e}");
        let e = err(&format!("{OK}[slo]\np99 = \"soon\"\n"));
        assert_eq!(e.key.as_deref(), Some("slo.p99"), "{e}");
    }

    #[test]
    fn the_io_axis_multiplies_builtin_cells_only_and_client_threads_are_checked() {
        let e = parse(Path::new("x.toml"), OK).unwrap();
        assert!(e.cells.iter().all(|c| c.io.is_none()), "no axis: no --io");
        assert_eq!(e.client.threads, None);
        let text = "name = \"t\"\nduration = \"1s\"\n[client]\nthreads = 3\n\
                    [targets.a]\n[targets.ext]\ncommand = [\"s\", \"{port}\"]\n\
                    [matrix]\nio = [\"threads\", \"events\"]\nconcurrency = [4]\n";
        let e = parse(Path::new("x.toml"), text).unwrap();
        assert_eq!(e.client.threads, Some(3));
        let got: Vec<(&str, Option<IoModel>)> =
            e.cells.iter().map(|c| (c.target.as_str(), c.io)).collect();
        assert_eq!(
            got,
            [
                ("a", Some(IoModel::Threads)),
                ("a", Some(IoModel::Events)),
                ("ext", None)
            ],
            "an external target is not multiplied by io"
        );
        assert_eq!(
            e.cells[1].label(),
            "target=a pool=process io=events workers=2 cmd=compute size=500000 concurrency=4"
                .replace("workers=2", &format!("workers={}", available_cores()))
        );

        for (body, key, needle) in [
            (
                "[matrix]\nio = [\"fibres\"]\n",
                "matrix.io",
                "\"events\" (epoll loops)",
            ),
            ("[matrix]\nio = 1\n", "matrix.io", "expected \"threads\""),
            (
                "[client]\nthreads = 0\n[matrix]\n",
                "client.threads",
                "at least 1",
            ),
            (
                "[client]\nthreads = 100001\n[matrix]\n",
                "client.threads",
                "at most 100000",
            ),
            (
                "[client]\nthreads = \"2\"\n[matrix]\n",
                "client.threads",
                "expected a whole number",
            ),
        ] {
            let e = err(&format!(
                "name = \"t\"\nduration = \"1s\"\n{body}concurrency = [1]\n"
            ));
            assert_eq!(e.key.as_deref(), Some(key), "{body}: {e}");
            assert!(e.message.contains(needle), "{body}: {e}");
        }
    }

    #[test]
    fn the_client_timeout_defaults_to_the_clients_own() {
        use clap::Parser as _;
        let e = parse(Path::new("x.toml"), OK).unwrap();
        let cli = crate::cli::Cli::try_parse_from(["threadcenter", "client"]).unwrap();
        let crate::cli::Command::Client(args) = cli.command else {
            panic!("`threadcenter client` parses as the client command")
        };
        assert_eq!(e.client.timeout, args.timeout);
        assert_eq!(e.client.timeout, Duration::from_secs(30));
    }

    #[test]
    fn a_small_file_resolves_with_defaults() {
        let e = parse(Path::new("x.toml"), OK).unwrap();
        assert_eq!(e.cells.len(), 2);
        assert_eq!(e.settings.repetitions, 1);
        assert_eq!(e.settings.order, Order::Sequential);
        assert_eq!(e.targets.keys().collect::<Vec<_>>(), ["builtin"]);
        assert_eq!(e.cells[0].pool, Some(PoolKind::Process));
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let e = err(&format!("{OK}colour = [1]\n"));
        assert_eq!(e.line, 7, "{e}");
        assert!(e.to_string().contains("colour"), "{e}");
        let e =
            err("name = \"t\"\nduration = \"1s\"\n[matrix]\nconcurrency = [1]\nthreads = [2]\n");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (5, Some("matrix.threads")),
            "{e}"
        );
        assert!(e.message.contains("unknown field `threads`"), "{e}");
    }

    #[test]
    fn type_errors_name_the_key() {
        let e = err("name = \"t\"\nduration = \"1s\"\n[matrix]\nconcurrency = [1, \"two\"]\n");
        assert_eq!(e.key.as_deref(), Some("matrix.concurrency"), "{e}");
        assert_eq!(e.line, 4);
        let e = err(
            "name = \"t\"\nrepetitions = \"3\"\nduration = \"1s\"\n[matrix]\nconcurrency = [1]\n",
        );
        assert_eq!((e.line, e.key.as_deref()), (2, Some("repetitions")), "{e}");
    }

    #[test]
    fn empty_duplicate_and_zero_values_are_refused() {
        let e = err("name = \"t\"\nduration = \"1s\"\n[matrix]\nconcurrency = []\n");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (4, Some("matrix.concurrency")),
            "{e}"
        );
        let e = err("name = \"t\"\nduration = \"1s\"\n[matrix]\nconcurrency = [1,\n  2,\n  1]\n");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (6, Some("matrix.concurrency")),
            "{e}"
        );
        assert!(e.message.contains("listed twice"));
        let e =
            err("name = \"t\"\nduration = \"1s\"\n[matrix]\nconcurrency = [1]\nworkers = [0]\n");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (5, Some("matrix.workers")),
            "{e}"
        );
    }

    #[test]
    fn bad_durations_and_orders_are_refused() {
        let e = err("name = \"t\"\nduration = \"5 parsecs\"\n[matrix]\nconcurrency = [1]\n");
        assert_eq!((e.line, e.key.as_deref()), (2, Some("duration")), "{e}");
        let e = err(
            "name = \"t\"\nduration = \"1s\"\norder = \"random\"\n[matrix]\nconcurrency = [1]\n",
        );
        assert_eq!((e.line, e.key.as_deref()), (3, Some("order")), "{e}");
        let e = err("name = \"t\"\n[matrix]\nconcurrency = [1]\n");
        assert!(e.message.contains("duration"), "{e}");
    }

    #[test]
    fn ranges_expand_and_include_exclude_apply() {
        let e = parse(
            Path::new("x.toml"),
            "name = \"t\"\nduration = \"1s\"\n[matrix]\nworkers = \"1..=3\"\nconcurrency = [1, 2]\n\
             [[exclude]]\nworkers = 2\n[[exclude]]\nworkers = 3\nconcurrency = [1]\n\
             [[include]]\nworkers = 9\nconcurrency = 64\n",
        )
        .unwrap();
        let got: Vec<(u64, u64)> = e.cells.iter().map(|c| (c.workers, c.concurrency)).collect();
        assert_eq!(got, [(1, 1), (1, 2), (3, 2), (9, 64)]);
    }

    #[test]
    fn include_must_pin_axes_with_several_values() {
        let e = err(
            "name = \"t\"\nduration = \"1s\"\n[matrix]\nworkers = [1, 2]\nconcurrency = [1]\n[[include]]\nconcurrency = 8\n",
        );
        assert_eq!(e.key.as_deref(), Some("include[1]"), "{e}");
        assert!(e.message.contains("`workers`"), "{e}");
    }

    #[test]
    fn external_targets_check_their_placeholders() {
        let e = err(
            "name = \"t\"\nduration = \"1s\"\n[targets.py]\ncommand = [\"python3\", \"s.py\", \"--port\", \"{prot}\"]\n[matrix]\nconcurrency = [1]\n",
        );
        assert_eq!(
            (e.line, e.key.as_deref()),
            (4, Some("targets.py.command")),
            "{e}"
        );
        let e = err(
            "name = \"t\"\nduration = \"1s\"\n[targets.a]\n[matrix]\ntarget = [\"a\", \"b\"]\nconcurrency = [1]\n",
        );
        assert_eq!(
            (e.line, e.key.as_deref()),
            (5, Some("matrix.target")),
            "{e}"
        );
    }

    #[test]
    fn tls_is_a_target_setting_and_opens_its_placeholders() {
        let e = parse(
            Path::new("x.toml"),
            "name = \"t\"\nduration = \"1s\"\n[targets.plain]\n[targets.tls]\ntls = true\n\
             [targets.ext]\ntls = true\ncommand = [\"s\", \"--cert\", \"{tls_cert}\", \"--key={tls_key}\"]\n\
             [matrix]\nconcurrency = [1]\n",
        )
        .unwrap();
        let tls: Vec<(&str, bool)> = e.targets.iter().map(|(n, t)| (n.as_str(), t.tls)).collect();
        assert_eq!(tls, [("ext", true), ("plain", false), ("tls", true)]);

        // Without `tls = true` the certificate placeholders are unknown, and say why.
        let e = err(
            "name = \"t\"\nduration = \"1s\"\n[targets.ext]\ncommand = [\"s\", \"{tls_cert}\"]\n[matrix]\nconcurrency = [1]\n",
        );
        assert_eq!(e.key.as_deref(), Some("targets.ext.command"), "{e}");
        assert!(e.message.contains("only with `tls = true`"), "{e}");
        let e = err(
            "name = \"t\"\nduration = \"1s\"\n[server]\ntls = \"yes\"\n[matrix]\nconcurrency = [1]\n",
        );
        assert_eq!((e.line, e.key.as_deref()), (4, Some("server.tls")), "{e}");

        // The open loop does not run over TLS: refused before anything runs.
        let e = err(
            "name = \"t\"\nduration = \"1s\"\n[targets.a]\n[targets.b]\ntls = true\n[matrix]\nconcurrency = [1]\nrate = [\"closed\", 100]\n",
        );
        assert_eq!(
            (e.line, e.key.as_deref()),
            (5, Some("targets.b.tls")),
            "{e}"
        );
        assert!(e.message.contains("rate=100"), "{e}");
    }
}
