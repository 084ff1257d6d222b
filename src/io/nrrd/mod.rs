//! NRRD (placeholder: the reader and writer are being written).
use crate::error::{Error, Result};
use crate::volume::{AnyVolume, Labelmap, Segmentation};
use std::path::Path;

/// Reads a 3-D scalar NRRD (`.nrrd` or `.nhdr`) as a volume.
pub fn read_volume(path: &Path) -> Result<AnyVolume> {
    Err(Error::unsupported(
        path,
        "NRRD reading is not implemented yet",
    ))
}
/// Writes a volume as a gzip NRRD, the way Slicer writes volumes.
pub fn write_volume(path: &Path, _v: &AnyVolume) -> Result<()> {
    Err(Error::unsupported(
        path,
        "NRRD writing is not implemented yet",
    ))
}
/// Writes a label map as Slicer writes `-label.nrrd`.
pub fn write_labelmap(path: &Path, _v: &Labelmap) -> Result<()> {
    Err(Error::unsupported(
        path,
        "NRRD writing is not implemented yet",
    ))
}
/// Reads a Slicer `.seg.nrrd` (or a plain label map NRRD) as a segmentation.
pub fn read_segmentation(path: &Path) -> Result<Segmentation> {
    Err(Error::unsupported(
        path,
        "NRRD reading is not implemented yet",
    ))
}
/// Writes a Slicer `.seg.nrrd`.
pub fn write_segmentation(path: &Path, _s: &Segmentation) -> Result<()> {
    Err(Error::unsupported(
        path,
        "NRRD writing is not implemented yet",
    ))
}
