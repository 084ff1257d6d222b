//! Segment from boundary points on real CT: each lung of `CTChest4` from the six extreme
//! points of Slicer's own segment (what a user clicks: most right, left, anterior,
//! posterior, superior and inferior point of the structure), against that segment.

mod common;

use ndarray::Array3;
use segkit::auto::boundary::{segment_from_boundary_points, BoundaryOptions};
use segkit::effects::Control;
use segkit::io;

fn dice(a: &Array3<u8>, b: &Array3<bool>) -> f64 {
    let (mut both, mut na, mut nb) = (0u64, 0u64, 0u64);
    for (&x, &y) in a.iter().zip(b.iter()) {
        both += u64::from(x != 0 && y);
        na += u64::from(x != 0);
        nb += u64::from(y);
    }
    2.0 * both as f64 / (na + nb) as f64
}

/// The six extreme points of `mask`: for each axis and side, the voxel of the extreme
/// slice nearest to the mask's centre in that slice (a point a person would click).
fn extreme_points(mask: &Array3<bool>) -> Vec<[usize; 3]> {
    let voxels: Vec<[usize; 3]> = mask
        .indexed_iter()
        .filter(|(_, &m)| m)
        .map(|((k, j, i), _)| [k, j, i])
        .collect();
    let mut out = Vec::new();
    for a in 0..3 {
        let lo = voxels.iter().map(|p| p[a]).min().unwrap();
        let hi = voxels.iter().map(|p| p[a]).max().unwrap();
        for side in [lo, hi] {
            let slice: Vec<&[usize; 3]> = voxels.iter().filter(|p| p[a] == side).collect();
            let centre: [f64; 3] = std::array::from_fn(|b| {
                slice.iter().map(|p| p[b] as f64).sum::<f64>() / slice.len() as f64
            });
            let d2 = |p: &[usize; 3]| {
                (0..3)
                    .map(|b| (p[b] as f64 - centre[b]).powi(2))
                    .sum::<f64>()
            };
            let nearest = slice.iter().min_by(|x, y| d2(x).total_cmp(&d2(y))).unwrap();
            out.push(**nearest);
        }
    }
    out
}

#[test]
fn each_lung_of_ctchest4_from_its_six_extreme_points() {
    let dir = require_data!("slicerio/slicerio/data");
    let ct = io::open(&dir.join("CTChest4.nrrd")).unwrap().into_volume();
    let reference = io::nrrd::read_segmentation(&dir.join("Segmentation.seg.nrrd")).unwrap();
    let layer = &reference.layers[0];
    // Slicer's segments: "right lung" has label 5 and "left lung" label 6 in layer 0.
    for (label, name) in [(5u16, "right"), (6, "left")] {
        let truth = layer.mapv(|v| v == label);
        let points = extreme_points(&truth);
        let out = segment_from_boundary_points(
            &ct,
            &points,
            &BoundaryOptions::default(),
            &Control::none(),
        )
        .unwrap();
        let d = dice(&out.mask, &truth);
        let mut fp = std::collections::BTreeMap::new();
        for ((&m, &l), v) in out
            .mask
            .iter()
            .zip(layer.iter())
            .zip(ct.cast::<i16>().data.iter())
        {
            if m != 0 && l != label {
                let e = fp.entry(l).or_insert((0, 0i64));
                e.0 += 1;
                e.1 += *v as i64;
            }
        }
        let found = out.mask.iter().filter(|&&m| m != 0).count();
        let wanted = truth.iter().filter(|&&t| t).count();
        eprintln!(
            "{name} lung from 6 boundary points: Dice {d:.4}, {found} voxels for {wanted}, box {:?}, range {:?}",
            out.box_kji, out.intensity_range
        );
        assert!(d >= 0.975, "{name} lung Dice {d:.4} < 0.975");
    }
}

#[test]
fn the_breast_lesion_of_pyradiomics_from_its_six_extreme_points() {
    let dir = require_data!("pyradiomics/data");
    let mr = io::open(&dir.join("breast1_image.nrrd"))
        .unwrap()
        .into_volume();
    let label = io::open(&dir.join("breast1_label.nrrd"))
        .unwrap()
        .into_volume();
    let truth = label.cast::<i32>().data.mapv(|v| v != 0);
    let points = extreme_points(&truth);
    let out =
        segment_from_boundary_points(&mr, &points, &BoundaryOptions::default(), &Control::none())
            .unwrap();
    let d = dice(&out.mask, &truth);
    let found = out.mask.iter().filter(|&&m| m != 0).count();
    let wanted = truth.iter().filter(|&&t| t).count();
    eprintln!(
        "breast lesion from 6 boundary points: Dice {d:.4}, {found} voxels for {wanted}, range {:?}",
        out.intensity_range
    );
    assert!(d >= 0.5, "breast lesion Dice {d:.4}");
}

/// What a Slicer user does: the points in a markups file (here written in RAS, as a
/// point list saved with `coordinateSystem: RAS`), then `segkit apply boundary-points`.
#[test]
fn the_command_line_reads_a_slicer_point_list() {
    let dir = require_data!("slicerio/slicerio/data");
    let ct_path = dir.join("CTChest4.nrrd");
    let ct = io::open(&ct_path).unwrap().into_volume();
    let reference = io::nrrd::read_segmentation(&dir.join("Segmentation.seg.nrrd")).unwrap();
    let truth = reference.layers[0].mapv(|v| v == 6);
    let g = *ct.geometry();
    let points: Vec<String> = extreme_points(&truth)
        .iter()
        .map(|p| {
            let lps = g.index_to_lps([p[2] as f64, p[1] as f64, p[0] as f64]);
            format!(
                "{{\"id\": \"x\", \"position\": [{}, {}, {}], \"positionStatus\": \"defined\"}}",
                -lps[0], -lps[1], lps[2]
            )
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let mrk = tmp.path().join("left lung.mrk.json");
    std::fs::write(
        &mrk,
        format!(
            "{{\"markups\": [{{\"type\": \"Fiducial\", \"coordinateSystem\": \"RAS\", \
             \"controlPoints\": [{}]}}]}}",
            points.join(", ")
        ),
    )
    .unwrap();
    let out = tmp.path().join("out-label.nrrd");
    let apply = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_segkit"))
            .args(["apply", "boundary-points"])
            .arg(&ct_path)
            .arg("--points")
            .arg(&mrk)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap()
    };
    let o = apply();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let labels = io::open(&out).unwrap().into_volume().cast::<u16>();
    let library = segment_from_boundary_points(
        &ct,
        &extreme_points(&truth),
        &BoundaryOptions::default(),
        &Control::none(),
    )
    .unwrap();
    // The new segment is label 1; the same voxels as the library call.
    assert_eq!(labels.data.mapv(|v| u8::from(v == 1)), library.mask);

    // A point list with one point is refused with the reason.
    std::fs::write(
        &mrk,
        format!(
            "{{\"markups\": [{{\"coordinateSystem\": \"RAS\", \"controlPoints\": [{}]}}]}}",
            points[0]
        ),
    )
    .unwrap();
    let o = apply();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("at least 2 distinct points"),
        "{err}"
    );
}
