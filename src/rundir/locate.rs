//! Telling a run directory from what is not one: a path that does not exist, a file, a
//! directory of runs (`reports/`, pointing at its `latest` or newest run), a directory
//! with no manifest.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::bail;

use super::MANIFEST_FILE;

/// `Ok` if `dir` looks like a run directory (it holds manifest.json); otherwise an
/// error saying exactly what it is and which path to give instead.
pub fn check_run_dir(dir: &Path) -> anyhow::Result<()> {
    let shown = dir.display();
    let meta = match fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{shown} does not exist: give a run directory that `threadcenter run` wrote, e.g. reports/latest"
        ),
        Err(e) => bail!("cannot read {shown}: {e}"),
    };
    if !meta.is_dir() {
        bail!(
            "{shown} is a file, not a run directory: give the directory that holds manifest.json, e.g. reports/latest"
        );
    }
    if dir.join(MANIFEST_FILE).exists() {
        return Ok(());
    }
    if let Some(newest) = newest_run(dir) {
        let latest = dir.join("latest");
        if latest.join(MANIFEST_FILE).exists() {
            bail!(
                "{shown} holds runs but is not one: give one of them, e.g. {} (the latest run)",
                latest.display()
            );
        }
        bail!(
            "{shown} holds runs but is not one: give one of them, e.g. {} (the newest)",
            newest.display()
        );
    }
    bail!(
        "{shown} is not a run directory: it has no {MANIFEST_FILE}; give a directory that `threadcenter run` wrote, e.g. reports/latest"
    )
}

/// The newest run directory directly inside `dir` (their names start with the UTC time
/// they started at, so the greatest name).
fn newest_run(dir: &Path) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n != "latest") && p.join(MANIFEST_FILE).exists())
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(dir: &Path) -> String {
        check_run_dir(dir).unwrap_err().to_string()
    }

    #[test]
    fn each_kind_of_wrong_path_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        assert!(message(&root.join("nope")).contains("does not exist"));
        fs::write(root.join("f"), "").unwrap();
        assert!(message(&root.join("f")).contains("is a file"));
        assert!(message(root).contains("has no manifest.json"));

        for name in ["20250101T000000Z-a", "20250102T000000Z-b"] {
            fs::create_dir(root.join(name)).unwrap();
            fs::write(root.join(name).join(MANIFEST_FILE), "{}").unwrap();
        }
        let m = message(root);
        assert!(m.contains("20250102T000000Z-b (the newest)"), "{m}");
        std::os::unix::fs::symlink("20250101T000000Z-a", root.join("latest")).unwrap();
        let m = message(root);
        assert!(m.contains("latest (the latest run)"), "{m}");
        assert!(check_run_dir(&root.join("latest")).is_ok());
    }
}
