//! Requests and responses: the JSON shapes of protocol.md, parsed and encoded.
//!
//! Ids are kept as the raw JSON text the peer sent and echoed back verbatim, so
//! strings stay strings and integers of any size stay integers.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::frame::{begin_frame, end_frame};

/// The default largest `n` a server accepts.
pub const DEFAULT_MAX_N: u64 = 1_000_000_000;
/// Error messages quote at most this many bytes of anything a client sent.
pub const MAX_ECHO: usize = 64;

/// The protocol's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    BadRequest,
    UnknownCmd,
    FrameTooLarge,
    Overloaded,
    WorkerFailed,
    ShuttingDown,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 7] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownCmd,
        ErrorCode::FrameTooLarge,
        ErrorCode::Overloaded,
        ErrorCode::WorkerFailed,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::UnknownCmd => "UNKNOWN_CMD",
            ErrorCode::FrameTooLarge => "FRAME_TOO_LARGE",
            ErrorCode::Overloaded => "OVERLOADED",
            ErrorCode::WorkerFailed => "WORKER_FAILED",
            ErrorCode::ShuttingDown => "SHUTTING_DOWN",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request id as raw JSON text: a string literal or an integer literal, or null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Id<'a>(Option<&'a str>);

impl<'a> Id<'a> {
    pub const NULL: Id<'static> = Id(None);

    /// Accepts a raw JSON value as an id if it is a string or an integer.
    fn from_raw(raw: &'a RawValue) -> Option<Id<'a>> {
        let text = raw.get();
        let usable = text.starts_with('"') || is_integer_literal(text);
        usable.then_some(Id(Some(text)))
    }

    /// The JSON text to echo: the id as received, or `null`.
    pub fn json(&self) -> &'a str {
        self.0.unwrap_or("null")
    }

    pub fn to_owned(&self) -> OwnedId {
        OwnedId(self.0.map(|s| s.as_bytes().into()))
    }
}

/// An [`Id`] that outlives the frame it came from (held by queued tasks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedId(Option<Box<[u8]>>);

impl OwnedId {
    pub fn json(&self) -> &[u8] {
        self.0.as_deref().unwrap_or(b"null")
    }
}

fn is_integer_literal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A command the server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Compute { n: u64 },
    Ping,
    Stats { reset: bool },
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Compute { .. } => "compute",
            Command::Ping => "ping",
            Command::Stats { .. } => "stats",
        }
    }
}

/// A parsed request; borrows the frame it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub id: Id<'a>,
    pub cmd: Command,
}

/// A request the server refuses, with what to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection<'a> {
    pub id: Id<'a>,
    pub code: ErrorCode,
    pub message: String,
}

impl<'a> Rejection<'a> {
    fn bad(id: Id<'a>, message: impl Into<String>) -> Self {
        Rejection {
            id,
            code: ErrorCode::BadRequest,
            message: message.into(),
        }
    }
}

/// Every field as raw JSON; `None` only when the key is absent (a JSON `null` is `Some`).
#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    cmd: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    n: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    reset: Option<&'a RawValue>,
}

/// Keeps a present `null` as `Some(null)` instead of serde's `None`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Parses one frame's payload as a request, or says what to answer instead.
pub fn parse_request(payload: &[u8], max_n: u64) -> Result<Request<'_>, Rejection<'_>> {
    let raw = raw_request(payload)?;
    let id = match raw.id {
        None => return Err(Rejection::bad(Id::NULL, "missing field `id`")),
        Some(v) => Id::from_raw(v).ok_or_else(|| {
            Rejection::bad(
                Id::NULL,
                format!(
                    "`id` must be a string or an integer, got {}",
                    json_kind(v.get())
                ),
            )
        })?,
    };
    let cmd_raw = raw
        .cmd
        .ok_or_else(|| Rejection::bad(id, "missing field `cmd`"))?;
    let cmd: Cow<'_, str> = if cmd_raw.get().starts_with('"') {
        serde_json::from_str(cmd_raw.get())
            .map_err(|e| Rejection::bad(id, format!("`cmd` is not a valid string: {e}")))?
    } else {
        return Err(Rejection::bad(
            id,
            format!("`cmd` must be a string, got {}", json_kind(cmd_raw.get())),
        ));
    };
    let cmd = command(&raw, id, &cmd, max_n)?;
    Ok(Request { id, cmd })
}

