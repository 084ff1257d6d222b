//! Reading and writing files: DICOM series, NRRD (with Slicer's `.seg.nrrd`) and NIfTI.
//!
//! Every reader fills one [`Geometry`](crate::volume::Geometry) in LPS; every writer writes
//! it back; every write is atomic ([`write_atomic`]). The format is chosen from the path:
//! a directory is a DICOM folder, and files go by extension (see [`Format::from_path`]).

mod atomic;
pub mod dicom;
pub mod nifti;
pub mod nrrd;

pub use atomic::{write_atomic, write_bytes_atomic};

use crate::error::{Error, Result};
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

#[cfg(test)]
mod tests {
    use super::*;

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
