//! Request ids: unique across every connection of a run, written without allocating,
//! and matched by their text whatever JSON type the server echoes them in.
//!
//! Why unique across connections: the original ThreadCenter server keys its pending
//! requests by `str(id)` in one map shared by every connection, so two connections
//! sending the same id lose an answer (protocol.md, "Requests"). The seed's client
//! sends a fresh UUID per request; so does this one by default, in a form that costs
//! no allocation: an RFC 9562 version-8 UUID (the "custom" version) whose first 60
//! free bits are a random number drawn once per run and whose last 62 hold the
//! connection's index and its request counter:
//!
//! ```text
//!   rrrrrrrr-rrrr-8rrr-vccc-cccccccccccc
//!   r: run nonce (60 bits)   v: variant 10xx (2 more bits of c)   c: index << 40 | counter
//! ```
//!
//! `--ids integer` sends `index << 40 | counter` as a JSON integer instead: unique
//! across the run's connections (not across runs), for servers that want integer ids.

#[cfg(test)]
use std::borrow::Cow;

pub(crate) use crate::domain::IdStyle;

/// Bits of the per-connection counter; the connection index sits above them.
const COUNTER_BITS: u32 = 40;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;
/// Bits of index and counter together (what a UUID keeps after its version, variant
/// and nonce).
const VALUE_BITS: u32 = 62;
/// Most connections a run can have: indexes must fit above the counter (far beyond any
/// open-file limit, so only the tests check it).
#[cfg(test)]
const MAX_CONNECTIONS: u64 = 1 << (VALUE_BITS - COUNTER_BITS);

/// A UUID's text: 36 characters.
const UUID_LEN: usize = 36;
/// The run's fixed part of every UUID: `rrrrrrrr-rrrr-8rrr-`.
const PREFIX_LEN: usize = 19;
/// The longest id on the wire: a UUID in quotes.
pub(crate) const MAX_ID_JSON: usize = UUID_LEN + 2;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A run's id space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ids {
    style: IdStyle,
    /// `rrrrrrrr-rrrr-8rrr-` for this run.
    prefix: [u8; PREFIX_LEN],
}

/// One id's wire text, in a buffer of its own (no allocation).
pub(crate) struct IdJson {
    buf: [u8; MAX_ID_JSON],
    len: usize,
}

impl IdJson {
    /// The JSON text: `"…"` or digits.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Ids {
    /// A fresh id space: a new random nonce, so two runs (even two clients at once
    /// against one server) do not share ids.
    pub(crate) fn new(style: IdStyle) -> Ids {
        Ids::with_nonce(style, rand::random())
    }

    /// The id space of `nonce` (its low 60 bits).
    pub(crate) fn with_nonce(style: IdStyle, nonce: u64) -> Ids {
        let mut prefix = *b"00000000-0000-8000-";
        let mut nibbles = (0..15)
            .rev()
            .map(|i| HEX[((nonce >> (4 * i)) & 0xf) as usize]);
        for at in (0..8).chain(9..13).chain(15..18) {
            prefix[at] = nibbles.next().expect("15 nibbles");
        }
        Ids { style, prefix }
    }

    /// The wire text of request `counter` of connection `index`.
    pub(crate) fn json(&self, index: usize, counter: u64) -> IdJson {
        let value = ((index as u64) << COUNTER_BITS) | (counter & COUNTER_MASK);
        let mut buf = [0u8; MAX_ID_JSON];
        let len = match self.style {
            IdStyle::Integer => {
                let mut itoa = itoa::Buffer::new();
                let digits = itoa.format(value).as_bytes();
                buf[..digits.len()].copy_from_slice(digits);
                digits.len()
            }
            IdStyle::Uuid => {
                buf[0] = b'"';
                buf[1..=PREFIX_LEN].copy_from_slice(&self.prefix);
                let tail = &mut buf[1 + PREFIX_LEN..1 + UUID_LEN];
                // v: 0b10 then the value's top two bits; then 3 + 12 hex digits.
                tail[0] = HEX[(0b1000 | ((value >> 60) & 0b11)) as usize];
                for i in 0..3 {
                    tail[1 + i] = HEX[((value >> (56 - 4 * i)) & 0xf) as usize];
                }
                tail[4] = b'-';
                for i in 0..12 {
                    tail[5 + i] = HEX[((value >> (44 - 4 * i)) & 0xf) as usize];
                }
                buf[1 + UUID_LEN] = b'"';
                MAX_ID_JSON
            }
        };
        IdJson { buf, len }
    }

