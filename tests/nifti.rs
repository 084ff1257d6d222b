//! NIfTI reading on real files written by other tools (TotalSegmentator's nibabel output,
//! dcm2niix, ITK), and a write/read round trip of each.
//!
//! Every expected number below was read independently with nibabel 5 and SimpleITK 2 from
//! the same files (`/work/main/.venv`), not with segkit: sizes, stored types, voxel sums
//! over the raw (unscaled) values, single voxels, and the affine converted to LPS
//! (rows 0 and 1 negated), which SimpleITK's origin, spacing and direction match.

mod common;

use segkit::io::nifti::{read_volume, write_volume};
use segkit::volume::{AnyVolume, Geometry, ScalarType};
use segkit::Error;
use std::path::Path;

/// Sum of all voxels as `f64` (exact for these integer volumes, below 2^53).
fn sum(v: &AnyVolume) -> f64 {
    v.to_f64().data.iter().sum()
}

/// Voxel `(i, j, k)` as `f64`.
fn at(v: &AnyVolume, i: usize, j: usize, k: usize) -> f64 {
    v.to_f64().data[[k, j, i]]
}

fn assert_geometry(g: &Geometry, origin: [f64; 3], steps: [[f64; 3]; 3], tol: f64) {
    for r in 0..3 {
        assert!(
            (g.origin[r] - origin[r]).abs() <= tol,
            "origin {:?} vs {origin:?}",
            g.origin
        );
    }
    for (a, step) in steps.iter().enumerate() {
        let s = g.step(a);
        for r in 0..3 {
            assert!((s[r] - step[r]).abs() <= tol, "axis {a}: {s:?} vs {step:?}");
        }
    }
}

/// Writes `v` as `.nii.gz` and `.nii` and checks it reads back identical.
fn round_trip(v: &AnyVolume) {
    let dir = tempfile::tempdir().unwrap();
    for name in ["out.nii.gz", "out.nii"] {
        let p = dir.path().join(name);
        write_volume(&p, v).unwrap();
        let back = read_volume(&p).unwrap();
        assert_eq!(back.scalar_type(), v.scalar_type(), "{name}");
        assert_eq!(back.size_ijk(), v.size_ijk(), "{name}");
        assert_eq!(back.to_le_bytes(), v.to_le_bytes(), "{name}: voxels");
        assert!(
            back.geometry().approx_eq(v.geometry(), 1e-4),
            "{name}: {:?} vs {:?}",
            back.geometry(),
            v.geometry()
        );
    }
}

/// The TotalSegmentator files share one sform (code 2, qform code 0): 3 mm voxels with
/// i toward the patient's right (RAS +x), so LPS diag(-3, -3, 3).
const TS_ORIGIN: [f64; 3] = [177.956329346, -11.319000244, 94.301757812];
const TS_STEPS: [[f64; 3]; 3] = [[-3.0, 0.0, 0.0], [0.0, -3.0, 0.0], [0.0, 0.0, 3.0]];

#[test]
fn totalsegmentator_ct() {
    let p = require_data!("ts/example_ct.nii.gz");
    let v = read_volume(&p).unwrap();
    // The data MANIFEST calls this file "LPS"; nibabel's aff2axcodes gives ('R','A','S')
    // and SimpleITK the direction diag(-1, -1, 1): i runs toward R, j toward A.
    assert_eq!(v.size_ijk(), [122, 101, 112]);
    assert_eq!(v.scalar_type(), ScalarType::I32);
    assert_geometry(v.geometry(), TS_ORIGIN, TS_STEPS, 1e-6);
    assert_eq!(v.geometry().orientation_code(), "RAS");
    assert_eq!(v.min_max(), Some((-1207.0, 3382.0)));
    assert_eq!(sum(&v), -496_851_173.0);
    assert_eq!(at(&v, 1, 2, 3), -1023.0);
    round_trip(&v);
}

