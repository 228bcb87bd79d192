//! One event loop and the state machine of each connection it owns.
//!
//! A connection reads while it is open and has room; each whole frame goes to
//! [`connection::handle`], as with threads. Bytes of a frame not yet whole wait in the
//! connection's `pending` (empty, and unallocated, for an idle connection: the loop
//! reads into one buffer of its own), and so do frames read past a pause.
//!
//! Phases, matching the threads model's reader and writer (see `connection`):
//! `Open` (reading; also while shutting down with requests in flight, compute then
//! answered SHUTTING_DOWN) → `Closing` (shutting down with nothing in flight: reads on
//! for [`QUIET`], then only the rest of a begun frame) → `Finishing` (not reading:
//! answers what is in flight, flushes, sends a FIN) → closed, or, while shutting down,
//! `Discarding` what the client still sends until it closes, all within
//! [`FLUSH_ALLOWANCE`] of entering `Closing`.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::ticker::Ticker;
use super::{Inbox, Shared, CLOSING_TICK, PIPE0, TICK, TIMER, WAKER};
use crate::protocol::frame::{decode, Decoded, HEADER_LEN};
use crate::protocol::FrameError;
use crate::server::connection::{self, frame_too_large, refuse_unserved, FLUSH_ALLOWANCE, QUIET};
use crate::server::outbox::{Flushed, LoopWake, Outbox};
use crate::server::pool::process::LentPipe;
use crate::server::pool::{mono_ns, Refused, RoomWaker, Task};
use crate::server::stages::Recorder;
use crate::server::tls::{self, HandshakeTimeout, TlsReader};
use crate::server::Context;

/// The loop's read buffer: the most one read takes.
const READ_CHUNK: usize = 64 * 1024;
/// Reads one connection gets per turn before the others have theirs.
const READS_PER_TURN: usize = 4;
/// Frames one connection gets handled per turn: a client pipelining small requests
/// must not hold the loop (and its other connections, and the deadline checks) for
/// more than a fraction of a millisecond at a time.
const FRAMES_PER_TURN: usize = 128;
/// Connections a loop drives between two reads of the result pipes lent to it: in a
/// long turn (thousands of connections) a worker that has reported waits for its next
/// tasks until its results are read, so they are read every few dozen connections,
/// not once a turn.
const DRIVES_PER_PIPE_READ: usize = 8;
/// A connection's `pending` keeps at most this much capacity once empty.
const PENDING_KEEP: usize = 4 * 1024;

enum Phase {
    /// Serving.
    Open,
    /// Shutting down with nothing in flight: reads on until `quiet_until`, then only
    /// the rest of a begun frame.
    Closing {
        quiet_until: Instant,
        close_by: Instant,
    },
    /// Not reading any more: answers what is in flight, flushes, sends a FIN. While
    /// shutting down, within `close_by`.
    Finishing { close_by: Option<Instant> },
    /// Shutting down, FIN sent: discards what the client sends until it closes.
    Discarding { close_by: Instant },
}

/// Where a connection's frames come from: the socket, or TLS over it.
enum Source {
    Plain,
    Tls(Box<TlsReader>),
}

struct Conn {
    outbox: Arc<Outbox>,
    source: Source,
    /// Bytes read and not handled yet (see the module doc).
    pending: Vec<u8>,
    /// Since when a begun frame has waited for its rest, not counting pauses.
    partial_since: Option<Instant>,
    /// Compute tasks the full queue did not take yet (`--when-full wait`), in order.
    parked: VecDeque<Task>,
    /// Paused for room in the outbox; the outbox queues the connection when there is.
    paused: bool,
    phase: Phase,
}

/// What a turn of reading ended with.
enum Turn {
    /// Nothing more to read now (or the turn is over).
    Later,
    /// The reader is done: end of stream, an error, or a frame it will not take.
    Done,
}

pub(super) struct Loop {
    ctx: Arc<Context>,
    shared: Arc<Shared>,
    poll: Poll,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    rbuf: Vec<u8>,
    wbatch: Vec<u8>,
    /// Connections to drive again without waiting for an event.
    again: Vec<usize>,
    /// Connections with a task parked on the full queue.
    parked: Vec<usize>,
    /// Compute tasks read in this turn of the loop, across its connections: handed to
    /// the pool together once the turn is over ([`Loop::submit_batch`]).
    batch: Vec<Task>,
    /// What the pool gave back from the last batch.
    refused: Vec<(Task, Refused)>,
    room: RoomWaker,
    stopping: bool,
    /// Worker result pipes lent to this loop (token `PIPE0 + k`), and where the
    /// answers' stage timings go.
    pipes: Vec<Option<LentPipe>>,
    rec: Recorder,
    /// Connections driven since the pipes were last read.
    drives: usize,
}

