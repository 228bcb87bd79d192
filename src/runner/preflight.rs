//! What the real run would fail on, found before anything starts (`run` and
//! `run --dry-run` alike): every program the experiment names (an external target's
//! `command`, a built-in target's `binary`) exists and is executable, resolved as the
//! run resolves it: `{dir}` filled in, a name without `/` looked up on PATH, a relative
//! path taken from the current directory (where the run starts its children).

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use super::experiment::{Experiment, ExperimentError, TargetKind};

/// Checks every program of `exp`; `exp_dir` is what `{dir}` stands for, `cwd` where
/// relative paths start.
pub(crate) fn check(exp: &Experiment, exp_dir: &Path, cwd: &Path) -> Result<(), ExperimentError> {
    for (name, target) in &exp.targets {
        let (key, program) = match &target.kind {
            TargetKind::External { command } => (format!("targets.{name}.command"), &command[0]),
            TargetKind::Builtin {
                binary: Some(b), ..
            } => (format!("targets.{name}.binary"), b),
            TargetKind::Builtin { binary: None, .. } => continue,
            // An image is checked by `container::preflight` (the daemon answers, the
            // image is present), which runs beside this check.
            TargetKind::Container(_) => continue,
        };
        let program = program.replace("{dir}", &exp_dir.display().to_string());
        let path_var = std::env::var_os("PATH").unwrap_or_default();
        if let Err(message) = resolve(&program, cwd, &path_var) {
            return Err(ExperimentError {
                path: exp.path.clone(),
                line: 0,
                column: 0,
                // A file with one [server] table names it `server`.
                key: Some(if has_server_table(&exp.source) {
                    key.replacen(&format!("targets.{name}"), "server", 1)
                } else {
                    key
                }),
                message,
                snippet: None,
            });
        }
    }
    Ok(())
}

/// True when the file gives its one target as `[server]` (not `[targets.NAME]`).
fn has_server_table(source: &str) -> bool {
    toml::from_str::<toml::Table>(source).is_ok_and(|t| t.contains_key("server"))
}

/// Where `program` is, as execvp(3) finds it, or what is wrong and how to fix it.
pub(crate) fn resolve(program: &str, cwd: &Path, path_var: &OsStr) -> Result<PathBuf, String> {
    if program.contains('/') {
        let path = cwd.join(program);
        let relative = if Path::new(program).is_relative() && !path.exists() {
            format!(
                " (a relative path is taken from the directory the run starts in, {}; write {{dir}}/… for a path beside the experiment file)",
                cwd.display()
            )
        } else {
            String::new()
        };
        return match executable(&path, program) {
            Ok(()) => Ok(path),
            Err(why) => Err(format!("{program:?} {why}{relative}")),
        };
    }
    let mut not_executable = None;
    for dir in std::env::split_paths(path_var) {
        let dir = if dir.as_os_str().is_empty() {
            cwd.to_path_buf()
        } else {
            cwd.join(dir)
        };
        let candidate = dir.join(program);
        match executable(&candidate, &candidate.display().to_string()) {
            Ok(()) => return Ok(candidate),
            Err(why) if candidate.exists() => not_executable = Some((candidate, why)),
            Err(_) => {}
        }
    }
    Err(match not_executable {
        Some((path, why)) => format!("{program:?} on PATH is {} and {why}", path.display()),
        None => format!(
            "{program:?} is not found on PATH ({}): install it, or give the program's path",
            std::env::join_paths(std::env::split_paths(path_var))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
    })
}

/// `Ok` for a file the user may execute; otherwise why not, with the fix (`shown` is
/// the path as the fix names it).
fn executable(path: &Path, shown: &str) -> Result<(), String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) => return Err("does not exist".into()),
    };
    if meta.is_dir() {
        return Err("is a directory, not a program".into());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!(
            "is not executable: `chmod +x {shown}`, or run it through its interpreter (e.g. [\"python3\", \"{shown}\", …])"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn programs_resolve_as_exec_does() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        let tool = bin.join("tool");
        fs::write(&tool, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
        let plain = dir.path().join("plain.py");
        fs::write(&plain, "").unwrap();
        fs::set_permissions(&plain, fs::Permissions::from_mode(0o644)).unwrap();
        let path = bin.as_os_str();

        assert_eq!(resolve("tool", dir.path(), path).unwrap(), tool);
        assert_eq!(resolve("bin/tool", dir.path(), path).unwrap(), tool);
        let e = resolve("nosuch", dir.path(), path).unwrap_err();
        assert!(e.contains("not found on PATH"), "{e}");
        let e = resolve("./nosuch", dir.path(), path).unwrap_err();
        assert!(e.contains("does not exist") && e.contains("{dir}"), "{e}");
        let e = resolve("./plain.py", dir.path(), path).unwrap_err();
        assert!(e.contains("chmod +x"), "{e}");
        let e = resolve("bin", dir.path(), dir.path().as_os_str()).unwrap_err();
        assert!(e.contains("is a directory"), "{e}");
    }
}
