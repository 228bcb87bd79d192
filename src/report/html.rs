//! report.html (and, through [`page`], compare.html): one self-contained page made from
//! the report's own markdown, so the two never say different things. The markdown is
//! converted with pulldown-cmark; each image is replaced by the SVG its chart output
//! renders (inline, never read from disk); h2 headings get ids and a navigation; a small
//! inline stylesheet and script (tables sort by a click on their header) and a
//! Content-Security-Policy that forbids every fetch. Deterministic, like the markdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use pulldown_cmark::{CowStr, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

use super::markdown::ReportMd;
use super::output::{Artefact, Output};
use super::plots::Chart;
use super::Analysed;
use crate::rundir;

/// The run report's page, beside report.md.
pub(crate) const REPORT_HTML: &str = "report.html";

/// report.html, an [`Output`] of the analysed run: report.md's text and the charts'
/// SVGs, each rendered here by the same outputs that write report.md and plots/.
pub(crate) struct ReportHtml {
    pub charts: &'static [&'static dyn Chart],
}

impl Output<Analysed> for ReportHtml {
    fn name(&self) -> &'static str {
        REPORT_HTML
    }

    fn render(&self, run: &Analysed) -> anyhow::Result<Vec<Artefact>> {
        let markdown = ReportMd {
            charts: self.charts,
        }
        .render(run)?;
        let markdown = the_file(&markdown, Path::new(rundir::REPORT_FILE))?;
        let mut images = Images::new();
        for chart in self.charts {
            images.add(chart.render(run)?);
        }
        Ok(vec![Artefact::new(REPORT_HTML, page(markdown, &images)?)])
    }
}

/// The text of the artefact at `path` among an output's `files`.
pub(crate) fn the_file<'a>(files: &'a [Artefact], path: &Path) -> anyhow::Result<&'a str> {
    let file = files
        .iter()
        .find(|a| a.path == path)
        .with_context(|| format!("{} was not rendered", path.display()))?;
    std::str::from_utf8(&file.bytes).with_context(|| format!("{} is not UTF-8", path.display()))
}

/// The SVG files a page may show, by the path its markdown links them with
/// (`plots/saturation.svg`, `compare.svg`).
#[derive(Debug, Default)]
pub(crate) struct Images(BTreeMap<String, Vec<u8>>);

impl Images {
    pub(crate) fn new() -> Images {
        Images::default()
    }

    /// Every SVG among an output's files.
    pub(crate) fn add(&mut self, files: Vec<Artefact>) {
        for file in files {
            if file.path.extension().is_some_and(|e| e == "svg") {
                let link = file
                    .path
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                self.0.insert(link, file.bytes);
            }
        }
    }

    /// The SVG element of `link`, without an XML declaration before it.
    fn svg(&self, link: &str) -> anyhow::Result<&str> {
        let bytes = self
            .0
            .get(link)
            .with_context(|| format!("the markdown shows {link}, which no output drew"))?;
        let text = std::str::from_utf8(bytes).with_context(|| format!("{link} is not UTF-8"))?;
        let start = text
            .find("<svg")
            .with_context(|| format!("{link} holds no <svg> element"))?;
        Ok(text[start..].trim_end())
    }
}

/// A heading's anchor: lower-case letters and digits, words joined by `-`.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        out.push_str("section");
    }
    out
}

/// `&`, `<`, `>` and `"` as entities: for text and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// The plain text of the events up to the end of the element they start in, and where
/// that end is.
fn text_until_end(events: &[Event], from: usize) -> (String, usize) {
    let mut text = String::new();
    let mut depth = 0usize;
    for (i, event) in events.iter().enumerate().skip(from) {
        match event {
            Event::Start(_) => depth += 1,
            Event::End(_) if depth == 0 => return (text, i),
            Event::End(_) => depth -= 1,
            Event::Text(t) | Event::Code(t) => text.push_str(t),
            Event::SoftBreak | Event::HardBreak => text.push(' '),
            _ => {}
        }
    }
    (text, events.len())
}

/// The page's title (its h1), its h2 sections (id, text) and the HTML of its body.
struct Body {
    title: String,
    sections: Vec<(String, String)>,
    html: String,
}