/// The payload as a JSON object with its fields still raw, or why it is not one.
fn raw_request(payload: &[u8]) -> Result<RawRequest<'_>, Rejection<'_>> {
    if payload.is_empty() {
        return Err(Rejection::bad(
            Id::NULL,
            "empty frame (length 0): a request is one JSON object",
        ));
    }
    let text = std::str::from_utf8(payload).map_err(|e| {
        Rejection::bad(
            Id::NULL,
            format!(
                "payload is not valid UTF-8 (bad byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    let first = text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .bytes()
        .next();
    if first != Some(b'{') {
        // serde would read a JSON array positionally into the struct: refuse it here.
        return Err(match serde_json::from_str::<&RawValue>(text) {
            Ok(v) => Rejection::bad(
                Id::NULL,
                format!("payload is JSON {}, not an object", json_kind(v.get())),
            ),
            Err(e) => Rejection::bad(Id::NULL, format!("payload is not valid JSON: {e}")),
        });
    }
    serde_json::from_str(text).map_err(|e| {
        Rejection::bad(
            Id::NULL,
            format!("payload is not a valid JSON request: {e}"),
        )
    })
}

/// The command `cmd` names, with its arguments checked.
fn command<'a>(
    raw: &RawRequest<'a>,
    id: Id<'a>,
    cmd: &str,
    max_n: u64,
) -> Result<Command, Rejection<'a>> {
    Ok(match cmd {
        "compute" => {
            let n = raw.n.ok_or_else(|| {
                Rejection::bad(id, "missing field `n` (compute needs an integer n)")
            })?;
            Command::Compute {
                n: parse_n(n.get(), max_n).map_err(|m| Rejection::bad(id, m))?,
            }
        }
        "ping" => Command::Ping,
        "stats" => {
            let reset = match raw.reset.map(|r| r.get()) {
                None | Some("false") | Some("null") => false,
                Some("true") => true,
                Some(other) => {
                    return Err(Rejection::bad(
                        id,
                        format!("`reset` must be a boolean, got {}", json_kind(other)),
                    ))
                }
            };
            Command::Stats { reset }
        }
        other => {
            return Err(Rejection {
                id,
                code: ErrorCode::UnknownCmd,
                message: format!(
                    "unknown cmd \"{}\" (known: compute, ping, stats)",
                    bounded(other)
                ),
            })
        }
    })
}

/// Validates `n`'s raw JSON text: a non-negative integer no larger than `max_n`.
fn parse_n(text: &str, max_n: u64) -> Result<u64, String> {
    let kind = json_kind(text);
    if kind != "a number" {
        return Err(format!("`n` must be a non-negative integer, got {kind}"));
    }
    if text.contains(['.', 'e', 'E']) {
        return Err(format!(
            "`n` must be an integer, got the number {}",
            bounded(text)
        ));
    }
    let (negative, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text),
    };
    if negative && digits.bytes().any(|b| b != b'0') {
        return Err(format!("`n` must be >= 0, got {}", bounded(text)));
    }
    match digits.parse::<u64>() {
        Ok(n) if n <= max_n => Ok(n),
        _ => Err(format!(
            "`n` = {} is out of range: the server accepts 0 <= n <= {max_n} (--max-n)",
            bounded(text)
        )),
    }
}

/// Describes the JSON type of a raw value for error messages.
fn json_kind(text: &str) -> &'static str {
    match text.bytes().next() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'-' | b'0'..=b'9') => "a number",
        _ => "nothing",
    }
}

