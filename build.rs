//! Records the git commit of the build (for run manifests) in THREADCENTER_GIT_COMMIT:
//! `git rev-parse --short=12 HEAD`, `-dirty` when tracked files differ, `unknown` outside
//! a git checkout.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
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
    let mut watch = vec!["src".to_string(), "Cargo.toml".to_string()];
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
