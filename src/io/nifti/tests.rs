//! Tests of the NIfTI reader and writer: hand-built files for every branch of the reader,
//! round trips for every voxel type and orientation, an independent reader (the `nifti`
//! crate) on what segkit writes, and property tests.

use super::header::{Header, Magic, HEADER_BYTES};
use super::*;
use crate::volume::{Geometry, Volume, IDENTITY};
use flate2::write::GzEncoder;
use flate2::Compression;
use proptest::prelude::*;
use std::path::PathBuf;

fn oblique() -> Geometry {
    let (s, c) = 0.4f64.sin_cos();
    let (s2, c2) = 0.25f64.sin_cos();
    // A rotation about z then about x, with anisotropic spacing.
    let i = [c, s, 0.0];
    let j = [-s * c2, c * c2, s2];
    let k = [s * s2, -c * s2, c2];
    Geometry::from_axes([-120.5, 33.25, 401.0], [0.7, 0.8, 2.5], [i, j, k])
}

fn flipped() -> Geometry {
    // Slicer-style RAS axes: i toward R, j toward A, k toward S.
    Geometry::from_axes(
        [250.0, 180.0, -804.5],
        [0.976562, 0.976562, 2.0],
        [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
    )
}

fn sheared() -> Geometry {
    // A gantry-tilted CT: k leans 18.5 degrees toward P, not perpendicular to the slices.
    let t = 18.5f64.to_radians();
    Geometry::from_axes(
        [-100.0, -80.0, 20.0],
        [0.5, 0.5, 3.0],
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, t.sin(), t.cos()]],
    )
}

fn geometries() -> Vec<(&'static str, Geometry)> {
    vec![
        ("identity", Geometry::default()),
        (
            "lps",
            Geometry {
                origin: [1.5, -2.25, 3.0],
                spacing: [0.5, 0.75, 3.0],
                direction: IDENTITY,
            },
        ),
        ("flipped", flipped()),
        ("oblique", oblique()),
        ("sheared", sheared()),
    ]
}

/// A small volume whose voxels differ, spanning the type's range as far as `f` allows.
fn ramp<T: Scalar>(size: [usize; 3], g: Geometry, f: impl Fn(usize) -> T) -> AnyVolume {
    let n = size.iter().product();
    let data = Array3::from_shape_vec((size[2], size[1], size[0]), (0..n).map(f).collect())
        .expect("shape");
    Volume::new(data, g).into()
}

