//! Flood filling: the voxels connected to the clicked one whose intensity is close to it.
//!
//! Reference: `SegmentEditorFloodFilling` of SlicerSegmentEditorExtraEffects, which runs
//! VTK's `vtkImageThresholdConnectivity` on the aligned source volume and adds the result
//! to the selected segment (mode Add). Given the clicked voxel's value `v`:
//!
//! - a voxel is *in range* when its value lies in `[v - tol, v + tol]`, both inclusive,
//!   the bounds first converted to the voxel type as VTK does (clamped to the type's range,
//!   then truncated toward zero for integer types: on an `i16` image a tolerance of 10.5
//!   around 0 gives `[-10, 10]`);
//! - with a neighbourhood radius `r` (Slicer's `NeighborhoodSizeMm`, which VTK reads in
//!   **voxels**, not mm), a voxel is *accepted* only if it is in range and at least half
//!   (`NeighborhoodFraction` 0.5) of the voxels of its ellipsoid neighbourhood are in
//!   range. The neighbourhood holds the voxels at integer offsets `(dk, dj, di)` with
//!   `|d| <= int(r + 0.5)` on each axis and `(dk/r)² + (dj/r)² + (di/r)² < 1 + 2⁻¹⁷`
//!   (VTK's tolerance), the centre included; radius 1 is the centre and its 6 face
//!   neighbours. The test is off when `int(r + 0.5)` is 0 (`r < 0.5`). **At the image
//!   border** the neighbourhood is cut off: only voxels inside the image count, both in the
//!   in-range count and in the total;
//! - the result is the 6-connected (face neighbours) component of accepted voxels that
//!   holds the clicked voxel; the clicked voxel is tested like any other, so when it fails
//!   the neighbourhood test (a lone voxel) the result is empty;
//! - an optional *editable area* (Slicer passes the editable voxels from
//!   `GenerateEditMask`, editable intensity range included, as the filter's stencil)
//!   **blocks** the fill: voxels outside it are neither filled nor crossed, so masking
//!   changes connectivity, not only what is kept. The neighbourhood counts ignore it.
//!
//! The fill visits each voxel once (a span fill along `i`); values are compared, and the
//! neighbourhood test run, only for the voxels the fill reaches, so the work follows the
//! size of the region and its border, not of the volume.
//!
//! # Example
//! ```
//! use ndarray::Array3;
//! use segkit::effects::Control;
//! use segkit::effects::flood_filling::{flood_fill, FloodFillingParams};
//! // 0 0 5 0 9 0, clicked at the first voxel, tolerance 5, no neighbourhood test: the
//! // 9 stops the fill.
//! let ct = Array3::from_shape_vec((1, 1, 6), vec![0i16, 0, 5, 0, 9, 0]).unwrap();
//! let params = FloodFillingParams { intensity_tolerance: 5.0, neighborhood_size_mm: 0.0 };
//! let mask = flood_fill(ct.view(), [0, 0, 0], &params, None, &Control::none()).unwrap();
//! assert_eq!(mask.as_slice().unwrap(), &[1, 1, 1, 1, 0, 0]);
//! ```

use super::schema::{EffectSpec, Input, ParamSpec, ParamValues};
use super::{
    check_point, standard_slice, Control, Effect, EffectError, EffectOutput, EffectRequest,
    ModificationMode, Modifier,
};
use crate::volume::Scalar;
use crate::with_volume;
use ndarray::{Array3, ArrayView3};

/// VTK's tolerance on the neighbourhood ellipsoid's radius test.
const RADIUS_TOLERANCE: f64 = 7.62939453125e-06;
/// Slicer's `NeighborhoodFraction`.
const NEIGHBORHOOD_FRACTION: f64 = 0.5;
/// Spans filled between two cancellation checks.
const SPANS_PER_CHECK: usize = 1 << 14;

/// Parameters of Flood filling; `Default` gives Slicer's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloodFillingParams {
    /// `IntensityTolerance`: voxels within this of the clicked value are in range.
    pub intensity_tolerance: f64,
    /// `NeighborhoodSizeMm`: radius of the neighbourhood test, in **voxels** despite the
    /// name (as VTK reads it); 0 switches the test off.
    pub neighborhood_size_mm: f64,
}

