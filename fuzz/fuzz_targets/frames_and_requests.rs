//! Fuzz target: the frame decoder and the request parser, as the server runs them.
//!
//! The input's first three bytes pick `--max-frame` and how the stream is split into
//! reads; the rest is the byte stream a client sends. Every frame read is parsed as a
//! request; a rejection must carry a documented code and make a well-formed error
//! frame. The whole stream is also parsed as one payload, so JSON fuzzing does not
//! depend on the fuzzer discovering framing first.
#![no_main]

use std::io::{self, Read};

use libfuzzer_sys::fuzz_target;
use threadcenter::protocol::frame::{decode, Decoded, FrameError, FrameReader, HEADER_LEN};
use threadcenter::protocol::message::encode_error;
use threadcenter::protocol::{parse_request, parse_response, Body, Command, ErrorCode};

struct Chunked<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.step.min(out.len()).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

const MAX_N: u64 = 1_000_000_000;

fn check_request(payload: &[u8]) {
    match parse_request(payload, MAX_N) {
        Ok(req) => {
            if let Command::Compute { n } = req.cmd {
                assert!(n <= MAX_N);
            }
        }
        Err(rej) => {
            assert!(matches!(
                rej.code,
                ErrorCode::BadRequest | ErrorCode::UnknownCmd
            ));
            assert!(rej.message.len() <= 400, "{} bytes", rej.message.len());
            let mut out = Vec::new();
            encode_error(&mut out, rej.id.json().as_bytes(), rej.code, &rej.message);
            let Ok(Decoded::Frame { consumed }) = decode(&out, u32::MAX) else {
                panic!("error frame is not whole");
            };
            assert_eq!(consumed, out.len());
            let resp = parse_response(&out[HEADER_LEN..]).expect("error frame parses");
            assert_eq!(resp.id, rej.id.json());
            assert!(matches!(resp.body, Body::Error { .. }));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [a, b, c, wire @ ..] = data else {
        return;
    };
    let max_frame = 1 + u32::from(u16::from_le_bytes([*a, *b]));
    let step = 1 + usize::from(*c);
    let mut reader = FrameReader::new(Chunked { data: wire, step }, max_frame);
    let mut consumed = 0;
    loop {
        match reader.next_frame() {
            Ok(Some(payload)) => {
                assert!(payload.len() <= max_frame as usize);
                consumed += HEADER_LEN + payload.len();
                check_request(payload);
            }
            Ok(None) => {
                assert_eq!(consumed, wire.len());
                break;
            }
            Err(FrameError::TooLarge { len, max }) => {
                assert!(len > max);
                break;
            }
            Err(FrameError::Truncated { got, .. }) => {
                assert_eq!(consumed + got, wire.len());
                break;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    check_request(wire);
});
