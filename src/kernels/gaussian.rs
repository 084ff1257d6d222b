//! Separable Gaussian smoothing of 8-bit volumes, exactly as VTK's
//! `vtkImageGaussianSmooth` computes it.
//!
//! # Reference
//! `vtkImageGaussianSmooth` (Dimensionality 3), which Slicer's Smoothing effect (radius
//! factor 4, on the 0/255 segment) and Mask volume's soft edge (radius factor 3, on the
//! 0/255 mask) run on unsigned char images. VTK's model, reproduced bit for bit:
//! - one pass per axis, in the order **k, then j, then i** (VTK's z, y, x);
//! - along an axis with standard deviation `sigma` (voxels) the kernel's half-width is
//!   `r = trunc(sigma * radius_factor)`, its weights `exp(-x^2 / (2 sigma^2))` for
//!   `x = -r ..= r`, divided by their sum (accumulated from `-r` up);
//! - **border**: near a face the part of the kernel that falls outside the image is cut
//!   off and the rest is normalised again (divided by the sum of the remaining weights);
//!   nothing outside the image is read;
//! - each voxel's sum `Σ w[x] * value` is accumulated in `f64` from the lowest offset up
//!   (no fused multiply-add), and **truncated to `u8` after every pass**;
//! - `sigma = 0` along an axis leaves that axis unchanged (a kernel of one weight 1).
//!
//! Because every intermediate result is truncated, the order of the passes and of the
//! additions matters: this module keeps VTK's, so the results are identical, not close.
//!
//! # Method
//! The passes along k and j sum whole rows (along i) weighted by the kernel, so the inner
//! loop runs over contiguous voxels and vectorises; the pass along i does the same with
//! shifted slices of one row. Planes are processed in parallel.
//!
//! # Example
//! ```
//! use ndarray::Array3;
//! use segkit::kernels::gaussian::gaussian_smooth_u8;
//! // A step along i, smoothed only along i (sigma 1 voxel, radius 3): values between the
//! // two levels, truncated.
//! let step = Array3::from_shape_vec((1, 1, 6), vec![0u8, 0, 0, 255, 255, 255]).unwrap();
//! let out = gaussian_smooth_u8(step.view(), [0.0, 0.0, 1.0], 3.0);
//! assert_eq!(out.into_raw_vec_and_offset().0, [1, 15, 76, 178, 239, 253]);
//! ```

use ndarray::{Array3, ArrayView3, Axis, Zip};

/// Half-width in voxels of VTK's kernel for `sigma_px` and `radius_factor`:
/// `trunc(sigma_px * radius_factor)`; 0 when that is not positive (or NaN).
///
/// ```
/// use segkit::kernels::gaussian::kernel_radius;
/// assert_eq!(kernel_radius(3.0, 4.0), 12);
/// assert_eq!(kernel_radius(0.984, 3.0), 2);
/// ```
pub fn kernel_radius(sigma_px: f64, radius_factor: f64) -> usize {
    let r = sigma_px * radius_factor;
    if r >= 1.0 {
        // Saturates for absurd values; kernels are clipped to the image anyway.
        r as usize
    } else {
        0
    }
}

/// VTK's normalised weights for the offsets `min ..= max` (`ComputeKernel`): each
/// `exp(-x^2 / (sigma^2 * 2))`, divided by their sum accumulated from `min` up; a single
/// weight 1 when `sigma` is 0.
///
/// ```
/// use segkit::kernels::gaussian::kernel_weights;
/// let w = kernel_weights(-1, 1, 1.0);
/// assert!((w[1] - 0.4519).abs() < 1e-4 && w[0] == w[2]);
/// assert_eq!(kernel_weights(0, 0, 0.0), [1.0]);
/// ```
pub fn kernel_weights(min: isize, max: isize, sigma: f64) -> Vec<f64> {
    if sigma == 0.0 {
        return vec![1.0];
    }
    let mut w: Vec<f64> = (min..=max)
        .map(|x| (-((x * x) as f64) / (sigma * sigma * 2.0)).exp())
        .collect();
    let sum = w.iter().fold(0.0, |s, &x| s + x);
    for x in &mut w {
        *x /= sum;
    }
    w
}

/// The kernels of one axis of `n` voxels: the shared one of interior positions, and one
/// per clipped position near each face.
struct AxisKernels {
    radius: usize,
    /// First position clipped on the right only.
    right_start: usize,
    interior: Kernel,
    /// Kernels of positions `0 .. left.len()` and `right_start ..`.
    left: Vec<Kernel>,
    right: Vec<Kernel>,
}