impl FloodFillingParams {
    /// The parameters from checked values (given or the schema's defaults).
    pub fn from_values(v: &ParamValues) -> Result<Self, EffectError> {
        Ok(FloodFillingParams {
            intensity_tolerance: v.double("IntensityTolerance")?,
            neighborhood_size_mm: v.double("NeighborhoodSizeMm")?,
        })
    }
}

impl Default for FloodFillingParams {
    /// Slicer's defaults, as the schema states them.
    fn default() -> Self {
        Self::from_values(&ParamValues::defaults(&FloodFilling.spec()))
            .expect("the Flood filling schema's defaults parse")
    }
}

/// Flood fills `source` (`[k][j][i]`) from `seed_kji`: see the module documentation.
///
/// `editable` (non-zero = may be filled, same shape as `source`) blocks the fill where it
/// is zero, as the stencil Slicer gives `vtkImageThresholdConnectivity`. Returns a 0/1
/// mask; all zeros when the seed is not editable or fails the neighbourhood test.
///
/// # Errors
/// A seed outside the volume, an `editable` of another shape, a negative or NaN parameter,
/// or a cancelled request.
pub fn flood_fill<T: Scalar>(
    source: ArrayView3<T>,
    seed_kji: [usize; 3],
    params: &FloodFillingParams,
    editable: Option<ArrayView3<u8>>,
    control: &Control,
) -> Result<Array3<u8>, EffectError> {
    fill_counted(source, seed_kji, params, editable, control).map(|(mask, _)| mask)
}

/// [`flood_fill`], with the number of voxels filled.
fn fill_counted<T: Scalar>(
    source: ArrayView3<T>,
    seed_kji: [usize; 3],
    params: &FloodFillingParams,
    editable: Option<ArrayView3<u8>>,
    control: &Control,
) -> Result<(Array3<u8>, usize), EffectError> {
    let shape = source.dim();
    check_point(seed_kji, shape)?;
    if let Some(e) = &editable {
        if e.dim() != shape {
            return Err(EffectError::Input(format!(
                "the editable area has shape {:?} (k, j, i), the source {shape:?}",
                e.dim()
            )));
        }
    }
    for (name, x) in [
        ("IntensityTolerance", params.intensity_tolerance),
        ("NeighborhoodSizeMm", params.neighborhood_size_mm),
    ] {
        if x.is_nan() || x < 0.0 {
            return Err(EffectError::Parameter {
                name: name.into(),
                reason: format!("{x} is not a number >= 0"),
            });
        }
    }
    let v = source[seed_kji].to_f64();
    let lo = vtk_cast::<T>(v - params.intensity_tolerance);
    let hi = vtk_cast::<T>(v + params.intensity_tolerance);
    // Voxel values are compared where the fill reaches, never over the whole volume: a
    // click fills a small part of a large volume more often than not.
    let contiguous = source.as_standard_layout();
    let values = standard_slice(&contiguous)?;
    let in_range = |x: T| lo <= x && x <= hi;
    let neighborhood = Neighborhood::new(params.neighborhood_size_mm, shape);
    let accept = |idx: usize, kji: [usize; 3]| -> bool {
        in_range(values[idx])
            && editable.as_ref().is_none_or(|e| e[kji] != 0)
            && neighborhood
                .as_ref()
                .is_none_or(|n| n.passes(values, shape, kji, in_range))
    };
    span_fill(shape, seed_kji, accept, control)
}

/// A value converted to the voxel type as `vtkMathUtilities::SafeCastFromDouble`: clamped
/// to the type's range and truncated toward zero for integers, rounded for floats.
fn vtk_cast<T: Scalar>(v: f64) -> T {
    if T::TYPE.is_float() {
        T::from_f64(v)
    } else {
        // `from_f64` saturates at the type's range; truncating first gives VTK's result.
        T::from_f64(v.trunc())
    }
}

