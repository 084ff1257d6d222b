//! Fast GrowCut: every voxel takes the label of the seed it is "closest" to, the distance
//! being the cheapest path through the image where a step costs the intensity difference
//! plus a penalty per millimetre.
//!
//! Reference: L. Zhu, I. Kolesov, Y. Gao, R. Kikinis, A. Tannenbaum, *An effective
//! interactive medical image segmentation method using Fast GrowCut*, MICCAI IMIC
//! workshop 2014; Slicer's `vtkImageGrowCutSegment.cxx` (read, not copied), which
//! `SegmentEditorGrowFromSeedsEffect` ran up to Slicer 5.2 and whose algorithm
//! `itk::FastGrowCut` (Slicer ≥ 5.4) repeats. It is a multi-source Dijkstra:
//!
//! - **Seeds** (label ≠ 0) start at distance `1e-3` (`f32`), every other voxel at
//!   `f32::MAX` ("infinite") with label 0.
//! - **Locked** voxels (non-zero in the optional mask) are frozen: label 0, distance
//!   `1e-3`, never updated, never expanded, even when a seed lies on them.
//! - **Neighbourhood**: the 26 voxels of the 3x3x3 cube. A step from `p` to `q` costs
//!   `|I(p) − I(q)| + penalty · ‖(Δi·sx, Δj·sy, Δk·sz)‖` (spacing in mm).
//! - **Arithmetic as VTK's** (checked in the compiled library of the `slicer-core` wheel):
//!   `I(p)` is converted to `f32`; for every input type except `f64` the difference is taken
//!   in `f32` (`I(q)` converted to `f32` too), for `f64` in `f64`; then
//!   `(|ΔI| + d(p)) + penalty_step` is summed in `f64` and rounded once to `f32`. So on
//!   `f32` images (and on `i16` ones) every distance is bit-for-bit VTK's.
//! - **Ties**: a voxel changes label only on a *strictly* smaller distance. Which of two
//!   equal-cost paths wins depends on which voxel is expanded first; VTK expands them in
//!   the order of its Fibonacci heap, segkit in the order of a radix heap (equal keys
//!   roughly in memory order), so on integer images, where equal costs are common, a few
//!   voxels on the border between two labels could differ (none did in the parity tests).
//! - **Border**: voxels on the outer faces of the image are reached (they get a distance
//!   and a label) but never expanded, as in VTK, where their neighbour count is 0. A seed
//!   on the outer face therefore labels only itself.
//! - **Size**: VTK refuses images with fewer than 3 voxels along an axis; so does this
//!   kernel ([`GrowCutError`]).
//!
//! Distances are `f32` and non-negative, so their bit patterns, read as `u32`, sort as the
//! numbers do; and Dijkstra never inserts a key below the last one extracted. A *radix
//! heap* on those `u32` keys (Ahuja, Mehlhorn, Orlin and Tarjan, 1990) is then a monotone
//! priority queue with O(1) insertion and amortised O(log C) extraction, much lighter than
//! a Fibonacci heap holding every voxel. Decrease-key is a new insertion; stale entries
//! are dropped when met.
//!
//! The work is memory-bound (every expansion reads 26 neighbours spread over 3 slices), so
//! each voxel's distance, label and value share one 8-byte cell for 8 and 16-bit images
//! (12 bytes for `f32` values, 16 for `f64`); voxels of equal distance are expanded in
//! (coarse) memory order, the cells of the voxels expanded next are prefetched (first the
//! cell, a few entries later its neighbourhood unless the entry is stale), and the cells ask
//! for transparent huge pages. Memory: the cells, one bit per voxel for the locked mask,
//! and the heap (8 bytes per pending entry). Dijkstra itself is sequential; filling the
//! cells, finding the seeds (pushed in voxel order all the same) and reading the labels
//! out run slice by slice in parallel: for an incremental update they are most of the
//! time.
//!
//! **Incremental update** ([`GrowCut::update`] on a state that has run): distances and
//! labels are kept; the seed voxels that are new (distance above `1e-3`) or whose label
//! changed are set back to `1e-3` with their label and Dijkstra continues from them alone.
//! Adding seeds therefore gives the result of a fresh run (apart from ties); *removed*
//! seeds are not propagated: their voxels and the region they grew keep their labels until
//! a reset (as in Slicer, whose help advises Cancel and Initialize). A change of penalty,
//! spacing, shape or locked voxels resets the state.
//!
//! # Example
//! ```
//! use ndarray::Array3;
//! use segkit::effects::Control;
//! use segkit::kernels::growcut::GrowCut;
//! // A 3x3x7 box, intensity 0 for i < 4 and 10 from i = 4 on; a seed of label 1 at i = 1
//! // and one of label 2 at i = 5 on the middle row (the only row that is not on the box's
//! // faces: face voxels are reached but never expanded, so seeds there would not grow).
//! let image = Array3::from_shape_fn((3, 3, 7), |(_, _, i)| if i < 4 { 0i16 } else { 10 });
//! let mut seeds = Array3::<u16>::zeros((3, 3, 7));
//! seeds[[1, 1, 1]] = 1;
//! seeds[[1, 1, 5]] = 2;
//! let labels = GrowCut::new(0.0)
//!     .update(image.view(), seeds.view(), None, [1.0; 3], &Control::none())
//!     .unwrap();
//! let row: Vec<u16> = (0..7).map(|i| labels[[1, 1, i]]).collect();
//! assert_eq!(row, [1, 1, 1, 1, 2, 2, 2]);
//! ```

use super::prefer_huge_pages;
use crate::effects::{standard_slice, Control, EffectError};
use ndarray::{Array3, ArrayView3, Axis};
use rayon::prelude::*;

