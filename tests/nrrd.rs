//! NRRD reading on real files written by Teem, ITK, 3D Slicer and pynrrd, write/read round
//! trips, and property tests (round trips over types, encodings and orientations; no panic
//! on malformed input).
//!
//! Expected numbers (sums, sizes, single samples, voxel counts) were computed independently
//! with pynrrd 1.1.3 and numpy from the same files (`/work/main/.venv`), not with segkit.

mod common;

use proptest::prelude::*;
use segkit::io::nrrd::{
    self, DataType, Encoding, Header, Kind, Nrrd, NrrdData, Space, WriteOptions,
};
use segkit::volume::{AnyVolume, Geometry, Labelmap, Scalar, Segment, Segmentation, Volume};
use segkit::Error;
use std::path::{Path, PathBuf};

const PYNRRD: &str = "pynrrd/nrrd/tests/data";
const SLICER: &str = "slicer_testdata/Libs/MRML/Core/Testing/TestData";

/// Files that are invalid by design, and a word the refusal must contain.
const INVALID: [(&str, &str); 2] = [
    ("BallBinary30x30x30_nifti.nhdr", "byte skip: -1"),
    (
        "BallBinary30x30x30_byteskip_minus_five.nhdr",
        "byte skip -5",
    ),
];

fn sum(data: &NrrdData) -> f64 {
    data.to_f64().unwrap().iter().sum()
}

fn nrrd_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = [
        "pynrrd",
        "slicer_testdata",
        "slicerio",
        "pyradiomics",
        "dcmqi",
    ]
    .iter()
    .map(|d| root.join(d))
    .collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "nrrd" || x == "nhdr") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn assert_close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
        "{what}: {a} vs {b}"
    );
}

fn assert_same_geometry(a: &Geometry, b: &Geometry) {
    for r in 0..3 {
        assert_close(a.origin[r], b.origin[r], "origin");
        for c in 0..3 {
            assert_close(
                a.step(c)[r],
                b.step(c)[r],
                &format!("step {c} component {r}"),
            );
        }
    }
}

#[test]
fn every_nrrd_in_the_data_folder_reads_or_is_refused_clearly() {
    let root = match common::test_data() {
        Some(r) => r,
        None => return,
    };
    let files = nrrd_files(&root);
    assert!(files.len() >= 40, "only {} NRRD files found", files.len());
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let result = nrrd::read(&f);
        match INVALID.iter().find(|(n, _)| *n == name) {
            Some((_, why)) => {
                let e = result.expect_err(&name).to_string();
                assert!(e.contains(&name) && e.contains(why), "{name}: {e}");
            }
            None => {
                let n = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(n.data.len() as u64, n.header.element_count().unwrap());
            }
        }
    }
}

