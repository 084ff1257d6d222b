//! Binary morphology of 0/1 volumes: erosion, dilation, opening and closing with an
//! ellipsoid structuring element, and the median of a box.
//!
//! # Reference
//! VTK's `vtkImageDilateErode3D` and `vtkImageOpenClose3D` (ellipsoid footprint from
//! `vtkImageEllipsoidSource`) and `vtkImageMedian3D`, as Slicer's Smoothing effect calls
//! them on a segment's 0/1 labelmap. The results are VTK's voxel for voxel:
//! - **Footprint.** A kernel of `k` voxels along an axis covers the offsets
//!   `-(k/2) ..= k - 1 - k/2` (integer division: `-1..=1` for 3). A voxel at offset `d`
//!   of the box is in the ellipsoid when `s_i + s_j + s_k <= 1` (summed in that order in
//!   `f64`), with `s = ((d + k/2 - (k - 1)/2) / (k/2))^2`: for odd `k` simply
//!   `(d / (k/2))^2`. A 3 x 3 x 3 kernel has 19 voxels, 5 x 5 x 5 has 81.
//! - **Border.** Neighbours outside the image are ignored: erosion does not eat into the
//!   volume from its faces, dilation does not grow in from outside, and the median counts
//!   only the voxels of the box that lie inside the image.
//! - **Median.** Of the (clipped) box, for 0/1 data: 1 when strictly more than half of the
//!   voxels are non-zero. With an even number of voxels (a clipped box) a tie gives 0,
//!   VTK's *lower* median.
//! - **Opening** is erosion then dilation, **closing** dilation then erosion, both with
//!   the same footprint (`vtkImageOpenClose3D`).
//!
//! A kernel size of 0 is taken as 1 (the voxel alone). Every non-zero input voxel counts
//! as 1; outputs are 0/1.
//!
//! # Method
//! The footprint is cut into rows along `i`: offsets `(dk, dj)` and a range of `di`.
//! For every input plane and each distinct `di` range, the 1-D erosion of every row is
//! computed once from a prefix count of its zeros (O(1) per voxel whatever the width);
//! an output row is then the AND of the footprint's shifted rows, a byte-wise loop the
//! compiler vectorises. Dilation is the complement of the erosion of the complement
//! (with the border rule above, this is exact). The median counts the set voxels of the
//! box with prefix sums along `i` and `j` and a running sum over `k`, O(1) per voxel for
//! any kernel size. Planes are processed in parallel chunks.
//!
//! # Example
//! ```
//! use ndarray::Array3;
//! use segkit::kernels::morphology::{dilate_ellipsoid, erode_ellipsoid, median_box};
//! let row = |v: &[u8]| Array3::from_shape_vec((1, 1, v.len()), v.to_vec()).unwrap();
//! // The border voxels survive erosion: outside the image is ignored.
//! assert_eq!(erode_ellipsoid(row(&[1, 1, 1, 0, 1]).view(), [1, 1, 3]).into_raw_vec_and_offset().0, [1, 1, 0, 0, 0]);
//! assert_eq!(dilate_ellipsoid(row(&[0, 0, 1, 0, 0]).view(), [1, 1, 3]).into_raw_vec_and_offset().0, [0, 1, 1, 1, 0]);
//! // At either end the box holds 2 voxels, one set: a tie, the lower median 0.
//! assert_eq!(median_box(row(&[1, 0, 1, 1, 0]).view(), [1, 1, 3]).into_raw_vec_and_offset().0, [0, 1, 1, 1, 0]);
//! ```

use ndarray::{Array3, ArrayView3, ArrayViewMut3, Axis};
use rayon::prelude::*;
use std::collections::VecDeque;

/// One row of a structuring element along `i`: the offsets `dk`, `dj` and the inclusive
/// range `di_min ..= di_max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FootprintRow {
    pub dk: isize,
    pub dj: isize,
    pub di_min: isize,
    pub di_max: isize,
}

/// A structuring element, as rows along `i`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footprint {
    rows: Vec<FootprintRow>,
}

