//! Automatic threshold selection, as the Threshold effect's "Automatic threshold" computes it.
//!
//! Slicer (`vtkITKImageThresholdCalculator`, `Libs/vtkITK/vtkITKImageThresholdCalculator.cxx`)
//! builds an ITK `ImageToHistogramFilter` histogram of the **whole** source volume with
//! [`HISTOGRAM_BINS`] bins and `AutoMinimumMaximum`, hands it to one of ITK's
//! `*ThresholdCalculator`s and reads the threshold back as a `double`. This module
//! re-implements both steps so that the value is the same as Slicer's, bit for bit where the
//! arithmetic allows it. The reference is ITK 5.4 (Slicer builds its ITK fork
//! `slicer-v5.4.7`; the PyPI `slicer-core` wheel ships ITK 5.4).
//!
//! # The histogram ([`Histogram::of`])
//!
//! * The range is the data minimum `lo` and maximum `max`. ITK then widens the top by a
//!   "marginal scale": `hi = max + ((max - lo) / 64) / 100`, so the maximum falls inside the
//!   last bin. (The histogram measurement type is `double` for every pixel type, so ITK's
//!   integer branch that adds 1 instead is never taken.)
//! * The bin width is computed in **single precision**: `w = (f32(hi) - f32(lo)) / 64f32`.
//!   Bin `j` spans `[lo + f64(f32(j) * w), lo + f64(f32(j + 1) * w))`; the last bin ends at
//!   `hi` exactly. The calculators see these edges, so they are reproduced exactly.
//! * A voxel goes to the bin found by ITK's `Histogram::GetIndex` (a binary search over the
//!   bin minima, with the value equal to the top edge put into the last bin).
//! * Bin "measurements" are the bin centres `(min + max) / 2`. Which one a calculator returns
//!   differs: Otsu returns the **upper edge** of its bin, every other method the **centre**
//!   (Triangle the centre of the bin *after* the one it finds).
//!
//! # Edge cases
//!
//! * **Empty image** (no voxels, or only NaN): [`AutoThresholdError::Empty`]. ITK's
//!   calculators throw "Histogram is empty" (Otsu divides by zero).
//! * **Constant image** (min == max): ITK's margin is 0, every bin has zero width at the
//!   constant value `c` and every voxel lands in the last bin. Nine methods then return `c`,
//!   exactly as Slicer does; Intermodes throws in ITK ([`AutoThresholdError::Failed`]), Li and
//!   Triangle read past the histogram ([`AutoThresholdError::NotSupported`]).
//! * **NaN** voxels are ignored. ITK's behaviour with NaN depends on how its threads split the
//!   image (NaN poisons `std::min`/`std::max` in whichever thread sees it) and NaN voxels are
//!   counted in bin 32, so no fixed behaviour exists to match. For an image without NaN the
//!   two agree.
//! * **Infinite** voxels, or a range that overflows single precision:
//!   [`AutoThresholdError::NotSupported`]; ITK's bin edges are NaN/infinite there.
//! * Where ITK **throws** (e.g. Kittler-Illingworth "tau2 = 0", Intermodes never bimodal after
//!   10000 smoothings, Huang cannot look up a mean): [`AutoThresholdError::Failed`]. Slicer
//!   logs the error and its calculator returns 0; segkit reports the failure instead of that 0.
//! * Where ITK's result is **undefined** (reads past the 64 bins, e.g. Li when its rounded
//!   estimate falls outside the histogram, or loops for ever):
//!   [`AutoThresholdError::NotSupported`].
//! * ITK stores the voxel count in a 32-bit `int` in Li, MaximumEntropy, Shanbhag and Yen; the
//!   same wrap-around is reproduced for images of 2^31 voxels or more.
//!
//! # Speed
//!
//! The histogram is built with rayon over contiguous runs of voxels, in native integer
//! arithmetic where possible. 8- and 16-bit images take one pass (a count per possible value,
//! then one bin look-up per distinct value). Wider types take two passes, as ITK does: the
//! range, then the bins, through a value -> bin table for integers whose range is under 2^20,
//! else an arithmetic guess checked against the exact edges. The calculators themselves work
//! on 64 bins and cost microseconds. Measured on a 512 x 512 x 300 CT, release build, 2
//! cores shared with other builds (load ~2.7): i16 65-135 ms, i32 150-290 ms, f32 550-700 ms
//! (bound by float-to-integer conversion).

// The calculators index bins the way ITK's loops do, which keeps them easy to check against
// ITK; negated comparisons are deliberate (`!(a < b)` is not `a >= b` for NaN, and ITK's
// choice is what must be matched); `v as i64` is a no-op only in the i64 instance of a macro.
#![allow(
    clippy::needless_range_loop,
    clippy::neg_cmp_op_on_partial_ord,
    clippy::unnecessary_cast
)]

use std::any::TypeId;

use ndarray::ArrayView3;
use rayon::prelude::*;

use crate::volume::{Scalar, ScalarType};

/// `chunk` as a slice of its primitive integer type `$p`, bound to `$s` in `$body` (each
/// integer type in turn, so the body is compiled once per type with native arithmetic).
macro_rules! with_int_slice {
    ($chunk:expr, |$s:ident| $body:block) => {{
        let chunk = $chunk;
        if let Some($s) = same_type::<_, u8>(chunk) {
            $body
        } else if let Some($s) = same_type::<_, i8>(chunk) {
            $body
        } else if let Some($s) = same_type::<_, u16>(chunk) {
            $body
        } else if let Some($s) = same_type::<_, i16>(chunk) {
            $body
        } else if let Some($s) = same_type::<_, u32>(chunk) {
            $body
        } else if let Some($s) = same_type::<_, i32>(chunk) {
            $body
        } else if let Some($s) = same_type::<_, u64>(chunk) {
            $body
        } else if let Some($s) = same_type::<_, i64>(chunk) {
            $body
        } else {
            unreachable!("with_int_slice on a non-integer voxel type")
        }
    }};
}

/// Number of histogram bins Slicer's threshold calculator uses.
pub const HISTOGRAM_BINS: usize = 64;

const N: usize = HISTOGRAM_BINS;

/// ITK's `itk::Math::eps` / `NumericTraits<double>::epsilon()`.
const EPS: f64 = f64::EPSILON;

/// The automatic threshold methods of Slicer's Threshold effect (`AutoThresholdMethod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AutoThresholdMethod {
    Otsu,
    Huang,
    IsoData,
    KittlerIllingworth,
    Li,
    MaximumEntropy,
    Moments,
    RenyiEntropy,
    Shanbhag,
    Triangle,
    Yen,
    Intermodes,
}

impl AutoThresholdMethod {
    /// Every method, in the order of Slicer's method list (`OTSU` first, the default).
    pub const ALL: [Self; 12] = [
        Self::Otsu,
        Self::Huang,
        Self::IsoData,
        Self::KittlerIllingworth,
        Self::Li,
        Self::MaximumEntropy,
        Self::Moments,
        Self::RenyiEntropy,
        Self::Shanbhag,
        Self::Triangle,
        Self::Yen,
        Self::Intermodes,
    ];

    /// The parameter value Slicer stores in `AutoThresholdMethod` (`"OTSU"`, `"ISO_DATA"`, ...).
    pub fn slicer_name(self) -> &'static str {
        match self {
            Self::Otsu => "OTSU",
            Self::Huang => "HUANG",
            Self::IsoData => "ISO_DATA",
            Self::KittlerIllingworth => "KITTLER_ILLINGWORTH",
            Self::Li => "LI",
            Self::MaximumEntropy => "MAXIMUM_ENTROPY",
            Self::Moments => "MOMENTS",
            Self::RenyiEntropy => "RENYI_ENTROPY",
            Self::Shanbhag => "SHANBHAG",
            Self::Triangle => "TRIANGLE",
            Self::Yen => "YEN",
            Self::Intermodes => "INTERMODES",
        }
    }

    /// The method for a Slicer parameter value (exact, upper case, as Slicer compares it).
    pub fn from_slicer_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.slicer_name() == s)
    }
}

