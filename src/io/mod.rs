//! Reading and writing files: DICOM series, NRRD (with Slicer's `.seg.nrrd`) and NIfTI.
//!
//! Every reader fills one [`Geometry`](crate::volume::Geometry) in LPS; every writer writes
//! it back; every write is atomic ([`write_atomic`]). The format is chosen from the path:
//! a directory is a DICOM folder, and files go by extension (see [`Format::from_path`]).

mod atomic;
pub mod dicom;
pub mod gzip;
pub mod markups;
pub mod nifti;
pub mod nrrd;
pub mod snapshot;

pub use atomic::{write_atomic, write_bytes_atomic};

use crate::error::{Error, Result};
use crate::volume::{byte_size, AnyVolume, Labelmap, Scalar, Segmentation};
use std::path::Path;

/// The file formats segkit reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A folder (searched recursively) or a single file of DICOM objects.
    Dicom,
    /// NRRD, attached (`.nrrd`) or detached (`.nhdr`).
    Nrrd,
    /// Slicer's segmentation file, a NRRD with `Segment{N}_*` fields (`.seg.nrrd`).
    SegNrrd,
    /// NIfTI-1, plain (`.nii`) or gzip-compressed (`.nii.gz`).
    Nifti,
}

impl Format {
    /// The format a path names: by extension for files (case-insensitive), DICOM for folders
    /// and for `.dcm` / `.ima` files or files without an extension.
    pub fn from_path(path: &Path) -> Result<Format> {
        if path.is_dir() {
            return Ok(Format::Dicom);
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let format = if name.ends_with(".seg.nrrd") || name.ends_with(".seg.nhdr") {
            Format::SegNrrd
        } else if name.ends_with(".nrrd") || name.ends_with(".nhdr") {
            Format::Nrrd
        } else if name.ends_with(".nii") || name.ends_with(".nii.gz") {
            Format::Nifti
        } else if name.ends_with(".dcm") || name.ends_with(".ima") || !name.contains('.') {
            Format::Dicom
        } else {
            return Err(Error::unsupported(
                path,
                "unknown file extension (expected a DICOM folder or file, .nrrd, .nhdr, .seg.nrrd, .nii or .nii.gz)",
            ));
        };
        Ok(format)
    }

    /// Human-readable name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Dicom => "DICOM",
            Format::Nrrd => "NRRD",
            Format::SegNrrd => "Slicer segmentation (.seg.nrrd)",
            Format::Nifti => "NIfTI",
        }
    }
}

/// What a file or folder holds once read.
#[derive(Debug, Clone)]
pub enum Dataset {
    /// An image (CT, MR, a label map stored as a plain volume, ...).
    Volume(AnyVolume),
    /// Named segments on one lattice (a `.seg.nrrd`).
    Segmentation(Segmentation),
}

impl Dataset {
    /// The dataset as a volume: a segmentation is flattened into a label map the way
    /// Slicer's "Export to label map" does (segment `n` gets label `n + 1`).
    pub fn into_volume(self) -> AnyVolume {
        match self {
            Dataset::Volume(v) => v,
            Dataset::Segmentation(s) => AnyVolume::U16(s.to_labelmap()),
        }
    }

    /// The dataset as a segmentation: a volume is read as a label map, one segment per
    /// non-zero value, as Slicer imports label maps. `path` names the source in errors.
    pub fn into_segmentation(self, path: &Path) -> Result<Segmentation> {
        match self {
            Dataset::Segmentation(s) => Ok(s),
            Dataset::Volume(v) => Ok(Segmentation::from_labelmap(&labelmap_from(&v, path)?)),
        }
    }
}

/// A volume's voxels as label values, or an error when a voxel is not an integer in 0..=65535.
pub fn labelmap_from(v: &AnyVolume, path: &Path) -> Result<Labelmap> {
    let values = v.to_f64();
    if let Some(bad) = values
        .data
        .iter()
        .find(|&&x| !(x.fract() == 0.0 && (0.0..=65535.0).contains(&x)))
    {
        return Err(Error::InvalidArgument(format!(
            "{}: cannot be used as a label map: voxel value {bad} is not an integer label in 0..=65535",
            path.display()
        )));
    }
    Ok(crate::volume::Volume::new(
        values.data.mapv(u16::from_f64),
        values.geometry,
    ))
}

