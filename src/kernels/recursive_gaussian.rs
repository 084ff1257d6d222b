//! Recursive (IIR) Gaussian smoothing and first derivative along an axis, and the gradient
//! magnitude built from them, as ITK's `RecursiveGaussianImageFilter` and
//! `GradientMagnitudeRecursiveGaussianImageFilter` compute them.
//!
//! # Reference
//! R. Deriche, "Recursively implementing the Gaussian and its derivatives", INRIA RR-1893,
//! 1993 (<https://hal.inria.fr/inria-00074778>), with the 4th-order coefficients of
//! G. Farnebäck and C.-F. Westin, "Improving Deriche-style recursive Gaussian filters",
//! JMIV 2006 (Table 3), as ITK 5.4 uses them (`itkRecursiveGaussianImageFilter.hxx`,
//! `itkRecursiveSeparableImageFilter.hxx`). SimpleITK's `GradientMagnitudeRecursiveGaussian`,
//! which the Watershed effect of SlicerSegmentEditorExtraEffects calls, runs exactly this.
//!
//! # Method (ITK's, step by step)
//! - **Coefficients**: with `σd = σ_mm / spacing` along the axis, the causal filter is
//!   `y[n] = Σ N_m x[n-m] (m = 0..3) - Σ D_m y[n-m] (m = 1..4)` and the anti-causal one
//!   `z[n] = Σ M_m x[n+m] (m = 1..4) - Σ D_m z[n+m]`; the output is `y + z`. The `N` are
//!   normalised so that the smoothing kernel sums to 1 and the derivative kernel's first
//!   moment is 1 (per voxel; `NormalizeAcrossScale` is off, ITK's default).
//! - **Border**: the signal is taken as extended by its end values to infinity: the
//!   missing inputs are the first (last) value, and the missing outputs are replaced by the
//!   first (last) value times the boundary coefficients `BN_m = D_m · ΣN / ΣD`
//!   (`BM_m = D_m · ΣM / ΣD`), the steady-state response to a constant. A line needs at
//!   least 4 voxels (ITK throws otherwise; here an error).
//! - **Precision**: each line is filtered in `f64` (ITK's `RealType`) with ITK's order of
//!   operations, and **stored as `f32`** after every pass (ITK's internal image type is
//!   `float`), so the results match ITK's to the last bit or nearly.
//! - **Gradient magnitude**: for each axis `d` in ITK's order (i, j, k): the first derivative
//!   along `d` of the input, then smoothing along the two other axes in increasing order;
//!   the running sum `acc = f32(acc + (g / spacing_d)²)`; finally `f32(sqrt(acc))`. The
//!   derivative is taken in index space and divided by the spacing, so the direction matrix
//!   plays no part (as in ITK).
//!
//! # Parallelism
//! Lines are independent: each pass works plane by plane in parallel (rayon), and within a
//! plane on blocks of [`LANES`] lines at once laid out side by side, so the recursion over
//! a line's samples runs over contiguous lanes that the compiler vectorises.
//!
//! # Example
//! ```
//! use ndarray::Array3;
//! use segkit::kernels::recursive_gaussian::{smooth_axis, Order};
//! // A constant is left unchanged by the smoothing, border included.
//! let flat = Array3::<f32>::from_elem((1, 1, 8), 5.0);
//! let out = smooth_axis(flat.view(), 2, 1.0, 2.0, Order::Smooth).unwrap();
//! assert!(out.iter().all(|&v| (v - 5.0).abs() < 1e-5));
//! ```

use crate::effects::{Control, EffectError};
use crate::volume::Scalar;
use ndarray::parallel::prelude::*;
use ndarray::{s, Array3, ArrayView2, ArrayView3, ArrayViewMut2, Axis, Zip};

/// Lines filtered together, side by side (a block of lanes).
pub const LANES: usize = 32;
/// Shortest line ITK accepts.
pub const MIN_LINE: usize = 4;
/// ITK's smallest accepted spacing.
const SPACING_TOLERANCE: f64 = 1e-8;

