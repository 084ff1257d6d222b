//! `segkit batch` end to end on real data: a good CT series, the same series with a slice
//! missing, an MR series, corrupt files and a NRRD CT; the report's rows and reasons,
//! label files, snapshots, the gallery, a rerun that skips done cases, and a shard.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

fn segkit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segkit"))
        .args(args)
        .output()
        .expect("the segkit binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The report as case -> column -> value (a minimal RFC 4180 reader, independent of
/// segkit's own).
fn read_report(path: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut records: Vec<Vec<String>> = Vec::new();
    let (mut record, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    let header = records.remove(0);
    records
        .into_iter()
        .map(|r| {
            assert_eq!(r.len(), header.len(), "{r:?}");
            let row: BTreeMap<String, String> = header.iter().cloned().zip(r).collect();
            (row["case"].clone(), row)
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path, skip: Option<&str>) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if Some(e.file_name().to_string_lossy().as_ref()) != skip {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The test folder: returns (input folder, its temp dir guard).
fn build_input(data: &Path) -> (PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    let series = data.join("lung_pet_ct_dx/Lung_Dx-A0002/series3_8mm_B40f");
    copy_dir(&series, &input.join("Lung_Dx-A0002"), None);
    copy_dir(&series, &input.join("missing_slice"), Some("1-15.dcm"));
    std::fs::create_dir_all(input.join("mr")).unwrap();
    std::fs::copy(
        data.join("dcm_qa_enh/In/Siemens/XA10/6_1.dcm"),
        input.join("mr/6_1.dcm"),
    )
    .unwrap();
    std::fs::create_dir_all(input.join("junk")).unwrap();
    // Random-looking bytes (a fixed LCG: the test is reproducible).
    let mut x: u32 = 12345;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    std::fs::write(input.join("junk/random.dcm"), noise).unwrap();
    let ct = std::fs::read(data.join("slicerio/slicerio/data/CTChest4.nrrd")).unwrap();
    std::fs::write(input.join("CTChest4.nrrd"), &ct).unwrap();
    std::fs::write(input.join("truncated.nrrd"), &ct[..ct.len() / 3]).unwrap();
    (input, dir)
}

fn is_png(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes.len() > 100 && bytes.starts_with(b"\x89PNG\r\n\x1a\n")
}

#[test]
fn batch_labels_a_folder_reports_failures_and_reruns() {
    let data = require_data!("");
    let (input, dir) = build_input(&data);
    let out = dir.path().join("out");
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());

    let start = Instant::now();
    let run = segkit(&["batch", i, "-o", o, "--jobs", "2"]);
    eprintln!(
        "first batch run: {:.1} s\n{}",
        start.elapsed().as_secs_f64(),
        stderr(&run)
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let rows = read_report(&out.join("report.csv"));
    let names: Vec<&str> = rows.keys().map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "CTChest4",
            "Lung_Dx-A0002",
            "junk/random.dcm",
            "missing_slice",
            "mr",
            "truncated"
        ]
    );

    for case in ["CTChest4", "Lung_Dx-A0002"] {
        let row = &rows[case];
        assert_eq!(row["status"], "ok", "{case}: {row:?}");
        let (r, l): (f64, f64) = (
            row["right_lung_ml"].parse().unwrap(),
            row["left_lung_ml"].parse().unwrap(),
        );
        assert!(r > 100.0 && l > 100.0, "{case}: R {r} L {l}");
        assert_eq!(row["label_file"], format!("{case}-label.nrrd"));
        assert!(out.join(&row["label_file"]).is_file());
        assert!(is_png(&out.join(&row["snapshot"])), "{case}");
        assert!(row["threshold_hu"].parse::<f64>().is_ok());
    }
    assert_eq!(rows["CTChest4"]["dimensions"], "128x128x34");
    assert_eq!(rows["Lung_Dx-A0002"]["dimensions"], "512x512x30");
    assert!(rows["Lung_Dx-A0002"]["series_uid"].starts_with("1."));
    assert_eq!(rows["CTChest4"]["series_uid"], "");

    // The missing slice: labelled with a warning, or failed saying why.
    let gap = &rows["missing_slice"];
    match gap["status"].as_str() {
        "ok" => assert!(gap["warnings"].contains("missing slice"), "{gap:?}"),
        "failed" => assert!(gap["error"].contains("slice"), "{gap:?}"),
        other => panic!("missing_slice: status {other}"),
    }
    assert_eq!(gap["dimensions"], "512x512x29");

    let mr = &rows["mr"];
    assert_eq!(mr["status"], "failed");
    assert!(
        mr["error"].contains("not a CT") && mr["error"].contains("MR"),
        "{mr:?}"
    );

    let junk = &rows["junk/random.dcm"];
    assert_eq!(junk["status"], "skipped");
    assert!(junk["error"].contains("not a DICOM file"), "{junk:?}");

    let cut = &rows["truncated"];
    assert_eq!(cut["status"], "failed");
    assert!(cut["error"].contains("truncated.nrrd"), "{cut:?}");
    assert_eq!(cut["label_file"], "");

    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("snapshots/CTChest4.png"));
    assert!(html.contains("class=\"card failed\" id=\"case-mr\""));
    assert!(html.contains("not a CT"));

    // A rerun skips the done cases and keeps their rows.
    let start = Instant::now();
    let again = segkit(&["batch", i, "-o", o]);
    eprintln!(
        "rerun: {:.1} s\n{}",
        start.elapsed().as_secs_f64(),
        stderr(&again)
    );
    assert!(again.status.success(), "{}", stderr(&again));
    let done_before = rows.values().filter(|r| r["status"] == "ok").count();
    assert!(
        stderr(&again).contains(&format!("{done_before} skipped (done before)")),
        "{}",
        stderr(&again)
    );
    let rows_again = read_report(&out.join("report.csv"));
    assert_eq!(rows_again["CTChest4"], rows["CTChest4"]);
    assert_eq!(rows_again.len(), rows.len());
}

#[test]
fn a_shard_labels_every_nth_case() {
    let data = require_data!("");
    let (input, dir) = build_input(&data);
    let out = dir.path().join("out");
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    // Sorted cases: CTChest4, Lung_Dx-A0002, missing_slice, mr, truncated; shard 1/2
    // takes the second and the fourth. Files that are not images are in shard 0's report.
    let run = segkit(&["batch", i, "-o", o, "--shard", "1/2"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let rows = read_report(&out.join("report-1-of-2.csv"));
    let names: Vec<&str> = rows.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, vec!["Lung_Dx-A0002", "mr"]);
    assert!(!out.join("report.csv").exists());
    assert!(
        stderr(&run).contains("shard 1/2 (2 of 5 cases)"),
        "{}",
        stderr(&run)
    );

    let bad = segkit(&["batch", i, "-o", o, "--shard", "2/2"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("0/2 to 1/2"), "{}", stderr(&bad));
}

#[test]
fn a_folder_where_every_case_fails_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("broken.nrrd"), b"NRRD0004\ntype: short\n").unwrap();
    let out = dir.path().join("out");
    let run = segkit(&[
        "batch",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("every case failed"),
        "{}",
        stderr(&run)
    );
    let rows = read_report(&out.join("report.csv"));
    assert_eq!(rows["broken"]["status"], "failed");

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let run = segkit(&[
        "batch",
        empty.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("no case found"), "{}", stderr(&run));
}
