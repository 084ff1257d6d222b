//! NIfTI-1 volumes: `.nii`, `.nii.gz`, and `.hdr`/`.img` pairs (read only).
//!
//! Reference: `nifti1.h` of the NIfTI Data Format Working Group (2004), and its reference
//! library nifti1_io for the cases the header leaves open.
//!
//! **Reading.** The 348-byte header is decoded and checked first: dimensions, datatype,
//! voxel offset, and the byte count they imply against [`MAX_VOLUME_BYTES`] and against
//! the file size (uncompressed files). Only then are the voxels read, straight into an
//! `[k][j][i]` array: NIfTI stores `x` fastest, which is segkit's memory order, so nothing
//! is transposed. For gzip files the buffer grows with the data the stream actually
//! yields, never beyond the declared size. Gzip is detected from the content, not the
//! name, and multi-member streams (bgzip, concatenated) are read whole.
//!
//! | header | segkit |
//! |---|---|
//! | `datatype` uint8 … float64 (10 types) | kept, see the scaling rule below |
//! | RGB, RGBA, complex, float128, 1-bit | refused: [`Error::Unsupported`] |
//! | `dim[0]` ≥ 4 with one volume (`dim[4..] == 1`) | read as 3-D |
//! | several volumes (4-D series, vector fields) | refused, naming the dimensions |
//! | `scl_slope` 0 or non-finite, or slope 1 and intercept 0 | values as stored |
//! | other scaling, integer slope and intercept, result within int16 | `i16` (CT stored as uint16 with intercept −1024) |
//! | other scaling | `f32` (`f64` when stored as float64) |
//! | geometry | sform if `sform_code > 0`, else qform if `qform_code > 0`, else `pixdim` only; a method whose numbers are unusable is skipped for the next (see `xform.rs`) |
//! | `xyzt_units` metre or micron | converted to millimetres (as ITK does); unknown means mm |
//! | big-endian files | read |
//! | NIfTI-2, ANALYZE 7.5 without NIfTI magic | refused |
//!
//! **Writing.** A single little-endian NIfTI-1 file, gzip-compressed when the name ends in
//! `.gz`, with the voxel type of the volume, `vox_offset` 352, no extensions, scaling 1/0,
//! units mm, and both the sform and the qform set from the geometry with code 1 (scanner
//! anatomical), as ITK writes them. The sform is exact to float32 (about 1e-4 mm on
//! patient coordinates); a sheared lattice, which a qform cannot represent, gets the qform
//! of the nearest rotation. Writes are atomic ([`write_atomic`]).

mod header;
mod xform;

use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::volume::{byte_size, AnyVolume, Geometry, Scalar, ScalarType, Volume, MAX_VOLUME_BYTES};
use flate2::read::MultiGzDecoder;
use header::{Endian, Header, Layout, Magic, HEADER_BYTES, SINGLE_FILE_VOX_OFFSET};
use ndarray::Array3;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// Bytes read or written per step when streaming voxels (a multiple of every voxel size).
const CHUNK_BYTES: usize = 1 << 20;

/// zlib level of `.nii.gz` output. Measured with zlib-rs (the ignored test `gzip_levels`) on a
/// 512x512x300 int16 chest CT: level 1 is zlib-rs's "quick" strategy and compresses CT
/// only 1.26x, level 2 compresses 1.73x (as C zlib's level 1) in 1.6 times level 1's
/// time, level 6 gains 3% more in twice level 2's time. On a 512x512x20 label map level 2
/// is as fast as level 1 and half the size.
const GZIP_LEVEL: u32 = 2;

const FORMAT: &str = "NIfTI";

