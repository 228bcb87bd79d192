//! Java HdrHistogram as a reference implementation: find `javac`, `java` and the
//! HdrHistogram jar, compile a fixture from tests/fixtures against it, and run it under a
//! [`ChildGuard`], bounded in time. The tests that use it are `#[ignore]`d (see
//! [`super::require_peer`]): missing Java fails them.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{require_peer, runs, ChildGuard};

/// The longest `javac` or `java` may run.
const JAVA_LIMIT: Duration = Duration::from_secs(120);

/// The jar and a directory holding a compiled fixture (and whatever else the test writes).
pub struct Java {
    jar: String,
    pub dir: tempfile::TempDir,
}

impl Java {
    /// Compiles tests/fixtures/`fixture` against the HdrHistogram jar (HDRHISTOGRAM_JAR, or
    /// Debian's path). Fails the test where `javac`, `java` or the jar is missing.
    pub fn compile(fixture: &str) -> Java {
        let jar = std::env::var("HDRHISTOGRAM_JAR")
            .unwrap_or_else(|_| "/usr/share/java/hdrhistogram.jar".to_string());
        require_peer(
            Path::new(&jar).exists() && runs("javac", "-version") && runs("java", "-version"),
            &format!("javac, java and {jar}"),
            "apt-get install default-jdk-headless libhdrhistogram-java, or set HDRHISTOGRAM_JAR",
        );
        let dir = tempfile::tempdir().unwrap();
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(fixture);
        let mut javac = Command::new("javac");
        javac.args(["-cp", &jar, "-d"]).arg(dir.path()).arg(source);
        run(javac, b"");
        Java { jar, dir }
    }

    /// Runs the compiled `class` with `args`, feeding it `input`; returns its stdout.
    pub fn run(&self, class: &str, args: &[&Path], input: &[u8]) -> String {
        let classpath = format!("{}:{}", self.jar, self.dir.path().display());
        let mut java = Command::new("java");
        java.args(["-cp", &classpath, class]).args(args);
        run(java, input)
    }
}

/// Runs `cmd` under a guard, feeding `input`, bounded in time; asserts it succeeded and
/// returns its stdout.
fn run(mut cmd: Command, input: &[u8]) -> String {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut guard = ChildGuard::spawn(cmd).expect("spawn");
    let mut stdin = guard.child_mut().stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = guard.child_mut().stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
        s
    });
    let status = guard
        .wait_timeout(JAVA_LIMIT)
        .expect("java did not finish in time");
    feeder.join().unwrap();
    assert!(status.success(), "{status:?}");
    reader.join().unwrap()
}
