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
}

impl Inbox {
    fn is_empty(&self) -> bool {
        self.incoming.is_empty() && self.ready.is_empty() && !self.pool_room && !self.stop
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
}

impl LoopWake for Shared {
    fn ready(&self, token: usize) {
        self.post(|inbox| inbox.ready.push(token));
    }
}

impl Loops {
    /// Starts `n` loops serving connections with `ctx`.
    pub(crate) fn start(ctx: &Arc<Context>, n: usize) -> anyhow::Result<Loops> {
        let mut loops = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let poll = Poll::new().context("cannot create an epoll instance")?;
            let waker = Waker::new(poll.registry(), WAKER)
                .context("cannot create an event loop's waker")?;
            let shared = Arc::new(Shared {
                waker,
                inbox: Mutex::default(),
            });
            let (ctx, sh) = (Arc::clone(ctx), Arc::clone(&shared));
            let thread = std::thread::Builder::new()
                .name(format!("io-loop-{i}"))
                .spawn(move || conn::Loop::new(ctx, sh, poll).run())
                .context("cannot start an event-loop thread")?;
            loops.push(shared);
            threads.push(thread);
        }
        Ok(Loops {
            loops,
            threads,
            next: AtomicUsize::new(0),
        })
    }

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
