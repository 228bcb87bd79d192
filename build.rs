//! Records the git commit of the build (for run manifests and `--version`) in
//! THREADCENTER_GIT_COMMIT: `git rev-parse --short=12 HEAD`, `-dirty` when tracked files
//! differ, `unknown` outside a git checkout or without git. Lists docs/*.md for
//! `threadcenter docs` (OUT_DIR/docs_pages.rs), so a new page is built in without a
//! line of code.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `&[("experiments", include_str!(…/docs/experiments.md)), …]`, sorted by topic.
fn docs_pages() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut topics: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    name.strip_suffix(".md").map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    topics.sort();
    let mut code = String::from("&[\n");
    for topic in topics {
        let path = dir.join(format!("{topic}.md"));
        code.push_str(&format!(
            "    ({topic:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    code.push(']');
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("docs_pages.rs"), code).expect("OUT_DIR is writable");
}

fn main() {
    docs_pages();
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c) if !c.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c}-dirty")
            } else {
                c
            }
        }
        _ => "unknown".to_string(),
    };
    println!("cargo:rustc-env=THREADCENTER_GIT_COMMIT={commit}");
    // Re-run when HEAD moves or the sources change (for the -dirty mark); only paths that
    // exist, since a missing one would make cargo re-run this on every build.
    let mut watch = vec![
        "src".to_string(),
        "Cargo.toml".to_string(),
        "docs".to_string(),
    ];
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        watch.push(format!("{dir}/HEAD"));
        watch.push(format!("{dir}/index"));
    }
    if let Some(common) = git(&["rev-parse", "--git-common-dir"]) {
        watch.push(format!("{common}/packed-refs"));
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch.push(format!("{common}/{head_ref}"));
        }
    }
    for path in watch {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
