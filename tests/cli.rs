//! The `segkit` command line end to end: exit codes, messages that name the file and the
//! reason, and `apply` on a real CT.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn segkit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segkit"))
        .args(args)
        .output()
        .expect("the segkit binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn missing_input_fails_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.nrrd");
    let o = segkit(&["convert", "/no/such/volume.nrrd", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("/no/such/volume.nrrd"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists(), "nothing written on failure");
}

#[test]
fn unknown_extensions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("image.png");
    std::fs::write(&input, b"not an image").unwrap();
    let o = segkit(&["info", input.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("image.png") && stderr(&o).contains("extension"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn garbage_nrrd_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.nrrd");
    std::fs::write(&input, b"NRRD0004\ntype: short\ndimension: 3\nsizes: 100000 100000 100000\nencoding: raw\nendian: little\n\n").unwrap();
    let o = segkit(&["info", input.to_str().unwrap()]);
    assert!(!o.status.success());
    assert_eq!(o.status.code(), Some(1));
    // The message names the file and the offending sizes; nothing was allocated for them.
    let e = stderr(&o);
    assert!(e.contains("bad.nrrd") && e.contains("100000"), "{e}");
}

#[test]
fn effects_are_listed_with_slicer_parameter_names() {
    let o = segkit(&["effects"]);
    assert!(o.status.success());
    let text = stdout(&o);
    for needle in [
        "threshold",
        "islands",
        "MinimumThreshold",
        "KEEP_LARGEST_ISLAND",
        "MinimumSize",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    let json = segkit(&["effects", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let islands = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "Islands")
        .unwrap();
    assert_eq!(islands["parameters"][1]["default"], "1000");
    let margin = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["cli_name"] == "margin")
        .unwrap();
    assert_eq!(margin["parameters"][0]["name"], "MarginSizeMm");
    assert_eq!(margin["parameters"][0]["default"], "3");
}

#[test]
fn apply_refuses_unknown_effects_and_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("v.nii");
    let data = ndarray::Array3::<i16>::zeros((2, 2, 2));
    let v = segkit::volume::Volume::new(data, segkit::volume::Geometry::default());
    segkit::io::nifti::write_volume(&vol, &v.into()).unwrap();
    let out = dir.path().join("out.nrrd");
    let (vol, out) = (vol.to_str().unwrap(), out.to_str().unwrap());
    let o = segkit(&["apply", "no-such-effect", vol, "-o", out]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown effect") && stderr(&o).contains("threshold"),
        "{}",
        stderr(&o)
    );
    let o = segkit(&["apply", "islands", vol, "-o", out, "-p", "MinimumSise=3"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("MinimumSise"), "{}", stderr(&o));
    let o = segkit(&[
        "apply",
        "islands",
        vol,
        "-o",
        out,
        "-p",
        "Operation=KEEP_SELECTED_ISLAND",
        "--point",
        "5,0,0",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("outside"), "{}", stderr(&o));
}

/// Threshold then Islands on a real chest CT: the lungs and airways are the large
/// components of air inside the body; keeping the largest island gives one component.
#[test]
fn apply_threshold_then_islands_on_chest_ct() {
    let ct = require_data!("slicerio/slicerio/data/CTChest4.nrrd");
    let dir = tempfile::tempdir().unwrap();
    let air = dir.path().join("air-label.nrrd");
    let lungs = dir.path().join("lungs-label.nrrd");
    let (ct, air_s, lungs_s) = (
        ct.to_str().unwrap(),
        air.to_str().unwrap(),
        lungs.to_str().unwrap(),
    );
    let o = segkit(&[
        "apply",
        "threshold",
        ct,
        "-o",
        air_s,
        "-p",
        "MinimumThreshold=-1024",
        "-p",
        "MaximumThreshold=-500",
        "--time",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let last = stdout(&o).lines().last().unwrap_or_default().to_string();
    let timing: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert!(timing["effect_seconds"].as_f64().unwrap() >= 0.0);

    let o = segkit(&[
        "apply",
        "islands",
        ct,
        "--labels",
        air_s,
        "--segment",
        "1",
        "-o",
        lungs_s,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let read = |p: &Path| {
        segkit::io::labelmap_from(&segkit::io::open(p).unwrap().into_volume(), p).unwrap()
    };
    let (air, lungs) = (read(&air), read(&lungs));
    let source = segkit::io::open(Path::new(ct))
        .unwrap()
        .into_volume()
        .to_f64();
    // Threshold: exactly the voxels in [-1024, -500].
    for (a, v) in air.data.iter().zip(source.data.iter()) {
        assert_eq!(*a == 1, (-1024.0..=-500.0).contains(v));
    }
    // Keep largest: a subset of the threshold, one 6-connected component.
    assert!(lungs
        .data
        .iter()
        .zip(air.data.iter())
        .all(|(l, a)| *l == 0 || *a == 1));
    let comps = segkit::kernels::components::label_runs(
        lungs.data.view(),
        |&v| v != 0,
        segkit::kernels::components::Connectivity::Faces6,
    );
    assert_eq!(comps.sizes.len(), 1);
    assert!(comps.sizes[0] >= 1000);
}

/// `--editable-area` and `--mask-segment` restrict where the selected segment changes, as
/// Slicer's "Editable area" does.
#[test]
fn apply_honours_the_editable_area() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("v.nii");
    let labels = dir.path().join("l.nii");
    let g = segkit::volume::Geometry::default();
    let data = ndarray::Array3::from_shape_vec((1, 1, 6), vec![0i16, 10, 20, 30, 40, 50]).unwrap();
    segkit::io::nifti::write_volume(&vol, &segkit::volume::Volume::new(data, g).into()).unwrap();
    let lm = ndarray::Array3::from_shape_vec((1, 1, 6), vec![1i16, 1, 1, 2, 2, 2]).unwrap();
    segkit::io::nifti::write_volume(&labels, &segkit::volume::Volume::new(lm, g).into()).unwrap();
    let run = |extra: &[&str]| -> Vec<u16> {
        let out = dir.path().join("out.nii");
        let mut args = vec![
            "apply",
            "threshold",
            vol.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-p",
            "MinimumThreshold=0",
            "-p",
            "MaximumThreshold=100",
        ];
        args.extend_from_slice(extra);
        let o = segkit(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let v = segkit::io::open(&out).unwrap().into_volume();
        segkit::io::labelmap_from(&v, &out)
            .unwrap()
            .data
            .iter()
            .copied()
            .collect()
    };
    // A new segment (label 3) inside segment 2 only: it takes segment 2's voxels.
    assert_eq!(
        run(&["--editable-area", "inside-segment", "--mask-segment", "2"]),
        vec![1, 1, 1, 3, 3, 3]
    );
    // Outside all other segments: nothing is editable here.
    assert_eq!(
        run(&["--editable-area", "outside-all"]),
        vec![1, 1, 1, 2, 2, 2]
    );
    // Intensity range 15..35 with overwrite none: only voxels 2 and 3, and segments overlap
    // (the later label wins in the flattened output).
    assert_eq!(
        run(&["--intensity-range", "15,35", "--overwrite", "none"]),
        vec![1, 1, 3, 3, 2, 2]
    );
    let o = segkit(&[
        "apply",
        "threshold",
        vol.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "-o",
        dir.path().join("x.nii").to_str().unwrap(),
        "--editable-area",
        "inside-segment",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--mask-segment"), "{}", stderr(&o));
}