/// Progress callback: `(done, total)` units of work.
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Sync);

/// How to open a path: builder at the edge, ending in [`OpenOptions::open`].
#[derive(Default)]
pub struct OpenOptions<'a> {
    series: Option<String>,
    progress: Option<Progress<'a>>,
}

impl<'a> OpenOptions<'a> {
    /// Default options: a folder must hold exactly one series.
    pub fn new() -> Self {
        Self::default()
    }

    /// Picks one series of a DICOM folder: its number in `segkit info`'s listing (1-based)
    /// or its SeriesInstanceUID.
    pub fn series(mut self, series: Option<String>) -> Self {
        self.series = series;
        self
    }

    /// Reports progress of long reads (DICOM decoding).
    pub fn progress(mut self, progress: Progress<'a>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Reads `path`, choosing the reader from [`Format::from_path`].
    pub fn open(&self, path: &Path) -> Result<Dataset> {
        self.plan(path)?.read()
    }

    /// Reads the headers of `path` only: what it will take in memory is known before the
    /// voxels are read ([`Planned::bytes`]), so a caller with a memory limit can refuse
    /// or wait first. [`Planned::read`] then reads the voxels without reading the headers
    /// of a DICOM series again.
    pub fn plan(&self, path: &Path) -> Result<Planned<'a>> {
        if !path.exists() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
            ));
        }
        let (source, bytes) = match Format::from_path(path)? {
            Format::Dicom => {
                let scan = dicom::scan(&[path.to_path_buf()])?;
                let series = select_series(path, &scan, self.series.as_deref())?.clone();
                let bytes = byte_size(&series.size_ijk, series.voxel_type().size());
                (Source::Dicom(Box::new(series)), bytes.unwrap_or(u64::MAX))
            }
            Format::Nifti => (Source::File(Format::Nifti), nifti::declared_bytes(path)?),
            format => {
                let header = nrrd::read_header(path)?;
                (
                    Source::File(format),
                    header.data_bytes().unwrap_or(u64::MAX),
                )
            }
        };
        Ok(Planned {
            path: path.to_path_buf(),
            source,
            bytes,
            progress: self.progress,
        })
    }
}

/// A dataset whose headers have been read and whose voxels have not: see
/// [`OpenOptions::plan`].
pub struct Planned<'a> {
    path: std::path::PathBuf,
    source: Source,
    bytes: u64,
    progress: Option<Progress<'a>>,
}

/// What [`Planned::read`] reads: a file by its format, or the DICOM series the scan chose.
enum Source {
    File(Format),
    Dicom(Box<dicom::Series>),
}

impl Planned<'_> {
    /// The bytes the voxels will take in memory, from the headers (a NIfTI file that
    /// scales its values counts 4 bytes per voxel).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Reads the voxels.
    pub fn read(self) -> Result<Dataset> {
        let path = self.path.as_path();
        match self.source {
            Source::Dicom(series) => match self.progress {
                Some(p) => series.read_with_progress(p),
                None => series.read(),
            }
            .map(Dataset::Volume),
            Source::File(Format::SegNrrd) => {
                nrrd::read_segmentation(path).map(Dataset::Segmentation)
            }
            Source::File(Format::Nifti) => nifti::read_volume(path).map(Dataset::Volume),
            Source::File(_) => nrrd::read_volume(path).map(Dataset::Volume),
        }
    }
}

