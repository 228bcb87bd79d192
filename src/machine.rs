//! What this machine offers a process: the cores it may run on. The server's, the
//! client's and the runner's defaults all start from here.

/// The cores this process may use (its CPU affinity), at least 1.
pub(crate) fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