/// Which kernel a pass applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Gaussian smoothing (ITK's `ZeroOrder`).
    #[default]
    Smooth,
    /// First derivative of the Gaussian, per voxel (ITK's `FirstOrder`).
    FirstDerivative,
}

/// The coefficients of one recursive pass (ITK's `m_N*`, `m_D*`, `m_M*`, `m_BN*`, `m_BM*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coefficients {
    /// Causal input weights `N0..N3`.
    pub n: [f64; 4],
    /// Recursion weights `D1..D4`.
    pub d: [f64; 4],
    /// Anti-causal input weights `M1..M4`.
    pub m: [f64; 4],
    /// Causal border weights `BN1..BN4`.
    pub bn: [f64; 4],
    /// Anti-causal border weights `BM1..BM4`.
    pub bm: [f64; 4],
}

impl Coefficients {
    /// ITK's `RecursiveGaussianImageFilter::SetUp` for `sigma_mm` along an axis of
    /// `spacing_mm`, `NormalizeAcrossScale` off.
    ///
    /// # Errors
    /// A sigma that is not a positive number, a spacing below 1e-8 mm (ITK's messages).
    pub fn new(sigma_mm: f64, spacing_mm: f64, order: Order) -> Result<Self, EffectError> {
        if !(sigma_mm.is_finite() && sigma_mm > 0.0) {
            return Err(EffectError::Parameter {
                name: "sigma".into(),
                reason: format!("{sigma_mm} is not a number > 0"),
            });
        }
        let mut direction = 1.0;
        let mut spacing = spacing_mm;
        if spacing < 0.0 {
            direction = -1.0;
            spacing = -spacing;
        }
        if !(spacing.is_finite() && spacing >= SPACING_TOLERANCE) {
            return Err(EffectError::Input(format!(
                "the spacing {spacing_mm} mm is too small (or not a number) for the recursive \
                 Gaussian"
            )));
        }
        let sigmad = sigma_mm / spacing;
        // Farnebäck and Westin 2006, Table 3 (ITK's constants).
        const A1: [f64; 3] = [1.3530, -0.6724, -1.3563];
        const B1: [f64; 3] = [1.8151, -3.4327, 5.2318];
        const W1: f64 = 0.6681;
        const L1: f64 = -1.3932;
        const A2: [f64; 3] = [-0.3531, 0.6724, 0.3446];
        const B2: [f64; 3] = [0.0902, 0.6100, -2.2355];
        const W2: f64 = 2.0787;
        const L2: f64 = -1.3732;

        // ComputeDCoefficients.
        let cos1 = (W1 / sigmad).cos();
        let cos2 = (W2 / sigmad).cos();
        let exp1 = (L1 / sigmad).exp();
        let exp2 = (L2 / sigmad).exp();
        let d4 = exp1 * exp1 * exp2 * exp2;
        let mut d3 = -2.0 * cos1 * exp1 * exp2 * exp2;
        d3 += -2.0 * cos2 * exp2 * exp1 * exp1;
        let mut d2 = 4.0 * cos2 * cos1 * exp1 * exp2;
        d2 += exp1 * exp1 + exp2 * exp2;
        let d1 = -2.0 * (exp2 * cos2 + exp1 * cos1);
        let sd = 1.0 + d1 + d2 + d3 + d4;
        let dd = d1 + 2.0 * d2 + 3.0 * d3 + 4.0 * d4;

        let k = match order {
            Order::Smooth => 0,
            Order::FirstDerivative => 1,
        };
        // ComputeNCoefficients.
        let (a1, b1, a2, b2) = (A1[k], B1[k], A2[k], B2[k]);
        let sin1 = (W1 / sigmad).sin();
        let sin2 = (W2 / sigmad).sin();
        let n0 = a1 + a2;
        let mut n1 = exp2 * (b2 * sin2 - (a2 + 2.0 * a1) * cos2);
        n1 += exp1 * (b1 * sin1 - (a1 + 2.0 * a2) * cos1);
        let mut n2 = (a1 + a2) * cos2 * cos1;
        n2 -= b1 * cos2 * sin1 + b2 * cos1 * sin2;
        n2 *= 2.0 * exp1 * exp2;
        n2 += a2 * exp1 * exp1 + a1 * exp2 * exp2;
        let mut n3 = exp2 * exp1 * exp1 * (b2 * sin2 - a2 * cos2);
        n3 += exp1 * exp2 * exp2 * (b1 * sin1 - a1 * cos1);
        let sn = n0 + n1 + n2 + n3;
        let dn = n1 + 2.0 * n2 + 3.0 * n3;

        let across_scale_normalization = 1.0;
        let mut n = [n0, n1, n2, n3];
        let d = [d1, d2, d3, d4];
        let symmetric = match order {
            Order::Smooth => {
                let alpha0 = 2.0 * sn / sd - n[0];
                for x in &mut n {
                    *x *= across_scale_normalization / alpha0;
                }
                true
            }
            Order::FirstDerivative => {
                let mut alpha1 = 2.0 * (sn * dd - dn * sd) / (sd * sd);
                alpha1 *= direction;
                for x in &mut n {
                    *x *= across_scale_normalization / alpha1;
                }
                false
            }
        };
        // ComputeRemainingCoefficients.
        let m = if symmetric {
            [
                n[1] - d[0] * n[0],
                n[2] - d[1] * n[0],
                n[3] - d[2] * n[0],
                -d[3] * n[0],
            ]
        } else {
            [
                -(n[1] - d[0] * n[0]),
                -(n[2] - d[1] * n[0]),
                -(n[3] - d[2] * n[0]),
                d[3] * n[0],
            ]
        };
        let sn = n[0] + n[1] + n[2] + n[3];
        let sm = m[0] + m[1] + m[2] + m[3];
        let sd = 1.0 + d[0] + d[1] + d[2] + d[3];
        let bn = d.map(|x| x * sn / sd);
        let bm = d.map(|x| x * sm / sd);
        Ok(Coefficients { n, d, m, bn, bm })
    }
}