impl Footprint {
    /// The ellipsoid `vtkImageDilateErode3D` inscribes in a box of `kernel_kji` voxels
    /// (sizes along k, j, i; 0 is taken as 1). See the module documentation.
    ///
    /// ```
    /// use segkit::kernels::morphology::Footprint;
    /// assert_eq!(Footprint::ellipsoid([3, 3, 3]).voxels(), 19);
    /// assert_eq!(Footprint::ellipsoid([5, 5, 5]).voxels(), 81);
    /// assert_eq!(Footprint::ellipsoid([1, 5, 3]).voxels(), 11);
    /// ```
    pub fn ellipsoid(kernel_kji: [usize; 3]) -> Self {
        // (offset, squared normalised distance) along one axis, as vtkImageEllipsoidSource
        // computes it: centre (k - 1) / 2, radius k / 2, in the box's own indices.
        let axis = |size: usize| -> Vec<(isize, f64)> {
            let size = size.max(1);
            let centre = (size - 1) as f64 * 0.5;
            let radius = size as f64 * 0.5;
            let middle = (size / 2) as isize;
            (0..size)
                .map(|idx| {
                    let t = (idx as f64 - centre) / radius;
                    (idx as isize - middle, t * t)
                })
                .collect()
        };
        let (ak, aj, ai) = (
            axis(kernel_kji[0]),
            axis(kernel_kji[1]),
            axis(kernel_kji[2]),
        );
        let mut rows = Vec::new();
        for &(dk, s2) in &ak {
            for &(dj, s1) in &aj {
                // The distance grows with |di|, so the voxels inside form one range.
                let mut inside = ai
                    .iter()
                    .filter(|&&(_, s0)| s0 + s1 + s2 <= 1.0)
                    .map(|&(di, _)| di);
                if let Some(first) = inside.next() {
                    let last = inside.next_back().unwrap_or(first);
                    rows.push(FootprintRow {
                        dk,
                        dj,
                        di_min: first,
                        di_max: last,
                    });
                }
            }
        }
        Footprint { rows }
    }

    /// The rows of the footprint.
    pub fn rows(&self) -> &[FootprintRow] {
        &self.rows
    }

    /// Number of voxels in the footprint.
    pub fn voxels(&self) -> usize {
        self.rows
            .iter()
            .map(|r| (r.di_max - r.di_min + 1) as usize)
            .sum()
    }
}

/// Erosion with the ellipsoid of `kernel_kji` voxels (k, j, i): a voxel stays 1 when it
/// and every neighbour of the footprint **inside the image** are non-zero
/// (`vtkImageDilateErode3D` eroding 1 into 0). The image border does not erode.
///
/// ```
/// use ndarray::Array3;
/// use segkit::kernels::morphology::erode_ellipsoid;
/// // A full image stays full: the border does not erode.
/// let mut m = Array3::<u8>::ones((1, 3, 5));
/// assert_eq!(erode_ellipsoid(m.view(), [1, 3, 3]), m);
/// // A hole erodes its 3 x 3 neighbourhood (in one slice the kernel is a full square).
/// m[[0, 1, 2]] = 0;
/// let e = erode_ellipsoid(m.view(), [1, 3, 3]);
/// assert_eq!(e.into_raw_vec_and_offset().0, [1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1]);
/// ```
pub fn erode_ellipsoid(mask: ArrayView3<u8>, kernel_kji: [usize; 3]) -> Array3<u8> {
    erode(mask, &Footprint::ellipsoid(kernel_kji))
}

/// Dilation with the ellipsoid of `kernel_kji` voxels (k, j, i): a voxel becomes 1 when
/// it or a neighbour of the footprint inside the image is non-zero. Nothing grows in
/// from outside the image.
pub fn dilate_ellipsoid(mask: ArrayView3<u8>, kernel_kji: [usize; 3]) -> Array3<u8> {
    dilate(mask, &Footprint::ellipsoid(kernel_kji))
}

/// Opening (erosion, then dilation) with the ellipsoid of `kernel_kji` voxels: removes
/// what the footprint does not fit in. The result lies inside the input.
///
/// ```
/// use ndarray::Array3;
/// use segkit::kernels::morphology::open_ellipsoid;
/// // A one-voxel spur on a 3-voxel-thick bar disappears with a 3 x 3 kernel.
/// let mut m = Array3::<u8>::zeros((1, 5, 7));
/// for j in 1..4 { for i in 0..7 { m[[0, j, i]] = 1; } }
/// m[[0, 0, 3]] = 1;
/// let opened = open_ellipsoid(m.view(), [1, 3, 3]);
/// assert_eq!(opened[[0, 0, 3]], 0);
/// assert_eq!(opened[[0, 2, 3]], 1);
/// ```
pub fn open_ellipsoid(mask: ArrayView3<u8>, kernel_kji: [usize; 3]) -> Array3<u8> {
    let fp = Footprint::ellipsoid(kernel_kji);
    dilate(erode(mask, &fp).view(), &fp)
}