/// At most [`MAX_ECHO`] bytes of client text, cut at a character boundary.
pub fn bounded(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_ECHO {
        return Cow::Borrowed(text);
    }
    let mut end = MAX_ECHO;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… ({} bytes)", &text[..end], text.len()))
}

// ---- responses, encoded straight into an output buffer as whole frames ----

fn push_id_prefix(out: &mut Vec<u8>, id: &[u8]) {
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(id);
}

/// Appends the frame `{"id":ID,"result":R}`.
pub fn encode_result(out: &mut Vec<u8>, id: &[u8], result: u64) {
    let at = begin_frame(out);
    push_id_prefix(out, id);
    out.extend_from_slice(b",\"result\":");
    out.extend_from_slice(itoa::Buffer::new().format(result).as_bytes());
    out.push(b'}');
    end_frame(out, at);
}

/// Appends the frame `{"id":ID,"ok":true,"pong":true}`.
pub fn encode_pong(out: &mut Vec<u8>, id: &[u8]) {
    let at = begin_frame(out);
    push_id_prefix(out, id);
    out.extend_from_slice(b",\"ok\":true,\"pong\":true}");
    end_frame(out, at);
}

/// Appends the frame `{"id":ID,"error":{"code":CODE,"message":TEXT}}`.
pub fn encode_error(out: &mut Vec<u8>, id: &[u8], code: ErrorCode, message: &str) {
    let at = begin_frame(out);
    push_id_prefix(out, id);
    out.extend_from_slice(b",\"error\":{\"code\":\"");
    out.extend_from_slice(code.as_str().as_bytes());
    out.extend_from_slice(b"\",\"message\":");
    serde_json::to_writer(&mut *out, message).expect("writing to a Vec cannot fail");
    out.extend_from_slice(b"}}");
    end_frame(out, at);
}

/// Appends the frame `{"id":ID,"stats":{...}}`.
pub fn encode_stats<T: serde::Serialize>(out: &mut Vec<u8>, id: &[u8], stats: &T) {
    let at = begin_frame(out);
    push_id_prefix(out, id);
    out.extend_from_slice(b",\"stats\":");
    serde_json::to_writer(&mut *out, stats).expect("stats serialize to JSON");
    out.push(b'}');
    end_frame(out, at);
}

// ---- the client's side ----

/// Appends a request frame with an integer id (the runner's `stats` client, benches).
pub fn encode_request(out: &mut Vec<u8>, id: u64, cmd: &Command) {
    encode_request_with_id(out, itoa::Buffer::new().format(id).as_bytes(), cmd);
}

/// Appends a request frame whose id is `id_json`, the id's JSON text as it goes on the
/// wire: a string literal with its quotes, or an integer literal. The caller writes
/// it (the load client, from a stack buffer), so sending costs no allocation.
pub fn encode_request_with_id(out: &mut Vec<u8>, id_json: &[u8], cmd: &Command) {
    let at = begin_frame(out);
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(id_json);
    out.extend_from_slice(b",\"cmd\":\"");
    out.extend_from_slice(cmd.name().as_bytes());
    out.push(b'"');
    match cmd {
        Command::Compute { n } => {
            out.extend_from_slice(b",\"n\":");
            out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes());
        }
        Command::Stats { reset: true } => out.extend_from_slice(b",\"reset\":true"),
        Command::Ping | Command::Stats { reset: false } => {}
    }
    out.push(b'}');
    end_frame(out, at);
}

