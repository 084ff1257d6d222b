//! DICOM on real files: every syntax against its uncompressed reference, the dcm_qa
//! quirks, enhanced multi-frame, and a walk over every file of the test data that must
//! read or fail with an error naming the file, never panic.

mod common;

use segkit::io::dicom::{scan, Scan, Series};
use segkit::volume::{AnyVolume, ScalarType};
use std::path::{Path, PathBuf};

fn scan_one(path: &Path) -> Scan {
    scan(&[path.to_path_buf()]).unwrap_or_else(|e| panic!("scan {}: {e}", path.display()))
}

/// The one series of a single file.
fn only_series(path: &Path) -> Series {
    let mut s = scan_one(path);
    assert_eq!(s.series.len(), 1, "{}: {:?}", path.display(), s.skipped);
    s.series.remove(0)
}

fn read(series: &Series) -> AnyVolume {
    series
        .read()
        .unwrap_or_else(|e| panic!("{}: {e}", series.label()))
}

fn values(v: &AnyVolume) -> Vec<f64> {
    v.to_f64().data.iter().copied().collect()
}

const WG04_IMAGES: [&str; 4] = ["CT1", "CT2", "MR1", "NM1"];

/// Compares `wg04/<syntax>/<image>_<syntax>` with `wg04/REF/<image>_UNC`; returns the
/// largest absolute difference.
fn wg04_max_difference(root: &Path, syntax: &str, image: &str) -> f64 {
    let reference = only_series(&root.join(format!("REF/{image}_UNC")));
    let compressed = only_series(&root.join(format!("{syntax}/{image}_{syntax}")));
    assert_eq!(compressed.size_ijk, reference.size_ijk, "{image} {syntax}");
    assert!(compressed.geometry.approx_eq(&reference.geometry, 1e-9));
    let (r, c) = (read(&reference), read(&compressed));
    assert_eq!(c.scalar_type(), r.scalar_type(), "{image} {syntax}");
    values(&r)
        .iter()
        .zip(values(&c))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

#[test]
fn wg04_lossless_syntaxes_decode_exactly_to_the_reference() {
    let root = require_data!("dicom_conformance/wg04");
    let mut syntaxes = vec!["RLE", "JPLL", "J2KR"];
    if cfg!(feature = "jpegls") {
        syntaxes.push("JLSL");
    }
    for syntax in syntaxes {
        for image in WG04_IMAGES {
            let d = wg04_max_difference(&root, syntax, image);
            assert_eq!(d, 0.0, "{image}_{syntax} differs from REF by up to {d}");
        }
    }
}

#[cfg(feature = "jpegls")]
#[test]
fn wg04_near_lossless_jpeg_ls_is_within_4() {
    let root = require_data!("dicom_conformance/wg04");
    for image in WG04_IMAGES {
        let d = wg04_max_difference(&root, "JLSN", image);
        assert!(d <= 4.0, "{image}_JLSN differs from REF by {d}");
    }
}

#[cfg(not(feature = "jpegls"))]
#[test]
fn jpeg_ls_without_the_feature_is_refused_with_a_hint() {
    let root = require_data!("dicom_conformance/wg04");
    let s = only_series(&root.join("JLSL/CT1_JLSL"));
    let err = s.read().unwrap_err().to_string();
    assert!(err.contains("CT1_JLSL"), "{err}");
    assert!(err.contains("JPEG-LS Lossless"), "{err}");
    assert!(err.contains("--features jpegls"), "{err}");
}

#[test]
fn wg04_lossy_syntaxes_decode_or_name_what_is_missing() {
    let root = require_data!("dicom_conformance/wg04");
    // JPEG 2000 lossy: close to the reference (the MANIFEST measured up to 402).
    for image in WG04_IMAGES {
        let d = wg04_max_difference(&root, "J2KI", image);
        assert!(d <= 500.0, "{image}_J2KI differs from REF by {d}");
    }
    // 12-bit JPEG Extended is beyond jpeg-decoder: the error says which syntax.
    let s = only_series(&root.join("JPLY/MR1_JPLY"));
    let err = s.read().unwrap_err().to_string();
    assert!(
        err.contains("MR1_JPLY") && err.contains("JPEG Extended"),
        "{err}"
    );
}

#[test]
fn dcm_qa_ts_nine_syntaxes_are_nine_series_with_the_same_pixels() {
    let dir = require_data!("dcm_qa_ts/In");
    let scan = scan_one(&dir);
    assert_eq!(scan.series.len(), 9, "one UID, one position: nine series");
    assert!(scan.skipped.is_empty(), "{:?}", scan.skipped);
    let mut first: Option<Vec<f64>> = None;
    for (n, s) in scan.series.iter().enumerate() {
        assert_eq!(s.series_number, Some(n as i64 + 1));
        // Siemens MOSAIC: 384x384 tiles of 64x64, 35 slices.
        assert_eq!(s.size_ijk, [64, 64, 35], "{}", s.label());
        assert!(s.geometry.approx_eq(&scan.series[0].geometry, 1e-9));
        let jpeg_ls = s.transfer_syntaxes == ["1.2.840.10008.1.2.4.80"];
        match s.read() {
            Ok(v) => {
                assert_eq!(v.scalar_type(), ScalarType::U16);
                let v = values(&v);
                match &first {
                    None => first = Some(v),
                    Some(f) => assert!(f == &v, "{} differs from 1.dcm", s.label()),
                }
            }
            Err(e) if jpeg_ls && !cfg!(feature = "jpegls") => {
                assert!(e.to_string().contains("--features jpegls"), "{e}");
            }
            Err(e) => panic!("{}: {e}", s.label()),
        }
    }
    let range = first.map(|v| {
        v.iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)))
    });
    assert_eq!(range, Some((0.0, 2362.0)));
}

