//! `index.html`: a static, offline gallery of a batch's snapshots, one card per case,
//! built from every `report*.csv` in the output folder (so shards that share a folder
//! share one gallery).

use super::report::{merged_rows, Row, Status};
use crate::error::Result;
use crate::io::write_bytes_atomic;
use std::fmt::Write as _;
use std::path::Path;

/// Escapes text for HTML element content and quoted attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escapes a relative path for an `src`/`href` attribute: each path segment
/// percent-encoded except unreserved characters.
fn url_path(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:1em;background:#f4f4f4;color:#222}
h1{font-size:1.3em;margin:0 0 .3em}
.summary{margin:.3em 0 1em}
.summary a{margin-right:.6em}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:12px}
.card{background:#fff;border:1px solid #ccc;border-radius:6px;padding:8px;overflow:hidden}
.card.failed{border:2px solid #c00;background:#fff0f0}
.card.skipped{border:1px dashed #999;background:#fafafa}
.card.warned{border:2px solid #e0a000}
.card h2{font-size:1em;margin:0 0 4px;word-break:break-all}
.card img{width:100%;image-rendering:auto;background:#000;display:block}
.meta{font-size:.85em;color:#555;margin:4px 0}
.vol{font-weight:600}
.sw{display:inline-block;width:.8em;height:.8em;border-radius:2px;vertical-align:-1px;margin-right:3px}
.warn{background:#fff3c4;border-left:4px solid #e0a000;padding:2px 6px;margin:3px 0;font-size:.85em}
.err{color:#a00;font-weight:600;font-size:.9em;white-space:pre-wrap;word-break:break-word}
.status{font-size:.8em;padding:1px 5px;border-radius:3px;color:#fff;background:#2a7}
.status.failed{background:#c00}.status.skipped{background:#888}
";

/// The gallery page for `rows`, sorted by case name. `colors` gives the swatch colour
/// (0..=1 RGB) shown beside the right and left lung volumes.
pub fn render_index(rows: &[&Row], colors: [[f64; 3]; 2], problems: &[String]) -> String {
    let count = |s: Status| rows.iter().filter(|r| r.status == s).count();
    let warned = rows
        .iter()
        .filter(|r| r.status == Status::Ok && !r.warning_list().is_empty())
        .count();
    let swatch = |c: [f64; 3]| {
        let [r, g, b] = c.map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8);
        format!("<span class=\"sw\" style=\"background:#{r:02x}{g:02x}{b:02x}\"></span>")
    };
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n");
    h.push_str("<title>segkit batch</title>\n<style>");
    h.push_str(STYLE);
    h.push_str("</style></head><body>\n<h1>segkit batch</h1>\n");
    let _ = writeln!(
        h,
        "<div class=\"summary\">{} cases: {} ok ({} with warnings), {} failed, {} skipped. \
         {} right lung, {} left lung; outlines on axial (patient's right on the left), \
         coronal and sagittal (anterior on the left) slices, lung window W 1500 L -600.</div>",
        rows.len(),
        count(Status::Ok),
        warned,
        count(Status::Failed),
        count(Status::Skipped),
        swatch(colors[0]),
        swatch(colors[1]),
    );
    let problem_links: Vec<String> = rows
        .iter()
        .filter(|r| r.status == Status::Failed || !r.warning_list().is_empty())
        .map(|r| {
            format!(
                "<a href=\"#{}\">{}</a>",
                html_escape(&anchor(&r.case)),
                html_escape(&r.case)
            )
        })
        .collect();
    if !problem_links.is_empty() {
        let _ = writeln!(
            h,
            "<div class=\"summary\">To check first: {}</div>",
            problem_links.join(" ")
        );
    }
    for p in problems {
        let _ = writeln!(h, "<div class=\"warn\">{}</div>", html_escape(p));
    }
    h.push_str("<div class=\"grid\">\n");
    for row in rows {
        let warnings = row.warning_list();
        let class = match row.status {
            Status::Ok if !warnings.is_empty() => "card warned",
            Status::Ok => "card",
            Status::Failed => "card failed",
            Status::Skipped => "card skipped",
        };
        let _ = writeln!(
            h,
            "<div class=\"{class}\" id=\"{}\"><h2>{} <span class=\"status {}\">{}</span></h2>",
            html_escape(&anchor(&row.case)),
            html_escape(&row.case),
            row.status.as_str(),
            row.status.as_str()
        );
        if !row.snapshot.is_empty() {
            let _ = writeln!(
                h,
                "<a href=\"{0}\"><img loading=\"lazy\" src=\"{0}\" alt=\"{1}\"></a>",
                html_escape(&url_path(&row.snapshot)),
                html_escape(&row.case)
            );
        }
        if row.status == Status::Ok {
            let _ = writeln!(
                h,
                "<div class=\"meta\">{}<span class=\"vol\">R {} mL</span> &nbsp; {}<span class=\"vol\">L {} mL</span> &nbsp; threshold {} HU</div>",
                swatch(colors[0]),
                html_escape(&row.right_lung_ml),
                swatch(colors[1]),
                html_escape(&row.left_lung_ml),
                html_escape(&row.threshold_hu)
            );
        }
        for w in &warnings {
            let _ = writeln!(h, "<div class=\"warn\">{}</div>", html_escape(w));
        }
        if !row.error.is_empty() {
            let _ = writeln!(h, "<div class=\"err\">{}</div>", html_escape(&row.error));
        }
        let mut meta = Vec::new();
        if !row.dimensions.is_empty() {
            meta.push(format!("{} voxels", row.dimensions));
        }
        if !row.spacing_mm.is_empty() {
            meta.push(format!("{} mm", row.spacing_mm));
        }
        if !row.seconds.is_empty() {
            meta.push(format!("{} s", row.seconds));
        }
        if !row.source.is_empty() {
            meta.push(row.source.clone());
        }
        if !row.series_uid.is_empty() {
            meta.push(row.series_uid.clone());
        }
        let _ = write!(h, "<div class=\"meta\">{}", html_escape(&meta.join(" · ")));
        if !row.label_file.is_empty() {
            let _ = write!(
                h,
                " · <a href=\"{}\">{}</a>",
                html_escape(&url_path(&row.label_file)),
                html_escape(&row.label_file)
            );
        }
        h.push_str("</div></div>\n");
    }
    h.push_str("</div>\n</body></html>\n");
    h
}

fn anchor(case: &str) -> String {
    format!("case-{case}")
}

/// Rebuilds `dir/index.html` from every report in `dir`, atomically.
pub fn write_index(dir: &Path, colors: [[f64; 3]; 2]) -> Result<()> {
    let (rows, problems) = merged_rows(dir);
    let rows: Vec<&Row> = rows.values().collect();
    let html = render_index(&rows, colors, &problems);
    write_bytes_atomic(&dir.join("index.html"), html.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            html_escape("<b>\"R&L\"</b> it's"),
            "&lt;b&gt;&quot;R&amp;L&quot;&lt;/b&gt; it&#39;s"
        );
        assert_eq!(url_path("snapshots/a b#1.png"), "snapshots/a%20b%231.png");
    }

    #[test]
    fn cards_show_volumes_warnings_and_failures() {
        let ok = Row {
            case: "a<1>".into(),
            status: Status::Ok,
            right_lung_ml: "2400.0".into(),
            left_lung_ml: "2100.0".into(),
            threshold_hu: "-500.0".into(),
            warnings: "one lung <small>".into(),
            snapshot: "snapshots/a_1.png".into(),
            label_file: "a_1-label.nrrd".into(),
            ..Row::default()
        };
        let failed = Row {
            case: "b".into(),
            status: Status::Failed,
            error: "not a CT: Modality MR".into(),
            ..Row::default()
        };
        let html = render_index(&[&ok, &failed], [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], &[]);
        assert!(html.contains("a&lt;1&gt;"));
        assert!(!html.contains("a<1>"));
        assert!(html.contains("<div class=\"warn\">one lung &lt;small&gt;</div>"));
        assert!(html.contains("class=\"card failed\" id=\"case-b\""));
        assert!(html.contains("not a CT: Modality MR"));
        assert!(html.contains("R 2400.0 mL"));
        assert!(html.contains("src=\"snapshots/a_1.png\""));
        assert!(html.contains("2 cases: 1 ok (1 with warnings), 1 failed, 0 skipped"));
        assert!(html.contains("background:#00ff00"));
    }
}
