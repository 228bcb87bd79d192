//! One client connection under `--io threads`: its reader thread parses and dispatches
//! frames; its writer thread (see `outbox`) sends whatever could not be sent on the spot.
//! [`handle`], what a request gets once its frame is in, serves `--io events` too.
//!
//! The reader reads frames from the socket itself, or, on a TLS connection, from the
//! session's plaintext (`tls::TlsReader`); everything after framing is the same.
//!
//! Shutdown (SIGINT/SIGTERM): the reader goes on reading while the connection has
//! requests in the pool, answering any new compute with SHUTTING_DOWN. Once nothing is
//! in flight it answers what arrives within [`QUIET`] (SHUTTING_DOWN again), finishes
//! a frame it has begun without beginning another, lets the writer flush, and closes:
//! all within [`FLUSH_ALLOWANCE`] of that moment, however the client behaves.

use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::protocol::message::{encode_error, encode_pong, encode_stats};
use crate::protocol::{parse_request, Command, ErrorCode, FrameError, FrameReader, Id};
use crate::server::metrics::CmdKind;
use crate::server::outbox::{Outbox, Room};
use crate::server::pool::{mono_ns, Refused, RoomWaker, Task};
use crate::server::tls::{self, HandshakeTimeout, TlsReader};
use crate::server::Context;

pub(crate) const SHUTTING_DOWN: &str = "the server is shutting down and accepts no new work";

/// How often a reader blocked in `read` wakes to check for shutdown.
pub(crate) const POLL: Duration = Duration::from_millis(100);
/// Shutdown: once a connection has nothing in flight, requests that arrive within this
/// are still answered (SHUTTING_DOWN), so that a client sending one request at a time
/// hears that the server is going away rather than finding the connection closed.
pub(crate) const QUIET: Duration = Duration::from_millis(20);
/// Shutdown: the longest a connection stays open once it has nothing in flight, to
/// finish a frame it had begun, flush its answers, and see the client close.
pub(crate) const FLUSH_ALLOWANCE: Duration = Duration::from_millis(500);
/// Shutdown: the read timeout while closing.
const CLOSING_POLL: Duration = Duration::from_millis(5);

/// Decrements the open-connection count when the last thread of a connection ends.
struct OpenGuard(Arc<Context>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.metrics.connections_open.fetch_sub(1, Relaxed);
    }
}

/// Serves one accepted connection on the calling thread (its reader), with a writer
/// thread beside it. Returns when the connection is finished.
pub(crate) fn serve(ctx: Arc<Context>, stream: TcpStream) {
    let guard = Arc::new(OpenGuard(Arc::clone(&ctx)));
    let _ = stream.set_nodelay(true);
    let session = match ctx.config.tls.as_ref().map(tls::session).transpose() {
        Ok(session) => session,
        Err(e) => {
            eprintln!("threadcenter server: cannot set up a TLS session: {e}");
            return;
        }
    };
    let outbox = match stream.try_clone() {
        Ok(s) => Arc::new(Outbox::with_tls(
            s,
            session.clone(),
            ctx.config.max_buffered,
            ctx.config.max_in_flight,
        )),
        Err(e) => {
            eprintln!("threadcenter server: cannot set up a connection: {e}");
            refuse_unserved(
                &ctx,
                &stream,
                &format!("cannot set up this connection: {e}"),
            );
            return;
        }
    };
    let writer = {
        let outbox = Arc::clone(&outbox);
        let guard = Arc::clone(&guard);
        std::thread::Builder::new()
            .name("conn-writer".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                outbox.run_writer();
                drop(guard);
            })
    };
    if let Err(e) = writer {
        eprintln!("threadcenter server: cannot start a connection's writer thread: {e}");
        refuse_unserved(
            &ctx,
            &stream,
            &format!("cannot start a thread for this connection ({e})"),
        );
        return;
    }
    let _ = stream.set_read_timeout(Some(POLL));
    match session {
        None => read_frames(&ctx, &outbox, stream),
        Some(session) => {
            let limit = ctx.config.frame_timeout;
            drop(stream);
            let plain = TlsReader::new(session, Arc::clone(&outbox), limit);
            read_frames(&ctx, &outbox, plain);
        }
    }
    outbox.reader_done();
    drop(guard);
}

