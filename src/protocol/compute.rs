//! compute(n): the CPU-bound task every implementation must agree on (protocol.md, "compute(n)").

/// Modulus of the Fibonacci-like recurrence.
pub const FIB_MOD: u64 = 10_000_019;
/// Modulus of the accumulator.
pub const ACC_MOD: u64 = 1_000_000_007;

/// The protocol's CPU-bound task: `max(1, n)` dependent steps, so its cost grows
/// linearly with `n` and no compiler can shortcut it.
///
/// ```
/// assert_eq!(threadcenter::protocol::compute(10), 8360);
/// ```
#[inline(never)]
pub fn compute(n: u64) -> u64 {
    steps(START, n.max(1)).acc
}

/// The loop's variables between two steps.
#[derive(Clone, Copy)]
struct Loop {
    a: u64,
    b: u64,
    acc: u64,
}

const START: Loop = Loop { a: 0, b: 1, acc: 0 };

/// `count` steps of the loop from `s`: the one body [`compute`] and [`compute_until`] share.
#[inline(always)]
fn steps(s: Loop, count: u64) -> Loop {
    let Loop {
        mut a,
        mut b,
        mut acc,
    } = s;
    for _ in 0..count {
        // a, b < FIB_MOD, so a + b < 2 * FIB_MOD: one conditional subtraction is the
        // exact `% FIB_MOD`. Likewise acc < ACC_MOD and 31a + 17b < 48 * FIB_MOD
        // < ACC_MOD, so the sum is below 2 * ACC_MOD. Same results as the spec's `%`,
        // without a division on the dependency chain.
        let next = reduce(a + b, FIB_MOD);
        a = b;
        b = next;
        acc = reduce(acc + 31 * a + 17 * b, ACC_MOD);
    }
    Loop { a, b, acc }
}

/// Steps [`compute_until`] runs between two calls of its `keep_going`.
pub const CHECK_EVERY: u64 = 1 << 20;

/// [`compute`], asking `keep_going` every [`CHECK_EVERY`] steps whether to go on;
/// `None` if it said no. For a worker that must give up on a task (a thread cannot
/// be killed from outside).
#[inline(never)]
pub fn compute_until(n: u64, mut keep_going: impl FnMut() -> bool) -> Option<u64> {
    let mut s = START;
    let mut left = n.max(1);
    while left > 0 {
        let chunk = left.min(CHECK_EVERY);
        s = steps(s, chunk);
        left -= chunk;
        if left > 0 && !keep_going() {
            return None;
        }
    }
    Some(s.acc)
}

/// `x % m` for `x < 2 * m`.
#[inline(always)]
fn reduce(x: u64, m: u64) -> u64 {
    if x >= m {
        x - m
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_until_agrees_with_compute_and_can_stop() {
        for n in [
            0,
            1,
            2,
            10,
            CHECK_EVERY - 1,
            CHECK_EVERY,
            CHECK_EVERY + 1,
            3 * CHECK_EVERY + 5,
        ] {
            assert_eq!(compute_until(n, || true), Some(compute(n)), "n={n}");
        }
        let mut asked = 0;
        assert_eq!(
            compute_until(10 * CHECK_EVERY, || {
                asked += 1;
                asked < 3
            }),
            None
        );
        assert_eq!(asked, 3);
        // A task that fits in one chunk never asks.
        assert_eq!(
            compute_until(CHECK_EVERY, || panic!("asked")),
            Some(compute(CHECK_EVERY))
        );
    }

    /// The loop exactly as protocol.md writes it, with `%`.
    fn compute_by_the_spec(n: u64) -> u64 {
        let (mut a, mut b, mut acc) = (0u64, 1u64, 0u64);
        for _ in 0..n.max(1) {
            let next = (a + b) % FIB_MOD;
            a = b;
            b = next;
            acc = (acc + 31 * a + 17 * b) % ACC_MOD;
        }
        acc
    }

    #[test]
    fn matches_the_spec_loop_step_by_step() {
        for n in (0..2000).chain([65_535, 123_457, 1_000_003]) {
            assert_eq!(compute(n), compute_by_the_spec(n), "n = {n}");
        }
    }

    /// The test vectors of protocol.md, all nine of them.
    #[test]
    fn protocol_test_vectors() {
        let vectors = [
            (0, 48),
            (1, 48),
            (2, 113),
            (3, 226),
            (10, 8360),
            (100, 401_619_087),
            (1000, 933_214_789),
            (500_000, 869_502_129),
            (50_000_000, 321_532_617),
        ];
        for (n, want) in vectors {
            assert_eq!(compute(n), want, "compute({n})");
        }
    }
}