impl std::fmt::Display for AutoThresholdMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.slicer_name())
    }
}

/// Why no threshold was computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AutoThresholdError {
    /// No voxel has a value (the image is empty, or all NaN).
    #[error("automatic threshold: the image has no voxels (or only NaN)")]
    Empty,
    /// ITK's calculator throws on this histogram. Slicer logs the error and uses 0.
    #[error(
        "automatic threshold {method}: the method fails on this image ({reason}); \
         Slicer logs an error and sets the threshold to 0"
    )]
    Failed {
        method: AutoThresholdMethod,
        reason: &'static str,
    },
    /// ITK's result is undefined here (out-of-range read, endless loop, non-finite range),
    /// so there is nothing to match.
    #[error("automatic threshold {method}: not supported for this image: {reason}")]
    NotSupported {
        method: AutoThresholdMethod,
        reason: &'static str,
    },
}

impl From<AutoThresholdError> for crate::Error {
    fn from(e: AutoThresholdError) -> Self {
        crate::Error::InvalidArgument(e.to_string())
    }
}

/// The threshold Slicer's Threshold effect computes for `method` on the whole volume.
///
/// `voxels` may have any memory layout; the value does not depend on voxel order.
pub fn auto_threshold<T: Scalar>(
    voxels: ArrayView3<T>,
    method: AutoThresholdMethod,
) -> Result<f64, AutoThresholdError> {
    Histogram::of(voxels)
        .map_err(|e| e.with_method(method))?
        .threshold(method)
}

/// A 64-bin histogram laid out as ITK's `ImageToHistogramFilter` lays it out.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Lower edge of each bin.
    pub bin_min: [f64; N],
    /// Upper edge of each bin (`bin_max[j] == bin_min[j + 1]`).
    pub bin_max: [f64; N],
    /// Voxel count of each bin.
    pub frequency: [u64; N],
    /// ITK's `ClipBinsAtEnds`: values outside the edges are dropped (true unless the top
    /// margin would overflow `f64`).
    clip_at_ends: bool,
}

impl Histogram {
    /// Empty bins between `lo` (the data minimum) and `max` (the data maximum), with ITK's
    /// `AutoMinimumMaximum` margin and single-precision bin width.
    pub fn with_range(lo: f64, max: f64) -> Result<Self, AutoThresholdError> {
        let unsupported = |reason| AutoThresholdError::NotSupported {
            method: AutoThresholdMethod::Otsu, // replaced by the caller's method
            reason,
        };
        if !lo.is_finite() || !max.is_finite() {
            return Err(unsupported(
                "infinite voxel values (ITK's bin edges are undefined)",
            ));
        }
        // ImageToHistogramFilter::ApplyMarginalScale, floating-point branch.
        let margin = ((max - lo) / N as f64) / 100.0;
        let (hi, clip_at_ends) = if (f64::MAX - max) > margin {
            (max + margin, true)
        } else {
            (max, false)
        };
        // Histogram::Initialize: the interval is computed in single precision.
        let width = ((hi as f32) - (lo as f32)) / N as f32;
        if !width.is_finite() {
            return Err(unsupported(
                "the intensity range overflows single precision (ITK's bin edges are undefined)",
            ));
        }
        let mut bin_min = [0.0; N];
        let mut bin_max = [0.0; N];
        for j in 0..N {
            bin_min[j] = lo + f64::from(j as f32 * width);
            bin_max[j] = if j + 1 < N {
                lo + f64::from((j as f32 + 1.0) * width)
            } else {
                hi
            };
        }
        Ok(Histogram {
            bin_min,
            bin_max,
            frequency: [0; N],
            clip_at_ends,
        })
    }

    /// The histogram of `voxels` (NaN ignored), as Slicer's calculator builds it.
    pub fn of<T: Scalar>(voxels: ArrayView3<T>) -> Result<Self, AutoThresholdError> {
        match T::TYPE {
            ScalarType::U8 | ScalarType::I8 | ScalarType::U16 | ScalarType::I16 => {
                Self::by_value_counts(voxels)
            }
            _ => Self::by_range_then_bins(voxels),
        }
    }

    /// 8- and 16-bit integers, one pass: count each possible value, then bin the distinct
    /// values.
    fn by_value_counts<T: Scalar>(voxels: ArrayView3<T>) -> Result<Self, AutoThresholdError> {
        // Keys are `value - type minimum`, so 2^16 of them cover every type here.
        const LEN: usize = 1 << 16;
        let base: i64 = match T::TYPE {
            ScalarType::I8 => -(1 << 7),
            ScalarType::I16 => -(1 << 15),
            _ => 0,
        };
        let counts = par_fold(
            voxels,
            || vec![0u64; LEN],
            |mut acc, chunk: &[T]| {
                with_int_slice!(chunk, |s| {
                    for &v in s {
                        acc[(v as i64 - base) as usize] += 1;
                    }
                });
                acc
            },
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        );
        let first = counts.iter().position(|&c| c > 0);
        let last = counts.iter().rposition(|&c| c > 0);
        let (Some(first), Some(last)) = (first, last) else {
            return Err(AutoThresholdError::Empty);
        };
        let value = |k: usize| (k as i64 + base) as f64;
        let mut h = Self::with_range(value(first), value(last))?;
        for (k, &c) in counts.iter().enumerate().take(last + 1).skip(first) {
            if c > 0 {
                if let Some(b) = h.index_of(value(k)) {
                    h.frequency[b] += c;
                }
            }
        }
        Ok(h)
    }

    /// Wider types, two passes as ITK: the range, then the bins (through a value -> bin
    /// table for integers whose range is small, else one bin search per voxel).
    fn by_range_then_bins<T: Scalar>(voxels: ArrayView3<T>) -> Result<Self, AutoThresholdError> {
        // Pass 1 in the voxel type itself (vectorises); NaN fails every comparison.
        let range = par_fold(
            voxels,
            || None,
            |acc: Option<(T, T, u64)>, chunk: &[T]| {
                let mut it = chunk.iter().copied().filter(|v| v.partial_cmp(v).is_some());
                let Some(first) = it.next() else {
                    return acc;
                };
                let (mut lo, mut hi, mut n) = (first, first, 1u64);
                for v in it {
                    if v < lo {
                        lo = v;
                    }
                    if v > hi {
                        hi = v;
                    }
                    n += 1;
                }
                merge_range(acc, Some((lo, hi, n)))
            },
            merge_range,
        );
        let Some((lo_t, hi_t, _)) = range else {
            return Err(AutoThresholdError::Empty);
        };
        let (lo, max) = (lo_t.to_f64(), hi_t.to_f64());
        let mut h = Self::with_range(lo, max)?;

        const LUT_MAX: f64 = (1 << 20) as f64;
        const EXACT: f64 = (1u64 << 53) as f64;
        let small_int_range =
            !T::TYPE.is_float() && max - lo < LUT_MAX && lo.abs() < EXACT && max.abs() < EXACT;
        let freq = if small_int_range {
            // Integers: the bin of every value in the range, looked up by `value - min`.
            let lut: Vec<u8> = (0..=(max - lo) as i64)
                .map(|d| h.index_of(lo + d as f64).map_or(u8::MAX, |b| b as u8))
                .collect();
            let lo_i = lo as i64;
            par_fold(
                voxels,
                || [0u64; N + 1],
                |mut acc, chunk: &[T]| {
                    let mut sub = [[0u32; N + 1]; 4];
                    with_int_slice!(chunk, |s| {
                        for (n, &v) in s.iter().enumerate() {
                            let b = lut[(v as i64).wrapping_sub(lo_i) as u64 as usize];
                            sub[n & 3][usize::from(b).min(N)] += 1;
                        }
                    });
                    add_counts(&mut acc, &sub);
                    acc
                },
                add_arrays,
            )
        } else {
            let strict = h.clip_at_ends
                && h.bin_min.windows(2).all(|w| w[0] < w[1])
                && h.bin_min[N - 1] < h.bin_max[N - 1];
            let inv_width = N as f64 / (h.bin_max[N - 1] - h.bin_min[0]);
            let mut edges = [0.0; N + 1];
            edges[..N].copy_from_slice(&h.bin_min);
            edges[N] = h.bin_max[N - 1];
            let hr = &h;
            par_fold(
                voxels,
                || [0u64; N + 1],
                |mut acc, chunk: &[T]| {
                    let mut sub = [[0u32; N + 1]; 4];
                    for (n, v) in chunk.iter().enumerate() {
                        let x = v.to_f64();
                        if x.is_nan() {
                            continue;
                        }
                        let bin = if strict {
                            hr.index_of_strict(x, &edges, inv_width)
                        } else {
                            hr.index_of(x)
                        };
                        sub[n & 3][bin.unwrap_or(N)] += 1;
                    }
                    add_counts(&mut acc, &sub);
                    acc
                },
                add_arrays,
            )
        };
        // Slot N collected values outside the edges, which ITK drops.
        h.frequency.copy_from_slice(&freq[..N]);
        Ok(h)
    }