#[test]
fn dcm_qa_12bit_masks_and_sign_extends() {
    let dir = require_data!("dcm_qa_12bit/In");
    for (file, ty, range) in [
        ("12bitUnsigned.dcm", ScalarType::U16, (0.0, 2908.0)),
        ("12bitUnsigned_0x0F0F.dcm", ScalarType::U16, (0.0, 4095.0)),
        ("12bitSigned_0x0F0F.dcm", ScalarType::I16, (-2048.0, 2047.0)),
    ] {
        let v = read(&only_series(&dir.join(file)));
        assert_eq!(v.scalar_type(), ty, "{file}");
        assert_eq!(v.min_max(), Some(range), "{file}");
    }
    // Together in one folder they share UID and position: three series, not a stack.
    assert_eq!(scan_one(&dir).series.len(), 3);
}

#[test]
fn enhanced_ct_frames_are_assembled_by_position() {
    let path = require_data!("dicom_conformance/pydicom_data/eCT_Supplemental.dcm");
    let s = only_series(&path);
    assert_eq!(s.size_ijk, [512, 512, 2]);
    assert_eq!(s.modality, "CT");
    // IOP row (-1,0,0) x column (0,1,0): the normal points to -z (inferior), so the
    // series runs from z=-149 to z=-159, the file's frames in the other order.
    assert_eq!(s.geometry.axis(2), [0.0, 0.0, -1.0]);
    let z: Vec<f64> = s.files.iter().map(|f| f.position[2]).collect();
    assert_eq!(z, vec![-149.0, -159.0]);
    assert_eq!(
        s.files.iter().map(|f| f.frame).collect::<Vec<_>>(),
        vec![1, 0]
    );
    assert!((s.geometry.spacing[2] - 10.0).abs() < 1e-9);
    assert!((s.geometry.spacing[0] - 0.388672).abs() < 1e-9);
    let v = read(&s);
    assert_eq!(v.scalar_type(), ScalarType::I16);
    // pydicom: stored 0..1196, intercept -1024.
    assert_eq!(v.min_max(), Some((-1024.0, 172.0)));
}