/// The ellipsoid neighbourhood as rows along `i`: `(dk, dj, di_min, di_max)`.
struct Neighborhood {
    rows: Vec<(isize, isize, isize, isize)>,
    /// Half the box's side, `int(r + 0.5)`.
    reach: usize,
    /// Flat offsets of every neighbourhood voxel in the volume's C order, for voxels whose
    /// whole box is inside the volume (no clipping to check).
    offsets: Vec<isize>,
}

impl Neighborhood {
    /// `None` when the test is off (`int(r + 0.5) == 0`); `shape` is the volume's.
    fn new(radius: f64, shape: (usize, usize, usize)) -> Option<Self> {
        let n = (radius + 0.5) as isize;
        if n <= 0 {
            return None;
        }
        let f = 1.0 / radius;
        let mut rows = Vec::new();
        for dk in -n..=n {
            let rz = (dk as f64 * f) * (dk as f64 * f);
            for dj in -n..=n {
                let ry = (dj as f64 * f) * (dj as f64 * f);
                let rzy = rz + ry;
                // The same sum, in the same order, as VTK, so ties fall the same way.
                let inside = |di: isize| {
                    let rx = (di as f64 * f) * (di as f64 * f);
                    rzy + rx < 1.0 + RADIUS_TOLERANCE
                };
                let members: Vec<isize> = (-n..=n).filter(|&di| inside(di)).collect();
                if let (Some(&a), Some(&b)) = (members.first(), members.last()) {
                    rows.push((dk, dj, a, b));
                }
            }
        }
        let (_, nj, ni) = shape;
        let offsets = rows
            .iter()
            .flat_map(|&(dk, dj, a, b)| {
                (a..=b).map(move |di| (dk * nj as isize + dj) * ni as isize + di)
            })
            .collect();
        Some(Neighborhood {
            rows,
            reach: n as usize,
            offsets,
        })
    }

    /// True when at least half of the neighbourhood voxels inside the image are in range.
    /// `values` are the voxels of an array of shape `shape`, in C order.
    fn passes<T: Copy>(
        &self,
        values: &[T],
        shape: (usize, usize, usize),
        kji: [usize; 3],
        in_range: impl Fn(T) -> bool,
    ) -> bool {
        let (nk, nj, ni) = shape;
        let n = self.reach;
        if (0..3).all(|a| kji[a] >= n) && kji[0] + n < nk && kji[1] + n < nj && kji[2] + n < ni {
            let centre = ((kji[0] * nj + kji[1]) * ni + kji[2]) as isize;
            let hits = self
                .offsets
                .iter()
                .filter(|&&o| in_range(values[(centre + o) as usize]))
                .count();
            return hits as f64 >= self.offsets.len() as f64 * NEIGHBORHOOD_FRACTION;
        }
        let (k, j, i) = (kji[0] as isize, kji[1] as isize, kji[2] as isize);
        let (mut total, mut hits) = (0usize, 0usize);
        for &(dk, dj, a, b) in &self.rows {
            let (kk, jj) = (k + dk, j + dj);
            if kk < 0 || jj < 0 || kk >= nk as isize || jj >= nj as isize {
                continue;
            }
            let lo = (i + a).max(0) as usize;
            let hi = (i + b).min(ni as isize - 1);
            if hi < lo as isize {
                continue;
            }
            let row = (kk as usize * nj + jj as usize) * ni;
            let run = &values[row + lo..=row + hi as usize];
            total += run.len();
            hits += run.iter().filter(|&&x| in_range(x)).count();
        }
        // VTK's `!(hits < total * fraction)`; the counts are never NaN.
        hits as f64 >= total as f64 * NEIGHBORHOOD_FRACTION
    }
}