/// `out[l] = Σ x_m[l] · a_m - Σ y_m[l] · b_m` over `lanes`: one step of the recursion for a
/// block of lines, in ITK's order of operations (`MathEMAMAMAM` then `MathSMAMAMAM`).
#[inline(always)]
fn step(out: &mut [f64], x: [&[f64]; 4], a: [f64; 4], y: [&[f64]; 4], b: [f64; 4]) {
    let n = out.len();
    let (x0, x1, x2, x3) = (&x[0][..n], &x[1][..n], &x[2][..n], &x[3][..n]);
    let (y0, y1, y2, y3) = (&y[0][..n], &y[1][..n], &y[2][..n], &y[3][..n]);
    for l in 0..n {
        let e = x0[l] * a[0] + x1[l] * a[1] + x2[l] * a[2] + x3[l] * a[3];
        out[l] = e - (y0[l] * b[0] + y1[l] * b[1] + y2[l] * b[2] + y3[l] * b[3]);
    }
}

/// ITK's `FilterDataArray` on `lanes` lines of `ln` samples stored side by side
/// (`data[n * lanes + l]` is sample `n` of line `l`): the result in `outs`, `scratch` for
/// the anti-causal part. `ln >= 4`.
///
/// On x86-64 processors with AVX2 (or AVX-512) the same code is compiled for wider vectors
/// and chosen at run time; without fused multiply-add, so the results are the same bits.
fn filter_lanes(
    data: &[f64],
    outs: &mut [f64],
    scratch: &mut [f64],
    ln: usize,
    lanes: usize,
    c: &Coefficients,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the processor has AVX-512F, checked just above.
            unsafe { filter_lanes_avx512(data, outs, scratch, ln, lanes, c) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor has AVX2, checked just above.
            unsafe { filter_lanes_avx2(data, outs, scratch, ln, lanes, c) };
            return;
        }
    }
    filter_lanes_portable(data, outs, scratch, ln, lanes, c);
}