    /// Total count (ITK's `GetTotalFrequency`).
    pub fn total(&self) -> u64 {
        self.frequency.iter().sum()
    }

    /// Bin centre (ITK's `GetMeasurement`).
    pub fn center(&self, i: usize) -> f64 {
        (self.bin_min[i] + self.bin_max[i]) / 2.0
    }

    fn freq(&self, i: usize) -> f64 {
        self.frequency[i] as f64
    }

    /// The bin of `x`, as ITK's `Histogram::GetIndex` finds it (a binary search over the bin
    /// minima whose tie-breaking matters only for zero-width bins); `None` outside the edges.
    pub fn index_of(&self, x: f64) -> Option<usize> {
        if x < self.bin_min[0] {
            return (!self.clip_at_ends).then_some(0);
        }
        if x >= self.bin_max[N - 1] {
            let keep = !self.clip_at_ends || float_almost_equal(x, self.bin_max[N - 1], 4);
            return keep.then_some(N - 1);
        }
        let (mut begin, mut end) = (0i64, N as i64 - 1);
        let mut mid = (end + 1) / 2;
        // The edges never decrease, so the search ends within log2(64) + 1 steps.
        for _ in 0..2 * N {
            let m = mid as usize;
            let median = self.bin_min[m];
            if x < median {
                end = mid - 1;
            } else if x > median {
                if x < self.bin_max[m] && x >= self.bin_min[m] {
                    return Some(m);
                }
                begin = mid + 1;
            } else {
                // Equal, or NaN (which ITK therefore counts in bin 32).
                return Some(m);
            }
            mid = begin + (end - begin) / 2;
            if !(0..N as i64).contains(&mid) {
                return None;
            }
        }
        None
    }

    /// [`Self::index_of`] when the edges increase strictly (`edges` = the 64 bin minima and
    /// the top): then the bin is the one with `edges[b] <= x < edges[b + 1]`, found from an
    /// arithmetic guess corrected by one either way, and checked.
    #[inline]
    fn index_of_strict(&self, x: f64, edges: &[f64; N + 1], inv_width: f64) -> Option<usize> {
        if x >= edges[0] && x < edges[N] {
            let g = (((x - edges[0]) * inv_width) as i64).clamp(0, N as i64 - 1) as usize;
            let g = g - usize::from(x < edges[g]);
            let g = g + usize::from(x >= edges[g + 1]);
            if x >= edges[g] && x < edges[g + 1] {
                return Some(g);
            }
        }
        self.index_of(x)
    }

    /// ITK's `Histogram::Mean(0)`.
    fn mean(&self) -> f64 {
        let mut sum = 0.0;
        for i in 0..N {
            sum += self.freq(i) * self.center(i);
        }
        sum / self.total() as f64
    }

    /// ITK's `Histogram::Quantile(0, p)`: linear interpolation inside the bin where the
    /// cumulative fraction crosses `p`, from the bottom for `p < 0.5`, else from the top.
    fn quantile(&self, p: f64) -> f64 {
        let total = self.total() as f64;
        let mut cumulated = 0.0;
        let mut p_n_prev;
        let mut f_n;
        if p < 0.5 {
            let mut n = 0;
            let mut p_n = 0.0;
            loop {
                f_n = self.freq(n);
                cumulated += f_n;
                p_n_prev = p_n;
                p_n = cumulated / total;
                n += 1;
                if !(n < N && p_n < p) {
                    break;
                }
            }
            let (min, max) = (self.bin_min[n - 1], self.bin_max[n - 1]);
            min + ((p - p_n_prev) / (f_n / total)) * (max - min)
        } else {
            let mut n = N as i64 - 1;
            let mut m = 0;
            let mut p_n = 1.0;
            loop {
                f_n = self.freq(n as usize);
                cumulated += f_n;
                p_n_prev = p_n;
                p_n = 1.0 - cumulated / total;
                n -= 1;
                m += 1;
                if !(m < N && p_n > p) {
                    break;
                }
            }
            let b = (n + 1) as usize;
            let (min, max) = (self.bin_min[b], self.bin_max[b]);
            max - ((p_n_prev - p) / (f_n / total)) * (max - min)
        }
    }

    /// The threshold `method` computes from this histogram.
    pub fn threshold(&self, method: AutoThresholdMethod) -> Result<f64, AutoThresholdError> {
        use AutoThresholdMethod as M;
        if self.total() == 0 {
            return Err(AutoThresholdError::Empty);
        }
        let r = match method {
            M::Otsu => Ok(self.otsu()),
            M::Huang => self.huang(),
            M::IsoData => Ok(self.iso_data()),
            M::KittlerIllingworth => self.kittler_illingworth(),
            M::Li => self.li(),
            M::MaximumEntropy => Ok(self.maximum_entropy()),
            M::Moments => Ok(self.moments()),
            M::RenyiEntropy => self.renyi_entropy(),
            M::Shanbhag => Ok(self.shanbhag()),
            M::Triangle => self.triangle(),
            M::Yen => Ok(self.yen()),
            M::Intermodes => self.intermodes(),
        };
        r.map_err(|e| e.with_method(method))
    }

    /// Otsu, N. (1979) "A threshold selection method from gray-level histograms", IEEE Trans.
    /// Systems, Man and Cybernetics 9(1): maximise the between-class variance.
    ///
    /// ITK (`OtsuThresholdCalculator` through `OtsuMultipleThresholdsCalculator` with one
    /// threshold) maximises `Σ ω_k μ_k²` (the variance up to a constant) with running class
    /// means over bin centres, considers split bins 0..=62 (never 63, the last), accepts
    /// a new maximum only when it exceeds the old one by more than 1 ULP, and returns the
    /// **upper edge** of the split bin, not its centre.
    fn otsu(&self) -> f64 {
        let total = self.total();
        let total_f = total as f64;
        let mut global_mean = 0.0;
        for i in 0..N {
            global_mean += self.center(i) * self.freq(i);
        }
        global_mean /= total_f;

        let mut f0 = self.frequency[0];
        let mut f1 = total - f0;
        let mut m0 = if f0 > 0 { self.center(0) } else { 0.0 };
        let mean_sum = m0 * f0 as f64;
        let mut m1 = if f1 > 0 {
            (global_mean * total_f - mean_sum) / f1 as f64
        } else {
            0.0
        };
        let between = |f0: u64, m0: f64, f1: u64, m1: f64| {
            let mut v = 0.0;
            v += f0 as f64 * (m0 * m0);
            v += f1 as f64 * (m1 * m1);
            v / total_f
        };
        let mut max_var = between(f0, m0, f1, m1);
        let mut best = 0;
        for t in 1..=N - 2 {
            let (m_old, f_old) = (m0, f0);
            f0 += self.frequency[t];
            m0 = if f0 > 0 {
                (m_old * f_old as f64 + self.center(t) * self.freq(t)) / f0 as f64
            } else {
                0.0
            };
            f1 = total - f0;
            m1 = global_mean * total_f - m0 * f0 as f64;
            m1 = if f1 > 0 { m1 / f1 as f64 } else { 0.0 };
            let var = between(f0, m0, f1, m1);
            if var > max_var && !float_almost_equal(max_var, var, 1) {
                max_var = var;
                best = t;
            }
        }
        self.bin_max[best]
    }

