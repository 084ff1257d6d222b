//! Conversions between the proto's messages and segkit's arrays: geometry, volume bytes,
//! and masks (bit-packed or run-length coded, cropped to their extent).
//!
//! Everything that arrives from a client is checked here before it is used: sizes against
//! the limits and against the bytes present, geometry against the volume it claims to
//! belong to. Errors name the field and the bad value.

use super::pb;
use crate::volume::{byte_size, AnyVolume, Geometry, Scalar, ScalarType, Volume};
use crate::Error;
use ndarray::{s, Array3, ArrayView3};

/// Largest number of voxels of any lattice a request may describe (2^34, 16 G voxels).
pub const MAX_VOXELS: u64 = 1 << 34;

/// Tolerance (mm) when checking that a mask's geometry is the volume's.
pub const GEOMETRY_TOLERANCE_MM: f64 = 1e-3;

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

/// The lattice a proto `Geometry` describes: sizes (i, j, k) and geometry.
pub fn geometry_from_pb(
    g: Option<&pb::Geometry>,
    what: &str,
) -> Result<([usize; 3], Geometry), Error> {
    let g = g.ok_or_else(|| invalid(format!("{what}: geometry is missing")))?;
    let three = |v: &[f64], name: &str| -> Result<[f64; 3], Error> {
        match v {
            [a, b, c] if v.iter().all(|x| x.is_finite()) => Ok([*a, *b, *c]),
            _ => Err(invalid(format!(
                "{what}: geometry.{name} must hold 3 finite numbers, got {v:?}"
            ))),
        }
    };
    let size: [usize; 3] = match g.size.as_slice() {
        [i, j, k] if *i > 0 && *j > 0 && *k > 0 => [*i as usize, *j as usize, *k as usize],
        other => {
            return Err(invalid(format!(
                "{what}: geometry.size must hold 3 positive numbers, got {other:?}"
            )))
        }
    };
    let voxels = byte_size(&size, 1).unwrap_or(u64::MAX);
    if voxels > MAX_VOXELS {
        return Err(invalid(format!(
            "{what}: geometry.size {size:?} has {voxels} voxels, above the limit of {MAX_VOXELS}"
        )));
    }
    let origin = three(&g.origin, "origin")?;
    let spacing = three(&g.spacing, "spacing")?;
    if spacing.iter().any(|&s| s <= 0.0) {
        return Err(invalid(format!(
            "{what}: geometry.spacing must be positive, got {spacing:?}"
        )));
    }
    if g.direction.len() != 9 || g.direction.iter().any(|x| !x.is_finite()) {
        return Err(invalid(format!(
            "{what}: geometry.direction must hold 9 finite numbers (row-major 3x3), got {} values",
            g.direction.len()
        )));
    }
    let mut direction = [[0.0; 3]; 3];
    for (row, values) in direction.iter_mut().zip(g.direction.chunks_exact(3)) {
        row.copy_from_slice(values);
    }
    let geometry = Geometry {
        origin,
        spacing,
        direction,
    };
    if crate::volume::invert3(geometry.index_to_lps_matrix()).is_none() {
        return Err(invalid(format!("{what}: geometry.direction is singular")));
    }
    Ok((size, geometry))
}

/// The proto form of a lattice.
pub fn geometry_to_pb(size: [usize; 3], g: &Geometry) -> pb::Geometry {
    pb::Geometry {
        size: size.iter().map(|&s| s as u32).collect(),
        origin: g.origin.to_vec(),
        spacing: g.spacing.to_vec(),
        direction: g.direction.iter().flatten().copied().collect(),
    }
}

/// The proto scalar type of a segkit type, and back.
pub fn scalar_type_to_pb(t: ScalarType) -> pb::ScalarType {
    match t {
        ScalarType::U8 => pb::ScalarType::Uint8,
        ScalarType::I8 => pb::ScalarType::Int8,
        ScalarType::U16 => pb::ScalarType::Uint16,
        ScalarType::I16 => pb::ScalarType::Int16,
        ScalarType::U32 => pb::ScalarType::Uint32,
        ScalarType::I32 => pb::ScalarType::Int32,
        ScalarType::U64 => pb::ScalarType::Uint64,
        ScalarType::I64 => pb::ScalarType::Int64,
        ScalarType::F32 => pb::ScalarType::Float32,
        ScalarType::F64 => pb::ScalarType::Float64,
    }
}

