//! `run`'s overrides of the experiment file: `--repetitions`, `--warmup`, `--duration`
//! and `--set KEY=VALUE`. They are applied to the TOML document (toml_edit, so the rest
//! of the file keeps its text and lines) before it is checked, so every check of the
//! file applies to them; an error about an overridden key names the flag that set it.
//! The run records them in its manifest and writes the effective file into the run
//! directory.

use std::path::Path;

use toml_edit::{DocumentMut, Item, Table, TableLike, Value};

use super::experiment::ExperimentError;
use crate::cli::RunArgs;

/// One override: a dotted key of the experiment file and the TOML value it gets.
#[derive(Debug, Clone)]
pub(crate) struct Override {
    /// `matrix.workers`, `repetitions`, `targets.py.command`.
    pub(crate) key: String,
    pub(crate) value: Value,
    /// How it was given, for messages: `--set matrix.workers=[1,2]`, `--repetitions 3`.
    pub(crate) flag: String,
}

impl Override {
    /// `matrix.workers=[1, 2]`: as the manifest records it (the value in TOML).
    pub(crate) fn entry(&self) -> String {
        format!("{}={}", self.key, self.value.to_string().trim())
    }
}

/// Measured length: setting one of these removes the other from the file (they are
/// exclusive there), unless both are overridden.
const EXCLUSIVE: [(&str, &str); 2] = [("duration", "requests"), ("requests", "duration")];

/// `--set`'s value parser: `KEY=VALUE`, the key dotted names.
pub(crate) fn parse_set(s: &str) -> Result<(String, String), String> {
    let Some((key, value)) = s.split_once('=') else {
        return Err(format!(
            "{s:?} has no `=`: write KEY=VALUE, e.g. --set repetitions=3 or --set matrix.workers=[1,2]"
        ));
    };
    let key = key.trim();
    let well_formed = !key.is_empty()
        && key.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if !well_formed {
        return Err(format!(
            "{key:?} is not a key of the experiment file: write names joined by dots, e.g. matrix.workers or client.timeout"
        ));
    }
    Ok((key.to_string(), value.trim().to_string()))
}

/// A value as TOML reads it (`3`, `[1, 2]`, `"5s"`, `true`); a bare word that is not
/// TOML (`5s`, `shuffled`, `1..=cores`) is a string.
pub(crate) fn toml_value(text: &str) -> Result<Value, String> {
    match text.parse::<Value>() {
        Ok(mut v) => {
            v.decor_mut().clear();
            Ok(v)
        }
        Err(_) if !text.starts_with(['[', '{', '"', '\'']) && !text.is_empty() => {
            Ok(Value::from(text))
        }
        Err(e) => Err(format!(
            "{text:?} is not a TOML value ({}): quote the strings in a list, e.g. [\"a\", \"b\"]",
            e.message().trim()
        )),
    }
}

/// The overrides `args` gives, in the order they apply: every `--set`, then
/// `--repetitions`, `--warmup`, `--duration`. A key given twice is refused.
pub(crate) fn from_args(args: &RunArgs) -> anyhow::Result<Vec<Override>> {
    let mut out: Vec<Override> = Vec::new();
    for (key, text) in &args.set {
        let flag = format!("--set {key}={text}");
        let value = toml_value(text).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
        out.push(Override {
            key: key.clone(),
            value,
            flag,
        });
    }
    let named = [
        ("repetitions", &args.repetitions, false),
        ("warmup", &args.warmup, true),
        ("duration", &args.duration, true),
    ];
    for (key, given, is_duration) in named {
        let Some(text) = given else { continue };
        let flag = format!("--{key} {text}");
        let value = if is_duration {
            Value::from(text.as_str())
        } else {
            toml_value(text).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?
        };
        out.push(Override {
            key: key.to_string(),
            value,
            flag,
        });
    }
    for (i, o) in out.iter().enumerate() {
        if let Some(first) = out[..i].iter().find(|p| p.key == o.key) {
            anyhow::bail!(
                "`{}` is set twice, by {} and by {}: keep one",
                o.key,
                first.flag,
                o.flag
            );
        }
    }
    Ok(out)
}

