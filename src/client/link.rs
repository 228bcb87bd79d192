//! One non-blocking connection of the event-loop engine: a mio socket (TLS over it with
//! `--tls`, rustls' non-blocking API), its connect and handshake, and its input buffer
//! from which whole frames are cut without copying.
//!
//! The socket is registered edge-triggered for reading and writing, so `readable` and
//! `writable` remember an event until a read or a write meets `WouldBlock`.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::ClientConnection;

use super::tls::{HandshakeFailed, TlsTarget};
use crate::protocol::frame::{decode, Decoded, FrameError, HEADER_LEN};

/// The input buffer's first size; it grows (up to one whole frame) when a frame needs it.
const INPUT_START: usize = 1024;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// The TCP connect is under way.
    Connecting,
    /// TLS: the handshake is under way.
    Handshaking,
    /// Requests may be sent.
    Ready,
}

/// What a read brought.
pub(super) enum Fill {
    /// Bytes (maybe a whole frame): look for frames, then read again.
    Data,
    /// Nothing more for now.
    Blocked,
    /// The server closed the connection.
    Eof,
}

pub(super) struct Link {
    sock: TcpStream,
    tls: Option<Box<ClientConnection>>,
    pub state: State,
    /// The connect and handshake must be done by then.
    pub deadline: Instant,
    /// Answers read and not yet taken: `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_frame: u32,
    pub readable: bool,
    pub writable: bool,
}

impl Link {
    /// Starts a non-blocking connect to `addr`, registered under `token`.
    pub(super) fn connect(
        addr: SocketAddr,
        registry: &Registry,
        token: Token,
        tls: Option<&TlsTarget>,
        deadline: Instant,
        max_frame: u32,
    ) -> io::Result<Link> {
        let mut sock = TcpStream::connect(addr)?;
        registry.register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)?;
        let tls = tls.map(|t| t.client().map(Box::new)).transpose()?;
        Ok(Link {
            sock,
            tls,
            state: State::Connecting,
            deadline,
            buf: Vec::new(),
            start: 0,
            end: 0,
            max_frame,
            readable: false,
            writable: false,
        })
    }

    /// Takes the socket out of the event loop (it closes when dropped).
    pub(super) fn close(mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.sock);
    }

    /// Moves the connect and the handshake on; true once requests may be sent. `Err`
    /// is a failed connect (or handshake, as [`HandshakeFailed`]).
    pub(super) fn progress(&mut self) -> io::Result<bool> {
        if self.state == State::Connecting {
            if !self.writable && !self.readable {
                return Ok(false);
            }
            if let Some(e) = self.sock.take_error()? {
                return Err(e);
            }
            match self.sock.peer_addr() {
                Ok(_) => {}
                // Not yet: a spurious wake-up.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    self.writable = false;
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
            self.sock.set_nodelay(true)?;
            self.buf = vec![0; INPUT_START];
            self.state = match self.tls {
                Some(_) => State::Handshaking,
                None => State::Ready,
            };
        }
        if self.state == State::Handshaking {
            let failed = |e: io::Error| io::Error::new(e.kind(), HandshakeFailed(e));
            self.push_tls().map_err(failed)?;
            let tls = self.tls.as_mut().expect("handshaking means TLS");
            while self.readable && tls.is_handshaking() {
                match tls.read_tls(&mut self.sock) {
                    Ok(0) => {
                        return Err(failed(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the server closed the connection during the handshake",
                        )))
                    }
                    Ok(_) => {
                        tls.process_new_packets()
                            .map_err(|e| failed(io::Error::new(io::ErrorKind::InvalidData, e)))?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(failed(e)),
                }
            }
            self.push_tls().map_err(failed)?;
            let tls = self.tls.as_ref().expect("handshaking means TLS");
            if tls.is_handshaking() {
                return Ok(false);
            }
            self.state = State::Ready;
        }
        Ok(true)
    }

    /// Writes what TLS has ready for the socket, as far as the socket takes it.
    fn push_tls(&mut self) -> io::Result<()> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(());
        };
        while self.writable && tls.wants_write() {
            match tls.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// True while TLS holds records the socket has not taken yet.
    pub(super) fn tls_pending(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Writes from `bytes` what the connection takes now: `Ok(0)` when it takes nothing.
    /// With TLS the bytes are taken by TLS, which sends them as the socket allows.
    pub(super) fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.tls.is_some() {
            let n = self.tls.as_mut().expect("checked").writer().write(bytes)?;
            self.push_tls()?;
            return Ok(n);
        }
        loop {
            if !self.writable {
                return Ok(0);
            }
            match self.sock.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends what TLS still holds (after a writable event).
    pub(super) fn flush(&mut self) -> io::Result<()> {
        self.push_tls()
    }

    /// The next whole frame's payload in the input buffer, taken from it.
    pub(super) fn next_frame(&mut self) -> Result<Option<Range<usize>>, FrameError> {
        match decode(&self.buf[self.start..self.end], self.max_frame)? {
            Decoded::Frame { consumed } => {
                let payload = self.start + HEADER_LEN..self.start + consumed;
                self.start += consumed;
                if self.start == self.end {
                    self.start = 0;
                    self.end = 0;
                }
                Ok(Some(payload))
            }
            Decoded::Incomplete { want } => {
                // Room for the whole frame, so a large one can arrive.
                if let Some(want) = want {
                    if self.start + want > self.buf.len() {
                        self.make_room(want);
                    }
                }
                Ok(None)
            }
        }
    }

    /// The bytes of a payload range given by [`Link::next_frame`].
    pub(super) fn payload(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// Bytes of a frame begun and not whole: (got, want) if any.
    pub(super) fn partial(&self) -> Option<(usize, usize)> {
        let got = self.end - self.start;
        if got == 0 {
            return None;
        }
        let want = match decode(&self.buf[self.start..self.end], u32::MAX) {
            Ok(Decoded::Incomplete { want: Some(w) }) => w,
            _ => HEADER_LEN,
        };
        Some((got, want))
    }

    fn make_room(&mut self, want: usize) {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
    }

    /// Reads what has arrived into the input buffer.
    pub(super) fn fill(&mut self) -> io::Result<Fill> {
        if self.end == self.buf.len() {
            let grow = (self.buf.len() * 2).max(INPUT_START);
            if self.start > 0 {
                self.make_room(0);
            } else {
                self.buf.resize(grow, 0);
            }
        }
        let Some(tls) = self.tls.as_mut() else {
            loop {
                return match self.sock.read(&mut self.buf[self.end..]) {
                    Ok(0) => Ok(Fill::Eof),
                    Ok(n) => {
                        self.end += n;
                        Ok(Fill::Data)
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.readable = false;
                        Ok(Fill::Blocked)
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
            }
        };
        // Plaintext TLS already decrypted comes first.
        match tls.reader().read(&mut self.buf[self.end..]) {
            Ok(0) => return Ok(Fill::Eof),
            Ok(n) => {
                self.end += n;
                return Ok(Fill::Data);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if !self.readable {
            return Ok(Fill::Blocked);
        }
        match tls.read_tls(&mut self.sock) {
            Ok(0) => return Ok(Fill::Eof),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                return Ok(Fill::Blocked);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Fill::Data),
            Err(e) => return Err(e),
        }
        tls.process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.push_tls()?;
        Ok(Fill::Data)
    }
}