#[test]
fn totalsegmentator_small_ct_and_labels() {
    let p = require_data!("ts/example_ct_sm.nii.gz");
    let ct = read_volume(&p).unwrap();
    assert_eq!(ct.size_ijk(), [122, 101, 30]);
    assert_eq!(ct.scalar_type(), ScalarType::I16);
    assert_geometry(ct.geometry(), TS_ORIGIN, TS_STEPS, 1e-6);
    assert_eq!(ct.min_max(), Some((-1100.0, 1207.0)));
    assert_eq!(sum(&ct), -130_894_872.0);
    round_trip(&ct);

    // The label map carries a 12 816-byte Caret XML extension: vox_offset 13168.
    let p = require_data!("ts/example_seg.nii.gz");
    let seg = read_volume(&p).unwrap();
    assert_eq!(seg.size_ijk(), [122, 101, 30]);
    assert_eq!(seg.scalar_type(), ScalarType::U8);
    assert!(seg.geometry().approx_eq(ct.geometry(), 1e-9));
    assert_eq!(seg.min_max(), Some((0.0, 117.0)));
    assert_eq!(sum(&seg), 2_734_697.0);
    round_trip(&seg);
}

#[test]
fn totalsegmentator_labels_on_the_dicom_grid() {
    let p = require_data!("ts/example_seg_dicom.nii.gz");
    let seg = read_volume(&p).unwrap();
    assert_eq!(seg.size_ijk(), [512, 512, 20]);
    assert_eq!(seg.scalar_type(), ScalarType::U8);
    assert_geometry(
        seg.geometry(),
        [-249.51171875, 61.51171875, -804.5],
        [
            [0.9765625, 0.0, 0.0],
            [0.0, -0.9765625, 0.0],
            [0.0, 0.0, 2.0],
        ],
        1e-6,
    );
    assert_eq!(sum(&seg), 14_229_599.0);
}

/// dcm2niix output: qform and sform codes 1, `pixdim[0] = -1`, oblique.
#[test]
fn dcm2niix_transfer_syntax_references() {
    let Some(dir) = common::data_path("dcm_qa_ts/Ref") else {
        return;
    };
    if !dir.is_dir() {
        return;
    }
    for n in 1..=9 {
        let p = dir.join(format!("{n}.nii"));
        let v = read_volume(&p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.size_ijk(), [64, 64, 35], "{n}");
        assert_eq!(v.scalar_type(), ScalarType::I16, "{n}");
        assert_eq!(sum(&v), 38_036_663.0, "{n}");
        assert_eq!(v.min_max(), Some((0.0, 2362.0)), "{n}");
        assert_eq!(at(&v, 1, 2, 3), 15.0, "{n}");
        assert_geometry(
            v.geometry(),
            [-104.0, 58.684310913, -84.798034668],
            [
                [3.25, 0.0, 0.0],
                [0.0, -3.230990648, 0.350997895],
                [0.0, 0.388797671, 3.578943253],
            ],
            1e-6,
        );
        // SimpleITK reports k spacing 3.6 (the sform column length) and 6.2 degrees of tilt.
        assert!((v.geometry().spacing[2] - 3.6).abs() < 1e-5);
        assert!((v.geometry().obliquity_degrees() - 6.2).abs() < 0.1);
    }
    let p = dir.join("1.nii");
    round_trip(&read_volume(&p).unwrap());
}