fn body(markdown: &str, images: &Images) -> anyhow::Result<Body> {
    let events: Vec<Event> = Parser::new_ext(markdown, Options::ENABLE_TABLES).collect();
    let mut out: Vec<Event> = Vec::with_capacity(events.len());
    let mut title = String::new();
    let mut sections = Vec::new();
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut i = 0;
    while i < events.len() {
        match &events[i] {
            Event::Start(Tag::Heading { level, .. }) => {
                let (text, _) = text_until_end(&events, i + 1);
                let base = slug(&text);
                let n = ids.entry(base.clone()).or_insert(0);
                *n += 1;
                let id = if *n == 1 { base } else { format!("{base}-{n}") };
                match level {
                    HeadingLevel::H1 if title.is_empty() => title = text.trim().to_string(),
                    HeadingLevel::H2 => sections.push((id.clone(), text.trim().to_string())),
                    _ => {}
                }
                out.push(Event::Start(Tag::Heading {
                    level: *level,
                    id: Some(CowStr::from(id)),
                    classes: Vec::new(),
                    attrs: Vec::new(),
                }));
            }
            Event::Start(Tag::Image { dest_url, .. }) => {
                let (alt, end) = text_until_end(&events, i + 1);
                let svg = images.svg(dest_url)?;
                out.push(Event::InlineHtml(CowStr::from(format!(
                    "<span class=\"plot\" role=\"img\" aria-label=\"{}\">{svg}</span>",
                    escape(&alt)
                ))));
                i = end + 1;
                continue;
            }
            // The markdown is ours and holds no markup: anything that looks like a tag
            // came from the run's data (a failure's reason) and is shown as text.
            Event::Html(t) | Event::InlineHtml(t) => out.push(Event::Text(t.clone())),
            other => out.push(other.clone()),
        }
        i += 1;
    }
    debug_assert!(out.iter().all(|e| !matches!(e, Event::End(TagEnd::Image))));
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, out.into_iter());
    Ok(Body {
        title,
        sections,
        html,
    })
}

/// The whole page of `markdown`, with each image it links replaced by its SVG from
/// `images`. An image no output drew is an error, never a broken link.
pub(crate) fn page(markdown: &str, images: &Images) -> anyhow::Result<String> {
    let Body {
        title,
        sections,
        html,
    } = body(markdown, images)?;
    let title = escape(if title.is_empty() { "report" } else { &title });
    let mut w = String::new();
    w.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    w.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    // Nothing may be fetched: no URL, no font, no script but the inline one.
    w.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n",
    );
    let _ = writeln!(w, "<title>{title}</title>");
    let _ = writeln!(w, "<style>\n{CSS}</style>\n</head>\n<body>");
    let _ = writeln!(
        w,
        "<nav aria-label=\"sections\">\n<a class=\"top\" href=\"#top\">{title}</a>\n<ul>"
    );
    for (id, text) in &sections {
        let _ = writeln!(w, "<li><a href=\"#{id}\">{}</a></li>", escape(text));
    }
    w.push_str("</ul>\n</nav>\n<main id=\"top\">\n");
    w.push_str(&html);
    let _ = writeln!(w, "</main>\n<script>\n{SCRIPT}</script>\n</body>\n</html>");
    Ok(w)
}

