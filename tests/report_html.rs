//! report.html and compare.html in a real browser: Debian's `chromium`, headless, on a
//! closed network. A real run directory (the v3 fixture, copied) is rendered by the real
//! binary's `report`; the page must load with no console message (an error, or a fetch
//! its Content-Security-Policy refused), request nothing (chromium's net log), make every
//! table sortable (its script ran to the end), sort numbers with their units, and
//! render to a screenshot, kept under the target directory.
//!
//! Ignored in a plain `cargo test` (they need chromium: `apt-get install chromium`);
//! `.ci/run` installs it and runs them with `--ignored`. Without chromium they fail.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::ChildGuard;

/// A chromium load on a loaded 2-core machine takes seconds; this is the bound.
const CHROMIUM_LIMIT: Duration = Duration::from_secs(180);

/// What one headless chromium load left behind.
struct Load {
    /// `--dump-dom`: the DOM after the page's scripts ran.
    dom: String,
    /// Every console message (chromium logs each as a `CONSOLE` line on stderr).
    console: Vec<String>,
    /// Every request the page made (the net log's requests from a file:// page).
    requests: Vec<String>,
    stderr: String,
}

enum Mode {
    DumpDom,
    /// A PNG of the window, `(width, height)`.
    Screenshot(PathBuf, (u32, u32)),
}

/// Loads `page` in headless chromium (the flags of a closed network, every host name
/// unresolvable) with its console on stderr and a net log, bounded in time; the whole
/// browser is killed if the test fails.
fn chromium(work: &Path, name: &str, page: &Path, mode: &Mode) -> Load {
    let profile = work.join(format!("{name}.profile"));
    let netlog = work.join(format!("{name}.netlog.json"));
    let stdout = work.join(format!("{name}.stdout"));
    let stderr = work.join(format!("{name}.stderr"));
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
        "--host-resolver-rules=MAP * ~NOTFOUND",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--log-net-log={}", netlog.display()));
    match mode {
        Mode::DumpDom => {
            cmd.arg("--dump-dom");
        }
        Mode::Screenshot(png, (w, h)) => {
            cmd.arg(format!("--screenshot={}", png.display()))
                .arg(format!("--window-size={w},{h}"))
                .arg("--hide-scrollbars");
        }
    }
    cmd.arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).unwrap())
        .stderr(fs::File::create(&stderr).unwrap());
    let mut guard = ChildGuard::spawn(cmd).unwrap_or_else(|e| {
        panic!("needs chromium: apt-get install chromium (cannot start `chromium`: {e})")
    });
    let Some(status) = guard.wait_timeout(CHROMIUM_LIMIT) else {
        drop(guard); // kills its process group: the browser and its helpers
        panic!(
            "chromium still loading {} after {CHROMIUM_LIMIT:?}; stderr:\n{}",
            page.display(),
            fs::read_to_string(&stderr).unwrap_or_default()
        );
    };
    let err = fs::read_to_string(&stderr).unwrap();
    assert!(status.success(), "chromium {status}:\n{err}");
    Load {
        dom: fs::read_to_string(&stdout).unwrap(),
        console: err
            .lines()
            .filter(|l| l.contains("CONSOLE"))
            .map(String::from)
            .collect(),
        requests: page_requests(&netlog),
        stderr: err,
    }
}

/// The URLs of the requests a file:// page made, from chromium's net log: those whose
/// network isolation key is the page's (chromium's own, such as its update checks, have
/// another, and fail on the unresolvable host names).
fn page_requests(netlog: &Path) -> Vec<String> {
    let text = fs::read_to_string(netlog)
        .unwrap_or_else(|e| panic!("no net log {}: {e}", netlog.display()));
    let log: serde_json::Value = serde_json::from_str(&text).expect("the net log is JSON");
    let mut urls = Vec::new();
    for event in log["events"].as_array().expect("the net log has events") {
        let params = &event["params"];
        let key = params["network_isolation_key"].as_str().unwrap_or("");
        if let Some(url) = params["url"].as_str() {
            if key.contains("file://") {
                urls.push(url.to_string());
            }
        }
    }
    urls
}

/// Asserts a load was clean: no console message, no request.
fn assert_clean(load: &Load, what: &str) {
    assert!(
        load.console.is_empty(),
        "{what}: console messages:\n{}",
        load.console.join("\n")
    );
    assert!(
        load.requests.is_empty(),
        "{what}: requests: {:?}",
        load.requests
    );
}