    /// Huang, L.-K. & Wang, M.-J. J. (1995) "Image thresholding by minimizing the measures of
    /// fuzziness", Pattern Recognition 28(1): minimise Shannon fuzziness of the membership
    /// `1 / (1 + |i - μ| / C)` to the class mean `μ`.
    ///
    /// ITK's port of ImageJ: the class means are rounded to integers (so on images whose
    /// range is a few units the means jump), then turned into a bin index; the distance is
    /// measured in bins. Bin 0's intensity is left out of the running weighted sum (a quirk
    /// kept here). A threshold whose lower mean falls outside the histogram is skipped; an
    /// upper mean outside it makes ITK throw.
    fn huang(&self) -> Result<f64, AutoThresholdError> {
        let first = (0..N).find(|&i| self.frequency[i] > 0).unwrap_or(0);
        let mut last = N - 1;
        while last > first && self.frequency[last] == 0 {
            last -= 1;
        }
        let mut s = vec![0.0; last + 1];
        let mut w = vec![0.0; last + 1];
        s[0] = self.freq(0);
        for i in first.max(1)..=last {
            s[i] = s[i - 1] + self.freq(i);
            w[i] = w[i - 1] + self.center(i) * self.freq(i);
        }
        let c = (last - first) as f64;
        let mut smu = vec![0.0; last + 1 - first];
        for (i, v) in smu.iter_mut().enumerate().skip(1) {
            let mu = 1.0 / (1.0 + i as f64 / c);
            *v = -mu * mu.ln() - (1.0 - mu) * (1.0 - mu).ln();
        }
        let entropy_term = |i: usize, mu_idx: usize| {
            smu.get(i.abs_diff(mu_idx))
                .map(|&e| e * self.freq(i))
                .ok_or(undefined("Huang's distance table is read out of range"))
        };
        let mut best_t = 0;
        let mut best_entropy = f64::MAX;
        for t in first..last {
            let Some(mu_idx) = self.index_of(round_half_up(w[t] / s[t])) else {
                continue;
            };
            let mut entropy = 0.0;
            for i in first..=t {
                entropy += entropy_term(i, mu_idx)?;
            }
            let mu = round_half_up((w[last] - w[t]) / (s[last] - s[t]));
            let mu_idx = self
                .index_of(mu)
                .ok_or(failed("Failed looking up histogram"))?;
            for i in t + 1..=last {
                entropy += entropy_term(i, mu_idx)?;
            }
            if best_entropy > entropy {
                best_entropy = entropy;
                best_t = t;
            }
        }
        Ok(self.center(best_t))
    }

    /// Ridler, T. W. & Calvard, S. (1978) "Picture thresholding using an iterative selection
    /// method", IEEE Trans. SMC 8(8) (IsoData): the threshold is the mean of the two class
    /// means.
    ///
    /// ITK's port of ImageJ's "IJ_IsoData" variant does not iterate to a fixed point: it scans
    /// bins upwards from the first non-empty one and returns the first bin centre that is at
    /// least the average of the means below (inclusive) and above it. If none is, it returns
    /// the histogram mean.
    fn iso_data(&self) -> f64 {
        let mut pos = 0;
        loop {
            if let Some(i) = (pos..N).find(|&i| self.frequency[i] > 0) {
                pos = i;
            }
            if pos >= N {
                return self.mean();
            }
            let (mut l, mut totl, mut h, mut toth) = (0.0, 0.0, 0.0, 0.0);
            for i in 0..=pos {
                totl += self.freq(i);
                l += self.center(i) * self.freq(i);
            }
            for i in pos + 1..N {
                toth += self.freq(i);
                h += self.center(i) * self.freq(i);
            }
            if totl > EPS && toth > EPS {
                l /= totl;
                h /= toth;
                if self.center(pos) >= (l + h) * 0.5 {
                    return self.center(pos);
                }
            }
            pos += 1;
        }
    }

    /// Kittler, J. & Illingworth, J. (1986) "Minimum error thresholding", Pattern Recognition
    /// 19(1): fit two Gaussians and iterate the minimum-error threshold.
    ///
    /// ITK starts from the bin of the mean, solves the quadratic in intensity units and maps
    /// the root back to a bin each step; it stops when the bin repeats or the root turns
    /// imaginary, and throws when a class is empty or has zero variance (common: a tail of
    /// the histogram with one occupied bin). A cycle would make ITK loop for ever; that is
    /// reported as not supported.
    fn kittler_illingworth(&self) -> Result<f64, AutoThresholdError> {
        let a = |j: usize| (0..=j).fold(0.0, |x, i| x + self.freq(i));
        let b = |j: usize| (0..=j).fold(0.0, |x, i| x + self.center(i) * self.freq(i));
        let c = |j: usize| {
            (0..=j).fold(0.0, |x, i| {
                let m = self.center(i);
                x + m * m * self.freq(i)
            })
        };
        let mut sum = 0.0;
        for i in 0..N {
            sum += self.center(i) * self.freq(i);
        }
        let mean = sum / self.total() as f64;
        let mut threshold = self
            .index_of(mean)
            .ok_or(failed("Failed histogram lookup"))? as i64;
        let mut t_prev: i64 = -2;
        let (as1, bs1, cs1) = (a(N - 1), b(N - 1), c(N - 1));
        if as1.abs() < EPS {
            return Err(failed("As1 = 0."));
        }
        let mut steps = 0;
        while threshold != t_prev {
            steps += 1;
            if steps > 10_000 {
                return Err(undefined("the iteration cycles (ITK never returns)"));
            }
            let t = threshold as usize;
            let (at, bt, ct) = (a(t), b(t), c(t));
            if at.abs() < EPS {
                return Err(failed("At = 0."));
            }
            let mu = bt / at;
            if (as1 - at).abs() < EPS {
                break; // ITK: "not converging: As1 = At"
            }
            let nu = (bs1 - bt) / (as1 - at);
            let p = at / as1;
            let q = (as1 - at) / as1;
            let sigma2 = ct / at - mu * mu;
            let tau2 = (cs1 - ct) / (as1 - at) - nu * nu;
            if sigma2 < EPS {
                return Err(failed("sigma2 <= 0"));
            }
            if tau2.abs() < EPS {
                return Err(failed("tau2 = 0"));
            }
            if p.abs() < EPS {
                return Err(failed("p = 0"));
            }
            let w0 = 1.0 / sigma2 - 1.0 / tau2;
            let w1 = mu / sigma2 - nu / tau2;
            let w2 = (mu * mu) / sigma2 - (nu * nu) / tau2
                + ((sigma2 * (q * q)) / (tau2 * p * p)).log10();
            let sqterm = w1 * w1 - w0 * w2;
            if sqterm < EPS {
                break; // ITK: "not converging" (imaginary root), keep the current bin
            }
            let root = if w0.abs() < EPS {
                -w2 / w1
            } else {
                t_prev = threshold;
                let r = (w1 + sqterm.sqrt()) / w0;
                if r.is_nan() {
                    threshold = t_prev;
                    break;
                }
                r
            };
            threshold = self
                .index_of(root)
                .ok_or(failed("failed to lookup threshold"))? as i64;
        }
        Ok(self.center(threshold as usize))
    }