/// 6-connected fill of the voxels `accept` admits, from `seed`: spans along `i`, each
/// voxel tested at most once.
fn span_fill(
    shape: (usize, usize, usize),
    seed: [usize; 3],
    accept: impl Fn(usize, [usize; 3]) -> bool,
    control: &Control,
) -> Result<(Array3<u8>, usize), EffectError> {
    const UNKNOWN: u8 = 0;
    const REJECTED: u8 = 1;
    const ACCEPTED: u8 = 2;
    const FILLED: u8 = 3;
    let (nk, nj, ni) = shape;
    let index = |k: usize, j: usize, i: usize| (k * nj + j) * ni + i;
    // Zeroed pages cost nothing until touched; the state becomes the output mask.
    let mut state = vec![UNKNOWN; nk * nj * ni];
    // Every voxel decided, to turn the state into 0/1 without a pass over the volume.
    let mut decided: Vec<usize> = Vec::new();
    let mut decide = |state: &mut [u8], k: usize, j: usize, i: usize| -> bool {
        let idx = index(k, j, i);
        match state[idx] {
            UNKNOWN => {
                decided.push(idx);
                let ok = accept(idx, [k, j, i]);
                state[idx] = if ok { ACCEPTED } else { REJECTED };
                ok
            }
            REJECTED => false,
            _ => true,
        }
    };
    let mut stack = vec![seed];
    let mut spans = 0usize;
    while let Some([k, j, i]) = stack.pop() {
        if state[index(k, j, i)] == FILLED || !decide(&mut state, k, j, i) {
            continue;
        }
        spans += 1;
        if spans.is_multiple_of(SPANS_PER_CHECK) {
            control.check()?;
        }
        let mut left = i;
        while left > 0
            && state[index(k, j, left - 1)] != FILLED
            && decide(&mut state, k, j, left - 1)
        {
            left -= 1;
        }
        let mut right = i;
        while right + 1 < ni
            && state[index(k, j, right + 1)] != FILLED
            && decide(&mut state, k, j, right + 1)
        {
            right += 1;
        }
        let row = index(k, j, 0);
        state[row + left..=row + right].fill(FILLED);
        let mut neighbours = [None; 4];
        if j > 0 {
            neighbours[0] = Some((k, j - 1));
        }
        if j + 1 < nj {
            neighbours[1] = Some((k, j + 1));
        }
        if k > 0 {
            neighbours[2] = Some((k - 1, j));
        }
        if k + 1 < nk {
            neighbours[3] = Some((k + 1, j));
        }
        for (kk, jj) in neighbours.into_iter().flatten() {
            // One seed per run of accepted voxels; the seed's span covers the run.
            let mut in_run = false;
            for x in left..=right {
                let s = state[index(kk, jj, x)];
                if s == FILLED || s == REJECTED {
                    in_run = false;
                } else if decide(&mut state, kk, jj, x) {
                    if !in_run {
                        stack.push([kk, jj, x]);
                        in_run = true;
                    }
                } else {
                    in_run = false;
                }
            }
        }
    }
    let mut filled = 0;
    for idx in decided {
        let inside = state[idx] == FILLED;
        filled += usize::from(inside);
        state[idx] = u8::from(inside);
    }
    let mask =
        Array3::from_shape_vec(shape, state).map_err(|e| EffectError::Internal(e.to_string()))?;
    Ok((mask, filled))
}

/// The Flood filling effect in the catalog.
pub struct FloodFilling;

impl Effect for FloodFilling {
    fn spec(&self) -> EffectSpec {
        let tolerance = ParamSpec::double("IntensityTolerance", "Intensity tolerance", "10")
            .help(
                "Voxels whose source value is within this of the clicked voxel's value \
                 (inclusive) are filled, if connected to it.",
            )
            .range(0.0, 1e9)
            .step(1.0);
        let neighborhood = ParamSpec::double("NeighborhoodSizeMm", "Neighborhood size", "1")
            .help(
                "A voxel is filled only if at least half of the voxels within this radius \
                 are in range too, which stops leaks through thin gaps. As in Slicer (VTK), \
                 the radius is counted in voxels although the name says mm; below 0.5 the \
                 test is off.",
            )
            .range(0.0, 30.0)
            .step(0.5)
            .unit("voxels");
        let mut spec = EffectSpec::new(
            "Flood filling",
            "flood-filling",
            "Flood filling",
            "Click to add the voxels connected to the clicked one whose intensity is within \
             the tolerance of its intensity.",
        );
        spec.inputs = vec![Input::SourceVolume, Input::Point];
        spec.params = vec![tolerance, neighborhood];
        spec.reported = vec![("filled_voxels", "Number of voxels the fill reached.")];
        spec
    }

