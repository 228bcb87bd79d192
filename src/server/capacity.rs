//! How many connections this process can hold: its open-file limit (raised to the hard
//! limit at start-up), the descriptors each connection takes, and, with a thread per
//! connection, the kernel's memory-map limit.
//!
//! Past these a server does not slow down, it breaks: `accept` fails with EMFILE, or
//! starting a thread fails, or (worse) a thread starts but cannot map its signal stack
//! and the runtime aborts the whole process. The default `--max-connections` stays
//! below all of them, so the connections past it get a clear OVERLOADED instead.

use crate::domain::IoModel;

/// Descriptors kept for the server itself (listener, workers' pipes, epoll, logs...),
/// or a quarter of a smaller limit.
pub(crate) fn reserve(nofile: u64) -> u64 {
    256.min(nofile / 4)
}

/// Descriptors one connection holds: threads give the writer a handle of its own.
pub(crate) fn fds_per_connection(io: IoModel) -> u64 {
    match io {
        IoModel::Threads => 2,
        IoModel::Events => 1,
    }
}

/// Memory maps one connection costs with `--io threads`: two threads, each with its
/// stack and guard page, and its signal stack and guard page.
const MAPS_PER_THREADED_CONNECTION: u64 = 8;
/// Maps left for everything else (heap arenas, libraries, the pool's threads): the
/// threads model was seen to abort at its 8,180th connection, 16,360 threads, with
/// 65,530 maps; this keeps it ~250 connections short of that.
const MAPS_RESERVED: u64 = 2048;

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit in force.
pub(crate) fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// `/proc/sys/vm/max_map_count`, if it can be read.
pub(crate) fn max_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The most connections `io` can hold under an open-file limit of `nofile` (and, for
/// threads, under `maps` memory maps).
pub(crate) fn connections_allowed(io: IoModel, nofile: u64, maps: Option<u64>) -> u64 {
    let by_fds = nofile.saturating_sub(reserve(nofile)) / fds_per_connection(io);
    by_fds.min(threads_allowed(io, maps)).clamp(1, 1_000_000)
}

/// With threads, the connections the memory-map limit allows (unbounded for events).
fn threads_allowed(io: IoModel, maps: Option<u64>) -> u64 {
    match (io, maps) {
        (IoModel::Threads, Some(maps)) => {
            (maps.saturating_sub(MAPS_RESERVED) / MAPS_PER_THREADED_CONNECTION).max(1)
        }
        _ => u64::MAX,
    }
}

/// The `--max-connections` to use: `asked`, or what the limits allow. A value the
/// open-file limit cannot hold is taken with a warning (connections past the limit are
/// refused as they come); with threads, one the memory-map limit cannot hold is
/// lowered to it, since a thread that cannot map its signal stack aborts the process.
pub(crate) fn max_connections(io: IoModel, asked: Option<u64>) -> u64 {
    let nofile = raise_nofile();
    let maps = max_map_count();
    let allowed = connections_allowed(io, nofile, maps);
    let Some(asked) = asked else {
        return allowed;
    };
    let by_maps = threads_allowed(io, maps);
    if asked > by_maps {
        eprintln!(
            "threadcenter server: warning: --max-connections {asked} lowered to {by_maps}: with --io threads each connection maps {MAPS_PER_THREADED_CONNECTION} areas and the kernel allows {} (vm.max_map_count); past it the process would abort. --io events has no such limit",
            maps.unwrap_or(0)
        );
        return by_maps;
    }
    if asked > allowed {
        eprintln!(
            "threadcenter server: warning: --max-connections {asked} is more than the open-file limit {nofile} holds with --io {} ({} descriptors per connection, about {allowed} connections); past it, new connections are refused",
            io.as_str(),
            fds_per_connection(io),
        );
    }
    asked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limits_give_the_default() {
        // This machine's figures: 20,000 descriptors, 65,530 maps.
        assert_eq!(
            connections_allowed(IoModel::Events, 20_000, Some(65_530)),
            19_744
        );
        assert_eq!(
            connections_allowed(IoModel::Threads, 20_000, Some(65_530)),
            7_935
        );
        assert_eq!(connections_allowed(IoModel::Threads, 20_000, None), 9_872);
        // A small limit keeps a quarter for the server.
        assert_eq!(connections_allowed(IoModel::Events, 128, None), 96);
        assert_eq!(connections_allowed(IoModel::Threads, 128, None), 48);
        assert_eq!(connections_allowed(IoModel::Events, 1, None), 1);
    }
}
