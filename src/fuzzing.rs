//! Entry points for the fuzz targets in `fuzz/` (see `scripts/fuzz`): one function per
//! target, taking the fuzzer's bytes.
//!
//! The libFuzzer targets and the stable regression tests call the same functions, so a
//! crash found by the fuzzer is kept as a unit test that runs with `cargo test`. Each
//! function turns the bytes into what the reader expects (files in a scratch folder when
//! the reader takes a path) and returns the reader's result: an error is a correct answer
//! to garbage, a panic, a hang or an allocation the input does not pay for is a bug.
//!
//! Inputs that stand for several files (a detached NRRD, a DICOM folder) are the files
//! joined by [`FILE_SEPARATOR`].

use crate::error::{Error, Result};
use crate::io::{dicom, nifti, nrrd};
use crate::service::{codec, pb};
use crate::volume::Geometry;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Separates the files of an input that stands for several files.
pub const FILE_SEPARATOR: &[u8] = b"\n--segkit-fuzz-file--\n";

/// Most files one input may stand for (a detached NRRD's data files, a DICOM folder).
pub const MAX_FILES: usize = 16;

/// Largest lattice the mask target decodes onto, in voxels. The engine decodes masks onto
/// the lattice of a volume it already holds, so its size is not the mask's to choose; the
/// fuzzer draws it from the input and this keeps each run small.
pub const MAX_MASK_LATTICE_VOXELS: u64 = 1 << 22;

/// Bytes before the data in a mask target input: see [`mask`].
pub const MASK_PREFIX_BYTES: usize = 19;

/// The header parser alone: `bytes` as header text. A header that parses must write back
/// to text that parses again and writes the same text (the writer's text is a fixed point;
/// the first write may normalise, e.g. `-0` to `0`, `spacings` to the shortest form).
///
/// # Panics
/// When a parsed header's text does not parse, or parses to a header that writes other
/// text: that is a bug the fuzzer should report.
pub fn nrrd_header(bytes: &[u8]) -> std::result::Result<(), String> {
    let text = String::from_utf8_lossy(bytes);
    let header = nrrd::Header::parse(&text)?;
    let written = header.to_text();
    let again = nrrd::Header::parse(&written)
        .unwrap_or_else(|e| panic!("written header does not parse: {e}\n{written}"));
    let rewritten = again.to_text();
    assert_eq!(
        written, rewritten,
        "header text changed in a read and write of {header:?}"
    );
    Ok(())
}

/// An attached NRRD: `bytes` as a `.nrrd` file, read as a NRRD of any dimension, then as a
/// volume and as a Slicer segmentation.
pub fn nrrd_attached(bytes: &[u8]) -> Result<()> {
    let scratch = Scratch::new()?;
    let path = scratch.write("input.nrrd", bytes)?;
    read_nrrd_every_way(&path)
}

/// A detached NRRD: the first file of `bytes` is the `.nhdr` header, the others are
/// written under the names its `data file` field gives (in order; names that are not plain
/// file names, which could point outside the scratch folder, end the input).
pub fn nrrd_detached(bytes: &[u8]) -> Result<()> {
    let scratch = Scratch::new()?;
    let mut files = split_files(bytes).into_iter();
    let header_bytes = files.next().unwrap_or_default();
    let path = scratch.write("input.nhdr", header_bytes)?;
    let header = nrrd::read_header(&path)?;
    let names: Vec<String> = match &header.data_file {
        None => Vec::new(),
        Some(nrrd::DataFile::Single(name)) => vec![name.clone()],
        Some(nrrd::DataFile::List { files, .. }) => files.clone(),
        Some(nrrd::DataFile::Pattern {
            format,
            first,
            last,
            step,
            ..
        }) => (0..MAX_FILES as i64)
            .map_while(|n| {
                let number = first.checked_add(n.checked_mul(*step)?)?;
                let within = if *step > 0 {
                    number <= *last
                } else {
                    number >= *last
                };
                within.then(|| nrrd::format_file_number(format, number).ok())?
            })
            .collect(),
    };
    for (name, data) in names.iter().zip(files) {
        if !is_plain_file_name(name) {
            return Ok(());
        }
        scratch.write(name, data)?;
    }
    read_nrrd_every_way(&path)
}