#[test]
fn enhanced_mr_splits_into_one_series_per_volume() {
    let dir = require_data!("dcm_qa_enh/In");
    let scan = scan_one(&dir);
    let philips: Vec<&Series> = scan
        .series
        .iter()
        .filter(|s| s.series_number == Some(801))
        .collect();
    let siemens: Vec<&Series> = scan
        .series
        .iter()
        .filter(|s| s.series_number == Some(6))
        .collect();
    assert_eq!(philips.len(), 2, "magnitude and field map share positions");
    assert_eq!(siemens.len(), 4, "four time points of six slices");
    for s in &philips {
        assert_eq!(s.size_ijk, [64, 64, 32]);
        assert!((s.geometry.spacing[2] - 4.0).abs() < 1e-6);
        assert!(s
            .warnings
            .iter()
            .any(|w| w.contains("Philips private scale slope")));
        assert_eq!(read(s).scalar_type(), ScalarType::F32);
    }
    // The field map is stored with slope 0.2442 and intercept -500.
    let field_map = philips
        .iter()
        .find(|s| s.split.as_deref() == Some("EchoTime=0"))
        .unwrap();
    let (lo, hi) = read(field_map).min_max().unwrap();
    assert!(lo > -500.5 && hi < 500.5 && lo < -400.0, "{lo}..{hi}");
    for s in &siemens {
        assert_eq!(s.size_ijk, [64, 64, 6]);
        assert!((s.geometry.spacing[2] - 2.4).abs() < 1e-6);
        assert_eq!(read(s).scalar_type(), ScalarType::U16);
    }
}