/// Closing (dilation, then erosion) with the ellipsoid of `kernel_kji` voxels: fills
/// gaps the footprint does not fit in. The result contains the input.
pub fn close_ellipsoid(mask: ArrayView3<u8>, kernel_kji: [usize; 3]) -> Array3<u8> {
    let fp = Footprint::ellipsoid(kernel_kji);
    erode(dilate(mask, &fp).view(), &fp)
}

/// Erosion with any footprint (see [`erode_ellipsoid`]).
pub fn erode(mask: ArrayView3<u8>, footprint: &Footprint) -> Array3<u8> {
    erode_rows(mask, footprint, false)
}

/// Dilation with any footprint (see [`dilate_ellipsoid`]): the complement of the
/// erosion of the complement, so neighbours outside the image are ignored here too.
pub fn dilate(mask: ArrayView3<u8>, footprint: &Footprint) -> Array3<u8> {
    erode_rows(mask, footprint, true)
}

/// Planes per parallel task: about four tasks per thread, but not so few planes that
/// the planes a task reads beyond its own (`reach`) dominate.
fn plane_chunk(nk: usize, reach: usize) -> usize {
    let tasks = rayon::current_num_threads().max(1) * 4;
    nk.div_ceil(tasks).max(2 * reach + 1).max(1)
}

/// Erosion of "set" voxels, where set = non-zero, or zero when `complement` (then the
/// output is complemented too, which makes it a dilation).
fn erode_rows(mask: ArrayView3<u8>, footprint: &Footprint, complement: bool) -> Array3<u8> {
    let (nk, nj, ni) = mask.dim();
    let mut out = Array3::<u8>::zeros((nk, nj, ni));
    if out.is_empty() {
        return out;
    }
    let mask = mask.as_standard_layout();
    let Some(input) = mask.as_slice() else {
        unreachable!("a standard-layout array is contiguous")
    };
    // The distinct di ranges, and each row's index into them.
    let mut ranges: Vec<(isize, isize)> = Vec::new();
    let rows: Vec<(isize, isize, usize)> = footprint
        .rows
        .iter()
        .map(|r| {
            let range = (r.di_min, r.di_max);
            let n = ranges.iter().position(|&x| x == range).unwrap_or_else(|| {
                ranges.push(range);
                ranges.len() - 1
            });
            (r.dk, r.dj, n)
        })
        .collect();
    let dk_min = rows.iter().map(|r| r.0).min().unwrap_or(0);
    let dk_max = rows.iter().map(|r| r.0).max().unwrap_or(0);
    let plane = nj * ni;
    let chunk = plane_chunk(nk, dk_max.max(-dk_min) as usize);
    let eroded_plane = |p: usize| -> Vec<Vec<u8>> {
        erode_plane_rows(&input[p * plane..(p + 1) * plane], ni, &ranges, complement)
    };

    out.axis_chunks_iter_mut(Axis(0), chunk)
        .into_par_iter()
        .enumerate()
        .for_each(|(c, mut block)| {
            let k0 = c * chunk;
            // Row-eroded input planes, `first` being the plane index of cache[0].
            let mut cache: VecDeque<Vec<Vec<u8>>> = VecDeque::new();
            let mut first = 0usize;
            for (local, mut out_plane) in block.outer_iter_mut().enumerate() {
                let k = k0 + local;
                let lo = (k as isize + dk_min).max(0) as usize;
                let hi = ((k as isize + dk_max) as usize).min(nk - 1);
                if cache.is_empty() {
                    first = lo;
                }
                while first < lo && !cache.is_empty() {
                    cache.pop_front();
                    first += 1;
                }
                if cache.is_empty() {
                    first = lo;
                }
                while first + cache.len() <= hi {
                    cache.push_back(eroded_plane(first + cache.len()));
                }
                let Some(out_slice) = out_plane.as_slice_mut() else {
                    unreachable!("planes of a new array are contiguous")
                };
                let centre = &input[k * plane..(k + 1) * plane];
                for (o, &v) in out_slice.iter_mut().zip(centre) {
                    *o = u8::from((v != 0) != complement);
                }
                for j in 0..nj {
                    let out_row = &mut out_slice[j * ni..(j + 1) * ni];
                    for &(dk, dj, n) in &rows {
                        let (p, jj) = (k as isize + dk, j as isize + dj);
                        if p < 0 || p >= nk as isize || jj < 0 || jj >= nj as isize {
                            continue; // outside the image: ignored
                        }
                        let e = &cache[p as usize - first][n];
                        let e_row = &e[jj as usize * ni..(jj as usize + 1) * ni];
                        for (o, &x) in out_row.iter_mut().zip(e_row) {
                            *o &= x;
                        }
                    }
                }
                if complement {
                    for o in out_slice.iter_mut() {
                        *o ^= 1;
                    }
                }
            }
        });
    out
}