/// [`filter_lanes_portable`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn filter_lanes_avx2(
    data: &[f64],
    outs: &mut [f64],
    scratch: &mut [f64],
    ln: usize,
    lanes: usize,
    c: &Coefficients,
) {
    filter_lanes_portable(data, outs, scratch, ln, lanes, c);
}

/// [`filter_lanes_portable`] compiled for AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn filter_lanes_avx512(
    data: &[f64],
    outs: &mut [f64],
    scratch: &mut [f64],
    ln: usize,
    lanes: usize,
    c: &Coefficients,
) {
    filter_lanes_portable(data, outs, scratch, ln, lanes, c);
}

#[inline(always)]
fn filter_lanes_portable(
    data: &[f64],
    outs: &mut [f64],
    scratch: &mut [f64],
    ln: usize,
    lanes: usize,
    c: &Coefficients,
) {
    let drow = |n: usize| &data[n * lanes..(n + 1) * lanes];
    // Causal pass. Missing inputs are x[0]; missing outputs are x[0] with the BN weights.
    for n in 0..ln {
        let (done, rest) = outs.split_at_mut(n * lanes);
        let out = &mut rest[..lanes];
        let x = [
            drow(n),
            drow(n.saturating_sub(1)),
            drow(n.saturating_sub(2)),
            drow(n.saturating_sub(3)),
        ];
        let mut b = c.d;
        let mut y: [&[f64]; 4] = [drow(0); 4];
        for m in 1..=4 {
            if n >= m {
                y[m - 1] = &done[(n - m) * lanes..(n - m + 1) * lanes];
            } else {
                b[m - 1] = c.bn[m - 1];
            }
        }
        step(out, x, c.n, y, b);
    }
    // Anti-causal pass: z[p] from x[p + 1 ..= p + 4] and z[p + 1 ..= p + 4]; missing inputs
    // are x[ln - 1], missing outputs x[ln - 1] with the BM weights.
    let last = ln - 1;
    for p in (0..ln).rev() {
        let (head, done) = scratch.split_at_mut((p + 1) * lanes);
        let out = &mut head[p * lanes..];
        let x = [
            drow((p + 1).min(last)),
            drow((p + 2).min(last)),
            drow((p + 3).min(last)),
            drow((p + 4).min(last)),
        ];
        let mut b = c.d;
        let mut y: [&[f64]; 4] = [drow(last); 4];
        for m in 1..=4 {
            if p + m <= last {
                y[m - 1] = &done[(m - 1) * lanes..m * lanes];
            } else {
                b[m - 1] = c.bm[m - 1];
            }
        }
        step(out, x, c.m, y, b);
    }
    for (o, s) in outs[..ln * lanes].iter_mut().zip(&scratch[..ln * lanes]) {
        *o += *s;
    }
}

/// Buffers of one worker.
struct Lanes {
    data: Vec<f64>,
    outs: Vec<f64>,
    scratch: Vec<f64>,
}

impl Lanes {
    fn new(ln: usize) -> Self {
        Lanes {
            data: vec![0.0; ln * LANES],
            outs: vec![0.0; ln * LANES],
            scratch: vec![0.0; ln * LANES],
        }
    }
}