/// Reads a NIfTI-1 volume: `.nii`, `.nii.gz`, or the `.hdr` of a `.hdr`/`.img` pair.
///
/// The voxels come back `[k][j][i]` in their stored type, or scaled as the header's
/// `scl_slope`/`scl_inter` ask (see the module documentation for the type chosen), on
/// the header's geometry converted to LPS.
///
/// # Errors
/// [`Error::Format`] for a file that is not valid NIfTI-1 (bad header, truncated data,
/// corrupt gzip), [`Error::Unsupported`] for valid files segkit does not read (4-D
/// series, RGB, complex, NIfTI-2), [`Error::TooLarge`] above [`MAX_VOLUME_BYTES`],
/// [`Error::Io`] when the file cannot be read.
pub fn read_volume(path: &Path) -> Result<AnyVolume> {
    if let Some(img) = image_of_header(path) {
        return read_pair(path, &img);
    }
    let (mut input, file_len) = open(path)?;
    let header = read_header(&mut input, path)?;
    match header.magic {
        Magic::SingleFile => {}
        Magic::Pair => {
            return Err(Error::format(
                path,
                FORMAT,
                "the header's magic 'ni1' says the voxels are in a separate .img file",
            ))
        }
        Magic::Other(m) => return Err(no_magic(path, m)),
    }
    let layout = header.layout(path)?;
    let offset = header.data_offset(path)?;
    read_body(
        input,
        file_len,
        HEADER_BYTES as u64,
        offset,
        &header,
        &layout,
        path,
    )
}

/// The bytes a volume read from `path` will take in memory, from its header alone: the
/// stored voxel size, or 4 bytes per voxel when the header scales the values (they may
/// come back as `f32`). Errors are [`read_volume`]'s for a bad header.
pub fn declared_bytes(path: &Path) -> Result<u64> {
    let (mut input, _) = open(path)?;
    let header = read_header(&mut input, path)?;
    let layout = header.layout(path)?;
    let voxel = if header.scaling().is_some() {
        layout.scalar.size().max(4)
    } else {
        layout.scalar.size()
    };
    Ok(byte_size(&layout.size, voxel).unwrap_or(u64::MAX))
}

/// Writes a volume as NIfTI-1: `.nii`, or `.nii.gz` (gzip) when the name ends in `.gz`.
///
/// # Errors
/// [`Error::Unsupported`] for another extension or a size above NIfTI-1's 32767 voxels
/// per axis, [`Error::InvalidArgument`] for a geometry that cannot be stored (zero or
/// non-finite spacing), [`Error::Io`] when the file cannot be written.
pub fn write_volume(path: &Path, v: &AnyVolume) -> Result<()> {
    let name = lowercase_name(path);
    let compressed = if name.ends_with(".nii.gz") {
        true
    } else if name.ends_with(".nii") {
        false
    } else {
        return Err(Error::unsupported(
            path,
            "NIfTI output other than .nii or .nii.gz",
        ));
    };
    let header = header_for(v, path)?.encode();
    write_atomic(path, |w| {
        let io_err = |e| Error::io(path, e);
        if compressed {
            // The file in memory, then compressed on every core (one gzip member).
            let mut raw = Vec::with_capacity(
                header.len() + v.size_ijk().iter().product::<usize>() * v.scalar_type().size(),
            );
            write_file(&mut raw, &header, v).map_err(io_err)?;
            crate::io::gzip::write_gzip(w, &raw, GZIP_LEVEL).map_err(io_err)?;
        } else {
            write_file(w, &header, v).map_err(io_err)?;
        }
        Ok(())
    })
}

fn lowercase_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// The `.img` (or `.img.gz`) beside a `.hdr` (or `.hdr.gz`); `None` for other names.
fn image_of_header(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let lower = name.to_ascii_lowercase();
    let stem_len = if lower.ends_with(".hdr") {
        name.len() - 4
    } else if lower.ends_with(".hdr.gz") {
        name.len() - 7
    } else {
        return None;
    };
    let stem = &name[..stem_len];
    let candidates = [".img", ".img.gz", ".IMG", ".IMG.GZ"];
    let found = candidates
        .iter()
        .map(|ext| path.with_file_name(format!("{stem}{ext}")))
        .find(|p| p.is_file());
    Some(found.unwrap_or_else(|| path.with_file_name(format!("{stem}.img"))))
}

