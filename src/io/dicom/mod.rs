//! DICOM series: discovery, sorting, geometry and pixel decoding (DICOM PS3.3 C.7.6.2 Image
//! Plane, C.7.6.3 Image Pixel, C.11.1 Modality LUT, C.7.6.16 Multi-frame Functional Groups),
//! and writing segmentations back as DICOM SEG ([`seg`], PS3.3 A.51).
//!
//! ```no_run
//! use segkit::io::dicom::ScanOptions;
//! # fn main() -> segkit::Result<()> {
//! let scan = ScanOptions::new().recursive(true).scan(&["study/".into()])?;
//! for (i, s) in scan.series.iter().enumerate() {
//!     println!("[{}] {}", i + 1, s.label());
//! }
//! let volume = scan.select("1")?.read()?; // an AnyVolume on an LPS Geometry
//! # Ok(()) }
//! ```
//!
//! # Discovery ([`scan`])
//! Headers only (read up to Pixel Data), in parallel. Files that are not DICOM, non-image
//! objects (DICOMDIR, SEG, RT structure sets and plans, SR, waveforms, ...) and unreadable
//! files land in [`Scan::skipped`] with the reason. Files without the 128-byte preamble,
//! without a file meta group or with an incomplete one are read anyway (the transfer
//! syntax is guessed from the data) with a note in the series warnings.
//!
//! Frames (single-frame files, and every frame of a multi-frame file) are grouped into a
//! [`Series`] when they share SeriesInstanceUID, SeriesNumber, pixel format, Rows/Columns,
//! ImageOrientationPatient and PixelSpacing (both within 1e-4). Two frames with the same
//! position (along the slice normal, within 1e-3 mm) cannot be in one stack: such a group
//! is split by the first of AcquisitionNumber, TemporalPosition, EchoTime, ImageType /
//! FrameType, StackID, rescale, TriggerTime and file that separates it into exactly as many
//! stacks as the most repeated position has frames; when none does, frames are dealt into
//! stacks in InstanceNumber order. `dcm_qa_ts`'s nine files (one UID, one position, nine
//! SeriesNumbers) thus give nine series, not a fake 9-slice volume.
//!
//! # Geometry
//! Slices are sorted by position along the slice normal `row × column` of
//! ImageOrientationPatient, never by InstanceNumber. The origin is the first slice's
//! ImagePositionPatient; the i axis is the IOP row direction (the direction of increasing
//! column index), j the IOP column direction. PixelSpacing is [between rows, between
//! columns], so spacing i = PixelSpacing\[1\] and j = PixelSpacing\[0\]. Along k the spacing is
//! the median step between consecutive positions (SliceThickness is never used for it),
//! and the k axis points from the first to the last position. For a gantry-tilted series
//! that axis is not the slice normal: the geometry keeps the actual slice positions (a
//! sheared lattice, exact for evenly spaced slices) and a warning gives the angle; ITK
//! instead keeps k on the normal and misplaces tilted slices in-plane. Warnings also
//! report uneven spacing (min/max), missing slices (gaps near a multiple of the median
//! step), SliceThickness different from the spacing, and positions off the k line.
//!
//! Single-slice series use the normal for k, with SpacingBetweenSlices, else
//! SliceThickness, else 1 mm. Images without ImagePositionPatient/ImageOrientationPatient
//! get the identity orientation at the origin (with a warning), one series per file.
//! Siemens MOSAIC images are de-mosaiced (NumberOfImagesInMosaic from the CSA header or
//! (0019,100A); tiles stacked along the CSA SliceNormalVector at SpacingBetweenSlices, the
//! origin moved to the first tile as nibabel and dcm2niix do).
//!
//! # Voxel values
//! Stored values are masked to BitsStored (shifted down when HighBit is not BitsStored-1)
//! and sign-extended when PixelRepresentation is 1. Then, per frame, the modality rescale
//! (RescaleSlope/Intercept, or the Pixel Value Transformation functional group) gives:
//! - no rescale, or slope 1 and intercept 0 everywhere: the stored type (`u8`/`i8`,
//!   `u16`/`i16`, `u32`/`i32` after BitsAllocated and PixelRepresentation);
//! - integer slopes and intercepts: `i16` when every possible stored value maps into
//!   `i16` (e.g. 12-bit CT with intercept -1024); when the declared range is wider (16-bit
//!   CT with intercept -1024) `i16` when every actual value fits, else `f32`;
//! - otherwise `f32`. Float Pixel Data gives `f32`, Double Float Pixel Data `f64`.
//!
//! Philips private scaling is not applied (a warning says so). Colour images
//! (SamplesPerPixel > 1) are listed by [`scan`] and refused by [`Series::read`] with
//! [`Error::Unsupported`]; 1-bit images are refused too.
//!
//! # Transfer syntaxes
//! Native syntaxes take a fast path (the pixel bytes are converted directly); the others go
//! through `dicom-pixeldata`, one frame at a time. Slices decode in parallel (rayon).
//!
//! | transfer syntax | UID | result |
//! |---|---|---|
//! | Implicit VR Little Endian | 1.2.840.10008.1.2 | fast path |
//! | Explicit VR Little Endian | 1.2.840.10008.1.2.1 | fast path |
//! | Explicit VR Big Endian (retired) | 1.2.840.10008.1.2.2 | fast path |
//! | Deflated Explicit VR Little Endian | 1.2.840.10008.1.2.1.99 | fast path (inflated while reading) |
//! | Encapsulated Uncompressed Explicit VR LE | 1.2.840.10008.1.2.1.98 | dicom-pixeldata |
//! | RLE Lossless | 1.2.840.10008.1.2.5 | 8, 16 and 32 bits, decoded by segkit (PS3.5 Annex G, `rle.rs`) |
//! | JPEG Baseline (Process 1) | 1.2.840.10008.1.2.4.50 | yes (8-bit; colour refused) |
//! | JPEG Extended (Process 2 & 4) | 1.2.840.10008.1.2.4.51 | 8-bit only: 12-bit refused by jpeg-decoder |
//! | JPEG Lossless (Process 14, and SV1) | 1.2.840.10008.1.2.4.57, .70 | yes |
//! | JPEG-LS Lossless / Near-Lossless | 1.2.840.10008.1.2.4.80, .81 | with `--features jpegls` (CharLS, needs cmake); otherwise an error saying so. Streams padded with 0x00 before EOI (WG04 MR1_JLSL), which CharLS 2.4 refuses, are retried without the pad |
//! | JPEG 2000 (lossless only, and lossy) | 1.2.840.10008.1.2.4.90, .91 | yes (openjp2, pure Rust) |
//! | JPEG 2000 Part 2, HTJ2K | 1.2.840.10008.1.2.4.92/.93, .201/.202/.203 | through openjp2, untested |
//! | Deflated Image Frame Compression | 1.2.840.10008.1.2.8.1 | yes |
//! | JPEG XL, MPEG, HEVC, JPIP | | refused: "not supported by this build" |
//!
//! Every error names the file, and for pixel data the transfer syntax.
//!
//! # Malformed files
//! Before `dicom-object` reads a file, a seek-only walk over its element headers checks
//! every declared length against its sequence item and the file size: `dicom-parser`
//! allocates a value's declared length before reading it, so one corrupt length would
//! otherwise cost up to 4 GiB. NumberOfFrames is capped (2^20), the output volume against
//! [`MAX_VOLUME_BYTES`](crate::volume::MAX_VOLUME_BYTES), and pixel data shorter than its
//! frames is an error. The one `catch_unwind` guards the third-party codec call, which may
//! panic on malformed code streams.

