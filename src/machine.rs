//! What this machine offers a process: the cores it may run on (the server's, the
//! client's and the runner's defaults all start from here), and its processes as /proc
//! lists them (the runner's and the remote wrapper's process-group bookkeeping).

/// The cores this process may use (its CPU affinity), at least 1.
pub(crate) fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The pid of every process /proc lists now (none if /proc cannot be read).
pub(crate) fn pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
}

/// The fields of /proc/PID/stat after the command (0 state, 1 ppid, 2 pgrp, … 11 utime,
/// 12 stime, 13 cutime, 14 cstime), or `None` once the process is gone.
pub(crate) fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may hold spaces and parentheses: the fields start after its last ')'.
    let rest = stat.rsplit(')').next().unwrap_or("");
    Some(rest.split_whitespace().map(str::to_string).collect())
}