fn read_pair(hdr_path: &Path, img_path: &Path) -> Result<AnyVolume> {
    let (mut input, _) = open(hdr_path)?;
    let header = read_header(&mut input, hdr_path)?;
    if let Magic::Other(m) = header.magic {
        return Err(no_magic(hdr_path, m));
    }
    let layout = header.layout(hdr_path)?;
    let offset = header.data_offset(hdr_path)?;
    let (data, file_len) = open(img_path)?;
    read_body(data, file_len, 0, offset, &header, &layout, img_path)
}

fn no_magic(path: &Path, magic: [u8; 4]) -> Error {
    Error::unsupported(
        path,
        format!(
            "header without NIfTI magic (found {:?}): an ANALYZE 7.5 file, whose orientation is undefined",
            String::from_utf8_lossy(&magic)
        ),
    )
}

/// Opens a file for reading, decompressing it when it starts with the gzip signature.
/// Returns the reader and, for an uncompressed file, its length.
fn open(path: &Path) -> Result<(Box<dyn Read>, Option<u64>)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut reader = BufReader::with_capacity(CHUNK_BYTES, file);
    let gzip = reader
        .fill_buf()
        .map_err(|e| Error::io(path, e))?
        .starts_with(&[0x1f, 0x8b]);
    if gzip {
        Ok((Box::new(MultiGzDecoder::new(reader)), None))
    } else {
        Ok((Box::new(reader), Some(len)))
    }
}

/// Reads into `buf` until it is full or the stream ends; returns the bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A read error as segkit reports it: corrupt compressed data is a format error.
fn read_error(path: &Path, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof => {
            Error::format(path, FORMAT, format!("truncated or corrupt gzip data: {e}"))
        }
        _ => Error::io(path, e),
    }
}

fn read_header(input: &mut dyn Read, path: &Path) -> Result<Header> {
    let mut bytes = [0u8; HEADER_BYTES];
    let n = read_full(input, &mut bytes).map_err(|e| read_error(path, e))?;
    if n < HEADER_BYTES {
        return Err(Error::format(
            path,
            FORMAT,
            format!("file too short for a NIfTI-1 header: {n} bytes, a header has 348"),
        ));
    }
    Header::decode(&bytes, path)
}

/// Reads the voxels of a validated header from `input`, positioned at byte `position`
/// of its stream, whose data start at byte `offset`.
fn read_body(
    mut input: Box<dyn Read>,
    file_len: Option<u64>,
    position: u64,
    offset: u64,
    header: &Header,
    layout: &Layout,
    path: &Path,
) -> Result<AnyVolume> {
    if offset < position {
        return Err(Error::format(
            path,
            FORMAT,
            format!("vox_offset {offset} points inside the header"),
        ));
    }
    if let Some(len) = file_len {
        let needed = offset.saturating_add(layout.data_bytes);
        if len < needed {
            return Err(truncated(path, layout, offset, len.saturating_sub(offset)));
        }
    }
    let skip = offset - position;
    let skipped =
        io::copy(&mut (&mut input).take(skip), &mut io::sink()).map_err(|e| read_error(path, e))?;
    if skipped < skip {
        return Err(Error::format(
            path,
            FORMAT,
            format!(
                "truncated: the data end at byte {}, before the voxels begin at byte {offset}",
                position + skipped
            ),
        ));
    }
    let (geometry, _method) = xform::geometry_from_header(header);
    let known_len = file_len.is_some();
    let input = input.as_mut();
    let ctx = Body {
        size: layout.size,
        endian: header.endian,
        known_len,
        offset,
        path,
        layout,
        scaling: header.scaling(),
        geometry,
    };
    match layout.scalar {
        ScalarType::U8 => ctx.read::<u8>(input),
        ScalarType::I8 => ctx.read::<i8>(input),
        ScalarType::U16 => ctx.read::<u16>(input),
        ScalarType::I16 => ctx.read::<i16>(input),
        ScalarType::U32 => ctx.read::<u32>(input),
        ScalarType::I32 => ctx.read::<i32>(input),
        ScalarType::U64 => ctx.read::<u64>(input),
        ScalarType::I64 => ctx.read::<i64>(input),
        ScalarType::F32 => ctx.read::<f32>(input),
        ScalarType::F64 => ctx.read::<f64>(input),
    }
}