#[test]
fn gantry_tilt_and_uneven_spacing_are_reported_and_positions_kept() {
    let dir = require_data!("dcm_qa_ct/In/GE");
    let s = only_series(&dir);
    assert_eq!(s.size_ijk, [512, 512, 28]);
    let tilt = s
        .warnings
        .iter()
        .find(|w| w.starts_with("gantry tilt"))
        .expect("tilt warning");
    assert!(tilt.contains("18.5 degrees"), "{tilt}");
    assert!(
        s.warnings
            .iter()
            .any(|w| w.starts_with("uneven slice spacing")),
        "{:?}",
        s.warnings
    );
    // Sorted by position (InstanceNumber is not spatial here), first and last slice exact.
    let g = s.geometry;
    let first = s.files[0].position;
    let last = s.files[27].position;
    assert_eq!(g.origin, first);
    let k = g.axis(2);
    let along: f64 = (0..3).map(|r| (last[r] - first[r]) * k[r]).sum();
    let off: f64 = (0..3)
        .map(|r| (last[r] - first[r] - along * k[r]).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(off < 1e-6, "last slice off the k axis by {off} mm");
    assert_eq!(read(&s).scalar_type(), ScalarType::I16);
}

#[test]
fn chest_ct_reads_as_hounsfield_i16() {
    let dir = require_data!("lung_pet_ct_dx/Lung_Dx-A0002");
    let s = only_series(&dir);
    assert_eq!(s.size_ijk, [512, 512, 30]);
    assert!((s.geometry.spacing[0] - 0.646484375).abs() < 1e-12);
    assert!((s.geometry.spacing[2] - 8.0).abs() < 1e-9);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    let v = read(&s);
    assert_eq!(v.scalar_type(), ScalarType::I16);
    let (lo, hi) = v.min_max().unwrap();
    assert_eq!(lo, -1024.0);
    assert!(hi > 1000.0);
}

#[test]
fn a_deleted_slice_is_reported_as_missing() {
    let dir = require_data!("lung_pet_ct_dx/Lung_Dx-A0002/series3_8mm_B40f");
    let tmp = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let removed = only_series(&files[10]).files[0].position;
    for f in files.iter().filter(|f| **f != files[10]) {
        std::fs::copy(f, tmp.path().join(f.file_name().unwrap())).unwrap();
    }
    let s = only_series(tmp.path());
    assert_eq!(s.size_ijk[2], 29);
    let w = s
        .warnings
        .iter()
        .find(|w| w.contains("missing slice"))
        .expect("warning");
    assert!(
        w.starts_with("1 missing slice(s) (typical step 8 mm)"),
        "{w} (removed z={})",
        removed[2]
    );
}

#[test]
fn jpeg_2000_ct_series_reads() {
    let dir = require_data!("ts/dicom");
    let s = only_series(&dir);
    assert_eq!(s.size_ijk, [512, 512, 20]);
    assert!((s.geometry.spacing[2] - 2.0).abs() < 1e-9);
    assert!(s.warnings.iter().any(|w| w.contains("SliceThickness 3 mm")));
    let v = read(&s);
    assert_eq!(v.scalar_type(), ScalarType::I16);
    assert_eq!(v.min_max().map(|m| m.0), Some(-1024.0));
}

#[test]
fn rt_dose_frames_are_stacked_by_grid_frame_offsets() {
    let path = require_data!("dicom_conformance/pydicom_test_files/rtdose.dcm");
    let s = only_series(&path);
    assert_eq!(s.size_ijk, [10, 10, 15]);
    assert_eq!(s.geometry.origin, [189.43125, 199.43125, -761.87]);
    assert!((s.geometry.spacing[2] - 5.0).abs() < 1e-9);
    assert!(
        s.warnings.iter().any(|w| w.contains("DoseGridScaling")),
        "{:?}",
        s.warnings
    );
    let v = read(&s);
    assert_eq!(v.scalar_type(), ScalarType::U32);
    // Big endian copy of the same file: the same values.
    let be = only_series(&path.with_file_name("rtdose_expb.dcm"));
    assert_eq!(values(&read(&be)), values(&v));
}

#[test]
fn non_images_are_skipped_with_a_reason() {
    let dir = require_data!("dicom_conformance/pydicom_test_files");
    let scan = scan_one(&dir);
    let reason = |name: &str| {
        scan.skipped
            .iter()
            .find(|(p, _)| p.file_name().is_some_and(|n| n == name))
            .map(|(_, r)| r.as_str())
            .unwrap_or_else(|| panic!("{name} not skipped"))
    };
    assert!(reason("rtstruct.dcm").contains("RT Structure Set"));
    assert!(reason("test-SR.dcm").contains("SR"));
    assert!(reason("liver_1frame.dcm").contains("Segmentation"));
    assert!(reason("DICOMDIR").contains("DICOMDIR"));
    assert!(reason("badVR.dcm").contains("NumberOfFrames"));
    assert!(reason("README.txt").starts_with("not a DICOM file"));
}

/// Every file in the test data: scanned, and every series read. Failures must be errors
/// that name a file; a panic fails the test.
#[test]
fn every_dicom_file_reads_or_fails_with_a_clear_error() {
    let root = require_data!("");
    let scan = scan_one(&root);
    assert!(scan.series.len() > 100, "{} series", scan.series.len());
    for (path, reason) in &scan.skipped {
        assert!(!reason.is_empty(), "{}", path.display());
    }
    let (mut ok, mut failed) = (0, 0);
    for s in &scan.series {
        match s.read() {
            Ok(v) => {
                assert_eq!(v.size_ijk(), s.size_ijk, "{}", s.label());
                ok += 1;
            }
            Err(e) => {
                let msg = e.to_string();
                let names_a_file = s
                    .files
                    .iter()
                    .any(|f| msg.contains(&*f.path.to_string_lossy()));
                assert!(names_a_file, "error without its file: {msg}");
                failed += 1;
            }
        }
    }
    eprintln!(
        "{} series read, {failed} refused, {} files skipped",
        ok,
        scan.skipped.len()
    );
}