    /// Li, C. H. & Tam, P. K. S. (1998) "An iterative algorithm for minimum cross entropy
    /// thresholding", Pattern Recognition Letters 19(8).
    ///
    /// ITK's port of ImageJ iterates `t = (μ_b - μ_o) / (ln μ_b - ln μ_o)` with the means
    /// shifted so the range starts at 0 (when the histogram has negative values), rounds `t`
    /// to an **integer** and looks it up as an intensity. When that integer falls outside the
    /// histogram (typical for float images with a small range) ITK reads past its 64 bins -
    /// the crash that made Slicer hide this method - so this returns not supported.
    fn li(&self) -> Result<f64, AutoThresholdError> {
        let bin_min = self.bin_min[0].min(0.0);
        let num_pixels = self.total() as i32; // ITK stores the count in an `int`
        let mut mean = 0.0;
        for i in 0..N {
            mean += self.center(i) * self.freq(i);
        }
        mean /= f64::from(num_pixels);
        let mut new_thresh = mean;
        let mut steps = 0;
        let hist_thresh = loop {
            steps += 1;
            if steps > 10_000 {
                return Err(undefined(
                    "the iteration does not converge (ITK never returns)",
                ));
            }
            let old_thresh = new_thresh;
            let ot = f64::from(cvtt_i32(old_thresh + 0.5));
            let hist_thresh = self.index_of(ot).ok_or(undefined(
                "the rounded threshold falls outside the histogram (ITK reads out of range)",
            ))?;
            let (mut sum_back, mut num_back) = (0.0, 0i32);
            for i in 0..=hist_thresh {
                sum_back += self.center(i) * self.freq(i);
                num_back = (num_back as u64).wrapping_add(self.frequency[i]) as i32;
            }
            let (mut sum_obj, mut num_obj) = (0.0, 0i32);
            for i in hist_thresh + 1..N {
                sum_obj += self.center(i) * self.freq(i);
                num_obj = (num_obj as u64).wrapping_add(self.frequency[i]) as i32;
            }
            let mean_back = if num_back == 0 {
                0.0
            } else {
                sum_back / f64::from(num_back)
            } - bin_min;
            let mean_obj = if num_obj == 0 {
                0.0
            } else {
                sum_obj / f64::from(num_obj)
            } - bin_min;
            let temp = (mean_back - mean_obj) / (mean_back.ln() - mean_obj.ln());
            new_thresh = if temp < -EPS {
                f64::from(cvtt_i32(temp - 0.5))
            } else {
                f64::from(cvtt_i32(temp + 0.5))
            };
            new_thresh += bin_min;
            if !((new_thresh - old_thresh).abs() > 0.5) {
                break hist_thresh;
            }
        };
        Ok(self.center(hist_thresh))
    }

    /// Kapur, J. N., Sahoo, P. K. & Wong, A. K. C. (1985) "A new method for gray-level picture
    /// thresholding using the entropy of the histogram", CVGIP 29(3): maximise the sum of the
    /// Shannon entropies of the two classes.
    ///
    /// ITK 5.4 seeds the maximum with the smallest *positive* double and requires an
    /// improvement of more than 1e-5, so a histogram whose entropies are all ~0 returns bin 0
    /// (fixed in later ITK, not in the one Slicer ships).
    fn maximum_entropy(&self) -> f64 {
        let (norm, p1, p2, first, last) = self.cumulative_int_total();
        let mut max_ent = f64::MIN_POSITIVE;
        let mut threshold = 0;
        for it in first..=last {
            let mut ent_back = 0.0;
            for ih in 0..=it {
                if self.frequency[ih] != 0 {
                    let x = norm[ih] / p1[it];
                    ent_back -= x * x.ln();
                }
            }
            let mut ent_obj = 0.0;
            for ih in it + 1..N {
                if self.frequency[ih] != 0 {
                    let x = norm[ih] / p2[it];
                    ent_obj -= x * x.ln();
                }
            }
            let tot_ent = ent_back + ent_obj;
            if max_ent < tot_ent - 0.00001 {
                max_ent = tot_ent;
                threshold = it;
            }
        }
        self.center(threshold)
    }

    /// Tsai, W.-H. (1985) "Moment-preserving thresholding: a new approach", CVGIP 29(3):
    /// choose the two-level image with the same first three moments.
    ///
    /// ITK solves for the object fraction `p0` over bin centres and returns the centre of the
    /// first bin whose cumulative fraction exceeds `p0`.
    fn moments(&self) -> f64 {
        let total = self.total() as f64;
        let histo: Vec<f64> = (0..N).map(|i| self.freq(i) / total).collect();
        let (m0, mut m1, mut m2, mut m3) = (1.0f64, 0.0f64, 0.0f64, 0.0f64);
        for (i, &p) in histo.iter().enumerate() {
            let m = self.center(i);
            m1 += m * p;
            m2 += m * m * p;
            m3 += m * m * m * p;
        }
        let cd = m0 * m2 - m1 * m1;
        let c0 = (-m2 * m2 + m1 * m3) / cd;
        let c1 = (m0 * -m3 + m2 * m1) / cd;
        let z0 = 0.5 * (-c1 - (c1 * c1 - 4.0 * c0).sqrt());
        let z1 = 0.5 * (-c1 + (c1 * c1 - 4.0 * c0).sqrt());
        let p0 = (z1 - m1) / (z1 - z0);
        let mut sum = 0.0;
        let mut threshold = 0;
        for (i, &p) in histo.iter().enumerate() {
            sum += p;
            if sum > p0 {
                threshold = i;
                break;
            }
        }
        self.center(threshold)
    }

    /// Sahoo, P. K., Wilkins, C. & Yeager, J. (1997) "Threshold selection using Renyi's
    /// entropy", Pattern Recognition 30(1): combine the maximum Renyi-entropy thresholds for
    /// α = 0.5, 1 and 2 with weights that depend on how far apart they are.
    ///
    /// ITK's port of ImageJ: α = 1 is Kapur's entropy without the 1e-5 tolerance; the
    /// combined bin is truncated, not rounded; the first/last non-empty bins are found with
    /// a tolerance of one epsilon on the cumulative sums.
    fn renyi_entropy(&self) -> Result<f64, AutoThresholdError> {
        let total = self.total() as f64;
        let norm: Vec<f64> = (0..N).map(|i| self.freq(i) / total).collect();
        let (p1, p2) = cumulative(&norm);
        let first = (0..N).find(|&i| !(p1[i].abs() < EPS)).unwrap_or(0);
        let mut last = N - 1;
        let mut ih = N - 1;
        loop {
            if !(p2[ih].abs() < EPS) {
                last = ih;
                break;
            }
            if ih == first {
                if first == 0 {
                    // ITK's unsigned loop index wraps below 0 here.
                    return Err(undefined("the last non-empty bin search runs past bin 0"));
                }
                break;
            }
            ih -= 1;
        }
        let range = first..=last;

        // α = 1 (Shannon).
        let mut t2 = 0;
        let mut max_ent = f64::MIN_POSITIVE;
        for it in range.clone() {
            let mut ent_back = 0.0;
            for ih in 0..=it {
                if self.frequency[ih] != 0 {
                    let x = norm[ih] / p1[it];
                    ent_back -= x * x.ln();
                }
            }
            let mut ent_obj = 0.0;
            for ih in it + 1..N {
                if self.frequency[ih] != 0 {
                    let x = norm[ih] / p2[it];
                    ent_obj -= x * x.ln();
                }
            }
            let tot_ent = ent_back + ent_obj;
            if max_ent < tot_ent {
                max_ent = tot_ent;
                t2 = it;
            }
        }
        // α = 0.5.
        let mut t1 = 0;
        let mut max_ent = f64::MIN_POSITIVE;
        let term = 1.0 / (1.0 - 0.5);
        for it in range.clone() {
            let mut ent_back = 0.0;
            for &x in &norm[..=it] {
                ent_back += (x / p1[it]).sqrt();
            }
            let mut ent_obj = 0.0;
            for &x in &norm[it + 1..] {
                ent_obj += (x / p2[it]).sqrt();
            }
            let product = ent_back * ent_obj;
            let tot_ent = if product > 0.0 {
                term * (ent_back * ent_obj).ln()
            } else {
                0.0
            };
            if tot_ent > max_ent {
                max_ent = tot_ent;
                t1 = it;
            }
        }
        // α = 2.
        let mut t3 = 0;
        let mut max_ent = 0.0;
        let term = 1.0 / (1.0 - 2.0);
        for it in range {
            let mut ent_back = 0.0;
            for &x in &norm[..=it] {
                let x = x / p1[it];
                ent_back += x * x;
            }
            let mut ent_obj = 0.0;
            for &x in &norm[it + 1..] {
                let x = x / p2[it];
                ent_obj += x * x;
            }
            let product = ent_back * ent_obj;
            let tot_ent = if product > 0.0 {
                term * product.ln()
            } else {
                0.0
            };
            if tot_ent > max_ent {
                max_ent = tot_ent;
                t3 = it;
            }
        }
        // ITK: t_star2 is the α = 1 result, t_star1 α = 0.5, t_star3 α = 2; sort them.
        let (mut s1, mut s2, mut s3) = (t1, t2, t3);
        if s2 < s1 {
            std::mem::swap(&mut s1, &mut s2);
        }
        if s3 < s2 {
            std::mem::swap(&mut s2, &mut s3);
        }
        if s2 < s1 {
            std::mem::swap(&mut s1, &mut s2);
        }
        let near = |a: usize, b: usize| (a as f64 - b as f64).abs() <= 5.0;
        let (beta1, beta2, beta3) = match (near(s1, s2), near(s2, s3)) {
            (true, true) | (false, false) => (1.0, 2.0, 1.0),
            (true, false) => (0.0, 1.0, 3.0),
            (false, true) => (3.0, 1.0, 0.0),
        };
        let omega = p1[s3] - p1[s1];
        let real = s1 as f64 * (p1[s1] + 0.25 * omega * beta1)
            + s2 as f64 * 0.25 * omega * beta2
            + s3 as f64 * (p2[s3] + 0.25 * omega * beta3);
        let opt = real as usize;
        if !(real >= 0.0) || opt >= N {
            return Err(undefined("the combined bin falls outside the histogram"));
        }
        Ok(self.center(opt))
    }