/// Distance of a seed voxel (VTK's `DIST_EPSILON`, a `double` literal stored as `float`).
pub const SEED_DISTANCE: f32 = 1e-3;
/// Distance of a voxel no seed has reached yet (VTK's `DIST_INF`).
pub const UNREACHED: f32 = f32::MAX;
/// Voxels expanded between two cancellation checks (well under 100 ms).
const POPS_PER_CHECK: usize = 1 << 16;
/// The 26 neighbours.
const NEIGHBOURS: usize = 26;
/// How far ahead of the voxel being expanded the heap's next entries are fetched: the cell
/// of the entry [`FETCH_CELL_AHEAD`] places ahead, then, once that cell has arrived, the
/// neighbourhood of the entry [`FETCH_NEIGHBOURS_AHEAD`] places ahead if the entry is not
/// stale (most entries are: a voxel is pushed again each time its distance drops).
const FETCH_CELL_AHEAD: usize = 32;
/// See [`FETCH_CELL_AHEAD`].
const FETCH_NEIGHBOURS_AHEAD: usize = 8;
/// Expand voxels of equal distance in memory order (see [`RadixHeap::pop`]).
const SORT_EQUAL_KEYS: bool = true;

/// Why a computation cannot run.
pub type GrowCutError = EffectError;

/// A voxel type as `vtkImageGrowCutSegment` reads it.
pub trait Intensity: Copy + Send + Sync {
    /// The value as the kernel keeps it: `i16` for 8 and 16-bit signed integers, `f64` for
    /// `f64`, `f32` for the others (VTK subtracts in `float` for every type but `double`,
    /// so converting to `f32` first changes nothing).
    type Stored: Stored;
    /// The value converted to [`Intensity::Stored`].
    fn stored(self) -> Self::Stored;
}

/// How the kernel keeps voxel values: `i16`, `f32` or `f64`.
pub trait Stored: Copy + Default + Send + Sync + 'static {
    /// The centre voxel's value, which VTK stores as `float`.
    fn centre(self) -> f32;
    /// `|centre − neighbour|` computed as VTK computes it for this type.
    fn abs_diff(centre: f32, neighbour: Self) -> f64;
    /// The state's cells for this type (made empty when they held the other type).
    fn cells(cells: &mut Cells) -> &mut Vec<Cell<Self>>;
}

macro_rules! intensity_in_f32 {
    ($($t:ty),*) => {$(
        impl Intensity for $t {
            type Stored = f32;
            #[inline(always)]
            fn stored(self) -> f32 {
                self as f32
            }
        }
    )*};
}
intensity_in_f32!(u16, u32, i32, u64, i64, f32);

macro_rules! intensity_in_i16 {
    ($($t:ty),*) => {$(
        impl Intensity for $t {
            type Stored = i16;
            #[inline(always)]
            fn stored(self) -> i16 {
                self as i16
            }
        }
    )*};
}
// Exact in i16, and half the memory of f32: the CT case.
intensity_in_i16!(u8, i8, i16);

impl Intensity for f64 {
    type Stored = f64;
    #[inline(always)]
    fn stored(self) -> f64 {
        self
    }
}

macro_rules! cells_of {
    ($variant:ident) => {
        fn cells(cells: &mut Cells) -> &mut Vec<Cell<Self>> {
            if !matches!(cells, Cells::$variant(_)) {
                *cells = Cells::$variant(Vec::new());
            }
            match cells {
                Cells::$variant(v) => v,
                _ => unreachable!("replaced just above"),
            }
        }
    };
}

impl Stored for i16 {
    #[inline(always)]
    fn centre(self) -> f32 {
        self as f32
    }
    #[inline(always)]
    fn abs_diff(centre: f32, neighbour: i16) -> f64 {
        (centre - neighbour as f32).abs() as f64
    }
    cells_of!(Short);
}

impl Stored for f32 {
    #[inline(always)]
    fn centre(self) -> f32 {
        self
    }
    #[inline(always)]
    fn abs_diff(centre: f32, neighbour: f32) -> f64 {
        // float − T: the usual arithmetic conversions make it a float subtraction.
        (centre - neighbour).abs() as f64
    }
    cells_of!(Single);
}

impl Stored for f64 {
    #[inline(always)]
    fn centre(self) -> f32 {
        self as f32
    }
    #[inline(always)]
    fn abs_diff(centre: f32, neighbour: f64) -> f64 {
        // float − double is a double subtraction.
        (centre as f64 - neighbour).abs()
    }
    cells_of!(Double);
}

/// A voxel's distance and label beside its value: Dijkstra reads them together for every
/// neighbour, and one cache line then serves all three (8 bytes a voxel for `i16` values).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct Cell<V> {
    distance: f32,
    label: u16,
    value: V,
}

/// The cells of a state, for `i16`, `f32` or `f64` values.
#[derive(Debug)]
pub enum Cells {
    Short(Vec<Cell<i16>>),
    Single(Vec<Cell<f32>>),
    Double(Vec<Cell<f64>>),
}

impl Cells {
    fn bytes(&self) -> usize {
        match self {
            Cells::Short(v) => std::mem::size_of::<Cell<i16>>() * v.capacity(),
            Cells::Single(v) => std::mem::size_of::<Cell<f32>>() * v.capacity(),
            Cells::Double(v) => std::mem::size_of::<Cell<f64>>() * v.capacity(),
        }
    }
}

/// A set of voxel indices as bits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(len: usize) -> Self {
        Bits(vec![0; len.div_ceil(64)])
    }
    /// The voxels that are not 0, 64 voxels per word, in parallel.
    fn of_non_zero(voxels: &[u8]) -> Self {
        let mut bits = Bits::new(voxels.len());
        bits.0
            .par_iter_mut()
            .zip(voxels.par_chunks(64))
            .for_each(|(word, voxels)| {
                *word = voxels
                    .iter()
                    .enumerate()
                    .fold(0, |w, (b, &v)| w | (u64::from(v != 0) << b));
            });
        bits
    }
    #[inline(always)]
    fn get(&self, n: usize) -> bool {
        self.0[n >> 6] & (1 << (n & 63)) != 0
    }
    fn bytes(&self) -> usize {
        8 * self.0.capacity()
    }
}