/// What a response said.
#[derive(Debug, Clone, PartialEq)]
pub enum Body<'a> {
    /// `compute`'s answer.
    Result(u64),
    /// An error, with the code as sent (it may be one this build does not know).
    Error {
        code: Cow<'a, str>,
        message: Cow<'a, str>,
    },
    /// An error given as a plain string, with no code: the original ThreadCenter
    /// server's shape (`"error": "unknown command"`).
    ErrorText(Cow<'a, str>),
    /// `stats`' object, as raw JSON text.
    Stats(&'a str),
    /// Any other object without `error` or `result`: `ping`'s answer.
    Ok,
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response<'a> {
    /// The id as raw JSON text (`null` if absent).
    pub id: &'a str,
    pub body: Body<'a>,
}

impl<'a> Response<'a> {
    /// The id if it is a non-negative integer literal (not a string).
    pub fn int_id(&self) -> Option<u64> {
        self.id.parse().ok()
    }

    /// The id as text, whichever JSON type the server echoed it in: a string's
    /// contents (unescaped; borrowed unless it holds escapes), or an integer's digits.
    /// So the request id `7` matches both `7` and `"7"`, as the original server
    /// echoes every id as a string. `None` for null or any other type.
    pub fn id_text(&self) -> Option<Cow<'a, str>> {
        if self.id.starts_with('"') {
            json_string(self.id).ok()
        } else if is_integer_literal(self.id) {
            Some(Cow::Borrowed(self.id))
        } else {
            None
        }
    }

    /// True for an error that carries no id: a refusal of the connection itself
    /// (OVERLOADED past the connection limit, a frame too large), not an answer.
    pub fn is_connection_error(&self) -> bool {
        self.id == "null" && matches!(self.body, Body::Error { .. } | Body::ErrorText(_))
    }
}

/// The contents of a JSON string literal (quotes included in `raw`), borrowed when it
/// holds no escapes.
fn json_string(raw: &str) -> Result<Cow<'_, str>, serde_json::Error> {
    match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) if !inner.contains(['\\', '"']) => Ok(Cow::Borrowed(inner)),
        _ => serde_json::from_str::<String>(raw).map(Cow::Owned),
    }
}

#[derive(Deserialize)]
struct RawResponse<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stats: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawError<'a> {
    #[serde(borrow)]
    code: Cow<'a, str>,
    #[serde(borrow, default)]
    message: Cow<'a, str>,
}

/// A response this client cannot use; the text says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed response: {0}")]
pub struct Malformed(pub String);

/// Parses `error`: protocol.md's `{code, message}` object, or a plain string.
fn parse_error(raw: &RawValue) -> Result<Option<Body<'_>>, Malformed> {
    let text = raw.get();
    match json_kind(text) {
        "null" => Ok(None),
        "a string" => json_string(text)
            .map(|t| Some(Body::ErrorText(t)))
            .map_err(|e| Malformed(format!("`error` string does not parse: {e}"))),
        "an object" => {
            let err: RawError<'_> = serde_json::from_str(text)
                .map_err(|e| Malformed(format!("`error` is not {{\"code\", \"message\"}}: {e}")))?;
            Ok(Some(Body::Error {
                code: err.code,
                message: err.message,
            }))
        }
        other => Err(Malformed(format!(
            "`error` must be an object or a string, got {other}"
        ))),
    }
}

