//! compare.html: compare.md's markdown as one self-contained page with compare.svg
//! inline, made by the run report's page builder (`report::html`).

use std::path::Path;

use super::md::CompareMd;
use super::plot::CompareSvg;
use super::{Comparison, COMPARE_HTML, COMPARE_MD};
use crate::report::html::{page, the_file, Images};
use crate::report::output::{Artefact, Output};

/// compare.html, an [`Output`] of a comparison: the text and the plot rendered by the
/// same outputs that write compare.md and compare.svg.
pub(super) struct CompareHtml;

impl Output<Comparison> for CompareHtml {
    fn name(&self) -> &'static str {
        COMPARE_HTML
    }

    fn render(&self, c: &Comparison) -> anyhow::Result<Vec<Artefact>> {
        let markdown = CompareMd.render(c)?;
        let markdown = the_file(&markdown, Path::new(COMPARE_MD))?;
        let mut images = Images::new();
        images.add(CompareSvg.render(c)?);
        Ok(vec![Artefact::new(COMPARE_HTML, page(markdown, &images)?)])
    }
}