fn truncated(path: &Path, layout: &Layout, offset: u64, found: u64) -> Error {
    Error::format(
        path,
        FORMAT,
        format!(
            "truncated: the header declares {}x{}x{} {} voxels ({} bytes from byte {offset}), the file holds {found} of those bytes",
            layout.size[0], layout.size[1], layout.size[2], layout.scalar, layout.data_bytes
        ),
    )
}

/// What reading the voxels needs to know.
struct Body<'a> {
    size: [usize; 3],
    endian: Endian,
    /// True when the file size was checked, so the whole buffer can be allocated at once.
    known_len: bool,
    offset: u64,
    path: &'a Path,
    layout: &'a Layout,
    scaling: Option<(f64, f64)>,
    geometry: Geometry,
}

impl Body<'_> {
    fn read<T: Scalar>(&self, input: &mut dyn Read) -> Result<AnyVolume> {
        let values = self.read_values::<T>(input)?;
        let [ni, nj, nk] = self.size;
        let shape = (nk, nj, ni);
        match self.scaling {
            None => Ok(Volume::new(self.array(shape, values)?, self.geometry).into()),
            Some((slope, inter)) => self.scaled(shape, values, slope, inter),
        }
    }

    fn array<U>(&self, shape: (usize, usize, usize), values: Vec<U>) -> Result<Array3<U>> {
        Array3::from_shape_vec(shape, values)
            .map_err(|e| Error::format(self.path, FORMAT, format!("voxel array: {e}")))
    }

    /// Reads `ni·nj·nk` values in chunks, converting the byte order as they come.
    fn read_values<T: Scalar>(&self, input: &mut dyn Read) -> Result<Vec<T>> {
        let size = T::TYPE.size();
        let count = self.size.iter().product::<usize>();
        let mut values: Vec<T> = Vec::new();
        let reserve = |values: &mut Vec<T>, n: usize| {
            values.try_reserve_exact(n).map_err(|_| Error::TooLarge {
                path: self.path.to_path_buf(),
                what: "the voxels".into(),
                requested: (count * size) as u64,
                limit: MAX_VOLUME_BYTES,
            })
        };
        if self.known_len {
            reserve(&mut values, count)?;
        }
        let mut buf = vec![0u8; CHUNK_BYTES.min(count * size)];
        let mut read = 0usize;
        while values.len() < count {
            let want = ((count - values.len()) * size).min(buf.len());
            let got = read_full(input, &mut buf[..want]).map_err(|e| read_error(self.path, e))?;
            read += got;
            if got < want {
                return Err(truncated(self.path, self.layout, self.offset, read as u64));
            }
            if values.capacity() - values.len() < want / size {
                // Grow with the data the stream has produced (doubling), capped at the
                // declared size: a lying gzip header cannot make us allocate more than
                // twice what it actually holds.
                let grow = values
                    .len()
                    .max(CHUNK_BYTES / size)
                    .min(count - values.len());
                reserve(&mut values, grow)?;
            }
            let bytes = buf[..want].chunks_exact(size);
            match self.endian {
                Endian::Little => values.extend(bytes.map(T::from_le_slice)),
                Endian::Big => values.extend(bytes.map(T::from_be_slice)),
            }
        }
        Ok(values)
    }

    /// Applies `value · slope + inter`, choosing the output type from the actual range.
    fn scaled<T: Scalar>(
        &self,
        shape: (usize, usize, usize),
        values: Vec<T>,
        slope: f64,
        inter: f64,
    ) -> Result<AnyVolume> {
        let scale = |x: T| x.to_f64() * slope + inter;
        let integral = !T::TYPE.is_float() && slope.fract() == 0.0 && inter.fract() == 0.0;
        if integral {
            let (lo, hi) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &x| {
                let v = scale(x);
                (lo.min(v), hi.max(v))
            });
            if lo >= i16::MIN as f64 && hi <= i16::MAX as f64 {
                let out: Vec<i16> = values.into_iter().map(|x| scale(x) as i16).collect();
                return Ok(Volume::new(self.array(shape, out)?, self.geometry).into());
            }
        }
        if T::TYPE == ScalarType::F64 {
            let out: Vec<f64> = values.into_iter().map(scale).collect();
            Ok(Volume::new(self.array(shape, out)?, self.geometry).into())
        } else {
            let out: Vec<f32> = values.into_iter().map(|x| scale(x) as f32).collect();
            Ok(Volume::new(self.array(shape, out)?, self.geometry).into())
        }
    }
}

