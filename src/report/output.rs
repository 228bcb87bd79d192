//! The seam every artefact of a report goes through, as hyperfine's exporters and
//! criterion's report hooks do: an [`Output`] takes what was analysed and returns the
//! files it makes (path and bytes); [`write()`] puts them in the run directory. Adding an
//! artefact (an HTML page, say) means one more `Output` and one line in its registry.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// One file an output makes: where in the run directory, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Artefact {
    /// Relative to the run directory (`report.md`, `plots/saturation.svg`).
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

impl Artefact {
    pub(crate) fn new(path: impl Into<PathBuf>, bytes: impl Into<Vec<u8>>) -> Artefact {
        Artefact {
            path: path.into(),
            bytes: bytes.into(),
        }
    }
}

/// An artefact maker over an input `I` (an analysed run, a comparison). Pure: the same
/// input gives the same bytes, and nothing is written until every output has rendered.
pub(crate) trait Output<I: ?Sized> {
    /// A short name for errors: `report.md`, `plots`.
    fn name(&self) -> &'static str;
    /// The files this output makes from `input`: none, one, or several (one per cell).
    fn render(&self, input: &I) -> anyhow::Result<Vec<Artefact>>;
}

/// Renders every output, then writes their files under `dir` (creating subdirectories).
/// Returns the paths written, relative to `dir`, in the registry's order.
pub(crate) fn write<I: ?Sized>(
    dir: &Path,
    outputs: &[&dyn Output<I>],
    input: &I,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for output in outputs {
        let made = output
            .render(input)
            .with_context(|| format!("cannot render {}", output.name()))?;
        files.extend(made);
    }
    let mut written = Vec::with_capacity(files.len());
    for file in files {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, &file.bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(file.path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Twice;
    impl Output<str> for Twice {
        fn name(&self) -> &'static str {
            "twice"
        }
        fn render(&self, input: &str) -> anyhow::Result<Vec<Artefact>> {
            Ok(vec![
                Artefact::new("a.txt", input),
                Artefact::new("sub/b.txt", input.repeat(2)),
            ])
        }
    }

    struct Fails;
    impl Output<str> for Fails {
        fn name(&self) -> &'static str {
            "fails"
        }
        fn render(&self, _: &str) -> anyhow::Result<Vec<Artefact>> {
            anyhow::bail!("no data")
        }
    }

    #[test]
    fn outputs_write_their_files_and_a_failure_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let written = write(dir.path(), &[&Twice], "x").unwrap();
        assert_eq!(
            written,
            [PathBuf::from("a.txt"), PathBuf::from("sub/b.txt")]
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sub/b.txt")).unwrap(),
            "xx"
        );
        let other = tempfile::tempdir().unwrap();
        let err = write(other.path(), &[&Twice, &Fails], "y").unwrap_err();
        assert!(format!("{err:#}").contains("cannot render fails: no data"));
        assert!(
            !other.path().join("a.txt").exists(),
            "nothing written on failure"
        );
    }
}
