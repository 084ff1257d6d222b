//! The batch report: one CSV row per case (RFC 4180 quoting), written atomically after
//! every case, and read back to skip finished cases and to build the gallery.

use crate::error::{Error, Result};
use crate::io::write_bytes_atomic;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The report's columns, in order.
pub const COLUMNS: [&str; 14] = [
    "case",
    "status",
    "series_uid",
    "dimensions",
    "spacing_mm",
    "right_lung_ml",
    "left_lung_ml",
    "threshold_hu",
    "warnings",
    "error",
    "seconds",
    "label_file",
    "snapshot",
    "source",
];

/// How a case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    /// Labelled; the label file and snapshot were written.
    Ok,
    /// Not labelled; `error` says why.
    #[default]
    Failed,
    /// Not a case: a file under the input folder that is not an image (`error` says why).
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }

    fn parse(s: &str) -> Option<Status> {
        match s {
            "ok" => Some(Status::Ok),
            "failed" => Some(Status::Failed),
            "skipped" => Some(Status::Skipped),
            _ => None,
        }
    }
}

/// One line of the report. Numbers are kept as the text written, so a row read back and
/// written again is unchanged.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    pub case: String,
    pub status: Status,
    pub series_uid: String,
    /// `512x512x300` (i x j x k).
    pub dimensions: String,
    /// `0.65x0.65x8`.
    pub spacing_mm: String,
    pub right_lung_ml: String,
    pub left_lung_ml: String,
    pub threshold_hu: String,
    /// Joined with `; `.
    pub warnings: String,
    pub error: String,
    pub seconds: String,
    /// Relative to the output folder.
    pub label_file: String,
    /// Relative to the output folder.
    pub snapshot: String,
    /// The input file or folder, relative to the input folder.
    pub source: String,
}

impl Row {
    fn fields(&self) -> [&str; 14] {
        [
            &self.case,
            self.status.as_str(),
            &self.series_uid,
            &self.dimensions,
            &self.spacing_mm,
            &self.right_lung_ml,
            &self.left_lung_ml,
            &self.threshold_hu,
            &self.warnings,
            &self.error,
            &self.seconds,
            &self.label_file,
            &self.snapshot,
            &self.source,
        ]
    }

    /// The warnings one by one.
    pub fn warning_list(&self) -> Vec<&str> {
        self.warnings
            .split("; ")
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .collect()
    }
}

/// `512x512x300`.
pub fn format_dimensions(size_ijk: [usize; 3]) -> String {
    format!("{}x{}x{}", size_ijk[0], size_ijk[1], size_ijk[2])
}

/// `0.65x0.65x8`: each spacing with at most 4 decimals, trailing zeros dropped.
pub fn format_spacing(spacing: [f64; 3]) -> String {
    spacing.map(trim_number).join("x")
}

fn trim_number(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// A number with one decimal (`2431.5`).
pub fn format_one_decimal(v: f64) -> String {
    format!("{v:.1}")
}

/// One CSV field, quoted when it holds a comma, a quote, a line break or spaces at
/// either end; quotes are doubled (RFC 4180).
pub fn csv_field(s: &str) -> String {
    let needs_quotes = s.contains([',', '"', '\n', '\r'])
        || s.starts_with(char::is_whitespace)
        || s.ends_with(char::is_whitespace);
    if needs_quotes {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The report text: the header and `rows` sorted by case name, one line each.
pub fn to_csv(rows: &[Row]) -> String {
    let mut sorted: Vec<&Row> = rows.iter().collect();
    sorted.sort_by(|a, b| a.case.cmp(&b.case));
    let mut out = COLUMNS.join(",");
    out.push('\n');
    for row in sorted {
        let line: Vec<String> = row.fields().iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// Writes the report atomically.
pub fn write_report(path: &Path, rows: &[Row]) -> Result<()> {
    write_bytes_atomic(path, to_csv(rows).as_bytes())
}

/// Splits CSV text into records of fields (RFC 4180: quoted fields may hold commas,
/// doubled quotes and line breaks; `\r\n` and `\n` end records). A blank line is skipped.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut field_started = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if !field_started => {
                quoted = true;
                field_started = true;
            }
            ',' => {
                record.push(std::mem::take(&mut field));
                field_started = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                if field_started || !record.is_empty() {
                    record.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut record));
                }
                field_started = false;
            }
            _ => {
                field.push(c);
                field_started = true;
            }
        }
    }
    if field_started || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

