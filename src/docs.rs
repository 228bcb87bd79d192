//! `threadcenter docs [TOPIC]`: the pages of docs/*.md, built into the binary with
//! `include_str!` (the list is build.rs's), so the references in `--help` work for a `cargo install`ed binary
//! that has no source tree beside it.

use std::process::ExitCode;

use anyhow::bail;

use crate::cli::DocsArgs;

/// Every page: its topic (the file's stem) and its text, sorted by topic. build.rs
/// lists docs/*.md, so a new page is here without a line of code.
pub(crate) const PAGES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/docs_pages.rs"));

/// A page's title: its first line without the `# `.
fn title(text: &str) -> &str {
    text.lines()
        .next()
        .unwrap_or("")
        .trim_start_matches('#')
        .trim()
}

/// The list of topics, one per line with its title.
fn index() -> String {
    let width = PAGES.iter().map(|(t, _)| t.len()).max().unwrap_or(0);
    let mut out = String::from("Pages (threadcenter docs TOPIC):\n");
    for (topic, text) in PAGES {
        out.push_str(&format!("  {topic:<width$}  {}\n", title(text)));
    }
    out
}

/// The page for `topic`; `docs/experiments.md`, `experiments.md` and `Experiments` name
/// it too.
fn page(topic: &str) -> Option<&'static str> {
    let stem = topic
        .trim()
        .trim_start_matches("docs/")
        .trim_end_matches(".md")
        .to_ascii_lowercase();
    PAGES
        .iter()
        .find(|(t, _)| *t == stem)
        .map(|(_, text)| *text)
}

/// `threadcenter docs [TOPIC]`: the page on stdout, or the list of pages.
pub(crate) fn run(args: &DocsArgs) -> anyhow::Result<ExitCode> {
    let text = match args.topic.as_deref() {
        None => index(),
        Some(topic) => match page(topic) {
            Some(text) => text.to_string(),
            None => bail!(
                "no page {topic:?}: the pages are {} (`threadcenter docs` lists them)",
                PAGES.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", ")
            ),
        },
    };
    crate::print_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_docs_page_is_built_in() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/docs");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".md").map(str::to_string)
            })
            .collect();
        on_disk.sort();
        let mut built_in: Vec<String> = PAGES.iter().map(|(t, _)| t.to_string()).collect();
        built_in.sort();
        assert_eq!(built_in, on_disk, "build.rs lists every docs/*.md");
    }

    #[test]
    fn topics_are_found_by_stem_or_path() {
        for name in ["experiments", "docs/experiments.md", "Experiments.md"] {
            assert!(
                page(name).unwrap().starts_with("# Experiment files"),
                "{name}"
            );
        }
        assert!(page("nope").is_none());
        assert!(index().contains("  open-loop"), "{}", index());
    }
}
