//! Marker-based morphological watershed by priority flooding, without watershed lines, as
//! ITK's `MorphologicalWatershedFromMarkersImageFilter` computes it with
//! `MarkWatershedLine` off (Beucher's algorithm).
//!
//! # Reference
//! S. Beucher and F. Meyer, "The morphological approach to segmentation: the watershed
//! transformation", in *Mathematical Morphology in Image Processing*, 1993; G. Lehmann,
//! "The watershed transform in ITK – discussion and new developments", Insight Journal
//! 2005 (<https://doi.org/10.54294/lf8u75>); ITK 5.4's
//! `itkMorphologicalWatershedFromMarkersImageFilter.hxx`, whose visiting order this module
//! reproduces so that the labels are the same voxel for voxel.
//!
//! # Method
//! - Every marker voxel (label != 0) keeps its label. Marker voxels with at least one
//!   unlabelled neighbour are queued, in raster order (i fastest, then j, then k), at the
//!   priority of their own value.
//! - The lowest priority level is taken (ITK's `std::map` of FIFO queues); its voxels are
//!   taken first in, first out. Each gives its label to its unlabelled neighbours, visited in
//!   ITK's neighbourhood order: −k, −j, −i, +i, +j, +k (face neighbours only:
//!   `FullyConnected` off). A neighbour whose value is at most the current level joins the
//!   current level's queue at its end; one above joins its own level's queue.
//! - **Ties**: voxels of equal value are labelled in the order they were queued, so a
//!   plateau between two markers is split by distance in steps from its sides (the side
//!   reached first wins at equal steps, in queue order). Comparisons are on the values as
//!   given (`f32`; a NaN is ordered after every number, not an error).
//! - **Border**: there is nothing outside the image (ITK's boundary is a label that is never
//!   flooded); the image is padded with one voxel of that label here, so no test is needed.
//! - Voxels not connected to any marker keep label 0.
//!
//! The priority queue is a binary heap keyed by (value, order of insertion), which gives
//! exactly the order of ITK's map of FIFO queues; voxels that join the current level (the
//! common case inside basins) go to a plain FIFO and never touch the heap.
//!
//! # Example
//! ```
//! use ndarray::Array3;
//! use segkit::effects::Control;
//! use segkit::kernels::watershed::watershed_from_markers;
//! // Two basins and a ridge at i = 3: each marker floods its own side.
//! let relief = Array3::from_shape_vec((1, 1, 7), vec![0.0f32, 1.0, 2.0, 9.0, 2.0, 1.0, 0.0]).unwrap();
//! let markers = Array3::from_shape_vec((1, 1, 7), vec![1u16, 0, 0, 0, 0, 0, 2]).unwrap();
//! let labels = watershed_from_markers(relief.view(), markers.view(), &Control::none()).unwrap();
//! assert_eq!(labels.as_slice().unwrap(), &[1, 1, 1, 1, 2, 2, 2]);
//! ```

use crate::effects::{Control, EffectError};
use ndarray::{s, Array3, ArrayView3, Zip};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// The label of the padding: never flooded.
const OUTSIDE: u16 = u16::MAX;
/// Voxels labelled between two cancellation checks.
const VOXELS_PER_CHECK: usize = 1 << 18;