/// One kernel's weights, and its output over a window where every voxel has the same
/// value `v` (`uniform[v]`): the same sum in the same order, computed once.
struct Kernel {
    w: Vec<f64>,
    uniform: [u8; 256],
}

impl Kernel {
    fn new(w: Vec<f64>) -> Self {
        let mut uniform = [0u8; 256];
        for (v, out) in uniform.iter_mut().enumerate() {
            *out = w.iter().fold(0.0, |s, &wt| s + wt * v as f64) as u8;
        }
        Kernel { w, uniform }
    }
}

impl AxisKernels {
    fn new(n: usize, sigma: f64, radius_factor: f64) -> Self {
        // Offsets beyond n - 1 never meet the image: a larger radius changes nothing.
        let radius = if sigma > 0.0 {
            kernel_radius(sigma, radius_factor).min(n.saturating_sub(1))
        } else {
            0
        };
        let sigma = if sigma > 0.0 { sigma } else { 0.0 };
        let r = radius as isize;
        let kernel = |x: usize| {
            let x = x as isize;
            let lo = (x - r).max(0) - x;
            let hi = (x + r).min(n as isize - 1) - x;
            Kernel::new(kernel_weights(lo, hi, sigma))
        };
        // Clipped on the left: x < r; on the right: x + r > n - 1 (some on both sides,
        // kept with the left ones).
        let left_end = radius.min(n);
        let right_start = n.saturating_sub(radius).max(left_end);
        AxisKernels {
            radius,
            right_start,
            interior: Kernel::new(kernel_weights(-r, r, sigma)),
            left: (0..left_end).map(kernel).collect(),
            right: (right_start..n).map(kernel).collect(),
        }
    }

    /// The first input position and the kernel for output position `x`.
    fn at(&self, x: usize) -> (usize, &Kernel) {
        let first = x.saturating_sub(self.radius);
        if x < self.left.len() {
            (first, &self.left[x])
        } else if x >= self.right_start {
            (first, &self.right[x - self.right_start])
        } else {
            (first, &self.interior)
        }
    }
}

/// One smoothing pass along `axis` (0 = k, 1 = j, 2 = i) of an 8-bit image, with
/// standard deviation `sigma_px` voxels (0 = no change) and `radius_factor`, as one
/// of `vtkImageGaussianSmooth`'s passes: clipped and re-normalised kernel at the faces,
/// sums in `f64` truncated to `u8`.
///
/// # Panics
/// When `axis > 2`.
pub fn gaussian_pass_u8(
    image: ArrayView3<u8>,
    axis: usize,
    sigma_px: f64,
    radius_factor: f64,
) -> Array3<u8> {
    assert!(axis < 3, "axis {axis} is not 0 (k), 1 (j) or 2 (i)");
    let (nk, nj, ni) = image.dim();
    let n = [nk, nj, ni][axis];
    let mut out = super::zeroed((nk, nj, ni));
    if out.is_empty() {
        return out;
    }
    let kernels = AxisKernels::new(n, sigma_px, radius_factor);
    if kernels.radius == 0 {
        // One weight of exactly 1: the values pass unchanged.
        out.assign(&image);
        return out;
    }
    let image = image.as_standard_layout();
    let Some(input) = image.as_slice() else {
        unreachable!("a standard-layout array is contiguous")
    };
    let spans = row_spans(input, ni);
    let pass = Pass {
        input,
        spans: &spans,
        kernels: &kernels,
        axis,
        nj,
        ni,
    };
    Zip::indexed(out.axis_iter_mut(Axis(0))).par_for_each(|k, mut out_plane| {
        let Some(dst) = out_plane.as_slice_mut() else {
            unreachable!("planes of a new array are contiguous")
        };
        pass.plane(k, dst);
    });
    out
}

/// Where each row (along i) of a `[k][j][i]` image has non-zero voxels: `start..end`
/// (`0..0` for a row of zeros), row `k * nj + j` at index `k * nj + j`.
fn row_spans(input: &[u8], ni: usize) -> Vec<(usize, usize)> {
    use rayon::prelude::*;
    input
        .par_chunks(ni)
        .map(|row| match row.iter().position(|&v| v != 0) {
            None => (0, 0),
            Some(first) => {
                let last = row.iter().rposition(|&v| v != 0).unwrap_or(first);
                (first, last + 1)
            }
        })
        .collect()
}