/// Filters the lines of a plane along `line_axis` (0 or 1 of the 2-D view), reading `inp`
/// and writing `out` (which may hold the same values: each block is read before written).
fn filter_plane<T: Scalar>(
    inp: Option<ArrayView2<T>>,
    mut out: ArrayViewMut2<f32>,
    line_axis: usize,
    c: &Coefficients,
    buf: &mut Lanes,
) {
    let lane_axis = 1 - line_axis;
    let ln = out.len_of(Axis(line_axis));
    let nl = out.len_of(Axis(lane_axis));
    let mut l0 = 0;
    while l0 < nl {
        let lanes = LANES.min(nl - l0);
        // Gather: data[n * lanes + l] = plane[line n][lane l0 + l].
        for n in 0..ln {
            let dst = &mut buf.data[n * lanes..(n + 1) * lanes];
            match &inp {
                Some(v) => {
                    let line = v.index_axis(Axis(line_axis), n);
                    for (d, x) in dst.iter_mut().zip(line.slice(s![l0..l0 + lanes])) {
                        *d = x.to_f64();
                    }
                }
                None => {
                    let line = out.index_axis(Axis(line_axis), n);
                    for (d, x) in dst.iter_mut().zip(line.slice(s![l0..l0 + lanes])) {
                        *d = f64::from(*x);
                    }
                }
            }
        }
        filter_lanes(&buf.data, &mut buf.outs, &mut buf.scratch, ln, lanes, c);
        for n in 0..ln {
            let src = &buf.outs[n * lanes..(n + 1) * lanes];
            let mut line = out.index_axis_mut(Axis(line_axis), n);
            for (o, s) in line.slice_mut(s![l0..l0 + lanes]).iter_mut().zip(src) {
                *o = *s as f32;
            }
        }
        l0 += lanes;
    }
}

/// Checks the line length along `axis` (of `[k][j][i]`).
fn check_axis(shape: (usize, usize, usize), axis: usize) -> Result<usize, EffectError> {
    let n = [shape.0, shape.1, shape.2];
    let ln = *n.get(axis).ok_or_else(|| {
        EffectError::Internal(format!("axis {axis} of a 3-D array (0 = k, 1 = j, 2 = i)"))
    })?;
    if ln < MIN_LINE {
        let name = ["k", "j", "i"][axis];
        return Err(EffectError::Input(format!(
            "the recursive Gaussian needs at least {MIN_LINE} voxels along each axis; there \
             are {ln} along {name} (shape {shape:?} as k, j, i)"
        )));
    }
    Ok(ln)
}

/// One pass along `axis` (0 = k, 1 = j, 2 = i) from `input` into `out`; `input` `None`
/// filters `out` in place.
/// One filtering pass along `axis`, plane by plane in parallel; with a `control`, planes
/// not started when the request is cancelled are skipped and the pass answers Cancelled
/// (a pass over a large CT takes a good part of a second: cancelling must not wait for it).
fn pass<T: Scalar>(
    input: Option<ArrayView3<T>>,
    out: &mut Array3<f32>,
    axis: usize,
    c: &Coefficients,
    control: Option<&Control>,
) -> Result<(), EffectError> {
    let cancelled = || control.is_some_and(Control::is_cancelled);
    let ln = check_axis(out.dim(), axis)?;
    // Planes handed out to the workers, and the plane axis along which the lines run.
    let (outer, line_axis) = match axis {
        0 => (1, 0), // per j: plane [k][i], lines along k
        1 => (0, 0), // per k: plane [j][i], lines along j
        _ => (0, 1), // per k: plane [j][i], lines along i
    };
    match input {
        Some(inp) => {
            out.axis_iter_mut(Axis(outer))
                .into_par_iter()
                .zip(inp.axis_iter(Axis(outer)).into_par_iter())
                .for_each_init(
                    || Lanes::new(ln),
                    |buf, (o, i)| {
                        if !cancelled() {
                            filter_plane(Some(i), o, line_axis, c, buf)
                        }
                    },
                );
        }
        None => {
            out.axis_iter_mut(Axis(outer))
                .into_par_iter()
                .for_each_init(
                    || Lanes::new(ln),
                    |buf, o| {
                        if !cancelled() {
                            filter_plane::<f32>(None, o, line_axis, c, buf)
                        }
                    },
                );
        }
    }
    match control {
        Some(control) => control.check(),
        None => Ok(()),
    }
}