/// A monotone priority queue of `(key, voxel)` on `u32` keys: every key pushed must be at
/// least the last key popped. Bucket `b` holds the keys whose highest bit differing from
/// the last popped key is bit `b − 1` (bucket 0: equal to it).
#[derive(Debug)]
struct RadixHeap {
    last: u32,
    buckets: [Vec<(u32, u32)>; 33],
    /// Room for sorting bucket 0.
    scratch: Vec<(u32, u32)>,
}

impl Default for RadixHeap {
    fn default() -> Self {
        RadixHeap {
            last: 0,
            buckets: std::array::from_fn(|_| Vec::new()),
            scratch: Vec::new(),
        }
    }
}

/// Orders heap entries by voxel, largest first: exactly for short lists (the standard
/// library's sort), by the top 11 bits of the voxel index for long ones (one counting-sort
/// pass, linear time: these lists reach millions of entries, and blocks of 1/2048 of the
/// image already give the memory locality sought).
fn sort_by_voxel_descending(v: &mut Vec<(u32, u32)>, scratch: &mut Vec<(u32, u32)>) {
    const DIGIT_BITS: u32 = 11;
    const DIGITS: usize = 1 << DIGIT_BITS;
    const SHORT: usize = 1024;
    const COARSE_BITS: u32 = 11;
    if v.len() < SHORT {
        v.sort_unstable_by_key(|e| std::cmp::Reverse(e.1));
        return;
    }
    let top = v.iter().map(|e| e.1).max().unwrap_or(0);
    let bits = u32::BITS - top.leading_zeros();
    scratch.clear();
    scratch.resize(v.len(), (0, 0));
    let mut shift = bits.saturating_sub(COARSE_BITS);
    while shift < bits {
        let digit = |e: &(u32, u32)| (((top - e.1) >> shift) as usize) & (DIGITS - 1);
        let mut starts = [0usize; DIGITS];
        for e in v.iter() {
            starts[digit(e)] += 1;
        }
        let mut sum = 0;
        for c in starts.iter_mut() {
            let n = *c;
            *c = sum;
            sum += n;
        }
        for e in v.iter() {
            let d = digit(e);
            scratch[starts[d]] = *e;
            starts[d] += 1;
        }
        std::mem::swap(v, scratch);
        shift += DIGIT_BITS;
    }
}

impl RadixHeap {
    #[inline(always)]
    fn bucket(key: u32, last: u32) -> usize {
        (32 - (key ^ last).leading_zeros()) as usize
    }

    #[inline(always)]
    fn push(&mut self, key: u32, voxel: u32) {
        debug_assert!(key >= self.last, "a radix heap is monotone");
        self.buckets[Self::bucket(key, self.last)].push((key, voxel));
    }

    /// The entry with the smallest key. When a bucket is spread, the entries that land in
    /// bucket 0 (all with the same key) are sorted by voxel so that they are expanded in
    /// memory order, which keeps the next voxels' neighbours in cache; entries pushed later
    /// with that same key come out first.
    #[inline]
    fn pop(&mut self) -> Option<(u32, u32)> {
        if self.buckets[0].is_empty() {
            let b = (1..33).find(|&b| !self.buckets[b].is_empty())?;
            let mut entries = std::mem::take(&mut self.buckets[b]);
            let last = entries.iter().map(|e| e.0).min()?;
            self.last = last;
            for &(key, voxel) in &entries {
                self.buckets[Self::bucket(key, last)].push((key, voxel));
            }
            // Give the emptied bucket its storage back, to reuse it.
            entries.clear();
            self.buckets[b] = entries;
            if SORT_EQUAL_KEYS {
                sort_by_voxel_descending(&mut self.buckets[0], &mut self.scratch);
            }
        }
        self.buckets[0].pop()
    }

    /// The entry [`RadixHeap::pop`] will answer after `ahead` others, if it is already in
    /// bucket 0 and no entry with the same key is pushed meanwhile (a guess, for prefetching).
    #[inline(always)]
    fn peek(&self, ahead: usize) -> Option<(u32, u32)> {
        let b = &self.buckets[0];
        b.get(b.len().wrapping_sub(1 + ahead)).copied()
    }

    fn clear(&mut self) {
        self.last = 0;
        for b in &mut self.buckets {
            b.clear();
        }
    }

    fn bytes(&self) -> usize {
        self.buckets.iter().map(|b| 8 * b.capacity()).sum::<usize>() + 8 * self.scratch.capacity()
    }
}

/// Fast GrowCut's state: distances and labels of every voxel, kept between updates.
#[derive(Debug)]
pub struct GrowCut {
    penalty: f64,
    shape: (usize, usize, usize),
    spacing_ijk: [f64; 3],
    /// Distance, label and value of each voxel (C order of the `[k][j][i]` image).
    cells: Cells,
    /// The locked voxels the state was computed with.
    locked: Bits,
    has_locked: bool,
    /// True once a computation finished: later updates are incremental.
    done: bool,
    heap: RadixHeap,
}

impl GrowCut {
    /// An empty state for `penalty` (Slicer's `SeedLocalityFactor`: added cost per mm).
    pub fn new(penalty: f64) -> Self {
        GrowCut {
            penalty,
            shape: (0, 0, 0),
            spacing_ijk: [0.0; 3],
            cells: Cells::Single(Vec::new()),
            locked: Bits::default(),
            has_locked: false,
            done: false,
            heap: RadixHeap::default(),
        }
    }

    /// The penalty per mm this state uses.
    pub fn penalty(&self) -> f64 {
        self.penalty
    }

    /// Bytes held (distances, labels and values, locked voxels, the heap's storage).
    pub fn bytes(&self) -> usize {
        self.cells.bytes() + self.locked.bytes() + self.heap.bytes()
    }

    /// Forgets everything: the next update computes from scratch.
    pub fn reset(&mut self) {
        self.done = false;
        self.heap.clear();
    }

