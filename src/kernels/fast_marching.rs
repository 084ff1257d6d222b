//! Pichon's statistical fast marching (E. Pichon, A. Tannenbaum, R. Kikinis, "A statistical
//! based flow for image segmentation", Medical Image Analysis 2004), as the Fast Marching
//! effect of SlicerSegmentEditorExtraEffects runs it (`vtkPichonFastMarching`).
//!
//! A front starts at the seed's face neighbours (arrival time 0) and moves outward by the
//! eikonal equation |∇T| = 1 / F on the voxel grid (first-order upwind, 6 neighbours, unit
//! spacing: the effect ignores the voxel size). The speed F at a voxel is
//! `p_I(m)² · p_H(h) · 1e10`, clamped to at least 1e-14, where `m` is the median of its
//! 3x3x3 neighbourhood and `h` the spread of that neighbourhood (22nd minus 6th of the 27
//! sorted values), and `p_I`, `p_H` are probability densities learned from the seed and
//! then from the voxels the front accepts (the last `5 x front size` of them, refreshed
//! every `npoints / 100` accepted voxels): a smoothed histogram (Gaussian kernel of
//! variance `0.25 σ²`), or a Gaussian of the samples' mean and variance while there are
//! fewer than `50 σ` samples. The march stops after `npoints` voxels; the order in which
//! voxels were accepted is kept, so showing the first fraction of them (the effect's
//! "Segment volume" slider) needs no new march.
//!
//! Voxels within 3 voxels of the image border are never reached. Ties between equal
//! arrival times are taken in the order of a binary heap; Pichon's own heap may take them
//! in another order, and his filter (unlike this one) reads uninitialised memory for the
//! first densities and looks at 5 of the 6 face neighbours of a seed voxel, so the two
//! agree in what they fill first, not voxel for voxel.

use crate::effects::{Control, EffectError};
use ndarray::{Array3, ArrayView3};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

/// Arrival time of voxels the front has not reached.
const INF: f64 = 1e20;
/// Voxels this close to the border are never reached.
pub const BAND_OUT: usize = 3;
/// Smallest speed (`1 / (INF / 1e6)`).
const MIN_SPEED: f64 = 1e-14;
/// Accepted voxels between two cancellation checks.
const STEPS_PER_CHECK: usize = 1 << 12;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Far,
    Trial,
    Known,
    /// A seed voxel: part of the segment from the start, never marched.
    Done,
    /// In the border band: never reached.
    Out,
}

/// A probability density over `0..=max` learned from samples, as Pichon's `PDF`.
#[derive(Debug, Clone)]
struct Density {
    max: usize,
    bins: Vec<i64>,
    smoothed: Vec<f64>,
    in_bins: VecDeque<usize>,
    to_add: Vec<usize>,
    counter: usize,
    m1: f64,
    m2: f64,
    mean: f64,
    sigma2: f64,
    memory: usize,
    update_rate: usize,
}

impl Density {
    fn new(max: usize) -> Self {
        Density {
            max,
            bins: vec![0; max + 1],
            smoothed: vec![0.0; max + 1],
            in_bins: VecDeque::new(),
            to_add: Vec::new(),
            counter: 0,
            m1: 0.0,
            m2: 0.0,
            mean: 0.0,
            sigma2: 0.0,
            memory: 10_000,
            update_rate: 1_000,
        }
    }

    fn add(&mut self, k: usize) {
        self.to_add.push(k.min(self.max));
        self.counter += 1;
        if self.counter.is_multiple_of(self.update_rate) || self.to_add.len() > self.memory / 2 {
            self.update();
        }
    }

    fn update(&mut self) {
        for r in self.to_add.drain(..) {
            self.in_bins.push_front(r);
            self.bins[r] += 1;
            self.m1 += r as f64;
            self.m2 += (r * r) as f64;
        }
        while self.in_bins.len() > self.memory {
            if let Some(r) = self.in_bins.pop_back() {
                self.bins[r] -= 1;
                self.m1 -= r as f64;
                self.m2 -= (r * r) as f64;
            }
        }
        let n = self.in_bins.len();
        if n == 0 {
            return;
        }
        self.mean = self.m1 / n as f64;
        self.sigma2 = (self.m2 / n as f64 - self.mean * self.mean).max(0.0);
        let smooth = 0.25 * self.sigma2;
        let coef: Vec<f64> = (0..=self.max)
            .map(|k| {
                if smooth > 0.0 {
                    (-0.5 * (k * k) as f64 / smooth).exp()
                } else {
                    f64::from(u8::from(k == 0))
                }
            })
            .collect();
        for k in 0..=self.max {
            let (mut val, mut norm) = (0.0, 0.0);
            for j in 0..=self.max {
                let c = coef[k.abs_diff(j)];
                val += c * self.bins[j] as f64;
                norm += c;
            }
            self.smoothed[k] = val / norm / n as f64;
        }
    }