/// The experiment file's text with `overrides` applied. A file that is not TOML comes
/// back as it is, for the file's own check to report where.
pub(crate) fn apply(
    path: &Path,
    text: &str,
    overrides: &[Override],
) -> Result<String, ExperimentError> {
    let Ok(mut doc) = text.parse::<DocumentMut>() else {
        return Ok(text.to_string());
    };
    for o in overrides {
        set(doc.as_table_mut(), o, overrides).map_err(|message| ExperimentError {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            key: Some(o.key.clone()),
            message: format!("{message} (given by {})", o.flag),
            snippet: None,
        })?;
    }
    Ok(doc.to_string())
}

/// Sets one override in the document, creating the tables on its way.
fn set(root: &mut Table, o: &Override, all: &[Override]) -> Result<(), String> {
    let parts: Vec<&str> = o.key.split('.').collect();
    let (last, tables) = parts.split_last().expect("parse_set refuses an empty key");
    let mut table: &mut dyn TableLike = root;
    for (i, part) in tables.iter().enumerate() {
        let item = table.entry(part).or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        table = item.as_table_like_mut().ok_or_else(|| {
            format!(
                "`{}` is a value in the file, not a table: --set cannot set a key inside it",
                parts[..=i].join(".")
            )
        })?;
    }
    if tables.is_empty() {
        for (set_key, removed) in EXCLUSIVE {
            if *last == set_key && !all.iter().any(|p| p.key == removed) {
                table.remove(removed);
            }
        }
    }
    table.insert(last, Item::Value(o.value.clone()));
    Ok(())
}

/// An error found in the effective file, told in the user's terms: about an overridden
/// key, it names the flag (the effective file's line would be nowhere in theirs);
/// elsewhere, its line is the same line of the user's file.
pub(crate) fn relocate(
    mut err: ExperimentError,
    original: &str,
    effective: &str,
    overrides: &[Override],
) -> ExperimentError {
    let by = err.key.as_deref().and_then(|k| {
        overrides
            .iter()
            .filter(|o| {
                // The key itself, a key inside it, or a table it was set in.
                k == o.key
                    || k.starts_with(&format!("{}.", o.key))
                    || k.starts_with(&format!("{}[", o.key))
                    || o.key.starts_with(&format!("{k}."))
            })
            .max_by_key(|o| o.key.len())
    });
    if let Some(o) = by {
        err.message = format!("{} (given by {})", err.message, o.flag);
        err.line = 0;
        err.column = 0;
        err.snippet = None;
        return err;
    }
    if err.line > 0 {
        // toml_edit kept every line it did not set as it was: the same text is in the
        // user's file, near the same place.
        let wanted = effective.lines().nth(err.line - 1);
        let found = original
            .lines()
            .enumerate()
            .filter(|(_, l)| Some(*l) == wanted)
            .min_by_key(|(i, _)| (i + 1).abs_diff(err.line));
        if let Some((i, _)) = found {
            err.line = i + 1;
        }
    }
    err
}

