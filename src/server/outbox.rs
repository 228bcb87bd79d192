//! A connection's outgoing side: responses from any thread, written whole, in completion order.
//!
//! Whoever produces a response (the connection's reader for ping/stats/errors, a pool
//! thread for compute results) first tries to send it straight to the socket with a
//! non-blocking `send`, so the common case costs no thread wakeup. Only when the
//! socket buffer is full, or another sender is mid-write, do bytes wait in the buffer
//! for whoever flushes the connection. A `writing` flag gives one sender at a time the
//! socket, so frames never interleave.
//!
//! Who flushes, and how it is woken, depends on the I/O model (`--io`):
//!
//! - threads: the connection's writer thread ([`Outbox::run_writer`]), parked on a
//!   condvar, writes batches with blocking I/O; the reader thread waits on another
//!   condvar for room ([`Outbox::wait_for_room`]).
//! - events: the event loop that owns the connection. A sender that leaves bytes
//!   behind (or completes the task a paused reader waited for, or the last task of a
//!   finished connection) puts the connection's token on the loop's queue through
//!   [`LoopWake`], once until the loop takes it; the loop writes with
//!   [`Outbox::flush`] and, when the socket is full, again on its WRITABLE event.
//!
//! A TLS connection (see `tls`) skips the direct send: every response goes through the
//! buffer to the one thread that encrypts and writes (the writer thread, or the loop).
//!
//! The connection ends once the reader is done and every answer is written: a FIN
//! (`shutdown(Write)`) after the last answer, or the socket cut both ways if it broke;
//! [`Outbox::wait_closed`] lets a reader thread wait for that.

use std::cell::RefCell;
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
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

/// How an event loop is told that one of its connections needs it.
pub trait LoopWake: Send + Sync {
    /// Connection `token` has something for its loop to do: bytes to write, room for
    /// its paused reader, or its last answer sent. Called under the outbox's lock, so
    /// it must not block.
    fn ready(&self, token: usize);
}

/// Who writes what the outbox holds, and how they are woken.
enum Notify {
    /// `--io threads`: the writer thread and the reader thread, parked on condvars.
    Threads {
        /// Wakes the writer thread.
        writer_cv: Condvar,
        /// Wakes the reader waiting for room (in-flight or buffered-bytes limits).
        room_cv: Condvar,
    },
    /// `--io events`: the loop that owns the connection, as connection `token`.
    Loop {
        wake: Arc<dyn LoopWake>,
        token: usize,
    },
}

pub struct Outbox {
    /// A handle of its own, so the descriptor lives as long as any task may answer.
    stream: TcpStream,
    /// The TLS session of a TLS connection.
    tls: Option<Session>,
    state: Mutex<State>,
    notify: Notify,
    max_buffered: usize,
    /// Requests in the pool at once before the reader pauses (`--max-in-flight`).
    max_in_flight: usize,
}

