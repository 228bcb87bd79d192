//! A loop's tick: a timerfd in the loop's epoll set, so that a loop waits for events
//! with no timeout (no timer armed and cancelled on every wait) and still wakes every
//! [`TICK`](super::TICK) to check its connections' deadlines.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

pub(super) struct Ticker {
    fd: OwnedFd,
    every: Duration,
}

impl Ticker {
    /// A periodic timer every `every`, registered in `registry` as `token`.
    pub(super) fn new(registry: &Registry, token: Token, every: Duration) -> io::Result<Ticker> {
        // SAFETY: timerfd_create takes no pointers; the descriptor it returns is ours.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a descriptor just created and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut ticker = Ticker {
            fd,
            every: Duration::ZERO,
        };
        ticker.set_every(every)?;
        registry.register(
            &mut SourceFd(&ticker.fd.as_raw_fd()),
            token,
            Interest::READABLE,
        )?;
        Ok(ticker)
    }

    /// Fires every `every` from now on (a no-op if it already does).
    pub(super) fn set_every(&mut self, every: Duration) -> io::Result<()> {
        if every == self.every {
            return Ok(());
        }
        let ts = libc::timespec {
            tv_sec: every.as_secs() as libc::time_t,
            tv_nsec: every.subsec_nanos() as libc::c_long,
        };
        let spec = libc::itimerspec {
            it_interval: ts,
            it_value: ts,
        };
        // SAFETY: a valid timerfd and an itimerspec that lives across the call.
        if unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } < 0
        {
            return Err(io::Error::last_os_error());
        }
        self.every = every;
        Ok(())
    }

    /// After the timer's event: reads its expirations, so the next one is an event again.
    pub(super) fn clear(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a buffer of 8 bytes we own.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    }
}