/// The header segkit writes for a volume.
fn header_for(v: &AnyVolume, path: &Path) -> Result<Header> {
    let size = v.size_ijk();
    let mut dim = [1i16; 8];
    dim[0] = 3;
    for (d, &s) in dim[1..4].iter_mut().zip(&size) {
        *d = match i16::try_from(s) {
            Ok(s) if s >= 1 => s,
            _ => {
                return Err(Error::unsupported(
                    path,
                    format!(
                        "a {}x{}x{} volume in NIfTI-1, which stores 1 to 32767 voxels per axis",
                        size[0], size[1], size[2]
                    ),
                ))
            }
        };
    }
    let x = xform::xforms_from_geometry(v.geometry()).map_err(|why| {
        Error::InvalidArgument(format!(
            "{}: cannot write this geometry as NIfTI: {why}",
            path.display()
        ))
    })?;
    let t = v.scalar_type();
    let mut descrip = [0u8; 80];
    let text = concat!("segkit ", env!("CARGO_PKG_VERSION"));
    descrip[..text.len()].copy_from_slice(text.as_bytes());
    Ok(Header {
        endian: Endian::Little,
        dim,
        datatype: header::datatype_code(t),
        bitpix: (t.size() * 8) as i16,
        pixdim: [
            x.pixdim[0],
            x.pixdim[1],
            x.pixdim[2],
            x.pixdim[3],
            1.0,
            1.0,
            1.0,
            1.0,
        ],
        vox_offset: SINGLE_FILE_VOX_OFFSET as f32,
        scl_slope: 1.0,
        scl_inter: 0.0,
        xyzt_units: header::UNITS_MM_SEC,
        descrip,
        qform_code: header::XFORM_SCANNER_ANAT,
        sform_code: header::XFORM_SCANNER_ANAT,
        quatern: x.quatern,
        qoffset: x.qoffset,
        srow: x.srow,
        magic: Magic::SingleFile,
    })
}

/// Header, empty extension flag, voxels.
fn write_file(w: &mut impl Write, header: &[u8; HEADER_BYTES], v: &AnyVolume) -> io::Result<()> {
    w.write_all(header)?;
    w.write_all(&[0u8; 4])?;
    crate::with_volume!(v, vol => write_voxels(w, &vol.data))
}

/// Writes voxels little-endian in `[k][j][i]` order (whatever the array's memory layout).
fn write_voxels<T: Scalar>(w: &mut impl Write, data: &Array3<T>) -> io::Result<()> {
    let mut buf = Vec::with_capacity(CHUNK_BYTES + 8);
    for &x in data.iter() {
        x.write_le(&mut buf);
        if buf.len() >= CHUNK_BYTES {
            w.write_all(&buf)?;
            buf.clear();
        }
    }
    w.write_all(&buf)
}

#[cfg(test)]
mod tests;