mod assemble;
mod csa;
mod decode;
mod guard;
mod header;
mod open;
mod rle;
pub mod seg;
#[cfg(test)]
mod testutil;

pub use seg::{
    write_dicom_seg, write_dicom_seg_with_options, SegWriteOptions, SegmentAlgorithmType,
};

use crate::error::{Error, Result};
use crate::volume::{AnyVolume, Geometry, ScalarType};
use dicom::encoding::transfer_syntax::TransferSyntaxIndex;
use dicom::transfer_syntax::TransferSyntaxRegistry;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Options for [`scan`], builder style: `ScanOptions::new().recursive(false).scan(&paths)`.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    recursive: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions { recursive: true }
    }
}

impl ScanOptions {
    /// Default options: folders are searched recursively.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether folders are searched recursively (default `true`); `false` reads only the
    /// files directly inside each folder given.
    pub fn recursive(mut self, recursive: bool) -> Self {
        self.recursive = recursive;
        self
    }

    /// Reads the headers of every file under `paths` (folders and files, in any mix) and
    /// groups the images into series. Fails only when a path given cannot be read; files
    /// that are not DICOM images are listed in [`Scan::skipped`].
    pub fn scan(&self, paths: &[PathBuf]) -> Result<Scan> {
        let mut files = Vec::new();
        for p in paths {
            collect_files(p, self.recursive, true, &mut files)?;
        }
        files.sort();
        files.dedup();
        let outcomes: Vec<_> = files
            .par_iter()
            .map(|p| (p, header::read_instance(p)))
            .collect();
        let mut instances = Vec::new();
        let mut skipped = Vec::new();
        for (p, outcome) in outcomes {
            match outcome {
                Ok(inst) => instances.push(inst),
                Err(reason) => skipped.push((p.clone(), reason)),
            }
        }
        Ok(Scan {
            series: assemble::assemble(instances),
            skipped,
        })
    }
}