/// A connection the server cannot serve after all (a thread or a descriptor it could
/// not get): answered OVERLOADED, if the socket takes it at once, and closed.
pub(crate) fn refuse_unserved(ctx: &Context, stream: &TcpStream, why: &str) {
    ctx.metrics.connections_refused.fetch_add(1, Relaxed);
    ctx.metrics.error(ErrorCode::Overloaded);
    let mut frame = Vec::with_capacity(160);
    encode_error(
        &mut frame,
        b"null",
        ErrorCode::Overloaded,
        &format!("the server {why}; this connection is closed, retry later"),
    );
    let _ = socket2::SockRef::from(stream)
        .send_with_flags(&frame, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
    let _ = stream.shutdown(Shutdown::Write);
}

/// A byte stream a connection's frames come from: the socket, or TLS over it.
trait Source: Read {
    fn socket(&self) -> &TcpStream;
}

/// A [`Source`] whose reads can be limited to a number of bytes, so that a reader
/// closing for shutdown finishes the frame it has begun without beginning the next.
struct Limited<S> {
    inner: S,
    /// Bytes the next reads may take; `None`: no limit (the normal case).
    limit: Option<usize>,
}

impl<S: Read> Read for Limited<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(limit) = self.limit else {
            return self.inner.read(buf);
        };
        if limit == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(limit);
        let got = self.inner.read(&mut buf[..n])?;
        self.limit = Some(limit - got);
        Ok(got)
    }
}

impl<S: Source> Source for Limited<S> {
    fn socket(&self) -> &TcpStream {
        self.inner.socket()
    }
}

impl Source for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
}

impl Source for TlsReader {
    fn socket(&self) -> &TcpStream {
        TlsReader::socket(self)
    }
}

fn read_frames<S: Source>(ctx: &Arc<Context>, outbox: &Arc<Outbox>, source: S) {
    let source = Limited {
        inner: source,
        limit: None,
    };
    let mut frames = FrameReader::new(source, ctx.config.max_frame);
    frames.set_stall_limit(Some(ctx.config.frame_timeout));
    Reader {
        ctx,
        outbox,
        frames,
    }
    .run();
}

struct Reader<'a, S> {
    ctx: &'a Arc<Context>,
    outbox: &'a Arc<Outbox>,
    frames: FrameReader<Limited<S>>,
}