/// One pass's inputs, shared by the planes computed in parallel.
///
/// Zeros are skipped: a weight times a zero voxel adds `+0.0` to a sum that is never
/// negative, which leaves it unchanged, so summing only over the non-zero span of each row
/// gives the same bits as VTK's sum over the whole kernel; outputs whose kernel meets
/// only zeros stay 0. Segments usually fill a small part of the image.
struct Pass<'a> {
    input: &'a [u8],
    spans: &'a [(usize, usize)],
    kernels: &'a AxisKernels,
    axis: usize,
    nj: usize,
    ni: usize,
}

impl Pass<'_> {
    /// Output plane `k` into `dst` (zeroed). On x86-64 processors with AVX2 or AVX-512
    /// the same code is compiled for wider vectors and chosen at run time; Rust never
    /// fuses a multiply and an add, so the sums are the same bits.
    fn plane(&self, k: usize, dst: &mut [u8]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the processor has AVX-512F, checked just above.
                unsafe { self.plane_avx512(k, dst) };
                return;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the processor has AVX2, checked just above.
                unsafe { self.plane_avx2(k, dst) };
                return;
            }
        }
        self.plane_portable(k, dst);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn plane_avx2(&self, k: usize, dst: &mut [u8]) {
        self.plane_portable(k, dst);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn plane_avx512(&self, k: usize, dst: &mut [u8]) {
        self.plane_portable(k, dst);
    }

    #[inline(always)]
    fn plane_portable(&self, k: usize, dst: &mut [u8]) {
        let (nj, ni) = (self.nj, self.ni);
        let plane = nj * ni;
        let input = self.input;
        let mut acc = vec![0f64; ni];
        let mut same = vec![0u8; ni];
        match self.axis {
            0 | 1 => {
                for j in 0..nj {
                    // The rows under the kernel: along k at this j, or along j in slice k.
                    let along_k = self.axis == 0;
                    let (first, kernel) = self.kernels.at(if along_k { k } else { j });
                    let rows = kernel.w.iter().enumerate().map(|(t, &wt)| {
                        let row = if along_k {
                            (first + t) * nj + j
                        } else {
                            k * nj + first + t
                        };
                        (wt, &input[row * ni..(row + 1) * ni], self.spans[row])
                    });
                    weighted_rows(
                        &mut acc,
                        &mut same,
                        rows,
                        kernel,
                        &mut dst[j * ni..(j + 1) * ni],
                    );
                }
            }
            _ => {
                let src = &input[k * plane..(k + 1) * plane];
                let spans = &self.spans[k * nj..(k + 1) * nj];
                for ((row, out_row), &span) in src
                    .chunks_exact(ni)
                    .zip(dst.chunks_exact_mut(ni))
                    .zip(spans)
                {
                    smooth_row(row, span, self.kernels, &mut acc, out_row);
                }
            }
        }
    }
}

/// Voxels per block of [`weighted_rows`] and [`smooth_row`]: a block whose every window
/// is uniform takes its outputs from [`Kernel::uniform`] instead of summing.
const BLOCK: usize = 32;

/// `dst = trunc(Σ w * row)` over the weighted rows of `kernel`, summed in their order;
/// only over the union of the rows' non-zero spans (`dst` is zero outside, see [`Pass`]),
/// and by blocks of [`BLOCK`] voxels: where every row has the same value as the first
/// (inside a segment, or in the background) the sum is the kernel's `uniform` one, so
/// only the runs of blocks near a boundary are summed. `same` is scratch of `acc`'s size.
#[inline(always)]
fn weighted_rows<'a>(
    acc: &mut [f64],
    same: &mut [u8],
    rows: impl Iterator<Item = (f64, &'a [u8], (usize, usize))> + Clone,
    kernel: &Kernel,
    dst: &mut [u8],
) {
    let (lo, hi) = rows
        .clone()
        .filter(|r| r.2 .0 < r.2 .1)
        .fold((usize::MAX, 0), |(lo, hi), r| {
            (lo.min(r.2 .0), hi.max(r.2 .1))
        });
    if lo >= hi {
        return;
    }
    let Some((_, first_row, _)) = rows.clone().next() else {
        return;
    };
    // same[i] = 1 where every row has first_row's value: whole rows at once (vectorised).
    let head = &first_row[lo..hi];
    let same = &mut same[lo..hi];
    same.fill(1);
    for (_, row, _) in rows.clone().skip(1) {
        for ((s, &a), &b) in same.iter_mut().zip(&row[lo..hi]).zip(head) {
            *s &= u8::from(a == b);
        }
    }
    // Uniform blocks from the table; runs of the other blocks summed together.
    let mut run: Option<usize> = None; // start of the run of blocks to sum
    let mut start = 0;
    while start < hi - lo {
        let end = (start + BLOCK).min(hi - lo);
        if same[start..end].iter().fold(1, |all, &x| all & x) == 1 {
            if let Some(a) = run.take() {
                sum_rows(acc, dst, rows.clone(), lo + a, lo + start);
            }
            for (d, &v) in dst[lo + start..lo + end].iter_mut().zip(&head[start..end]) {
                *d = kernel.uniform[usize::from(v)];
            }
        } else if run.is_none() {
            run = Some(start);
        }
        start = end;
    }
    if let Some(a) = run {
        sum_rows(acc, dst, rows, lo + a, hi);
    }
}