    /// The (connection index, counter) an id's text stands for, if it is exactly an id
    /// this run wrote: `text` is the id as [`crate::protocol::Response::id_text`] gives
    /// it, so an integer id echoed as a string matches too.
    pub(crate) fn parse(&self, text: &str) -> Option<(usize, u64)> {
        let value = match self.style {
            IdStyle::Integer => parse_decimal(text)?,
            IdStyle::Uuid => {
                let b = text.as_bytes();
                if b.len() != UUID_LEN || b[..PREFIX_LEN] != self.prefix || b[23] != b'-' {
                    return None;
                }
                let variant = hex_value(b[19])?;
                if variant & 0b1100 != 0b1000 {
                    return None;
                }
                let mut value = u64::from(variant & 0b11);
                for &c in b[20..23].iter().chain(&b[24..]) {
                    value = (value << 4) | u64::from(hex_value(c)?);
                }
                value
            }
        };
        if value >> VALUE_BITS != 0 {
            return None;
        }
        Some(((value >> COUNTER_BITS) as usize, value & COUNTER_MASK))
    }

    /// True if `text` is the id of request `counter` of connection `index`.
    #[cfg(test)]
    fn matches(&self, text: Option<&Cow<'_, str>>, index: usize, counter: u64) -> bool {
        text.and_then(|t| self.parse(t)) == Some((index, counter & COUNTER_MASK))
    }
}

/// A lowercase hex digit's value (the ids are written in lowercase; anything else was
/// not written by us).
fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Digits only, no sign and no leading zero: the canonical text `itoa` writes.
fn parse_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(id: &IdJson) -> String {
        String::from_utf8(id.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn uuids_are_rfc_9562_version_8_and_parse_back() {
        let ids = Ids::with_nonce(IdStyle::Uuid, 0x0123_4567_89ab_cdef);
        let id = text(&ids.json(0, 1));
        assert_eq!(id, r#""12345678-9abc-8def-8000-000000000001""#);
        let uuid = id.trim_matches('"');
        // Version 8 and the RFC variant, in the places RFC 9562 puts them.
        assert_eq!(uuid.as_bytes()[14], b'8');
        assert!(matches!(uuid.as_bytes()[19], b'8'..=b'b'));
        let groups: Vec<usize> = uuid.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        for (index, counter) in [
            (0, 1),
            (1, 1),
            (99_999, COUNTER_MASK),
            (MAX_CONNECTIONS as usize - 1, 12345),
        ] {
            let id = text(&ids.json(index, counter));
            assert_eq!(
                ids.parse(id.trim_matches('"')),
                Some((index, counter)),
                "{id}"
            );
        }
        // Every index and counter gives a different id.
        let all: std::collections::BTreeSet<String> = (0..50)
            .flat_map(|i| (1..50).map(move |k| (i, k)))
            .map(|(i, k)| text(&ids.json(i, k)))
            .collect();
        assert_eq!(all.len(), 50 * 49);
    }

    #[test]
    fn only_this_runs_exact_ids_parse() {
        let ids = Ids::with_nonce(IdStyle::Uuid, 0xabcdef);
        let other = Ids::with_nonce(IdStyle::Uuid, 0xabcdee);
        let mine = text(&ids.json(3, 9));
        let mine = mine.trim_matches('"');
        assert_eq!(ids.parse(mine), Some((3, 9)));
        assert_eq!(other.parse(mine), None, "another run's nonce");
        assert_ne!(mine.to_uppercase(), mine);
        assert_eq!(ids.parse(&mine.to_uppercase()), None);
        assert_eq!(ids.parse(&mine[..35]), None);
        let mut wrong_variant = mine.to_string();
        wrong_variant.replace_range(19..20, "c");
        assert_eq!(ids.parse(&wrong_variant), None);
        assert_eq!(ids.parse("7"), None);
        assert!(ids.matches(Some(&Cow::Borrowed(mine)), 3, 9));
        assert!(!ids.matches(Some(&Cow::Borrowed(mine)), 3, 10));
        assert!(!ids.matches(None, 3, 9));
    }

    #[test]
    fn integer_ids_are_unique_across_connections_and_match_as_text() {
        let ids = Ids::with_nonce(IdStyle::Integer, 7);
        assert_eq!(text(&ids.json(0, 1)), "1");
        assert_eq!(text(&ids.json(1, 1)), ((1u64 << 40) | 1).to_string());
        assert_eq!(ids.parse("1"), Some((0, 1)));
        assert_eq!(ids.parse("1099511627777"), Some((1, 1)));
        for bad in ["", "01", "+1", "-1", "1.0", "x", "99999999999999999999999"] {
            assert_eq!(ids.parse(bad), None, "{bad}");
        }
        assert_eq!(ids.parse(&(1u64 << 62).to_string()), None);
    }
}