/// The segkit scalar type of a proto value.
pub fn scalar_type_from_pb(v: i32) -> Result<ScalarType, Error> {
    Ok(match pb::ScalarType::try_from(v) {
        Ok(pb::ScalarType::Uint8) => ScalarType::U8,
        Ok(pb::ScalarType::Int8) => ScalarType::I8,
        Ok(pb::ScalarType::Uint16) => ScalarType::U16,
        Ok(pb::ScalarType::Int16) => ScalarType::I16,
        Ok(pb::ScalarType::Uint32) => ScalarType::U32,
        Ok(pb::ScalarType::Int32) => ScalarType::I32,
        Ok(pb::ScalarType::Uint64) => ScalarType::U64,
        Ok(pb::ScalarType::Int64) => ScalarType::I64,
        Ok(pb::ScalarType::Float32) => ScalarType::F32,
        Ok(pb::ScalarType::Float64) => ScalarType::F64,
        _ => {
            return Err(invalid(format!(
                "scalar_type {v} is not a known voxel type"
            )))
        }
    })
}

/// Builds a volume from little-endian voxel bytes in `[k][j][i]` order.
pub fn volume_from_bytes(
    size: [usize; 3],
    geometry: Geometry,
    t: ScalarType,
    bytes: &[u8],
) -> Result<AnyVolume, Error> {
    let expected = byte_size(&size, t.size()).unwrap_or(u64::MAX);
    if bytes.len() as u64 != expected {
        return Err(invalid(format!(
            "volume holds {} bytes but {size:?} voxels of {t} need {expected}",
            bytes.len()
        )));
    }
    fn typed<T: Scalar>(size: [usize; 3], g: Geometry, bytes: &[u8]) -> AnyVolume {
        let n = std::mem::size_of::<T>();
        let values: Vec<T> = bytes.chunks_exact(n).map(T::from_le_slice).collect();
        let data = Array3::from_shape_vec((size[2], size[1], size[0]), values)
            .expect("length checked against the shape above");
        Volume::new(data, g).into()
    }
    Ok(match t {
        ScalarType::U8 => typed::<u8>(size, geometry, bytes),
        ScalarType::I8 => typed::<i8>(size, geometry, bytes),
        ScalarType::U16 => typed::<u16>(size, geometry, bytes),
        ScalarType::I16 => typed::<i16>(size, geometry, bytes),
        ScalarType::U32 => typed::<u32>(size, geometry, bytes),
        ScalarType::I32 => typed::<i32>(size, geometry, bytes),
        ScalarType::U64 => typed::<u64>(size, geometry, bytes),
        ScalarType::I64 => typed::<i64>(size, geometry, bytes),
        ScalarType::F32 => typed::<f32>(size, geometry, bytes),
        ScalarType::F64 => typed::<f64>(size, geometry, bytes),
    })
}

/// Inclusive bounds `[(i0, i1), (j0, j1), (k0, k1)]` of a proto extent, checked against a
/// lattice of `size` (i, j, k).
fn extent_from_pb(
    e: &pb::Extent,
    size: [usize; 3],
    what: &str,
) -> Result<[(usize, usize); 3], Error> {
    let b = [(e.i_min, e.i_max), (e.j_min, e.j_max), (e.k_min, e.k_max)];
    for (a, &(lo, hi)) in b.iter().enumerate() {
        if lo > hi || hi as usize >= size[a] {
            return Err(invalid(format!(
                "{what}: extent {:?} is outside the lattice of {size:?} voxels",
                [e.i_min, e.i_max, e.j_min, e.j_max, e.k_min, e.k_max]
            )));
        }
    }
    Ok(b.map(|(lo, hi)| (lo as usize, hi as usize)))
}

/// Decodes a mask onto the full lattice `(size, geometry)`, checking that the mask's own
/// geometry is that lattice (within [`GEOMETRY_TOLERANCE_MM`]).
pub fn mask_from_pb(
    m: &pb::Mask,
    size: [usize; 3],
    geometry: &Geometry,
    what: &str,
) -> Result<Array3<u8>, Error> {
    let mut full = Array3::<u8>::zeros((size[2], size[1], size[0]));
    if let Some((lo, cropped)) = mask_cropped_from_pb(m, size, geometry, what)? {
        let (a, b, c) = cropped.dim();
        full.slice_mut(s![lo[0]..lo[0] + a, lo[1]..lo[1] + b, lo[2]..lo[2] + c])
            .assign(&cropped);
    }
    Ok(full)
}