impl Loop {
    pub(super) fn new(ctx: Arc<Context>, shared: Arc<Shared>, poll: Poll) -> Loop {
        let rec = ctx.metrics.stages.recorder();
        let room: RoomWaker = {
            let shared = Arc::clone(&shared);
            Arc::new(move || shared.post(|inbox| inbox.pool_room = true))
        };
        Loop {
            ctx,
            shared,
            poll,
            conns: Vec::new(),
            free: Vec::new(),
            rbuf: vec![0; READ_CHUNK],
            wbatch: Vec::new(),
            again: Vec::new(),
            parked: Vec::new(),
            batch: Vec::new(),
            refused: Vec::new(),
            room,
            stopping: false,
            pipes: Vec::new(),
            rec,
            drives: 0,
        }
    }

    pub(super) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut ticker = match Ticker::new(self.poll.registry(), TIMER, TICK) {
            Ok(ticker) => Some(ticker),
            Err(e) => {
                eprintln!("threadcenter server: an event loop has no timerfd ({e}); it wakes by timeout instead");
                None
            }
        };
        let mut next_tick = Instant::now() + TICK;
        let mut turn = Vec::new();
        loop {
            // With the timerfd the wait needs no timeout of its own.
            let timeout = if !self.again.is_empty() {
                Some(Duration::ZERO)
            } else if ticker.is_some() {
                None
            } else {
                Some(next_tick.saturating_duration_since(Instant::now()))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    eprintln!("threadcenter server: an event loop's poll failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            let (mut woken, mut ticked) = (false, false);
            // Results first: their workers wait for more tasks until they are read.
            for ev in events.iter() {
                if (PIPE0..TIMER.0).contains(&ev.token().0) {
                    self.read_pipe(ev.token().0 - PIPE0);
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKER => woken = true,
                    TIMER => ticked = true,
                    Token(t) if t >= PIPE0 => {}
                    token => self.drive(token.0),
                }
            }
            if ticked {
                if let Some(t) = &ticker {
                    t.clear();
                }
            }
            // The inbox wakes the loop whenever it stops being empty.
            let inbox = if woken {
                self.shared.take()
            } else {
                Inbox::default()
            };
            for stream in inbox.incoming {
                self.adopt(stream);
            }
            for pipe in inbox.pipes {
                self.adopt_pipe(pipe);
            }
            for token in inbox.ready {
                self.drive(token);
            }
            if inbox.pool_room {
                turn.append(&mut self.parked);
            }
            self.stopping |= inbox.stop;
            turn.append(&mut self.again);
            for token in turn.drain(..) {
                self.drive(token);
            }
            self.submit_batch();
            let now = Instant::now();
            let every = if self.ctx.shutting_down() {
                CLOSING_TICK
            } else {
                TICK
            };
            if let Some(t) = &mut ticker {
                if let Err(e) = t.set_every(every) {
                    eprintln!("threadcenter server: cannot set an event loop's timer: {e}");
                    ticker = None;
                }
            }
            if ticked || now >= next_tick {
                self.tick(now);
                next_tick = now + every;
            } else {
                next_tick = next_tick.min(now + every);
            }
            if self.stopping && self.conns.iter().all(Option::is_none) {
                self.end_pipes();
                return;
            }
        }
    }

    /// Watches a worker's result pipe and reads what it already holds.
    fn adopt_pipe(&mut self, pipe: LentPipe) {
        let k = self
            .pipes
            .iter()
            .position(Option::is_none)
            .unwrap_or_else(|| {
                self.pipes.push(None);
                self.pipes.len() - 1
            });
        let fd = pipe.fd();
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), Token(PIPE0 + k), Interest::READABLE)
        {
            eprintln!("threadcenter server: an event loop cannot watch a worker's results ({e}); its supervisor reads them");
            pipe.give_back(None);
            return;
        }
        self.pipes[k] = Some(pipe);
        self.read_pipe(k);
    }

    /// Answers every result lent pipe `k` holds; gives the pipe back once it is over.
    fn read_pipe(&mut self, k: usize) {
        let Some(pipe) = self.pipes.get_mut(k).and_then(Option::as_mut) else {
            return;
        };
        if let Err(why) = pipe.drain(&self.rec) {
            let pipe = self.pipes[k].take().expect("the pipe read just now");
            let _ = self.poll.registry().deregister(&mut SourceFd(&pipe.fd()));
            pipe.give_back(Some(why));
        }
    }

    /// The loop ends: every pipe lent to it goes back to its supervisor, open.
    fn end_pipes(&mut self) {
        for pipe in self.pipes.drain(..).flatten() {
            let _ = self.poll.registry().deregister(&mut SourceFd(&pipe.fd()));
            pipe.give_back(None);
        }
        for pipe in self.shared.end() {
            pipe.give_back(None);
        }
    }

    /// Registers an accepted connection and serves what it already sent.
    fn adopt(&mut self, stream: TcpStream) {
        let ctx = Arc::clone(&self.ctx);
        if let Err(e) = stream.set_nonblocking(true) {
            refuse_unserved(
                &ctx,
                &stream,
                &format!("cannot set up this connection ({e})"),
            );
            ctx.metrics.connections_open.fetch_sub(1, Relaxed);
            return;
        }
        let _ = stream.set_nodelay(true);
        let session = match ctx.config.tls.as_ref().map(tls::session).transpose() {
            Ok(session) => session,
            Err(e) => {
                eprintln!("threadcenter server: cannot set up a TLS session: {e}");
                ctx.metrics.connections_open.fetch_sub(1, Relaxed);
                return;
            }
        };
        let token = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let fd = stream.as_raw_fd();
        let registered = self.poll.registry().register(
            &mut SourceFd(&fd),
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        );
        if let Err(e) = registered {
            refuse_unserved(
                &ctx,
                &stream,
                &format!("cannot watch this connection ({e})"),
            );
            ctx.metrics.connections_open.fetch_sub(1, Relaxed);
            self.free.push(token);
            return;
        }
        let wake: Arc<dyn LoopWake> = self.shared.clone();
        let outbox = Arc::new(Outbox::on_loop(
            stream,
            session.clone(),
            ctx.config.max_buffered,
            ctx.config.max_in_flight,
            wake,
            token,
        ));
        let source = match session {
            None => Source::Plain,
            Some(session) => Source::Tls(Box::new(TlsReader::new(
                session,
                Arc::clone(&outbox),
                ctx.config.frame_timeout,
            ))),
        };
        self.conns[token] = Some(Conn {
            outbox,
            source,
            pending: Vec::new(),
            partial_since: None,
            parked: VecDeque::new(),
            paused: false,
            phase: Phase::Open,
        });
        self.drive(token);
    }

    /// Does whatever connection `token` can do now: submit a parked task, write, read,
    /// finish. Idempotent: a stale token or a spurious event costs a few checks.
    fn drive(&mut self, token: usize) {
        self.drives += 1;
        if self.drives >= DRIVES_PER_PIPE_READ {
            self.drives = 0;
            for k in 0..self.pipes.len() {
                if self.pipes[k].as_ref().is_some_and(LentPipe::awaited) {
                    self.read_pipe(k);
                }
            }
        }
        let Some(mut conn) = self.conns.get_mut(token).and_then(Option::take) else {
            return;
        };
        if self.step(token, &mut conn) {
            self.conns[token] = Some(conn);
        } else {
            self.remove(token, conn);
        }
    }

    /// [`Loop::drive`] on a connection taken out of its slot; false once it is over.
    fn step(&mut self, token: usize, conn: &mut Conn) -> bool {
        conn.outbox.take_queued();
        if !conn.parked.is_empty() {
            while let Some(task) = conn.parked.pop_front() {
                if let Some(task) = connection::submit(&self.ctx, task, Some(&self.room)) {
                    conn.parked.push_front(task);
                    self.parked.push(token);
                    return true;
                }
            }
            conn.restart_stall_clock();
        }
        if conn.outbox.flush(&mut self.wbatch) == Flushed::Broken {
            return false;
        }
        match conn.phase {
            Phase::Open | Phase::Closing { .. } => {
                if let Turn::Done = self.read(token, conn) {
                    let close_by = match conn.phase {
                        Phase::Closing { close_by, .. } => Some(close_by),
                        _ => None,
                    };
                    conn.phase = Phase::Finishing { close_by };
                    conn.pending = Vec::new();
                    conn.outbox.reader_done();
                }
                if conn.outbox.flush(&mut self.wbatch) == Flushed::Broken {
                    return false;
                }
            }
            Phase::Finishing { .. } => {}
            Phase::Discarding { .. } => return self.discard(conn),
        }
        if let Phase::Finishing { close_by } = conn.phase {
            if conn.outbox.close_if_finished() {
                return match close_by {
                    // Shutting down: the client's unread requests must not turn the
                    // close into a reset that may destroy answers it has not read.
                    Some(close_by) => {
                        conn.phase = Phase::Discarding { close_by };
                        self.discard(conn)
                    }
                    None => false,
                };
            }
        }
        true
    }

    /// Reads and handles frames until the socket has nothing more, the connection must
    /// pause, or its turn is over.
    ///
    /// Longer than most (~95 lines): one pass over the loop's shared read buffer, where
    /// each way out (would block, a pause for room, the frame limit, a framing error,
    /// EOF) must leave the partial frame and the connection's state consistent; split
    /// up, each piece would need the buffer, the connection and the turn's counters.
    fn read(&mut self, token: usize, conn: &mut Conn) -> Turn {
        let max_frame = self.ctx.config.max_frame;
        let mut frames = FRAMES_PER_TURN;
        for _ in 0..READS_PER_TURN {
            if frames == 0 {
                break;
            }
            if !conn.parked.is_empty() {
                return Turn::Later;
            }
            let was_paused = conn.paused;
            // Closing reads for a bounded time whatever the room, as the threads
            // model's reader does: its requests are answered SHUTTING_DOWN.
            conn.paused = matches!(conn.phase, Phase::Open) && conn.outbox.pause_for_room();
            if conn.paused {
                return Turn::Later;
            }
            if was_paused {
                // The pause was the server's doing, not the client's.
                conn.restart_stall_clock();
            }
            // Frames read before a pause come first.
            if has_frame(&conn.pending, max_frame) {
                let pending = std::mem::take(&mut conn.pending);
                let (used, done) = self.consume(conn, &pending, &mut frames);
                conn.pending = pending;
                conn.pending.drain(..used);
                if done {
                    return Turn::Done;
                }
                continue;
            }
            let mut limit = READ_CHUNK;
            if let Phase::Closing { quiet_until, .. } = conn.phase {
                if Instant::now() >= quiet_until {
                    // Only the rest of a frame already begun, if any.
                    match missing(&conn.pending, max_frame) {
                        0 => return Turn::Done,
                        m => limit = m.min(READ_CHUNK),
                    }
                }
            }
            let got = match &mut conn.source {
                Source::Plain => {
                    let mut s = conn.outbox.stream();
                    s.read(&mut self.rbuf[..limit])
                }
                Source::Tls(r) => r.read(&mut self.rbuf[..limit]),
            };
            let n = match got {
                Ok(0) => return Turn::Done,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_would_block(&e) => {
                    conn.note_partial();
                    return Turn::Later;
                }
                Err(e) => {
                    read_failed(&self.ctx, &e);
                    return Turn::Done;
                }
            };
            let rbuf = std::mem::take(&mut self.rbuf);
            let done = if conn.pending.is_empty() {
                let (used, done) = self.consume(conn, &rbuf[..n], &mut frames);
                conn.pending.extend_from_slice(&rbuf[used..n]);
                done
            } else {
                conn.pending.extend_from_slice(&rbuf[..n]);
                let pending = std::mem::take(&mut conn.pending);
                let (used, done) = self.consume(conn, &pending, &mut frames);
                conn.pending = pending;
                conn.pending.drain(..used);
                done
            };
            self.rbuf = rbuf;
            if conn.pending.is_empty() && conn.pending.capacity() > PENDING_KEEP {
                conn.pending = Vec::new();
            }
            if done {
                return Turn::Done;
            }
            if frames == 0 {
                // The turn is over, with frames maybe left in `pending`: another soon.
                break;
            }
            // A short read of a plain socket emptied it; the next bytes bring an event.
            if n < limit && matches!(conn.source, Source::Plain) {
                conn.note_partial();
                return Turn::Later;
            }
        }
        conn.note_partial();
        self.again.push(token);
        Turn::Later
    }

    /// Handles the whole frames at the start of `bytes`, stopping where the connection
    /// must pause or `budget` frames have been handled; returns the bytes used and
    /// whether the reader is done (a frame over `--max-frame`, answered here).
    fn consume(&mut self, conn: &mut Conn, bytes: &[u8], budget: &mut usize) -> (usize, bool) {
        let ctx = &*self.ctx;
        let mut at = 0;
        loop {
            if *budget == 0 {
                return (at, false);
            }
            match decode(&bytes[at..], ctx.config.max_frame) {
                Ok(Decoded::Frame { consumed }) => {
                    let payload = &bytes[at + HEADER_LEN..at + consumed];
                    at += consumed;
                    *budget -= 1;
                    conn.partial_since = None;
                    if let Some(task) = connection::handle(ctx, &conn.outbox, payload, mono_ns()) {
                        self.batch.push(task);
                    }
                    if matches!(conn.phase, Phase::Open) && conn.outbox.pause_for_room() {
                        conn.paused = true;
                        return (at, false);
                    }
                }
                Ok(Decoded::Incomplete { .. }) => return (at, false),
                Err(FrameError::TooLarge { len, max }) => {
                    frame_too_large(ctx, &conn.outbox, len, max);
                    return (bytes.len(), true);
                }
                Err(_) => return (bytes.len(), true),
            }
        }
    }

    /// Hands the pool every compute task this turn read, in one go (one lock, one
    /// pipe write and one wakeup per worker). A task the full queue cannot take yet
    /// parks on its connection, which stops reading until the pool has room; any other
    /// refusal is answered.
    fn submit_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        self.ctx
            .pool
            .submit_batch(&mut self.batch, &self.room, &mut self.refused);
        for (task, why) in std::mem::take(&mut self.refused) {
            let Some(task) = connection::refused(&self.ctx, task, why) else {
                continue;
            };
            let token = task.conn.loop_token();
            // The connection may have broken (and its slot gone to another) since.
            match self.conns.get_mut(token).and_then(Option::as_mut) {
                Some(conn) if Arc::ptr_eq(&conn.outbox, &task.conn) => {
                    if conn.parked.is_empty() {
                        self.parked.push(token);
                    }
                    conn.parked.push_back(task);
                }
                _ => fail_parked(&self.ctx, task),
            }
        }
    }

    /// Shutting down, FIN sent: reads and drops what the client sends; false once it
    /// has closed (or failed).
    fn discard(&mut self, conn: &mut Conn) -> bool {
        let mut s = conn.outbox.stream();
        loop {
            match s.read(&mut self.rbuf) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_would_block(&e) => return true,
                Err(_) => return false,
            }
        }
    }

    /// Checks every connection's deadlines, and starts closing those the shutdown
    /// allows to close.
    fn tick(&mut self, now: Instant) {
        for token in 0..self.conns.len() {
            let Some(conn) = self.conns[token].as_mut() else {
                continue;
            };
            match deadlines(&self.ctx, conn, now) {
                Due::Nothing => {}
                Due::Drive => self.again.push(token),
                Due::Cut => {
                    // The client had its chance (a frame still not whole, answers it
                    // does not read, or a close it does not send).
                    let _ = conn.outbox.stream().shutdown(Shutdown::Both);
                    let conn = self.conns[token].take().expect("checked above");
                    self.remove(token, conn);
                }
            }
        }
    }

    /// Closes a finished (or broken, or cut off) connection.
    fn remove(&mut self, token: usize, conn: Conn) {
        let fd = conn.outbox.stream().as_raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        if conn.outbox.is_broken() {
            let _ = conn.outbox.stream().shutdown(Shutdown::Both);
        }
        for task in conn.parked {
            // Only a broken connection ends with a task parked: its answer has nowhere
            // to go, but it is counted like any other.
            fail_parked(&self.ctx, task);
        }
        // The descriptor closes with the last handle on the outbox (a task still in
        // flight on a broken connection may hold one).
        drop(conn.outbox);
        self.free.push(token);
        self.ctx.metrics.connections_open.fetch_sub(1, Relaxed);
    }
}