impl<S: Source> Reader<'_, S> {
    fn run(&mut self) {
        loop {
            // The client is gone (a write failed): the requests it pipelined before
            // leaving, already read into the buffer, would be worked on for nobody.
            if self.outbox.broken() {
                return;
            }
            // While draining, requests keep being read (and compute refused) until
            // this connection's last request in flight is answered.
            if self.ctx.shutting_down() && self.outbox.in_flight() == 0 {
                return self.close_for_shutdown();
            }
            match self.outbox.wait_for_room(POLL) {
                Room::Free => {}
                // The pause was the server's doing, not the client's.
                Room::AfterWait => self.frames.reset_stall_clock(),
                Room::Full => {
                    self.frames.reset_stall_clock();
                    continue;
                }
            }
            match self.frames.next_frame() {
                Ok(Some(payload)) => {
                    if let Some(task) = handle(self.ctx, self.outbox, payload, mono_ns()) {
                        submit(self.ctx, task, None);
                    }
                }
                Ok(None) => return,
                Err(e) if e.is_timeout() => continue,
                Err(FrameError::TooLarge { len, max }) => {
                    return frame_too_large(self.ctx, self.outbox, len, max);
                }
                // Slowloris: no answer (the frame has no id yet), the connection closes.
                Err(e @ FrameError::Stalled { .. }) => {
                    self.ctx.metrics.frames_timed_out.fetch_add(1, Relaxed);
                    eprintln!("threadcenter server: closing a connection: {e}");
                    return;
                }
                Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::InvalidData => {
                    // Not TLS, or broken TLS: rustls queued an alert, the writer sends it.
                    eprintln!("threadcenter server: closing a TLS connection: {e}");
                    return;
                }
                Err(FrameError::Io(e)) if HandshakeTimeout::is(&e) => {
                    self.ctx.metrics.frames_timed_out.fetch_add(1, Relaxed);
                    eprintln!("threadcenter server: closing a connection: {e}");
                    return;
                }
                // A client that leaves mid-frame, or a reset: nothing to answer.
                Err(FrameError::Truncated { .. } | FrameError::Io(_)) => return,
            }
        }
    }

    /// Once nothing is in flight while shutting down: answers what arrives within
    /// [`QUIET`], then only the frames already buffered and the rest of one already
    /// begun; stops reading, lets the writer flush, and waits for the client to close
    /// (so its unread requests cannot turn the close into a reset that might destroy
    /// answers it has not read yet). All of it within [`FLUSH_ALLOWANCE`].
    fn close_for_shutdown(&mut self) {
        let now = Instant::now();
        let (quiet_until, close_by) = (now + QUIET, now + FLUSH_ALLOWANCE);
        // A short read timeout rather than O_NONBLOCK, which the writer's handle of the
        // same socket would share: its blocking writes must stay blocking.
        let socket = self.frames.get_ref().socket();
        let _ = socket.set_read_timeout(Some(CLOSING_POLL));
        loop {
            let now = Instant::now();
            if now >= close_by {
                // A frame still not whole: the client had its chance.
                break;
            }
            let quiet = now < quiet_until;
            self.frames.get_mut().limit = if quiet {
                None
            } else {
                Some(self.frames.missing())
            };
            match self.frames.next_frame() {
                Ok(Some(payload)) => {
                    if let Some(task) = handle(self.ctx, self.outbox, payload, mono_ns()) {
                        submit(self.ctx, task, None);
                    }
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => {
                    if !quiet && self.frames.missing() == 0 {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        self.outbox.reader_done();
        let socket = self.frames.get_ref().socket();
        if !self.outbox.wait_closed(close_by) {
            // The client does not read its answers: cut it off (this also ends the
            // writer's blocked write).
            let _ = socket.shutdown(Shutdown::Both);
            return;
        }
        // The writer has sent every answer and a FIN: discard what the client still
        // sends until it closes too.
        let mut sink = [0u8; 4096];
        let mut socket = socket;
        while Instant::now() < close_by {
            match socket.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if super::transient(&e) => {}
                Err(_) => break,
            }
        }
    }
}

/// Answers a frame whose declared length is over `--max-frame`; the caller closes.
pub(crate) fn frame_too_large(ctx: &Context, outbox: &Outbox, len: u32, max: u32) {
    let swapped = len.swap_bytes();
    let hint = if swapped > 0 && swapped <= max {
        format!("; read little-endian it would be {swapped}: the length prefix must be big-endian")
    } else {
        String::new()
    };
    reply_error(
        ctx,
        outbox,
        CmdKind::Invalid,
        Id::NULL,
        ErrorCode::FrameTooLarge,
        &format!("frame declares {len} bytes, over this server's limit of {max} bytes (--max-frame){hint}; closing the connection"),
    );
}

fn reply_error(
    ctx: &Context,
    outbox: &Outbox,
    kind: CmdKind,
    id: Id<'_>,
    code: ErrorCode,
    message: &str,
) {
    ctx.metrics.respond(kind, Err(code));
    outbox.send(|out| encode_error(out, id.json().as_bytes(), code, message));
}

/// Answers one request, or returns the compute task (counted in the outbox's in
/// flight) that the caller hands to the pool: at once with [`submit`] (a connection's
/// reader thread), or with the rest of its loop's batch (an event loop).
/// `received_ns`: [`mono_ns`] when the frame was fully read.
#[must_use = "a compute task must be submitted to the pool"]
pub(crate) fn handle(
    ctx: &Context,
    outbox: &Arc<Outbox>,
    payload: &[u8],
    received_ns: u64,
) -> Option<Task> {
    let req = match parse_request(payload, ctx.config.max_n) {
        Ok(req) => req,
        Err(rej) => {
            ctx.metrics.request(CmdKind::Invalid);
            reply_error(
                ctx,
                outbox,
                CmdKind::Invalid,
                rej.id,
                rej.code,
                &rej.message,
            );
            return None;
        }
    };
    let id = req.id.json().as_bytes();
    match req.cmd {
        Command::Ping => {
            ctx.metrics.request(CmdKind::Ping);
            ctx.metrics.respond(CmdKind::Ping, Ok(()));
            outbox.send(|out| encode_pong(out, id));
            None
        }
        Command::Stats { reset } => {
            ctx.metrics.request(CmdKind::Stats);
            // Counted first, so a snapshot includes the stats request it answers.
            ctx.metrics.respond(CmdKind::Stats, Ok(()));
            let stats = ctx.stats(reset);
            outbox.send(|out| encode_stats(out, id, &stats));
            None
        }
        Command::Compute { .. } if ctx.shutting_down() => {
            ctx.metrics.request(CmdKind::Compute);
            reply_error(
                ctx,
                outbox,
                CmdKind::Compute,
                req.id,
                ErrorCode::ShuttingDown,
                SHUTTING_DOWN,
            );
            None
        }
        Command::Compute { n } => {
            ctx.metrics.request(CmdKind::Compute);
            outbox.begin_task();
            Some(Task {
                n,
                id: req.id.to_owned(),
                conn: Arc::clone(outbox),
                received_ns,
            })
        }
    }
}

/// Hands a compute task (counted in its outbox's in-flight) to the pool; a refusal is
/// its answer. Returns the task if the pool said [`Refused::Later`] (only with `park`).
pub(crate) fn submit(ctx: &Context, task: Task, park: Option<&RoomWaker>) -> Option<Task> {
    let (task, why) = ctx.pool.submit(task, park).err()?;
    refused(ctx, task, why)
}

/// Answers a task the pool refused, unless the refusal is [`Refused::Later`]: then the
/// task comes back, to be submitted again once the pool calls the room waker.
pub(crate) fn refused(ctx: &Context, task: Task, why: Refused) -> Option<Task> {
    let (code, message) = match why {
        Refused::Later => return Some(task),
        Refused::Full => (
            ErrorCode::Overloaded,
            "the task queue is full (--queue-capacity); retry later",
        ),
        Refused::Closed => (ErrorCode::ShuttingDown, SHUTTING_DOWN),
    };
    task.fail(&ctx.metrics, code, message);
    None
}
