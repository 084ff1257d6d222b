//! NIfTI-1 (placeholder: the reader and writer are being written).
use crate::error::{Error, Result};
use crate::volume::AnyVolume;
use std::path::Path;

/// Reads a `.nii` or `.nii.gz` volume.
pub fn read_volume(path: &Path) -> Result<AnyVolume> {
    Err(Error::unsupported(
        path,
        "NIfTI reading is not implemented yet",
    ))
}
/// Writes a `.nii` or `.nii.gz` volume.
pub fn write_volume(path: &Path, _v: &AnyVolume) -> Result<()> {
    Err(Error::unsupported(
        path,
        "NIfTI writing is not implemented yet",
    ))
}
