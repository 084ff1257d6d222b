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
//! The priority queue is a radix heap on the values' bits whose buckets keep their order,
//! which gives exactly the order of ITK's map of FIFO queues; voxels that join the current
//! level (the common case inside basins) go to a plain FIFO and never touch it.
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

/// The label of the padding: never flooded.
const OUTSIDE: u16 = u16::MAX;
/// Voxels labelled between two cancellation checks.
const VOXELS_PER_CHECK: usize = 1 << 18;

/// `f32` mapped to `u32` so that the integer order is the numbers' order (NaN last, the
/// two zeros equal).
#[inline]
fn ordered(x: f32) -> u32 {
    // -0 and +0 are one level, as ITK compares them.
    let b = if x == 0.0 { 0 } else { x.to_bits() };
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// A monotone priority queue of voxel indices keyed by `u32` (a radix heap: Ahuja, Mehlhorn,
/// Orlin and Tarjan, "Faster algorithms for the shortest path problem", JACM 1990).
///
/// Keys pushed are never below the last level taken. Bucket `b` holds the voxels whose key
/// first differs from the last level at bit `b - 1` (bucket 0: equal to it); a voxel's bucket
/// only ever moves down, in order, so voxels of equal key come out in the order they were
/// pushed: exactly the order of ITK's map of FIFO queues, without storing a sequence number.
/// Keys are read from the relief when a bucket is split, so an entry is 4 bytes.
struct RadixQueue {
    buckets: Vec<Vec<u32>>,
    last: u32,
    spare: Vec<u32>,
}

impl RadixQueue {
    fn new() -> Self {
        RadixQueue {
            buckets: (0..33).map(|_| Vec::new()).collect(),
            last: 0,
            spare: Vec::new(),
        }
    }

    #[inline]
    fn bucket(&self, key: u32) -> usize {
        32 - (key ^ self.last).leading_zeros() as usize
    }

    /// Queues `idx` at `key` (`key >= ` the last level).
    #[inline]
    fn push(&mut self, key: u32, idx: u32) {
        let b = self.bucket(key);
        self.buckets[b].push(idx);
    }

    /// The lowest queued key (making its voxels bucket 0), or `None` when empty.
    fn next_level(&mut self, keys: &[u32]) -> Option<u32> {
        if !self.buckets[0].is_empty() {
            return Some(self.last);
        }
        let b = self.buckets.iter().position(|v| !v.is_empty())?;
        let items = std::mem::take(&mut self.buckets[b]);
        self.last = items
            .iter()
            .map(|&i| keys[i as usize])
            .min()
            .unwrap_or(self.last);
        for &i in &items {
            let target = self.bucket(keys[i as usize]);
            self.buckets[target].push(i);
        }
        let mut items = items;
        items.clear();
        self.buckets[b] = items;
        Some(self.last)
    }

    /// The voxels of the current level, in queue order (bucket 0 is left empty).
    fn take_level(&mut self) -> Vec<u32> {
        std::mem::replace(&mut self.buckets[0], std::mem::take(&mut self.spare))
    }

    /// Returns a level's vector for reuse.
    fn give_back(&mut self, mut v: Vec<u32>) {
        v.clear();
        self.spare = v;
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

    let mut queue = RadixQueue::new();
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
                    queue.push(keys[idx], idx as u32);
                }
            }
        }
    }
    // The voxels that joined the current level while it was flooded, first in first out.
    let mut fifo: Vec<u32> = Vec::new();
    let mut done = 0usize;
    while let Some(level) = queue.next_level(keys) {
        // The level's queued voxels first (in the order they were queued), then those that
        // join it while it is flooded; voxels above the level go back to the queue.
        let current = queue.take_level();
        let mut head = 0;
        let mut from_queue = current.iter();
        loop {
            let idx = match from_queue.next() {
                Some(&i) => i as usize,
                None => match fifo.get(head) {
                    Some(&i) => {
                        head += 1;
                        i as usize
                    }
                    None => break,
                },
            };
            let label = lab[idx];
            for &o in &offsets {
                let n = (idx as isize + o) as usize;
                if lab[n] == 0 {
                    lab[n] = label;
                    let key = keys[n];
                    if key <= level {
                        fifo.push(n as u32);
                    } else {
                        queue.push(key, n as u32);
                    }
                    done += 1;
                    if done.is_multiple_of(VOXELS_PER_CHECK) {
                        control.check()?;
                    }
                }
            }
        }
        fifo.clear();
        queue.give_back(current);
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

    /// ITK's algorithm written literally (a map of FIFO queues, bounds checked), as the
    /// reference for the radix queue.
    fn itk_literal(relief: &Array3<f32>, markers: &Array3<u16>) -> Array3<u16> {
        use std::collections::{BTreeMap, VecDeque};
        let (nk, nj, ni) = relief.dim();
        let mut out = markers.clone();
        let mut fah: BTreeMap<u32, VecDeque<[usize; 3]>> = BTreeMap::new();
        let neighbours = |[k, j, i]: [usize; 3]| {
            let mut v = Vec::new();
            for (dk, dj, di) in [
                (-1, 0, 0),
                (0, -1, 0),
                (0, 0, -1),
                (0, 0, 1),
                (0, 1, 0),
                (1, 0, 0),
            ] {
                let (a, b, c) = (k as i64 + dk, j as i64 + dj, i as i64 + di);
                if a >= 0
                    && b >= 0
                    && c >= 0
                    && (a as usize) < nk
                    && (b as usize) < nj
                    && (c as usize) < ni
                {
                    v.push([a as usize, b as usize, c as usize]);
                }
            }
            v
        };
        for ((k, j, i), &m) in markers.indexed_iter() {
            if m != 0 && neighbours([k, j, i]).iter().any(|&n| markers[n] == 0) {
                fah.entry(ordered(relief[[k, j, i]]))
                    .or_default()
                    .push_back([k, j, i]);
            }
        }
        while let Some((&level, _)) = fah.iter().next() {
            let mut queue = fah.remove(&level).unwrap();
            while let Some(p) = queue.pop_front() {
                for n in neighbours(p) {
                    if out[n] == 0 {
                        out[n] = out[p];
                        let key = ordered(relief[n]);
                        if key <= level {
                            queue.push_back(n);
                        } else {
                            fah.entry(key).or_default().push_back(n);
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn the_radix_queue_visits_in_itks_order_on_random_reliefs_with_ties() {
        let mut state = 12345u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        for case in 0..200 {
            let shape = (
                1 + (next() % 5) as usize,
                1 + (next() % 7) as usize,
                1 + (next() % 9) as usize,
            );
            let levels = 1 + next() % if case % 2 == 0 { 3 } else { 1000 };
            let relief = Array3::from_shape_simple_fn(shape, || (next() % levels) as f32 * 0.37);
            let labels = 1 + next() % 4;
            let markers = Array3::from_shape_simple_fn(shape, || {
                if next() % 6 == 0 {
                    (1 + next() % labels) as u16
                } else {
                    0
                }
            });
            let got =
                watershed_from_markers(relief.view(), markers.view(), &Control::none()).unwrap();
            assert_eq!(got, itk_literal(&relief, &markers), "case {case}");
        }
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