/// For one plane (`ni` voxels per row) and each range `(a, b)`: per voxel, 1 when every
/// voxel of its row in `i + a ..= i + b` (clipped to the row) is set.
fn erode_plane_rows(
    plane: &[u8],
    ni: usize,
    ranges: &[(isize, isize)],
    complement: bool,
) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = ranges.iter().map(|_| vec![0u8; plane.len()]).collect();
    // zeros[i] = number of unset voxels before i in the row.
    let mut zeros = vec![0u32; ni + 1];
    for (j, row) in plane.chunks_exact(ni).enumerate() {
        let mut count = 0u32;
        for (i, &v) in row.iter().enumerate() {
            zeros[i] = count;
            count += u32::from((v != 0) == complement);
        }
        zeros[ni] = count;
        if count == 0 || count as usize == ni {
            // A uniform row: each clipped window holds the voxel itself at least when
            // the range contains 0, and otherwise a non-empty part of the same row.
            let fill = u8::from(count == 0);
            for (n, &(a, b)) in ranges.iter().enumerate() {
                let dst = &mut out[n][j * ni..(j + 1) * ni];
                if a <= 0 && b >= 0 {
                    dst.fill(fill);
                } else {
                    window_all_set(dst, &zeros, a, b);
                }
            }
            continue;
        }
        for (n, &(a, b)) in ranges.iter().enumerate() {
            window_all_set(&mut out[n][j * ni..(j + 1) * ni], &zeros, a, b);
        }
    }
    out
}

/// `dst[i] = 1` when no unset voxel lies in `i + a ..= i + b` clipped to the row, from the
/// row's prefix count of unset voxels `zeros` (length `dst.len() + 1`). An empty clipped
/// window counts as all set (nothing to erode with).
fn window_all_set(dst: &mut [u8], zeros: &[u32], a: isize, b: isize) {
    let n = dst.len() as isize;
    // Interior: i + a >= 0 and i + b <= n - 1.
    let start = (-a).clamp(0, n);
    let end = (n - b).clamp(start, n);
    for i in (0..start).chain(end..n) {
        let lo = (i + a).clamp(0, n);
        let hi = (i + b + 1).clamp(lo, n);
        dst[i as usize] = u8::from(zeros[hi as usize] == zeros[lo as usize]);
    }
    if start < end {
        let (s, e) = (start as usize, end as usize);
        let lo = &zeros[(s as isize + a) as usize..(e as isize + a) as usize];
        let hi = &zeros[(s as isize + b + 1) as usize..(e as isize + b + 1) as usize];
        for ((d, &l), &h) in dst[s..e].iter_mut().zip(lo).zip(hi) {
            *d = u8::from(l == h);
        }
    }
}

