//! A connection's outgoing side: responses from any thread, written whole, in completion order.
//!
//! Whoever produces a response (the connection's reader for ping/stats/errors, a pool
//! thread for compute results) first tries to send it straight to the socket with a
//! non-blocking `send`, so the common case costs no thread wakeup. Only when the
//! socket buffer is full, or another sender is mid-write, do bytes wait in the buffer
//! for the connection's writer thread, which writes them in batches with blocking I/O.
//! A `writing` flag gives one sender at a time the socket, so frames never interleave.
//!
//! A TLS connection (see `tls`) skips the direct send: every response goes through the
//! buffer to the writer thread, which encrypts and writes it, the only thread that
//! writes that socket.
//!
//! The writer ends once the reader is done and every answer is written: it then sends
//! a FIN (`shutdown(Write)`) after the last answer, or cuts the socket both ways if it
//! broke; [`Outbox::wait_closed`] lets the reader wait for that.

use std::cell::RefCell;
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use socket2::SockRef;

use crate::server::tls::{self, Session};
use crate::sync;

/// What [`Outbox::wait_for_room`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// Room at once.
    Free,
    /// Room, after the reader waited for it.
    AfterWait,
    /// Still no room when the wait timed out.
    Full,
}

pub struct Outbox {
    /// A handle of its own, so the descriptor lives as long as any task may answer.
    stream: TcpStream,
    /// The TLS session of a TLS connection.
    tls: Option<Session>,
    state: Mutex<State>,
    /// Wakes the writer thread.
    writer_cv: Condvar,
    /// Wakes the reader waiting for room (in-flight or buffered-bytes limits).
    room_cv: Condvar,
    max_buffered: usize,
}

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    in_flight: usize,
    writing: bool,
    reader_done: bool,
    broken: bool,
    writer_waiting: bool,
    reader_waiting: bool,
    /// TLS only: rustls has bytes of its own to send (handshake, tickets, alerts).
    tls_flush: bool,
    /// The writer has ended and shut the socket down.
    closed: bool,
}

impl State {
    fn writer_has_work(&self) -> bool {
        self.broken
            || (!self.writing && (!self.buf.is_empty() || self.tls_flush || self.finished()))
    }

    fn finished(&self) -> bool {
        self.reader_done
            && self.in_flight == 0
            && self.buf.is_empty()
            && !self.writing
            && !self.tls_flush
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
}

impl Outbox {
    /// An outbox whose bytes go through `tls` (if given) before the socket.
    pub fn with_tls(stream: TcpStream, tls: Option<Session>, max_buffered: usize) -> Outbox {
        Outbox {
            stream,
            tls,
            state: Mutex::new(State::default()),
            writer_cv: Condvar::new(),
            room_cv: Condvar::new(),
            max_buffered,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take every connection down with it.
        sync::lock(&self.state)
    }

    /// Counts a request handed to the pool; its answer comes through [`Outbox::complete`].
    pub fn begin_task(&self) {
        self.lock().in_flight += 1;
    }

    /// Requests handed to the pool and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// True once a write failed: the client is gone, nothing more can reach it.
    pub fn broken(&self) -> bool {
        self.lock().broken
    }

    /// Sends a response that is not tied to a pool task (ping, stats, errors).
    pub fn send(&self, encode: impl FnOnce(&mut Vec<u8>)) {
        self.deliver(encode, false)
    }

    /// Sends the answer of a task begun with [`Outbox::begin_task`].
    pub fn complete(&self, encode: impl FnOnce(&mut Vec<u8>)) {
        self.deliver(encode, true)
    }

    fn deliver(&self, encode: impl FnOnce(&mut Vec<u8>), completes: bool) {
        // Test-only (THREADCENTER_TEST_STALL); a no-op unless that variable is set.
        crate::server::pool::test_hooks::stall_if_due();
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            scratch.clear();
            encode(&mut scratch);
            let mut st = self.lock();
            if completes {
                st.in_flight -= 1;
            }
            if !st.broken {
                if st.writing || !st.buf.is_empty() || self.tls.is_some() {
                    st.buf.extend_from_slice(&scratch);
                } else {
                    st.writing = true;
                    drop(st);
                    let sent = send_nonblocking(&self.stream, &scratch);
                    st = self.lock();
                    st.writing = false;
                    match sent {
                        Ok(n) => st.buf.extend_from_slice(&scratch[n..]),
                        Err(_) => st.broken = true,
                    }
                }
            }
            self.wake(&mut st);
        })
    }