/// Reads `path` as a NRRD of any dimension and returns that result; a NRRD that reads is
/// then also taken as a volume and read as a Slicer segmentation, whose errors (most
/// inputs are neither) are dropped.
fn read_nrrd_every_way(path: &Path) -> Result<()> {
    let n = nrrd::read(path)?;
    let _ = n.into_volume(path);
    let _ = nrrd::read_segmentation(path);
    Ok(())
}

/// A NIfTI-1 file: `bytes` as a `.nii` (gzip is recognised from the content).
pub fn nifti(bytes: &[u8]) -> Result<()> {
    let scratch = Scratch::new()?;
    let path = scratch.write("input.nii", bytes)?;
    nifti::read_volume(&path).map(|_| ())
}

/// DICOM series assembly: the files of `bytes` as a folder, scanned, grouped into series,
/// and every series read.
pub fn dicom_series(bytes: &[u8]) -> Result<()> {
    let scratch = Scratch::new()?;
    for (n, data) in split_files(bytes).into_iter().enumerate() {
        scratch.write(&format!("IM{n:04}"), data)?;
    }
    let scan = dicom::scan(std::slice::from_ref(&scratch.dir))?;
    for series in &scan.series {
        let _ = series.label();
        series.read()?;
    }
    Ok(())
}

/// The mask decoders (bit-packed and run-length) through [`codec::mask_from_pb`], on a
/// lattice and extent the input chooses. Layout, integers little endian:
///
/// | bytes | meaning |
/// |---|---|
/// | 0 | encoding in bits 0-6 (0 unspecified = runs, 1 bits, 2 runs, others unknown); bit 7 set: no extent |
/// | 1..7 | lattice size i, j, k (`u16` each; lattices above [`MAX_MASK_LATTICE_VOXELS`] are skipped) |
/// | 7..19 | extent i_min, i_max, j_min, j_max, k_min, k_max (`u16` each, not checked) |
/// | 19.. | the mask's data |
///
/// # Panics
/// When a decoded mask, encoded again in either encoding, does not decode to itself.
pub fn mask(bytes: &[u8]) -> Result<()> {
    let Some((m, size)) = mask_from_fuzz_input(bytes) else {
        return Ok(());
    };
    let g = Geometry::default();
    let full = codec::mask_from_pb(&m, size, &g, "fuzz mask")?;
    codec::mask_cropped_from_pb(&m, size, &g, "fuzz mask")?;
    for encoding in [pb::MaskEncoding::Bits, pb::MaskEncoding::Runs] {
        let again = codec::mask_to_pb(full.view(), &g, encoding);
        let back = codec::mask_from_pb(&again, size, &g, "re-encoded mask")
            .unwrap_or_else(|e| panic!("a mask the codec wrote does not decode: {e}"));
        assert_eq!(back, full.mapv(|v| u8::from(v != 0)), "{encoding:?}");
    }
    Ok(())
}

/// The proto mask and lattice of a [`mask`] input; `None` when the input is too short or
/// the lattice is empty or too large.
pub fn mask_from_fuzz_input(bytes: &[u8]) -> Option<(pb::Mask, [usize; 3])> {
    let prefix = bytes.get(..MASK_PREFIX_BYTES)?;
    let word = |n: usize| u32::from(u16::from_le_bytes([prefix[1 + 2 * n], prefix[2 + 2 * n]]));
    let size = [word(0), word(1), word(2)].map(|s| s as usize);
    let voxels = size.iter().map(|&s| s as u64).product::<u64>();
    if voxels == 0 || voxels > MAX_MASK_LATTICE_VOXELS {
        return None;
    }
    let extent = (prefix[0] & 0x80 == 0).then(|| pb::Extent {
        i_min: word(3),
        i_max: word(4),
        j_min: word(5),
        j_max: word(6),
        k_min: word(7),
        k_max: word(8),
    });
    let m = pb::Mask {
        geometry: Some(codec::geometry_to_pb(size, &Geometry::default())),
        extent,
        encoding: i32::from(prefix[0] & 0x7f),
        data: bytes[MASK_PREFIX_BYTES..].to_vec().into(),
    };
    Some((m, size))
}