    /// Shanbhag, A. G. (1994) "Utilization of information measure as a means of image
    /// thresholding", CVGIP: Graphical Models and Image Processing 56(5): minimise the
    /// difference of the fuzzy-membership information of the two classes.
    ///
    /// ITK's port of ImageJ, including its quirk of starting the background sum at bin 1.
    fn shanbhag(&self) -> f64 {
        let (norm, p1, p2, first, last) = self.cumulative_int_total();
        let mut min_ent = f64::MAX;
        let mut threshold = 0;
        for it in first..=last {
            let mut ent_back = 0.0;
            let term = 0.5 / p1[it];
            for ih in 1..=it {
                ent_back -= norm[ih] * (1.0 - term * p1[ih - 1]).ln();
            }
            ent_back *= term;
            let mut ent_obj = 0.0;
            let term = 0.5 / p2[it];
            for ih in it + 1..N {
                ent_obj -= norm[ih] * (1.0 - term * p2[ih]).ln();
            }
            ent_obj *= term;
            let tot_ent = (ent_back - ent_obj).abs();
            if tot_ent < min_ent {
                min_ent = tot_ent;
                threshold = it;
            }
        }
        self.center(threshold)
    }

    /// Zack, G. W., Rogers, W. E. & Latt, S. A. (1977) "Automatic measurement of sister
    /// chromatid exchange frequency", J. Histochem. Cytochem. 25(7) (Triangle): the bin
    /// farthest below the line from the histogram peak to the far end of the histogram.
    ///
    /// ITK's variant draws the line from the peak to the 1 % or 99 % quantile (whichever is
    /// farther from the peak, in bins), measures the vertical gap in single precision, and
    /// returns the centre of the bin **after** the one with the largest gap.
    fn triangle(&self) -> Result<f64, AutoThresholdError> {
        let mut mx = f64::MIN_POSITIVE;
        let mut mx_idx = 0usize;
        for j in 0..N {
            if self.freq(j) > mx {
                mx_idx = j;
                mx = self.freq(j);
            }
        }
        let out_of_range = || undefined("a 1 %/99 % quantile falls outside the histogram");
        let one = self
            .index_of(self.quantile(0.01))
            .ok_or_else(out_of_range)?;
        let nn = self
            .index_of(self.quantile(0.99))
            .ok_or_else(out_of_range)?;
        let mut triangle = [0.0f64; N];
        let dist = |a: usize, b: usize| ((a as f32) - (b as f32)).abs();
        let thresh = if dist(mx_idx, one) > dist(mx_idx, nn) {
            if one > mx_idx {
                return Err(undefined("the 1 % quantile lies above the histogram peak"));
            }
            let slope = mx / (mx_idx as f64 - one as f64);
            for k in one..mx_idx {
                let line = (slope * (k - one) as f64) as f32;
                triangle[k] = f64::from(line - self.frequency[k] as f32);
            }
            one + first_max(&triangle[one..mx_idx])
        } else {
            if nn < mx_idx {
                return Err(undefined("the 99 % quantile lies below the histogram peak"));
            }
            let slope = -mx / (nn as f64 - mx_idx as f64);
            for k in mx_idx..nn {
                let line = (slope * (k - mx_idx) as f64 + mx) as f32;
                triangle[k] = f64::from(line - self.frequency[k] as f32);
            }
            mx_idx + first_max(&triangle[mx_idx..nn])
        };
        if thresh + 1 >= N {
            return Err(undefined(
                "the threshold bin is the last one (ITK reads past it)",
            ));
        }
        Ok(self.center(thresh + 1))
    }

    /// Yen, J.-C., Chang, F.-J. & Chang, S. (1995) "A new criterion for automatic multilevel
    /// thresholding", IEEE Trans. Image Processing 4(3): maximise the entropic correlation
    /// of the two classes.
    ///
    /// ITK's port of ImageJ, evaluated at every bin, first maximum wins.
    fn yen(&self) -> f64 {
        let total = self.total() as i32; // ITK stores the count in an `int`
        let norm: Vec<f64> = (0..N).map(|i| self.freq(i) / f64::from(total)).collect();
        let mut p1 = [0.0; N];
        let mut p1_sq = [0.0; N];
        let mut p2_sq = [0.0; N];
        p1[0] = norm[0];
        p1_sq[0] = norm[0] * norm[0];
        for i in 1..N {
            p1[i] = p1[i - 1] + norm[i];
            p1_sq[i] = p1_sq[i - 1] + norm[i] * norm[i];
        }
        for i in (0..N - 1).rev() {
            p2_sq[i] = p2_sq[i + 1] + norm[i + 1] * norm[i + 1];
        }
        let mut max_crit = f64::MIN;
        let mut threshold = 0;
        for it in 0..N {
            let sq = p1_sq[it] * p2_sq[it];
            let pq = p1[it] * (1.0 - p1[it]);
            let crit = -(if sq > 0.0 { sq.ln() } else { 0.0 })
                + 2.0 * (if pq > 0.0 { pq.ln() } else { 0.0 });
            if crit > max_crit {
                max_crit = crit;
                threshold = it;
            }
        }
        self.center(threshold)
    }

    /// Prewitt, J. M. S. & Mendelsohn, M. L. (1966) "The analysis of cell images", Annals of
    /// the New York Academy of Sciences 128(3) (Intermodes): smooth the histogram until it
    /// has exactly two local maxima; the threshold is midway between them.
    ///
    /// ITK smooths in place with a 3-point running mean (zero outside the histogram), counts
    /// only strict local maxima of the interior bins, takes the integer midpoint of the two
    /// peak bins and throws after 10000 smoothings (e.g. on a constant image).
    fn intermodes(&self) -> Result<f64, AutoThresholdError> {
        let mut h: Vec<f64> = (0..N).map(|i| self.freq(i)).collect();
        let is_peak = |h: &[f64], k: usize| h[k - 1] < h[k] && h[k + 1] < h[k];
        let bimodal = |h: &[f64]| {
            let mut modes = 0;
            for k in 1..N - 1 {
                if is_peak(h, k) {
                    modes += 1;
                    if modes > 2 {
                        return false;
                    }
                }
            }
            modes == 2
        };
        let mut iterations = 0;
        while !bimodal(&h) {
            let (mut current, mut next) = (0.0, h[0]);
            for i in 0..N - 1 {
                let previous = current;
                current = next;
                next = h[i + 1];
                h[i] = (previous + current + next) / 3.0;
            }
            h[N - 1] = (current + next) / 3.0;
            iterations += 1;
            if iterations > 10_000 {
                return Err(failed(
                    "Exceeded maximum iterations for histogram smoothing.",
                ));
            }
        }
        let tt: usize = (1..N - 1).filter(|&k| is_peak(&h, k)).sum::<usize>() / 2;
        Ok(self.center(tt))
    }

