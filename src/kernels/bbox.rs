//! The bounding box of the non-zero voxels of a volume.

use ndarray::ArrayView3;
use rayon::prelude::*;

type Box3 = Option<[(usize, usize); 3]>;

/// Half-open `[lo, hi)` ranges along k, j, i of the voxels that are not `T::default()`,
/// padded by `pad` voxels and clipped to the array; `None` when every voxel is zero.
/// Slices are scanned in parallel, rows from both ends.
pub fn nonzero_box<T: PartialEq + Default + Copy + Sync>(a: ArrayView3<T>, pad: usize) -> Box3 {
    let zero = T::default();
    let merge = |a: Box3, b: Box3| match (a, b) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) => Some([0, 1, 2].map(|d| (a[d].0.min(b[d].0), a[d].1.max(b[d].1)))),
    };
    let (nk, nj, ni) = a.dim();
    let slices: Vec<_> = a.outer_iter().enumerate().collect();
    let bbox = slices
        .into_par_iter()
        .map(|(k, slice)| {
            let mut bbox: Box3 = None;
            for (j, row) in slice.outer_iter().enumerate() {
                let Some(first) = row.iter().position(|&v| v != zero) else {
                    continue;
                };
                let last = row.iter().rposition(|&v| v != zero).unwrap_or(first);
                bbox = merge(bbox, Some([(k, k + 1), (j, j + 1), (first, last + 1)]));
            }
            bbox
        })
        .reduce(|| None, merge)?;
    let n = [nk, nj, ni];
    Some([0, 1, 2].map(|d| (bbox[d].0.saturating_sub(pad), (bbox[d].1 + pad).min(n[d]))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn box_is_padded_and_clipped() {
        let mut a = Array3::<u16>::zeros((3, 4, 5));
        a[[1, 2, 3]] = 7;
        a[[1, 1, 1]] = 2;
        assert_eq!(nonzero_box(a.view(), 0), Some([(1, 2), (1, 3), (1, 4)]));
        assert_eq!(nonzero_box(a.view(), 1), Some([(0, 3), (0, 4), (0, 5)]));
        assert_eq!(nonzero_box(Array3::<u8>::zeros((2, 2, 2)).view(), 1), None);
    }
}