#[test]
fn sums_match_pynrrd() {
    let root = match common::test_data() {
        Some(r) => r,
        None => return,
    };
    // (file, sizes fastest first, type, sum of samples) from pynrrd.
    let cases: [(&str, &[usize], DataType, f64); 14] = [
        (
            "dcmqi/data/paramaps/pm-example-3slices-252x255.nrrd",
            &[255, 252, 3],
            DataType::I16,
            115918069.0,
        ),
        (
            "dcmqi/data/paramaps/pm-example.nrrd",
            &[256, 256, 20],
            DataType::I16,
            714203068.0,
        ),
        (
            "dcmqi/data/segmentations/liver_spine_gapped_seg.nrrd",
            &[512, 512, 3],
            DataType::I16,
            169293.0,
        ),
        (
            "dcmqi/data/segmentations/23x38x3/nrrd/label.nrrd",
            &[23, 38, 3],
            DataType::I16,
            322.0,
        ),
        (
            &format!("{PYNRRD}/test1d_ascii.nrrd"),
            &[27],
            DataType::U8,
            378.0,
        ),
        (
            &format!("{PYNRRD}/test2d_ascii.nrrd"),
            &[3, 9],
            DataType::U16,
            378.0,
        ),
        (
            &format!("{PYNRRD}/test_customFields.nrrd"),
            &[27],
            DataType::U8,
            378.0,
        ),
        (
            &format!("{PYNRRD}/test_simple4d_raw.nrrd"),
            &[1, 1, 1, 1],
            DataType::F64,
            0.76903426,
        ),
        (
            "pyradiomics/data/brain1_label.nrrd",
            &[256, 256, 25],
            DataType::I32,
            4137.0,
        ),
        (
            "pyradiomics/data/prostate_phantom_subvolume.nrrd",
            &[82, 67, 13],
            DataType::U16,
            27811967.0,
        ),
        (
            &format!("{SLICER}/deform2x2x2_ras.nrrd"),
            &[3, 2, 2, 2],
            DataType::F64,
            -160.0,
        ),
        (
            &format!("{SLICER}/multishell-DWI-451dir.nhdr"),
            &[451, 7, 7, 2],
            DataType::I16,
            2913063.0,
        ),
        (
            "slicerio/slicerio/data/CTChest4.nrrd",
            &[128, 128, 34],
            DataType::I32,
            -597631092.0,
        ),
        (
            "slicerio/slicerio/data/SegmentationOverlapping.seg.nrrd",
            &[2, 128, 128, 34],
            DataType::U8,
            1507803.0,
        ),
    ];
    for (rel, sizes, t, want) in cases {
        let n = nrrd::read(&root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(n.header.sizes(), sizes, "{rel}");
        assert_eq!(n.header.data_type, t, "{rel}");
        assert!(
            (sum(&n.data) - want).abs() < 1e-6,
            "{rel}: sum {} vs {want}",
            sum(&n.data)
        );
    }
}

#[test]
fn ball_variants_equal_the_raw_file() {
    let raw = require_data!(&format!("{PYNRRD}/BallBinary30x30x30.raw"));
    let bytes = std::fs::read(&raw).unwrap();
    let want: Vec<i16> = bytes
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(want.iter().map(|&v| f64::from(v)).sum::<f64>(), 3682296.0);
    for name in [
        "BallBinary30x30x30.nrrd",
        "BallBinary30x30x30.nhdr",
        "BallBinary30x30x30_gz.nrrd",
        "BallBinary30x30x30_bz2.nrrd",
        "BallBinary30x30x30_gz_lineskip.nrrd",
        "BallBinary30x30x30_gz_byteskip_minus_one.nrrd",
        "BallBinary30x30x30_byteskip_minus_one.nhdr",
        "BallBinary30x30x30_byteskip_minus_one_nifti.nhdr",
    ] {
        let p = raw.with_file_name(name);
        let v = nrrd::read_volume(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
        let AnyVolume::I16(v) = v else {
            panic!("{name}: not short")
        };
        assert_eq!(v.size_ijk(), [30, 30, 30], "{name}");
        assert_eq!(v.data.as_slice().unwrap(), want.as_slice(), "{name}");
        assert_eq!(v.geometry, Geometry::default(), "{name}");
    }
}

#[test]
fn nhdr_into_a_nifti_without_byte_skip_is_refused() {
    let p = require_data!(&format!("{PYNRRD}/BallBinary30x30x30_nifti.nhdr"));
    let e = nrrd::read_volume(&p).unwrap_err();
    assert!(matches!(e, Error::Format { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("BallBinary30x30x30_nifti.nhdr"), "{msg}");
    assert!(msg.contains("BallBinary30x30x30.nii.gz"), "{msg}");
    assert!(msg.contains("declares 54000 bytes"), "{msg}");
    let p = p.with_file_name("BallBinary30x30x30_byteskip_minus_five.nhdr");
    let msg = nrrd::read_volume(&p).unwrap_err().to_string();
    assert!(msg.contains("byte skip -5 is invalid"), "{msg}");
}

#[test]
fn ct_chest_reads_with_slicer_geometry() {
    let p = require_data!("slicerio/slicerio/data/CTChest4.nrrd");
    let v = nrrd::read_volume(&p).unwrap();
    let AnyVolume::I32(ct) = &v else {
        panic!("CTChest4 is int")
    };
    assert_eq!(ct.size_ijk(), [128, 128, 34]);
    assert_eq!(v.min_max(), Some((-3024.0, 3070.0)));
    // pynrrd: data[64, 64, 17] (i, j, k) = 1, data[10, 20, 30] = -3024.
    assert_eq!(ct.data[[17, 64, 64]], 1);
    assert_eq!(ct.data[[30, 20, 10]], -3024);
    let g = ct.geometry;
    assert_eq!(
        g.origin,
        [193.09599304199222, 216.39599609374994, -340.24999999999994]
    );
    assert_eq!(
        g.spacing,
        [3.04687595367432, 3.04687595367432, 9.999999999999996]
    );
    assert_eq!(g.orientation_code(), "RAS");
}

#[test]
fn slicer_segmentation_has_its_segments() {
    let p = require_data!("slicerio/slicerio/data/Segmentation.seg.nrrd");
    let s = nrrd::read_segmentation(&p).unwrap();
    assert_eq!(s.layers.len(), 1);
    assert_eq!(s.size_ijk(), [128, 128, 34]);
    assert_eq!(s.segments.len(), 7);
    let names: Vec<&str> = s.segments.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ribs",
            "cervical vertebral column",
            "thoracic vertebral column",
            "lumbar vertebral column",
            "right lung",
            "left lung",
            "tissue"
        ]
    );
    let lung = &s.segments[4];
    assert_eq!(
        (lung.id.as_str(), lung.label_value, lung.layer),
        ("Segment_5", 5, 0)
    );
    assert_eq!(lung.color, [0.0862745, 0.772549, 0.278431]);
    assert!(!lung.color_auto_generated && lung.name_auto_generated);
    assert_eq!(
        lung.tags[0],
        ("Segmentation.Status".into(), "inprogress".into())
    );
    assert!(lung.tags[1]
        .1
        .contains("SCT^39607008^Lung~SCT^24028007^Right"));
    let count = |seg: usize| {
        s.segment_mask(seg)
            .unwrap()
            .data
            .iter()
            .filter(|&&v| v == 1)
            .count()
    };
    // pynrrd: label 1 (ribs) 8487, 5 (right lung) 34450, 6 (left lung) 33700 voxels.
    assert_eq!((count(0), count(4), count(5)), (8487, 34450, 33700));
    assert_eq!(s.extent_offset, [0, 0, 0]);
    let keys: Vec<&str> = s.extra_fields.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        keys.contains(&"Segmentation_ConversionParameters"),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"Segmentation_MasterRepresentation"),
        "{keys:?}"
    );
    let ct = nrrd::read_volume(&p.with_file_name("CTChest4.nrrd")).unwrap();
    assert_eq!(s.geometry, *ct.geometry());
}