/// The page as written asks for nothing outside itself: no URL but the SVG namespace,
/// no `src`, no stylesheet or font to fetch, and links only to its own sections or to
/// relative files.
fn assert_self_contained(html: &str) {
    let text = html
        .replace("xmlns=\"http://www.w3.org/2000/svg\"", "")
        .replace("xmlns:xlink=\"http://www.w3.org/1999/xlink\"", "");
    for forbidden in [
        "http://", "https://", "src=", "url(", "@import", "<link", "<iframe", "<object", "<embed",
        "<img",
    ] {
        assert!(!text.contains(forbidden), "{forbidden} in the page");
    }
    for href in text.split("href=\"").skip(1) {
        let target = &href[..href.find('"').unwrap()];
        assert!(
            target.starts_with('#') || !target.contains(':'),
            "a link out: {target}"
        );
    }
    assert!(html.contains("Content-Security-Policy"));
}

/// A screenshot is a real PNG of the window's size, with more in it than a blank page.
fn assert_screenshot(png: &Path, (w, h): (u32, u32)) {
    let bytes = fs::read(png).unwrap_or_else(|e| panic!("no screenshot {}: {e}", png.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        png.display()
    );
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!(&bytes[12..16], b"IHDR");
    assert_eq!((be(16), be(20)), (w, h), "the screenshot's size");
    // A blank window of this size compresses to a few kB; text, tables and plots do not.
    assert!(
        bytes.len() > 40_000,
        "{} is {} bytes: nearly blank?",
        png.display(),
        bytes.len()
    );
}

/// Where screenshots are kept after the test (printed): under the target directory.
fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report_html");
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn fixture_v3() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rundir/v3")
}

/// Copies a directory tree (the fixtures hold files and directories only).
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `threadcenter report DIR` (plus `extra`), with its exit status checked against `ok`.
fn report(dir: &Path, extra: &[&str], ok: &[i32]) {
    let mut args = vec!["report", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = common::threadcenter(&args);
    assert!(
        out.status.code().is_some_and(|c| ok.contains(&c)),
        "{}",
        common::explain(&out)
    );
}

/// The number of tables whose header names a column: those the page makes sortable.
fn named_tables(html: &str) -> usize {
    html.split("<thead>")
        .skip(1)
        .filter(|rest| {
            let head = &rest[..rest.find("</thead>").unwrap()];
            let mut text = String::new();
            let mut in_tag = false;
            for c in head.chars() {
                match c {
                    '<' => in_tag = true,
                    '>' => in_tag = false,
                    c if !in_tag => text.push(c),
                    _ => {}
                }
            }
            !text.trim().is_empty()
        })
        .count()
}

#[test]
#[ignore = "needs chromium: apt-get install chromium"]
fn the_checks_catch_a_script_error_and_a_request() {
    // The detectors themselves, on pages that fail them: without this a silent
    // chromium (another log format, no net log) would pass every page.
    let tmp = tempfile::tempdir().unwrap();
    let error = tmp.path().join("error.html");
    fs::write(
        &error,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>e</title></head>\
         <body><p>x</p><script>notDefined();</script></body></html>",
    )
    .unwrap();
    let load = chromium(tmp.path(), "error", &error, &Mode::DumpDom);
    assert!(
        load.console.iter().any(|l| l.contains("Uncaught")),
        "no console error seen:\n{}",
        load.stderr
    );
    // A request to a closed loopback port (nothing leaves the machine).
    let fetch = tmp.path().join("fetch.html");
    fs::write(
        &fetch,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>f</title></head>\
         <body><img src=\"http://127.0.0.1:9/x.png\" alt=\"\"></body></html>",
    )
    .unwrap();
    let load = chromium(tmp.path(), "fetch", &fetch, &Mode::DumpDom);
    assert_eq!(
        load.requests,
        ["http://127.0.0.1:9/x.png"],
        "{}",
        load.stderr
    );
}

/// Injected before the page's own script in a copy of report.html: a table whose
/// columns mix units, dashes and blanks, for the page's script to make sortable.
const PROBE_TABLE: &str = "<table id=\"probe\"><thead><tr><th>latency</th><th>rate</th>\
<th>cell</th></tr></thead><tbody>\
<tr><td>12.34 ms</td><td>1,200.0 req/s</td><td>c10</td></tr>\
<tr><td>850 µs</td><td>–</td><td>c2</td></tr>\
<tr><td>–</td><td>5.0 req/s</td><td>c1</td></tr>\
<tr><td>2 s</td><td>950.5 req/s</td><td>c3</td></tr>\
<tr><td>1.5 ms</td><td></td><td>c20</td></tr>\
</tbody></table>\n";

/// Injected after the page's script: clicks every sortable header twice and writes
/// each column as it stood after each click into `<pre id="sortcheck">` as JSON.
const CLICKER: &str = r#"<script>
(function () {
  function column(table, c) {
    return Array.prototype.map.call(table.tBodies[0].rows, function (r) {
      return r.cells[c] ? r.cells[c].textContent : "";
    });
  }
  var out = [];
  Array.prototype.forEach.call(document.querySelectorAll("table"), function (table) {
    if (!table.tHead) return;
    var heads = table.tHead.rows[0].cells;
    for (var c = 0; c < heads.length; c++) {
      if (!heads[c].hasAttribute("data-sort")) continue;
      heads[c].click();
      var up = column(table, c), upState = heads[c].getAttribute("aria-sort");
      heads[c].click();
      var down = column(table, c), downState = heads[c].getAttribute("aria-sort");
      out.push({ table: table.id, column: heads[c].textContent, up: up, upState: upState,
                 down: down, downState: downState });
    }
  });
  var pre = document.createElement("pre");
  pre.id = "sortcheck";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"#;

/// How the test reads a cell, independently of the page's script: a number (a
/// duration in µs), text, or nothing.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Key {
    Number(f64),
    Text,
    Missing,
}

fn key(cell: &str) -> Key {
    let t = cell.trim();
    if t.is_empty() || t == "–" || t == "-" {
        return Key::Missing;
    }
    let end = t
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || c == ',' || (i == 0 && c == '-')))
        .map_or(t.len(), |(i, _)| i);
    let Ok(n) = t[..end].replace(',', "").parse::<f64>() else {
        return Key::Text;
    };
    let unit = t[end..].split_whitespace().next().unwrap_or("");
    let per_us = match unit {
        "ns" => 0.001,
        "µs" | "us" => 1.0,
        "ms" => 1000.0,
        "s" => 1e6,
        _ => 1.0,
    };
    Key::Number(n * per_us)
}

