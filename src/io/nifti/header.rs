//! The 348-byte NIfTI-1 header: decoding, the checks made before any allocation, and encoding.
//!
//! Field offsets follow `nifti1.h` (NIfTI Data Format Working Group, 2004). The byte order
//! of a file is the one in which `sizeof_hdr` reads 348.

use crate::error::{Error, Result};
use crate::volume::{byte_size, ScalarType, MAX_VOLUME_BYTES};
use std::path::Path;

/// Size of the NIfTI-1 header in bytes (`sizeof_hdr`).
pub(super) const HEADER_BYTES: usize = 348;
/// Where the voxels start in the single files segkit writes: the header, then the 4-byte
/// extension flag (all zero: no extensions).
pub(super) const SINGLE_FILE_VOX_OFFSET: u64 = 352;
/// `sizeof_hdr` of a NIfTI-2 header, recognised only to refuse it with a clear message.
const NIFTI2_HEADER_BYTES: i32 = 540;

/// `xyzt_units` value segkit writes: millimetres and seconds, as ITK and dcm2niix write.
pub(super) const UNITS_MM_SEC: u8 = 2 | 8;
/// `qform_code` / `sform_code` NIFTI_XFORM_SCANNER_ANAT, as ITK writes both.
pub(super) const XFORM_SCANNER_ANAT: i16 = 1;

/// Byte order of a header and its voxels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endian {
    Little,
    Big,
}

/// What the `magic` field says about where the voxels are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Magic {
    /// `n+1`: header and voxels in one `.nii` file.
    SingleFile,
    /// `ni1`: header in `.hdr`, voxels in `.img`.
    Pair,
    /// Anything else (an ANALYZE 7.5 header, or garbage).
    Other([u8; 4]),
}

/// The fields of a NIfTI-1 header that segkit reads or writes.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Header {
    pub endian: Endian,
    pub dim: [i16; 8],
    pub datatype: i16,
    pub bitpix: i16,
    pub pixdim: [f32; 8],
    pub vox_offset: f32,
    pub scl_slope: f32,
    pub scl_inter: f32,
    pub xyzt_units: u8,
    pub descrip: [u8; 80],
    pub qform_code: i16,
    pub sform_code: i16,
    /// `quatern_b`, `quatern_c`, `quatern_d`.
    pub quatern: [f32; 3],
    /// `qoffset_x`, `qoffset_y`, `qoffset_z`.
    pub qoffset: [f32; 3],
    /// `srow_x`, `srow_y`, `srow_z`.
    pub srow: [[f32; 4]; 3],
    pub magic: Magic,
}

/// What a validated header says about the voxels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    /// Sizes along i, j, k.
    pub size: [usize; 3],
    /// Stored voxel type.
    pub scalar: ScalarType,
    /// Bytes of voxel data.
    pub data_bytes: u64,
}

impl Default for Header {
    fn default() -> Self {
        Header {
            endian: Endian::Little,
            dim: [0; 8],
            datatype: 0,
            bitpix: 0,
            pixdim: [0.0; 8],
            vox_offset: 0.0,
            scl_slope: 0.0,
            scl_inter: 0.0,
            xyzt_units: 0,
            descrip: [0; 80],
            qform_code: 0,
            sform_code: 0,
            quatern: [0.0; 3],
            qoffset: [0.0; 3],
            srow: [[0.0; 4]; 3],
            magic: Magic::SingleFile,
        }
    }
}

/// Reads fixed-size fields at byte offsets, in one byte order.
struct Fields<'a> {
    bytes: &'a [u8; HEADER_BYTES],
    endian: Endian,
}

impl Fields<'_> {
    fn array<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut b = [0u8; N];
        b.copy_from_slice(&self.bytes[at..at + N]);
        if self.endian == Endian::Big {
            b.reverse();
        }
        b
    }
    fn i16(&self, at: usize) -> i16 {
        i16::from_le_bytes(self.array(at))
    }
    fn f32(&self, at: usize) -> f32 {
        f32::from_le_bytes(self.array(at))
    }
}

