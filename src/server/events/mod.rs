//! `--io events`: `--io-threads` epoll loops (mio), each owning many non-blocking connections.
//!
//! The accept loop (in `server`) hands each accepted socket to a loop, round-robin,
//! through the loop's inbox and its `mio::Waker`. A loop owns its connections
//! (`conn.rs`): it reads frames on READABLE, answers ping, stats and errors on the spot
//! and hands compute to the pool through the same [`connection::handle`] as the
//! threads model, and writes on WRITABLE what the outbox could not send at once.
//! Pool threads answer through the same [`Outbox`](crate::server::outbox::Outbox) as
//! with threads: a direct non-blocking send, and, when bytes are left behind, the
//! connection's token in the inbox (through [`LoopWake`]) so the loop writes them.
//!
//! Under the process pool, each loop also reads the result pipes of the workers lent
//! to it (see `pool::process`): the answers to compute go out from the loop that read
//! them, in the same `epoll_wait` as the requests.
//!
//! Nothing on a loop blocks: a full queue under `--when-full wait` parks the task on its
//! connection, which stops reading until the pool calls the loop's room waker;
//! `--max-in-flight` and the unsent-bytes cap pause reading until the outbox queues the
//! connection again. Deadlines (`--frame-timeout`, the TLS handshake, the shutdown's
//! quiet time and flush allowance) are checked by a tick: every [`TICK`], or
//! [`CLOSING_TICK`] once the server is shutting down, from a timerfd in the loop's
//! epoll set (`ticker.rs`), so that waiting for events arms no timer of its own.
//!
//! [`connection::handle`]: crate::server::connection::handle

mod conn;
mod ticker;

use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use mio::{Poll, Token, Waker};

use crate::server::outbox::LoopWake;
use crate::server::pool::process::{LentPipe, PipeHost};
use crate::server::Context;
use crate::sync;

/// How often a loop checks its connections' deadlines while serving.
pub(crate) const TICK: Duration = Duration::from_millis(50);
/// How often once the server is shutting down (the quiet time is 20 ms).
pub(crate) const CLOSING_TICK: Duration = Duration::from_millis(5);

/// The token of a loop's waker; connections have the others.
const WAKER: Token = Token(usize::MAX);
/// The token of a loop's tick timer.
const TIMER: Token = Token(usize::MAX - 1);
/// The token of the first result pipe lent to a loop (the k-th is `PIPE0 + k`);
/// connections' tokens stay far below.
const PIPE0: usize = usize::MAX / 2;

/// The event loops, as the accept loop sees them.
pub(crate) struct Loops {
    loops: Vec<Arc<Shared>>,
    threads: Vec<JoinHandle<()>>,
    next: AtomicUsize,
}

/// What other threads share with one loop: its waker and its inbox.
struct Shared {
    waker: Waker,
    inbox: Mutex<Inbox>,
}

#[derive(Default)]
struct Inbox {
    /// Accepted sockets, to be registered.
    incoming: Vec<TcpStream>,
    /// Connections an outbox queued (see [`LoopWake`]).
    ready: Vec<usize>,
    /// The pool made room: connections parked on a full queue try again.
    pool_room: bool,
    /// The server is shutting down: no more sockets will come.
    stop: bool,
    /// Worker result pipes lent to the loop, to be registered.
    pipes: Vec<LentPipe>,
    /// The loop has ended: it takes no more pipes.
    ended: bool,
}

impl Inbox {
    fn is_empty(&self) -> bool {
        self.incoming.is_empty()
            && self.ready.is_empty()
            && !self.pool_room
            && !self.stop
            && self.pipes.is_empty()
    }
}

impl Shared {
    /// Puts something in the inbox, waking the loop if the inbox was empty (the loop
    /// empties it whole before it polls again, so one wake per batch is enough).
    fn post(&self, put: impl FnOnce(&mut Inbox)) {
        let mut inbox = sync::lock(&self.inbox);
        let was_empty = inbox.is_empty();
        put(&mut inbox);
        if was_empty {
            drop(inbox);
            if let Err(e) = self.waker.wake() {
                eprintln!("threadcenter server: cannot wake an event loop: {e}");
            }
        }
    }

