//! Lock helpers: a poisoned lock is recovered, never a panic.
//!
//! A thread that panics while holding a lock poisons it. Every lock in this crate
//! guards state that stays consistent between statements (counters, queues, buffers),
//! so the holder of a poisoned lock takes the state as it is: one panicking thread
//! must not take every connection, worker or client thread down with it.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Locks `m`, recovering it if it is poisoned.
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// [`Condvar::wait`], recovering a poisoned lock.
pub(crate) fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(guard).unwrap_or_else(|e| e.into_inner())
}

/// [`Condvar::wait_timeout_while`], recovering a poisoned lock. Whether it timed out
/// is for the caller to read from the state, as `condition` does.
pub(crate) fn wait_timeout_while<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Duration,
    condition: impl FnMut(&mut T) -> bool,
) -> MutexGuard<'a, T> {
    cv.wait_timeout_while(guard, timeout, condition)
        .unwrap_or_else(|e| e.into_inner())
        .0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn poisoned() -> Arc<Mutex<u32>> {
        let m = Arc::new(Mutex::new(7));
        let m2 = Arc::clone(&m);
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poisoning the lock on purpose");
        })
        .join();
        assert!(m.is_poisoned());
        m
    }

    #[test]
    fn a_poisoned_lock_is_recovered_with_its_state() {
        let m = poisoned();
        let mut g = lock(&m);
        assert_eq!(*g, 7);
        *g += 1;
        drop(g);
        assert_eq!(*lock(&m), 8);
    }

    #[test]
    fn waits_on_a_poisoned_lock_return_its_guard() {
        let m = poisoned();
        let cv = Condvar::new();
        let g = wait_timeout_while(&cv, lock(&m), Duration::from_millis(1), |n| *n == 7);
        assert_eq!(*g, 7, "timed out with the state as it was");
        // The condition is already false: no wait (a 60 s one would hang the test).
        let g = wait_timeout_while(&cv, g, Duration::from_secs(60), |n| *n != 7);
        assert_eq!(*g, 7);
        drop(g);

        // `wait` returns once notified, even though the lock is poisoned.
        let m = Arc::new((poisoned(), Condvar::new()));
        let m2 = Arc::clone(&m);
        let waiter = std::thread::spawn(move || {
            let (mx, cv) = &*m2;
            let mut g = lock(mx);
            while *g != 9 {
                g = wait(cv, g);
            }
            *g
        });
        {
            let (mx, cv) = &*m;
            *lock(mx) = 9;
            cv.notify_all();
        }
        assert_eq!(waiter.join().unwrap(), 9);
    }
}