    /// Labels every voxel of `intensity` (`[k][j][i]`) from `seeds` (0 = none), with the
    /// voxels where `locked` is non-zero frozen at label 0: see the module documentation.
    /// The first call (or the first after a change of shape, spacing, voxel type or locked
    /// voxels) computes from scratch; later ones continue from the seeds that are new or
    /// changed. The intensities are read again on every call.
    ///
    /// # Errors
    /// Arrays of different shapes, an image with fewer than 3 voxels along an axis or more
    /// than `u32::MAX` voxels, a negative or non-finite penalty or spacing, a cancelled
    /// request (the state is then reset).
    pub fn update<T: Intensity>(
        &mut self,
        intensity: ArrayView3<T>,
        seeds: ArrayView3<u16>,
        locked: Option<ArrayView3<u8>>,
        spacing_ijk: [f64; 3],
        control: &Control,
    ) -> Result<Array3<u16>, GrowCutError> {
        let shape = intensity.dim();
        self.check(
            shape,
            seeds.dim(),
            locked.as_ref().map(|l| l.dim()),
            spacing_ijk,
        )?;
        let seeds = seeds.as_standard_layout();
        let seeds = standard_slice(&seeds)?;
        let locked = locked.as_ref().map(|l| l.as_standard_layout());
        let locked_bits = match &locked {
            Some(l) => Some(Bits::of_non_zero(standard_slice(l)?)),
            None => None,
        };
        let n = shape.0 * shape.1 * shape.2;
        let plane = shape.1 * shape.2;
        let same_type = T::Stored::cells(&mut self.cells).len() == n;
        let same_lattice =
            self.done && same_type && self.shape == shape && self.spacing_ijk == spacing_ijk;
        let same_locked = match &locked_bits {
            None => !self.has_locked,
            Some(b) => self.has_locked && *b == self.locked,
        };
        self.heap.clear();
        let fresh = !(same_lattice && same_locked);
        if fresh {
            self.shape = shape;
            self.spacing_ijk = spacing_ijk;
            self.has_locked = locked_bits.is_some();
            self.locked = locked_bits.unwrap_or_default();
        }
        let locked = self.has_locked.then_some(&self.locked);
        let cells = T::Stored::cells(&mut self.cells);
        if fresh {
            fresh_cells(cells, intensity, plane);
        } else {
            cells
                .par_chunks_mut(plane)
                .zip(intensity.axis_iter(Axis(0)))
                .for_each(|(cells, values)| {
                    for (c, v) in cells.iter_mut().zip(values.iter()) {
                        c.value = v.stored();
                    }
                });
        }
        // The seeds' cells are set slice by slice in parallel; they enter the heap in
        // voxel order, as a sequential scan would push them.
        let starts: Vec<Vec<u32>> = cells
            .par_chunks_mut(plane)
            .zip(seeds.par_chunks(plane))
            .enumerate()
            .map(|(k, (cells, seeds))| {
                let first = k * plane;
                if fresh {
                    seed_fresh(cells, seeds, first, locked)
                } else {
                    seed_changes(cells, seeds, first, locked)
                }
            })
            .collect();
        for idx in starts.into_iter().flatten() {
            self.heap.push(SEED_DISTANCE.to_bits(), idx);
        }
        self.done = false;
        let steps = neighbour_steps(shape, spacing_ijk, self.penalty);
        if let Err(e) = propagate(cells, &mut self.heap, shape, &steps, control) {
            // A cancelled computation leaves a partial state: start over next time.
            self.heap.clear();
            return Err(e);
        }
        self.done = true;
        let labels = cells.par_iter().map(|c| c.label).collect();
        Array3::from_shape_vec(shape, labels).map_err(|e| EffectError::Internal(e.to_string()))
    }

    fn check(
        &self,
        shape: (usize, usize, usize),
        seeds: (usize, usize, usize),
        locked: Option<(usize, usize, usize)>,
        spacing_ijk: [f64; 3],
    ) -> Result<(), GrowCutError> {
        if seeds != shape {
            return Err(EffectError::Input(format!(
                "the seeds have shape {seeds:?} (k, j, i), the image {shape:?}"
            )));
        }
        if let Some(l) = locked {
            if l != shape {
                return Err(EffectError::Input(format!(
                    "the locked voxels have shape {l:?} (k, j, i), the image {shape:?}"
                )));
            }
        }
        if shape.0 < 3 || shape.1 < 3 || shape.2 < 3 {
            return Err(EffectError::Input(format!(
                "Grow from seeds needs at least 3 voxels along each axis; the working box \
                 has {shape:?} (k, j, i)"
            )));
        }
        if shape.0 * shape.1 * shape.2 >= u32::MAX as usize {
            return Err(EffectError::Input(format!(
                "Grow from seeds works on fewer than {} voxels; the working box has {shape:?} \
                 (k, j, i)",
                u32::MAX
            )));
        }
        if !(self.penalty.is_finite() && self.penalty >= 0.0) {
            return Err(EffectError::Parameter {
                name: "SeedLocalityFactor".into(),
                reason: format!("{} is not a finite number >= 0", self.penalty),
            });
        }
        if spacing_ijk.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(EffectError::Input(format!(
                "the voxel spacing {spacing_ijk:?} is not positive and finite"
            )));
        }
        Ok(())
    }
}

/// Fills `cells` with one unreached, unlabelled cell per voxel of `intensity`, slice by
/// slice in parallel (the threads share the first touch of the pages, which the cells ask
/// to be huge).
fn fresh_cells<T: Intensity>(
    cells: &mut Vec<Cell<T::Stored>>,
    intensity: ArrayView3<T>,
    plane: usize,
) {
    let n = intensity.len();
    if cells.capacity() < n {
        *cells = Vec::with_capacity(n);
        prefer_huge_pages(cells);
    }
    cells.clear();
    cells.spare_capacity_mut()[..n]
        .par_chunks_mut(plane)
        .zip(intensity.axis_iter(Axis(0)))
        .for_each(|(cells, values)| {
            for (c, v) in cells.iter_mut().zip(values.iter()) {
                c.write(Cell {
                    distance: UNREACHED,
                    label: 0,
                    value: v.stored(),
                });
            }
        });
    // SAFETY: the `n / plane` chunks of `plane` cells each were zipped with the as many
    // slices of `plane` voxels of `intensity`, so every one of the `n` cells was written.
    unsafe { cells.set_len(n) };
}