/// Parses a response payload.
pub fn parse_response(payload: &[u8]) -> Result<Response<'_>, Malformed> {
    let text =
        std::str::from_utf8(payload).map_err(|_| Malformed("payload is not valid UTF-8".into()))?;
    if !text.trim_start().starts_with('{') {
        return Err(Malformed(format!(
            "expected a JSON object, got {}",
            bounded(text)
        )));
    }
    let raw: RawResponse<'_> =
        serde_json::from_str(text).map_err(|e| Malformed(format!("invalid JSON: {e}")))?;
    let id = raw.id.map_or("null", |v| v.get());
    let error = raw.error.map(parse_error).transpose()?.flatten();
    let body = if let Some(error) = error {
        error
    } else if let Some(result) = raw.result {
        let text = result.get();
        Body::Result(text.parse().map_err(|_| {
            Malformed(format!(
                "`result` is not a non-negative integer: {}",
                bounded(text)
            ))
        })?)
    } else if let Some(stats) = raw.stats {
        Body::Stats(stats.get())
    } else {
        Body::Ok
    };
    Ok(Response { id, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::HEADER_LEN;

    fn parse(s: &str) -> Result<Request<'_>, Rejection<'_>> {
        parse_request(s.as_bytes(), DEFAULT_MAX_N)
    }

    fn rejected(s: &str) -> (String, ErrorCode, String) {
        let r = parse(s).expect_err(s);
        (r.id.json().to_string(), r.code, r.message)
    }

    #[test]
    fn valid_requests() {
        let r = parse(r#"{"id":"5d0c-uuid","cmd":"compute","n":500000}"#).unwrap();
        assert_eq!(r.id.json(), r#""5d0c-uuid""#);
        assert_eq!(r.cmd, Command::Compute { n: 500000 });
        let r = parse(r#" {"cmd":"ping","id":7,"extra":[1,2,{"x":null}]} "#).unwrap();
        assert_eq!((r.id.json(), r.cmd), ("7", Command::Ping));
        let r = parse(r#"{"id":-3,"cmd":"stats","reset":true}"#).unwrap();
        assert_eq!((r.id.json(), r.cmd), ("-3", Command::Stats { reset: true }));
        // Ids of any size stay integers, escapes in strings stay as sent.
        let r = parse(r#"{"id":123456789012345678901234567890,"cmd":"ping"}"#).unwrap();
        assert_eq!(r.id.json(), "123456789012345678901234567890");
        let r = parse(r#"{"id":"a\"b\u00e9","cmd":"ping"}"#).unwrap();
        assert_eq!(r.id.json(), r#""a\"b\u00e9""#);
        assert_eq!(
            parse(r#"{"id":1,"cmd":"compute","n":0}"#).unwrap().cmd,
            Command::Compute { n: 0 }
        );
        assert_eq!(
            parse(r#"{"id":1,"cmd":"compute","n":-0}"#).unwrap().cmd,
            Command::Compute { n: 0 }
        );
        assert_eq!(
            parse(r#"{"id":1,"cmd":"compute","n":1000000000}"#)
                .unwrap()
                .cmd,
            Command::Compute { n: DEFAULT_MAX_N }
        );
    }

    #[test]
    fn framing_level_rejections_have_null_ids() {
        for (payload, needle) in [
            (&b""[..], "empty frame"),
            (&b"{\"id\":1,\"cmd\":\"ping\xff\"}"[..], "not valid UTF-8"),
            (&b"{\"id\":1,"[..], "not a valid JSON request"),
            (&b"[1,\"ping\"]"[..], "JSON an array, not an object"),
            (&b"42"[..], "JSON a number, not an object"),
            (&b"\"str\""[..], "JSON a string, not an object"),
            (&b"nonsense"[..], "not valid JSON"),
            (
                &b"\xef\xbb\xbf{\"id\":1,\"cmd\":\"ping\"}"[..],
                "not valid JSON",
            ),
            (&b"{\"cmd\":\"ping\"}"[..], "missing field `id`"),
            (
                &b"{\"id\":1.5,\"cmd\":\"ping\"}"[..],
                "`id` must be a string or an integer, got a number",
            ),
            (&b"{\"id\":null,\"cmd\":\"ping\"}"[..], "got null"),
            (&b"{\"id\":{},\"cmd\":\"ping\"}"[..], "got an object"),
        ] {
            let r = parse_request(payload, DEFAULT_MAX_N).expect_err(needle);
            assert_eq!(r.id, Id::NULL, "{needle}");
            assert_eq!(r.code, ErrorCode::BadRequest, "{needle}");
            assert!(
                r.message.contains(needle),
                "{:?} lacks {needle:?}",
                r.message
            );
        }
    }

    #[test]
    fn field_rejections_keep_the_id() {
        let cases = [
            (r#"{"id":"a","n":1}"#, "missing field `cmd`"),
            (
                r#"{"id":"a","cmd":5}"#,
                "`cmd` must be a string, got a number",
            ),
            (r#"{"id":"a","cmd":"compute"}"#, "missing field `n`"),
            (r#"{"id":"a","cmd":"compute","n":-1}"#, "must be >= 0"),
            (
                r#"{"id":"a","cmd":"compute","n":1.5}"#,
                "must be an integer, got the number 1.5",
            ),
            (
                r#"{"id":"a","cmd":"compute","n":1e3}"#,
                "must be an integer",
            ),
            (r#"{"id":"a","cmd":"compute","n":"10"}"#, "got a string"),
            (r#"{"id":"a","cmd":"compute","n":null}"#, "got null"),
            (r#"{"id":"a","cmd":"compute","n":[1]}"#, "got an array"),
            (
                r#"{"id":"a","cmd":"compute","n":1000000001}"#,
                "out of range",
            ),
            (
                r#"{"id":"a","cmd":"compute","n":18446744073709551616}"#,
                "out of range",
            ),
            (
                r#"{"id":"a","cmd":"compute","n":99999999999999999999999999999999999}"#,
                "out of range",
            ),
            (
                r#"{"id":"a","cmd":"stats","reset":"yes"}"#,
                "`reset` must be a boolean",
            ),
        ];
        for (req, needle) in cases {
            let (id, code, message) = rejected(req);
            assert_eq!(id, "\"a\"", "{req}");
            assert_eq!(code, ErrorCode::BadRequest, "{req}");
            assert!(
                message.contains(needle),
                "{req}: {message:?} lacks {needle:?}"
            );
        }
    }

    #[test]
    fn unknown_cmd_is_its_own_code_and_echo_is_bounded() {
        let (id, code, message) = rejected(r#"{"id":9,"cmd":"fly"}"#);
        assert_eq!((id.as_str(), code), ("9", ErrorCode::UnknownCmd));
        assert!(message.contains("\"fly\""));
        let long = "x".repeat(10_000);
        let req = format!(r#"{{"id":9,"cmd":"{long}"}}"#);
        let (_, code, message) = rejected(&req);
        assert_eq!(code, ErrorCode::UnknownCmd);
        assert!(message.len() < 200, "{} bytes", message.len());
    }

    fn payload(frame: &[u8]) -> &[u8] {
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(frame.len(), HEADER_LEN + len);
        &frame[HEADER_LEN..]
    }

    #[test]
    fn responses_round_trip_through_the_client_parser() {
        let mut out = Vec::new();
        encode_result(&mut out, br#""u-1""#, 869502129);
        let r = parse_response(payload(&out)).unwrap();
        assert_eq!((r.id, r.body), (r#""u-1""#, Body::Result(869502129)));

        out.clear();
        encode_pong(&mut out, b"17");
        let r = parse_response(payload(&out)).unwrap();
        assert_eq!((r.int_id(), r.body), (Some(17), Body::Ok));

        out.clear();
        encode_error(&mut out, b"null", ErrorCode::BadRequest, "bad \"quote\"\n");
        let r = parse_response(payload(&out)).unwrap();
        assert_eq!(r.id, "null");
        assert_eq!(
            r.body,
            Body::Error {
                code: "BAD_REQUEST".into(),
                message: "bad \"quote\"\n".into()
            }
        );
        let v: serde_json::Value = serde_json::from_slice(payload(&out)).unwrap();
        assert_eq!(v["error"]["code"], "BAD_REQUEST");

        out.clear();
        encode_stats(&mut out, b"1", &serde_json::json!({"uptime_s": 1.5}));
        let r = parse_response(payload(&out)).unwrap();
        assert_eq!(r.body, Body::Stats(r#"{"uptime_s":1.5}"#));
    }

    #[test]
    fn requests_from_the_client_encoder_parse_back() {
        for cmd in [
            Command::Compute { n: 500000 },
            Command::Ping,
            Command::Stats { reset: true },
            Command::Stats { reset: false },
        ] {
            let mut out = Vec::new();
            encode_request(&mut out, 42, &cmd);
            let r = parse_request(payload(&out), DEFAULT_MAX_N).unwrap();
            assert_eq!((r.id.json(), r.cmd), ("42", cmd));
        }
    }

    #[test]
    fn the_original_servers_shapes_parse() {
        // Ids echoed as strings, errors as plain strings, ping with ok and pong.
        let r = parse_response(br#"{"id": "7", "result": 8360}"#).unwrap();
        assert_eq!((r.id_text().as_deref(), r.int_id()), (Some("7"), None));
        assert_eq!(r.body, Body::Result(8360));
        let r = parse_response(br#"{"id": "u-1", "error": "unknown command"}"#).unwrap();
        assert_eq!(r.body, Body::ErrorText("unknown command".into()));
        assert!(!r.is_connection_error());
        let r = parse_response(br#"{"id": "u-1", "error": "error: bad \"n\""}"#).unwrap();
        assert_eq!(r.body, Body::ErrorText(r#"error: bad "n""#.into()));
        let r = parse_response(br#"{"id": "u-1", "ok": true, "pong": true}"#).unwrap();
        assert_eq!((r.id_text().as_deref(), r.body), (Some("u-1"), Body::Ok));
        // `error: null` beside a result is no error.
        let r = parse_response(br#"{"id": 1, "error": null, "result": 48}"#).unwrap();
        assert_eq!(r.body, Body::Result(48));
        let r = parse_response(br#"{"id": null, "error": "go away"}"#).unwrap();
        assert!(r.is_connection_error());
    }

    #[test]
    fn id_text_is_the_same_whatever_type_it_is_echoed_in() {
        let text = |payload: &str| {
            parse_response(payload.as_bytes())
                .unwrap()
                .id_text()
                .map(Cow::into_owned)
        };
        assert_eq!(text(r#"{"id":42}"#).as_deref(), Some("42"));
        assert_eq!(text(r#"{"id":"42"}"#).as_deref(), Some("42"));
        assert_eq!(text(r#"{"id":"\u0034\u0032"}"#).as_deref(), Some("42"));
        assert_eq!(text(r#"{"id":"a\"b"}"#).as_deref(), Some("a\"b"));
        for none in [r#"{"id":null}"#, r#"{}"#, r#"{"id":1.5}"#, r#"{"id":[1]}"#] {
            assert_eq!(text(none), None, "{none}");
        }
        // Borrowed when there is nothing to unescape.
        let r = parse_response(br#"{"id":"abc"}"#).unwrap();
        assert!(matches!(r.id_text(), Some(Cow::Borrowed("abc"))));
    }

    #[test]
    fn requests_with_string_ids_parse_back() {
        let mut out = Vec::new();
        encode_request_with_id(&mut out, br#""0b1e-x""#, &Command::Compute { n: 3 });
        let r = parse_request(payload(&out), DEFAULT_MAX_N).unwrap();
        assert_eq!(
            (r.id.json(), r.cmd),
            (r#""0b1e-x""#, Command::Compute { n: 3 })
        );
    }

    #[test]
    fn malformed_responses() {
        for bad in [
            &b"[]"[..],
            b"{\"id\":1,\"result\":-5}",
            b"{\"id\":1,\"result\":\"7\"}",
            b"{\"id\":1,\"error\":7}",
            b"{\"id\":1,\"error\":[\"x\"]}",
            b"{\"id\":1,\"error\":{\"message\":\"no code\"}}",
            b"{",
            b"\xff",
        ] {
            assert!(
                parse_response(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn error_codes_round_trip() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
        }
        assert_eq!(ErrorCode::parse("NOPE"), None);
    }
}
