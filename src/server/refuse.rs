//! Connections past `--max-connections`: answered OVERLOADED and closed, off the accept loop.
//!
//! The accept loop hands each refused socket to one thread, which sends the error
//! without blocking, shuts down its sending side, and keeps the socket briefly while it
//! discards whatever the client sent: closing a socket with unread input makes the
//! kernel send a reset, which could destroy the error frame before the client reads it.
//! At most [`HELD_MAX`] sockets are held, each for at most [`LINGER`]; past that the
//! oldest are closed at once. Nothing here grows with the flood.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use socket2::SockRef;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};

use crate::protocol::message::encode_error;
use crate::protocol::ErrorCode;

/// How long a refused socket is kept to drain its input.
pub(crate) const LINGER: Duration = Duration::from_secs(1);
/// Refused sockets kept at once.
pub(crate) const HELD_MAX: usize = 1024;

pub(crate) struct Refuser {
    tx: SyncSender<(TcpStream, u64)>,
}

impl Refuser {
    /// Starts the refusing thread; it ends once the `Refuser` is dropped and every
    /// held socket is closed.
    pub(crate) fn start() -> Refuser {
        let (tx, rx) = mpsc::sync_channel(HELD_MAX);
        let spawned = std::thread::Builder::new()
            .name("refuser".into())
            .stack_size(64 * 1024)
            .spawn(move || run(rx));
        if let Err(e) = spawned {
            // Without the thread, refused sockets are simply closed (see `refuse`).
            eprintln!("threadcenter server: cannot start the refuser thread: {e}");
        }
        Refuser { tx }
    }

    /// Answers `stream` OVERLOADED and closes it, without blocking the caller.
    pub(crate) fn refuse(&self, stream: TcpStream, limit: u64) {
        match self.tx.try_send((stream, limit)) {
            Ok(()) => {}
            // Too many at once (or no thread): close without a word.
            Err(TrySendError::Full((s, _)) | TrySendError::Disconnected((s, _))) => drop(s),
        }
    }
}

fn run(rx: Receiver<(TcpStream, u64)>) {
    let mut held: VecDeque<(TcpStream, Instant)> = VecDeque::new();
    let mut open = true;
    let mut scratch = vec![0u8; 16 * 1024];
    let mut frame = Vec::with_capacity(256);
    while open || !held.is_empty() {
        let wait = if held.is_empty() {
            Duration::from_millis(500)
        } else {
            Duration::from_millis(20)
        };
        match rx.recv_timeout(wait) {
            Ok((stream, limit)) => {
                frame.clear();
                encode_error(
                    &mut frame,
                    b"null",
                    ErrorCode::Overloaded,
                    &format!("the server already has {limit} connections open (--max-connections); this one is closed, retry later"),
                );
                if stream.set_nonblocking(true).is_ok() {
                    // A fresh socket's send buffer is empty: the frame fits whole.
                    let _ = SockRef::from(&stream)
                        .send_with_flags(&frame, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
                    let _ = stream.shutdown(Shutdown::Write);
                    if held.len() >= HELD_MAX {
                        held.pop_front();
                    }
                    held.push_back((stream, Instant::now() + LINGER));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
        let now = Instant::now();
        held.retain_mut(|(stream, until)| {
            if !open || *until <= now {
                return false;
            }
            loop {
                match stream.read(&mut scratch) {
                    Ok(0) => return false,
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return false,
                }
            }
        });
    }
}