/// A part of a mask: its first voxel `[k, j, i]` and its voxels.
pub type MaskPart = ([usize; 3], Array3<u8>);

/// Decodes a mask on the lattice `(size, geometry)` as it was sent: its first voxel
/// `[k, j, i]` and the voxels of its extent; `None` for an empty mask. Checks the geometry
/// as [`mask_from_pb`].
pub fn mask_cropped_from_pb(
    m: &pb::Mask,
    size: [usize; 3],
    geometry: &Geometry,
    what: &str,
) -> Result<Option<MaskPart>, Error> {
    let (msize, mgeom) = geometry_from_pb(m.geometry.as_ref(), what)?;
    if msize != size || !mgeom.approx_eq(geometry, GEOMETRY_TOLERANCE_MM) {
        return Err(invalid(format!(
            "{what}: geometry (size {msize:?}, origin {:?}, spacing {:?}) does not match the volume's \
             (size {size:?}, origin {:?}, spacing {:?})",
            mgeom.origin, mgeom.spacing, geometry.origin, geometry.spacing
        )));
    }
    let Some(extent) = &m.extent else {
        if !m.data.is_empty() {
            return Err(invalid(format!("{what}: data without an extent")));
        }
        return Ok(None);
    };
    let [(i0, i1), (j0, j1), (k0, k1)] = extent_from_pb(extent, size, what)?;
    let shape = (k1 - k0 + 1, j1 - j0 + 1, i1 - i0 + 1);
    let n = shape.0 * shape.1 * shape.2;
    let values = match pb::MaskEncoding::try_from(m.encoding) {
        Ok(pb::MaskEncoding::Bits) => unpack_bits(&m.data, n, what)?,
        Ok(pb::MaskEncoding::Runs) | Ok(pb::MaskEncoding::Unspecified) => {
            decode_runs(&m.data, n, what)?
        }
        Err(_) => {
            return Err(invalid(format!(
                "{what}: unknown mask encoding {}",
                m.encoding
            )))
        }
    };
    let cropped =
        Array3::from_shape_vec(shape, values).map_err(|e| invalid(format!("{what}: {e}")))?;
    Ok(Some(([k0, j0, i0], cropped)))
}

/// Encodes a 0/1 (any non-zero = 1) mask on the lattice `(size, geometry)`, cropped to the
/// bounding box of its voxels. The box and the runs are found slice by slice in parallel,
/// scanning contiguous rows.
pub fn mask_to_pb(
    mask: ArrayView3<u8>,
    geometry: &Geometry,
    encoding: pb::MaskEncoding,
) -> pb::Mask {
    let (nk, nj, ni) = mask.dim();
    mask_part_to_pb(mask, [0; 3], [ni, nj, nk], geometry, encoding)
}

/// [`mask_to_pb`] of a part of the lattice: `mask` holds the voxels from `[k, j, i]` =
/// `offset_kji` on, of a lattice of `size` (`[ni, nj, nk]`) voxels; the voxels outside
/// the part are 0.
pub fn mask_part_to_pb(
    mask: ArrayView3<u8>,
    offset_kji: [usize; 3],
    size: [usize; 3],
    geometry: &Geometry,
    encoding: pb::MaskEncoding,
) -> pb::Mask {
    let o = offset_kji;
    let mut out = pb::Mask {
        geometry: Some(geometry_to_pb(size, geometry)),
        extent: None,
        encoding: encoding as i32,
        data: Default::default(),
    };
    let mask = mask.as_standard_layout();
    let Some(b) = crate::kernels::bbox::nonzero_box(mask.view(), 0) else {
        return out;
    };
    let cropped = mask.slice(s![b[0].0..b[0].1, b[1].0..b[1].1, b[2].0..b[2].1]);
    out.data = match encoding {
        pb::MaskEncoding::Bits => pack_bits(cropped.iter().map(|&v| v != 0)),
        _ => {
            out.encoding = pb::MaskEncoding::Runs as i32;
            encode_runs_parallel(cropped)
        }
    }
    .into();
    out.extent = Some(pb::Extent {
        i_min: (o[2] + b[2].0) as u32,
        i_max: (o[2] + b[2].1 - 1) as u32,
        j_min: (o[1] + b[1].0) as u32,
        j_max: (o[1] + b[1].1 - 1) as u32,
        k_min: (o[0] + b[0].0) as u32,
        k_max: (o[0] + b[0].1 - 1) as u32,
    });
    out
}