/// `dst[a..b] = trunc(Σ w * row[a..b])`, summed in the rows' order. A function, not a
/// closure: closures do not inherit the caller's `target_feature`s.
#[inline(always)]
fn sum_rows<'a>(
    acc: &mut [f64],
    dst: &mut [u8],
    rows: impl Iterator<Item = (f64, &'a [u8], (usize, usize))>,
    a: usize,
    b: usize,
) {
    let acc = &mut acc[a..b];
    acc.fill(0.0);
    for (w, row, _) in rows {
        for (x, &v) in acc.iter_mut().zip(&row[a..b]) {
            *x += w * f64::from(v);
        }
    }
    for (d, &x) in dst[a..b].iter_mut().zip(acc.iter()) {
        *d = x as u8;
    }
}

/// One row smoothed along itself: the interior with shifted slices (vectorised), the
/// clipped ends voxel by voxel; only where the kernel meets the row's non-zero `span`.
#[inline(always)]
fn smooth_row(
    row: &[u8],
    span: (usize, usize),
    kernels: &AxisKernels,
    acc: &mut [f64],
    dst: &mut [u8],
) {
    let n = row.len();
    let r = kernels.radius;
    if span.0 >= span.1 {
        return;
    }
    // Outputs whose kernel meets the span.
    let (lo, hi) = (span.0.saturating_sub(r), (span.1 + r).min(n));
    let (start, end) = (kernels.left.len(), kernels.right_start.min(n));
    for x in (lo..start.min(hi)).chain(end.max(lo)..hi) {
        let (first, kernel) = kernels.at(x);
        let s = kernel
            .w
            .iter()
            .zip(&row[first..first + kernel.w.len()])
            .fold(0.0, |s, (&wt, &v)| s + wt * f64::from(v));
        dst[x] = s as u8;
    }
    // The interior by blocks: a block whose windows all see one value takes the kernel's
    // uniform output; the others are summed with shifted slices.
    let (mut block, end) = (start.max(lo), end.min(hi));
    let kernel = &kernels.interior;
    while block < end {
        let stop = (block + BLOCK).min(end);
        let window = &row[block - r..stop + r];
        let v = window[0];
        if window.iter().fold(true, |same, &x| same & (x == v)) {
            dst[block..stop].fill(kernel.uniform[usize::from(v)]);
        } else {
            let acc = &mut acc[block..stop];
            acc.fill(0.0);
            for (t, &w) in kernel.w.iter().enumerate() {
                let src = &row[block + t - r..stop + t - r];
                for (a, &v) in acc.iter_mut().zip(src) {
                    *a += w * f64::from(v);
                }
            }
            for (d, &a) in dst[block..stop].iter_mut().zip(acc.iter()) {
                *d = a as u8;
            }
        }
        block = stop;
    }
}