/// Smoothing (or first derivative, per voxel) of `input` along `axis` (0 = k, 1 = j,
/// 2 = i) with standard deviation `sigma_mm`, the voxels `spacing_mm` apart along that
/// axis: ITK's `RecursiveGaussianImageFilter` with an `f32` output.
///
/// # Errors
/// A sigma that is not positive, a spacing below 1e-8 mm, fewer than 4 voxels along the
/// axis.
pub fn smooth_axis<T: Scalar>(
    input: ArrayView3<T>,
    axis: usize,
    spacing_mm: f64,
    sigma_mm: f64,
    order: Order,
) -> Result<Array3<f32>, EffectError> {
    let c = Coefficients::new(sigma_mm, spacing_mm, order)?;
    let mut out = Array3::<f32>::zeros(input.dim());
    pass(Some(input), &mut out, axis, &c, None)?;
    Ok(out)
}

/// The gradient magnitude of `input` at scale `sigma_mm`, as ITK's
/// `GradientMagnitudeRecursiveGaussianImageFilter` (and SimpleITK's
/// `GradientMagnitudeRecursiveGaussian`) compute it: see the module documentation.
/// `spacing_ijk` is the voxel spacing in mm along i, j, k. Every voxel of the result is
/// `>= 0`; a constant image gives 0 everywhere (border included).
///
/// # Errors
/// A sigma that is not positive, a spacing below 1e-8 mm, fewer than 4 voxels along an
/// axis, a cancelled request (checked between passes).
pub fn gradient_magnitude<T: Scalar>(
    input: ArrayView3<T>,
    spacing_ijk: [f64; 3],
    sigma_mm: f64,
    control: &Control,
) -> Result<Array3<f32>, EffectError> {
    let shape = input.dim();
    for axis in 0..3 {
        check_axis(shape, axis)?;
    }
    // ITK dimension d (0 = i, 1 = j, 2 = k) is array axis 2 - d.
    let smooth: Vec<Coefficients> = (0..3)
        .map(|d| Coefficients::new(sigma_mm, spacing_ijk[d], Order::Smooth))
        .collect::<Result<_, _>>()?;
    let derivative: Vec<Coefficients> = (0..3)
        .map(|d| Coefficients::new(sigma_mm, spacing_ijk[d], Order::FirstDerivative))
        .collect::<Result<_, _>>()?;
    let mut acc = Array3::<f32>::zeros(shape);
    let mut work = Array3::<f32>::zeros(shape);
    for dim in 0..3 {
        control.check()?;
        pass(
            Some(input),
            &mut work,
            2 - dim,
            &derivative[dim],
            Some(control),
        )?;
        for other in (0..3).filter(|&o| o != dim) {
            control.check()?;
            pass::<f32>(None, &mut work, 2 - other, &smooth[other], Some(control))?;
        }
        let spacing = spacing_ijk[dim];
        Zip::from(&mut acc).and(&work).par_for_each(|a, &g| {
            let q = f64::from(g) / spacing;
            *a = (f64::from(*a) + q * q) as f32;
        });
    }
    control.check()?;
    acc.par_mapv_inplace(|a| f64::from(a).sqrt() as f32);
    Ok(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ITK's FilterDataArray written out for one line, literally, as the reference for the
    /// lane version.
    fn itk_line(data: &[f64], c: &Coefficients) -> Vec<f64> {
        let ln = data.len();
        let (n, d, m, bn, bm) = (c.n, c.d, c.m, c.bn, c.bm);
        let e = |a1: f64, b1: f64, a2: f64, b2: f64, a3: f64, b3: f64, a4: f64, b4: f64| {
            a1 * b1 + a2 * b2 + a3 * b3 + a4 * b4
        };
        let mut outs = vec![0.0; ln];
        let mut scratch = vec![0.0; ln];
        let v1 = data[0];
        outs[0] = e(v1, n[0], v1, n[1], v1, n[2], v1, n[3]);
        outs[1] = e(data[1], n[0], v1, n[1], v1, n[2], v1, n[3]);
        outs[2] = e(data[2], n[0], data[1], n[1], v1, n[2], v1, n[3]);
        outs[3] = e(data[3], n[0], data[2], n[1], data[1], n[2], v1, n[3]);
        outs[0] -= e(v1, bn[0], v1, bn[1], v1, bn[2], v1, bn[3]);
        outs[1] -= e(outs[0], d[0], v1, bn[1], v1, bn[2], v1, bn[3]);
        outs[2] -= e(outs[1], d[0], outs[0], d[1], v1, bn[2], v1, bn[3]);
        outs[3] -= e(outs[2], d[0], outs[1], d[1], outs[0], d[2], v1, bn[3]);
        for i in 4..ln {
            outs[i] = e(
                data[i],
                n[0],
                data[i - 1],
                n[1],
                data[i - 2],
                n[2],
                data[i - 3],
                n[3],
            );
            outs[i] -= e(
                outs[i - 1],
                d[0],
                outs[i - 2],
                d[1],
                outs[i - 3],
                d[2],
                outs[i - 4],
                d[3],
            );
        }
        let v2 = data[ln - 1];
        scratch[ln - 1] = e(v2, m[0], v2, m[1], v2, m[2], v2, m[3]);
        scratch[ln - 2] = e(data[ln - 1], m[0], v2, m[1], v2, m[2], v2, m[3]);
        scratch[ln - 3] = e(data[ln - 2], m[0], data[ln - 1], m[1], v2, m[2], v2, m[3]);
        scratch[ln - 4] = e(
            data[ln - 3],
            m[0],
            data[ln - 2],
            m[1],
            data[ln - 1],
            m[2],
            v2,
            m[3],
        );
        scratch[ln - 1] -= e(v2, bm[0], v2, bm[1], v2, bm[2], v2, bm[3]);
        scratch[ln - 2] -= e(scratch[ln - 1], d[0], v2, bm[1], v2, bm[2], v2, bm[3]);
        scratch[ln - 3] -= e(
            scratch[ln - 2],
            d[0],
            scratch[ln - 1],
            d[1],
            v2,
            bm[2],
            v2,
            bm[3],
        );
        scratch[ln - 4] -= e(
            scratch[ln - 3],
            d[0],
            scratch[ln - 2],
            d[1],
            scratch[ln - 1],
            d[2],
            v2,
            bm[3],
        );
        for i in (1..=ln - 4).rev() {
            scratch[i - 1] = e(
                data[i],
                m[0],
                data[i + 1],
                m[1],
                data[i + 2],
                m[2],
                data[i + 3],
                m[3],
            );
            scratch[i - 1] -= e(
                scratch[i],
                d[0],
                scratch[i + 1],
                d[1],
                scratch[i + 2],
                d[2],
                scratch[i + 3],
                d[3],
            );
        }
        outs.iter().zip(&scratch).map(|(o, s)| o + s).collect()
    }

    #[test]
    fn lanes_give_itks_line_bit_for_bit() {
        for order in [Order::Smooth, Order::FirstDerivative] {
            for &(sigma, ln) in &[(2.0, 4usize), (0.7, 5), (2.0, 13), (10.0, 40)] {
                let c = Coefficients::new(sigma, 1.0, order).unwrap();
                let lanes = 3;
                let data: Vec<f64> = (0..ln * lanes)
                    .map(|x| ((x * 37 % 17) as f64 - 8.0) * 11.5)
                    .collect();
                let mut outs = vec![0.0; ln * lanes];
                let mut scratch = vec![0.0; ln * lanes];
                filter_lanes(&data, &mut outs, &mut scratch, ln, lanes, &c);
                for l in 0..lanes {
                    let line: Vec<f64> = (0..ln).map(|n| data[n * lanes + l]).collect();
                    let want = itk_line(&line, &c);
                    let got: Vec<f64> = (0..ln).map(|n| outs[n * lanes + l]).collect();
                    assert_eq!(got, want, "{order:?} sigma {sigma} ln {ln} lane {l}");
                }
            }
        }
    }

    #[test]
    fn smoothing_keeps_constants_and_the_derivative_of_a_ramp_is_its_slope() {
        let c = Coefficients::new(2.0, 1.0, Order::Smooth).unwrap();
        let ln = 30;
        let flat = vec![7.0; ln];
        for v in itk_line(&flat, &c) {
            assert!((v - 7.0).abs() < 1e-9, "{v}");
        }
        // A ramp of slope 3 per voxel: the derivative is 3 away from the ends (the ends see
        // a clamped signal).
        let c = Coefficients::new(2.0, 1.0, Order::FirstDerivative).unwrap();
        let ramp: Vec<f64> = (0..200).map(|x| 3.0 * x as f64).collect();
        let g = itk_line(&ramp, &c);
        assert!((g[100] - 3.0).abs() < 1e-3, "{}", g[100]);
        // A constant has no derivative anywhere, border included.
        for v in itk_line(&flat, &c) {
            assert!(v.abs() < 1e-9, "{v}");
        }
    }

    #[test]
    fn the_gradient_of_a_ramp_is_its_slope_in_mm() {
        // Values rise by 4 per voxel along j, voxels 2 mm apart along j: 2 per mm.
        let shape = (8, 40, 9);
        let ramp = Array3::from_shape_fn(shape, |(_, j, _)| (4 * j) as i16);
        let g = gradient_magnitude(ramp.view(), [1.0, 2.0, 3.0], 2.0, &Control::none()).unwrap();
        assert!((g[[4, 20, 4]] - 2.0).abs() < 1e-3, "{}", g[[4, 20, 4]]);
        let flat = Array3::<i16>::from_elem(shape, -1000);
        let g = gradient_magnitude(flat.view(), [1.0, 1.0, 1.0], 2.0, &Control::none()).unwrap();
        assert!(g.iter().all(|&v| v.abs() < 1e-6));
    }

    #[test]
    fn the_pass_axes_agree_with_one_line() {
        // The same line along k, j or i gives the same values.
        let c = Coefficients::new(1.5, 1.0, Order::FirstDerivative).unwrap();
        let line: Vec<f64> = (0..9).map(|x| ((x * x) % 7) as f64).collect();
        let want: Vec<f32> = itk_line(&line, &c).iter().map(|&v| v as f32).collect();
        for axis in 0..3 {
            let mut shape = [5, 6, 7];
            shape[axis] = 9;
            let a = Array3::from_shape_fn((shape[0], shape[1], shape[2]), |(k, j, i)| {
                line[[k, j, i][axis]] as f32
            });
            let out = smooth_axis(a.view(), axis, 1.0, 1.5, Order::FirstDerivative).unwrap();
            for (n, &w) in want.iter().enumerate() {
                let mut at = [2, 3, 4];
                at[axis] = n;
                assert_eq!(out[at], w, "axis {axis} sample {n}");
            }
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        let a = Array3::<f32>::zeros((3, 8, 8));
        let e = gradient_magnitude(a.view(), [1.0; 3], 1.0, &Control::none()).unwrap_err();
        assert!(e.to_string().contains("at least 4 voxels"), "{e}");
        let a = Array3::<f32>::zeros((5, 8, 8));
        assert!(gradient_magnitude(a.view(), [1.0; 3], 0.0, &Control::none()).is_err());
        assert!(gradient_magnitude(a.view(), [1.0; 3], f64::NAN, &Control::none()).is_err());
        assert!(gradient_magnitude(a.view(), [0.0, 1.0, 1.0], 1.0, &Control::none()).is_err());
        let control = Control::none();
        control.cancel();
        assert_eq!(
            gradient_magnitude(a.view(), [1.0; 3], 1.0, &control),
            Err(EffectError::Cancelled)
        );
    }
}
