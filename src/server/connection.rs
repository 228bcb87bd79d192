//! One client connection: its reader thread parses and dispatches frames; its writer
//! thread (see `outbox`) sends whatever could not be sent on the spot.

use std::net::TcpStream;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::protocol::message::{encode_error, encode_pong, encode_stats};
use crate::protocol::{parse_request, Command, ErrorCode, FrameError, FrameReader, Id};
use crate::server::metrics::CmdKind;
use crate::server::outbox::Outbox;
use crate::server::pool::{Refused, Task};
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
    let outbox = match stream.try_clone() {
        Ok(s) => Arc::new(Outbox::new(s, ctx.config.max_buffered)),
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
    let mut reader = Reader {
        ctx: &ctx,
        outbox: &outbox,
        frames: FrameReader::new(stream, ctx.config.max_frame),
    };
    reader.run();
    outbox.reader_done();
    drop(guard);
}

struct Reader<'a> {
    ctx: &'a Arc<Context>,
    outbox: &'a Arc<Outbox>,
    frames: FrameReader<TcpStream>,
}

impl Reader<'_> {
    fn run(&mut self) {
        loop {
            // While draining, requests keep being read (and compute refused) until
            // this connection's last request in flight is answered.
            if self.ctx.shutting_down() && self.outbox.in_flight() == 0 {
                return self.drain_for_shutdown();
            }
            if !self
                .outbox
                .wait_for_room(self.ctx.config.max_in_flight, POLL)
            {
                continue;
            }
            match self.frames.next_frame() {
                Ok(Some(payload)) => handle(self.ctx, self.outbox, payload, Instant::now()),
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
                        Id::NULL,
                        ErrorCode::FrameTooLarge,
                        &format!("frame declares {len} bytes, over this server's limit of {max} bytes (--max-frame){hint}; closing the connection"),
                    );
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
        let _ = self.frames.get_ref().set_nonblocking(true);
        while let Ok(Some(payload)) = self.frames.next_frame() {
            handle(self.ctx, self.outbox, payload, Instant::now());
        }
    }
}

fn reply_error(ctx: &Context, outbox: &Outbox, id: Id<'_>, code: ErrorCode, message: &str) {
    ctx.metrics.error(code);
    outbox.send(|out| encode_error(out, id.json().as_bytes(), code, message));
}

/// Answers one request, or hands it to the pool, which answers it later.
fn handle(ctx: &Context, outbox: &Arc<Outbox>, payload: &[u8], received: Instant) {
    let req = match parse_request(payload, ctx.config.max_n) {
        Ok(req) => req,
        Err(rej) => {
            ctx.metrics.request(CmdKind::Invalid);
            return reply_error(ctx, outbox, rej.id, rej.code, &rej.message);
        }
    };
    let id = req.id.json().as_bytes();
    match req.cmd {
        Command::Ping => {
            ctx.metrics.request(CmdKind::Ping);
            outbox.send(|out| encode_pong(out, id));
        }
        Command::Stats { reset } => {
            ctx.metrics.request(CmdKind::Stats);
            let stats = ctx.stats(reset);
            outbox.send(|out| encode_stats(out, id, &stats));
        }
        Command::Compute { .. } if ctx.shutting_down() => {
            ctx.metrics.request(CmdKind::Compute);
            reply_error(ctx, outbox, req.id, ErrorCode::ShuttingDown, SHUTTING_DOWN);
        }
        Command::Compute { n } => {
            ctx.metrics.request(CmdKind::Compute);
            outbox.begin_task();
            let task = Task {
                n,
                id: req.id.to_owned(),
                conn: Arc::clone(outbox),
                received,
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