/// What [`Outbox::flush`] left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything written (or another sender is mid-write and will hand back the rest).
    Idle,
    /// The socket is full: the rest waits for its WRITABLE event.
    Blocked,
    /// The socket failed: the connection is over.
    Broken,
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
    /// Events: the connection is on its loop's queue and not taken yet.
    queued: bool,
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
    /// An outbox whose bytes go through `tls` (if given) before the socket, written by
    /// a writer thread ([`Outbox::run_writer`]).
    pub fn with_tls(
        stream: TcpStream,
        tls: Option<Session>,
        max_buffered: usize,
        max_in_flight: usize,
    ) -> Outbox {
        let notify = Notify::Threads {
            writer_cv: Condvar::new(),
            room_cv: Condvar::new(),
        };
        Outbox::new(stream, tls, max_buffered, max_in_flight, notify)
    }

    /// An outbox owned by an event loop, as its connection `token`: `stream` must be
    /// non-blocking, and the loop writes what senders leave behind ([`Outbox::flush`]).
    pub fn on_loop(
        stream: TcpStream,
        tls: Option<Session>,
        max_buffered: usize,
        max_in_flight: usize,
        wake: Arc<dyn LoopWake>,
        token: usize,
    ) -> Outbox {
        let notify = Notify::Loop { wake, token };
        Outbox::new(stream, tls, max_buffered, max_in_flight, notify)
    }

    fn new(
        stream: TcpStream,
        tls: Option<Session>,
        max_buffered: usize,
        max_in_flight: usize,
        notify: Notify,
    ) -> Outbox {
        Outbox {
            stream,
            tls,
            state: Mutex::new(State::default()),
            notify,
            max_buffered,
            max_in_flight,
        }
    }

    /// The connection's socket.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
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
        match &self.notify {
            Notify::Threads { writer_cv, room_cv } => {
                if st.writer_waiting && st.writer_has_work() {
                    writer_cv.notify_one();
                }
                if st.reader_waiting {
                    room_cv.notify_one();
                }
            }
            Notify::Loop { wake, token } => {
                if !st.queued && (st.writer_has_work() || (st.reader_waiting && !self.full(st))) {
                    st.queued = true;
                    wake.ready(*token);
                }
            }
        }
    }

    /// The reader must pause: too many requests in flight or too many unsent bytes.
    fn full(&self, st: &State) -> bool {
        !st.broken && (st.in_flight >= self.max_in_flight || st.buf.len() >= self.max_buffered)
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

    /// The condvars of a connection with threads (the waiting calls are theirs alone).
    fn condvars(&self) -> (&Condvar, &Condvar) {
        match &self.notify {
            Notify::Threads { writer_cv, room_cv } => (writer_cv, room_cv),
            Notify::Loop { .. } => {
                unreachable!("an event loop's connection has no threads to wait")
            }
        }
    }

    /// Waits until the writer has ended (every answer written, or the socket broken),
    /// or `deadline`; true if it has.
    pub fn wait_closed(&self, deadline: Instant) -> bool {
        let room_cv = self.condvars().1;
        let mut st = self.lock();
        while !st.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st.reader_waiting = true;
            st = room_cv
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            st.reader_waiting = false;
        }
        true
    }

    /// Blocks the reader while the connection has `--max-in-flight` tasks in flight or
    /// too many unsent bytes, so a client that never reads cannot grow the server's
    /// memory. Returns after `timeout` regardless, so the reader can check shutdown.
    pub fn wait_for_room(&self, timeout: Duration) -> Room {
        let room_cv = self.condvars().1;
        let mut st = self.lock();
        if !self.full(&st) {
            return Room::Free;
        }
        st.reader_waiting = true;
        let mut st = sync::wait_timeout_while(room_cv, st, timeout, |st| self.full(st));
        st.reader_waiting = false;
        if self.full(&st) {
            Room::Full
        } else {
            Room::AfterWait
        }
    }

    /// Events: the connection's token on its loop.
    pub fn loop_token(&self) -> usize {
        match &self.notify {
            Notify::Loop { token, .. } => *token,
            Notify::Threads { .. } => unreachable!("a connection with threads has no loop"),
        }
    }

    /// Events: the loop takes the connection off its queue; a sender queues it again.
    pub fn take_queued(&self) {
        self.lock().queued = false;
    }

    /// Events: true if the reader must pause for room; then the connection is queued
    /// again once there is room (see [`LoopWake`]).
    pub fn pause_for_room(&self) -> bool {
        let mut st = self.lock();
        st.reader_waiting = self.full(&st);
        st.reader_waiting
    }

    /// Events: true once the socket has failed (the connection is over).
    pub fn is_broken(&self) -> bool {
        self.lock().broken
    }

    /// Events: writes what is buffered (through TLS, if any) without blocking; `batch`
    /// is the loop's scratch buffer, left empty.
    pub fn flush(&self, batch: &mut Vec<u8>) -> Flushed {
        let flushed = match &self.tls {
            None => self.flush_plain(batch),
            Some(session) => self.flush_tls_now(session, batch),
        };
        batch.clear();
        if batch.capacity() > self.max_buffered {
            *batch = Vec::new();
        }
        if flushed == Flushed::Broken {
            self.lock().broken = true;
        }
        flushed
    }

    fn flush_plain(&self, batch: &mut Vec<u8>) -> Flushed {
        let mut st = self.lock();
        loop {
            if st.broken {
                return Flushed::Broken;
            }
            // Another sender holds the socket: it keeps what it cannot send in the
            // buffer and queues the connection again.
            if st.writing || st.buf.is_empty() {
                return Flushed::Idle;
            }
            std::mem::swap(&mut st.buf, batch);
            st.writing = true;
            drop(st);
            let sent = send_nonblocking(&self.stream, batch);
            st = self.lock();
            st.writing = false;
            match sent {
                Err(_) => return Flushed::Broken,
                Ok(n) if n < batch.len() => {
                    // What is left goes first, before what senders added meanwhile.
                    batch.drain(..n);
                    batch.extend_from_slice(&st.buf);
                    std::mem::swap(&mut st.buf, batch);
                    return Flushed::Blocked;
                }
                Ok(_) => batch.clear(),
            }
        }
    }

    /// TLS: sends what rustls holds first, and encrypts more of the buffer only once
    /// that is gone, so the buffer (bounded by the reader's pause) holds the backlog.
    fn flush_tls_now(&self, session: &Session, batch: &mut Vec<u8>) -> Flushed {
        loop {
            {
                let mut conn = tls::lock(session);
                while conn.wants_write() {
                    match conn.write_tls(&mut NonBlocking(&self.stream)) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flushed::Blocked,
                        Err(_) => return Flushed::Broken,
                    }
                }
            }
            let mut st = self.lock();
            st.tls_flush = false;
            if st.broken {
                return Flushed::Broken;
            }
            if st.buf.is_empty() {
                return Flushed::Idle;
            }
            std::mem::swap(&mut st.buf, batch);
            drop(st);
            let encrypted = tls::lock(session).writer().write_all(batch);
            batch.clear();
            if encrypted.is_err() {
                return Flushed::Broken;
            }
        }
    }

    /// Events: once the reader is done and every answer is written, ends the
    /// connection's sending side (close_notify, then FIN); true if it did.
    pub fn close_if_finished(&self) -> bool {
        {
            let st = self.lock();
            if st.closed || !st.finished() {
                return false;
            }
        }
        if let Some(session) = &self.tls {
            let mut conn = tls::lock(session);
            if conn.wants_write() {
                return false;
            }
            conn.send_close_notify();
            // A few bytes into a socket that just took everything: best effort.
            while conn.wants_write() {
                if conn.write_tls(&mut NonBlocking(&self.stream)).is_err() {
                    break;
                }
            }
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        self.lock().closed = true;
        true
    }

    /// The writer thread's loop: blocking writes of whatever accumulated, until the
    /// connection is finished or broken. Then sends a FIN after the last answer, or,
    /// if the socket broke, shuts it down both ways, which also ends a reader still
    /// blocked in `read`.
    pub fn run_writer(&self) {
        let (writer_cv, room_cv) = self.condvars();
        let mut batch = Vec::new();
        loop {
            let mut st = self.lock();
            while !st.writer_has_work() {
                st.writer_waiting = true;
                st = sync::wait(writer_cv, st);
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
        room_cv.notify_all();
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

/// A `Write` of non-blocking sends without SIGPIPE, for rustls' `write_tls`: a full
/// socket buffer is `WouldBlock`, and rustls keeps what it could not send.
struct NonBlocking<'a>(&'a TcpStream);

impl Write for NonBlocking<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        loop {
            match SockRef::from(self.0)
                .send_with_flags(bytes, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
