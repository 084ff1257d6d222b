//! Volumes: a 3-D array of voxels on one [`Geometry`], and the segmentations drawn on them.
//!
//! `Volume<T>` wraps an `ndarray::Array3<T>` indexed `[k][j][i]` in standard (C) order, so
//! `i` is fastest in memory: the byte order of NRRD, NIfTI and VTK image data. Readers that
//! do not know their voxel type in advance return an [`AnyVolume`].

mod geometry;
mod scalar;
mod segmentation;

pub use geometry::{cross, dot, invert3, norm, Geometry, IDENTITY};
pub use scalar::{AnyVolume, Scalar, ScalarType};
pub use segmentation::{Segment, Segmentation};

use ndarray::Array3;

/// Largest number of bytes segkit allocates for one volume's voxels (64 GiB).
///
/// Readers check a header's declared size against this limit, and against the data
/// actually present in the file, before they allocate anything.
pub const MAX_VOLUME_BYTES: u64 = 64 << 30;

/// A 3-D image: voxels indexed `[k][j][i]` and where they are in the patient.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume<T> {
    /// Voxels, `[k][j][i]`, standard layout.
    pub data: Array3<T>,
    /// Origin, spacing and direction in LPS millimetres.
    pub geometry: Geometry,
}

/// A label map: one label value per voxel, 0 = background.
pub type Labelmap = Volume<u16>;

/// A binary mask: 0 or 1 per voxel.
pub type Mask = Volume<u8>;

impl<T> Volume<T> {
    /// A volume from its voxels (`[k][j][i]`) and geometry.
    pub fn new(data: Array3<T>, geometry: Geometry) -> Self {
        Volume { data, geometry }
    }

    /// Sizes along (i, j, k): columns, rows, slices.
    pub fn size_ijk(&self) -> [usize; 3] {
        let (nk, nj, ni) = self.data.dim();
        [ni, nj, nk]
    }

    /// Number of voxels.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True for a volume without voxels.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl<T: Clone + Default> Volume<T> {
    /// A volume of default (zero) voxels with sizes (i, j, k).
    pub fn zeros(size_ijk: [usize; 3], geometry: Geometry) -> Self {
        Volume {
            data: Array3::default((size_ijk[2], size_ijk[1], size_ijk[0])),
            geometry,
        }
    }
}

/// The number of bytes of `count` voxels of `elem_size` bytes, or `None` on overflow.
pub fn byte_size(sizes: &[usize], elem_size: usize) -> Option<u64> {
    sizes
        .iter()
        .try_fold(elem_size as u64, |acc, &s| acc.checked_mul(s as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_reported_in_ijk_order() {
        let v: Volume<i16> = Volume::zeros([4, 3, 2], Geometry::default());
        assert_eq!(v.data.dim(), (2, 3, 4));
        assert_eq!(v.size_ijk(), [4, 3, 2]);
        assert_eq!(v.len(), 24);
    }

    #[test]
    fn byte_size_detects_overflow() {
        assert_eq!(byte_size(&[2, 3, 4], 2), Some(48));
        assert_eq!(byte_size(&[usize::MAX, 2], 8), None);
    }
}