#[test]
fn dcm2niix_12bit_references() {
    let p = require_data!("dcm_qa_12bit/Ref/4.nii");
    // Signed 12-bit data.
    let v = read_volume(&p).unwrap();
    assert_eq!(v.scalar_type(), ScalarType::I16);
    assert_eq!(v.min_max(), Some((-2048.0, 2047.0)));
    assert_eq!(sum(&v), 38_125_324.0);
    // The sform here is not exactly orthogonal (dcm2niix stores the DICOM vectors); the
    // sform is what nibabel and SimpleITK both report.
    let steps = [
        [3.249994993, 0.000524145, -0.005648057],
        [0.00000019, -3.236105204, -0.300204426],
        [0.005585059, -0.295585454, 3.186314106],
    ];
    assert_geometry(
        v.geometry(),
        [-108.840568542, 84.30973053, -6.714199066],
        steps,
        1e-6,
    );
    round_trip(&v);
    for (name, total) in [("2.nii", 39_116_505.0), ("3.nii", 40_476_428.0)] {
        let p = require_data!(&format!("dcm_qa_12bit/Ref/{name}"));
        let v = read_volume(&p).unwrap();
        assert_eq!(v.scalar_type(), ScalarType::I16, "{name}");
        assert_eq!(sum(&v), total, "{name}");
    }
}

/// Philips maps stored as int16 with a real scaling: read as float32, scaled.
#[test]
fn dcm2niix_scaled_philips_maps() {
    let p = require_data!("dcm_qa_enh/Ref/Philips_WIP_B0_NS_801_e2_fieldmaphz.nii");
    // scl_slope 0.24420166, scl_inter -499.99994 (nibabel); SimpleITK also reads float32.
    let v = read_volume(&p).unwrap();
    assert_eq!(v.scalar_type(), ScalarType::F32);
    assert_eq!(v.size_ijk(), [64, 64, 32]);
    let (lo, hi) = v.min_max().unwrap();
    assert!((lo - -495.604309082).abs() < 1e-3, "{lo}");
    assert!((hi - 497.319641113).abs() < 1e-3, "{hi}");
    // nibabel get_fdata().sum() in float64 is -1572222.095276.
    assert!((sum(&v) - -1_572_222.095276).abs() < 0.5, "{}", sum(&v));
    // Stored 2047 at (1, 2, 3): 2047 * slope + inter.
    assert!((at(&v, 1, 2, 3) - (2047.0 * 0.24420166 - 499.99994)).abs() < 1e-3);
    assert_geometry(
        v.geometry(),
        [124.757019043, 132.223388672, -38.347679138],
        [
            [-4.0, 0.0, -0.000109701],
            [0.0, -4.0, 0.0],
            [-0.000109701, 0.0, 4.0],
        ],
        1e-6,
    );
    round_trip(&v);

    let p = require_data!("dcm_qa_enh/Ref/Philips_WIP_B0_NS_801_e1.nii");
    // scl_slope 118362.24, intercept 0: float32; nibabel's float64 sum 6839873930950.61.
    let v = read_volume(&p).unwrap();
    assert_eq!(v.scalar_type(), ScalarType::F32);
    let rel = (sum(&v) - 6_839_873_930_950.61).abs() / 6.84e12;
    assert!(rel < 1e-6, "{}", sum(&v));
}

#[test]
fn four_d_series_is_refused_with_its_dimensions() {
    let p = require_data!("dcm_qa_enh/Ref/Siemens_REST1_w_SMS_PF7-8_6.nii");
    let e = read_volume(&p).unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("64x64x6x4") && msg.contains("Siemens_REST1"),
        "{msg}"
    );
}

#[test]
fn pynrrd_ball_written_by_itk() {
    let p = require_data!("pynrrd/nrrd/tests/data/BallBinary30x30x30.nii.gz");
    let v = read_volume(&p).unwrap();
    assert_eq!(v.size_ijk(), [30, 30, 30]);
    assert_eq!(v.scalar_type(), ScalarType::I16);
    assert_eq!(sum(&v), 3_682_296.0);
    assert_eq!(v.min_max(), Some((0.0, 257.0)));
    assert_geometry(
        v.geometry(),
        [0.0; 3],
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        1e-9,
    );
}

#[test]
fn missing_file_names_the_path() {
    let e = read_volume(Path::new("/nonexistent/x.nii.gz")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }));
    assert!(e.to_string().contains("/nonexistent/x.nii.gz"));
}