    /// Normalised histogram, cumulative sums and first/last occupied bins as ITK's
    /// MaximumEntropy and Shanbhag compute them (with the count in an `int`, and the
    /// occupied range found with a one-epsilon tolerance on the cumulative sums).
    fn cumulative_int_total(&self) -> (Vec<f64>, Vec<f64>, Vec<f64>, usize, usize) {
        let total = f64::from(self.total() as i32);
        let norm: Vec<f64> = (0..N).map(|i| self.freq(i) / total).collect();
        let (p1, p2) = cumulative(&norm);
        let first = (0..N).find(|&i| !(p1[i].abs() < EPS)).unwrap_or(0);
        let last = (first..N)
            .rev()
            .find(|&i| !(p2[i].abs() < EPS))
            .unwrap_or(N - 1);
        (norm, p1, p2, first, last)
    }
}

impl AutoThresholdError {
    fn with_method(self, method: AutoThresholdMethod) -> Self {
        match self {
            Self::Failed { reason, .. } => Self::Failed { method, reason },
            Self::NotSupported { reason, .. } => Self::NotSupported { method, reason },
            e => e,
        }
    }
}

/// An ITK exception (the method is filled in by [`Histogram::threshold`]).
fn failed(reason: &'static str) -> AutoThresholdError {
    AutoThresholdError::Failed {
        method: AutoThresholdMethod::Otsu,
        reason,
    }
}

/// Undefined behaviour in ITK (the method is filled in by [`Histogram::threshold`]).
fn undefined(reason: &'static str) -> AutoThresholdError {
    AutoThresholdError::NotSupported {
        method: AutoThresholdMethod::Otsu,
        reason,
    }
}

/// `P1[i] = Σ_{k<=i} p_k` and `P2[i] = 1 - P1[i]`, accumulated as ITK does.
fn cumulative(norm: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut p1 = vec![0.0; norm.len()];
    let mut p2 = vec![0.0; norm.len()];
    p1[0] = norm[0];
    p2[0] = 1.0 - p1[0];
    for i in 1..norm.len() {
        p1[i] = p1[i - 1] + norm[i];
        p2[i] = 1.0 - p1[i];
    }
    (p1, p2)
}

/// Index of the first largest value (`std::max_element`); 0 for an empty slice.
fn first_max(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if v[best] < x {
            best = i;
        }
    }
    best
}

/// `itk::Math::Round<double>` on x86-64: `(rint(2x + 0.5) as i64) >> 1`, i.e. halves round
/// up; NaN and out-of-range values give `i64::MIN >> 1`, as `cvtsd2si` does.
fn round_half_up(x: f64) -> f64 {
    let y = (2.0 * x + 0.5).round_ties_even();
    // [-2^63, 2^63): the doubles `cvtsd2si` converts; NaN is outside too.
    let r = if (i64::MIN as f64..i64::MAX as f64).contains(&y) {
        y as i64
    } else {
        i64::MIN
    };
    (r >> 1) as f64
}

/// `static_cast<int>(x)` as x86-64 executes it (`cvttsd2si`): truncation, with NaN and
/// out-of-range values giving `i32::MIN`.
fn cvtt_i32(x: f64) -> i32 {
    if x.is_nan() || x >= 2_147_483_648.0 || x <= -2_147_483_649.0 {
        i32::MIN
    } else {
        x as i32
    }
}

/// `itk::Math::FloatAlmostEqual<double>(x1, x2, max_ulps)` with the default absolute
/// tolerance `0.1 * epsilon`.
fn float_almost_equal(x1: f64, x2: f64, max_ulps: i64) -> bool {
    if (x1 - x2).abs() <= 0.1 * EPS {
        return true;
    }
    if x1.is_sign_negative() != x2.is_sign_negative() {
        return false;
    }
    let as_ulp = |x: f64| {
        let bits = x.to_bits();
        if bits >> 63 != 0 {
            (1u64 << 63).wrapping_sub(bits) as i64
        } else {
            bits as i64
        }
    };
    as_ulp(x1).wrapping_sub(as_ulp(x2)).wrapping_abs() <= max_ulps
}

/// `s` as `&[P]` when `T` is `P`.
fn same_type<T: 'static, P: 'static>(s: &[T]) -> Option<&[P]> {
    if TypeId::of::<T>() == TypeId::of::<P>() {
        // SAFETY: `T` and `P` are the same type, so the slice is valid as `&[P]`.
        Some(unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<P>(), s.len()) })
    } else {
        None
    }
}

