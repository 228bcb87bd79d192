//! Framing: a 4-byte big-endian length, then that many payload bytes (protocol.md, "Framing").

use std::io::{self, Read};
use std::time::{Duration, Instant};

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 4;
/// The default largest payload a server accepts: 1 MiB.
pub const DEFAULT_MAX_FRAME: u32 = 1 << 20;

/// Why a byte stream could not yield its next frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The header declares more bytes than the reader accepts.
    #[error("frame declares {len} bytes, over the limit of {max} bytes (check the 4-byte big-endian length prefix, or raise --max-frame)")]
    TooLarge { len: u32, max: u32 },
    /// The stream ended inside a frame.
    #[error("connection closed in the middle of a frame: {got} of {want} bytes received (check that the sender writes the whole frame and reads in a loop)")]
    Truncated { got: usize, want: usize },
    /// A frame began arriving but was not whole within the reader's stall limit.
    #[error("a frame began arriving but only {got} of {want} bytes came within {limit:?} (the server's --frame-timeout)")]
    Stalled {
        got: usize,
        want: usize,
        limit: Duration,
    },
    /// The underlying read failed (a timeout shows up here as `WouldBlock` or `TimedOut`).
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl FrameError {
    /// True for a read timeout: the reader's state is intact and it can be called again.
    pub fn is_timeout(&self) -> bool {
        matches!(self, FrameError::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

/// What [`decode`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole frame: its payload is `buf[HEADER_LEN..consumed]`.
    Frame { consumed: usize },
    /// More bytes are needed; `want` is the whole frame's size if the header is in.
    Incomplete { want: Option<usize> },
}

/// Decodes the frame at the start of `buf` without copying.
///
/// A declared length of 0 is a frame with an empty payload: the protocol answers it
/// with BAD_REQUEST and keeps the connection, so it is not a framing error.
pub fn decode(buf: &[u8], max_frame: u32) -> Result<Decoded, FrameError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(Decoded::Incomplete { want: None });
    };
    let len = u32::from_be_bytes(header.try_into().expect("4 bytes"));
    if len > max_frame {
        return Err(FrameError::TooLarge {
            len,
            max: max_frame,
        });
    }
    let total = HEADER_LEN + len as usize;
    if buf.len() >= total {
        Ok(Decoded::Frame { consumed: total })
    } else {
        Ok(Decoded::Incomplete { want: Some(total) })
    }
}

/// Appends one frame holding `payload` to `out`.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Starts a frame in `out` whose payload the caller appends next; pass the returned
/// offset to [`end_frame`]. Lets encoders write JSON straight into an output buffer.
pub fn begin_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    start
}

/// Fills in the length of the frame begun at `start`.
pub fn end_frame(out: &mut [u8], start: usize) {
    let len = (out.len() - start - HEADER_LEN) as u32;
    out[start..start + HEADER_LEN].copy_from_slice(&len.to_be_bytes());
}

/// Reads frames from a byte stream through one reusable buffer.
///
/// Survives read timeouts: bytes of a partial frame stay buffered, so a caller with a
/// socket read timeout can check its own flags and call [`FrameReader::next_frame`] again.
///
/// With a stall limit set, a frame whose first bytes arrived must be whole within
/// that time, or reading fails with [`FrameError::Stalled`]: a client trickling a
/// frame byte by byte (slowloris) cannot hold a reader forever. The clock starts the
/// first time the reader has to wait for more of a frame and stops when it is whole.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_frame: u32,
    stall_limit: Option<Duration>,
    partial_since: Option<Instant>,
}

