//! One client connection: its reader thread parses and dispatches frames; its writer
//! thread (see `outbox`) sends whatever could not be sent on the spot.
//!
//! The reader reads frames from the socket itself, or, on a TLS connection, from the
//! session's plaintext (`tls::TlsReader`); everything after framing is the same.

use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use crate::protocol::message::{encode_error, encode_pong, encode_stats};
use crate::protocol::{parse_request, Command, ErrorCode, FrameError, FrameReader, Id};
use crate::server::metrics::CmdKind;
use crate::server::outbox::{Outbox, Room};
use crate::server::pool::{mono_ns, Refused, Task};
use crate::server::tls::{self, HandshakeTimeout, TlsReader};
use crate::server::Context;

const SHUTTING_DOWN: &str = "the server is shutting down and accepts no new work";

/// How often a reader blocked in `read` wakes to check for shutdown.
pub const POLL: Duration = Duration::from_millis(100);

/// Decrements the open-connection count when the last thread of a connection ends.
struct OpenGuard(Arc<Context>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.metrics.connections_open.fetch_sub(1, Relaxed);
    }
}

/// Serves one accepted connection on the calling thread (its reader), with a writer
/// thread beside it. Returns when the connection is finished.
pub fn serve(ctx: Arc<Context>, stream: TcpStream) {
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
        )),
        Err(e) => {
            eprintln!("threadcenter server: cannot set up a connection: {e}");
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
        return;
    }
    let _ = stream.set_read_timeout(Some(POLL));
    match session {
        None => read_frames(&ctx, &outbox, stream),
        Some(session) => {
            let limit = ctx.config.frame_timeout;
            let plain = TlsReader::new(session, stream, Arc::clone(&outbox), limit);
            read_frames(&ctx, &outbox, plain);
        }
    }
    outbox.reader_done();
    drop(guard);
}

/// A byte stream a connection's frames come from: the socket, or TLS over it.
trait Source: Read {
    fn socket(&self) -> &TcpStream;
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
    frames: FrameReader<S>,
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
                return self.drain_for_shutdown();
            }
            match self
                .outbox
                .wait_for_room(self.ctx.config.max_in_flight, POLL)
            {
                Room::Free => {}
                // The pause was the server's doing, not the client's.
                Room::AfterWait => self.frames.reset_stall_clock(),
                Room::Full => {
                    self.frames.reset_stall_clock();
                    continue;
                }
            }
            match self.frames.next_frame() {
                Ok(Some(payload)) => handle(self.ctx, self.outbox, payload, mono_ns()),
                Ok(None) => return,
                Err(e) if e.is_timeout() => continue,
                Err(FrameError::TooLarge { len, max }) => {
                    let swapped = len.swap_bytes();
                    let hint = if swapped > 0 && swapped <= max {
                        format!("; read little-endian it would be {swapped}: the length prefix must be big-endian")
                    } else {
                        String::new()
                    };
                    reply_error(
                        self.ctx,
                        self.outbox,
                        CmdKind::Invalid,
                        Id::NULL,
                        ErrorCode::FrameTooLarge,
                        &format!("frame declares {len} bytes, over this server's limit of {max} bytes (--max-frame){hint}; closing the connection"),
                    );
                    return;
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

    /// Once drained: answers every whole frame that has already arrived (compute gets
    /// SHUTTING_DOWN), then stops reading; the writer closes the connection.
    fn drain_for_shutdown(&mut self) {
        // A short read timeout rather than O_NONBLOCK, which the writer's handle of the
        // same socket would share: its blocking writes must stay blocking.
        let _ = self
            .frames
            .get_ref()
            .socket()
            .set_read_timeout(Some(Duration::from_millis(1)));
        while let Ok(Some(payload)) = self.frames.next_frame() {
            handle(self.ctx, self.outbox, payload, mono_ns());
        }
    }
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

/// Answers one request, or hands it to the pool, which answers it later.
/// `received_ns`: [`mono_ns`] when the frame was fully read.
fn handle(ctx: &Context, outbox: &Arc<Outbox>, payload: &[u8], received_ns: u64) {
    let req = match parse_request(payload, ctx.config.max_n) {
        Ok(req) => req,
        Err(rej) => {
            ctx.metrics.request(CmdKind::Invalid);
            return reply_error(
                ctx,
                outbox,
                CmdKind::Invalid,
                rej.id,
                rej.code,
                &rej.message,
            );
        }
    };
    let id = req.id.json().as_bytes();
    match req.cmd {
        Command::Ping => {
            ctx.metrics.request(CmdKind::Ping);
            ctx.metrics.respond(CmdKind::Ping, Ok(()));
            outbox.send(|out| encode_pong(out, id));
        }
        Command::Stats { reset } => {
            ctx.metrics.request(CmdKind::Stats);
            // Counted first, so a snapshot includes the stats request it answers.
            ctx.metrics.respond(CmdKind::Stats, Ok(()));
            let stats = ctx.stats(reset);
            outbox.send(|out| encode_stats(out, id, &stats));
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
        }
        Command::Compute { n } => {
            ctx.metrics.request(CmdKind::Compute);
            outbox.begin_task();
            let task = Task {
                n,
                id: req.id.to_owned(),
                conn: Arc::clone(outbox),
                received_ns,
            };
            if let Err((task, why)) = ctx.pool.submit(task) {
                let (code, message) = match why {
                    Refused::Full => (
                        ErrorCode::Overloaded,
                        "the task queue is full (--queue-capacity); retry later",
                    ),
                    Refused::Closed => (ErrorCode::ShuttingDown, SHUTTING_DOWN),
                };
                task.fail(&ctx.metrics, code, message);
            }
        }
    }
}