    fn take(&self) -> Inbox {
        std::mem::take(&mut *sync::lock(&self.inbox))
    }

    /// The loop is ending: no more pipes are lent to it; those waiting in the inbox
    /// come back.
    fn end(&self) -> Vec<LentPipe> {
        let mut inbox = sync::lock(&self.inbox);
        inbox.ended = true;
        std::mem::take(&mut inbox.pipes)
    }
}

impl PipeHost for Shared {
    fn lend(&self, pipe: LentPipe) -> Result<(), LentPipe> {
        let mut refused = None;
        self.post(|inbox| {
            if inbox.ended {
                refused = Some(pipe);
            } else {
                inbox.pipes.push(pipe);
            }
        });
        refused.map_or(Ok(()), Err)
    }
}

impl LoopWake for Shared {
    fn ready(&self, token: usize) {
        self.post(|inbox| inbox.ready.push(token));
    }
}

/// `n` loops made but not started: what the pool needs of them (their
/// [`PipeHost`]s) exists before the server's context, which the loops need.
pub(crate) struct Prepared {
    loops: Vec<(Arc<Shared>, Poll)>,
}

impl Prepared {
    /// Makes `n` loops' epoll instances and wakers.
    pub(crate) fn new(n: usize) -> anyhow::Result<Prepared> {
        let mut loops = Vec::with_capacity(n);
        for _ in 0..n {
            let poll = Poll::new().context("cannot create an epoll instance")?;
            let waker = Waker::new(poll.registry(), WAKER)
                .context("cannot create an event loop's waker")?;
            let shared = Arc::new(Shared {
                waker,
                inbox: Mutex::default(),
            });
            loops.push((shared, poll));
        }
        Ok(Prepared { loops })
    }

    /// The loops as hosts of the process pool's result pipes.
    pub(crate) fn pipe_hosts(&self) -> Vec<Arc<dyn PipeHost>> {
        self.loops
            .iter()
            .map(|(sh, _)| Arc::clone(sh) as Arc<dyn PipeHost>)
            .collect()
    }

    /// Starts the loops, serving connections with `ctx`.
    pub(crate) fn start(mut self, ctx: &Arc<Context>) -> anyhow::Result<Loops> {
        let mut loops = Vec::with_capacity(self.loops.len());
        let mut threads = Vec::with_capacity(self.loops.len());
        let mut rest = std::mem::take(&mut self.loops).into_iter().enumerate();
        while let Some((i, (shared, poll))) = rest.next() {
            let (c, sh) = (Arc::clone(ctx), Arc::clone(&shared));
            let spawned = std::thread::Builder::new()
                .name(format!("io-loop-{i}"))
                .spawn(move || conn::Loop::new(c, sh, poll).run());
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    // This loop and those after it never run: their pipes go back
                    // (the others' through `drop`).
                    for pipe in shared.end() {
                        pipe.give_back(None);
                    }
                    self.loops = rest.map(|(_, l)| l).collect();
                    return Err(e).context("cannot start an event-loop thread");
                }
            }
            loops.push(shared);
        }
        Ok(Loops {
            loops,
            threads,
            next: AtomicUsize::new(0),
        })
    }
}

impl Drop for Prepared {
    /// Pipes lent to loops that never ran go back to their supervisors.
    fn drop(&mut self) {
        for (shared, _) in self.loops.drain(..) {
            for pipe in shared.end() {
                pipe.give_back(None);
            }
        }
    }
}

impl Loops {
    /// Hands an accepted (and counted) connection to the next loop.
    pub(crate) fn dispatch(&self, stream: TcpStream) {
        let i = self.next.fetch_add(1, Relaxed) % self.loops.len();
        self.loops[i].post(|inbox| inbox.incoming.push(stream));
    }

    /// Tells every loop the server is shutting down; each ends once its connections
    /// have closed.
    pub(crate) fn stop(&self) {
        for l in &self.loops {
            l.post(|inbox| inbox.stop = true);
        }
    }

    /// Waits up to `limit` for the loops to end (they have, once every connection
    /// closed); true if they did.
    pub(crate) fn join(self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while self.threads.iter().any(|t| !t.is_finished()) {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.threads.into_iter().all(|t| t.join().is_ok())
    }
}