#[test]
fn overlapping_segmentation_has_two_layers() {
    let p = require_data!("slicerio/slicerio/data/SegmentationOverlapping.seg.nrrd");
    let s = nrrd::read_segmentation(&p).unwrap();
    assert_eq!(s.layers.len(), 2);
    assert_eq!(s.segments.len(), 8);
    let sphere = &s.segments[7];
    assert_eq!(
        (sphere.name.as_str(), sphere.label_value, sphere.layer),
        ("overlapping sphere", 1, 1)
    );
    let count = |seg: usize| {
        s.segment_mask(seg)
            .unwrap()
            .data
            .iter()
            .filter(|&&v| v == 1)
            .count()
    };
    // pynrrd: layer 0 label 5 = 34450, layer 1 label 1 = 19139.
    assert_eq!((count(4), count(7)), (34450, 19139));
    let flat = nrrd::read_segmentation(&p.with_file_name("Segmentation.seg.nrrd")).unwrap();
    assert_eq!(s.layers[0], flat.layers[0]);
    assert_eq!(s.geometry, flat.geometry);
}

#[test]
fn segmentations_round_trip_through_seg_nrrd() {
    let p = require_data!("slicerio/slicerio/data/SegmentationOverlapping.seg.nrrd");
    let dir = tempfile::tempdir().unwrap();
    for src in ["Segmentation.seg.nrrd", "SegmentationOverlapping.seg.nrrd"] {
        let s = nrrd::read_segmentation(&p.with_file_name(src)).unwrap();
        let out = dir.path().join(src);
        nrrd::write_segmentation(&out, &s).unwrap();
        let back = nrrd::read_segmentation(&out).unwrap();
        assert_eq!(back, s, "{src}");
        let h = nrrd::read_header(&out).unwrap();
        assert_eq!(h.data_type, DataType::U8);
        assert_eq!(h.encoding, Encoding::Gzip);
        assert_eq!(h.space, Some(Space::LeftPosteriorSuperior));
        // Extents cover each layer's segments (numpy: layer 0 non-zero voxels span
        // i 0..124, j 22..116, k 0..33); Slicer wrote the same box for layer 1.
        for n in 0..s.segments.len() {
            let key = format!("Segment{n}_Extent");
            let want = if s.segments[n].layer == 0 {
                "0 124 22 116 0 33"
            } else {
                "16 64 61 109 16 30"
            };
            assert_eq!(h.key_value(&key), Some(want), "{src} {key}");
        }
        if s.layers.len() > 1 {
            assert_eq!(h.sizes(), vec![2, 128, 128, 34]);
            assert_eq!(h.axes[0].kind, Some(Kind::List));
            assert_eq!(h.axes[0].space_direction, None);
        } else {
            assert_eq!(h.dimension(), 3);
        }
    }
}

#[test]
fn a_plain_labelmap_becomes_one_segment_per_label() {
    let p = require_data!("dcmqi/data/segmentations/liver_spine_gapped_seg.nrrd");
    let s = nrrd::read_segmentation(&p).unwrap();
    let labels: Vec<u16> = s.segments.iter().map(|x| x.label_value).collect();
    let names: Vec<&str> = s.segments.iter().map(|x| x.name.as_str()).collect();
    assert!(labels.len() >= 2 && labels.contains(&5), "{labels:?}");
    assert_eq!(names[0], format!("Segment_{}", labels[0]));
}