    fn value(&self, k: usize) -> f64 {
        let n = self.in_bins.len() as f64;
        if n < 50.0 * self.sigma2.sqrt() || n == 0.0 {
            if self.sigma2 <= 0.0 {
                // No spread yet: all the mass on the mean.
                return if (k as f64 - self.mean).abs() < 0.5 {
                    1.0
                } else {
                    0.0
                };
            }
            let d = k as f64 - self.mean;
            return (-0.5 * d * d / self.sigma2).exp()
                / (2.0 * std::f64::consts::PI * self.sigma2).sqrt();
        }
        self.smoothed[k.min(self.max)]
    }
}

#[derive(Clone, Copy, PartialEq)]
struct Entry {
    t: f64,
    index: usize,
}

impl Eq for Entry {}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // A min-heap on t, then on the index (deterministic).
        other
            .t
            .partial_cmp(&self.t)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.index.cmp(&self.index))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One march: the voxels in the order the front accepted them.
#[derive(Debug, Clone, PartialEq)]
pub struct March {
    shape: (usize, usize, usize),
    /// Linear indices (`[k][j][i]`, `i` fastest) of the seed voxels.
    pub seeds: Vec<usize>,
    /// Linear indices of the accepted voxels, in arrival order (the seed's neighbours,
    /// at time 0, first).
    pub known: Vec<usize>,
}

impl March {
    /// The segment after the first fraction `r` (0..=1) of the march: the seed voxels and
    /// the first `floor((N - 1) · r) + 1` accepted voxels (Pichon's `show(r)`).
    pub fn show(&self, r: f64) -> Array3<u8> {
        let mut out = Array3::<u8>::zeros(self.shape);
        let flat = out.as_slice_mut().expect("a new array is contiguous");
        for &s in &self.seeds {
            flat[s] = 1;
        }
        if !self.known.is_empty() {
            let r = r.clamp(0.0, 1.0);
            let last = ((self.known.len() - 1) as f64 * r) as usize;
            for &v in &self.known[..=last] {
                flat[v] = 1;
            }
        }
        out
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        (self.seeds.len() + self.known.len()) * std::mem::size_of::<usize>()
    }
}