/// The one series a DICOM path stands for: the only one, or the one `choice` names
/// (1-based listing number or SeriesInstanceUID). Errors name the path and list the series.
pub fn select_series<'s>(
    path: &Path,
    scan: &'s dicom::Scan,
    choice: Option<&str>,
) -> Result<&'s dicom::Series> {
    let listing = || {
        scan.series
            .iter()
            .enumerate()
            .map(|(n, s)| format!("\n  {}: {} ({})", n + 1, s.label(), s.series_instance_uid))
            .collect::<String>()
    };
    let with_path = |e: Error| match e {
        Error::NotFound(m) => Error::NotFound(format!(
            "{}: {m}; the series are:{}",
            path.display(),
            listing()
        )),
        Error::InvalidArgument(m) => Error::InvalidArgument(format!("{}: {m}", path.display())),
        other => other,
    };
    match (choice, scan.series.as_slice()) {
        (_, []) => {
            let why = scan
                .skipped
                .first()
                .map(|(p, why)| format!(" (e.g. {}: {why})", p.display()))
                .unwrap_or_default();
            Err(Error::InvalidArgument(format!(
                "{}: no DICOM image series found{why}",
                path.display()
            )))
        }
        (Some(choice), _) => scan.select(choice).map_err(with_path),
        (None, [one]) => Ok(one),
        (None, several) => Err(Error::InvalidArgument(format!(
            "{}: holds {} series; pick one with --series N or --series UID:{}",
            path.display(),
            several.len(),
            listing()
        ))),
    }
}

/// Reads `path` with default options.
pub fn open(path: &Path) -> Result<Dataset> {
    OpenOptions::new().open(path)
}

/// Writes `dataset` to `path` in the format its extension names:
/// - `.seg.nrrd`: a Slicer segmentation (a volume is taken as a label map);
/// - `-label.nrrd`: a Slicer label map (`short`), flattening a segmentation;
/// - `.nrrd`, `.nhdr`: the volume in its own voxel type;
/// - `.nii`, `.nii.gz`: NIfTI-1.
///
/// DICOM (`.dcm`) is refused here: a DICOM SEG needs a reference series, see
/// [`dicom::write_dicom_seg`].
pub fn write(path: &Path, dataset: Dataset, source: &Path) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match Format::from_path(path)? {
        Format::SegNrrd => nrrd::write_segmentation(path, &dataset.into_segmentation(source)?),
        Format::Nrrd if name.ends_with("-label.nrrd") || name.ends_with("_label.nrrd") => {
            let labels = labelmap_from(&dataset.into_volume(), source)?;
            nrrd::write_labelmap(path, &labels)
        }
        Format::Nrrd => nrrd::write_volume(path, &dataset.into_volume()),
        Format::Nifti => nifti::write_volume(path, &dataset.into_volume()),
        Format::Dicom => Err(Error::unsupported(
            path,
            "a DICOM Segmentation needs the image series it was drawn on: use \
             dicom::write_dicom_seg (on the command line, `convert ... --reference DICOM_DIR`); \
             other DICOM objects are not written",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_know_the_size_before_the_voxels_are_read() {
        use crate::volume::{Geometry, Volume};
        let dir = tempfile::tempdir().unwrap();
        let v: AnyVolume = Volume::new(
            ndarray::Array3::<i16>::zeros((4, 3, 2)),
            Geometry::default(),
        )
        .into();
        for name in ["v.nrrd", "v.nii.gz", "v.nii", "v.seg.nrrd"] {
            let path = dir.path().join(name);
            write(&path, Dataset::Volume(v.clone()), Path::new("test")).unwrap();
            let planned = OpenOptions::new().plan(&path).unwrap();
            let expected = if name.ends_with(".seg.nrrd") { 24 } else { 48 };
            assert_eq!(planned.bytes(), expected, "{name}");
            planned.read().unwrap();
        }
    }

    #[test]
    fn formats_follow_the_extension() {
        let f = |p: &str| Format::from_path(Path::new(p)).unwrap();
        assert_eq!(f("a/b/Segmentation.seg.nrrd"), Format::SegNrrd);
        assert_eq!(f("x-label.NRRD"), Format::Nrrd);
        assert_eq!(f("x.nhdr"), Format::Nrrd);
        assert_eq!(f("x.nii.gz"), Format::Nifti);
        assert_eq!(f("IM0001"), Format::Dicom);
        assert!(Format::from_path(Path::new("x.png")).is_err());
    }
}