#[test]
fn dwi_round_trips_through_the_general_layer() {
    let p = require_data!(&format!("{SLICER}/multishell-DWI-451dir.nhdr"));
    let dwi = nrrd::read(&p).unwrap();
    let h = &dwi.header;
    assert_eq!(h.version, 5);
    assert_eq!(h.space, Some(Space::RightAnteriorSuperior));
    assert_eq!(h.axes[0].kind, Some(Kind::List));
    assert_eq!(h.key_value("DWMRI_b-value"), Some("10000"));
    assert_eq!(
        h.measurement_frame,
        Some(vec![
            vec![-1.0, 0.0, 0.0],
            vec![0.0, -1.0, 0.0],
            vec![0.0, 0.0, 1.0]
        ])
    );
    // pynrrd: data[0,0,0,0] = 45, data[5,3,4,1] = 219, data[450,6,6,1] = 25.
    let NrrdData::I16(v) = &dwi.data else {
        panic!("short")
    };
    let at = |l: usize, i: usize, j: usize, k: usize| v[l + 451 * (i + 7 * (j + 7 * k))];
    assert_eq!(
        (at(0, 0, 0, 0), at(5, 3, 4, 1), at(450, 6, 6, 1)),
        (45, 219, 25)
    );

    let e = nrrd::read_volume(&p).unwrap_err().to_string();
    assert!(
        e.contains("4-D NRRD (sizes 451 7 7 2, kinds list domain domain domain)"),
        "{e}"
    );

    let dir = tempfile::tempdir().unwrap();
    for (name, enc) in [("dwi.nrrd", Encoding::Gzip), ("dwi.nhdr", Encoding::Raw)] {
        let out = dir.path().join(name);
        nrrd::write(&out, &dwi, &WriteOptions::new().encoding(enc)).unwrap();
        let back = nrrd::read(&out).unwrap();
        assert_eq!(back.data, dwi.data);
        let mut expect = dwi.header.clone();
        expect.version = 4;
        expect.encoding = enc;
        expect.data_file = back.header.data_file.clone();
        assert_eq!(back.header, expect, "{name}");
    }
}