/// Numbers in order (the given way), then text, then missing cells last.
fn assert_sorted(column: &[String], ascending: bool, what: &str) {
    let keys: Vec<Key> = column.iter().map(|c| key(c)).collect();
    for pair in keys.windows(2) {
        let ok = match (&pair[0], &pair[1]) {
            (Key::Number(a), Key::Number(b)) => {
                if ascending {
                    a <= b
                } else {
                    a >= b
                }
            }
            (_, Key::Missing) => true,
            (Key::Missing, _) => false,
            (Key::Text, Key::Text) => true,
            (Key::Number(_), Key::Text) => ascending,
            (Key::Text, Key::Number(_)) => !ascending,
        };
        assert!(ok, "{what}: {column:?} is not sorted");
    }
}

/// The text of `<pre id="sortcheck">` in a dumped DOM, unescaped.
fn sortcheck(dom: &str) -> serde_json::Value {
    let start = dom
        .find("<pre id=\"sortcheck\">")
        .expect("the clicker wrote its result")
        + "<pre id=\"sortcheck\">".len();
    let end = start + dom[start..].find("</pre>").unwrap();
    let text = dom[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&");
    serde_json::from_str(&text).expect("the clicker's JSON")
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
#[ignore = "needs chromium: apt-get install chromium"]
fn report_html_loads_clean_sorts_its_tables_and_renders() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    copy_dir(&fixture_v3(), &dir);
    report(&dir, &[], &[0]);
    let page = dir.join("report.html");
    let html = fs::read_to_string(&page).expect("report renders report.html");
    // Re-rendered from the raw files: the same bytes.
    report(&dir, &[], &[0]);
    assert_eq!(
        fs::read_to_string(&page).unwrap(),
        html,
        "a re-render differs"
    );

    // The page holds report.md's tables and every plot inline.
    assert_self_contained(&html);
    let md = fs::read_to_string(dir.join("report.md")).unwrap();
    let md_tables = md.lines().filter(|l| l.starts_with("|---")).count();
    assert!(md_tables >= 3, "{md}");
    assert_eq!(html.matches("<table>").count(), md_tables);
    let plots = fs::read_dir(dir.join("plots")).unwrap().count();
    assert!(plots >= 3);
    assert_eq!(html.matches("<svg").count(), plots);
    for h2 in md.lines().filter_map(|l| l.strip_prefix("## ")) {
        assert!(
            html.contains(&format!(">{}</a></li>", h2.replace('&', "&amp;"))),
            "nav lacks {h2}"
        );
    }

    // In the browser: no console message, no request, every named table sortable.
    let load = chromium(tmp.path(), "report", &page, &Mode::DumpDom);
    assert_clean(&load, "report.html");
    let sortable = named_tables(&html);
    assert!(sortable >= 3);
    assert!(
        load.dom
            .contains(&format!("data-sortable-tables=\"{sortable}\"")),
        "the page's script did not finish: {}",
        &load.dom[..load.dom.len().min(300)]
    );
    assert_eq!(load.dom.matches("<svg").count(), plots);

    // Sorting, on a copy with a probe table and a clicker around the page's script.
    let at = html.find("<script>").unwrap();
    let end = html.rfind("</body>").unwrap();
    let probe = format!(
        "{}{PROBE_TABLE}{}{CLICKER}{}",
        &html[..at],
        &html[at..end],
        &html[end..]
    );
    let probe_page = tmp.path().join("run/sortcheck.html");
    fs::write(&probe_page, probe).unwrap();
    let load = chromium(tmp.path(), "sortcheck", &probe_page, &Mode::DumpDom);
    assert_clean(&load, "sortcheck.html");
    let columns = sortcheck(&load.dom);
    let columns = columns.as_array().unwrap();
    // Every column of every table: 3 of the probe's, and the report's.
    assert!(columns.len() > 3 + sortable, "{columns:?}");
    for col in columns {
        let what = format!("{} / {}", col["table"], col["column"]);
        assert_eq!(col["upState"], "ascending", "{what}");
        assert_eq!(col["downState"], "descending", "{what}");
        let (up, down) = (strings(&col["up"]), strings(&col["down"]));
        assert_sorted(&up, true, &what);
        assert_sorted(&down, false, &what);
        let (mut a, mut b) = (up.clone(), down.clone());
        a.sort();
        b.sort();
        assert_eq!(a, b, "{what}: sorting lost or made rows");
    }
    let probe_col = |name: &str| {
        columns
            .iter()
            .find(|c| c["table"] == "probe" && c["column"] == name)
            .unwrap()
    };
    assert_eq!(
        strings(&probe_col("latency")["up"]),
        ["850 µs", "1.5 ms", "12.34 ms", "2 s", "–"]
    );
    assert_eq!(
        strings(&probe_col("latency")["down"]),
        ["2 s", "12.34 ms", "1.5 ms", "850 µs", "–"]
    );
    assert_eq!(
        strings(&probe_col("cell")["up"]),
        ["c1", "c2", "c3", "c10", "c20"]
    );

    // A screenshot, kept for people to look at.
    let size = (1280, 2000);
    let png = screenshot_dir().join("report.png");
    let _ = fs::remove_file(&png);
    let load = chromium(
        tmp.path(),
        "shot",
        &page,
        &Mode::Screenshot(png.clone(), size),
    );
    assert_clean(&load, "report.html (screenshot)");
    assert_screenshot(&png, size);
    eprintln!("screenshot: {}", png.display());
}

#[test]
#[ignore = "needs chromium: apt-get install chromium"]
fn compare_html_loads_clean_and_renders() {
    let tmp = tempfile::tempdir().unwrap();
    let (base, new) = (tmp.path().join("base"), tmp.path().join("new"));
    copy_dir(&fixture_v3(), &base);
    copy_dir(&fixture_v3(), &new);
    // One repetition a side: verdicts are inconclusive (2); never an error (3).
    let compare = ["--baseline", base.to_str().unwrap()];
    report(&new, &compare, &[0, 1, 2]);
    let page = new.join("compare.html");
    let html = fs::read_to_string(&page).expect("a comparison renders compare.html");
    report(&new, &compare, &[0, 1, 2]);
    assert_eq!(
        fs::read_to_string(&page).unwrap(),
        html,
        "a re-render differs"
    );

    assert_self_contained(&html);
    assert!(html.contains("<title>Comparison: "), "{}", &html[..600]);
    assert_eq!(html.matches("<svg").count(), 1, "compare.svg inline");
    let md = fs::read_to_string(new.join("compare.md")).unwrap();
    let md_tables = md.lines().filter(|l| l.starts_with("|---")).count();
    assert_eq!(html.matches("<table>").count(), md_tables);

    let load = chromium(tmp.path(), "compare", &page, &Mode::DumpDom);
    assert_clean(&load, "compare.html");
    assert!(load
        .dom
        .contains(&format!("data-sortable-tables=\"{}\"", named_tables(&html))));

    let size = (1280, 1400);
    let png = screenshot_dir().join("compare.png");
    let _ = fs::remove_file(&png);
    let load = chromium(
        tmp.path(),
        "shot",
        &page,
        &Mode::Screenshot(png.clone(), size),
    );
    assert_clean(&load, "compare.html (screenshot)");
    assert_screenshot(&png, size);
    eprintln!("screenshot: {}", png.display());
}