/// Median of the box of `kernel_kji` voxels (k, j, i; 0 is taken as 1) around each voxel
/// of a 0/1 image (`vtkImageMedian3D`): 1 when strictly more than half of the box's voxels
/// **inside the image** are non-zero. The box spans offsets `-(k/2) ..= k - 1 - k/2`, so
/// it is centred for odd sizes. A clipped box with an even number of voxels and a tie
/// gives 0 (VTK's lower median).
///
/// ```
/// use ndarray::Array3;
/// use segkit::kernels::morphology::median_box;
/// // A lone voxel disappears, a hole in a plane is filled (3 x 3 box in one slice).
/// let mut m = Array3::<u8>::ones((1, 3, 3));
/// m[[0, 1, 1]] = 0;
/// assert_eq!(median_box(m.view(), [1, 3, 3])[[0, 1, 1]], 1);
/// // The corner's clipped box has 4 voxels, 3 of them set: 1.
/// assert_eq!(median_box(m.view(), [1, 3, 3])[[0, 0, 0]], 1);
/// ```
pub fn median_box(mask: ArrayView3<u8>, kernel_kji: [usize; 3]) -> Array3<u8> {
    let (nk, nj, ni) = mask.dim();
    let mut out = Array3::<u8>::zeros((nk, nj, ni));
    if out.is_empty() {
        return out;
    }
    let mask = mask.as_standard_layout();
    let Some(input) = mask.as_slice() else {
        unreachable!("a standard-layout array is contiguous")
    };
    let size = kernel_kji.map(|s| s.max(1));
    // Window offsets lo ..= hi per axis, and the clipped window length at each position.
    let lo = size.map(|s| -((s / 2) as isize));
    let hi = size.map(|s| (s - 1 - s / 2) as isize);
    let clipped = |a: usize, n: usize| -> Vec<u64> {
        (0..n as isize)
            .map(|x| ((x + hi[a]).min(n as isize - 1) - (x + lo[a]).max(0) + 1) as u64)
            .collect()
    };
    let (ck, cj, ci) = (clipped(0, nk), clipped(1, nj), clipped(2, ni));
    let plane = nj * ni;
    let chunk = plane_chunk(nk, size[0] / 2);
    let plane_counts = |p: usize| box_counts_2d(&input[p * plane..(p + 1) * plane], nj, ni, lo, hi);

    out.axis_chunks_iter_mut(Axis(0), chunk)
        .into_par_iter()
        .enumerate()
        .for_each(|(c, block)| {
            median_block(
                block,
                c * chunk,
                nk,
                lo[0],
                hi[0],
                &plane_counts,
                [&ck, &cj, &ci],
            )
        });
    out
}

/// The median for output planes `k0 ..`: a running sum over k of the planes' 2-D box
/// counts, compared with half the clipped box volume.
fn median_block(
    mut block: ArrayViewMut3<u8>,
    k0: usize,
    nk: usize,
    lo_k: isize,
    hi_k: isize,
    plane_counts: &(dyn Fn(usize) -> Vec<u32> + Sync),
    clipped: [&Vec<u64>; 3],
) {
    let [ck, cj, ci] = clipped;
    let ni = ci.len();
    // The 2-D counts of planes `first ..` in the current window, and their sum.
    let mut window: VecDeque<Vec<u32>> = VecDeque::new();
    let mut first = 0usize;
    let mut sum = vec![0u32; cj.len() * ni];
    for (local, mut out_plane) in block.outer_iter_mut().enumerate() {
        let k = k0 + local;
        let a = (k as isize + lo_k).max(0) as usize;
        let b = ((k as isize + hi_k).max(0) as usize).min(nk - 1);
        while first < a {
            match window.pop_front() {
                Some(c) => sub(&mut sum, &c),
                None => break,
            }
            first += 1;
        }
        if window.is_empty() {
            first = a;
        }
        while first + window.len() <= b {
            let c = plane_counts(first + window.len());
            add(&mut sum, &c);
            window.push_back(c);
        }
        let Some(out_slice) = out_plane.as_slice_mut() else {
            unreachable!("planes of a new array are contiguous")
        };
        for (j, (out_row, sum_row)) in out_slice
            .chunks_exact_mut(ni)
            .zip(sum.chunks_exact(ni))
            .enumerate()
        {
            let kj = ck[k] * cj[j];
            for ((o, &s), &c) in out_row.iter_mut().zip(sum_row).zip(ci.iter()) {
                *o = u8::from(2 * s as u64 > kj * c);
            }
        }
    }
}

fn add(sum: &mut [u32], x: &[u32]) {
    for (s, &v) in sum.iter_mut().zip(x) {
        *s += v;
    }
}