/// Reads a report written by [`write_report`] (columns are found by their header name,
/// so reports with fewer or more columns are read too). Rows with an unknown status are
/// dropped.
pub fn read_report(path: &Path) -> Result<Vec<Row>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut records = parse_csv(&text).into_iter();
    let Some(header) = records.next() else {
        return Ok(Vec::new());
    };
    let column = |name: &str| header.iter().position(|h| h.trim() == name);
    let index: Vec<Option<usize>> = COLUMNS.iter().map(|c| column(c)).collect();
    if index[0].is_none() {
        return Err(Error::format(path, "CSV", "no 'case' column"));
    }
    let mut rows = Vec::new();
    for record in records {
        let get = |c: usize| {
            index[c]
                .and_then(|n| record.get(n))
                .cloned()
                .unwrap_or_default()
        };
        let Some(status) = Status::parse(&get(1)) else {
            continue;
        };
        rows.push(Row {
            case: get(0),
            status,
            series_uid: get(2),
            dimensions: get(3),
            spacing_mm: get(4),
            right_lung_ml: get(5),
            left_lung_ml: get(6),
            threshold_hu: get(7),
            warnings: get(8),
            error: get(9),
            seconds: get(10),
            label_file: get(11),
            snapshot: get(12),
            source: get(13),
        });
    }
    Ok(rows)
}

/// True for the names of batch reports: `report.csv` and `report-<I>-of-<N>.csv`.
pub fn is_report_name(name: &str) -> bool {
    name.starts_with("report") && name.ends_with(".csv")
}

/// The report files in `dir` (`report*.csv`), oldest first (by modification time, then
/// name), so that later reports win when rows are merged.
pub fn report_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| is_report_name(&e.file_name().to_string_lossy()))
        .filter_map(|e| {
            let modified = e.metadata().ok()?.modified().ok()?;
            Some((modified, e.path()))
        })
        .collect();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

/// Every row of every report in `dir`, one per case: where several reports have a row
/// for a case, the most recently written report's row. Unreadable reports are left out
/// and returned as messages.
pub fn merged_rows(dir: &Path) -> (BTreeMap<String, Row>, Vec<String>) {
    let mut rows = BTreeMap::new();
    let mut problems = Vec::new();
    for path in report_files(dir) {
        match read_report(&path) {
            Ok(list) => {
                for row in list {
                    rows.insert(row.case.clone(), row);
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    (rows, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("-512.3"), "-512.3");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field(" padded"), "\" padded\"");
        assert_eq!(csv_field(""), "");
    }

    #[test]
    fn rows_survive_a_write_and_a_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.csv");
        let rows = vec![
            Row {
                case: "zeta".into(),
                status: Status::Failed,
                error: "x.nrrd: invalid NRRD: \"sizes\" says 3, got 2,\nand more".into(),
                seconds: "0.1".into(),
                ..Row::default()
            },
            Row {
                case: "alpha".into(),
                status: Status::Ok,
                series_uid: "1.2.3".into(),
                dimensions: format_dimensions([512, 512, 30]),
                spacing_mm: format_spacing([0.703125, 0.703125, 8.0]),
                right_lung_ml: format_one_decimal(2431.46),
                left_lung_ml: format_one_decimal(2000.0),
                threshold_hu: format_one_decimal(-512.04),
                warnings: "one lung only; trachea, not found".into(),
                label_file: "alpha-label.nrrd".into(),
                snapshot: "snapshots/alpha.png".into(),
                ..Row::default()
            },
        ];
        write_report(&path, &rows).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("case,status,series_uid,dimensions,spacing_mm,"));
        assert!(text.contains("alpha,ok,1.2.3,512x512x30,0.7031x0.7031x8,2431.5,2000.0,-512.0,"));
        let back = read_report(&path).unwrap();
        // Sorted by case on writing.
        assert_eq!(back, vec![rows[1].clone(), rows[0].clone()]);
        assert_eq!(
            back[0].warning_list(),
            vec!["one lung only", "trachea, not found"]
        );
    }

    #[test]
    fn csv_parsing_handles_crlf_quotes_and_blank_lines() {
        let text = "a,b\r\n\"x,1\",\"say \"\"q\"\"\"\r\n\r\n,\nlast,\"multi\nline\"";
        assert_eq!(
            parse_csv(text),
            vec![
                vec!["a", "b"],
                vec!["x,1", "say \"q\""],
                vec!["", ""],
                vec!["last", "multi\nline"]
            ]
        );
    }

    #[test]
    fn reports_with_other_columns_are_read_by_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report-0-of-2.csv");
        std::fs::write(&path, "status,extra,case\nok,1,b\nweird,2,c\nfailed,3,a\n").unwrap();
        let rows = read_report(&path).unwrap();
        let got: Vec<(&str, Status)> = rows.iter().map(|r| (r.case.as_str(), r.status)).collect();
        assert_eq!(got, vec![("b", Status::Ok), ("a", Status::Failed)]);
    }

    #[test]
    fn later_reports_win_when_merged() {
        let dir = tempfile::tempdir().unwrap();
        let old = Row {
            case: "a".into(),
            status: Status::Failed,
            ..Row::default()
        };
        write_report(&dir.path().join("report-0-of-2.csv"), &[old]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let new = Row {
            case: "a".into(),
            status: Status::Ok,
            ..Row::default()
        };
        let other = Row {
            case: "b".into(),
            status: Status::Ok,
            ..Row::default()
        };
        write_report(&dir.path().join("report.csv"), &[new, other]).unwrap();
        std::fs::write(dir.path().join("notes.csv"), "x").unwrap();
        let (rows, problems) = merged_rows(dir.path());
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows["a"].status, Status::Ok);
    }
}