/// The effect's input preparation: values cast to 16-bit integers (clamped), then, when
/// the range exceeds 300, shifted to start at 0 and scaled into `0..=300` (truncated), so
/// the densities have at most 301 bins. Answers the values and their largest one.
///
/// Slicer's effect shifts negative images without scaling when their range is at most 300,
/// multiplying by a scale of 0 (every voxel becomes 0, and the march is blind); this keeps
/// the scale at 1 then.
pub fn prepare_intensities(
    values: impl Iterator<Item = f64>,
    shape: (usize, usize, usize),
) -> (Array3<i32>, usize) {
    let cast: Vec<i32> = values
        .map(|v| {
            if v.is_nan() {
                0
            } else {
                v.clamp(i16::MIN as f64, i16::MAX as f64) as i32
            }
        })
        .collect();
    let (lo, hi) = cast
        .iter()
        .fold((i32::MAX, i32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if cast.is_empty() { (0, 0) } else { (lo, hi) };
    let depth = (hi - lo) as f64;
    let scale = if depth > 300.0 { 300.0 / depth } else { 1.0 };
    let shift = if lo < 0 { -lo as f64 } else { 0.0 };
    let out: Vec<i32> = cast
        .iter()
        .map(|&v| (((v as f64 + shift) * scale) as i32).max(0))
        .collect();
    let max = out.iter().copied().max().unwrap_or(0).max(0) as usize;
    (
        Array3::from_shape_vec(shape, out).expect("one value per voxel"),
        max,
    )
}

/// Marches from the seed voxels (`seeds` non-zero) over `intensities` (non-negative, at
/// most `max`, from [`prepare_intensities`]) for at most `npoints` accepted voxels.
///
/// # Errors
/// Shapes that differ, a cancelled request.
pub fn march(
    intensities: ArrayView3<i32>,
    max: usize,
    seeds: ArrayView3<u8>,
    npoints: usize,
    control: &Control,
) -> Result<March, EffectError> {
    let shape = intensities.dim();
    if seeds.dim() != shape {
        return Err(EffectError::Input(format!(
            "seeds of shape {:?} on an image of shape {shape:?}",
            seeds.dim()
        )));
    }
    let (nk, nj, ni) = shape;
    let n = nk * nj * ni;
    let data = intensities.as_standard_layout();
    let data = data.as_slice().expect("standard layout");
    let seed_flat = seeds.as_standard_layout();
    let seed_flat = seed_flat.as_slice().expect("standard layout");
    let mut status = vec![Status::Far; n];
    let mut t = Times::new(n);
    // Median and spread, computed when first needed (spread stored + 1; 0 = not yet). Both
    // start as zeros, which the allocator hands out without touching: only the pages the
    // front reaches are ever written (a volume is hundreds of MB of them).
    let mut spread = vec![0i32; n];
    let mut median = vec![0i32; n];
    let (sj, sk) = (ni, ni * nj);
    let inside = |i: usize, j: usize, k: usize| {
        i >= BAND_OUT
            && j >= BAND_OUT
            && k >= BAND_OUT
            && i + BAND_OUT < ni
            && j + BAND_OUT < nj
            && k + BAND_OUT < nk
    };
    let mut seed_voxels = Vec::new();
    for k in 0..nk {
        for j in 0..nj {
            for i in 0..ni {
                let v = k * sk + j * sj + i;
                if seed_flat[v] != 0 {
                    seed_voxels.push(v);
                }
                if !inside(i, j, k) {
                    status[v] = Status::Out;
                } else if seed_flat[v] != 0 {
                    status[v] = Status::Done;
                }
            }
        }
    }
    let stats = |v: usize, spread: &mut Vec<i32>, median: &mut Vec<i32>| -> (usize, usize) {
        if spread[v] == 0 {
            let mut hood = [0i32; 27];
            let mut p = 0;
            for dk in [-1isize, 0, 1] {
                for dj in [-1isize, 0, 1] {
                    for di in [-1isize, 0, 1] {
                        let w = (v as isize + dk * sk as isize + dj * sj as isize + di) as usize;
                        hood[p] = data[w];
                        p += 1;
                    }
                }
            }
            hood.sort_unstable();
            spread[v] = hood[21] - hood[5] + 1;
            median[v] = hood[13];
        }
        (median[v].max(0) as usize, (spread[v] - 1).max(0) as usize)
    };
    let mut p_intensity = Density::new(max);
    let mut p_spread = Density::new(max);
    // The seed's statistics, and the front's start: the seed voxels' free face neighbours.
    let mut starts = Vec::new();
    let faces = [sk, sj, 1usize];
    for &v in &seed_voxels {
        if status[v] != Status::Done {
            continue;
        }
        let (m, h) = stats(v, &mut spread, &mut median);
        p_intensity.add(m);
        p_spread.add(h);
        for &d in &faces {
            for w in [v - d, v + d] {
                if status[w] == Status::Far && seed_flat[w] == 0 {
                    starts.push(w);
                }
            }
        }
    }
    p_intensity.update();
    p_spread.update();
    let rate = (npoints / 100).max(10);
    p_intensity.update_rate = rate;
    p_spread.update_rate = rate;

    let speed = |v: usize,
                 spread: &mut Vec<i32>,
                 median: &mut Vec<i32>,
                 p_i: &Density,
                 p_h: &Density|
     -> f64 {
        let (m, h) = stats(v, spread, median);
        let pi = p_i.value(m);
        let s = (pi * pi * p_h.value(h)) * 1e10;
        if !s.is_finite() {
            1.0
        } else {
            s.max(MIN_SPEED)
        }
    };
    let mut heap = BinaryHeap::new();
    let mut trial = 0usize;
    let mut known = Vec::with_capacity(npoints.min(n) + starts.len());
    let neighbours26: Vec<isize> = {
        let mut o = Vec::with_capacity(26);
        for dk in [-1isize, 0, 1] {
            for dj in [-1isize, 0, 1] {
                for di in [-1isize, 0, 1] {
                    if (dk, dj, di) != (0, 0, 0) {
                        o.push(dk * sk as isize + dj * sj as isize + di);
                    }
                }
            }
        }
        o
    };
    let distance26 = |o: isize| -> f64 {
        let (dk, dj, di) = decompose(o, sj as isize, sk as isize);
        ((dk * dk + dj * dj + di * di) as f64).sqrt()
    };
    // As Pichon's setSeed, last start first; a start the front already holds as a
    // neighbour of an earlier one stays a neighbour.
    for &s in starts.iter().rev() {
        if status[s] != Status::Far {
            continue;
        }
        status[s] = Status::Known;
        t.set(s, 0.0);
        known.push(s);
        for &o in &neighbours26 {
            let w = (s as isize + o) as usize;
            if status[w] == Status::Far {
                status[w] = Status::Trial;
                trial += 1;
                let tw =
                    distance26(o) / speed(w, &mut spread, &mut median, &p_intensity, &p_spread);
                t.set(w, tw);
                heap.push(Entry { t: tw, index: w });
            }
        }
    }
    let mut steps = 0usize;
    while steps < npoints {
        if steps.is_multiple_of(STEPS_PER_CHECK) {
            control.check()?;
            control.progress(steps as f64 / npoints.max(1) as f64, "Fast Marching");
        }
        let Some(Entry { t: tv, index: v }) = heap.pop() else {
            break; // nowhere else to go
        };
        if status[v] != Status::Trial || tv != t.get(v) {
            continue; // a stale entry
        }
        if t.get(v) >= INF {
            break;
        }
        trial -= 1;
        steps += 1;
        let (m, h) = stats(v, &mut spread, &mut median);
        p_intensity.add(m);
        p_spread.add(h);
        status[v] = Status::Known;
        known.push(v);
        for &d in &faces {
            for w in [v - d, v + d] {
                match status[w] {
                    Status::Far | Status::Trial => {
                        let was_far = status[w] == Status::Far;
                        let s = speed(w, &mut spread, &mut median, &p_intensity, &p_spread);
                        let new_t = arrival(w, s, &t, &status, sj, sk);
                        if was_far {
                            status[w] = Status::Trial;
                            trial += 1;
                        }
                        if new_t != t.get(w) || was_far {
                            t.set(w, new_t);
                            heap.push(Entry { t: new_t, index: w });
                        }
                    }
                    _ => {}
                }
            }
        }
        let memory = 5 * trial;
        p_intensity.memory = memory;
        p_spread.memory = memory;
    }
    control.progress(1.0, "Fast Marching");
    Ok(March {
        shape,
        seeds: seed_voxels,
        known,
    })
}

/// `(dk, dj, di)` of a neighbour offset with each component in `{-1, 0, 1}`.
fn decompose(o: isize, sj: isize, sk: isize) -> (isize, isize, isize) {
    for dk in [-1isize, 0, 1] {
        for dj in [-1isize, 0, 1] {
            let di = o - dk * sk - dj * sj;
            if (-1..=1).contains(&di) {
                return (dk, dj, di);
            }
        }
    }
    (0, 0, 0)
}

/// The upwind arrival time at `v` with speed `s` (Pichon's `computeT`): the larger root of
/// the quadratic over the axes whose smaller neighbour time is below `v`'s own, or, when
/// that has no root, the best neighbour time plus `1 / s`.
fn arrival(v: usize, s: f64, t: &Times, status: &[Status], sj: usize, sk: usize) -> f64 {
    let tij = t.get(v);
    let (mut a, mut b, mut c) = (0.0f64, 0.0f64, -1.0 / (s * s));
    for d in [1usize, sj, sk] {
        let (tm, tp) = (t.get(v - d), t.get(v + d));
        let (dm, dp) = (tij - tm, tp - tij);
        if dm > 0.0 || dp < 0.0 {
            let u = if dm > -dp { tm } else { tp };
            a += 1.0;
            b += -2.0 * u;
            c += u * u;
        }
    }
    let discr = b * b - 4.0 * a * c;
    if a == 0.0 || discr < 0.0 {
        let mut best = INF;
        for d in [1usize, sj, sk] {
            for w in [v - d, v + d] {
                if matches!(status[w], Status::Trial | Status::Known) {
                    best = best.min(t.get(w) + 1.0 / s);
                }
            }
        }
        return best;
    }
    (-b + discr.sqrt()) / (2.0 * a)
}

/// Arrival times, [`INF`] until set, stored as their bits XOR `INF`'s so that the
/// allocator's untouched zero pages read as `INF`.
struct Times(Vec<u64>);

impl Times {
    fn new(n: usize) -> Self {
        Times(vec![0; n])
    }

    #[inline]
    fn get(&self, v: usize) -> f64 {
        f64::from_bits(self.0[v] ^ INF.to_bits())
    }

    #[inline]
    fn set(&mut self, v: usize, t: f64) {
        self.0[v] = t.to_bits() ^ INF.to_bits();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp_box() -> (Array3<i32>, Array3<u8>) {
        // A 20^3 image: a bright cube (value 100) in the middle, dark (10) outside.
        let shape = (20, 20, 20);
        let img = Array3::from_shape_fn(shape, |(k, j, i)| {
            if (6..14).contains(&k) && (6..14).contains(&j) && (6..14).contains(&i) {
                100
            } else {
                10
            }
        });
        let mut seeds = Array3::<u8>::zeros(shape);
        seeds[[10, 10, 10]] = 1;
        (img, seeds)
    }

    #[test]
    fn the_front_fills_the_seeds_region_before_leaking() {
        let (img, seeds) = ramp_box();
        let m = march(img.view(), 100, seeds.view(), 2000, &Control::none()).unwrap();
        // The cube's core (6^3 voxels whose 3x3x3 neighbourhood lies in the cube) fills
        // before anything outside the cube: its edges have a dark median, as outside.
        let inside = |v: usize| {
            let (k, j, i) = (v / 400, (v / 20) % 20, v % 20);
            (6..14).contains(&k) && (6..14).contains(&j) && (6..14).contains(&i)
        };
        assert!(m.known.len() > 600);
        assert!(
            m.known[..200].iter().all(|&v| inside(v)),
            "the cube fills first"
        );
        let core = |v: usize| {
            let (k, j, i) = (v / 400, (v / 20) % 20, v % 20);
            (7..13).contains(&k) && (7..13).contains(&j) && (7..13).contains(&i)
        };
        let first_outside = m.known.iter().position(|&v| !inside(v)).unwrap();
        let core_done = m.known[..first_outside]
            .iter()
            .filter(|&&v| core(v))
            .count();
        assert_eq!(
            core_done,
            216 - 1,
            "the core (but the seed) before the first leak"
        );
        // Nothing within 3 voxels of the border.
        let full = m.show(1.0);
        assert_eq!(full[[1, 10, 10]], 0);
        assert_eq!(full[[10, 10, 2]], 0);
    }

    #[test]
    fn showing_a_fraction_trims_in_arrival_order_and_keeps_the_seed() {
        let (img, seeds) = ramp_box();
        let m = march(img.view(), 100, seeds.view(), 1000, &Control::none()).unwrap();
        let mut last = 0;
        for r in [0.0, 0.1, 0.25, 0.5, 0.75, 1.0] {
            let shown = m.show(r);
            let count = shown.iter().filter(|&&v| v != 0).count();
            assert!(count >= last, "monotone");
            assert_eq!(shown[[10, 10, 10]], 1, "the seed stays");
            last = count;
        }
        assert_eq!(last, 1 + m.known.len());
        assert_eq!(m.show(0.0).iter().filter(|&&v| v != 0).count(), 2);
    }

    #[test]
    fn cancel_stops_the_march() {
        let (img, seeds) = ramp_box();
        let control = Control::none();
        control.cancel();
        assert_eq!(
            march(img.view(), 100, seeds.view(), 1000, &control),
            Err(EffectError::Cancelled)
        );
    }

    #[test]
    fn intensities_are_scaled_into_300_bins_as_the_effect_does() {
        let values = [-1024.0, 0.0, 2048.0, 1e9];
        let (out, max) = prepare_intensities(values.iter().copied(), (1, 1, 4));
        // Range -1024..32767 (clamped): scale 300 / 33791.
        assert_eq!(out[[0, 0, 0]], 0);
        assert_eq!(out[[0, 0, 1]], (1024.0 * 300.0 / 33791.0) as i32);
        assert_eq!(max, 300);
        // A small range keeps its values (shifted to 0).
        let (out, max) = prepare_intensities([-5.0, 5.0].into_iter(), (1, 1, 2));
        assert_eq!(out.as_slice().unwrap(), &[0, 10]);
        assert_eq!(max, 10);
    }
}
