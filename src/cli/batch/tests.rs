//! The runner with fake pipelines on small NRRD volumes: rows and reasons, rerun,
//! shards, concurrency, panics.

use super::*;
use crate::volume::{Geometry, Volume};
use ndarray::Array3;

/// An observer that ignores everything.
struct Quiet;
impl Observer for Quiet {}

/// Air (-1000) in a 6x6x4 box of 2 mm voxels, or `fill` everywhere.
fn write_case(dir: &Path, name: &str, fill: Option<i16>) {
    let g = Geometry {
        spacing: [2.0, 2.0, 2.0],
        ..Geometry::default()
    };
    let data = Array3::from_shape_fn((4, 6, 6), |(k, j, i)| match fill {
        Some(v) => v,
        None if (1..3).contains(&k) && (1..5).contains(&j) && (1..5).contains(&i) => -900,
        None => 40,
    });
    io::nrrd::write_volume(&dir.join(name), &AnyVolume::I16(Volume::new(data, g))).unwrap();
}

/// Labels voxels below -500: 1 on the low-i half, 2 on the other. Fails when nothing is
/// below -500; panics on a volume whose first voxel is 1234.
fn fake() -> Pipeline {
    Pipeline {
        name: "fake",
        modality: Some("CT"),
        colors: [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
        run: Box::new(|ct, control| {
            control.check()?;
            let v = ct.cast::<i16>();
            if v.data[[0, 0, 0]] == 1234 {
                panic!("the fake pipeline met 1234");
            }
            let ni = v.data.dim().2;
            let labels = Array3::from_shape_fn(v.data.dim(), |(k, j, i)| {
                match (v.data[[k, j, i]] < -500, i < ni / 2) {
                    (false, _) => 0u16,
                    (true, true) => 1,
                    (true, false) => 2,
                }
            });
            let voxel_ml = v.geometry.spacing.iter().product::<f64>() / 1000.0;
            let count = |l| labels.iter().filter(|&&x| x == l).count() as f64 * voxel_ml;
            let (right_ml, left_ml) = (count(1), count(2));
            if right_ml + left_ml == 0.0 {
                return Err(EffectError::Input("no air".into()));
            }
            Ok(Labelled {
                labels: Volume::new(labels, v.geometry),
                segments: vec![
                    Segment::new("r", "right", 1, 0),
                    Segment::new("l", "left", 2, 0),
                ],
                right_ml,
                left_ml,
                threshold_hu: -500.0,
                warnings: vec!["fake, \"made up\"".into()],
            })
        }),
    }
}

fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_case(d, "good.nrrd", None);
    write_case(d, "water.nrrd", Some(0));
    write_case(d, "boom.nrrd", Some(1234));
    write_case(d, "good-label.nrrd", Some(0));
    std::fs::create_dir(d.join("sub")).unwrap();
    write_case(&d.join("sub"), "second.nrrd", None);
    std::fs::write(d.join("readme.txt"), "not an image").unwrap();
    let bytes = std::fs::read(d.join("good.nrrd")).unwrap();
    std::fs::write(d.join("cut.nrrd"), &bytes[..bytes.len() / 2]).unwrap();
    dir
}

fn config(input: &Path, output: &Path) -> Config {
    Config {
        input: input.to_path_buf(),
        output: output.to_path_buf(),
        shard: Shard::ALL,
        format: LabelFormat::LabelNrrd,
        jobs: 1,
        force: false,
    }
}

fn rows_of(path: &Path) -> BTreeMap<String, Row> {
    report::read_report(path)
        .unwrap()
        .into_iter()
        .map(|r| (r.case.clone(), r))
        .collect()
}

use std::collections::BTreeMap;