    fn wake(&self, st: &mut State) {
        if st.writer_waiting && st.writer_has_work() {
            self.writer_cv.notify_one();
        }
        if st.reader_waiting {
            self.room_cv.notify_one();
        }
    }

    /// TLS only: asks the writer thread to send what rustls has queued.
    pub fn flush_tls(&self) {
        let mut st = self.lock();
        st.tls_flush = true;
        self.wake(&mut st);
    }

    /// Called by the reader when it stops reading; the writer finishes once every
    /// task in flight has been answered and written.
    pub fn reader_done(&self) {
        let mut st = self.lock();
        st.reader_done = true;
        self.wake(&mut st);
    }

    /// Waits until the writer has ended (every answer written, or the socket broken),
    /// or `deadline`; true if it has.
    pub fn wait_closed(&self, deadline: Instant) -> bool {
        let mut st = self.lock();
        while !st.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st.reader_waiting = true;
            st = self
                .room_cv
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            st.reader_waiting = false;
        }
        true
    }

    /// Blocks the reader while the connection has `max_in_flight` tasks in flight or
    /// too many unsent bytes, so a client that never reads cannot grow the server's
    /// memory. Returns after `timeout` regardless, so the reader can check shutdown.
    pub fn wait_for_room(&self, max_in_flight: usize, timeout: Duration) -> Room {
        let mut st = self.lock();
        let full = |st: &State| {
            !st.broken && (st.in_flight >= max_in_flight || st.buf.len() >= self.max_buffered)
        };
        if !full(&st) {
            return Room::Free;
        }
        st.reader_waiting = true;
        let mut st = sync::wait_timeout_while(&self.room_cv, st, timeout, |st| full(st));
        st.reader_waiting = false;
        if full(&st) {
            Room::Full
        } else {
            Room::AfterWait
        }
    }

    /// The writer thread's loop: blocking writes of whatever accumulated, until the
    /// connection is finished or broken. Then sends a FIN after the last answer, or,
    /// if the socket broke, shuts it down both ways, which also ends a reader still
    /// blocked in `read`.
    pub fn run_writer(&self) {
        let mut batch = Vec::new();
        loop {
            let mut st = self.lock();
            while !st.writer_has_work() {
                st.writer_waiting = true;
                st = sync::wait(&self.writer_cv, st);
                st.writer_waiting = false;
            }
            if st.broken || st.finished() {
                break;
            }
            std::mem::swap(&mut st.buf, &mut batch);
            st.writing = true;
            st.tls_flush = false;
            self.wake(&mut st);
            drop(st);
            let result = match &self.tls {
                None => (&self.stream).write_all(&batch),
                Some(session) => self.write_tls(session, &batch, false),
            };
            batch.clear();
            if batch.capacity() > self.max_buffered {
                batch = Vec::new();
            }
            let mut st = self.lock();
            st.writing = false;
            if result.is_err() {
                st.broken = true;
            }
            self.wake(&mut st);
        }
        let broken = self.lock().broken;
        if let (Some(session), false) = (&self.tls, broken) {
            let _ = self.write_tls(session, &[], true);
        }
        // A finished connection's reader has stopped reading: what the client may
        // still send is its business (the reader drains it while shutting down).
        let _ = self.stream.shutdown(if broken {
            Shutdown::Both
        } else {
            Shutdown::Write
        });
        let mut st = self.lock();
        st.closed = true;
        self.room_cv.notify_all();
    }

    /// Encrypts `plain` (and a close_notify if `close`), then writes every TLS record
    /// rustls has queued, blocking, outside the session's lock.
    fn write_tls(&self, session: &Session, plain: &[u8], close: bool) -> io::Result<()> {
        let mut records = Vec::with_capacity(plain.len() + 64);
        {
            let mut conn = tls::lock(session);
            if !plain.is_empty() {
                conn.writer().write_all(plain)?;
            }
            if close {
                conn.send_close_notify();
            }
            while conn.wants_write() {
                conn.write_tls(&mut records)?;
            }
        }
        (&self.stream).write_all(&records)
    }
}

/// `send` without blocking and without SIGPIPE; a full socket buffer sends 0 bytes.
fn send_nonblocking(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<usize> {
    let sock = SockRef::from(stream);
    let mut sent = 0;
    while !bytes.is_empty() {
        match sock.send_with_flags(bytes, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) {
            Ok(n) => {
                sent += n;
                bytes = &bytes[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}
