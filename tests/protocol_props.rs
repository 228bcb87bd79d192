//! Property tests of the wire: framing and request parsing against arbitrary input.
//!
//! - decode(encode(x)) == x, for frames, requests and responses;
//! - any byte stream yields frames or an error, never a panic, however it is split;
//! - any frame yields a request or a documented error (BAD_REQUEST or UNKNOWN_CMD),
//!   whose message quotes at most `MAX_ECHO` bytes of what the client sent.
//!
//! The cargo-fuzz target in fuzz/ drives the same code with coverage guidance
//! (docs/fuzzing.md).

use std::io::{self, Read};

use proptest::prelude::*;
use threadcenter::protocol::frame::{decode, encode, Decoded, FrameError, FrameReader, HEADER_LEN};
use threadcenter::protocol::message::{
    encode_error, encode_pong, encode_request, encode_result, MAX_ECHO,
};
use threadcenter::protocol::{parse_request, parse_response, Body, Command, ErrorCode};

/// Hands out the data in reads of the given sizes, cycling through them.
struct Chunked<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    at: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let step = self.sizes[self.at % self.sizes.len()].max(1);
        self.at += 1;
        let n = step.min(out.len()).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..5000, 1..8)
}

/// Every payload of a response frame, or panics if the bytes are not whole frames.
fn payloads(mut wire: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !wire.is_empty() {
        let Ok(Decoded::Frame { consumed }) = decode(wire, u32::MAX) else {
            panic!("not a whole frame");
        };
        out.push(&wire[HEADER_LEN..consumed]);
        wire = &wire[consumed..];
    }
    out
}

/// A JSON id as the protocol allows it: a string (any text) or an integer (any size).
fn json_id() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[1-9][0-9]{0,40}",
    ]
}

/// JSON values of every type, small and large, for request fields.
fn json_value() -> impl Strategy<Value = String> {
    prop_oneof![
        json_id(),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        any::<f64>().prop_map(|f| serde_json::to_string(&f).unwrap()),
        any::<u64>().prop_map(|n| n.to_string()),
        "-[0-9]{1,25}",
        Just("[1,2,{\"x\":[]}]".to_string()),
        Just("{}".to_string()),
        prop_oneof![
            Just("compute"),
            Just("ping"),
            Just("stats"),
            Just("comp\\u0075te")
        ]
        .prop_map(|c| format!("\"{c}\"")),
    ]
}

/// Objects made of the request's keys (and others, duplicated or not) with any values.
fn json_request() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("id".to_string()),
        Just("cmd".to_string()),
        Just("n".to_string()),
        Just("reset".to_string()),
        "[a-z]{1,8}",
    ];
    prop::collection::vec((key, json_value()), 0..6).prop_map(|fields| {
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap()))
            .collect();
        format!("{{{}}}", body.join(","))
    })
}

/// Payloads: structured requests, their mutations, and plain noise.
fn request_payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json_request().prop_map(String::into_bytes),
        (json_request(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(s, at, b)| {
            let mut v = s.into_bytes();
            let i = at.index(v.len());
            v[i] = b;
            v
        }),
        (json_request(), any::<prop::sample::Index>()).prop_map(|(s, at)| {
            let mut v = s.into_bytes();
            v.truncate(at.index(v.len() + 1));
            v
        }),
        prop::collection::vec(any::<u8>(), 0..200),
    ]
}