/// The whole `vtkImageGaussianSmooth` (Dimensionality 3) on an 8-bit image: passes along
/// k, then j, then i, with the standard deviations `sigma_kji_px` in voxels and one
/// `radius_factor` (Slicer: 4 for Smoothing, 3 for Mask volume's soft edge). See the
/// module documentation for the border rule and the truncation after each pass.
pub fn gaussian_smooth_u8(
    image: ArrayView3<u8>,
    sigma_kji_px: [f64; 3],
    radius_factor: f64,
) -> Array3<u8> {
    let k = gaussian_pass_u8(image, 0, sigma_kji_px[0], radius_factor);
    let j = gaussian_pass_u8(k.view(), 1, sigma_kji_px[1], radius_factor);
    gaussian_pass_u8(j.view(), 2, sigma_kji_px[2], radius_factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// VTK's loops, one voxel at a time.
    fn naive_pass(image: &Array3<u8>, axis: usize, sigma: f64, factor: f64) -> Array3<u8> {
        let dims = [image.dim().0, image.dim().1, image.dim().2];
        let n = dims[axis] as isize;
        let r = kernel_radius(sigma, factor) as isize;
        Array3::from_shape_fn(image.dim(), |(k, j, i)| {
            let p = [k, j, i];
            let x = p[axis] as isize;
            let lo = (x - r).max(0);
            let hi = (x + r).min(n - 1);
            let w = kernel_weights(lo - x, hi - x, sigma);
            let mut s = 0.0;
            for (t, y) in (lo..=hi).enumerate() {
                let mut q = p;
                q[axis] = y as usize;
                s += w[t] * f64::from(image[[q[0], q[1], q[2]]]);
            }
            s as u8
        })
    }

    #[test]
    fn constant_images_stay_constant_or_lose_one_level() {
        // 255 everywhere: the normalised weights sum to 1 give or take an ulp, and each
        // pass's truncation can lose a level where the sum falls just below an integer
        // (why Slicer's Mask volume normalises by the actual maximum).
        let img = Array3::from_elem((5, 6, 7), 255u8);
        let out = gaussian_smooth_u8(img.view(), [1.0, 1.5, 2.0], 4.0);
        // VTK 9.6 gives 12, 38, 85 and 75 voxels of 252, 253, 254 and 255 here.
        let count = |v: u8| out.iter().filter(|&&x| x == v).count();
        assert_eq!([252, 253, 254, 255].map(count), [12, 38, 85, 75]);
        let zero = Array3::<u8>::zeros((5, 6, 7));
        assert_eq!(gaussian_smooth_u8(zero.view(), [1.0, 1.5, 2.0], 4.0), zero);
    }

    #[test]
    fn zero_sigma_leaves_an_axis_alone() {
        let img = Array3::from_shape_fn((3, 4, 5), |(k, j, i)| {
            ((k * 31 + j * 7 + i * 3) % 256) as u8
        });
        assert_eq!(gaussian_pass_u8(img.view(), 1, 0.0, 4.0), img);
        // A radius that truncates to 0 (0.2 * 4 = 0.8) too.
        assert_eq!(gaussian_pass_u8(img.view(), 2, 0.2, 4.0), img);
    }

    #[test]
    fn kernels_wider_than_the_image_are_clipped_on_both_sides() {
        let img = Array3::from_shape_vec((1, 1, 3), vec![0u8, 255, 0]).unwrap();
        let out = gaussian_pass_u8(img.view(), 2, 10.0, 4.0);
        assert_eq!(out, naive_pass(&img, 2, 10.0, 4.0));
        // Nearly flat weights over the 3 voxels left: about a third of 255 everywhere.
        assert_eq!(out.into_raw_vec_and_offset().0, [85, 85, 85]);
    }

    proptest::proptest! {
        #[test]
        fn passes_match_vtks_loops(
            dims in (1usize..6, 1usize..7, 1usize..9),
            sigma in 0.0f64..3.0,
            factor in proptest::sample::select(vec![1.5, 3.0, 4.0]),
            axis in 0usize..3,
            seed in proptest::collection::vec(proptest::sample::select(vec![0u8, 255, 17, 200]), 5 * 6 * 8),
        ) {
            let (_, nj, ni) = dims;
            let img = Array3::from_shape_fn(dims, |(k, j, i)| seed[(k * nj + j) * ni + i]);
            proptest::prop_assert_eq!(
                gaussian_pass_u8(img.view(), axis, sigma, factor),
                naive_pass(&img, axis, sigma, factor)
            );
        }

        /// Sparse images, as segments are: rows of zeros and rows with one run, in rows
        /// longer than the kernel, so that the skipped spans and both clipped ends meet.
        #[test]
        fn passes_over_sparse_images_match_vtks_loops(
            dims in (1usize..7, 1usize..9, 1usize..40),
            sigma in 0.3f64..4.0,
            factor in proptest::sample::select(vec![3.0, 4.0]),
            axis in 0usize..3,
            runs in proptest::collection::vec((0usize..3, 0usize..40, 0usize..40, 1u8..=255), 7 * 9),
        ) {
            let (_, nj, _) = dims;
            let img = Array3::from_shape_fn(dims, |(k, j, i)| {
                let (kind, a, b, v) = runs[k * nj + j];
                let (lo, hi) = (a.min(b), a.max(b));
                match kind {
                    0 => 0,
                    1 if (lo..=hi).contains(&i) => 255,
                    2 if (lo..=hi).contains(&i) && i % 3 != 0 => v,
                    _ => 0,
                }
            });
            proptest::prop_assert_eq!(
                gaussian_pass_u8(img.view(), axis, sigma, factor),
                naive_pass(&img, axis, sigma, factor)
            );
        }
    }
}