#[test]
fn every_case_gets_a_row_and_failures_do_not_stop_the_batch() {
    let input = folder();
    let out = tempfile::tempdir().unwrap();
    let cfg = config(input.path(), out.path());
    let s = run_batch(&cfg, &fake(), &Quiet).unwrap();
    assert_eq!((s.found, s.ok, s.failed, s.skipped_files), (5, 2, 3, 1));
    let rows = rows_of(&out.path().join("report.csv"));
    let names: Vec<&str> = rows.keys().map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        vec!["boom", "cut", "good", "readme.txt", "second", "water"]
    );

    let good = &rows["good"];
    assert_eq!(good.status, Status::Ok);
    assert_eq!(good.dimensions, "6x6x4");
    assert_eq!(good.spacing_mm, "2x2x2");
    // 2 x 4 x 4 voxels of 8 uL below -500, half on each side.
    assert_eq!(
        (good.right_lung_ml.as_str(), good.left_lung_ml.as_str()),
        ("0.1", "0.1")
    );
    assert_eq!(good.warnings, "fake, \"made up\"");
    assert_eq!(good.label_file, "good-label.nrrd");
    assert_eq!(good.snapshot, "snapshots/good.png");
    assert_eq!(good.source, "good.nrrd");
    let labels = io::open(&out.path().join("good-label.nrrd"))
        .unwrap()
        .into_volume();
    assert_eq!(labels.min_max(), Some((0.0, 2.0)));
    let png = std::fs::read(out.path().join("snapshots/good.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    assert_eq!(rows["water"].status, Status::Failed);
    assert_eq!(rows["water"].error, "fake: no air");
    // A failed case still shows what was read, and a picture of it.
    assert_eq!(rows["water"].dimensions, "6x6x4");
    assert_eq!(rows["water"].snapshot, "snapshots/water.png");
    assert!(
        rows["boom"].error.contains("panic"),
        "{}",
        rows["boom"].error
    );
    assert!(rows["boom"].error.contains("the fake pipeline met 1234"));
    assert!(
        rows["cut"].error.contains("cut.nrrd"),
        "{}",
        rows["cut"].error
    );
    assert_eq!(rows["readme.txt"].status, Status::Skipped);
    assert!(rows["readme.txt"].error.contains("not a DICOM file"));
    assert!(!rows.contains_key("good-label"));
    // No temporary file left behind.
    let hidden: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");

    let html = std::fs::read_to_string(out.path().join("index.html")).unwrap();
    assert!(html.contains("6 cases: 2 ok (2 with warnings), 3 failed, 1 skipped"));
    assert!(html.contains("fake, &quot;made up&quot;"));
}

#[test]
fn a_rerun_skips_done_cases_unless_forced_or_the_format_changes() {
    let input = folder();
    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(input.path(), out.path());
    run_batch(&cfg, &fake(), &Quiet).unwrap();
    let first = rows_of(&out.path().join("report.csv"));

    let again = run_batch(&cfg, &fake(), &Quiet).unwrap();
    assert_eq!((again.already_done, again.ok, again.failed), (2, 0, 3));
    let second = rows_of(&out.path().join("report.csv"));
    // Done cases keep their row as it was (volumes, time), failures are tried again.
    assert_eq!(second["good"], first["good"]);
    assert_eq!(second.len(), first.len());

    // A missing label file means the case is not done.
    std::fs::remove_file(out.path().join("second-label.nrrd")).unwrap();
    let s = run_batch(&cfg, &fake(), &Quiet).unwrap();
    assert_eq!((s.already_done, s.ok), (1, 1));

    cfg.force = true;
    let s = run_batch(&cfg, &fake(), &Quiet).unwrap();
    assert_eq!((s.already_done, s.ok), (0, 2));

    cfg.force = false;
    cfg.format = LabelFormat::SegNrrd;
    let s = run_batch(&cfg, &fake(), &Quiet).unwrap();
    assert_eq!((s.already_done, s.ok), (0, 2));
    let seg = io::nrrd::read_segmentation(&out.path().join("good.seg.nrrd")).unwrap();
    let names: Vec<&str> = seg.segments.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["right", "left"]);
}

#[test]
fn shards_split_the_cases_and_share_the_gallery() {
    let input = folder();
    let out = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    for index in 0..2 {
        let cfg = Config {
            shard: Shard { index, count: 2 },
            ..config(input.path(), out.path())
        };
        let s = run_batch(&cfg, &fake(), &Quiet).unwrap();
        assert_eq!(s.found, 5);
        let rows = rows_of(&cfg.report_path());
        all.extend(rows.into_keys());
    }
    assert!(out.path().join("report-0-of-2.csv").is_file());
    assert!(out.path().join("report-1-of-2.csv").is_file());
    assert!(!out.path().join("report.csv").exists());
    all.sort();
    // Sorted cases: boom, cut, good, second, water; shard 0 takes 0, 2, 4 and the
    // skipped file.
    assert_eq!(
        all,
        vec!["boom", "cut", "good", "readme.txt", "second", "water"]
    );
    let first = rows_of(&out.path().join("report-0-of-2.csv"));
    let first: Vec<&str> = first.keys().map(|k| k.as_str()).collect();
    assert_eq!(first, vec!["boom", "good", "readme.txt", "water"]);
    let html = std::fs::read_to_string(out.path().join("index.html")).unwrap();
    assert!(
        html.contains("6 cases"),
        "the gallery reads both shards' reports"
    );
}

#[test]
fn concurrent_cases_give_the_same_report() {
    let input = folder();
    let serial = tempfile::tempdir().unwrap();
    let parallel = tempfile::tempdir().unwrap();
    run_batch(&config(input.path(), serial.path()), &fake(), &Quiet).unwrap();
    let cfg = Config {
        jobs: 3,
        ..config(input.path(), parallel.path())
    };
    run_batch(&cfg, &fake(), &Quiet).unwrap();
    let strip = |mut rows: BTreeMap<String, Row>| {
        for r in rows.values_mut() {
            r.seconds.clear();
        }
        rows
    };
    assert_eq!(
        strip(rows_of(&serial.path().join("report.csv"))),
        strip(rows_of(&parallel.path().join("report.csv")))
    );
}

#[test]
fn outputs_inside_the_input_are_not_cases() {
    let input = folder();
    let out = input.path().join("results");
    let cfg = config(input.path(), &out);
    run_batch(&cfg, &fake(), &Quiet).unwrap();
    let s = run_batch(&cfg, &fake(), &Quiet).unwrap();
    assert_eq!(s.found, 5);
    assert_eq!(s.skipped_files, 1);
}

#[test]
fn dicom_seg_on_volume_files_fails_each_case_with_the_reason_and_goes_on() {
    let input = folder();
    let out = tempfile::tempdir().unwrap();
    let cfg = Config {
        format: LabelFormat::DicomSeg,
        ..config(input.path(), out.path())
    };
    let s = run_batch(&cfg, &fake(), &Quiet).unwrap();
    assert_eq!((s.found, s.ok), (5, 0));
    let rows = rows_of(&out.path().join("report.csv"));
    let good = &rows["good"];
    assert_eq!(good.status, Status::Failed);
    assert!(good.error.contains("needs a DICOM case"), "{}", good.error);
    assert!(!out.path().join("good.seg.dcm").exists());
    // The other cases were still run.
    assert_eq!(rows["water"].error, "fake: no air");
}