/// `f32` mapped to `u32` so that the integer order is the numbers' order (NaN last).
#[inline]
fn ordered(x: f32) -> u32 {
    let b = x.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// The watershed of `relief` from `markers` (same shape, `[k][j][i]`; 0 = no marker):
/// see the module documentation. Returns the labels; a marker label of `u16::MAX` is
/// refused (it is the border's).
///
/// # Errors
/// Shapes that differ, a marker labelled `u16::MAX`, an image too large to index with
/// 32 bits, a cancelled request.
pub fn watershed_from_markers(
    relief: ArrayView3<f32>,
    markers: ArrayView3<u16>,
    control: &Control,
) -> Result<Array3<u16>, EffectError> {
    if relief.dim() != markers.dim() {
        return Err(EffectError::Input(format!(
            "the relief has shape {:?} and the markers {:?} (k, j, i)",
            relief.dim(),
            markers.dim()
        )));
    }
    let (nk, nj, ni) = relief.dim();
    if nk * nj * ni == 0 {
        return Ok(Array3::zeros((nk, nj, ni)));
    }
    let (pk, pj, pi) = (nk + 2, nj + 2, ni + 2);
    let padded_len = pk
        .checked_mul(pj)
        .and_then(|x| x.checked_mul(pi))
        .filter(|&x| x < u32::MAX as usize)
        .ok_or_else(|| {
            EffectError::Input(format!(
                "the watershed image {:?} (k, j, i) has too many voxels",
                relief.dim()
            ))
        })?;
    if markers.iter().any(|&m| m == OUTSIDE) {
        return Err(EffectError::Input(format!(
            "marker label {OUTSIDE} is reserved for the image border"
        )));
    }
    // Padded copies: the keys (padding never read for the flood: its label is OUTSIDE) and
    // the labels.
    let mut keys = Array3::<u32>::zeros((pk, pj, pi));
    Zip::from(keys.slice_mut(s![1..=nk, 1..=nj, 1..=ni]))
        .and(&relief)
        .par_for_each(|k, &v| *k = ordered(v));
    let mut labels = Array3::<u16>::from_elem((pk, pj, pi), OUTSIDE);
    Zip::from(labels.slice_mut(s![1..=nk, 1..=nj, 1..=ni]))
        .and(&markers)
        .par_for_each(|l, &m| *l = m);
    let keys = keys
        .as_slice()
        .ok_or_else(|| EffectError::Internal("a new array is not contiguous".into()))?;
    let lab = labels
        .as_slice_mut()
        .ok_or_else(|| EffectError::Internal("a new array is not contiguous".into()))?;
    debug_assert_eq!(lab.len(), padded_len);
    // ITK's neighbourhood order: -k, -j, -i, +i, +j, +k.
    let sj = pi;
    let sk = pi * pj;
    let offsets: [isize; 6] = [
        -(sk as isize),
        -(sj as isize),
        -1,
        1,
        sj as isize,
        sk as isize,
    ];

    // Priority: (key << 32 | insertion number), smallest first. The insertion number is
    // 32 bits; it counts pushes onto the heap, at most one per voxel.
    let mut heap: BinaryHeap<Reverse<(u64, u32)>> = BinaryHeap::new();
    let mut seq: u64 = 0;
    let mut push = |heap: &mut BinaryHeap<Reverse<(u64, u32)>>, key: u32, idx: usize| {
        heap.push(Reverse(((u64::from(key) << 32) | seq, idx as u32)));
        seq += 1;
    };
    // Initial queue: marker voxels with an unlabelled face neighbour, in raster order.
    for k in 1..=nk {
        control.check()?;
        for j in 1..=nj {
            let row = k * sk + j * sj;
            for idx in row + 1..=row + ni {
                if lab[idx] != 0
                    && offsets
                        .iter()
                        .any(|&o| lab[(idx as isize + o) as usize] == 0)
                {
                    push(&mut heap, keys[idx], idx);
                }
            }
        }
    }
    let mut fifo: VecDeque<u32> = VecDeque::new();
    let mut done = 0usize;
    while let Some(Reverse((top, first))) = heap.pop() {
        let level = (top >> 32) as u32;
        let mut next = Some(first);
        loop {
            // The level's heap entries first (in insertion order), then those that joined
            // the level while it was flooded.
            let idx = match next.take() {
                Some(i) => i as usize,
                None => match heap.peek() {
                    Some(Reverse((p, _))) if (p >> 32) as u32 == level => {
                        let Some(Reverse((_, i))) = heap.pop() else {
                            break;
                        };
                        i as usize
                    }
                    _ => match fifo.pop_front() {
                        Some(i) => i as usize,
                        None => break,
                    },
                },
            };
            let label = lab[idx];
            for &o in &offsets {
                let n = (idx as isize + o) as usize;
                if lab[n] == 0 {
                    lab[n] = label;
                    let key = keys[n];
                    if key <= level {
                        fifo.push_back(n as u32);
                    } else {
                        push(&mut heap, key, n);
                    }
                    done += 1;
                    if done.is_multiple_of(VOXELS_PER_CHECK) {
                        control.check()?;
                    }
                }
            }
        }
    }
    Ok(labels.slice(s![1..=nk, 1..=nj, 1..=ni]).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(relief: &[f32], markers: &[u16], shape: (usize, usize, usize)) -> Vec<u16> {
        let r = Array3::from_shape_vec(shape, relief.to_vec()).unwrap();
        let m = Array3::from_shape_vec(shape, markers.to_vec()).unwrap();
        watershed_from_markers(r.view(), m.view(), &Control::none())
            .unwrap()
            .into_raw_vec_and_offset()
            .0
    }

    #[test]
    fn two_basins_split_at_the_ridge() {
        // The ridge voxel (9) is reached from both sides at level 9; the left marker's
        // front gets there first (it was queued first in raster order).
        assert_eq!(
            run(
                &[0., 1., 2., 9., 2., 1., 0.],
                &[1, 0, 0, 0, 0, 0, 2],
                (1, 1, 7)
            ),
            [1, 1, 1, 1, 2, 2, 2]
        );
        // An asymmetric ridge: the lower pass belongs to the side that floods it first.
        assert_eq!(
            run(&[0., 5., 1., 3., 8., 0.], &[1, 0, 0, 0, 0, 2], (1, 1, 6)),
            [1, 1, 1, 1, 2, 2]
        );
    }

    #[test]
    fn a_plateau_is_split_by_steps_from_each_side() {
        // Flat between the markers: each takes the voxels nearer to it; at the middle the
        // tie goes to the marker queued first (raster order: the left one).
        assert_eq!(
            run(&[1.; 7], &[1, 0, 0, 0, 0, 0, 2], (1, 1, 7)),
            [1, 1, 1, 1, 2, 2, 2]
        );
        assert_eq!(
            run(&[1.; 6], &[1, 0, 0, 0, 0, 2], (1, 1, 6)),
            [1, 1, 1, 2, 2, 2]
        );
        // Markers on a high value flood a low plateau at the marker's level, in steps.
        assert_eq!(
            run(&[5., 0., 0., 0., 0., 5.], &[2, 0, 0, 0, 0, 1], (1, 1, 6)),
            [2, 2, 2, 1, 1, 1]
        );
    }

    #[test]
    fn connectivity_is_faces_and_the_neighbour_order_is_itks() {
        // 3 x 3, a marker at the top-left and one at the bottom-right, flat: the
        // anti-diagonal voxels are equally far from both; each is reached first from the
        // marker whose front gets there first in queue order.
        let got = run(&[0.; 9], &[1, 0, 0, 0, 0, 0, 0, 0, 2], (1, 3, 3));
        assert_eq!(got, [1, 1, 1, 1, 1, 2, 1, 2, 2]);
        // Diagonal steps never carry a label: the centre is a diagonal neighbour of
        // marker 1 but reached through faces from marker 2 only; the two walls (9) are
        // queued first by marker 1.
        let relief = [0., 9., 0., 9., 0., 0., 0., 0., 0.];
        let got = run(&relief, &[1, 0, 0, 0, 0, 0, 0, 0, 2], (1, 3, 3));
        assert_eq!(got, [1, 1, 2, 1, 2, 2, 2, 2, 2]);
    }

    #[test]
    fn the_border_stops_the_flood_and_unreached_voxels_stay_zero() {
        // Along k: a single column, markers at both ends.
        assert_eq!(
            run(&[3., 2., 1., 2., 3.], &[1, 0, 0, 0, 2], (5, 1, 1)),
            [1, 1, 1, 2, 2]
        );
        // No marker: nothing is labelled.
        assert_eq!(run(&[0.; 4], &[0; 4], (1, 2, 2)), [0; 4]);
        // Markers are kept even on high values.
        assert_eq!(run(&[9., 0., 9.], &[1, 0, 2], (1, 1, 3)), [1, 1, 2]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let r = Array3::<f32>::zeros((1, 2, 2));
        let m = Array3::<u16>::zeros((1, 2, 3));
        assert!(watershed_from_markers(r.view(), m.view(), &Control::none()).is_err());
        let m = Array3::<u16>::from_elem((1, 2, 2), u16::MAX);
        assert!(watershed_from_markers(r.view(), m.view(), &Control::none()).is_err());
        let control = Control::none();
        control.cancel();
        let m = Array3::<u16>::zeros((1, 2, 2));
        assert_eq!(
            watershed_from_markers(r.view(), m.view(), &control),
            Err(EffectError::Cancelled)
        );
        // NaN does not panic.
        let r = Array3::from_shape_vec((1, 1, 3), vec![f32::NAN, 0.0, 1.0]).unwrap();
        let m = Array3::from_shape_vec((1, 1, 3), vec![1u16, 0, 0]).unwrap();
        let out = watershed_from_markers(r.view(), m.view(), &Control::none()).unwrap();
        assert!(out.iter().all(|&l| l == 1));
    }
}