impl Header {
    /// Decodes a header; fails only when the bytes are not a NIfTI-1 header at all
    /// (`sizeof_hdr` is 348 in neither byte order).
    pub fn decode(bytes: &[u8; HEADER_BYTES], path: &Path) -> Result<Header> {
        let mut size = [0u8; 4];
        size.copy_from_slice(&bytes[0..4]);
        let endian = if i32::from_le_bytes(size) == HEADER_BYTES as i32 {
            Endian::Little
        } else if i32::from_be_bytes(size) == HEADER_BYTES as i32 {
            Endian::Big
        } else if i32::from_le_bytes(size) == NIFTI2_HEADER_BYTES
            || i32::from_be_bytes(size) == NIFTI2_HEADER_BYTES
        {
            return Err(Error::unsupported(path, "NIfTI-2 files (540-byte header)"));
        } else {
            return Err(Error::format(
                path,
                "NIfTI",
                format!(
                    "not a NIfTI-1 file: the header size field is {} (expected 348)",
                    i32::from_le_bytes(size)
                ),
            ));
        };
        let f = Fields { bytes, endian };
        let mut dim = [0i16; 8];
        for (n, d) in dim.iter_mut().enumerate() {
            *d = f.i16(40 + 2 * n);
        }
        let mut pixdim = [0f32; 8];
        for (n, p) in pixdim.iter_mut().enumerate() {
            *p = f.f32(76 + 4 * n);
        }
        let mut srow = [[0f32; 4]; 3];
        for (r, row) in srow.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = f.f32(280 + 16 * r + 4 * c);
            }
        }
        let mut descrip = [0u8; 80];
        descrip.copy_from_slice(&bytes[148..228]);
        let magic = match &bytes[344..348] {
            b"n+1\0" => Magic::SingleFile,
            b"ni1\0" => Magic::Pair,
            other => {
                let mut m = [0u8; 4];
                m.copy_from_slice(other);
                Magic::Other(m)
            }
        };
        Ok(Header {
            endian,
            dim,
            datatype: f.i16(70),
            bitpix: f.i16(72),
            pixdim,
            vox_offset: f.f32(108),
            scl_slope: f.f32(112),
            scl_inter: f.f32(116),
            xyzt_units: bytes[123],
            descrip,
            qform_code: f.i16(252),
            sform_code: f.i16(254),
            quatern: [f.f32(256), f.f32(260), f.f32(264)],
            qoffset: [f.f32(268), f.f32(272), f.f32(276)],
            srow,
            magic,
        })
    }

    /// Encodes the header, little-endian (the byte order segkit writes).
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
        put(0, &(HEADER_BYTES as i32).to_le_bytes());
        put(38, b"r"); // `regular`: ANALYZE legacy, set as ITK and nibabel do
        for (n, d) in self.dim.iter().enumerate() {
            put(40 + 2 * n, &d.to_le_bytes());
        }
        put(70, &self.datatype.to_le_bytes());
        put(72, &self.bitpix.to_le_bytes());
        for (n, p) in self.pixdim.iter().enumerate() {
            put(76 + 4 * n, &p.to_le_bytes());
        }
        put(108, &self.vox_offset.to_le_bytes());
        put(112, &self.scl_slope.to_le_bytes());
        put(116, &self.scl_inter.to_le_bytes());
        put(123, &[self.xyzt_units]);
        put(148, &self.descrip);
        put(252, &self.qform_code.to_le_bytes());
        put(254, &self.sform_code.to_le_bytes());
        for n in 0..3 {
            put(256 + 4 * n, &self.quatern[n].to_le_bytes());
            put(268 + 4 * n, &self.qoffset[n].to_le_bytes());
        }
        for (r, row) in self.srow.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                put(280 + 16 * r + 4 * c, &v.to_le_bytes());
            }
        }
        let magic: &[u8; 4] = match self.magic {
            Magic::SingleFile => b"n+1\0",
            Magic::Pair => b"ni1\0",
            Magic::Other(ref m) => m,
        };
        put(344, magic);
        b
    }

    /// Checks the dimensions and the datatype, and returns the voxel layout. Nothing has
    /// been allocated for the voxels yet; this is what makes allocating them safe.
    pub fn layout(&self, path: &Path) -> Result<Layout> {
        let ndim = self.dim[0];
        if !(1..=7).contains(&ndim) {
            return Err(Error::format(
                path,
                "NIfTI",
                format!("dim[0] (number of dimensions) is {ndim}, expected 1 to 7"),
            ));
        }
        let ndim = ndim as usize;
        let dims = &self.dim[1..=ndim];
        if let Some((axis, d)) = dims.iter().enumerate().find(|(_, &d)| d < 1) {
            return Err(Error::format(
                path,
                "NIfTI",
                format!(
                    "dim[{}] (size of axis {}) is {d}; sizes must be at least 1",
                    axis + 1,
                    axis + 1
                ),
            ));
        }
        let extra: usize = dims.iter().skip(3).map(|&d| d as usize).product();
        if extra > 1 {
            let sizes: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
            return Err(Error::unsupported(
                path,
                format!(
                    "{ndim}-D image of {} voxels ({extra} volumes); segkit reads 3-D volumes only",
                    sizes.join("x")
                ),
            ));
        }
        let mut size = [1usize; 3];
        for (s, &d) in size.iter_mut().zip(dims) {
            *s = d as usize;
        }
        let scalar = scalar_type(self.datatype).map_err(|e| e.into_error(path))?;
        let data_bytes = byte_size(&size, scalar.size()).unwrap_or(u64::MAX);
        if data_bytes > MAX_VOLUME_BYTES || usize::try_from(data_bytes).is_err() {
            return Err(Error::TooLarge {
                path: path.to_path_buf(),
                what: format!("a {}x{}x{} {} volume", size[0], size[1], size[2], scalar),
                requested: data_bytes,
                limit: MAX_VOLUME_BYTES,
            });
        }
        Ok(Layout {
            size,
            scalar,
            data_bytes,
        })
    }

    /// The byte offset of the voxels in the data stream: `vox_offset` for a single file
    /// (at least 352, where a header without extensions ends), `vox_offset` in the `.img`
    /// of a pair. Fails on a negative, fractional or non-finite value.
    pub fn data_offset(&self, path: &Path) -> Result<u64> {
        let v = self.vox_offset;
        if !(v.is_finite() && v >= 0.0 && v.fract() == 0.0) {
            return Err(Error::format(
                path,
                "NIfTI",
                format!("vox_offset {v} is not a whole, non-negative number of bytes"),
            ));
        }
        let v = v as u64;
        Ok(match self.magic {
            // nifti1_io reads a single file with a too-small offset from 352, and so do we.
            Magic::SingleFile => v.max(SINGLE_FILE_VOX_OFFSET),
            _ => v,
        })
    }

    /// `(slope, inter)` when the header asks for a real intensity scaling, `None` when
    /// values are used as stored: `scl_slope` 0 or not finite (nifti1.h: no scaling), or
    /// the identity 1, 0. A non-finite intercept counts as 0.
    pub fn scaling(&self) -> Option<(f64, f64)> {
        let slope = self.scl_slope as f64;
        let inter = if self.scl_inter.is_finite() {
            self.scl_inter as f64
        } else {
            0.0
        };
        if slope == 0.0 || !slope.is_finite() || (slope == 1.0 && inter == 0.0) {
            None
        } else {
            Some((slope, inter))
        }
    }
}