const READ_CHUNK: usize = 64 * 1024;

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R, max_frame: u32) -> Self {
        FrameReader {
            inner,
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            max_frame,
            stall_limit: None,
            partial_since: None,
        }
    }

    /// Sets (or with `None`, removes) the time a started frame has to arrive whole.
    pub fn set_stall_limit(&mut self, limit: Option<Duration>) {
        self.stall_limit = limit;
    }

    /// Restarts the stall clock: for a caller that paused reading for reasons of its
    /// own, which must not count against the peer.
    pub fn reset_stall_clock(&mut self) {
        if self.partial_since.is_some() {
            self.partial_since = Some(Instant::now());
        }
    }

    /// The next frame's payload; `Ok(None)` on a clean end of stream between frames.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        loop {
            match decode(&self.buf[self.start..self.end], self.max_frame)? {
                Decoded::Frame { consumed } => {
                    let payload = self.start + HEADER_LEN..self.start + consumed;
                    self.start += consumed;
                    self.partial_since = None;
                    return Ok(Some(&self.buf[payload]));
                }
                Decoded::Incomplete { want } => self.fill(want.unwrap_or(HEADER_LEN))?,
            }
            if self.end == self.start {
                // `fill` saw end of stream with nothing buffered.
                return Ok(None);
            }
        }
    }

    /// Bytes still to arrive before the next frame is whole: 0 when nothing is
    /// buffered or a whole frame is; while the header itself is incomplete, the rest
    /// of the header. Lets a caller finish a frame it has begun without reading into
    /// the next one (a server draining for shutdown).
    pub fn missing(&self) -> usize {
        let buffered = self.end - self.start;
        if buffered == 0 {
            return 0;
        }
        match decode(&self.buf[self.start..self.end], self.max_frame) {
            Ok(Decoded::Incomplete { want: Some(total) }) => total - buffered,
            Ok(Decoded::Incomplete { want: None }) => HEADER_LEN - buffered,
            Ok(Decoded::Frame { .. }) | Err(_) => 0,
        }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Reads at least once, making room for a frame of `want` bytes.
    fn fill(&mut self, want: usize) -> Result<(), FrameError> {
        if let (Some(limit), true) = (self.stall_limit, self.end > self.start) {
            let since = *self.partial_since.get_or_insert_with(Instant::now);
            if since.elapsed() > limit {
                return Err(FrameError::Stalled {
                    got: self.end - self.start,
                    want,
                    limit,
                });
            }
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.buf.len() - self.start < want.max(READ_CHUNK.min(self.buf.len())) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        let n = loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 {
            if self.end > self.start {
                let got = self.end - self.start;
                let want = decode(&self.buf[self.start..self.end], self.max_frame)
                    .ok()
                    .and_then(|d| match d {
                        Decoded::Incomplete { want } => want,
                        Decoded::Frame { .. } => None,
                    })
                    .unwrap_or(HEADER_LEN);
                self.start = self.end;
                return Err(FrameError::Truncated { got, want });
            }
            return Ok(());
        }
        self.end += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes per call.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn frames_of(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode(p, &mut out);
        }
        out
    }

    fn read_all<R: Read>(r: R, max: u32) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut reader = FrameReader::new(r, max);
        let mut got = Vec::new();
        while let Some(p) = reader.next_frame()? {
            got.push(p.to_vec());
        }
        Ok(got)
    }

    /// Hands out the chunks pushed into it, one per read; `WouldBlock` when none is left.
    struct Chunks(std::collections::VecDeque<Vec<u8>>);

    impl Read for Chunks {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let chunk = self.0.pop_front().ok_or(io::ErrorKind::WouldBlock)?;
            assert!(chunk.len() <= out.len());
            out[..chunk.len()].copy_from_slice(&chunk);
            Ok(chunk.len())
        }
    }

    #[test]
    fn missing_counts_what_the_next_frame_still_needs() {
        let wire = frames_of(&[b"abcdef", b"xy", b"1", b"2"]);
        let mut r = FrameReader::new(Chunks(Default::default()), 1024);
        assert_eq!(r.missing(), 0, "nothing buffered");
        let feed = |r: &mut FrameReader<Chunks>, bytes: &[u8]| {
            r.get_mut().0.push_back(bytes.to_vec());
        };
        // Half a header, then the rest of it and half the payload.
        feed(&mut r, &wire[..2]);
        assert!(r.next_frame().unwrap_err().is_timeout());
        assert_eq!(r.missing(), 2);
        feed(&mut r, &wire[2..7]);
        assert!(r.next_frame().unwrap_err().is_timeout());
        assert_eq!(r.missing(), 3);
        // The rest of the frame and one byte of the next header.
        feed(&mut r, &wire[7..11]);
        assert_eq!(r.next_frame().unwrap(), Some(&b"abcdef"[..]));
        assert_eq!(r.missing(), 3);
        // The rest of the second frame, then two whole frames in one read.
        feed(&mut r, &wire[11..16]);
        assert_eq!(r.next_frame().unwrap(), Some(&b"xy"[..]));
        assert_eq!(r.missing(), 0);
        feed(&mut r, &wire[16..]);
        assert_eq!(r.next_frame().unwrap(), Some(&b"1"[..]));
        assert_eq!(r.missing(), 0, "a whole frame is buffered");
        assert_eq!(r.next_frame().unwrap(), Some(&b"2"[..]));
        assert_eq!(r.missing(), 0);
    }

    #[test]
    fn reads_split_at_every_byte() {
        let payloads: [&[u8]; 3] = [b"{\"id\":1}", b"", b"{\"id\":\"x\",\"cmd\":\"ping\"}"];
        let wire = frames_of(&payloads);
        for step in 1..=wire.len() {
            let got = read_all(Trickle { data: &wire, step }, 1024).unwrap();
            assert_eq!(got, payloads.map(|p| p.to_vec()), "step {step}");
        }
    }

    #[test]
    fn truncated_at_every_byte_is_an_error_not_a_frame() {
        let wire = frames_of(&[b"{\"id\":1,\"cmd\":\"ping\"}"]);
        for cut in 1..wire.len() {
            let err = read_all(&wire[..cut], 1024).unwrap_err();
            match err {
                FrameError::Truncated { got, .. } => assert_eq!(got, cut),
                other => panic!("cut {cut}: {other}"),
            }
        }
        assert!(read_all(&wire[..0], 1024).unwrap().is_empty());
    }

    #[test]
    fn oversize_lengths_are_refused_before_reading_the_payload() {
        let mut wire = (1025u32).to_be_bytes().to_vec();
        wire.extend_from_slice(b"short");
        match read_all(&wire[..], 1024).unwrap_err() {
            FrameError::TooLarge { len, max } => assert_eq!((len, max), (1025, 1024)),
            other => panic!("{other}"),
        }
        let huge = u32::MAX.to_be_bytes();
        assert!(matches!(
            decode(&huge, DEFAULT_MAX_FRAME),
            Err(FrameError::TooLarge { .. })
        ));
        // Exactly at the limit is fine.
        let payload = vec![b' '; 1024];
        assert_eq!(
            read_all(&frames_of(&[&payload])[..], 1024).unwrap().len(),
            1
        );
    }

    #[test]
    fn frames_larger_than_the_read_chunk() {
        let big = vec![b'a'; READ_CHUNK * 3 + 7];
        let wire = frames_of(&[b"x", &big, b"y"]);
        let got = read_all(
            Trickle {
                data: &wire,
                step: 5000,
            },
            u32::MAX,
        )
        .unwrap();
        assert_eq!(got, vec![b"x".to_vec(), big, b"y".to_vec()]);
    }

    /// Hands out its bytes one at a time, sleeping before each, then times out forever.
    struct Slowloris {
        data: Vec<u8>,
        delay: Duration,
    }

    impl Read for Slowloris {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            std::thread::sleep(self.delay);
            if self.data.is_empty() || out.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            out[0] = self.data.remove(0);
            Ok(1)
        }
    }

    #[test]
    fn a_frame_trickled_past_the_stall_limit_is_refused() {
        let wire = frames_of(&[b"{\"id\":1,\"cmd\":\"ping\"}"]);
        let mut r = FrameReader::new(
            Slowloris {
                data: wire.clone(),
                delay: Duration::from_millis(2),
            },
            1024,
        );
        r.set_stall_limit(Some(Duration::from_millis(20)));
        // The bytes keep coming, but too slowly for the frame to be whole in time.
        let err = loop {
            match r.next_frame() {
                Err(e) if e.is_timeout() => continue,
                Err(e) => break e,
                Ok(f) => panic!("got {f:?}"),
            }
        };
        assert!(matches!(err, FrameError::Stalled { .. }), "{err}");
        assert!(err.to_string().contains("--frame-timeout"));

        // Fast enough: every frame arrives, and idling between frames is not timed.
        let mut r = FrameReader::new(
            Slowloris {
                data: wire,
                delay: Duration::from_micros(10),
            },
            1024,
        );
        r.set_stall_limit(Some(Duration::from_secs(5)));
        assert!(r.next_frame().unwrap().is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(r.next_frame().unwrap_err().is_timeout());
    }

    #[test]
    fn begin_end_frame_patches_the_length() {
        let mut out = b"prefix".to_vec();
        let at = begin_frame(&mut out);
        out.extend_from_slice(b"hello");
        end_frame(&mut out, at);
        assert_eq!(&out[6..], b"\0\0\0\x05hello");
    }
}
