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
pub fn reserve(nofile: u64) -> u64 {
    256.min(nofile / 4)
}

/// Descriptors one connection holds: threads give the writer a handle of its own.
pub fn fds_per_connection(io: IoModel) -> u64 {
    match io {
        IoModel::Threads => 2,
        IoModel::Events => 1,
    }
}

/// Memory maps one connection costs with `--io threads`: two threads, each with its
/// stack and guard page, and its signal stack and guard page.
const MAPS_PER_THREADED_CONNECTION: u64 = 8;
/// Maps left for everything else (heap arenas, libraries, the pool's threads).
const MAPS_RESERVED: u64 = 1024;

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit in force.
pub fn raise_nofile() -> u64 {
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
fn max_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The most connections `io` can hold under an open-file limit of `nofile` (and, for
/// threads, under `maps` memory maps).
pub fn connections_allowed(io: IoModel, nofile: u64, maps: Option<u64>) -> u64 {
    let by_fds = nofile.saturating_sub(reserve(nofile)) / fds_per_connection(io);
    let by_maps = match (io, maps) {
        (IoModel::Threads, Some(maps)) => {
            maps.saturating_sub(MAPS_RESERVED) / MAPS_PER_THREADED_CONNECTION
        }
        _ => u64::MAX,
    };
    by_fds.min(by_maps).clamp(1, 1_000_000)
}

/// The `--max-connections` to use: `asked`, or what the limits allow. Warns when the
/// limits cannot hold what was asked.
pub fn max_connections(io: IoModel, asked: Option<u64>) -> u64 {
    let nofile = raise_nofile();
    let allowed = connections_allowed(io, nofile, max_map_count());
    match asked {
        None => allowed,
        Some(asked) => {
            if asked > allowed {
                eprintln!(
                    "threadcenter server: warning: --max-connections {asked} is more than this process can hold with --io {} (about {allowed}: open-file limit {nofile}, {} per connection{}); past that, new connections are refused or closed",
                    io.as_str(),
                    fds_per_connection(io),
                    if io == IoModel::Threads { ", and the kernel's memory-map limit for two threads each" } else { "" },
                );
            }
            asked
        }
    }
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
            8_063
        );
        assert_eq!(connections_allowed(IoModel::Threads, 20_000, None), 9_872);
        // A small limit keeps a quarter for the server.
        assert_eq!(connections_allowed(IoModel::Events, 128, None), 96);
        assert_eq!(connections_allowed(IoModel::Threads, 128, None), 48);
        assert_eq!(connections_allowed(IoModel::Events, 1, None), 1);
    }
}