/// A [`mask`] input for a proto mask on a lattice of `size` voxels (for seed corpora).
pub fn mask_to_fuzz_input(m: &pb::Mask, size: [usize; 3]) -> Vec<u8> {
    let mut out = vec![(m.encoding as u8 & 0x7f) | if m.extent.is_none() { 0x80 } else { 0 }];
    let mut push = |v: u32| out.extend_from_slice(&(v.min(u16::MAX.into()) as u16).to_le_bytes());
    for s in size {
        push(s as u32);
    }
    let bounds = m.extent.as_ref().map_or([0; 6], |e| {
        [e.i_min, e.i_max, e.j_min, e.j_max, e.k_min, e.k_max]
    });
    for v in bounds {
        push(v);
    }
    out.extend_from_slice(&m.data);
    out
}

/// `bytes` cut at every [`FILE_SEPARATOR`], at most [`MAX_FILES`] pieces (the last one
/// keeps the rest).
pub fn split_files(bytes: &[u8]) -> Vec<&[u8]> {
    let mut files = Vec::new();
    let mut rest = bytes;
    while files.len() + 1 < MAX_FILES {
        let Some(at) = rest
            .windows(FILE_SEPARATOR.len())
            .position(|w| w == FILE_SEPARATOR)
        else {
            break;
        };
        files.push(&rest[..at]);
        rest = &rest[at + FILE_SEPARATOR.len()..];
    }
    files.push(rest);
    files
}

fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name).is_relative()
}

/// A folder of its own under the system's temporary folder, removed on drop.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new() -> Result<Scratch> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "segkit-fuzz-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Scratch { dir })
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_split_into_files_at_the_separator() {
        let sep = std::str::from_utf8(FILE_SEPARATOR).unwrap();
        let joined = format!("a{sep}bc{sep}{sep}d");
        assert_eq!(
            split_files(joined.as_bytes()),
            vec![&b"a"[..], b"bc", b"", b"d"]
        );
        let many = sep.repeat(MAX_FILES + 3);
        assert_eq!(split_files(many.as_bytes()).len(), MAX_FILES);
    }

    #[test]
    fn header_round_trip_allows_the_writers_normal_form() {
        // Found by the fuzzer (nrrd_header, crash-a944fbdc): `-0` is written `0`, which is
        // the same number, not a lost value. NaN spacings must not count as a change either.
        let header = "NRRD0004\ntype: short\ndimension: 3\nsizes: 3 2 2\n\
                      space: left-posterior-superior\n\
                      space directions: (1,0,0) (0,1,0) (0,0,2.5)\nspace origin: (-0,2,3)\n\
                      kinds: domain domain domain\nendian: little\nencoding: bzip2\n\n";
        nrrd_header(header.as_bytes()).unwrap();
        let nan =
            "NRRD0004\ntype: uchar\ndimension: 2\nsizes: 2 2\nspacings: nan 1\nencoding: raw\n";
        nrrd_header(nan.as_bytes()).unwrap();
    }

    #[test]
    fn mask_inputs_round_trip_through_the_fuzz_layout() {
        let mut full = ndarray::Array3::<u8>::zeros((2, 3, 4));
        full[[1, 2, 3]] = 1;
        full[[0, 1, 1]] = 1;
        for encoding in [pb::MaskEncoding::Bits, pb::MaskEncoding::Runs] {
            let m = codec::mask_to_pb(full.view(), &Geometry::default(), encoding);
            let input = mask_to_fuzz_input(&m, [4, 3, 2]);
            let (back, size) = mask_from_fuzz_input(&input).unwrap();
            assert_eq!(size, [4, 3, 2]);
            assert_eq!(back, m);
            mask(&input).unwrap();
        }
    }

    #[test]
    fn detached_data_files_are_written_beside_the_header() {
        let sep = std::str::from_utf8(FILE_SEPARATOR).unwrap();
        let input = format!(
            "NRRD0004\ntype: uchar\ndimension: 1\nsizes: 3\nencoding: raw\ndata file: d%d.raw 1 3 1\n\
             {sep}a{sep}b{sep}c"
        );
        nrrd_detached(input.as_bytes()).unwrap();
        let escaping = format!(
            "NRRD0004\ntype: uchar\ndimension: 1\nsizes: 1\nencoding: raw\ndata file: ../x\n{sep}a"
        );
        assert!(nrrd_detached(escaping.as_bytes()).is_ok());
    }
}