/// [`encode_runs`] of a (cropped) mask, slices in parallel: each slice's runs are found
/// on its own, then joined where a run crosses from one slice into the next.
fn encode_runs_parallel(cropped: ArrayView3<u8>) -> Vec<u8> {
    use rayon::prelude::*;
    let slices: Vec<_> = cropped.outer_iter().collect();
    // Each slice: the value of its first voxel and its run lengths.
    let parts: Vec<(bool, Vec<u64>)> = slices
        .into_par_iter()
        .map(|slice| {
            let mut runs = Vec::new();
            let mut first = None;
            let mut current = false;
            let mut run = 0u64;
            for row in slice.outer_iter() {
                let owned;
                let mut rest: &[u8] = match row.to_slice() {
                    Some(r) => r,
                    None => {
                        owned = row.to_vec();
                        &owned
                    }
                };
                if first.is_none() && !rest.is_empty() {
                    current = rest[0] != 0;
                    first = Some(current);
                }
                while !rest.is_empty() {
                    let n = if current {
                        rest.iter().position(|&v| v == 0)
                    } else {
                        rest.iter().position(|&v| v != 0)
                    }
                    .unwrap_or(rest.len());
                    run += n as u64;
                    rest = &rest[n..];
                    if !rest.is_empty() {
                        runs.push(run);
                        current = !current;
                        run = 0;
                    }
                }
            }
            runs.push(run);
            (first.unwrap_or(false), runs)
        })
        .collect();
    // Join: the stream starts with a 0-run; a slice continues the previous run when it
    // starts with the value the previous slice ended with.
    let mut out = Vec::new();
    let mut current = false;
    let mut pending = 0u64;
    for (start, runs) in parts {
        let mut value = start;
        for (n, run) in runs.into_iter().enumerate() {
            if n > 0 {
                value = !value;
            }
            if value == current {
                pending += run;
            } else {
                put_varint(&mut out, pending);
                current = value;
                pending = run;
            }
        }
    }
    put_varint(&mut out, pending);
    out
}

/// One bit per value, least significant bit first.
pub fn pack_bits(bits: impl Iterator<Item = bool>) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, b) in bits.enumerate() {
        if n % 8 == 0 {
            out.push(0);
        }
        if b {
            if let Some(last) = out.last_mut() {
                *last |= 1 << (n % 8);
            }
        }
    }
    out
}

fn unpack_bits(data: &[u8], n: usize, what: &str) -> Result<Vec<u8>, Error> {
    if data.len() != n.div_ceil(8) {
        return Err(invalid(format!(
            "{what}: bit-packed data holds {} bytes, the extent of {n} voxels needs {}",
            data.len(),
            n.div_ceil(8)
        )));
    }
    Ok((0..n).map(|i| (data[i / 8] >> (i % 8)) & 1).collect())
}