/// A fresh start on the cells of one slice (voxel `first` onwards): seeds at
/// [`SEED_DISTANCE`], locked voxels frozen, the rest unreached (the cells' distances are
/// [`UNREACHED`] and the labels 0 on entry). Answers the voxels to start from.
fn seed_fresh<V: Stored>(
    cells: &mut [Cell<V>],
    seeds: &[u16],
    first: usize,
    locked: Option<&Bits>,
) -> Vec<u32> {
    let mut starts = Vec::new();
    for (n, &s) in seeds.iter().enumerate() {
        let idx = first + n;
        if locked.is_some_and(|l| l.get(idx)) {
            cells[n].distance = SEED_DISTANCE;
        } else if s != 0 {
            cells[n].distance = SEED_DISTANCE;
            cells[n].label = s;
            starts.push(idx as u32);
        }
    }
    starts
}

/// An incremental start on the cells of one slice (voxel `first` onwards): only the seed
/// voxels that are new or changed label. Answers the voxels to start from.
fn seed_changes<V: Stored>(
    cells: &mut [Cell<V>],
    seeds: &[u16],
    first: usize,
    locked: Option<&Bits>,
) -> Vec<u32> {
    let mut starts = Vec::new();
    for (n, &s) in seeds.iter().enumerate() {
        let idx = first + n;
        if s == 0 || locked.is_some_and(|l| l.get(idx)) {
            continue;
        }
        let cell = &mut cells[n];
        if cell.label != s || cell.distance > SEED_DISTANCE {
            cell.distance = SEED_DISTANCE;
            cell.label = s;
            starts.push(idx as u32);
        }
    }
    starts
}

/// The 26 neighbours' index offsets and mm penalties, in VTK's order (i outermost, then j,
/// then k).
fn neighbour_steps(
    shape: (usize, usize, usize),
    spacing_ijk: [f64; 3],
    penalty: f64,
) -> [(isize, f64); NEIGHBOURS] {
    let (_, nj, ni) = shape;
    let [si, sj, sk] = spacing_ijk;
    let mut steps = [(0isize, 0f64); NEIGHBOURS];
    let mut n = 0;
    for di in -1isize..=1 {
        for dj in -1isize..=1 {
            for dk in -1isize..=1 {
                if di == 0 && dj == 0 && dk == 0 {
                    continue;
                }
                let (x, y, z) = (si * di as f64, sj * dj as f64, sk * dk as f64);
                steps[n] = (
                    di + ni as isize * (dj + nj as isize * dk),
                    penalty * (x * x + y * y + z * z).sqrt(),
                );
                n += 1;
            }
        }
    }
    steps
}