/// The answer the server gives a frame, checked against protocol.md.
fn check_answer(payload: &[u8], max_n: u64) -> Result<(), TestCaseError> {
    match parse_request(payload, max_n) {
        Ok(req) => {
            // The id is echoed as sent: its text is in the payload.
            let id = req.id.json();
            prop_assert!(
                String::from_utf8_lossy(payload).contains(id),
                "id {id} not in the payload"
            );
            if let Command::Compute { n } = req.cmd {
                prop_assert!(n <= max_n);
            }
        }
        Err(rej) => {
            prop_assert!(
                matches!(rej.code, ErrorCode::BadRequest | ErrorCode::UnknownCmd),
                "undocumented code {} for a frame",
                rej.code
            );
            let id = rej.id.json();
            prop_assert!(
                id == "null" || String::from_utf8_lossy(payload).contains(id),
                "id {id}"
            );
            // The error frame is well formed and says what parse_request said.
            let mut out = Vec::new();
            encode_error(&mut out, id.as_bytes(), rej.code, &rej.message);
            let frames = payloads(&out);
            prop_assert_eq!(frames.len(), 1);
            let resp = parse_response(frames[0]).unwrap();
            prop_assert_eq!(resp.id, id);
            prop_assert_eq!(
                resp.body,
                Body::Error {
                    code: rej.code.as_str().into(),
                    message: rej.message.as_str().into()
                }
            );
            prop_assert!(rej.message.len() <= 400, "{} bytes", rej.message.len());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn frames_round_trip_however_the_stream_is_split(
        frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3000), 0..20),
        sizes in chunk_sizes(),
    ) {
        let mut wire = Vec::new();
        for f in &frames {
            encode(f, &mut wire);
        }
        let mut reader = FrameReader::new(Chunked { data: &wire, sizes, at: 0 }, 4096);
        let mut got = Vec::new();
        while let Some(p) = reader.next_frame().unwrap() {
            got.push(p.to_vec());
        }
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn any_byte_stream_yields_frames_or_an_error(
        wire in prop::collection::vec(any::<u8>(), 0..4000),
        max_frame in 1u32..2048,
        sizes in chunk_sizes(),
    ) {
        let mut reader = FrameReader::new(Chunked { data: &wire, sizes, at: 0 }, max_frame);
        let mut consumed = 0;
        loop {
            match reader.next_frame() {
                Ok(Some(p)) => {
                    prop_assert!(p.len() <= max_frame as usize);
                    consumed += HEADER_LEN + p.len();
                }
                Ok(None) => {
                    prop_assert_eq!(consumed, wire.len());
                    break;
                }
                Err(FrameError::TooLarge { len, max }) => {
                    prop_assert!(len > max);
                    prop_assert_eq!(max, max_frame);
                    break;
                }
                Err(FrameError::Truncated { got, want }) => {
                    prop_assert_eq!(consumed + got, wire.len());
                    prop_assert!(got < want);
                    break;
                }
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }
        prop_assert!(consumed <= wire.len());
    }

    #[test]
    fn any_frame_yields_a_request_or_a_documented_error(
        payload in request_payload(),
        max_n in prop_oneof![Just(1_000_000_000u64), any::<u64>(), 0u64..1000],
    ) {
        check_answer(&payload, max_n)?;
    }

    #[test]
    fn errors_quote_a_bounded_prefix_of_what_the_client_sent(
        long in "[a-zA-Z0-9]{200,400}",
        place in 0usize..6,
    ) {
        let payload = match place {
            0 => format!(r#"{{"id":1,"cmd":"{long}"}}"#),
            1 => format!(r#"{{"id":1,"cmd":"compute","n":"{long}"}}"#),
            2 => format!(r#"{{"id":1,"cmd":"compute","n":1{}}}"#, "0".repeat(long.len())),
            3 => format!(r#"{{"id":{{"{long}":1}},"cmd":"ping"}}"#),
            4 => format!(r#"{{"id":1,"cmd":"stats","reset":"{long}"}}"#),
            _ => format!(r#"{{"id":1,"{long}":"#),
        };
        let rej = parse_request(payload.as_bytes(), 1_000_000_000).unwrap_err();
        let echoed = if place == 2 { "0".repeat(MAX_ECHO + 1) } else { long[..MAX_ECHO + 1].to_string() };
        prop_assert!(!rej.message.contains(&echoed), "{}", rej.message);
        check_answer(payload.as_bytes(), 1_000_000_000)?;
    }

    #[test]
    fn requests_round_trip(
        id in any::<u64>(),
        cmd in prop_oneof![
            (0u64..=1_000_000_000).prop_map(|n| Command::Compute { n }),
            Just(Command::Ping),
            any::<bool>().prop_map(|reset| Command::Stats { reset }),
        ],
    ) {
        let mut out = Vec::new();
        encode_request(&mut out, id, &cmd);
        let frames = payloads(&out);
        let req = parse_request(frames[0], 1_000_000_000).unwrap();
        prop_assert_eq!(req.id.json(), id.to_string());
        prop_assert_eq!(req.cmd, cmd);
    }

    #[test]
    fn responses_round_trip(
        id in json_id(),
        result in any::<u64>(),
        message in any::<String>(),
        code in prop::sample::select(ErrorCode::ALL.to_vec()),
    ) {
        let mut out = Vec::new();
        encode_result(&mut out, id.as_bytes(), result);
        encode_pong(&mut out, id.as_bytes());
        encode_error(&mut out, id.as_bytes(), code, &message);
        let frames = payloads(&out);
        prop_assert_eq!(frames.len(), 3);
        let r = parse_response(frames[0]).unwrap();
        prop_assert_eq!((r.id, r.body), (id.as_str(), Body::Result(result)));
        let r = parse_response(frames[1]).unwrap();
        prop_assert_eq!((r.id, r.body), (id.as_str(), Body::Ok));
        let r = parse_response(frames[2]).unwrap();
        prop_assert_eq!(r.id, id.as_str());
        prop_assert_eq!(r.body, Body::Error { code: code.as_str().into(), message: message.as_str().into() });
    }
}
