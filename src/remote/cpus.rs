//! `cpus`: a CPU list in taskset's syntax ("0", "0-3,6"), read once, and applied to the
//! calling process with sched_setaffinity (what it starts inherits the mask).

use std::collections::BTreeSet;

/// A set of CPU numbers, as written in the experiment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CpuList {
    pub(crate) cpus: BTreeSet<usize>,
    /// The list as written, for messages and the wrapper's command line.
    pub(crate) text: String,
}

/// The largest CPU number accepted (glibc's `cpu_set_t` holds 1024).
const MAX_CPU: usize = 1023;

impl std::str::FromStr for CpuList {
    type Err = String;

    /// `0`, `0-3`, `0,2,4-7`: numbers and inclusive ranges separated by commas.
    fn from_str(s: &str) -> Result<CpuList, String> {
        let bad = |why: &str| {
            format!("bad CPU list {s:?}: {why}; write CPU numbers and ranges as taskset does, e.g. \"0\" or \"0-3,6\"")
        };
        let mut cpus = BTreeSet::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(bad("an empty item"));
            }
            let num = |t: &str| -> Result<usize, String> {
                let n: usize = t
                    .trim()
                    .parse()
                    .map_err(|_| bad(&format!("{t:?} is not a CPU number")))?;
                if n > MAX_CPU {
                    return Err(bad(&format!("{n} is past CPU {MAX_CPU}")));
                }
                Ok(n)
            };
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if a > b {
                        return Err(bad(&format!("the range {part} runs backwards")));
                    }
                    cpus.extend(a..=b);
                }
                None => {
                    cpus.insert(num(part)?);
                }
            }
        }
        Ok(CpuList {
            cpus,
            text: s.trim().to_string(),
        })
    }
}

impl CpuList {
    /// Pins the calling process (and what it starts from now on) to these CPUs.
    pub(crate) fn apply(&self) -> std::io::Result<()> {
        // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes within it for
        // numbers up to MAX_CPU (checked when the list was read).
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &c in &self.cpus {
            // SAFETY: c ≤ MAX_CPU, within the set's bits.
            unsafe { libc::CPU_SET(c, &mut set) };
        }
        // SAFETY: sched_setaffinity on this process with a set of the size it is given.
        let rc =
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges_are_read_and_bad_ones_named() {
        let l: CpuList = "0,2-4, 7".parse().unwrap();
        assert_eq!(l.cpus.into_iter().collect::<Vec<_>>(), vec![0, 2, 3, 4, 7]);
        for bad in ["", "a", "3-1", "0,,1", "5000"] {
            let e = bad.parse::<CpuList>().unwrap_err();
            assert!(e.contains("taskset"), "{bad}: {e}");
        }
    }
}