/// Combines two partial (min, max, count) results.
fn merge_range<T: Scalar>(a: Option<(T, T, u64)>, b: Option<(T, T, u64)>) -> Option<(T, T, u64)> {
    match (a, b) {
        (Some((l1, h1, n1)), Some((l2, h2, n2))) => Some((
            if l2 < l1 { l2 } else { l1 },
            if h2 > h1 { h2 } else { h1 },
            n1 + n2,
        )),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Adds interleaved per-chunk counters to a running total.
fn add_counts(acc: &mut [u64; N + 1], sub: &[[u32; N + 1]; 4]) {
    for s in sub {
        acc.iter_mut().zip(s).for_each(|(a, &c)| *a += u64::from(c));
    }
}

fn add_arrays(mut a: [u64; N + 1], b: [u64; N + 1]) -> [u64; N + 1] {
    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
    a
}

/// Voxels per parallel work item.
const CHUNK: usize = 1 << 16;

/// Folds `fold` over contiguous runs of voxels in parallel and combines with `reduce`.
fn par_fold<T, A, I, F, R>(voxels: ArrayView3<T>, identity: I, fold: F, reduce: R) -> A
where
    T: Scalar,
    A: Send,
    I: Fn() -> A + Sync + Send,
    F: Fn(A, &[T]) -> A + Sync + Send,
    R: Fn(A, A) -> A + Sync + Send,
{
    if let Some(all) = voxels.as_slice_memory_order() {
        return all
            .par_chunks(CHUNK)
            .fold(&identity, &fold)
            .reduce(&identity, &reduce);
    }
    voxels
        .outer_iter()
        .into_par_iter()
        .fold(&identity, |a, plane| match plane.as_slice_memory_order() {
            Some(s) => fold(a, s),
            None => fold(a, &plane.iter().copied().collect::<Vec<T>>()),
        })
        .reduce(&identity, &reduce)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array3, ShapeBuilder};
    use AutoThresholdMethod as M;

    /// A 1 x 1 x n volume of `values`.
    fn line<T: Scalar>(values: Vec<T>) -> Array3<T> {
        let n = values.len();
        Array3::from_shape_vec((1, 1, n), values).unwrap()
    }

    #[test]
    fn slicer_names_round_trip() {
        for m in M::ALL {
            assert_eq!(M::from_slicer_name(m.slicer_name()), Some(m));
        }
        assert_eq!(M::from_slicer_name("ISO_DATA"), Some(M::IsoData));
        assert_eq!(M::from_slicer_name("otsu"), None);
        let names: std::collections::HashSet<_> = M::ALL.iter().map(|m| m.slicer_name()).collect();
        assert_eq!(names.len(), 12);
    }

    #[test]
    fn bins_follow_itk_marginal_scale_and_single_precision_width() {
        // Range 0..=6300: margin = 6300 / 64 / 100 = 0.984375; width = 6300.984375 / 64 in f32.
        let h = Histogram::with_range(0.0, 6300.0).unwrap();
        let hi = 6300.0 + 6300.0 / 64.0 / 100.0;
        assert_eq!(hi, 6300.984375);
        let width = (hi as f32) / 64.0;
        assert_eq!(h.bin_min[0], 0.0);
        assert_eq!(h.bin_max[N - 1], hi);
        assert_eq!(h.bin_min[10], f64::from(10.0f32 * width));
        assert_eq!(h.bin_max[9], h.bin_min[10]);
        // The maximum lands in the last bin, the minimum in the first.
        assert_eq!(h.index_of(6300.0), Some(N - 1));
        assert_eq!(h.index_of(0.0), Some(0));
        assert_eq!(h.index_of(-1.0), None);
        assert_eq!(h.index_of(7000.0), None);
    }

    #[test]
    fn strict_lookup_matches_itk_binary_search() {
        for (lo, max) in [(-1024.0, 3071.0), (1e6, 1e6 + 1.0), (-0.003, 0.25)] {
            let h = Histogram::with_range(lo, max).unwrap();
            let mut edges = [0.0; N + 1];
            edges[..N].copy_from_slice(&h.bin_min);
            edges[N] = h.bin_max[N - 1];
            let inv = N as f64 / (h.bin_max[N - 1] - h.bin_min[0]);
            let step = (max - lo) / 5000.0;
            for n in -10..5010 {
                let x = lo + f64::from(n) * step;
                assert_eq!(h.index_of_strict(x, &edges, inv), h.index_of(x), "{x}");
            }
            for &e in &edges {
                for x in [e, e.next_down(), e.next_up()] {
                    assert_eq!(h.index_of_strict(x, &edges, inv), h.index_of(x), "{x}");
                }
            }
        }
    }

    #[test]
    fn two_separated_modes_otsu_lands_between_them() {
        // 100 voxels at 10, 100 at 200.
        let mut v = vec![10i16; 100];
        v.extend(vec![200i16; 100]);
        let a = line(v);
        let t = auto_threshold(a.view(), M::Otsu).unwrap();
        assert!(t > 10.0 && t < 200.0, "{t}");
        // All voxels at 10 are in bin 0 (Otsu returns the upper edge of bin 0 at the latest
        // bin with the same variance, i.e. the first), so the threshold is bin 0's top edge.
        let h = Histogram::of(a.view()).unwrap();
        assert_eq!(t, h.bin_max[0]);
        for m in [M::IsoData, M::Moments, M::MaximumEntropy, M::Yen, M::Li] {
            let t = auto_threshold(a.view(), m).unwrap();
            assert!(t > 10.0 && t < 200.0, "{m}: {t}");
        }
    }

    #[test]
    fn otsu_of_hand_made_histogram() {
        // Bins 0..4 hold 5 each, bins 40..44 hold 5 each: the split is anywhere in the gap,
        // and ITK keeps the first split that reaches the maximum (bin 4).
        let mut h = Histogram::with_range(0.0, 6300.0).unwrap();
        for i in (0..5).chain(40..45) {
            h.frequency[i] = 5;
        }
        assert_eq!(h.threshold(M::Otsu).unwrap(), h.bin_max[4]);
        // IsoData: the first occupied bin whose centre is at least the mean of the two class
        // means; empty bins are skipped, so that is bin 40, not a bin in the gap.
        assert_eq!(h.threshold(M::IsoData).unwrap(), h.center(40));
    }

    #[test]
    fn constant_image() {
        // Every voxel lands in the last (zero-width) bin. As in Slicer: most methods return the
        // constant, Intermodes throws, Li and Triangle read past the histogram in ITK.
        let a = Array3::from_elem((3, 4, 5), 7i32);
        let h = Histogram::of(a.view()).unwrap();
        assert_eq!(h.frequency[N - 1], 60);
        assert_eq!(h.total(), 60);
        for m in M::ALL {
            let r = auto_threshold(a.view(), m);
            match m {
                M::Intermodes => {
                    assert!(matches!(
                        r,
                        Err(AutoThresholdError::Failed {
                            method: M::Intermodes,
                            ..
                        })
                    ))
                }
                M::Li | M::Triangle => assert!(
                    matches!(r, Err(AutoThresholdError::NotSupported { method, .. }) if method == m),
                    "{m}: {r:?}"
                ),
                _ => assert_eq!(r, Ok(7.0), "{m}"),
            }
        }
        let f = Array3::from_elem((2, 2, 2), 0.25f32);
        assert_eq!(auto_threshold(f.view(), M::Otsu), Ok(0.25));
    }

    #[test]
    fn empty_and_nan_images() {
        let a = Array3::<f32>::zeros((0, 3, 3));
        assert_eq!(
            auto_threshold(a.view(), M::Otsu),
            Err(AutoThresholdError::Empty)
        );
        let a = Array3::from_elem((2, 2, 2), f32::NAN);
        assert_eq!(
            auto_threshold(a.view(), M::Huang),
            Err(AutoThresholdError::Empty)
        );
        let a = Array3::<u8>::zeros((0, 0, 0));
        assert_eq!(
            auto_threshold(a.view(), M::Otsu),
            Err(AutoThresholdError::Empty)
        );
        // NaN is ignored: same answer as without it.
        let mut v: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 3.5).collect();
        let clean = line(v.clone());
        v.extend([f32::NAN; 5]);
        let with_nan = line(v);
        for m in M::ALL {
            assert_eq!(
                auto_threshold(clean.view(), m),
                auto_threshold(with_nan.view(), m)
            );
        }
    }

    #[test]
    fn infinite_values_are_not_supported() {
        let a = line(vec![0.0f64, 1.0, f64::INFINITY]);
        let e = auto_threshold(a.view(), M::Yen).unwrap_err();
        assert!(
            matches!(e, AutoThresholdError::NotSupported { method: M::Yen, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("YEN"), "{e}");
    }

    #[test]
    fn layout_and_type_do_not_matter() {
        let v: Vec<i16> = (0..4000).map(|i| ((i * 37) % 1000 - 300) as i16).collect();
        let a = Array3::from_shape_vec((10, 20, 20), v.clone()).unwrap();
        let f = Array3::from_shape_vec((10, 20, 20).f(), a.t().iter().copied().collect::<Vec<_>>())
            .unwrap();
        assert_eq!(a, f);
        let wide = a.mapv(i32::from);
        let float = a.mapv(f64::from);
        let sliced = a.slice(ndarray::s![.., ..;-1, ..]);
        for m in M::ALL {
            let t = auto_threshold(a.view(), m);
            assert_eq!(t, auto_threshold(f.view(), m), "{m}");
            assert_eq!(t, auto_threshold(wide.view(), m), "{m}");
            assert_eq!(t, auto_threshold(float.view(), m), "{m}");
            assert_eq!(t, auto_threshold(sliced, m), "{m}");
        }
    }

    #[test]
    fn kittler_illingworth_fails_like_itk_on_a_one_bin_tail() {
        // The upper class is one bin: tau2 = 0, ITK throws.
        let mut v = vec![0u8; 10];
        v.extend([100u8; 5]);
        v.extend([255u8; 3]);
        let e = auto_threshold(line(v).view(), M::KittlerIllingworth).unwrap_err();
        assert!(matches!(e, AutoThresholdError::Failed { .. }), "{e}");
    }

    #[test]
    fn rounding_helpers_match_x86() {
        assert_eq!(round_half_up(1.5), 2.0);
        assert_eq!(round_half_up(-1.5), -1.0);
        assert_eq!(round_half_up(2.5), 3.0);
        assert_eq!(round_half_up(2.49), 2.0);
        assert_eq!(round_half_up(-0.2), 0.0);
        assert_eq!(cvtt_i32(-2.7), -2);
        assert_eq!(cvtt_i32(f64::NAN), i32::MIN);
        assert_eq!(cvtt_i32(3e9), i32::MIN);
        assert!(float_almost_equal(1.0, 1.0 + EPS, 1));
        assert!(!float_almost_equal(1.0, 1.0 + 4.0 * EPS, 1));
        assert!(float_almost_equal(0.0, -0.0, 1));
    }

    #[test]
    fn quantiles_interpolate_inside_bins() {
        let mut h = Histogram::with_range(0.0, 6400.0).unwrap();
        h.frequency = [1; N];
        let q = h.quantile(0.01);
        assert!(q > h.bin_min[0] && q < h.bin_max[0], "{q}");
        let q = h.quantile(0.99);
        assert!(q > h.bin_min[N - 1] && q < h.bin_max[N - 1], "{q}");
    }
}
