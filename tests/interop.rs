//! The client against answers shaped as the original ThreadCenter server shapes them:
//! ids echoed as strings, errors as plain strings.

mod common;

use std::sync::atomic::Ordering;

use common::{client_json, explain, Reply, TestServer};

#[test]
fn string_ids_match_and_plain_string_errors_are_server_errors_with_their_text() {
    // With one connection and --ids integer, request k carries the id k. Every answer
    // echoes it as a string, as the original does; every third is a plain-string error.
    let server = TestServer::start(|k, _| {
        let body = if k % 3 == 0 {
            r#""error":"error: boom""#.to_string()
        } else {
            format!(r#""result":{}"#, threadcenter::protocol::compute(10))
        };
        Reply::Raw(format!(r#"{{"id":"{k}",{body}}}"#).into_bytes())
    });
    let dir = tempfile::tempdir().unwrap();
    let (out, doc) = client_json(
        server.port(),
        &["-c", "1", "-n", "9", "--size", "10", "--ids", "integer"],
        dir.path(),
        "run",
    );
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    let f = &doc.failures;
    assert_eq!((doc.requests.ok, f.malformed), (6, 0), "{f:?}");
    assert_eq!(f.server_error.get("(no code)"), Some(&3), "{f:?}");
    assert_eq!(
        doc.first_errors
            .get("server error (no code)")
            .map(String::as_str),
        Some("error: boom")
    );
    // An error that carries our id leaves the connection as it was: preflight + one.
    assert_eq!(server.stats.connections.load(Ordering::SeqCst), 2);
}

#[test]
fn the_default_ids_are_uuids_that_an_answer_must_echo_exactly() {
    // A server that answers with a fixed id: never the UUID the client sent.
    let server = TestServer::start(|_, _| Reply::Raw(br#"{"id":"1","result":8360}"#.to_vec()));
    let dir = tempfile::tempdir().unwrap();
    let (out, doc) = client_json(
        server.port(),
        &["-c", "1", "-n", "1", "--size", "10"],
        dir.path(),
        "run",
    );
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    assert_eq!(doc.failures.malformed, 1);
    let why = &doc.first_errors["malformed"];
    // The message names the id sent: a UUID-shaped string.
    let sent = why.rsplit("request id ").next().unwrap().trim_matches('"');
    let groups: Vec<usize> = sent.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "{why}");
}