/// Scans folders (recursively) and/or files with default options; see [`ScanOptions::scan`].
pub fn scan(paths: &[PathBuf]) -> Result<Scan> {
    ScanOptions::new().scan(paths)
}

fn collect_files(path: &Path, recursive: bool, top: bool, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_file() {
        out.push(path.to_path_buf());
    } else if meta.is_dir() && (top || recursive) {
        let entries = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(path, e))?;
            let p = entry.path();
            // A broken link or a file that vanished is not worth failing the scan for.
            if let Ok(m) = std::fs::metadata(&p) {
                if m.is_file() {
                    out.push(p);
                } else if m.is_dir() && recursive {
                    collect_files(&p, recursive, false, out)?;
                }
            }
        }
    }
    Ok(())
}

/// What [`scan`] found.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Image series, ordered by patient, study, SeriesNumber, SeriesInstanceUID and split.
    pub series: Vec<Series>,
    /// Files that are not DICOM images, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

impl Scan {
    /// The series a user names: its 1-based index in [`Scan::series`] (as listings print
    /// it), or its SeriesInstanceUID when that names exactly one series.
    pub fn select(&self, selector: &str) -> Result<&Series> {
        let selector = selector.trim();
        if let Ok(n) = selector.parse::<usize>() {
            return match n.checked_sub(1).and_then(|i| self.series.get(i)) {
                Some(s) => Ok(s),
                None => Err(Error::NotFound(format!(
                    "no series {n}: there are {} (numbered from 1)",
                    self.series.len()
                ))),
            };
        }
        let matches: Vec<(usize, &Series)> = self
            .series
            .iter()
            .enumerate()
            .filter(|(_, s)| s.series_instance_uid == selector)
            .collect();
        match matches.as_slice() {
            [(_, s)] => Ok(s),
            [] => Err(Error::NotFound(format!(
                "no series with SeriesInstanceUID {selector}"
            ))),
            several => Err(Error::InvalidArgument(format!(
                "SeriesInstanceUID {selector} holds {} stacks; choose one by number: {}",
                several.len(),
                several
                    .iter()
                    .map(|(i, s)| format!("{} ({})", i + 1, s.label()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

/// A stack of 2-D frames with one geometry: what [`Series::read`] turns into a volume.
#[derive(Debug, Clone)]
pub struct Series {
    pub series_instance_uid: String,
    pub series_number: Option<i64>,
    pub description: String,
    pub modality: String,
    pub patient_id: String,
    pub study_instance_uid: String,
    /// Transfer syntax UIDs of the files, sorted; see [`transfer_syntax_name`].
    pub transfer_syntaxes: Vec<String>,
    /// Columns, rows, slices.
    pub size_ijk: [usize; 3],
    /// Geometry after sorting, with the k spacing from the positions.
    pub geometry: Geometry,
    /// Everything a user should know before trusting the volume (uneven spacing, missing
    /// slices, gantry tilt, files read leniently, ...).
    pub warnings: Vec<String>,
    /// The frames, sorted along k (for a mosaic: the one frame holding all tiles).
    pub files: Vec<Frame>,
    /// Pixel format shared by every frame.
    pub pixel: PixelFormat,
    /// De-mosaicing layout of a Siemens MOSAIC series.
    pub mosaic: Option<Mosaic>,
    /// How this series was split from the frames sharing its SeriesInstanceUID
    /// (e.g. `EchoTime=1.52`), when it was.
    pub split: Option<String>,
}

/// One frame of a series: a file, the frame inside it, and what is specific to the frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub path: PathBuf,
    /// 0-based frame index within the file (0 for single-frame files).
    pub frame: u32,
    /// ImagePositionPatient of the frame (LPS mm), or the synthetic position used.
    pub position: [f64; 3],
    /// Modality rescale of the frame, when the file has one.
    pub rescale: Option<Rescale>,
    pub instance_number: Option<i64>,
    /// SOPInstanceUID of the file holding the frame (empty when the file has none): what a
    /// derived object (a DICOM SEG) references.
    pub sop_instance_uid: String,
    /// SOPClassUID of that file.
    pub sop_class_uid: String,
}

/// Modality LUT as a linear function: `value = stored * slope + intercept`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rescale {
    pub slope: f64,
    pub intercept: f64,
}

impl Rescale {
    /// True for slope 1 and intercept 0.
    pub fn is_identity(&self) -> bool {
        self.slope == 1.0 && self.intercept == 0.0
    }
}

/// How pixels are stored (Image Pixel module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PixelFormat {
    pub rows: u16,
    pub columns: u16,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub high_bit: u16,
    /// PixelRepresentation 1 (two's complement).
    pub signed: bool,
    pub photometric: String,
    pub sample: SampleKind,
}

/// Which Pixel Data element holds the samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SampleKind {
    /// Pixel Data (7FE0,0010): integers.
    #[default]
    Integer,
    /// Float Pixel Data (7FE0,0008).
    Float32,
    /// Double Float Pixel Data (7FE0,0009).
    Float64,
}

/// The tile layout of a Siemens MOSAIC image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mosaic {
    /// Number of slices (NumberOfImagesInMosaic).
    pub tiles: usize,
    /// Tiles per mosaic row (and column): `ceil(sqrt(tiles))`.
    pub per_row: usize,
    pub tile_rows: usize,
    pub tile_columns: usize,
}

impl Series {
    /// Decodes every frame into one volume (see the module docs for the voxel type).
    pub fn read(&self) -> Result<AnyVolume> {
        decode::read(self, &|_, _| {})
    }

    /// [`Series::read`], calling `progress(done, total)` after each slice (from any thread).
    pub fn read_with_progress(
        &self,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<AnyVolume> {
        decode::read(self, progress)
    }

    /// The voxel type [`Series::read`] returns. For integer rescales whose declared range
    /// does not fit `i16` this says `i16`, and `read` gives `f32` if an actual value does
    /// not fit.
    pub fn voxel_type(&self) -> ScalarType {
        decode::plan(self).scalar_type()
    }

    /// One line: `#3 "AX T1 POST" MR 512x512x30`, and the split when there is one.
    pub fn label(&self) -> String {
        let number = self
            .series_number
            .map(|n| format!("#{n}"))
            .unwrap_or_else(|| "#-".to_string());
        let [i, j, k] = self.size_ijk;
        let mut s = format!(
            "{number} \"{}\" {} {i}x{j}x{k}",
            self.description,
            if self.modality.is_empty() {
                "?"
            } else {
                &self.modality
            }
        );
        if let Some(split) = &self.split {
            s.push_str(&format!(" [{split}]"));
        }
        s
    }

    /// Names of the transfer syntaxes, as in [`Series::transfer_syntaxes`].
    pub fn transfer_syntax_names(&self) -> Vec<String> {
        self.transfer_syntaxes
            .iter()
            .map(|uid| transfer_syntax_name(uid))
            .collect()
    }
}

/// The name of a transfer syntax (`"JPEG 2000 Image Compression (Lossless Only)"`), or
/// the UID itself when it is unknown.
pub fn transfer_syntax_name(uid: &str) -> String {
    TransferSyntaxRegistry
        .get(uid)
        .map(|ts| ts.name().to_string())
        .unwrap_or_else(|| format!("unknown transfer syntax {uid}"))
}

/// Whether this build decodes pixel data in transfer syntax `uid`.
pub fn transfer_syntax_supported(uid: &str) -> bool {
    TransferSyntaxRegistry
        .get(uid)
        .is_some_and(|ts| ts.can_decode_all())
}

#[cfg(test)]
mod tests {
    use super::testutil::{temp_dir, Slice};
    use super::*;
    use crate::volume::Volume;

    fn i16s(v: AnyVolume) -> Volume<i16> {
        match v {
            AnyVolume::I16(v) => v,
            other => panic!("expected i16, got {}", other.scalar_type()),
        }
    }

    /// Four slices 2.5 mm apart, written with InstanceNumber running against position
    /// and file names in neither order; each slice's pixels hold its z index.
    fn write_stack(dir: &Path, zs: &[f64], thickness: Option<f64>) {
        for (n, &z) in zs.iter().enumerate() {
            let s = Slice {
                instance_number: (zs.len() - n) as i64,
                position: [-10.0, 20.0, z],
                slice_thickness: thickness,
                words: vec![n as u32; 6],
                ..Slice::default()
            };
            s.write(dir, &format!("f{}.dcm", (n * 7) % zs.len()));
        }
    }

    #[test]
    fn slices_sort_by_position_not_instance_number() {
        let dir = temp_dir();
        write_stack(dir.path(), &[5.0, 0.0, 7.5, 2.5], None);
        let scan = scan(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(scan.series.len(), 1, "{:?}", scan.skipped);
        let s = &scan.series[0];
        assert_eq!(s.size_ijk, [3, 2, 4]);
        let zs: Vec<f64> = s.files.iter().map(|f| f.position[2]).collect();
        assert_eq!(zs, vec![0.0, 2.5, 5.0, 7.5]);
        assert_eq!(s.geometry.origin, [-10.0, 20.0, 0.0]);
        // PixelSpacing [0.5, 0.25] is [between rows, between columns].
        assert_eq!(s.geometry.spacing, [0.25, 0.5, 2.5]);
        assert_eq!(s.geometry.axis(2), [0.0, 0.0, 1.0]);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        let v = match s.read().unwrap() {
            AnyVolume::U16(v) => v,
            other => panic!("{:?}", other.scalar_type()),
        };
        // Slice k was written as the n-th file of [5.0, 0.0, 7.5, 2.5]: its value is n.
        let firsts: Vec<u16> = (0..4).map(|k| v.data[[k, 0, 0]]).collect();
        assert_eq!(firsts, vec![1, 3, 0, 2]);
        assert_eq!(v.geometry, s.geometry);
    }

    #[test]
    fn spacing_comes_from_positions_not_slice_thickness() {
        let dir = temp_dir();
        write_stack(dir.path(), &[0.0, 2.0, 4.0, 6.0], Some(5.0));
        let s = &scan(&[dir.path().to_path_buf()]).unwrap().series[0];
        assert!((s.geometry.spacing[2] - 2.0).abs() < 1e-12);
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(s.warnings[0].contains("SliceThickness 5 mm differs from the slice spacing 2 mm"));
    }

    #[test]
    fn a_missing_slice_is_reported() {
        let dir = temp_dir();
        write_stack(dir.path(), &[0.0, 2.0, 6.0, 8.0], None);
        let s = &scan(&[dir.path().to_path_buf()]).unwrap().series[0];
        assert_eq!(s.size_ijk[2], 4);
        assert!((s.geometry.spacing[2] - 2.0).abs() < 1e-12);
        assert!(
            s.warnings
                .iter()
                .any(|w| w.starts_with("1 missing slice(s)")),
            "{:?}",
            s.warnings
        );
    }

    #[test]
    fn duplicate_positions_split_by_acquisition_number() {
        let dir = temp_dir();
        for acq in 1..=2 {
            for (n, z) in [0.0, 1.0, 2.0].into_iter().enumerate() {
                Slice {
                    instance_number: acq * 10 + n as i64,
                    acquisition_number: Some(acq),
                    position: [0.0, 0.0, z],
                    words: vec![acq as u32; 6],
                    ..Slice::default()
                }
                .write(dir.path(), &format!("a{acq}_{n}.dcm"));
            }
        }
        let scan = scan(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(scan.series.len(), 2);
        for (i, s) in scan.series.iter().enumerate() {
            assert_eq!(s.size_ijk, [3, 2, 3]);
            assert_eq!(
                s.split.as_deref(),
                Some(["AcquisitionNumber=1", "AcquisitionNumber=2"][i])
            );
            let v = s.read().unwrap().to_f64();
            assert!(v.data.iter().all(|&x| x == (i + 1) as f64));
        }
        assert!(scan.select(&scan.series[0].series_instance_uid).is_err());
        assert_eq!(scan.select("2").unwrap().split, scan.series[1].split);
        assert!(scan.select("3").is_err());
    }

    #[test]
    fn identical_files_without_a_telling_attribute_become_separate_stacks() {
        let dir = temp_dir();
        for n in 0..3 {
            Slice {
                instance_number: n,
                ..Slice::default()
            }
            .write(dir.path(), &format!("same{n}.dcm"));
        }
        let scan = scan(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(scan.series.len(), 3);
        assert!(scan.series.iter().all(|s| s.size_ijk == [3, 2, 1]));
    }

    #[test]
    fn high_bits_are_masked_and_12_bit_signed_values_sign_extended() {
        let dir = temp_dir();
        let garbage = Slice {
            bits_stored: 12,
            high_bit: 11,
            words: vec![0xF000, 0xF0FF, 0x0FFF, 0x1001, 0, 5],
            ..Slice::default()
        };
        garbage.write(dir.path(), "u12.dcm");
        let v = scan(&[dir.path().join("u12.dcm")]).unwrap().series[0]
            .read()
            .unwrap();
        assert_eq!(v.scalar_type(), ScalarType::U16);
        assert_eq!(
            v.to_f64().data.iter().copied().collect::<Vec<_>>(),
            vec![0.0, 255.0, 4095.0, 1.0, 0.0, 5.0]
        );

        let signed = Slice {
            series_uid: "1.2.3.5".into(),
            bits_stored: 12,
            high_bit: 11,
            signed: true,
            words: vec![0x0800, 0xFFFF, 0x07FF, 0xF7FF, 0x0001, 0x0F0F],
            as_words: false,
            ..Slice::default()
        };
        signed.write(dir.path(), "s12.dcm");
        let v = i16s(
            scan(&[dir.path().join("s12.dcm")]).unwrap().series[0]
                .read()
                .unwrap(),
        );
        assert_eq!(
            v.data.iter().copied().collect::<Vec<_>>(),
            vec![-2048, -1, 2047, 2047, 1, -241]
        );
    }

    #[test]
    fn integer_rescale_gives_i16_and_fractional_rescale_f32() {
        let dir = temp_dir();
        let ct = Slice {
            bits_stored: 12,
            high_bit: 11,
            rescale: Some((1.0, -1024.0)),
            words: vec![0, 1024, 4095, 24, 0, 0],
            ..Slice::default()
        };
        ct.write(dir.path(), "ct.dcm");
        let s = &scan(&[dir.path().join("ct.dcm")]).unwrap().series[0];
        assert_eq!(s.voxel_type(), ScalarType::I16);
        let v = i16s(s.read().unwrap());
        assert_eq!(&v.data.as_slice().unwrap()[..4], &[-1024, 0, 3071, -1000]);

        let pet = Slice {
            series_uid: "1.2.3.6".into(),
            rescale: Some((0.5, 0.25)),
            ..ct.clone()
        };
        pet.write(dir.path(), "pet.dcm");
        let s = &scan(&[dir.path().join("pet.dcm")]).unwrap().series[0];
        assert_eq!(s.voxel_type(), ScalarType::F32);
        let v = s.read().unwrap().to_f64();
        assert_eq!(
            &v.data.as_slice().unwrap()[..4],
            &[0.25, 512.25, 2047.75, 12.25]
        );
    }

    #[test]
    fn wide_integer_rescale_is_i16_when_the_values_fit_and_f32_otherwise() {
        let dir = temp_dir();
        // 16-bit signed with intercept -1024: the declared range is wider than i16.
        let fits = Slice {
            signed: true,
            rescale: Some((1.0, -1024.0)),
            words: vec![0, 1024, 2000, 0xFFFF, 0, 0],
            ..Slice::default()
        };
        fits.write(dir.path(), "fits.dcm");
        let s = &scan(&[dir.path().join("fits.dcm")]).unwrap().series[0];
        let v = i16s(s.read().unwrap());
        assert_eq!(&v.data.as_slice().unwrap()[..4], &[-1024, 0, 976, -1025]);

        let overflows = Slice {
            series_uid: "1.2.3.7".into(),
            signed: false,
            words: vec![0, 1024, 65535, 0, 0, 0],
            ..fits.clone()
        };
        overflows.write(dir.path(), "over.dcm");
        let s = &scan(&[dir.path().join("over.dcm")]).unwrap().series[0];
        let v = s.read().unwrap();
        assert_eq!(v.scalar_type(), ScalarType::F32);
        assert_eq!(v.min_max(), Some((-1024.0, 64511.0)));
    }

    #[test]
    fn eight_and_thirty_two_bit_samples_keep_their_type() {
        let dir = temp_dir();
        Slice {
            bits_allocated: 8,
            bits_stored: 8,
            high_bit: 7,
            signed: true,
            words: vec![0x80, 0xFF, 0, 1, 0x7F, 2],
            ..Slice::default()
        }
        .write(dir.path(), "i8.dcm");
        let v = scan(&[dir.path().join("i8.dcm")]).unwrap().series[0]
            .read()
            .unwrap();
        assert_eq!(v.scalar_type(), ScalarType::I8);
        assert_eq!(v.min_max(), Some((-128.0, 127.0)));
        Slice {
            bits_allocated: 32,
            bits_stored: 32,
            high_bit: 31,
            words: vec![0, 1, 70000, u32::MAX, 5, 6],
            ..Slice::default()
        }
        .write(dir.path(), "u32.dcm");
        let v = scan(&[dir.path().join("u32.dcm")]).unwrap().series[0]
            .read()
            .unwrap();
        assert_eq!(v.scalar_type(), ScalarType::U32);
        assert_eq!(v.min_max(), Some((0.0, u32::MAX as f64)));
    }

    #[test]
    fn big_endian_and_implicit_files_decode_the_same() {
        let dir = temp_dir();
        let base = Slice {
            signed: true,
            words: vec![0xFFFF, 1, 2, 0x8000, 300, 0x7FFF],
            ..Slice::default()
        };
        for (n, ts) in [
            "1.2.840.10008.1.2",
            "1.2.840.10008.1.2.1",
            "1.2.840.10008.1.2.2",
        ]
        .into_iter()
        .enumerate()
        {
            Slice {
                series_number: n as i64 + 1,
                transfer_syntax: ts,
                ..base.clone()
            }
            .write(dir.path(), &format!("ts{n}.dcm"));
        }
        let scan = scan(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(scan.series.len(), 3);
        for s in &scan.series {
            let v = i16s(s.read().unwrap());
            assert_eq!(
                v.data.as_slice().unwrap(),
                &[-1, 1, 2, -32768, 300, 32767],
                "{:?}",
                s.transfer_syntaxes
            );
        }
    }

    #[test]
    fn files_without_meta_are_read_and_other_files_skipped_with_a_reason() {
        use dicom::object::open_file;
        let dir = temp_dir();
        let path = Slice::default().write(dir.path(), "full.dcm");
        let obj = open_file(&path).unwrap();
        let ts = dicom::transfer_syntax::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased();
        let mut bare = Vec::new();
        obj.write_dataset_with_ts(&mut bare, &ts).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(dir.path().join("bare.dcm"), &bare).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not dicom").unwrap();
        let scan = scan(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(scan.series.len(), 1, "{:?}", scan.skipped);
        let s = &scan.series[0];
        assert!(
            s.warnings
                .iter()
                .any(|w| w.contains("no file meta information")),
            "{:?}",
            s.warnings
        );
        assert_eq!(s.read().unwrap().min_max(), Some((0.0, 5.0)));
        assert_eq!(scan.skipped.len(), 1);
        assert!(scan.skipped[0].1.starts_with("not a DICOM file"));
    }

    #[test]
    fn progress_reports_every_slice() {
        let dir = temp_dir();
        write_stack(dir.path(), &[0.0, 1.0, 2.0], None);
        let s = &scan(&[dir.path().to_path_buf()]).unwrap().series[0];
        let calls = std::sync::Mutex::new(Vec::new());
        s.read_with_progress(&|done, total| calls.lock().unwrap().push((done, total)))
            .unwrap();
        let mut calls = calls.into_inner().unwrap();
        calls.sort();
        assert_eq!(calls, vec![(1, 3), (2, 3), (3, 3)]);
    }

    #[test]
    fn a_mosaic_is_cut_into_tiles_along_the_csa_normal() {
        use dicom::core::{DataElement, Tag, VR};
        use dicom::object::open_file;
        let dir = temp_dir();
        // A 4x6 mosaic of 3 tiles (2 per row) of 2x3 pixels; tile t holds value 10 t + x.
        let mut words = vec![0u32; 24];
        for t in 0..3usize {
            for y in 0..2usize {
                for x in 0..3usize {
                    let row = (t / 2) * 2 + y;
                    let col = (t % 2) * 3 + x;
                    words[row * 6 + col] = (10 * t + x) as u32;
                }
            }
        }
        let path = Slice {
            rows: 4,
            columns: 6,
            pixel_spacing: [2.0, 1.0],
            words,
            ..Slice::default()
        }
        .write(dir.path(), "mosaic.dcm");
        let mut obj = open_file(&path).unwrap();
        obj.put(DataElement::new(
            tags_image_type(),
            VR::CS,
            "ORIGINAL\\PRIMARY\\M\\MOSAIC",
        ));
        obj.put(DataElement::new(
            Tag(0x0029, 0x0010),
            VR::LO,
            "SIEMENS CSA HEADER",
        ));
        let csa = super::csa::write(&[
            ("NumberOfImagesInMosaic", &["3"]),
            ("SliceNormalVector", &["0", "0", "-1"]),
        ]);
        obj.put(DataElement::new(
            Tag(0x0029, 0x1010),
            VR::OB,
            dicom::core::PrimitiveValue::from(csa),
        ));
        obj.put(DataElement::new(
            dicom::dictionary_std::tags::SPACING_BETWEEN_SLICES,
            VR::DS,
            "3",
        ));
        obj.write_to_file(&path).unwrap();

        let s = &scan(&[path]).unwrap().series[0];
        assert_eq!(s.mosaic.map(|m| (m.tiles, m.per_row)), Some((3, 2)));
        assert_eq!(s.size_ijk, [3, 2, 3]);
        // Corner moved by half the mosaic/tile difference: 3 columns x 1 mm, 2 rows x 2 mm.
        assert_eq!(s.geometry.origin, [1.5, 2.0, 0.0]);
        assert_eq!(s.geometry.spacing, [1.0, 2.0, 3.0]);
        assert_eq!(s.geometry.axis(2), [0.0, 0.0, -1.0]);
        let v = s.read().unwrap().to_f64();
        for t in 0..3 {
            assert_eq!(v.data[[t, 1, 2]], (10 * t + 2) as f64);
        }
    }

    fn tags_image_type() -> dicom::core::Tag {
        dicom::dictionary_std::tags::IMAGE_TYPE
    }

    #[test]
    fn colour_images_are_listed_but_refused() {
        let dir = temp_dir();
        let path = Slice::default().write(dir.path(), "rgb.dcm");
        let mut obj = dicom::object::open_file(&path).unwrap();
        obj.put(dicom::core::DataElement::new(
            dicom::dictionary_std::tags::SAMPLES_PER_PIXEL,
            dicom::core::VR::US,
            dicom::core::PrimitiveValue::from(3u16),
        ));
        obj.write_to_file(&path).unwrap();
        let s = &scan(&[path]).unwrap().series[0];
        let err = s.read().unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("3 samples per pixel"), "{err}");
    }

    #[test]
    fn non_recursive_scans_stay_in_the_folders_given() {
        let dir = temp_dir();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        Slice::default().write(dir.path(), "top.dcm");
        Slice {
            series_uid: "1.2.3.9".into(),
            ..Slice::default()
        }
        .write(&sub, "nested.dcm");
        let paths = [dir.path().to_path_buf()];
        assert_eq!(
            ScanOptions::new()
                .recursive(false)
                .scan(&paths)
                .unwrap()
                .series
                .len(),
            1
        );
        assert_eq!(ScanOptions::new().scan(&paths).unwrap().series.len(), 2);
        // Files named directly are always read.
        let both = [dir.path().join("top.dcm"), sub.join("nested.dcm")];
        assert_eq!(
            ScanOptions::new()
                .recursive(false)
                .scan(&both)
                .unwrap()
                .series
                .len(),
            2
        );
    }

    #[test]
    fn uncompressed_files_too_short_for_their_frames_are_refused_before_allocating() {
        // 65535 x 65535 16-bit pixels declared, 6 stored: refused from the file size, not
        // after an 8 GiB allocation.
        let dir = temp_dir();
        let path = Slice {
            rows: 65535,
            columns: 65535,
            ..Slice::default()
        }
        .write(dir.path(), "huge.dcm");
        let s = &scan(&[path]).unwrap().series[0];
        let err = s.read().unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{err}");
        assert!(
            err.to_string().contains(
                "huge.dcm: invalid DICOM: 1 frame(s) of 65535 x 65535 pixels of 16 bits need 8589672450 bytes"
            ),
            "{err}"
        );
    }

    #[test]
    fn missing_paths_are_errors() {
        let err = scan(&[PathBuf::from("/nonexistent/segkit")]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/segkit"));
    }

    #[test]
    fn transfer_syntaxes_have_names_and_support_flags() {
        assert_eq!(
            transfer_syntax_name("1.2.840.10008.1.2.1"),
            "Explicit VR Little Endian"
        );
        assert!(transfer_syntax_supported("1.2.840.10008.1.2.4.90"));
        assert_eq!(
            transfer_syntax_supported("1.2.840.10008.1.2.4.80"),
            cfg!(feature = "jpegls")
        );
        assert!(transfer_syntax_name("1.2.3").contains("unknown"));
    }
}