fn all_types(size: [usize; 3], g: Geometry) -> Vec<AnyVolume> {
    vec![
        ramp(size, g, |n| (n * 37 % 256) as u8),
        ramp(size, g, |n| (n as i64 * 37 % 256 - 128) as i8),
        ramp(size, g, |n| (n * 4099 % 65536) as u16),
        ramp(size, g, |n| (n as i64 * 4099 % 65536 - 32768) as i16),
        ramp(size, g, |n| (n as u32).wrapping_mul(2_654_435_761)),
        ramp(size, g, |n| (n as i32).wrapping_mul(-1_640_531_535)),
        ramp(size, g, |n| (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        ramp(size, g, |n| (n as i64).wrapping_mul(-0x61C8_8646_80B5_83EB)),
        ramp(size, g, |n| n as f32 * -0.37 + 1e-3),
        ramp(size, g, |n| n as f64 * 1e10 - 0.123456789012345),
    ]
}

fn assert_same(read: &AnyVolume, written: &AnyVolume, what: &str) {
    assert_eq!(read.scalar_type(), written.scalar_type(), "{what}");
    assert_eq!(read.size_ijk(), written.size_ijk(), "{what}");
    assert_eq!(read.to_le_bytes(), written.to_le_bytes(), "{what}: voxels");
    assert!(
        read.geometry().approx_eq(written.geometry(), 1e-4),
        "{what}: geometry {:?} read back as {:?}",
        written.geometry(),
        read.geometry()
    );
}

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn put(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write test file");
    p
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// A minimal single-file header for hand-built files.
fn bare_header(size: [i16; 3], datatype: i16) -> Header {
    Header {
        dim: [3, size[0], size[1], size[2], 1, 1, 1, 1],
        datatype,
        pixdim: [1.0; 8],
        vox_offset: 352.0,
        ..Header::default()
    }
}

/// Header, extension flag, padding up to `vox_offset`, data.
fn nii_bytes(h: &Header, data: &[u8]) -> Vec<u8> {
    let mut out = h.encode().to_vec();
    out.resize((h.vox_offset as usize).max(352), 0);
    out.extend_from_slice(data);
    out
}

fn error_of(path: &Path) -> String {
    read_volume(path).expect_err("should fail").to_string()
}

#[test]
fn every_type_round_trips_in_nii_and_nii_gz() {
    let dir = temp();
    for (gname, g) in geometries() {
        for v in all_types([5, 4, 3], g) {
            for ext in ["nii", "nii.gz"] {
                let what = format!("{} {gname} .{ext}", v.scalar_type());
                let p = dir.path().join(format!("v.{ext}"));
                write_volume(&p, &v).unwrap_or_else(|e| panic!("{what}: {e}"));
                let back = read_volume(&p).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_same(&back, &v, &what);
            }
        }
    }
}

#[test]
fn written_header_is_what_itk_writes() {
    let dir = temp();
    let p = dir.path().join("h.nii");
    let v = ramp([3, 2, 2], flipped(), |n| n as i16);
    write_volume(&p, &v).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    assert_eq!(bytes.len(), 352 + 12 * 2);
    let mut raw = [0u8; HEADER_BYTES];
    raw.copy_from_slice(&bytes[..HEADER_BYTES]);
    let h = Header::decode(&raw, &p).unwrap();
    assert_eq!(h.magic, Magic::SingleFile);
    assert_eq!(h.dim, [3, 3, 2, 2, 1, 1, 1, 1]);
    assert_eq!((h.datatype, h.bitpix), (4, 16));
    assert_eq!((h.qform_code, h.sform_code), (1, 1));
    assert_eq!((h.scl_slope, h.scl_inter), (1.0, 0.0));
    assert_eq!(h.vox_offset, 352.0);
    assert_eq!(h.xyzt_units, 10);
    // LPS i toward R is RAS +x: the sform is diag(spacing) and the qform the identity.
    assert_eq!(h.srow[0], [0.976562, 0.0, 0.0, -250.0]);
    assert_eq!(h.srow[1], [0.0, 0.976562, 0.0, -180.0]);
    assert_eq!(h.srow[2], [0.0, 0.0, 2.0, -804.5]);
    assert_eq!(h.quatern, [0.0, 0.0, 0.0]);
    assert_eq!(h.pixdim[..4], [1.0, 0.976562, 0.976562, 2.0]);
    assert_eq!(&bytes[348..352], &[0, 0, 0, 0]);
    // Voxels i fastest, little-endian.
    assert_eq!(&bytes[352..358], &[0, 0, 1, 0, 2, 0]);
}

#[test]
fn an_independent_reader_agrees_with_what_we_write() {
    use nifti::{IntoNdArray, NiftiObject, ReaderOptions};
    let dir = temp();
    for (gname, g) in geometries() {
        let v = ramp([6, 5, 4], g, |n| (n as i32 - 60) * 1000);
        let p = dir.path().join("oracle.nii.gz");
        write_volume(&p, &v).unwrap();
        let obj = ReaderOptions::new().fix_header(true).read_file(&p).unwrap();
        let h = obj.header().clone();
        let arr = obj.into_volume().into_ndarray::<i32>().unwrap();
        // The crate gives [x, y, z]; ours is [k][j][i].
        assert_eq!(arr.shape(), &[6, 5, 4]);
        let ours = match &v {
            AnyVolume::I32(v) => v,
            _ => unreachable!(),
        };
        for ((k, j, i), &x) in ours.data.indexed_iter() {
            assert_eq!(arr[[i, j, k]], x, "{gname} voxel {i},{j},{k}");
        }
        // Its sform, taken to LPS, is our index-to-LPS matrix.
        let m = g.index_to_lps_4x4();
        let srow = [h.srow_x, h.srow_y, h.srow_z];
        for r in 0..3 {
            let sign = if r < 2 { -1.0 } else { 1.0 };
            for c in 0..4 {
                let theirs = sign * srow[r][c] as f64;
                assert!((theirs - m[r][c]).abs() < 1e-4, "{gname} sform[{r}][{c}]");
            }
        }
        assert_eq!((h.sform_code, h.qform_code), (1, 1));
    }
}

#[test]
fn qform_of_written_files_matches_the_lattice_when_it_is_not_sheared() {
    let dir = temp();
    for (gname, g) in geometries() {
        let p = dir.path().join("q.nii");
        write_volume(&p, &ramp([2, 2, 2], g, |n| n as u8)).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[254] = 0; // sform_code = 0: the reader falls back to the qform
        std::fs::write(&p, &bytes).unwrap();
        let q = read_volume(&p).unwrap();
        if gname == "sheared" {
            // No qform can hold a shear: the nearest rotation keeps i and the spacing.
            assert!((q.geometry().axis(0)[0] - 1.0).abs() < 1e-6);
            assert_eq!(q.geometry().orientation_code(), "LPS");
        } else {
            assert!(
                q.geometry().approx_eq(&g, 1e-4),
                "{gname}: {:?}",
                q.geometry()
            );
        }
    }
}

#[test]
fn qform_only_header_with_qfac_zero_reads() {
    let dir = temp();
    let mut h = bare_header([2, 2, 2], 2);
    h.qform_code = 1;
    h.pixdim = [0.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0];
    h.quatern = [0.0, 0.0, 1.0]; // 180 degrees about z: x and y flip
    h.qoffset = [10.0, 20.0, 30.0];
    let p = put(
        dir.path(),
        "q.nii",
        &nii_bytes(&h, &[1, 2, 3, 4, 5, 6, 7, 8]),
    );
    let v = read_volume(&p).unwrap();
    let g = v.geometry();
    assert_eq!(g.origin, [-10.0, -20.0, 30.0]);
    assert_eq!(g.spacing, [2.0, 3.0, 4.0]);
    // Rotated 180 degrees about z, RAS i toward L: LPS +x.
    assert_eq!(g.orientation_code(), "LPS");
    assert_eq!(v.to_le_bytes(), vec![1, 2, 3, 4, 5, 6, 7, 8]);
}

#[test]
fn no_orientation_uses_pixdim() {
    let dir = temp();
    let mut h = bare_header([1, 1, 1], 2);
    h.pixdim = [1.0, 0.5, -2.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    let p = put(dir.path(), "m1.nii", &nii_bytes(&h, &[9]));
    let g = *read_volume(&p).unwrap().geometry();
    assert_eq!(g.spacing, [0.5, 1.0, 1.0]); // non-positive voxel sizes read as 1
    assert_eq!(g.origin, [0.0; 3]);
    assert_eq!(g.orientation_code(), "RAS");
}

#[test]
fn scaling_keeps_ct_as_int16() {
    let dir = temp();
    // CT stored as uint16 with intercept -1024 (as dcm2niix writes unsigned CT).
    let mut h = bare_header([2, 1, 1], 512);
    h.scl_slope = 1.0;
    h.scl_inter = -1024.0;
    let data: Vec<u8> = [0u16, 4000].iter().flat_map(|v| v.to_le_bytes()).collect();
    let p = put(dir.path(), "ct.nii", &nii_bytes(&h, &data));
    match read_volume(&p).unwrap() {
        AnyVolume::I16(v) => assert_eq!(v.data.as_slice().unwrap(), &[-1024, 2976]),
        other => panic!("expected i16, got {}", other.scalar_type()),
    }

    // Integer scaling outside int16: f32.
    let data: Vec<u8> = [0u16, 65535].iter().flat_map(|v| v.to_le_bytes()).collect();
    let p = put(dir.path(), "wide.nii", &nii_bytes(&h, &data));
    match read_volume(&p).unwrap() {
        AnyVolume::F32(v) => assert_eq!(v.data.as_slice().unwrap(), &[-1024.0, 64511.0]),
        other => panic!("expected f32, got {}", other.scalar_type()),
    }

    // A fractional slope (Philips-style): f32.
    let mut h = bare_header([2, 1, 1], 4);
    h.scl_slope = 0.25;
    h.scl_inter = -500.0;
    let data: Vec<u8> = [4i16, -8].iter().flat_map(|v| v.to_le_bytes()).collect();
    let p = put(dir.path(), "frac.nii", &nii_bytes(&h, &data));
    match read_volume(&p).unwrap() {
        AnyVolume::F32(v) => assert_eq!(v.data.as_slice().unwrap(), &[-499.0, -502.0]),
        other => panic!("expected f32, got {}", other.scalar_type()),
    }

    // float64 stays float64.
    let mut h = bare_header([1, 1, 1], 64);
    h.scl_slope = 2.0;
    let p = put(dir.path(), "f64.nii", &nii_bytes(&h, &0.1f64.to_le_bytes()));
    match read_volume(&p).unwrap() {
        AnyVolume::F64(v) => assert_eq!(v.data[[0, 0, 0]], 0.2),
        other => panic!("expected f64, got {}", other.scalar_type()),
    }

    // Slope 0 means "no scaling": the stored type is kept.
    let mut h = bare_header([1, 1, 1], 512);
    h.scl_slope = 0.0;
    h.scl_inter = 7.0;
    let p = put(dir.path(), "zero.nii", &nii_bytes(&h, &[3, 0]));
    assert_eq!(read_volume(&p).unwrap().scalar_type(), ScalarType::U16);
}

#[test]
fn big_endian_files_read() {
    let dir = temp();
    // Build a little-endian header, then swap every numeric field we use.
    let mut h = bare_header([2, 1, 1], 4);
    h.sform_code = 1;
    h.srow = [
        [2.0, 0.0, 0.0, 1.0],
        [0.0, 2.0, 0.0, 2.0],
        [0.0, 0.0, 2.0, 3.0],
    ];
    let mut b = h.encode();
    let swap = |b: &mut [u8; HEADER_BYTES], at: usize, n: usize| b[at..at + n].reverse();
    swap(&mut b, 0, 4);
    for n in 0..8 {
        swap(&mut b, 40 + 2 * n, 2);
        swap(&mut b, 76 + 4 * n, 4);
    }
    for at in [70, 72, 252, 254] {
        swap(&mut b, at, 2);
    }
    for at in (108..124).step_by(4).chain((256..328).step_by(4)) {
        swap(&mut b, at, 4);
    }
    let mut file = b.to_vec();
    file.extend_from_slice(&[0; 4]);
    file.extend_from_slice(&[0x01, 0x02, 0xff, 0xfe]);
    let p = put(dir.path(), "be.nii", &file);
    let v = read_volume(&p).unwrap();
    assert_eq!(v.to_le_bytes(), [0x02, 0x01, 0xfe, 0xff]);
    assert_eq!(v.geometry().origin, [-1.0, -2.0, 3.0]);
    assert_eq!(v.geometry().spacing, [2.0; 3]);
}

#[test]
fn extensions_and_large_vox_offset_are_skipped() {
    let dir = temp();
    let mut h = bare_header([2, 1, 1], 2);
    h.vox_offset = 13168.0;
    let mut bytes = nii_bytes(&h, &[7, 8]);
    bytes[348] = 1; // "extensions present"; their content is junk to us
    for b in &mut bytes[352..13168] {
        *b = 0xAB;
    }
    for (name, content) in [("ext.nii", bytes.clone()), ("ext.nii.gz", gzip(&bytes))] {
        let p = put(dir.path(), name, &content);
        assert_eq!(read_volume(&p).unwrap().to_le_bytes(), [7, 8], "{name}");
    }
}

#[test]
fn gzip_is_detected_by_content_and_multi_member_streams_read_whole() {
    let dir = temp();
    let h = bare_header([4, 1, 1], 2);
    let bytes = nii_bytes(&h, &[1, 2, 3, 4]);
    // An uncompressed file named .nii.gz, and a compressed file named .nii.
    let p = put(dir.path(), "plain.nii.gz", &bytes);
    assert_eq!(read_volume(&p).unwrap().to_le_bytes(), [1, 2, 3, 4]);
    let p = put(dir.path(), "packed.nii", &gzip(&bytes));
    assert_eq!(read_volume(&p).unwrap().to_le_bytes(), [1, 2, 3, 4]);
    // Two gzip members (bgzip, or `cat a.gz b.gz`): the voxels span both.
    let (head, tail) = bytes.split_at(354);
    let mut two = gzip(head);
    two.extend(gzip(tail));
    let p = put(dir.path(), "two.nii.gz", &two);
    assert_eq!(read_volume(&p).unwrap().to_le_bytes(), [1, 2, 3, 4]);
}

#[test]
fn analyze_style_pair_reads() {
    let dir = temp();
    let mut h = bare_header([3, 1, 1], 2);
    h.magic = Magic::Pair;
    h.vox_offset = 0.0;
    put(dir.path(), "pair.hdr", &h.encode());
    put(dir.path(), "pair.img", &[5, 6, 7]);
    let v = read_volume(&dir.path().join("pair.hdr")).unwrap();
    assert_eq!(v.to_le_bytes(), [5, 6, 7]);

    put(dir.path(), "gz.hdr.gz", &gzip(&h.encode()));
    put(dir.path(), "gz.img.gz", &gzip(&[5, 6, 7]));
    let v = read_volume(&dir.path().join("gz.hdr.gz")).unwrap();
    assert_eq!(v.to_le_bytes(), [5, 6, 7]);

    put(dir.path(), "lonely.hdr", &h.encode());
    let e = read_volume(&dir.path().join("lonely.hdr")).unwrap_err();
    assert!(e.to_string().contains("lonely.img"), "{e}");

    // ANALYZE 7.5 without the NIfTI magic: orientation undefined, refused.
    h.magic = Magic::Other(*b"\0\0\0\0");
    put(dir.path(), "old.hdr", &h.encode());
    put(dir.path(), "old.img", &[5, 6, 7]);
    let e = error_of(&dir.path().join("old.hdr"));
    assert!(e.contains("ANALYZE"), "{e}");
}

#[test]
fn bad_files_give_clear_errors() {
    let dir = temp();
    let d = dir.path();
    let check = |name: &str, bytes: &[u8], expect: &str| {
        for (n, content) in [
            (name.to_string(), bytes.to_vec()),
            (format!("{name}.gz"), gzip(bytes)),
        ] {
            let p = put(d, &n, &content);
            let e = error_of(&p);
            assert!(e.contains(&n), "{n}: error does not name the file: {e}");
            assert!(e.contains(expect), "{n}: expected '{expect}' in: {e}");
        }
    };
    check("empty.nii", &[], "too short");
    check("garbage.nii", &[0x42; 1000], "not a NIfTI-1 file");
    check(
        "short.nii",
        &bare_header([2, 2, 2], 2).encode()[..200],
        "too short",
    );

    let mut nifti2 = [0u8; 600];
    nifti2[..4].copy_from_slice(&540i32.to_le_bytes());
    check("n2.nii", &nifti2, "NIfTI-2");

    let h = bare_header([2, 2, 2], 2);
    check("truncated.nii", &nii_bytes(&h, &[1, 2, 3]), "truncated");
    check("nodata.nii", &h.encode(), "truncated");

    check(
        "negative.nii",
        &nii_bytes(&bare_header([2, -2, 2], 2), &[0; 8]),
        "dim[2]",
    );
    // 100000 does not fit NIfTI-1's int16 sizes: a writer that tries stores -31072.
    check(
        "wrapped.nii",
        &nii_bytes(&bare_header([100000u32 as i16, 4, 4], 2), &[0; 8]),
        "dim[1]",
    );
    check(
        "zero.nii",
        &nii_bytes(&bare_header([2, 0, 2], 2), &[0; 8]),
        "dim[2]",
    );
    check(
        "huge.nii",
        &nii_bytes(&bare_header([i16::MAX; 3], 64), &[0; 8]),
        "above the limit",
    );
    check(
        "unknown.nii",
        &nii_bytes(&bare_header([2, 2, 2], 3), &[0; 8]),
        "unknown datatype code 3",
    );
    check(
        "rgb.nii",
        &nii_bytes(&bare_header([2, 2, 2], 128), &[0; 24]),
        "RGB",
    );
    check(
        "complex.nii",
        &nii_bytes(&bare_header([1, 1, 1], 32), &[0; 8]),
        "complex64",
    );

    let mut four_d = bare_header([2, 2, 2], 2);
    four_d.dim[0] = 4;
    four_d.dim[4] = 3;
    check("4d.nii", &nii_bytes(&four_d, &[0; 24]), "2x2x2x3");

    let mut rank = bare_header([2, 2, 2], 2);
    rank.dim[0] = 0;
    check("rank.nii", &nii_bytes(&rank, &[0; 8]), "dim[0]");

    let mut offset = bare_header([1, 1, 1], 2);
    offset.vox_offset = -4.0;
    check("offset.nii", &offset.encode(), "vox_offset -4");
    offset.vox_offset = 400.5;
    check("fraction.nii", &offset.encode(), "vox_offset 400.5");
    // Voxels said to start far beyond the end of the file.
    offset.vox_offset = 1e9;
    let mut far = offset.encode().to_vec();
    far.extend_from_slice(&[0; 8]);
    let e = error_of(&put(d, "far.nii", &far));
    assert!(e.contains("truncated") && e.contains("1000000000"), "{e}");
    let e = error_of(&put(d, "far.nii.gz", &gzip(&far)));
    assert!(
        e.contains("before the voxels begin at byte 1000000000"),
        "{e}"
    );

    let mut pair = bare_header([1, 1, 1], 2);
    pair.magic = Magic::Pair;
    check("pairmagic.nii", &nii_bytes(&pair, &[0]), "separate .img");

    // Corrupt deflate data after a valid gzip start.
    let mut bad = gzip(&nii_bytes(&h, &[0; 8]));
    let len = bad.len();
    for b in &mut bad[20..len - 8] {
        *b ^= 0x5A;
    }
    let p = put(d, "corrupt.nii.gz", &bad);
    let e = error_of(&p);
    assert!(e.contains("corrupt.nii.gz"), "{e}");

    // A gzip stream cut short.
    let good = gzip(&nii_bytes(&h, &[0; 8]));
    let p = put(d, "cut.nii.gz", &good[..good.len() / 2]);
    let e = error_of(&p);
    assert!(e.contains("cut.nii.gz"), "{e}");
}

#[test]
fn a_lying_gzip_header_does_not_allocate_what_it_declares() {
    // 8 GiB declared (under the 64 GiB limit), 16 bytes present. The reader must fail on
    // the missing data after allocating about what the stream held, not 8 GiB.
    let dir = temp();
    let h = bare_header([2048, 2048, 2048], 2);
    let p = put(dir.path(), "bomb.nii.gz", &gzip(&nii_bytes(&h, &[0; 16])));
    let start = std::time::Instant::now();
    let e = error_of(&p);
    assert!(e.contains("truncated") && e.contains("holds 16"), "{e}");
    assert!(start.elapsed().as_secs() < 5);
}

#[test]
fn writer_refuses_what_nifti1_cannot_hold() {
    let dir = temp();
    let v = ramp([2, 2, 2], Geometry::default(), |n| n as u8);
    let e = write_volume(&dir.path().join("x.nrrd"), &v).unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");

    let mut g = Geometry::default();
    g.spacing[2] = 0.0;
    let bad = ramp([2, 2, 2], g, |n| n as u8);
    let p = dir.path().join("bad.nii");
    let e = write_volume(&p, &bad).unwrap_err().to_string();
    assert!(e.contains("bad.nii") && e.contains("spacing"), "{e}");
    assert!(!p.exists());

    let wide = ramp([40000, 1, 1], Geometry::default(), |_| 0u8);
    let e = write_volume(&dir.path().join("wide.nii"), &wide).unwrap_err();
    assert!(e.to_string().contains("32767"), "{e}");
}

#[test]
fn non_standard_layout_is_written_in_index_order() {
    let dir = temp();
    let c = Array3::from_shape_fn((2, 3, 4), |(k, j, i)| (100 * k + 10 * j + i) as u16);
    let mut f = Array3::zeros((2, 3, 4).f());
    f.assign(&c);
    let v: AnyVolume = Volume::new(f, Geometry::default()).into();
    let p = dir.path().join("f.nii");
    write_volume(&p, &v).unwrap();
    match read_volume(&p).unwrap() {
        AnyVolume::U16(back) => assert_eq!(back.data, c),
        other => panic!("{}", other.scalar_type()),
    }
}

use ndarray::ShapeBuilder;

/// Times the writer at a few zlib levels on a real CT when the test data is present.
/// Run with `cargo test --release --lib io::nifti::tests::gzip_levels -- --ignored --nocapture`.
#[test]
#[ignore]
fn gzip_levels() {
    let Ok(src) = std::env::var("SEGKIT_NIFTI_BENCH") else {
        eprintln!("set SEGKIT_NIFTI_BENCH to a .nii file");
        return;
    };
    let v = read_volume(Path::new(&src)).unwrap();
    let raw = v.to_le_bytes();
    for level in [1, 2, 3, 4, 6] {
        let start = std::time::Instant::now();
        let mut e = GzEncoder::new(Vec::new(), Compression::new(level));
        e.write_all(&raw).unwrap();
        let out = e.finish().unwrap();
        let t = start.elapsed();
        let start = std::time::Instant::now();
        let mut d = MultiGzDecoder::new(&out[..]);
        io::copy(&mut d, &mut io::sink()).unwrap();
        eprintln!(
            "level {level}: {} -> {} bytes ({:.2}x), {:?} compress, {:?} decompress",
            raw.len(),
            out.len(),
            raw.len() as f64 / out.len() as f64,
            t,
            start.elapsed()
        );
    }
}

fn any_geometry() -> impl Strategy<Value = Geometry> {
    (
        prop::array::uniform3(-500.0f64..500.0),
        prop::array::uniform3(0.1f64..5.0),
        prop::array::uniform3(-std::f64::consts::PI..std::f64::consts::PI),
        prop::array::uniform3(prop::bool::ANY),
    )
        .prop_map(|(origin, spacing, [a, b, c], flips)| {
            // Euler rotation z-y-x, then optional axis flips (left-handed lattices too).
            let (sa, ca) = a.sin_cos();
            let (sb, cb) = b.sin_cos();
            let (sc, cc) = c.sin_cos();
            let rz = [[ca, -sa, 0.0], [sa, ca, 0.0], [0.0, 0.0, 1.0]];
            let ry = [[cb, 0.0, sb], [0.0, 1.0, 0.0], [-sb, 0.0, cb]];
            let rx = [[1.0, 0.0, 0.0], [0.0, cc, -sc], [0.0, sc, cc]];
            let mul = |p: [[f64; 3]; 3], q: [[f64; 3]; 3]| {
                let mut m = [[0.0; 3]; 3];
                for r in 0..3 {
                    for col in 0..3 {
                        m[r][col] = (0..3).map(|t| p[r][t] * q[t][col]).sum();
                    }
                }
                m
            };
            let mut direction = mul(mul(rz, ry), rx);
            for (col, flip) in flips.iter().enumerate() {
                if *flip {
                    for row in direction.iter_mut() {
                        row[col] = -row[col];
                    }
                }
            }
            Geometry {
                origin,
                spacing,
                direction,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn write_then_read_gives_the_same_volume(
        g in any_geometry(),
        size in prop::array::uniform3(1usize..6),
        type_index in 0usize..10,
        compressed in prop::bool::ANY,
        seed in any::<u64>(),
    ) {
        let dir = temp();
        let v = all_types(size, g).swap_remove(type_index);
        // Perturb voxels by the seed so cases differ beyond the ramp.
        let v = match v {
            AnyVolume::I64(mut x) => { x.data.mapv_inplace(|e| e ^ seed as i64); AnyVolume::I64(x) }
            other => other,
        };
        let p = dir.path().join(if compressed { "p.nii.gz" } else { "p.nii" });
        write_volume(&p, &v).unwrap();
        let back = read_volume(&p).unwrap();
        prop_assert_eq!(back.to_le_bytes(), v.to_le_bytes());
        prop_assert_eq!(back.scalar_type(), v.scalar_type());
        prop_assert!(back.geometry().approx_eq(v.geometry(), 1e-4),
            "{:?} vs {:?}", back.geometry(), v.geometry());
    }

    #[test]
    fn the_qform_alone_gives_the_same_lattice(g in any_geometry()) {
        let dir = temp();
        let p = dir.path().join("q.nii");
        write_volume(&p, &ramp([2, 2, 2], g, |n| n as u8)).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[254] = 0; // sform_code = 0
        std::fs::write(&p, &bytes).unwrap();
        let back = read_volume(&p).unwrap();
        // The qform keeps only (b, c, d) in float32 and recovers a = sqrt(1 - b² - c² - d²):
        // near a rotation of 180 degrees (a near 0) the direction is good to a few times
        // sqrt(float32 epsilon), 3e-4, whoever writes it (nifti1_io and nibabel alike; 5.8e-4
        // was seen). `approx_eq` compares steps (direction times spacing), so the bound
        // scales with the largest spacing.
        let largest = g.spacing.iter().fold(1.0f64, |m, &s| m.max(s));
        prop_assert!(back.geometry().approx_eq(&g, 1e-3 * largest),
            "{:?} vs {:?}", back.geometry(), g);
    }

    #[test]
    fn random_headers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), dims in prop::array::uniform3(any::<i16>()), datatype in any::<i16>()) {
        let dir = temp();
        // Half garbage, half a valid header with random dims and datatype over garbage data.
        let _ = read_volume(&put(dir.path(), "g.nii", &bytes));
        let mut h = bare_header(dims, datatype);
        h.scl_slope = f32::from_bits(seed_bits(&bytes));
        let mut file = nii_bytes(&h, &bytes);
        let _ = read_volume(&put(dir.path(), "h.nii", &file));
        file.truncate(file.len() / 2 + 100);
        let _ = read_volume(&put(dir.path(), "h.nii.gz", &gzip(&file)));
    }
}

fn seed_bits(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |a, &b| a.rotate_left(5) ^ b as u32)
}