/// The effective file as the run directory keeps it: a comment saying where it came
/// from and what was overridden, then the TOML.
pub(crate) fn annotate(path: &Path, effective: &str, overrides: &[Override]) -> String {
    let flags: Vec<&str> = overrides.iter().map(|o| o.flag.as_str()).collect();
    format!(
        "# {} with {} (manifest.json: experiment.overrides)\n{effective}",
        path.display(),
        flags.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(key: &str, text: &str) -> Override {
        Override {
            key: key.into(),
            value: toml_value(text).unwrap(),
            flag: format!("--set {key}={text}"),
        }
    }

    const FILE: &str =
        "# a comment\nname = \"t\"\nrequests = 5\n\n[matrix]\nconcurrency = [1]\nworkers = [1]\n";

    #[test]
    fn values_are_toml_or_bare_strings() {
        assert_eq!(toml_value("3").unwrap().as_integer(), Some(3));
        assert_eq!(toml_value("5s").unwrap().as_str(), Some("5s"));
        assert_eq!(toml_value("1..=cores").unwrap().as_str(), Some("1..=cores"));
        assert_eq!(toml_value("[1,2]").unwrap().as_array().unwrap().len(), 2);
        let e = toml_value("[a, b]").unwrap_err();
        assert!(e.contains("quote the strings"), "{e}");
        assert!(parse_set("matrix.workers").unwrap_err().contains("no `=`"));
        assert!(parse_set("matrix..x=1").is_err());
        assert_eq!(
            parse_set("matrix.workers=[1, 2]").unwrap(),
            ("matrix.workers".into(), "[1, 2]".into())
        );
    }

    #[test]
    fn overrides_set_keys_and_keep_the_rest_of_the_file() {
        let out = apply(
            Path::new("x.toml"),
            FILE,
            &[
                o("matrix.workers", "[1,2]"),
                o("duration", "2s"),
                o("client.timeout", "5s"),
            ],
        )
        .unwrap();
        assert!(out.starts_with("# a comment\nname = \"t\"\n"), "{out}");
        assert!(out.contains("workers = [1,2]"), "{out}");
        assert!(
            !out.contains("requests"),
            "duration replaces requests: {out}"
        );
        let exp = super::super::experiment::parse(Path::new("x.toml"), &out).unwrap();
        assert_eq!(exp.cells.len(), 2);
        assert_eq!(
            exp.settings.duration,
            Some(std::time::Duration::from_secs(2))
        );
        assert_eq!(exp.client.timeout, std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_value_is_not_a_table() {
        let e = apply(Path::new("x.toml"), FILE, &[o("name.x", "1")]).unwrap_err();
        assert!(e.message.contains("`name` is a value"), "{e}");
        assert!(e.message.contains("--set name.x=1"), "{e}");
    }

    #[test]
    fn errors_name_the_flag_or_the_users_line() {
        let overrides = [o("repetitions", "0"), o("matrix.threads", "[2]")];
        let eff = apply(Path::new("x.toml"), FILE, &overrides[..1]).unwrap();
        let err = super::super::experiment::parse(Path::new("x.toml"), &eff).unwrap_err();
        let err = relocate(err, FILE, &eff, &overrides);
        assert_eq!(
            (err.line, err.key.as_deref()),
            (0, Some("repetitions")),
            "{err}"
        );
        assert!(
            err.to_string().contains("(given by --set repetitions=0)"),
            "{err}"
        );

        // An error elsewhere keeps the line of the user's file.
        let bad = FILE.replace("workers = [1]", "workers = [0]");
        let eff = apply(Path::new("x.toml"), &bad, &overrides[..1]).unwrap();
        let shifted = eff.lines().position(|l| l == "workers = [0]").unwrap() + 1;
        let err = super::super::experiment::ExperimentError {
            path: "x.toml".into(),
            line: shifted,
            column: 12,
            key: Some("matrix.workers".into()),
            message: "must be at least 1, not 0".into(),
            snippet: Some("workers = [0]".into()),
        };
        let err = relocate(err, &bad, &eff, &overrides[..1]);
        assert_eq!(err.line, 7, "{err}");
        // An error about a table an override made names the flag too.
        let file = format!("{FILE}[server]\n");
        let made = [o("targets.b.binary", "x")];
        let eff = apply(Path::new("x.toml"), &file, &made).unwrap();
        let err = super::super::experiment::parse(Path::new("x.toml"), &eff).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("targets"), "{err}");
        let err = relocate(err, &file, &eff, &made);
        assert!(
            err.message.ends_with("(given by --set targets.b.binary=x)"),
            "{err}"
        );
        assert_eq!(err.line, 0, "{err}");
    }
}