/// Alternating run lengths (0-runs first) as LEB128 varints.
pub fn encode_runs(bits: impl Iterator<Item = bool>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut current = false;
    let mut run: u64 = 0;
    for b in bits {
        if b == current {
            run += 1;
        } else {
            put_varint(&mut out, run);
            current = b;
            run = 1;
        }
    }
    put_varint(&mut out, run);
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn decode_runs(data: &[u8], n: usize, what: &str) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(n);
    let mut value = 0u8;
    let mut pos = 0;
    while pos < data.len() {
        let mut run: u64 = 0;
        let mut shift = 0;
        loop {
            let Some(&byte) = data.get(pos) else {
                return Err(invalid(format!(
                    "{what}: run-length data ends inside a number"
                )));
            };
            pos += 1;
            if shift > 63 {
                return Err(invalid(format!(
                    "{what}: run length does not fit in 64 bits"
                )));
            }
            run |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        if run > (n - out.len()) as u64 {
            return Err(invalid(format!(
                "{what}: run lengths add up to more than the extent's {n} voxels"
            )));
        }
        out.resize(out.len() + run as usize, value);
        value ^= 1;
    }
    if out.len() != n {
        return Err(invalid(format!(
            "{what}: run lengths add up to {} voxels, the extent holds {n}",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lattice() -> ([usize; 3], Geometry) {
        ([4, 3, 2], Geometry::default())
    }

    #[test]
    fn masks_round_trip_in_both_encodings() {
        let (size, g) = lattice();
        let mut m = Array3::<u8>::zeros((2, 3, 4));
        m[[1, 1, 2]] = 1;
        m[[1, 2, 3]] = 1;
        for enc in [pb::MaskEncoding::Bits, pb::MaskEncoding::Runs] {
            let p = mask_to_pb(m.view(), &g, enc);
            let e = p.extent.unwrap();
            assert_eq!(
                (e.i_min, e.i_max, e.j_min, e.j_max, e.k_min, e.k_max),
                (2, 3, 1, 2, 1, 1)
            );
            assert_eq!(mask_from_pb(&p, size, &g, "mask").unwrap(), m);
        }
        let empty = Array3::<u8>::zeros((2, 3, 4));
        let p = mask_to_pb(empty.view(), &g, pb::MaskEncoding::Runs);
        assert!(p.extent.is_none());
        assert_eq!(mask_from_pb(&p, size, &g, "mask").unwrap(), empty);
    }

    #[test]
    fn parallel_runs_equal_the_plain_encoding() {
        let mut x: u32 = 7;
        for shape in [(1, 1, 1), (3, 4, 5), (7, 1, 9), (4, 6, 3)] {
            for density in [0u32, 3, 8, 13, 16] {
                let m = Array3::from_shape_fn(shape, |_| {
                    x = x.wrapping_mul(1103515245).wrapping_add(12345);
                    u8::from((x >> 27) < density)
                });
                let plain = encode_runs(m.iter().map(|&v| v != 0));
                assert_eq!(encode_runs_parallel(m.view()), plain, "{shape:?} {density}");
            }
        }
    }

    #[test]
    fn runs_use_varints_and_start_with_zeros() {
        let bits = std::iter::repeat_n(true, 200).chain([false]);
        // 0 zeros, 200 ones (two bytes), 1 zero.
        assert_eq!(encode_runs(bits), vec![0, 0xc8, 0x01, 1]);
    }

    #[test]
    fn bad_masks_are_refused_with_the_reason() {
        let (size, g) = lattice();
        let mut p = mask_to_pb(
            Array3::<u8>::ones((2, 3, 4)).view(),
            &g,
            pb::MaskEncoding::Runs,
        );
        p.data = vec![0, 30].into(); // 30 voxels for an extent of 24
        let e = mask_from_pb(&p, size, &g, "segment a")
            .unwrap_err()
            .to_string();
        assert!(e.contains("segment a") && e.contains("more than"), "{e}");
        p.data = vec![0x80].into();
        assert!(mask_from_pb(&p, size, &g, "m").is_err());
        let mut other = g;
        other.origin[0] += 1.0;
        let p = mask_to_pb(
            Array3::<u8>::ones((2, 3, 4)).view(),
            &other,
            pb::MaskEncoding::Bits,
        );
        let e = mask_from_pb(&p, size, &g, "m").unwrap_err().to_string();
        assert!(e.contains("does not match"), "{e}");
        let mut p = mask_to_pb(
            Array3::<u8>::ones((2, 3, 4)).view(),
            &g,
            pb::MaskEncoding::Bits,
        );
        p.extent.as_mut().unwrap().i_max = 9;
        assert!(mask_from_pb(&p, size, &g, "m")
            .unwrap_err()
            .to_string()
            .contains("outside"));
    }

    #[test]
    fn geometry_is_validated() {
        let good = geometry_to_pb([2, 2, 2], &Geometry::default());
        assert!(geometry_from_pb(Some(&good), "v").is_ok());
        let mut bad = good.clone();
        bad.size = vec![100000, 100000, 100000];
        assert!(geometry_from_pb(Some(&bad), "v")
            .unwrap_err()
            .to_string()
            .contains("limit"));
        let mut bad = good.clone();
        bad.spacing = vec![1.0, 0.0, 1.0];
        assert!(geometry_from_pb(Some(&bad), "v").is_err());
        let mut bad = good;
        bad.direction = vec![0.0; 9];
        assert!(geometry_from_pb(Some(&bad), "v")
            .unwrap_err()
            .to_string()
            .contains("singular"));
        assert!(geometry_from_pb(None, "v").is_err());
    }
}