/// Why a datatype code cannot be read.
#[derive(Debug)]
pub(super) enum DatatypeProblem {
    Unsupported(String),
    Invalid(String),
}

impl DatatypeProblem {
    fn into_error(self, path: &Path) -> Error {
        match self {
            DatatypeProblem::Unsupported(what) => Error::unsupported(path, what),
            DatatypeProblem::Invalid(reason) => Error::format(path, "NIfTI", reason),
        }
    }
}

/// The voxel type of a NIfTI-1 `datatype` code.
pub(super) fn scalar_type(datatype: i16) -> std::result::Result<ScalarType, DatatypeProblem> {
    let unsupported =
        |name: &str| DatatypeProblem::Unsupported(format!("{name} voxels (datatype {datatype})"));
    Ok(match datatype {
        2 => ScalarType::U8,
        4 => ScalarType::I16,
        8 => ScalarType::I32,
        16 => ScalarType::F32,
        64 => ScalarType::F64,
        256 => ScalarType::I8,
        512 => ScalarType::U16,
        768 => ScalarType::U32,
        1024 => ScalarType::I64,
        1280 => ScalarType::U64,
        1 => return Err(unsupported("1-bit")),
        32 => return Err(unsupported("complex64")),
        128 => return Err(unsupported("RGB")),
        1536 => return Err(unsupported("float128")),
        1792 => return Err(unsupported("complex128")),
        2048 => return Err(unsupported("complex256")),
        2304 => return Err(unsupported("RGBA")),
        _ => {
            return Err(DatatypeProblem::Invalid(format!(
                "unknown datatype code {datatype}"
            )))
        }
    })
}