impl Conn {
    /// The stall clock runs only while the reader waits for the client.
    fn restart_stall_clock(&mut self) {
        if self.partial_since.is_some() {
            self.partial_since = Some(Instant::now());
        }
    }

    /// After a read that found nothing more: starts the stall clock if a frame has begun.
    fn note_partial(&mut self) {
        if self.pending.is_empty() {
            self.partial_since = None;
        } else if self.partial_since.is_none() {
            self.partial_since = Some(Instant::now());
        }
    }

    /// Stops reading: from now on the connection answers what is in flight and closes.
    fn stop_reading(&mut self) {
        let close_by = match self.phase {
            Phase::Closing { close_by, .. } => Some(close_by),
            _ => None,
        };
        self.phase = Phase::Finishing { close_by };
        self.pending = Vec::new();
        self.partial_since = None;
        self.outbox.reader_done();
    }
}

/// What a connection's deadlines call for.
enum Due {
    Nothing,
    /// A turn (to read what closing still reads, or to finish).
    Drive,
    /// Closing now, both ways.
    Cut,
}

/// Checks one connection's deadlines at `now`: `--frame-timeout` for a begun frame or
/// a TLS handshake (the reader then stops), and the shutdown's quiet time and flush
/// allowance.
fn deadlines(ctx: &Context, conn: &mut Conn, now: Instant) -> Due {
    let limit = ctx.config.frame_timeout;
    let reading = matches!(conn.phase, Phase::Open | Phase::Closing { .. });
    if reading && !conn.paused && conn.parked.is_empty() {
        if let Some(since) = conn.partial_since {
            if now.duration_since(since) > limit {
                let (got, want) = (conn.pending.len(), whole_len(&conn.pending));
                let e = FrameError::Stalled { got, want, limit };
                ctx.metrics.frames_timed_out.fetch_add(1, Relaxed);
                eprintln!("threadcenter server: closing a connection: {e}");
                conn.stop_reading();
                return Due::Drive;
            }
        }
        if let Source::Tls(r) = &conn.source {
            if r.handshake_expired() {
                ctx.metrics.frames_timed_out.fetch_add(1, Relaxed);
                eprintln!(
                    "threadcenter server: closing a connection: {}",
                    HandshakeTimeout(limit)
                );
                conn.stop_reading();
                return Due::Drive;
            }
        }
    }
    match conn.phase {
        Phase::Open
            if ctx.shutting_down() && conn.parked.is_empty() && conn.outbox.in_flight() == 0 =>
        {
            conn.phase = Phase::Closing {
                quiet_until: now + QUIET,
                close_by: now + FLUSH_ALLOWANCE,
            };
            Due::Drive
        }
        Phase::Closing { close_by, .. }
        | Phase::Finishing {
            close_by: Some(close_by),
        }
        | Phase::Discarding { close_by }
            if now >= close_by =>
        {
            Due::Cut
        }
        // Past the quiet time only a begun frame is read: a turn decides.
        Phase::Closing { .. } => Due::Drive,
        _ => Due::Nothing,
    }
}