    fn run(&self, request: &EffectRequest) -> Result<EffectOutput, EffectError> {
        let source = request.source("Flood filling")?;
        let seed = request.point().ok_or_else(|| {
            EffectError::Input("Flood filling needs a point (the clicked voxel)".into())
        })?;
        let params = FloodFillingParams::from_values(request.params)?;
        // Slicer's stencil: the editable area and intensity range stop the fill itself
        // (when the caller sent its masking settings; masking limits the result anyway).
        let editable = request.editable_area()?;
        let (mask, filled) = with_volume!(source, v => fill_counted(
            v.data.view(), seed, &params, editable.as_ref().map(|e| e.view()), request.control
        ))?;
        Ok(EffectOutput {
            modifiers: vec![Modifier::selected(ModificationMode::Add, mask)],
            reported: vec![("filled_voxels".into(), filled as f64)],
            volumes: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Zip;
    use proptest::prelude::*;

    fn fill<T: Scalar>(
        data: Array3<T>,
        seed: [usize; 3],
        tol: f64,
        radius: f64,
        editable: Option<&Array3<u8>>,
    ) -> Array3<u8> {
        let p = FloodFillingParams {
            intensity_tolerance: tol,
            neighborhood_size_mm: radius,
        };
        flood_fill(
            data.view(),
            seed,
            &p,
            editable.map(|e| e.view()),
            &Control::none(),
        )
        .unwrap()
    }

    fn grid(nj: usize, ni: usize, values: &[i16]) -> Array3<i16> {
        Array3::from_shape_vec((1, nj, ni), values.to_vec()).unwrap()
    }

    fn picture(m: &Array3<u8>) -> String {
        m.outer_iter()
            .flat_map(|s| {
                s.outer_iter()
                    .map(|r| r.iter().map(|&v| if v != 0 { '#' } else { '.' }).collect())
                    .collect::<Vec<String>>()
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn range_is_inclusive_and_connectivity_is_six() {
        // Diagonal steps do not connect: the 5 at (1, 1) is reached only through faces.
        let g = grid(3, 3, &[5, 9, 5, 9, 5, 9, 5, 9, 5]);
        assert_eq!(picture(&fill(g, [0, 1, 1], 0.0, 0.0, None)), "... .#. ...");
        let g = grid(1, 5, &[0, 10, 11, -10, -11]);
        assert_eq!(picture(&fill(g, [0, 0, 0], 10.0, 0.0, None)), "##...");
    }

    #[test]
    fn fractional_bounds_truncate_toward_zero_on_integer_images() {
        // [v - 10.5, v + 10.5] around 0 is [-10, 10] after VTK's cast.
        let g = grid(1, 5, &[0, 10, -10, 11, 0]);
        assert_eq!(
            picture(&fill(g.clone(), [0, 0, 0], 10.5, 0.0, None)),
            "###.."
        );
        // Around 3: [-7.5, 13.5] -> [-7, 13]; -10 stops the fill.
        let g = grid(1, 4, &[3, 13, -8, 3]);
        assert_eq!(picture(&fill(g, [0, 0, 0], 10.5, 0.0, None)), "##..");
        // On a float image the bounds are exact.
        let f = Array3::from_shape_vec((1, 1, 3), vec![0.0f32, 10.5, 10.6]).unwrap();
        assert_eq!(picture(&fill(f, [0, 0, 0], 10.5, 0.0, None)), "##.");
    }

    #[test]
    fn radius_one_needs_four_of_seven_in_range() {
        // A 1-voxel-wide line: each voxel has at most 3 in-range voxels of 7 (itself and
        // 2 along the line) on a 3x3 slab: rejected, so nothing is filled.
        let mut d = Array3::<i16>::from_elem((3, 3, 5), 100);
        for i in 0..5 {
            d[[1, 1, i]] = 0;
        }
        assert!(fill(d.clone(), [1, 1, 2], 0.0, 1.0, None)
            .iter()
            .all(|&v| v == 0));
        // A 2-wide slab: inner voxels see themselves, 2 along i and 1 along j = 4 of 7.
        for i in 0..5 {
            d[[1, 2, i]] = 0;
        }
        let m = fill(d, [1, 1, 2], 0.0, 1.0, None);
        assert_eq!(m.sum(), 10);
    }

    #[test]
    fn the_border_shrinks_the_neighbourhood() {
        // A single row: the corner voxel's neighbourhood inside the image is itself and
        // one neighbour (2 voxels), the others' 3; all in range passes.
        let g = grid(1, 4, &[0, 0, 0, 0]);
        assert_eq!(picture(&fill(g, [0, 0, 0], 0.0, 1.0, None)), "####");
        // 0 0 9: the last voxel is out of range; the middle one has 2 of 3 in range.
        let g = grid(1, 3, &[0, 0, 9]);
        assert_eq!(picture(&fill(g, [0, 0, 0], 0.0, 1.0, None)), "##.");
        // A lone in-range voxel fails: 1 of 2 is enough (1 >= 2 * 0.5), 1 of 3 is not.
        let g = grid(1, 3, &[9, 0, 9]);
        assert_eq!(picture(&fill(g, [0, 0, 1], 0.0, 1.0, None)), "...");
        let g = grid(1, 2, &[0, 9]);
        assert_eq!(picture(&fill(g, [0, 0, 0], 0.0, 1.0, None)), "#.");
    }

    #[test]
    fn radius_rounds_and_small_radii_switch_the_test_off() {
        assert!(Neighborhood::new(0.49, (9, 9, 9)).is_none());
        let count = |r: f64| {
            let n = Neighborhood::new(r, (9, 9, 9)).unwrap();
            let from_rows = n
                .rows
                .iter()
                .map(|&(_, _, a, b)| (b - a + 1) as usize)
                .sum::<usize>();
            assert_eq!(from_rows, n.offsets.len());
            from_rows
        };
        assert_eq!(count(0.5), 1); // box 1, but only the centre is within radius 0.5
        assert_eq!(count(1.0), 7);
        assert_eq!(count(1.4), 7);
        // Radius 1.5: box 2; offsets with d² < 2.25: the 3x3x3 cube without corners.
        assert_eq!(count(1.5), 19);
        assert_eq!(count(2.0), 33);
    }

    #[test]
    fn the_editable_area_blocks_the_fill() {
        // Two in-range regions joined through one non-editable voxel.
        let g = grid(1, 5, &[0, 0, 0, 0, 0]);
        let e = Array3::from_shape_vec((1, 1, 5), vec![1u8, 1, 0, 1, 1]).unwrap();
        assert_eq!(
            picture(&fill(g.clone(), [0, 0, 0], 0.0, 0.0, Some(&e))),
            "##..."
        );
        // A non-editable seed fills nothing.
        assert_eq!(
            picture(&fill(g.clone(), [0, 0, 2], 0.0, 0.0, Some(&e))),
            "....."
        );
        // The neighbourhood counts ignore the editable area.
        assert_eq!(picture(&fill(g, [0, 0, 0], 0.0, 1.0, Some(&e))), "##...");
    }

    #[test]
    fn bad_inputs_are_refused() {
        let g = grid(1, 2, &[0, 0]);
        let p = FloodFillingParams::default();
        assert!(flood_fill(g.view(), [0, 0, 2], &p, None, &Control::none()).is_err());
        let bad = FloodFillingParams {
            intensity_tolerance: -1.0,
            ..p
        };
        assert!(flood_fill(g.view(), [0, 0, 0], &bad, None, &Control::none()).is_err());
        let e = Array3::<u8>::ones((1, 1, 3));
        assert!(flood_fill(g.view(), [0, 0, 0], &p, Some(e.view()), &Control::none()).is_err());
    }

    #[test]
    fn defaults_are_slicers() {
        let p = FloodFillingParams::default();
        assert_eq!((p.intensity_tolerance, p.neighborhood_size_mm), (10.0, 1.0));
    }

    /// A direct transcription of the rules (stack flood, neighbourhood counted voxel by
    /// voxel) to check the span fill against.
    fn reference(d: &Array3<i16>, seed: [usize; 3], tol: f64, r: f64) -> Array3<u8> {
        let (nk, nj, ni) = d.dim();
        let v = d[seed] as f64;
        let (lo, hi) = ((v - tol).trunc() as i16, (v + tol).trunc() as i16);
        let inr = |p: [isize; 3]| {
            let x = d[[p[0] as usize, p[1] as usize, p[2] as usize]];
            lo <= x && x <= hi
        };
        let inside = |p: [isize; 3]| {
            p.iter().all(|&c| c >= 0)
                && p[0] < nk as isize
                && p[1] < nj as isize
                && p[2] < ni as isize
        };
        let n = (r + 0.5) as isize;
        let ok = |p: [isize; 3]| {
            if !inr(p) {
                return false;
            }
            if n <= 0 {
                return true;
            }
            let (mut t, mut h) = (0, 0);
            for a in -n..=n {
                for b in -n..=n {
                    for c in -n..=n {
                        let q = [p[0] + a, p[1] + b, p[2] + c];
                        let d2 = (a as f64 / r).powi(2)
                            + (b as f64 / r).powi(2)
                            + (c as f64 / r).powi(2);
                        if inside(q) && d2 < 1.0 + RADIUS_TOLERANCE {
                            t += 1;
                            h += usize::from(inr(q));
                        }
                    }
                }
            }
            h as f64 >= t as f64 * 0.5
        };
        let mut out = Array3::<u8>::zeros(d.dim());
        let mut seen = Array3::<u8>::zeros(d.dim());
        let mut stack = vec![[seed[0] as isize, seed[1] as isize, seed[2] as isize]];
        while let Some(p) = stack.pop() {
            let u = [p[0] as usize, p[1] as usize, p[2] as usize];
            if seen[u] != 0 {
                continue;
            }
            seen[u] = 1;
            if !ok(p) {
                continue;
            }
            out[u] = 1;
            for (a, s) in [(0, -1), (0, 1), (1, -1), (1, 1), (2, -1), (2, 1)] {
                let mut q = p;
                q[a] += s;
                if inside(q) {
                    stack.push(q);
                }
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn span_fill_matches_the_plain_rules(
            values in proptest::collection::vec(0i16..4, 4 * 5 * 6),
            seed in (0usize..4, 0usize..5, 0usize..6),
            tol in 0.0f64..2.0,
            radius in 0.0f64..2.2,
        ) {
            let d = Array3::from_shape_vec((4, 5, 6), values).unwrap();
            let s = [seed.0, seed.1, seed.2];
            prop_assert_eq!(fill(d.clone(), s, tol, radius, None), reference(&d, s, tol, radius));
        }

        #[test]
        fn the_fill_is_inside_the_editable_area_and_flips_with_the_volume(
            values in proptest::collection::vec(0i16..3, 3 * 4 * 5),
            editable in proptest::collection::vec(0u8..4, 3 * 4 * 5),
            seed in (0usize..3, 0usize..4, 0usize..5),
        ) {
            let d = Array3::from_shape_vec((3, 4, 5), values).unwrap();
            let e = Array3::from_shape_vec((3, 4, 5), editable.iter().map(|&x| u8::from(x != 0)).collect()).unwrap();
            let s = [seed.0, seed.1, seed.2];
            let m = fill(d.clone(), s, 1.0, 1.0, Some(&e));
            prop_assert!(Zip::from(&m).and(&e).all(|&m, &e| m <= e));
            let mut flipped = d.clone();
            flipped.invert_axis(ndarray::Axis(2));
            let mut fe = e.clone();
            fe.invert_axis(ndarray::Axis(2));
            let mut fm = fill(flipped.as_standard_layout().to_owned(), [s[0], s[1], 4 - s[2]], 1.0, 1.0, Some(&fe.as_standard_layout().to_owned()));
            fm.invert_axis(ndarray::Axis(2));
            prop_assert_eq!(fm, m);
        }
    }
}