/// The NIfTI-1 `datatype` code of a voxel type.
pub(super) fn datatype_code(t: ScalarType) -> i16 {
    match t {
        ScalarType::U8 => 2,
        ScalarType::I16 => 4,
        ScalarType::I32 => 8,
        ScalarType::F32 => 16,
        ScalarType::F64 => 64,
        ScalarType::I8 => 256,
        ScalarType::U16 => 512,
        ScalarType::U32 => 768,
        ScalarType::I64 => 1024,
        ScalarType::U64 => 1280,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_3d(size: [i16; 3], datatype: i16) -> Header {
        Header {
            dim: [3, size[0], size[1], size[2], 1, 1, 1, 1],
            datatype,
            bitpix: 16,
            vox_offset: 352.0,
            ..Header::default()
        }
    }

    #[test]
    fn encode_then_decode_is_the_identity() {
        let mut h = header_3d([4, 3, 2], 4);
        h.pixdim = [-1.0, 0.5, 0.75, 2.0, 1.0, 1.0, 1.0, 1.0];
        h.scl_slope = 1.0;
        h.qform_code = 1;
        h.sform_code = 2;
        h.quatern = [0.1, 0.2, 0.3];
        h.qoffset = [-1.0, 2.0, -3.0];
        h.srow = [
            [1.0, 2.0, 3.0, 4.0],
            [5.0, 6.0, 7.0, 8.0],
            [9.0, 10.0, 11.0, 12.0],
        ];
        h.xyzt_units = UNITS_MM_SEC;
        h.descrip[..6].copy_from_slice(b"segkit");
        let bytes = h.encode();
        assert_eq!(Header::decode(&bytes, Path::new("x.nii")).unwrap(), h);
    }

    #[test]
    fn big_endian_headers_are_recognised() {
        let h = header_3d([4, 3, 2], 512);
        let mut bytes = h.encode();
        // Byte-swap every field that decode reads as a number.
        let swap = |b: &mut [u8; HEADER_BYTES], at: usize, n: usize| b[at..at + n].reverse();
        swap(&mut bytes, 0, 4);
        for n in 0..8 {
            swap(&mut bytes, 40 + 2 * n, 2);
        }
        swap(&mut bytes, 70, 2);
        swap(&mut bytes, 108, 4);
        let d = Header::decode(&bytes, Path::new("x.nii")).unwrap();
        assert_eq!(d.endian, Endian::Big);
        assert_eq!(d.dim, h.dim);
        assert_eq!(d.datatype, 512);
        assert_eq!(d.vox_offset, 352.0);
    }

    #[test]
    fn layout_checks_dims_and_type() {
        let p = Path::new("x.nii");
        let l = header_3d([4, 3, 2], 512).layout(p).unwrap();
        assert_eq!(l.size, [4, 3, 2]);
        assert_eq!(l.scalar, ScalarType::U16);
        assert_eq!(l.data_bytes, 48);

        let mut two_d = header_3d([4, 3, 7], 2);
        two_d.dim[0] = 2; // dim[3] ignored when dim[0] = 2
        assert_eq!(two_d.layout(p).unwrap().size, [4, 3, 1]);

        let mut one_volume = header_3d([4, 3, 2], 2);
        one_volume.dim[0] = 4;
        assert_eq!(one_volume.layout(p).unwrap().size, [4, 3, 2]);

        let mut four_d = one_volume.clone();
        four_d.dim[4] = 5;
        let e = four_d.layout(p).unwrap_err().to_string();
        assert!(e.contains("4x3x2x5") && e.contains("5 volumes"), "{e}");

        let e = header_3d([4, -3, 2], 2).layout(p).unwrap_err().to_string();
        assert!(e.contains("dim[2]") && e.contains("-3"), "{e}");

        let big = header_3d([i16::MAX, i16::MAX, i16::MAX], 64).layout(p);
        assert!(matches!(big, Err(Error::TooLarge { .. })), "{big:?}");

        let e = header_3d([4, 3, 2], 128).layout(p).unwrap_err();
        assert!(matches!(e, Error::Unsupported { .. }) && e.to_string().contains("RGB"));
        let e = header_3d([4, 3, 2], 3).layout(p).unwrap_err();
        assert!(e.to_string().contains("unknown datatype code 3"), "{e}");

        let mut bad_rank = header_3d([4, 3, 2], 2);
        bad_rank.dim[0] = 9;
        assert!(bad_rank
            .layout(p)
            .unwrap_err()
            .to_string()
            .contains("dim[0]"));
    }

    #[test]
    fn data_offset_is_validated() {
        let p = Path::new("x.nii");
        let mut h = header_3d([1, 1, 1], 2);
        h.vox_offset = 0.0;
        assert_eq!(h.data_offset(p).unwrap(), 352);
        h.vox_offset = 13168.0;
        assert_eq!(h.data_offset(p).unwrap(), 13168);
        h.magic = Magic::Pair;
        h.vox_offset = 0.0;
        assert_eq!(h.data_offset(p).unwrap(), 0);
        for bad in [-16.0, 352.5, f32::NAN, f32::INFINITY] {
            h.vox_offset = bad;
            assert!(h.data_offset(p).is_err(), "{bad}");
        }
    }

    #[test]
    fn scaling_follows_nifti1_h() {
        let mut h = header_3d([1, 1, 1], 4);
        let mut with = |slope: f32, inter: f32| {
            h.scl_slope = slope;
            h.scl_inter = inter;
            h.scaling()
        };
        assert_eq!(with(0.0, 5.0), None);
        assert_eq!(with(1.0, 0.0), None);
        assert_eq!(with(f32::NAN, 0.0), None);
        assert_eq!(with(1.0, -1024.0), Some((1.0, -1024.0)));
        assert_eq!(with(2.0, f32::NAN), Some((2.0, 0.0)));
    }

    #[test]
    fn datatype_codes_round_trip() {
        use ScalarType::*;
        for t in [U8, I8, U16, I16, U32, I32, U64, I64, F32, F64] {
            assert_eq!(scalar_type(datatype_code(t)).unwrap(), t);
        }
    }
}