/// Answers a task parked on a connection that broke before the queue had room.
fn fail_parked(ctx: &Context, task: Task) {
    task.fail(
        &ctx.metrics,
        crate::protocol::ErrorCode::ShuttingDown,
        "the connection broke before the queue had room",
    );
}

/// True if `buf` starts with a whole frame (or a header over the limit).
fn has_frame(buf: &[u8], max_frame: u32) -> bool {
    !matches!(decode(buf, max_frame), Ok(Decoded::Incomplete { .. }))
}

/// Bytes still to come before the frame begun in `buf` is whole (0: none begun).
fn missing(buf: &[u8], max_frame: u32) -> usize {
    match decode(buf, max_frame) {
        _ if buf.is_empty() => 0,
        Ok(Decoded::Incomplete { want: Some(total) }) => total - buf.len(),
        Ok(Decoded::Incomplete { want: None }) => HEADER_LEN - buf.len(),
        Ok(Decoded::Frame { .. }) | Err(_) => 0,
    }
}

/// The whole size of the frame begun in `buf`, as far as its header tells.
fn whole_len(buf: &[u8]) -> usize {
    buf.get(..HEADER_LEN).map_or(HEADER_LEN, |h| {
        HEADER_LEN + u32::from_be_bytes(h.try_into().expect("4 bytes")) as usize
    })
}

fn is_would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Says why a read ended a connection, as the threads model's reader does.
fn read_failed(ctx: &Context, e: &io::Error) {
    if HandshakeTimeout::is(e) {
        ctx.metrics.frames_timed_out.fetch_add(1, Relaxed);
        eprintln!("threadcenter server: closing a connection: {e}");
    } else if e.kind() == io::ErrorKind::InvalidData {
        // Not TLS, or broken TLS: rustls queued an alert, the flush sends it.
        eprintln!("threadcenter server: closing a TLS connection: {e}");
    }
}
