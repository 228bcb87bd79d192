//! Numbers in the run directory's CSV files print with fixed decimals, so the same figures
//! always give the same bytes; `#[serde(with = "fixed::d1")]` (or `d1::opt` for a column
//! that may be empty) says a column's decimals where the column is declared.

/// Fixed decimals: the same numbers always print the same text; not finite prints empty.
pub fn num(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        let s = format!("{x:.decimals$}");
        // No "-0.0".
        if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
            s[1..].to_string()
        } else {
            s
        }
    } else {
        String::new()
    }
}

fn parse<E: serde::de::Error>(s: &str) -> Result<f64, E> {
    s.trim()
        .parse()
        .map_err(|_| E::custom(format!("{s:?} is not a number")))
}

macro_rules! decimals {
    ($name:ident, $d:expr) => {
        // Not every precision has a required column (and an optional one) today.
        #[allow(dead_code)]
        pub(crate) mod $name {
            use serde::{Deserialize, Deserializer, Serializer};

            pub(crate) fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&super::num(*v, $d))
            }

            pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
                super::parse(&String::deserialize(d)?)
            }

            /// A column that may be empty (not measured) or absent (an older file).
            pub(crate) mod opt {
                use serde::{Deserialize, Deserializer, Serializer};

                pub(crate) fn serialize<S: Serializer>(
                    v: &Option<f64>,
                    s: S,
                ) -> Result<S::Ok, S::Error> {
                    s.serialize_str(&v.map_or(String::new(), |v| super::super::num(v, $d)))
                }

                pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
                    d: D,
                ) -> Result<Option<f64>, D::Error> {
                    match Option::<String>::deserialize(d)? {
                        None => Ok(None),
                        Some(s) if s.trim().is_empty() => Ok(None),
                        Some(s) => super::super::parse(&s).map(Some),
                    }
                }
            }
        }
    };
}

decimals!(d1, 1);
decimals!(d3, 3);
decimals!(d6, 6);