const CSS: &str = r#"*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;background:#fff}
nav{position:fixed;top:0;left:0;bottom:0;width:14rem;overflow-y:auto;padding:1rem;background:#f6f8fa;border-right:1px solid #d0d7de;font-size:14px}
nav .top{display:block;font-weight:600;margin-bottom:.75rem;color:#1f2328;text-decoration:none}
nav ul{list-style:none;margin:0;padding:0}
nav li a{display:block;padding:.2rem .4rem;border-radius:4px;color:#0550ae;text-decoration:none}
nav li a:hover{background:#eaeef2}
main{margin-left:14rem;padding:1rem 2rem 4rem;max-width:72rem}
h1{font-size:1.7rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
h2{font-size:1.35rem;margin-top:2.2rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem}
h3{font-size:1.1rem;margin-top:1.6rem}
h1,h2,h3{scroll-margin-top:.5rem}
code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f6f8fa;padding:.1rem .3rem;border-radius:4px}
pre{background:#f6f8fa;padding:.75rem;overflow-x:auto;border-radius:6px}
pre code{padding:0}
table{border-collapse:collapse;margin:1rem 0;font-size:14px;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #d0d7de;padding:.3rem .6rem;vertical-align:top}
th{background:#f6f8fa;text-align:left;white-space:nowrap}
thead:not(:has(th:not(:empty))){display:none}
tbody tr:nth-child(even){background:#fafbfc}
th[data-sort]{cursor:pointer;user-select:none}
th[data-sort]:hover{background:#eaeef2}
th[data-sort]::after{content:" \2195";color:#8c959f;font-size:.8em}
th[aria-sort=ascending]::after{content:" \25B2";color:#1f2328}
th[aria-sort=descending]::after{content:" \25BC";color:#1f2328}
.plot{display:block;margin:.5rem 0 1.5rem}
.plot svg{display:block;max-width:100%;height:auto;border:1px solid #eaeef2}
@media (max-width:60rem){nav{position:static;width:auto;border-right:0;border-bottom:1px solid #d0d7de}nav li{display:inline-block}main{margin-left:0;padding:1rem}}
@media print{nav{display:none}main{margin-left:0}}
"#;

/// Sorts a table by the column whose header is clicked (again: the other way). A cell
/// reads as a number when it starts with one: thousands separators are ignored, and a
/// duration in ns, µs, ms or s is compared in µs, so `850 µs` comes before `1.2 ms`.
/// Empty cells and `–` go last either way; text compares with numbers inside it in
/// order (`c2` before `c10`). When every table is ready it says so on `<html>`
/// (`data-sortable-tables`, their count).
const SCRIPT: &str = r#""use strict";
(function () {
  var PER_US = { "ns": 0.001, "µs": 1, "us": 1, "ms": 1000, "s": 1000000 };
  function key(text) {
    var t = text.trim().replace(/(\d)[,\u00a0\u202f](?=\d{3})/g, "$1");
    if (t === "" || t === "–" || t === "-") return { kind: 2 };
    var m = /^([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([^\s\d]*)/.exec(t);
    if (m) {
      var unit = Object.prototype.hasOwnProperty.call(PER_US, m[2]) ? PER_US[m[2]] : 1;
      return { kind: 0, n: parseFloat(m[1]) * unit };
    }
    return { kind: 1, s: t };
  }
  function compare(a, b) {
    if (a.kind !== b.kind) return a.kind - b.kind;
    if (a.kind === 0) return a.n - b.n;
    if (a.kind === 1) return a.s.localeCompare(b.s, "en", { numeric: true });
    return 0;
  }
  function sortBy(table, th, col) {
    var up = th.getAttribute("aria-sort") !== "ascending";
    var heads = table.tHead.rows[0].cells;
    for (var i = 0; i < heads.length; i++) heads[i].removeAttribute("aria-sort");
    th.setAttribute("aria-sort", up ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.map.call(body.rows, function (row, i) {
      var cell = row.cells[col];
      return { row: row, i: i, k: key(cell ? cell.textContent : "") };
    });
    rows.sort(function (a, b) {
      if (a.k.kind === 2 || b.k.kind === 2) return compare(a.k, b.k) || a.i - b.i;
      return (up ? compare(a.k, b.k) : compare(b.k, a.k)) || a.i - b.i;
    });
    rows.forEach(function (r) { body.appendChild(r.row); });
  }
  var tables = document.querySelectorAll("table");
  var ready = 0;
  Array.prototype.forEach.call(tables, function (table) {
    if (!table.tHead || !table.tBodies.length) return;
    var heads = table.tHead.rows[0].cells;
    var named = Array.prototype.some.call(heads, function (th) {
      return th.textContent.trim() !== "";
    });
    if (!named) return;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.setAttribute("data-sort", "");
      th.tabIndex = 0;
      th.title = "Sort by this column";
      th.addEventListener("click", function () { sortBy(table, th, col); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th, col); }
      });
    });
    ready++;
  });
  document.documentElement.setAttribute("data-sortable-tables", String(ready));
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;

    fn images(files: &[(&str, &str)]) -> Images {
        let mut images = Images::new();
        images.add(
            files
                .iter()
                .map(|(path, svg)| Artefact::new(*path, *svg))
                .collect(),
        );
        images
    }

    #[test]
    fn headings_get_ids_and_h2s_make_the_navigation() {
        let md = "# Run `r1`\n\n## Findings\n\ntext\n\n## Plots\n\n### A chart\n\n## Findings\n";
        let html = page(md, &Images::new()).unwrap();
        assert!(html.contains("<title>Run r1</title>"), "{html}");
        assert!(html.contains("<h1 id=\"run-r1\">"), "{html}");
        assert!(html.contains("<h2 id=\"findings\">Findings</h2>"), "{html}");
        assert!(html.contains("<h3 id=\"a-chart\">"), "{html}");
        // A repeated heading gets an id of its own.
        assert!(html.contains("<h2 id=\"findings-2\">"), "{html}");
        let nav = &html[html.find("<nav").unwrap()..html.find("</nav>").unwrap()];
        assert!(nav.contains("<li><a href=\"#findings\">Findings</a></li>\n<li><a href=\"#plots\">Plots</a></li>\n<li><a href=\"#findings-2\">"), "{nav}");
        assert!(!nav.contains("a-chart"), "only h2s: {nav}");
    }

    #[test]
    fn images_become_their_svg_inline_and_a_missing_one_is_an_error() {
        let svg = "<svg width=\"2\" height=\"1\" viewBox=\"0 0 2 1\"><text>a &lt; b</text></svg>\n";
        let md = "## Plots\n\n![Peak & more](plots/x.svg)\n";
        let html = page(md, &images(&[("plots/x.svg", svg)])).unwrap();
        assert!(
            html.contains(&format!(
                "<p><span class=\"plot\" role=\"img\" aria-label=\"Peak &amp; more\">{}</span></p>",
                svg.trim_end()
            )),
            "{html}"
        );
        assert!(!html.contains("<img"), "{html}");
        let err = page(md, &images(&[("plots/y.svg", svg)])).unwrap_err();
        assert!(format!("{err:#}").contains("plots/x.svg"), "{err:#}");
        // An XML declaration before the element is dropped.
        let declared = format!("<?xml version=\"1.0\"?>\n{svg}");
        let html = page(md, &images(&[("plots/x.svg", &declared)])).unwrap();
        assert!(!html.contains("<?xml"), "{html}");
    }

    #[test]
    fn tables_and_text_from_the_data_stay_text() {
        let md =
            "| cell | reason |\n|---|---|\n| `c001` | exited <script>alert(1)</script> & died |\n";
        let html = page(md, &Images::new()).unwrap();
        assert!(html.contains("<table>"), "{html}");
        assert!(html.contains("<th>cell</th><th>reason</th>"), "{html}");
        assert!(
            html.contains("exited &lt;script&gt;alert(1)&lt;/script&gt; &amp; died"),
            "{html}"
        );
        assert_eq!(html.matches("<script>").count(), 1, "only the page's own");
    }

    #[test]
    fn the_page_fetches_nothing() {
        let html = page("# r\n\n[docs](docs/results.md)\n", &Images::new()).unwrap();
        assert!(html.contains("default-src 'none'"));
        for forbidden in ["http://", "https://", "src=", "@import", "url("] {
            assert!(!html.contains(forbidden), "{forbidden} in the page");
        }
    }

    #[test]
    fn report_html_has_the_markdown_s_tables_and_every_chart_inline() {
        let run = fixture::closed_with_histograms();
        let charts = crate::report::CHARTS;
        let md = ReportMd { charts }.render(&run).unwrap();
        let md = the_file(&md, Path::new(rundir::REPORT_FILE)).unwrap();
        let html = ReportHtml { charts }.render(&run).unwrap();
        assert_eq!(html.len(), 1);
        assert_eq!(html[0].path, Path::new(REPORT_HTML));
        let page = std::str::from_utf8(&html[0].bytes).unwrap();
        // Every table of report.md, row for row.
        let md_tables = md.lines().filter(|l| l.starts_with("|---")).count();
        assert!(md_tables > 0);
        assert_eq!(page.matches("<table>").count(), md_tables);
        let md_rows = md.lines().filter(|l| l.starts_with('|')).count();
        assert_eq!(page.matches("<tr>").count(), md_rows - md_tables);
        // Every chart's SVG, byte for byte, and no link to a file.
        for chart in charts {
            for svg in chart.render(&run).unwrap() {
                let text = String::from_utf8(svg.bytes).unwrap();
                assert!(page.contains(text.trim_end()), "{}", svg.path.display());
            }
        }
        assert!(!page.contains("\"plots/"), "no link to plots/");
        // The same bytes twice.
        let again = ReportHtml { charts }.render(&run).unwrap();
        assert_eq!(html, again);
    }

    #[test]
    fn slugs_are_lower_case_words() {
        assert_eq!(slug("Where the time goes"), "where-the-time-goes");
        assert_eq!(slug("Peak: `c001` (2 workers)"), "peak-c001-2-workers");
        assert_eq!(slug("µs & ms"), "µs-ms");
        assert_eq!(slug("—"), "section");
    }
}