/// Hints the processor to load the 3 x 3 rows of 3 cells around `p`.
#[inline(always)]
fn prefetch_neighbourhood<V>(cells: &[Cell<V>], p: usize, rows: &[isize; 9]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let base = cells.as_ptr();
        for &row in rows {
            let first = base.wrapping_offset(p as isize + row);
            // SAFETY: a prefetch never faults and never changes memory, whatever the
            // address; the pointers are only computed (wrapping), never dereferenced.
            unsafe {
                _mm_prefetch(first.cast::<i8>(), _MM_HINT_T0);
                _mm_prefetch(first.wrapping_add(2).cast::<i8>(), _MM_HINT_T0);
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (cells, p, rows);
}

/// Hints the processor to load the cell of voxel `p`.
#[inline(always)]
fn prefetch_cell<V>(cells: &[Cell<V>], p: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: see prefetch_neighbourhood.
        unsafe {
            _mm_prefetch(cells.as_ptr().wrapping_add(p).cast::<i8>(), _MM_HINT_T0);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (cells, p);
}

/// Division of 32-bit numbers by a fixed divisor with one multiplication (D. Lemire, O.
/// Kaser, N. Kurz, "Faster remainder by direct computation", Software: Practice and
/// Experience 49 (2019), 953–970: `floor(n / d) = (M · n) >> 64` with `M = ⌊(2⁶⁴ − 1) / d⌋ + 1`,
/// exact for every 32-bit `n` and every `d` from 2 to 2³² − 1). Voxel indices here are
/// below 2³² and rows at least 3 voxels long (both checked by `GrowCut::update`).
#[derive(Clone, Copy)]
struct FastDiv {
    m: u64,
}

impl FastDiv {
    fn new(d: usize) -> Self {
        debug_assert!(d > 1 && d <= u32::MAX as usize);
        FastDiv {
            m: (u64::MAX / d as u64).wrapping_add(1),
        }
    }

    #[inline]
    fn div(self, n: usize) -> usize {
        debug_assert!(n <= u32::MAX as usize);
        ((u128::from(self.m) * n as u128) >> 64) as usize
    }
}

/// Dijkstra from the voxels in the heap.
fn propagate<V: Stored>(
    cells: &mut [Cell<V>],
    heap: &mut RadixHeap,
    shape: (usize, usize, usize),
    steps: &[(isize, f64); NEIGHBOURS],
    control: &Control,
) -> Result<(), EffectError> {
    let (nk, nj, ni) = shape;
    let total = (nk * nj * ni).max(1) as f64;
    let plane = nj * ni;
    let mut expanded = 0usize;
    // Two divisions per expanded voxel cost more than the rest of its bookkeeping.
    let (by_plane, by_row) = (FastDiv::new(plane), FastDiv::new(ni));
    let rows: [isize; 9] = std::array::from_fn(|n| {
        let (dk, dj) = (n as isize / 3 - 1, n as isize % 3 - 1);
        dk * plane as isize + dj * ni as isize - 1
    });
    while let Some((key, voxel)) = heap.pop() {
        let p = voxel as usize;
        // The memory of the voxels expanded next is fetched while this one is expanded.
        if let Some((_, far)) = heap.peek(FETCH_CELL_AHEAD) {
            prefetch_cell(cells, far as usize);
        }
        if let Some((later_key, later)) = heap.peek(FETCH_NEIGHBOURS_AHEAD) {
            if cells[later as usize].distance.to_bits() == later_key {
                prefetch_neighbourhood(cells, later as usize, &rows);
            }
        }
        let here = cells[p];
        if here.distance.to_bits() != key {
            continue; // a shorter path already expanded this voxel
        }
        expanded += 1;
        if expanded.is_multiple_of(POPS_PER_CHECK) {
            control.check()?;
            control.progress(expanded as f64 / total, "Growing from seeds");
        }
        // Faces of the image: reached, never expanded.
        let k = by_plane.div(p);
        let rest = p - k * plane;
        let j = by_row.div(rest);
        let i = rest - j * ni;
        if k == 0 || j == 0 || i == 0 || k + 1 == nk || j + 1 == nj || i + 1 == ni {
            continue;
        }
        let d = here.distance as f64;
        let label = here.label;
        let centre = here.value.centre();
        for &(offset, step) in steps {
            let q = (p as isize + offset) as usize;
            let there = &mut cells[q];
            let candidate = ((V::abs_diff(centre, there.value) + d) + step) as f32;
            if there.distance > candidate {
                there.distance = candidate;
                there.label = label;
                heap.push(candidate.to_bits(), q as u32);
            }
        }
    }
    control.progress(1.0, "Growing from seeds");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BinaryHeap;

    #[test]
    fn fast_division_is_exact_for_32_bit_numbers() {
        let divisors = [
            2usize,
            3,
            7,
            303,
            366,
            110_898,
            512 * 512,
            65_537,
            u32::MAX as usize,
        ];
        let mut n: u64 = 1;
        let mut numbers = vec![0usize, 1, u32::MAX as usize, u32::MAX as usize - 1];
        for _ in 0..2000 {
            n = n
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            numbers.push((n >> 32) as usize);
        }
        for &d in &divisors {
            let f = FastDiv::new(d);
            for &x in numbers
                .iter()
                .chain([d - 1, d, d + 1, 2 * d - 1, 2 * d].iter())
            {
                if x <= u32::MAX as usize {
                    assert_eq!(f.div(x), x / d, "{x} / {d}");
                }
            }
        }
    }

    fn run<T: Intensity>(
        image: &Array3<T>,
        seeds: &Array3<u16>,
        locked: Option<&Array3<u8>>,
        penalty: f64,
        spacing: [f64; 3],
    ) -> Array3<u16> {
        GrowCut::new(penalty)
            .update(
                image.view(),
                seeds.view(),
                locked.map(|l| l.view()),
                spacing,
                &Control::none(),
            )
            .unwrap()
    }

    fn middle_row(labels: &Array3<u16>) -> Vec<u16> {
        let (_, _, ni) = labels.dim();
        (0..ni).map(|i| labels[[1, 1, i]]).collect()
    }

    /// A reference Dijkstra with a binary heap, VTK's arithmetic and neighbour order,
    /// for images without ties.
    fn reference(
        image: &Array3<f32>,
        seeds: &Array3<u16>,
        penalty: f64,
        spacing: [f64; 3],
    ) -> (Array3<u16>, Array3<f32>) {
        #[derive(PartialEq)]
        struct E(f32, [usize; 3]);
        impl Eq for E {}
        impl PartialOrd for E {
            fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for E {
            fn cmp(&self, o: &Self) -> std::cmp::Ordering {
                o.0.total_cmp(&self.0)
            }
        }
        let (nk, nj, ni) = image.dim();
        let mut dist = Array3::from_elem(image.dim(), f32::MAX);
        let mut lab = seeds.clone();
        let mut heap = BinaryHeap::new();
        for ((k, j, i), &s) in seeds.indexed_iter() {
            if s != 0 {
                dist[[k, j, i]] = 1e-3;
                heap.push(E(1e-3, [k, j, i]));
            }
        }
        while let Some(E(d, [k, j, i])) = heap.pop() {
            if d != dist[[k, j, i]] {
                continue;
            }
            if k == 0 || j == 0 || i == 0 || k == nk - 1 || j == nj - 1 || i == ni - 1 {
                continue;
            }
            for di in -1isize..=1 {
                for dj in -1isize..=1 {
                    for dk in -1isize..=1 {
                        if (di, dj, dk) == (0, 0, 0) {
                            continue;
                        }
                        let q = [
                            (k as isize + dk) as usize,
                            (j as isize + dj) as usize,
                            (i as isize + di) as usize,
                        ];
                        let step = penalty
                            * ((spacing[0] * di as f64).powi(2)
                                + (spacing[1] * dj as f64).powi(2)
                                + (spacing[2] * dk as f64).powi(2))
                            .sqrt();
                        let diff = (image[[k, j, i]] - image[q]).abs() as f64;
                        let nd = ((diff + d as f64) + step) as f32;
                        if dist[q] > nd {
                            dist[q] = nd;
                            lab[q] = lab[[k, j, i]];
                            heap.push(E(nd, q));
                        }
                    }
                }
            }
        }
        (lab, dist)
    }

    /// A pseudo-random float image (no ties in practice).
    fn noise(shape: (usize, usize, usize), seed: u64) -> Array3<f32> {
        let mut s = seed;
        Array3::from_shape_simple_fn(shape, || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) * 100.0
        })
    }

    #[test]
    fn two_seeds_on_a_ramp_split_at_the_step() {
        // Intensity 0 0 0 0 50 50 50 50 along i: the cheap paths stay on each side.
        let image = Array3::from_shape_fn((3, 3, 8), |(_, _, i)| if i < 4 { 0i16 } else { 50 });
        let mut seeds = Array3::<u16>::zeros((3, 3, 8));
        seeds[[1, 1, 1]] = 1;
        seeds[[1, 1, 6]] = 2;
        let labels = run(&image, &seeds, None, 0.0, [1.0; 3]);
        assert_eq!(middle_row(&labels), [1, 1, 1, 1, 2, 2, 2, 2]);
        // Every voxel is reached through an interior voxel: the whole image is labelled.
        assert!(labels.iter().all(|&l| l != 0));
        assert_eq!(
            labels
                .slice(ndarray::s![.., .., ..4])
                .iter()
                .filter(|&&l| l == 1)
                .count(),
            36
        );
    }

    #[test]
    fn a_smooth_ramp_with_a_penalty_splits_halfway() {
        // A linear ramp: the intensity term is the same from both sides, the mm penalty
        // makes the nearer seed win.
        let image = Array3::from_shape_fn((3, 3, 9), |(_, _, i)| i as f32 * 0.5);
        let mut seeds = Array3::<u16>::zeros((3, 3, 9));
        seeds[[1, 1, 1]] = 1;
        seeds[[1, 1, 7]] = 2;
        let labels = run(&image, &seeds, None, 1.0, [1.0; 3]);
        // i = 4 is at the same distance from both seeds: 1.5 + 3 from either side; the
        // first to reach it keeps it (strictly smaller to change).
        let row = middle_row(&labels);
        assert_eq!(&row[..4], &[1, 1, 1, 1]);
        assert_eq!(&row[5..], &[2, 2, 2, 2]);
    }

    #[test]
    fn a_locked_wall_stops_the_growth_and_reads_zero() {
        // A wall of locked voxels at i = 3 over the whole j-k section: label 1 cannot
        // pass, so the right side is label 2 although its intensity matches label 1's.
        let image = Array3::<f32>::zeros((4, 4, 7));
        let mut seeds = Array3::<u16>::zeros((4, 4, 7));
        seeds[[1, 1, 1]] = 1;
        seeds[[2, 2, 5]] = 2;
        seeds[[2, 2, 3]] = 1; // a seed on the wall is frozen too
        let mut locked = Array3::<u8>::zeros((4, 4, 7));
        locked.slice_mut(ndarray::s![.., .., 3]).fill(1);
        let labels = run(&image, &seeds, Some(&locked), 0.0, [1.0; 3]);
        for ((_, _, i), &l) in labels.indexed_iter() {
            let want = match i {
                0..=2 => 1,
                3 => 0,
                _ => 2,
            };
            assert_eq!(l, want, "at i = {i}");
        }
    }

    #[test]
    fn voxels_cut_off_by_locked_voxels_stay_unlabelled() {
        let image = Array3::<f32>::zeros((3, 3, 6));
        let mut seeds = Array3::<u16>::zeros((3, 3, 6));
        seeds[[1, 1, 1]] = 1;
        let mut locked = Array3::<u8>::zeros((3, 3, 6));
        locked.slice_mut(ndarray::s![.., .., 3]).fill(1);
        let labels = run(&image, &seeds, Some(&locked), 0.0, [1.0; 3]);
        assert_eq!(middle_row(&labels), [1, 1, 1, 0, 0, 0]);
    }

    #[test]
    fn border_voxels_are_reached_but_do_not_spread() {
        // A seed on the outer face labels only itself; its neighbours are reached from
        // the other seed.
        let image = Array3::<f32>::zeros((3, 3, 5));
        let mut seeds = Array3::<u16>::zeros((3, 3, 5));
        seeds[[1, 1, 0]] = 1; // on the face i = 0
        seeds[[1, 1, 3]] = 2;
        let labels = run(&image, &seeds, None, 0.0, [1.0; 3]);
        assert_eq!(labels.iter().filter(|&&l| l == 1).count(), 1);
        assert_eq!(labels.iter().filter(|&&l| l == 2).count(), 44);
    }

    #[test]
    fn ties_keep_the_first_label_that_arrived() {
        // Constant image: every voxel is at distance 1e-3 from both seeds' neighbours;
        // the seeds' own voxels keep their labels and each voxel's label is one of them.
        let image = Array3::<i16>::zeros((3, 3, 5));
        let mut seeds = Array3::<u16>::zeros((3, 3, 5));
        seeds[[1, 1, 1]] = 1;
        seeds[[1, 1, 3]] = 2;
        let labels = run(&image, &seeds, None, 0.0, [1.0; 3]);
        assert_eq!((labels[[1, 1, 1]], labels[[1, 1, 3]]), (1, 2));
        assert!(labels.iter().all(|&l| l == 1 || l == 2));
        // With a penalty the tie is broken by distance: i = 0 to seed 1, i = 4 to seed 2.
        let labels = run(&image, &seeds, None, 1.0, [1.0; 3]);
        assert!(labels.slice(ndarray::s![.., .., 0]).iter().all(|&l| l == 1));
        assert!(labels.slice(ndarray::s![.., .., 4]).iter().all(|&l| l == 2));
    }

    #[test]
    fn float_images_match_a_plain_dijkstra_with_vtks_arithmetic() {
        let shape = (7, 9, 11);
        let image = noise(shape, 7);
        let mut seeds = Array3::<u16>::zeros(shape);
        seeds[[3, 2, 2]] = 1;
        seeds[[3, 6, 8]] = 2;
        seeds[[5, 4, 5]] = 3;
        for (penalty, spacing) in [(0.0, [1.0; 3]), (0.7, [0.6, 1.3, 2.5])] {
            let (want, _) = reference(&image, &seeds, penalty, spacing);
            assert_eq!(run(&image, &seeds, None, penalty, spacing), want);
        }
    }

    #[test]
    fn adding_seeds_incrementally_equals_a_fresh_run_on_float_data() {
        let shape = (8, 10, 12);
        let image = noise(shape, 11);
        let mut seeds = Array3::<u16>::zeros(shape);
        seeds[[4, 2, 2]] = 1;
        seeds[[4, 7, 9]] = 2;
        let mut state = GrowCut::new(0.5);
        let control = Control::none();
        state
            .update(image.view(), seeds.view(), None, [1.0, 1.0, 2.0], &control)
            .unwrap();
        // A stroke of label 1 next to seed 2, and a new label.
        for i in 6..10 {
            seeds[[5, 6, i]] = 1;
        }
        seeds[[2, 2, 9]] = 3;
        let incremental = state
            .update(image.view(), seeds.view(), None, [1.0, 1.0, 2.0], &control)
            .unwrap();
        let fresh = run(&image, &seeds, None, 0.5, [1.0, 1.0, 2.0]);
        assert_eq!(incremental, fresh);
        // A changed spacing starts over.
        let other = state
            .update(image.view(), seeds.view(), None, [1.0; 3], &control)
            .unwrap();
        assert_eq!(other, run(&image, &seeds, None, 0.5, [1.0; 3]));
    }

    #[test]
    fn removed_seeds_are_not_propagated() {
        let image = Array3::<f32>::zeros((3, 3, 6));
        let mut seeds = Array3::<u16>::zeros((3, 3, 6));
        seeds[[1, 1, 1]] = 1;
        seeds[[1, 1, 4]] = 2;
        let mut state = GrowCut::new(0.0);
        let c = Control::none();
        let first = state
            .update(image.view(), seeds.view(), None, [1.0; 3], &c)
            .unwrap();
        seeds[[1, 1, 4]] = 0;
        let second = state
            .update(image.view(), seeds.view(), None, [1.0; 3], &c)
            .unwrap();
        assert_eq!(first, second);
        assert!(second.iter().any(|&l| l == 2));
    }

    #[test]
    fn a_cancelled_run_stops_and_the_next_one_starts_over() {
        let shape = (40, 40, 50); // more than one check interval
        let image = noise(shape, 3);
        let mut seeds = Array3::<u16>::zeros(shape);
        seeds[[20, 20, 10]] = 1;
        seeds[[20, 20, 40]] = 2;
        let control = Control::none();
        control.cancel();
        let mut state = GrowCut::new(0.0);
        let r = state.update(image.view(), seeds.view(), None, [1.0; 3], &control);
        assert_eq!(r, Err(EffectError::Cancelled));
        let again = state
            .update(image.view(), seeds.view(), None, [1.0; 3], &Control::none())
            .unwrap();
        assert_eq!(again, run(&image, &seeds, None, 0.0, [1.0; 3]));
    }

    #[test]
    fn bad_inputs_are_refused() {
        let image = Array3::<f32>::zeros((3, 3, 3));
        let seeds = Array3::<u16>::zeros((3, 3, 4));
        let c = Control::none();
        let mut s = GrowCut::new(0.0);
        assert!(s
            .update(image.view(), seeds.view(), None, [1.0; 3], &c)
            .is_err());
        let thin = Array3::<f32>::zeros((2, 3, 3));
        let seeds = Array3::<u16>::zeros((2, 3, 3));
        let e = s
            .update(thin.view(), seeds.view(), None, [1.0; 3], &c)
            .unwrap_err();
        assert!(e.to_string().contains("at least 3 voxels"), "{e}");
        let seeds = Array3::<u16>::zeros((3, 3, 3));
        let mut s = GrowCut::new(-1.0);
        assert!(s
            .update(image.view(), seeds.view(), None, [1.0; 3], &c)
            .is_err());
        let mut s = GrowCut::new(0.0);
        assert!(s
            .update(image.view(), seeds.view(), None, [0.0, 1.0, 1.0], &c)
            .is_err());
    }

    #[test]
    fn long_and_short_lists_sort_by_voxel_descending() {
        let mut scratch = Vec::new();
        for len in [0usize, 5, 3000] {
            let mut v: Vec<(u32, u32)> = (0..len as u32)
                .map(|n| (n % 7, n.wrapping_mul(2654435761) % 100_003))
                .collect();
            let mut want = v.clone();
            sort_by_voxel_descending(&mut v, &mut scratch);
            // Long lists are ordered by the top 11 bits of (largest - voxel).
            let top = want.iter().map(|e| e.1).max().unwrap_or(0);
            let shift = (u32::BITS - top.leading_zeros()).saturating_sub(11);
            let shift = if len < 1024 { 0 } else { shift };
            assert!(v
                .windows(2)
                .all(|w| (top - w[0].1) >> shift <= (top - w[1].1) >> shift));
            let mut a = v.clone();
            a.sort();
            want.sort();
            assert_eq!(a, want, "the same entries");
        }
    }

    #[test]
    fn locked_bits_are_the_non_zero_voxels_in_logical_order() {
        let m = Array3::from_shape_fn((3, 5, 13), |(k, j, i)| {
            3 * u8::from((k * 7 + j * 3 + i) % 5 == 0)
        });
        let bits = Bits::of_non_zero(m.as_slice().unwrap());
        for (n, &v) in m.iter().enumerate() {
            assert_eq!(bits.get(n), v != 0, "voxel {n}");
        }
        // A view that is not contiguous, in logical order once in standard layout (as
        // `GrowCut::run` passes it).
        let part = m.slice(ndarray::s![.., 1.., ..;2]);
        let bits = Bits::of_non_zero(part.as_standard_layout().as_slice().unwrap());
        for (n, &v) in part.iter().enumerate() {
            assert_eq!(bits.get(n), v != 0, "voxel {n} of the view");
        }
    }

    #[test]
    fn the_radix_heap_pops_in_key_order() {
        let mut h = RadixHeap::default();
        let keys = [5.0f32, 1e-3, 3.25, 1e6, 3.25, 0.5];
        for (n, k) in keys.iter().enumerate() {
            h.push(k.to_bits(), n as u32);
        }
        let mut popped = Vec::new();
        while let Some((k, _)) = h.pop() {
            popped.push(f32::from_bits(k));
            // Monotone pushes after a pop are allowed.
            if popped.len() == 2 {
                h.push(0.75f32.to_bits(), 9);
            }
        }
        assert_eq!(popped, [1e-3, 0.5, 0.75, 3.25, 3.25, 5.0, 1e6]);
    }
}
