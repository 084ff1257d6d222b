//! The automatic lung segmentation on real chest CTs: against Slicer's segmentation of
//! `CTChest4`, on a full-resolution DICOM series without a reference, and its refusals.

mod common;

use segkit::auto::lungs::{segment_lungs, LungOptions, LEFT_LUNG, RIGHT_LUNG};
use segkit::effects::Control;
use segkit::io;
use std::process::Command;

fn dice(a: impl Iterator<Item = (bool, bool)>) -> f64 {
    let (mut both, mut na, mut nb) = (0u64, 0u64, 0u64);
    for (x, y) in a {
        both += u64::from(x && y);
        na += u64::from(x);
        nb += u64::from(y);
    }
    2.0 * both as f64 / (na + nb) as f64
}

#[test]
fn ctchest4_matches_slicers_lung_segments() {
    let dir = require_data!("slicerio/slicerio/data");
    let ct = io::open(&dir.join("CTChest4.nrrd")).unwrap().into_volume();
    let reference = io::nrrd::read_segmentation(&dir.join("Segmentation.seg.nrrd")).unwrap();
    let lungs = segment_lungs(&ct, &LungOptions::default(), &Control::none()).unwrap();
    assert_eq!(lungs.labels.geometry, *ct.geometry());
    // Slicer's segments: "right lung" has label 5 and "left lung" label 6 in layer 0.
    let layer = &reference.layers[0];
    for (label, reference_label, name) in [(RIGHT_LUNG, 5u16, "right"), (LEFT_LUNG, 6, "left")] {
        let d = dice(
            lungs
                .labels
                .data
                .iter()
                .zip(layer.iter())
                .map(|(&a, &b)| (a == label, b == reference_label)),
        );
        eprintln!("{name} lung: Dice {d:.4}");
        // Slicer's right lung includes the trachea, which segkit leaves out (about 0.004).
        assert!(d >= 0.985, "{name} lung Dice {d:.4} < 0.985");
    }
    assert!(lungs.airways_ml > 10.0, "trachea not removed: {lungs:?}");
}

#[test]
fn lung_dx_a0002_finds_both_lungs_without_the_trachea() {
    let dir = require_data!("lung_pet_ct_dx/Lung_Dx-A0002/series3_8mm_B40f");
    let ct = io::open(&dir).unwrap().into_volume();
    let lungs = segment_lungs(&ct, &LungOptions::default(), &Control::none()).unwrap();
    for (name, ml) in [("right", lungs.right_ml), ("left", lungs.left_ml)] {
        assert!(
            (1000.0..=4000.0).contains(&ml),
            "{name} lung {ml:.0} mL outside 1 to 4 L"
        );
    }
    assert!(lungs.warnings.is_empty(), "{:?}", lungs.warnings);
    // The series is axial with i towards the patient's left (LPS +x): the right lung is
    // at small i, the left at large i.
    let l = &lungs.labels.data;
    let (nk, _, ni) = l.dim();
    let mean_i = |label| {
        let (sum, n) = l
            .indexed_iter()
            .filter(|(_, &v)| v == label)
            .fold((0.0, 0.0), |(s, n), ((_, _, i), _)| (s + i as f64, n + 1.0));
        sum / n
    };
    assert!(mean_i(RIGHT_LUNG) < ni as f64 / 2.0);
    assert!(mean_i(LEFT_LUNG) > ni as f64 / 2.0);
    // The trachea: the air at the middle of the top slices is not lung.
    assert!(lungs.airways_ml > 5.0, "{lungs:?}");
    let top = if ct.geometry().axis(2)[2] > 0.0 {
        nk - 1
    } else {
        0
    };
    let middle = l
        .index_axis(ndarray::Axis(0), top)
        .indexed_iter()
        .filter(|((_, i), &v)| v != 0 && (*i as f64 - ni as f64 / 2.0).abs() < 0.05 * ni as f64)
        .count();
    assert_eq!(middle, 0, "lung voxels at the midline of the top slice");
}

#[test]
fn an_abdominal_ct_is_refused_with_the_reason() {
    let abdomen = require_data!("ts/example_ct.nii.gz");
    let ct = io::open(&abdomen).unwrap().into_volume();
    let e = segment_lungs(&ct, &LungOptions::default(), &Control::none()).unwrap_err();
    assert!(e.to_string().contains("no lungs found"), "{e}");
    assert!(e.to_string().contains("chest CT"), "{e}");
}

#[test]
fn the_command_line_writes_label_maps_segmentations_and_nifti() {
    let dir = require_data!("slicerio/slicerio/data");
    let out = tempfile::tempdir().unwrap();
    let exe = env!("CARGO_BIN_EXE_segkit");
    for name in ["lungs-label.nrrd", "lungs.seg.nrrd", "lungs.nii.gz"] {
        let path = out.path().join(name);
        let o = Command::new(exe)
            .args(["lungs"])
            .arg(dir.join("CTChest4.nrrd"))
            .arg("-o")
            .arg(&path)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.contains("right lung"), "{stdout}");
        assert!(path.is_file());
    }
    let seg = io::nrrd::read_segmentation(&out.path().join("lungs.seg.nrrd")).unwrap();
    let names: Vec<&str> = seg.segments.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["right lung", "left lung"]);
    assert!(seg.segments[0]
        .tags
        .iter()
        .any(|(k, v)| k == "TerminologyEntry" && v.contains("SCT^39607008^Lung")));
    let labels = io::open(&out.path().join("lungs-label.nrrd"))
        .unwrap()
        .into_volume();
    let nifti = io::open(&out.path().join("lungs.nii.gz"))
        .unwrap()
        .into_volume();
    assert_eq!(labels.cast::<u16>().data, nifti.cast::<u16>().data);
    // A bad input names the file and the reason, and writes nothing.
    let bad = out.path().join("bad-label.nrrd");
    let o = Command::new(exe)
        .args(["lungs"])
        .arg(dir.join("Segmentation.seg.nrrd"))
        .arg("-o")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Segmentation.seg.nrrd"), "{err}");
    assert!(!bad.exists());
}
