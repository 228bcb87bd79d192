//! The runner's side of the run directory: the manifest of a run about to start, and
//! what the machine is. The formats themselves live in `crate::rundir`.

use std::fs;
use std::time::SystemTime;

use super::experiment::{Experiment, Target, TargetKind};
use crate::rundir::{
    rfc3339, Axis, CellEntry, ExperimentInfo, MachineInfo, Manifest, OrderInfo, RunStatus,
    TargetInfo, ToolInfo, SCHEMA_VERSION,
};

/// The manifest of a run about to start: `running`, nothing done yet.
pub fn new_manifest(
    exp: &Experiment,
    machine: MachineInfo,
    cell_ids: &[String],
    seed: Option<u64>,
    runs: Vec<String>,
) -> Manifest {
    Manifest {
        schema_version: SCHEMA_VERSION,
        status: RunStatus::Running,
        tool: ToolInfo {
            name: "threadcenter".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            git_commit: env!("THREADCENTER_GIT_COMMIT").into(),
        },
        experiment: experiment_info(exp),
        machine,
        started_at: rfc3339(SystemTime::now()),
        finished_at: None,
        axes: Axis::ALL.to_vec(),
        cells: exp
            .cells
            .iter()
            .zip(cell_ids)
            .map(|(cell, id)| CellEntry {
                id: id.clone(),
                cell: cell.clone(),
            })
            .collect(),
        order: OrderInfo {
            kind: exp.settings.order.name().into(),
            seed,
            runs,
        },
        runs_done: 0,
        runs_failed: 0,
        limits: None,
    }
}

/// The experiment's settings and targets, as the manifest records them.
fn experiment_info(exp: &Experiment) -> ExperimentInfo {
    let s = &exp.settings;
    ExperimentInfo {
        name: exp.name.clone(),
        description: exp.description.clone(),
        file: exp.path.display().to_string(),
        repetitions: s.repetitions,
        warmup_s: s.warmup.as_secs_f64(),
        duration_s: s.duration.map(|d| d.as_secs_f64()),
        requests: s.requests,
        cooldown_s: s.cooldown.as_secs_f64(),
        cell_timeout_s: s.cell_timeout.as_secs_f64(),
        client_timeout_s: exp.client.timeout.as_secs_f64(),
        client_pipeline: Some(exp.client.pipeline),
        slo_p99_us: exp.client.slo_p99.map(|d| d.as_secs_f64() * 1e6),
        client_threads: exp.client.threads,
        compare: exp.compare.clone(),
        overrides: Vec::new(),
        targets: exp
            .targets
            .iter()
            .map(|(name, t)| (name.clone(), target_info(t)))
            .collect(),
    }
}

/// A target as the manifest records it.
fn target_info(t: &Target) -> TargetInfo {
    let base = TargetInfo {
        kind: String::new(),
        pool: None,
        args: Vec::new(),
        binary: None,
        command: Vec::new(),
        ready_timeout_s: t.ready_timeout.as_secs_f64(),
        stop_grace_s: t.stop_grace.as_secs_f64(),
        tls: t.tls,
        image: None,
        cpus: None,
    };
    match &t.kind {
        TargetKind::Builtin { pool, args, binary } => TargetInfo {
            kind: "builtin".into(),
            pool: Some(*pool),
            args: args.clone(),
            binary: binary.clone(),
            ..base
        },
        TargetKind::External { command } => TargetInfo {
            kind: "external".into(),
            command: command.clone(),
            ..base
        },
        TargetKind::Container(c) => TargetInfo {
            kind: "container".into(),
            args: c.args.clone(),
            image: Some(c.image.clone()),
            cpus: Some(c.cpus),
            ..base
        },
    }
}

/// What the machine is, as far as it says (sysinfo, cpufreq).
pub fn machine_info(sys: &sysinfo::System) -> MachineInfo {
    let load = sysinfo::System::load_average().ok();
    MachineInfo {
        cpu_model: sys
            .cpus()
            .first()
            .map(|c| c.brand().trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into()),
        logical_cores: sys.cpus().len(),
        physical_cores: sysinfo::System::physical_core_count().ok(),
        memory_bytes: {
            let mut s = sysinfo::System::new().ok();
            s.as_mut().map_or(0, |s| {
                s.refresh_memory();
                s.total_memory()
            })
        },
        os: sysinfo::System::long_os_version().unwrap_or_else(|_| std::env::consts::OS.into()),
        kernel: sysinfo::System::kernel_version().unwrap_or_else(|_| "unknown".into()),
        governor: fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
            .ok()
            .map(|s| s.trim().to_string()),
        load_before: load.map_or([0.0; 3], |l| [l.one, l.five, l.fifteen]),
    }
}
