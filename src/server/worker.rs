//! One pool worker process (`threadcenter worker`): tasks in on stdin, results out on stdout.
//!
//! The pipe format is private to the server and this module, fixed-size little-endian
//! records: a task is `seq: u64, n: u64`; a result is `seq: u64, result: u64,
//! start_ns: u64, end_ns: u64`, the timestamps on the machine's monotonic clock. The
//! worker answers tasks in the order it reads them.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::fd::AsFd;

use crate::cli::WorkerArgs;
use crate::server::pool::{mono_ns, run_compute, Done};

pub(crate) const TASK_LEN: usize = 16;
pub(crate) const RESULT_LEN: usize = 32;

/// Results are flushed when no further task is buffered, or once the oldest result not
/// flushed yet has waited this long, so a batch of big tasks does not hold back the
/// first while a batch of small ones goes out in one write.
const FLUSH_AFTER_NS: u64 = 50_000;

/// Results still buffered are flushed before a task of at least this many steps
/// (about 50 µs), so the server's view of when each task started stays accurate
/// enough for `--task-timeout`: a result never waits behind a long task.
const FLUSH_BEFORE_N: u64 = 16_384;

pub(crate) fn encode_task(out: &mut Vec<u8>, seq: u64, n: u64) {
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
}

pub(crate) fn decode_result(rec: &[u8]) -> (u64, Done) {
    let word = |i: usize| u64::from_le_bytes(rec[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    (
        word(0),
        Done {
            result: word(1),
            start_ns: word(2),
            end_ns: word(3),
        },
    )
}

/// The worker's main loop. Exits 0 when stdin closes: the server is done with it, or
/// the server is gone.
pub(crate) fn run(args: &WorkerArgs) -> anyhow::Result<()> {
    // Ctrl-C reaches the whole foreground process group; the server decides when a
    // worker stops (by closing its stdin), so a drain can finish its last tasks.
    // SAFETY: setting signal dispositions to SIG_IGN before any thread starts.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
    die_with_parent(args.parent);
    // The pipes as plain files: `io::stdout()` is line-buffered, and a result record's
    // bytes often hold a 0x0a, at which it would split the batch into two writes (two
    // wakeups of the supervisor instead of one).
    let stdin = std::fs::File::from(io::stdin().as_fd().try_clone_to_owned()?);
    let stdout = std::fs::File::from(io::stdout().as_fd().try_clone_to_owned()?);
    serve(
        BufReader::with_capacity(64 * 1024, stdin),
        BufWriter::with_capacity(64 * 1024, stdout),
    )?;
    Ok(())
}

/// Computes every task read from `input` and writes its result to `output`.
pub(crate) fn serve<R: Read, W: Write>(
    mut input: BufReader<R>,
    mut output: BufWriter<W>,
) -> io::Result<()> {
    let mut rec = [0u8; TASK_LEN];
    // When the oldest result not flushed yet was ready (None: all flushed).
    let mut unflushed_since: Option<u64> = None;
    loop {
        match input.read_exact(&mut rec) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return output.flush(),
            Err(e) => return Err(e),
        }
        let seq = u64::from_le_bytes(rec[..8].try_into().expect("8 bytes"));
        let n = u64::from_le_bytes(rec[8..].try_into().expect("8 bytes"));
        if unflushed_since.is_some() && n >= FLUSH_BEFORE_N {
            output.flush()?;
            unflushed_since = None;
        }
        let start_ns = mono_ns();
        let result = run_compute(n);
        let end_ns = mono_ns();
        for word in [seq, result, start_ns, end_ns] {
            output.write_all(&word.to_le_bytes())?;
        }
        let since = *unflushed_since.get_or_insert(end_ns);
        if input.buffer().len() < TASK_LEN || end_ns - since > FLUSH_AFTER_NS {
            output.flush()?;
            unflushed_since = None;
        }
    }
}

/// Asks the kernel to kill this worker when its server dies, even mid-compute.
fn die_with_parent(parent: Option<u32>) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and no pointers.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        // The parent may have died before prctl took effect.
        if let Some(parent) = parent {
            // SAFETY: getppid has no preconditions.
            if unsafe { libc::getppid() } as u32 != parent {
                std::process::exit(0);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = parent;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::compute;

    #[test]
    fn serves_tasks_in_order_with_timestamps() {
        let mut input = Vec::new();
        for (seq, n) in [(7u64, 10u64), (8, 1000), (9, 0)] {
            encode_task(&mut input, seq, n);
        }
        let mut out = Vec::new();
        serve(BufReader::new(&input[..]), BufWriter::new(&mut out)).unwrap();
        assert_eq!(out.len(), 3 * RESULT_LEN);
        for (rec, (seq, n)) in out
            .chunks(RESULT_LEN)
            .zip([(7u64, 10u64), (8, 1000), (9, 0)])
        {
            let (got_seq, done) = decode_result(rec);
            assert_eq!((got_seq, done.result), (seq, compute(n)));
            assert!(done.end_ns >= done.start_ns);
        }
    }

    #[test]
    fn a_partial_task_at_eof_is_dropped_not_computed() {
        let mut input = Vec::new();
        encode_task(&mut input, 1, 5);
        input.extend_from_slice(&[1, 2, 3]);
        let mut out = Vec::new();
        serve(BufReader::new(&input[..]), BufWriter::new(&mut out)).unwrap();
        assert_eq!(out.len(), RESULT_LEN);
    }
}