fn sub(sum: &mut [u32], x: &[u32]) {
    for (s, &v) in sum.iter_mut().zip(x) {
        *s -= v;
    }
}

/// Number of non-zero voxels in the clipped box `j + lo[1] ..= j + hi[1]`,
/// `i + lo[2] ..= i + hi[2]` around each voxel of one plane.
fn box_counts_2d(plane: &[u8], nj: usize, ni: usize, lo: [isize; 3], hi: [isize; 3]) -> Vec<u32> {
    // Counts along i, from each row's prefix sum.
    let mut rows = vec![0u32; nj * ni];
    let mut prefix = vec![0u32; ni + 1];
    for (src, dst) in plane.chunks_exact(ni).zip(rows.chunks_exact_mut(ni)) {
        let mut c = 0u32;
        for (i, &v) in src.iter().enumerate() {
            prefix[i] = c;
            c += u32::from(v != 0);
        }
        prefix[ni] = c;
        if c == 0 {
            continue;
        }
        for (i, d) in dst.iter_mut().enumerate() {
            let a = (i as isize + lo[2]).clamp(0, ni as isize) as usize;
            let b = (i as isize + hi[2] + 1).clamp(a as isize, ni as isize) as usize;
            *d = prefix[b] - prefix[a];
        }
    }
    // Then along j: prefix sums of whole rows.
    let mut column_prefix = vec![0u32; (nj + 1) * ni];
    for j in 0..nj {
        let (done, rest) = column_prefix.split_at_mut((j + 1) * ni);
        let prev = &done[j * ni..];
        for ((d, &p), &r) in rest[..ni]
            .iter_mut()
            .zip(prev)
            .zip(&rows[j * ni..(j + 1) * ni])
        {
            *d = p + r;
        }
    }
    let mut out = vec![0u32; nj * ni];
    for (j, dst) in out.chunks_exact_mut(ni).enumerate() {
        let a = (j as isize + lo[1]).clamp(0, nj as isize) as usize;
        let b = (j as isize + hi[1] + 1).clamp(a as isize, nj as isize) as usize;
        let (top, bottom) = (
            &column_prefix[b * ni..(b + 1) * ni],
            &column_prefix[a * ni..(a + 1) * ni],
        );
        for ((d, &t), &u) in dst.iter_mut().zip(top).zip(bottom) {
            *d = t - u;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force: VTK's loops, voxel by voxel.
    fn naive_erode(m: &Array3<u8>, fp: &Footprint, dilate: bool) -> Array3<u8> {
        let (nk, nj, ni) = m.dim();
        let mut out = m.mapv(|v| u8::from(v != 0));
        for ((k, j, i), o) in out.indexed_iter_mut() {
            let erode_value = u8::from(!dilate);
            if *o != erode_value {
                continue;
            }
            for r in fp.rows() {
                for di in r.di_min..=r.di_max {
                    let (kk, jj, ii) = (k as isize + r.dk, j as isize + r.dj, i as isize + di);
                    if kk < 0
                        || jj < 0
                        || ii < 0
                        || kk >= nk as isize
                        || jj >= nj as isize
                        || ii >= ni as isize
                    {
                        continue;
                    }
                    if u8::from(m[[kk as usize, jj as usize, ii as usize]] != 0) != erode_value {
                        *o = 1 - erode_value;
                    }
                }
            }
        }
        out
    }

    fn naive_median(m: &Array3<u8>, size: [usize; 3]) -> Array3<u8> {
        let dims = [m.dim().0, m.dim().1, m.dim().2];
        Array3::from_shape_fn(m.dim(), |(k, j, i)| {
            let p = [k, j, i];
            let r: Vec<(usize, usize)> = (0..3)
                .map(|a| {
                    let lo = (p[a] as isize - (size[a] / 2) as isize).max(0) as usize;
                    let hi = (p[a] + size[a] - size[a] / 2).min(dims[a]);
                    (lo, hi)
                })
                .collect();
            let w = m.slice(ndarray::s![r[0].0..r[0].1, r[1].0..r[1].1, r[2].0..r[2].1]);
            u8::from(2 * w.iter().filter(|&&v| v != 0).count() > w.len())
        })
    }

    #[test]
    fn ellipsoid_footprints_have_vtks_voxel_counts() {
        assert_eq!(Footprint::ellipsoid([3, 3, 3]).voxels(), 19);
        assert_eq!(Footprint::ellipsoid([5, 5, 5]).voxels(), 81);
        // Kernel (i, j, k) = (3, 5, 1) in VTK's order.
        assert_eq!(Footprint::ellipsoid([1, 5, 3]).voxels(), 11);
        assert_eq!(Footprint::ellipsoid([1, 1, 1]).voxels(), 1);
        assert_eq!(Footprint::ellipsoid([0, 0, 0]).voxels(), 1);
        // A 3-voxel line.
        let fp = Footprint::ellipsoid([1, 1, 3]);
        assert_eq!(
            fp.rows(),
            &[FootprintRow {
                dk: 0,
                dj: 0,
                di_min: -1,
                di_max: 1
            }]
        );
    }

    #[test]
    fn anisotropic_kernels_erode_along_each_axis_by_its_own_size() {
        // 5 x 7 x 9 box with a single hole in the middle: a (1, 3, 5) kernel erodes the
        // footprint around it: 5 voxels along i in the hole's row, 3 in the rows above
        // and below, none in other slices.
        let mut m = Array3::<u8>::ones((5, 7, 9));
        m[[2, 3, 4]] = 0;
        let e = erode_ellipsoid(m.view(), [1, 3, 5]);
        assert_eq!(e.iter().filter(|&&v| v == 0).count(), 11);
        assert_eq!(e[[2, 2, 2]], 1);
        assert_eq!(e[[2, 2, 3]], 0);
        assert_eq!(e[[2, 3, 2]], 0);
        assert_eq!(e[[2, 3, 1]], 1);
        assert_eq!(e[[2, 2, 4]], 0);
        assert_eq!(e[[2, 1, 4]], 1);
        assert_eq!(e[[1, 3, 4]], 1);
    }

    #[test]
    fn the_border_neither_erodes_nor_dilates() {
        let full = Array3::<u8>::ones((4, 5, 6));
        assert_eq!(erode_ellipsoid(full.view(), [5, 5, 5]), full);
        let empty = Array3::<u8>::zeros((4, 5, 6));
        assert_eq!(dilate_ellipsoid(empty.view(), [5, 5, 5]), empty);
    }

    #[test]
    fn median_ties_take_the_lower_value() {
        // Clipped at both ends of a 4-voxel row with a 5-voxel kernel: windows of 3, 4, 4, 3.
        let m = Array3::from_shape_vec((1, 1, 4), vec![1u8, 1, 0, 0]).unwrap();
        assert_eq!(
            median_box(m.view(), [1, 1, 5]).into_raw_vec_and_offset().0,
            [1, 0, 0, 0]
        );
    }

    #[test]
    fn opening_is_inside_and_closing_contains_the_input() {
        let m = Array3::from_shape_fn((6, 7, 8), |(k, j, i)| {
            u8::from((k * 5 + j * 3 + i * 7) % 4 != 0)
        });
        let o = open_ellipsoid(m.view(), [3, 3, 3]);
        let c = close_ellipsoid(m.view(), [3, 3, 3]);
        for ((&a, &b), &x) in o.iter().zip(c.iter()).zip(m.iter()) {
            assert!(a <= x && x <= b);
        }
    }

    proptest::proptest! {
        #[test]
        fn kernels_match_vtks_loops(
            dims in (1usize..7, 1usize..8, 1usize..9),
            size in (0usize..6, 0usize..6, 0usize..7),
            fill in 1u32..100,
            seed in proptest::collection::vec(0u32..100, 6 * 7 * 8),
        ) {
            let (nk, nj, ni) = dims;
            let m = Array3::from_shape_fn(dims, |(k, j, i)| u8::from(seed[(k * nj + j) * ni + i] < fill) * 3);
            let size = [size.0, size.1, size.2];
            let fp = Footprint::ellipsoid(size);
            proptest::prop_assert_eq!(erode(m.view(), &fp), naive_erode(&m, &fp, false));
            proptest::prop_assert_eq!(dilate(m.view(), &fp), naive_erode(&m, &fp, true));
            let s1 = size.map(|s| s.max(1));
            proptest::prop_assert_eq!(median_box(m.view(), size), naive_median(&m, s1));
            let _ = nk;
        }
    }
}
