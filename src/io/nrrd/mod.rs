//! NRRD, "nearly raw raster data", as the Teem spec defines it
//! (<http://teem.sourceforge.net/nrrd/format.html>), with 3D Slicer's `.seg.nrrd`.
//!
//! Two layers:
//! - a general one for any dimension and type: [`read`] gives a [`Nrrd`] (a [`Header`]
//!   that keeps every field and `key:=value` pair, and [`NrrdData`] in file order, first
//!   axis fastest), and [`write()`] writes one back with [`WriteOptions`];
//! - volumes and segmentations on top of it: [`read_volume`], [`write_volume`],
//!   [`write_labelmap`], [`read_segmentation`], [`write_segmentation`]. A 3-D NRRD's
//!   first axis is `i`, so its samples are already an `[k][j][i]` array: nothing is
//!   transposed.
//!
//! # What is supported
//!
//! | | reading | writing |
//! |---|---|---|
//! | magic | `NRRD0001` to `NRRD0005` | `NRRD0004` |
//! | types | every spelling of the 8 integer types, `float`, `double`; `block` (as bytes) | Teem's names (`short`, `unsigned char`, ...) |
//! | encodings | `raw`, `gzip`/`gz` (also zlib streams), `bzip2`/`bz2`, `ascii`/`text`/`txt`, `hex` | all five; gzip by default |
//! | byte order | little and big | little |
//! | data location | attached; detached `data file:` as one file, a `%d` pattern with `min max step [subdim]`, or `LIST [subdim]`; `line skip`; `byte skip` incl. `-1` (data at the end, counted after decompression) | attached, or detached with one data file |
//! | fields | all of the spec (per-axis, space, measurement frame, `content`, `min`/`max`, ...) and `key:=value` with `\n`, `\\` escapes | the same, from the [`Header`] |
//!
//! Refused with an error that names the value: an unknown field, type, encoding, kind or
//! space; a duplicated field; per-axis fields with the wrong count; a kind whose required
//! size does not match (`3-vector` on an axis of 4); `byte skip` below -1; a missing
//! `endian` where the bytes show; data shorter than declared, or (for compressed, ascii and
//! hex data) longer, as in a `.nhdr` that points into a `.nii.gz` without `byte skip: -1`;
//! declared sizes above [`MAX_VOLUME_BYTES`](crate::volume::MAX_VOLUME_BYTES), before
//! anything is allocated.
//!
//! Detached data file names are relative to the header's folder; absolute names are used
//! as they are, as Teem does (a service that opens headers from users should vet them).
//!
//! # Example
//! ```no_run
//! use segkit::io::nrrd;
//! # fn main() -> segkit::Result<()> {
//! let ct = nrrd::read_volume("CTChest4.nrrd".as_ref())?;
//! println!("{} voxels of {}", ct.size_ijk().iter().product::<usize>(), ct.scalar_type());
//! nrrd::write_volume("copy.nrrd".as_ref(), &ct)?;
//!
//! // Any dimension: a 4-D DWI keeps its gradients and measurement frame.
//! let dwi = nrrd::read("dwi.nhdr".as_ref())?;
//! nrrd::write("dwi.nrrd".as_ref(), &dwi, &nrrd::WriteOptions::new())?;
//! # Ok(()) }
//! ```

mod data;
mod header;
mod read;
mod seg;
mod volume;
mod write;

pub use data::{DataRef, NrrdData, NrrdScalar};
pub(crate) use header::format_file_number;
pub use header::{
    Axis, ByteSkip, Center, DataFile, DataType, Encoding, Endian, Header, Kind, Space,
    MAX_BLOCK_SIZE, MAX_DIMENSION, MAX_SPACE_DIMENSION,
};
pub use read::{read, read_header, MAX_DATA_FILES, MAX_HEADER_BYTES};
pub use seg::{
    read_segmentation, write_labelmap, write_labelmap_with_options, write_segmentation,
    write_segmentation_with_options,
};
pub use write::{data_file_path, write, WriteOptions, DEFAULT_GZIP_LEVEL};

use crate::error::{Error, Result};
use crate::volume::{AnyVolume, Volume};
use std::path::Path;

/// A NRRD in memory: its header and its samples (first axis fastest).
#[derive(Debug, Clone, PartialEq)]
pub struct Nrrd {
    pub header: Header,
    pub data: NrrdData,
}

/// Reads a 3-D scalar NRRD (`.nrrd` or `.nhdr`) as a volume in LPS.
///
/// A 4-D (or higher) file whose extra axes have size 1 is squeezed to 3-D. Anything else
/// (a DWI, a vector field, a 2-D image) is refused with an error naming its dimension,
/// sizes and kinds; [`read`] reads those. The header is checked before the data is read.
pub fn read_volume(path: &Path) -> Result<AnyVolume> {
    let (header, offset) = read::read_header_at(path)?;
    volume::layout(&header, false).map_err(|e| Error::unsupported(path, e))?;
    let data = read::read_data(path, &header, offset)?;
    Nrrd { header, data }.into_volume(path)
}

/// Writes a volume as Slicer and ITK do: `NRRD0004`, gzip, little endian, LPS,
/// `space directions`, `kinds: domain domain domain`, `space origin`. A path ending in
/// `.nhdr` gets a detached header and a `.raw.gz` data file beside it.
pub fn write_volume(path: &Path, v: &AnyVolume) -> Result<()> {
    write_volume_with_options(path, v, &WriteOptions::default())
}

/// [`write_volume`] with a choice of encoding, layout and compression level.
pub fn write_volume_with_options(path: &Path, v: &AnyVolume, options: &WriteOptions) -> Result<()> {
    crate::with_volume!(v, vol => write_typed(path, vol, options))
}

fn write_typed<T: NrrdScalar>(path: &Path, v: &Volume<T>, options: &WriteOptions) -> Result<()> {
    let header = volume::volume_header(DataType::from_scalar(T::TYPE), v.size_ijk(), &v.geometry);
    match v.data.as_slice() {
        Some(s) => write::write_parts(path, &header, T::slice_ref(s), options),
        None => {
            let owned: Vec<T> = v.data.iter().copied().collect();
            write::write_parts(path, &header, T::slice_ref(&owned), options)
        }
    }
}