#[test]
fn vector_field_and_small_files_keep_their_header() {
    let p = require_data!(&format!("{SLICER}/deform2x2x2_ras.nrrd"));
    let n = nrrd::read(&p).unwrap();
    assert_eq!(n.header.axes[0].kind, Some(Kind::Vector));
    assert_eq!(n.header.space_origin, Some(vec![-120.0, -120.0, -80.6]));
    assert!(nrrd::read_volume(&p)
        .unwrap_err()
        .to_string()
        .contains("kinds vector domain domain domain"));
    let root = common::test_data().unwrap();
    let c = nrrd::read(&root.join(PYNRRD).join("test_customFields.nrrd")).unwrap();
    assert_eq!(
        c.header.key_value("double matrix"),
        Some(" (1.2,0.3,0) (0,1.5,0) (0,-0.55,1.6)")
    );
    assert_eq!(c.header.axes[0].spacing, Some(1.0458));
    let e = nrrd::read_volume(&root.join(PYNRRD).join("test2d_ascii.nrrd")).unwrap_err();
    assert!(e.to_string().contains("2-D NRRD"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    for enc in [Encoding::Ascii, Encoding::Hex, Encoding::Bzip2] {
        let out = dir.path().join("c.nrrd");
        nrrd::write(&out, &c, &WriteOptions::new().encoding(enc)).unwrap();
        let back = nrrd::read(&out).unwrap();
        assert_eq!(back.data, c.data);
        assert_eq!(back.header.key_values, c.header.key_values);
    }
}

#[test]
fn squeezed_4d_file_becomes_a_volume_in_lps() {
    let p = require_data!(&format!("{PYNRRD}/test_simple4d_raw.nrrd"));
    let v = nrrd::read_volume(&p).unwrap();
    assert_eq!(v.size_ijk(), [1, 1, 1]);
    let g = v.geometry();
    assert_eq!(g.spacing, [1.5, 1.5, 1.0]);
    assert_eq!(g.orientation_code(), "RAS");
    assert_eq!(v.min_max(), Some((0.76903426, 0.76903426)));
}

#[test]
fn slicer_volumes_round_trip_through_write_volume() {
    let root = match common::test_data() {
        Some(r) => r,
        None => return,
    };
    let dir = tempfile::tempdir().unwrap();
    for rel in [
        "slicerio/slicerio/data/CTChest4.nrrd",
        "pyradiomics/data/breast1_image.nrrd",
        "pyradiomics/data/prostate_phantom_subvolume.nrrd",
        "dcmqi/data/paramaps/pm-example-3slices-252x255.nrrd",
    ] {
        let v = nrrd::read_volume(&root.join(rel)).unwrap();
        for name in ["v.nrrd", "v.nhdr"] {
            let out = dir.path().join(name);
            nrrd::write_volume(&out, &v).unwrap();
            let back = nrrd::read_volume(&out).unwrap();
            assert_eq!(back.scalar_type(), v.scalar_type(), "{rel}");
            assert_eq!(back.to_f64().data, v.to_f64().data, "{rel}");
            assert_same_geometry(back.geometry(), v.geometry());
        }
        let text =
            String::from_utf8_lossy(&std::fs::read(dir.path().join("v.nrrd")).unwrap()[..600])
                .into_owned();
        for line in [
            "NRRD0004\n",
            "\ndimension: 3\n",
            "\nspace: left-posterior-superior\n",
            "\nkinds: domain domain domain\n",
            "\nencoding: gzip\n",
            "\nspace origin: (",
        ] {
            assert!(text.contains(line), "{rel}: {line:?} missing in\n{text}");
        }
    }
}

#[test]
fn labelmaps_are_written_as_slicer_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut lm: Labelmap = Volume::zeros([4, 3, 2], Geometry::default());
    lm.data[[1, 2, 3]] = 7;
    let out = dir.path().join("x-label.nrrd");
    nrrd::write_labelmap(&out, &lm).unwrap();
    let h = nrrd::read_header(&out).unwrap();
    assert_eq!(h.data_type, DataType::I16);
    assert_eq!(h.encoding, Encoding::Gzip);
    let back = nrrd::read_volume(&out).unwrap().cast::<u16>();
    assert_eq!(back.data, lm.data);
    lm.data[[0, 0, 0]] = 40000;
    nrrd::write_labelmap(&out, &lm).unwrap();
    assert_eq!(nrrd::read_header(&out).unwrap().data_type, DataType::U16);
    assert_eq!(nrrd::read_volume(&out).unwrap().cast::<u16>().data, lm.data);
}

#[test]
fn segmentation_with_wide_labels_is_written_as_ushort() {
    let dir = tempfile::tempdir().unwrap();
    let mut layer = ndarray::Array3::<u16>::zeros((2, 2, 2));
    layer[[1, 1, 1]] = 300;
    layer[[0, 0, 0]] = 1;
    let s = Segmentation {
        geometry: Geometry::default(),
        layers: vec![layer],
        segments: vec![
            Segment::new("a", "first", 1, 0),
            Segment::new("b", "second", 300, 0),
        ],
        extent_offset: [1, 2, 3],
        extra_fields: vec![],
    };
    let out = dir.path().join("w.seg.nrrd");
    nrrd::write_segmentation(&out, &s).unwrap();
    let h = nrrd::read_header(&out).unwrap();
    assert_eq!(h.data_type, DataType::U16);
    assert_eq!(h.key_value("Segment1_Extent"), Some("0 1 0 1 0 1"));
    assert_eq!(
        h.key_value("Segmentation_ReferenceImageExtentOffset"),
        Some("1 2 3")
    );
    assert_eq!(
        h.key_value("Segmentation_MasterRepresentation"),
        Some("Binary labelmap")
    );
    let mut back = nrrd::read_segmentation(&out).unwrap();
    back.extra_fields.clear();
    let mut want = s.clone();
    for seg in &mut want.segments {
        seg.tags.clear();
    }
    assert_eq!(back, want);
}

// ---------------------------------------------------------------- property tests

/// A volume of type number `t` (0..10) from `values`, on an oblique or axis-aligned lattice.
fn volume(t: usize, size: [usize; 3], values: &[f64], g: Geometry) -> AnyVolume {
    fn make<T: Scalar>(size: [usize; 3], values: &[f64], g: Geometry) -> AnyVolume {
        let n = size.iter().product::<usize>();
        let data: Vec<T> = values
            .iter()
            .cycle()
            .take(n)
            .map(|&v| T::from_f64(v))
            .collect();
        let a = ndarray::Array3::from_shape_vec((size[2], size[1], size[0]), data).unwrap();
        T::into_any(Volume::new(a, g))
    }
    match t {
        0 => make::<u8>(size, values, g),
        1 => make::<i8>(size, values, g),
        2 => make::<u16>(size, values, g),
        3 => make::<i16>(size, values, g),
        4 => make::<u32>(size, values, g),
        5 => make::<i32>(size, values, g),
        6 => make::<u64>(size, values, g),
        7 => make::<i64>(size, values, g),
        8 => make::<f32>(size, values, g),
        _ => make::<f64>(size, values, g),
    }
}

fn rotation(a: f64, b: f64, c: f64) -> [[f64; 3]; 3] {
    let (sa, ca) = a.sin_cos();
    let (sb, cb) = b.sin_cos();
    let (sc, cc) = c.sin_cos();
    let rz = [[ca, -sa, 0.0], [sa, ca, 0.0], [0.0, 0.0, 1.0]];
    let ry = [[cb, 0.0, sb], [0.0, 1.0, 0.0], [-sb, 0.0, cb]];
    let rx = [[1.0, 0.0, 0.0], [0.0, cc, -sc], [0.0, sc, cc]];
    let mul = |p: [[f64; 3]; 3], q: [[f64; 3]; 3]| {
        let mut m = [[0.0; 3]; 3];
        for r in 0..3 {
            for c in 0..3 {
                m[r][c] = (0..3).map(|k| p[r][k] * q[k][c]).sum();
            }
        }
        m
    };
    mul(mul(rz, ry), rx)
}

const ENCODINGS: [Encoding; 5] = [
    Encoding::Raw,
    Encoding::Gzip,
    Encoding::Bzip2,
    Encoding::Ascii,
    Encoding::Hex,
];

proptest! {
    // 96 cases by default; `PROPTEST_CASES=5000` for a longer hunt.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(96),
        ..ProptestConfig::default()
    })]

    #[test]
    fn write_then_read_gives_the_same_volume(
        t in 0usize..10,
        size in [1usize..5, 1usize..5, 1usize..5],
        values in prop::collection::vec(-1e6f64..1e6, 1..16),
        enc in 0usize..5,
        detached in any::<bool>(),
        oblique in any::<bool>(),
        angles in [-3.2f64..3.2, -3.2f64..3.2, -3.2f64..3.2],
        spacing in [0.01f64..10.0, 0.01f64..10.0, 0.01f64..10.0],
        origin in [-1e3f64..1e3, -1e3f64..1e3, -1e3f64..1e3],
        flip in any::<bool>(),
    ) {
        let mut axes = if oblique { rotation(angles[0], angles[1], angles[2]) } else { segkit::volume::IDENTITY };
        if flip {
            axes[0] = axes[0].map(|x| -x);
        }
        let g = Geometry::from_axes(origin, spacing, axes);
        let v = volume(t, size, &values, g);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(if detached { "v.nhdr" } else { "v.nrrd" });
        let options = WriteOptions::new().encoding(ENCODINGS[enc]);
        nrrd::write_volume_with_options(&path, &v, &options).unwrap();
        let back = nrrd::read_volume(&path).unwrap();
        prop_assert_eq!(back.scalar_type(), v.scalar_type());
        prop_assert_eq!(back.size_ijk(), v.size_ijk());
        prop_assert_eq!(back.to_le_bytes(), v.to_le_bytes());
        assert_same_geometry(back.geometry(), v.geometry());
        // The general layer gives back the same header too.
        let n = nrrd::read(&path).unwrap();
        let again = dir.path().join("again.nrrd");
        nrrd::write(&again, &n, &options).unwrap();
        let m = nrrd::read(&again).unwrap();
        prop_assert_eq!(m.data, n.data);
        let mut h = n.header.clone();
        h.data_file = None;
        prop_assert_eq!(m.header, h);
    }

    #[test]
    fn segmentations_round_trip(
        layers in 1usize..4,
        size in [1usize..5, 1usize..5, 1usize..5],
        seeds in prop::collection::vec(0u16..6, 1..32),
        wide in any::<bool>(),
        offset in [-5i64..5, -5i64..5, -5i64..5],
        enc in 0usize..5,
    ) {
        let n = size.iter().product::<usize>();
        let scale = if wide { 100 } else { 1 };
        let shape = (size[2], size[1], size[0]);
        let arrays: Vec<ndarray::Array3<u16>> = (0..layers)
            .map(|l| {
                let v = (0..n).map(|x| seeds[(x + l * 7) % seeds.len()] * scale).collect();
                ndarray::Array3::from_shape_vec(shape, v).unwrap()
            })
            .collect();
        let mut segments = Vec::new();
        for (l, a) in arrays.iter().enumerate() {
            let mut labels: Vec<u16> = a.iter().copied().filter(|&v| v != 0).collect();
            labels.sort_unstable();
            labels.dedup();
            for v in labels {
                let mut s = Segment::new(format!("s{l}_{v}"), format!("name {l}/{v}"), v, l);
                s.tags = vec![("k".into(), format!("v:{v}"))];
                segments.push(s);
            }
        }
        let g = Geometry::from_axes([1.0, -2.0, 3.5], [0.5, 0.75, 2.0], rotation(0.1, 0.2, 0.3));
        let seg = Segmentation {
            geometry: g,
            layers: arrays,
            segments,
            extent_offset: offset,
            extra_fields: vec![("Segmentation_MasterRepresentation".into(), "Binary labelmap".into())],
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.seg.nrrd");
        nrrd::write_segmentation_with_options(&p, &seg, &WriteOptions::new().encoding(ENCODINGS[enc])).unwrap();
        let back = nrrd::read_segmentation(&p).unwrap();
        prop_assert_eq!(&back.layers, &seg.layers);
        prop_assert_eq!(&back.segments, &seg.segments);
        prop_assert_eq!(back.extent_offset, seg.extent_offset);
        assert_same_geometry(&back.geometry, &seg.geometry);
        let h = nrrd::read_header(&p).unwrap();
        let max = seg.layers.iter().flat_map(|a| a.iter().copied()).max().unwrap_or(0);
        prop_assert_eq!(h.data_type, if max > 255 { DataType::U16 } else { DataType::U8 });
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.nrrd");
        let mut all = b"NRRD0004\n".to_vec();
        all.extend_from_slice(&bytes);
        std::fs::write(&p, &all).unwrap();
        let _ = nrrd::read(&p);
        let _ = nrrd::read_volume(&p);
        let _ = nrrd::read_segmentation(&p);
        std::fs::write(&p, &bytes).unwrap();
        let _ = nrrd::read(&p);
    }

    #[test]
    fn mutated_headers_never_panic(
        edits in prop::collection::vec((0usize..2000, 0u8..4, any::<u8>()), 1..6),
        enc in 0usize..5,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let g = Geometry::from_axes([1.0, 2.0, 3.0], [0.5, 1.0, 2.0], rotation(0.3, 0.2, 0.1));
        let v = volume(3, [3, 2, 2], &[1.0, -2.0, 300.0], g);
        let p = dir.path().join("m.nrrd");
        nrrd::write_volume_with_options(&p, &v, &WriteOptions::new().encoding(ENCODINGS[enc])).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        let head_len = bytes.windows(2).position(|w| w == b"\n\n").unwrap_or(bytes.len());
        // Interesting replacement text: digits, signs, separators, words of the format.
        let pieces: [&[u8]; 12] = [b"-1", b"0", b"99999999999", b"(", b")", b",", b" ", b"\n", b"none", b"nan", b":=", b": "];
        for (pos, op, byte) in edits {
            let pos = pos % (head_len + 8).min(bytes.len()).max(1);
            match op {
                0 => { bytes.remove(pos.min(bytes.len() - 1)); }
                1 => bytes.insert(pos, byte),
                2 => { let piece = pieces[byte as usize % pieces.len()]; bytes.splice(pos..pos, piece.iter().copied()); }
                _ => { let at = pos.min(bytes.len() - 1); bytes[at] = byte; }
            }
            if bytes.is_empty() { bytes.push(b'N'); }
        }
        std::fs::write(&p, &bytes).unwrap();
        let _ = nrrd::read(&p);
        let _ = nrrd::read_volume(&p);
        let _ = nrrd::read_segmentation(&p);
    }

    #[test]
    fn headers_round_trip_through_text(
        sizes in prop::collection::vec(1usize..100, 1..6),
        spacing in prop::option::of(-1e3f64..1e3),
        key in "[A-Za-z_][A-Za-z0-9 _.]{0,12}",
        value in "[ -~\n\\\\]{0,40}",
    ) {
        let mut h = Header::new(DataType::F32, &sizes);
        h.axes[0].spacing = spacing.filter(|s| *s != 0.0);
        h.axes[0].label = Some("a \"quoted\" label".into());
        h.space = Some(Space::RightAnteriorSuperior);
        h.space_dimension = 3;
        h.space_origin = Some(vec![0.1, -2.5e-12, 1e300]);
        h.set_key_value(key.trim_end(), value.clone());
        let back = Header::parse(&h.to_text()).unwrap();
        prop_assert_eq!(back, h);
    }
}

#[test]
fn nrrd_type_helpers_match_volumes() {
    let v: Volume<f32> = Volume::zeros([2, 2, 2], Geometry::default());
    let n = Nrrd::from_volume(&v.into());
    assert_eq!(n.header.data_type, DataType::F32);
    assert_eq!(n.data.len(), 8);
}

/// Measures gzip levels on a real CT (run with `--ignored --nocapture`); the result chose
/// `DEFAULT_GZIP_LEVEL`.
#[test]
#[ignore]
fn measure_gzip_levels() {
    let p = require_data!("lung_pet_ct_dx/Lung_Dx-A0002");
    let ct = match segkit::io::open(&p).unwrap() {
        segkit::io::Dataset::Volume(v) => v,
        _ => panic!("not a volume"),
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ct.nrrd");
    for level in [1, 2, 3, 4, 6, 9] {
        let t = std::time::Instant::now();
        let o = WriteOptions::new().compression_level(level);
        nrrd::write_volume_with_options(&out, &ct, &o).unwrap();
        let write = t.elapsed();
        let t = std::time::Instant::now();
        nrrd::read_volume(&out).unwrap();
        let size = std::fs::metadata(&out).unwrap().len();
        eprintln!(
            "level {level}: write {write:?}, read {:?}, {size} bytes ({:.2}x)",
            t.elapsed(),
            ct.to_le_bytes().len() as f64 / size as f64
        );
    }
}

/// Writes the files `tests/python/test_nrrd.py` gives to other readers (pynrrd, SimpleITK,
/// Teem, slicer-core): volumes, label maps and segmentations in every encoding, attached and
/// detached, with their truth as raw little-endian arrays and a `manifest.json`. Run by the
/// Python tests with `SEGKIT_NRRD_FIXTURES=<dir>`; skipped without it.
#[test]
#[ignore]
fn write_interop_fixtures() {
    let Some(dir) = std::env::var_os("SEGKIT_NRRD_FIXTURES").map(PathBuf::from) else {
        eprintln!("SKIP: set SEGKIT_NRRD_FIXTURES to a folder");
        return;
    };
    std::fs::create_dir_all(&dir).unwrap();
    let size = [5usize, 4, 3];
    let n = size.iter().product::<usize>();
    let index = |x: usize| (x % 5, x / 5 % 4, x / 20);
    let oblique = Geometry::from_axes(
        [12.5, -30.25, 7.0],
        [0.7, 0.9, 2.5],
        rotation(0.3, -0.2, 0.1),
    );
    let ras_like = Geometry::from_axes(
        [-100.0, 80.5, -3.0],
        [1.25, 1.25, 3.0],
        [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
    );
    let shape = (size[2], size[1], size[0]);
    let i16s: Vec<i16> = (0..n)
        .map(|x| {
            let (i, j, k) = index(x);
            ((i * 7 + j * 13 + k * 31) % 200) as i16 * 150 - 15000
        })
        .collect();
    let f32s: Vec<f32> = (0..n)
        .map(|x| (x as f32 * 0.37).sin() * 1000.0 - 0.125)
        .collect();
    let labels: Vec<u16> = (0..n).map(|x| ((x * 7) % 4) as u16).collect();
    let layer1: Vec<u16> = (0..n).map(|x| u16::from(index(x).0 >= 3)).collect();
    let vol_i16 = AnyVolume::I16(Volume::new(
        ndarray::Array3::from_shape_vec(shape, i16s.clone()).unwrap(),
        oblique,
    ));
    let vol_f32 = AnyVolume::F32(Volume::new(
        ndarray::Array3::from_shape_vec(shape, f32s.clone()).unwrap(),
        ras_like,
    ));
    let labelmap: Labelmap = Volume::new(
        ndarray::Array3::from_shape_vec(shape, labels.clone()).unwrap(),
        oblique,
    );
    let mut lung = Segment::new("Segment_1", "right lung", 1, 0);
    lung.color = [0.0862745, 0.772549, 0.278431];
    lung.color_auto_generated = false;
    lung.tags = vec![("Segmentation.Status".into(), "inprogress".into())];
    let mut other = Segment::new("Segment_2", "Gefäß, \"quoted\"", 2, 0);
    other.color = [0.25, 0.5, 1.0];
    let mut sphere = Segment::new("sphere", "overlapping sphere", 1, 1);
    sphere.color = [0.862745, 0.960784, 0.0784314];
    let mut unused = Segment::new("Segment_3", "third", 3, 0);
    unused.color = [1.0, 0.0, 0.0];
    let seg = Segmentation {
        geometry: oblique,
        layers: vec![
            ndarray::Array3::from_shape_vec(shape, labels.clone()).unwrap(),
            ndarray::Array3::from_shape_vec(shape, layer1.clone()).unwrap(),
        ],
        segments: vec![lung, other, unused, sphere],
        extent_offset: [0, 0, 0],
        extra_fields: vec![],
    };
    let le = |bytes: Vec<u8>, name: &str| std::fs::write(dir.join(name), bytes).unwrap();
    le(
        i16s.iter().flat_map(|v| v.to_le_bytes()).collect(),
        "vol_i16.bin",
    );
    le(
        f32s.iter().flat_map(|v| v.to_le_bytes()).collect(),
        "vol_f32.bin",
    );
    le(
        labels.iter().flat_map(|v| v.to_le_bytes()).collect(),
        "labels.bin",
    );
    le(
        layer1.iter().flat_map(|v| v.to_le_bytes()).collect(),
        "layer1.bin",
    );
    let geometry = |g: &Geometry| {
        serde_json::json!({
            "origin": g.origin,
            "steps": [g.step(0), g.step(1), g.step(2)],
        })
    };
    let mut files = Vec::new();
    for enc in ENCODINGS {
        for detached in [false, true] {
            let ext = if detached { "nhdr" } else { "nrrd" };
            let tag = format!("{}{}", enc.name(), if detached { "_detached" } else { "" });
            let options = WriteOptions::new().encoding(enc).detached(detached);
            let name = format!("vol_i16_{tag}.{ext}");
            nrrd::write_volume_with_options(&dir.join(&name), &vol_i16, &options).unwrap();
            files.push(serde_json::json!({"file": name, "kind": "volume", "truth": "vol_i16.bin",
                "dtype": "int16", "encoding": enc.name(), "detached": detached, "geometry": geometry(&oblique)}));
            let name = format!("vol_f32_{tag}.{ext}");
            nrrd::write_volume_with_options(&dir.join(&name), &vol_f32, &options).unwrap();
            files.push(serde_json::json!({"file": name, "kind": "volume", "truth": "vol_f32.bin",
                "dtype": "float32", "encoding": enc.name(), "detached": detached, "geometry": geometry(&ras_like)}));
            let name = format!("labels_{tag}-label.{ext}");
            nrrd::write_labelmap_with_options(&dir.join(&name), &labelmap, &options).unwrap();
            files.push(serde_json::json!({"file": name, "kind": "labelmap", "truth": "labels.bin",
                "dtype": "int16", "encoding": enc.name(), "detached": detached, "geometry": geometry(&oblique)}));
            let name = format!("seg_{tag}.seg.{ext}");
            nrrd::write_segmentation_with_options(&dir.join(&name), &seg, &options).unwrap();
            let segments: Vec<_> = seg
                .segments
                .iter()
                .map(|s| {
                    serde_json::json!({"id": s.id, "name": s.name, "label": s.label_value,
                    "layer": s.layer, "color": s.color})
                })
                .collect();
            files.push(serde_json::json!({"file": name, "kind": "segmentation",
                "truth": ["labels.bin", "layer1.bin"], "dtype": "uint8", "encoding": enc.name(),
                "detached": detached, "geometry": geometry(&oblique), "segments": segments}));
        }
    }
    let manifest = serde_json::json!({"size_ijk": size, "files": files});
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
}
