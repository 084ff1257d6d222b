//! Local threshold: the island of a threshold range under a click, kept from leaking
//! through bridges thinner than a minimum diameter.
//!
//! Reference: SlicerSegmentEditorExtraEffects' `SegmentEditorLocalThreshold` (Ctrl+click),
//! reference §3.4. The pipeline, on the source aligned to the reference lattice:
//! 1. threshold `[MinimumThreshold, MaximumThreshold]`, both inclusive (as [`threshold`]);
//! 2. erode it with the ellipsoid of `k` voxels per axis, `k` = `MinimumDiameterMm` in
//!    voxels rounded to an odd number as Slicer does (Python's half-to-even `round`, the
//!    same rule as Smoothing's [`kernel_size_voxels`]);
//!    neighbours outside the image are ignored, as in `vtkImageDilateErode3D`;
//! 3. drop the 6-connected islands of fewer than 125 voxels (`vtkITKIslandMath`);
//! 4. snap the click to the nearest remaining voxel within `±(k − 1)/2` voxels per axis
//!    (squared index distance; on ties the first in `k`, `j`, `i` scan order wins); when
//!    there is none, nothing is added;
//! 5. the algorithm step:
//!    - *Masking*: the other islands are dilated with the ellipsoid of `2k − 1` voxels and
//!      removed from the threshold; the result is the 6-connected region of the snapped
//!      click in what remains (empty when a dilated island covers the click).
//!    - *GrowCut* (Slicer's default) and *WaterShed* grow seed labels over the whole
//!      image: 2 on the clicked island, 1 on the other islands, 3 on every voxel outside
//!      the threshold, 0 (to be decided) on the rest, i.e. the threshold voxels that the
//!      erosion or the island rule removed. *GrowCut* is Fast GrowCut
//!      ([`crate::kernels::growcut`], `vtkImageGrowCutSegment` with Slicer's default
//!      locality 0) with the edit mask as locked voxels: Slicer's `GenerateEditMask` for
//!      no edited segment, under the editable area and the intensity range narrowed to
//!      the threshold range, so every voxel outside the threshold is locked and the labels
//!      compete only inside it. *WaterShed* floods SimpleITK's
//!      `GradientMagnitudeRecursiveGaussian` of the source at σ = `FeatureSizeMm` from the
//!      seeds (`MorphologicalWatershedFromMarkers`, face-connected, no watershed line,
//!      [`super::watershed`]). The result is the voxels labelled 2.
//!
//! The result is added to the segment (mode Add). Slicer also narrows the editable
//! intensity range to the threshold range for that edit; the result lies inside the
//! threshold range already (voxels outside it are seeds of label 3 or locked), so the
//! editable range the user set is all that still applies.
//!
//! Like Slicer, GrowCut and WaterShed work on the whole image (Slicer's optional ROI crop
//! is not offered), so a click costs a full Grow from seeds or Watershed of the volume.
//!
//! # Example
//! ```
//! use ndarray::Array3;
//! use segkit::effects::local_threshold::{local_threshold, LocalThresholdParams, SegmentationAlgorithm};
//! use segkit::effects::Control;
//! // A 6x6x6 block of 100 in a 0 background: the click inside it fills the block.
//! let mut ct = Array3::<i16>::zeros((8, 8, 8));
//! ct.slice_mut(ndarray::s![1..7, 1..7, 1..7]).fill(100);
//! let params = LocalThresholdParams {
//!     minimum_threshold: 50.0,
//!     maximum_threshold: 150.0,
//!     minimum_diameter_mm: 1.0,
//!     segmentation_algorithm: SegmentationAlgorithm::Masking,
//!     ..Default::default()
//! };
//! let out = local_threshold(ct.view(), [1.0; 3], [3, 3, 3], &params, None, &Control::none()).unwrap();
//! assert_eq!(out.modifiers[0].mask.iter().filter(|&&v| v == 1).count(), 216);
//! ```

use super::masking::Masking;
use super::schema::{ChoiceSpec, EffectSpec, FromSource, Input, ParamSpec, ParamValues};
use super::smoothing::kernel_size_voxels;
use super::threshold::{threshold, value_range, ThresholdParams};
use super::watershed::{watershed, WatershedParams};
use super::{
    Control, Effect, EffectError, EffectOutput, EffectRequest, ModificationMode, Modifier,
};
use crate::kernels::components::{label_runs, Components, Connectivity};
use crate::kernels::growcut::{GrowCut, Intensity};
use crate::kernels::morphology::{dilate_ellipsoid, erode_ellipsoid};
use crate::volume::Scalar;
use crate::with_volume;
use ndarray::{Array3, ArrayView3, Zip};

/// Islands of the eroded threshold smaller than this are dropped (5 x 5 x 5 voxels).
pub const MINIMUM_ISLAND_VOXELS: u64 = 125;

/// How the clicked island is grown back (Slicer's `SegmentationAlgorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SegmentationAlgorithm {
    /// The clicked region of the threshold, kept away from the other islands.
    Masking,
    /// Grow from seeds (clicked island, other islands, outside the threshold): Slicer's
    /// default.
    #[default]
    GrowCut,
    /// Marker-based watershed on the gradient at `FeatureSizeMm`, from the same seeds.
    WaterShed,
}

impl SegmentationAlgorithm {
    /// All algorithms, in Slicer's order.
    pub const ALL: [SegmentationAlgorithm; 3] = [
        SegmentationAlgorithm::Masking,
        SegmentationAlgorithm::GrowCut,
        SegmentationAlgorithm::WaterShed,
    ];

    /// Slicer's parameter value.
    pub fn slicer_name(self) -> &'static str {
        match self {
            SegmentationAlgorithm::Masking => "Masking",
            SegmentationAlgorithm::GrowCut => "GrowCut",
            SegmentationAlgorithm::WaterShed => "WaterShed",
        }
    }

    /// The algorithm Slicer names `name`.
    pub fn from_slicer_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.slicer_name() == name)
    }
}

/// Parameters of Local threshold; `Default` gives Slicer's defaults (the schema's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalThresholdParams {
    /// `MinimumThreshold`, inclusive, source units.
    pub minimum_threshold: f64,
    /// `MaximumThreshold`, inclusive, source units.
    pub maximum_threshold: f64,
    /// `MinimumDiameterMm`, default 3: bridges thinner than this do not connect.
    pub minimum_diameter_mm: f64,
    /// `FeatureSizeMm`, default 3: the watershed's smoothing scale.
    pub feature_size_mm: f64,
    /// `SegmentationAlgorithm`, default `GrowCut`.
    pub segmentation_algorithm: SegmentationAlgorithm,
}

impl LocalThresholdParams {
    /// The parameters from checked values; `range` gives the threshold bounds left to
    /// their source-derived defaults (Threshold's initial bounds).
    pub fn from_values(
        v: &ParamValues,
        range: impl FnOnce() -> (f64, f64),
    ) -> Result<Self, EffectError> {
        let (lo, hi) = match (
            v.given_double("MinimumThreshold")?,
            v.given_double("MaximumThreshold")?,
        ) {
            (Some(lo), Some(hi)) => (lo, hi),
            (lo, hi) => {
                let (vlo, vhi) = range();
                let i = ThresholdParams::initial(vlo, vhi);
                (
                    lo.unwrap_or(i.minimum_threshold),
                    hi.unwrap_or(i.maximum_threshold),
                )
            }
        };
        Ok(LocalThresholdParams {
            minimum_threshold: lo,
            maximum_threshold: hi,
            minimum_diameter_mm: v.double("MinimumDiameterMm")?.abs(),
            feature_size_mm: v.double("FeatureSizeMm")?.abs(),
            segmentation_algorithm: v.choice(
                "SegmentationAlgorithm",
                SegmentationAlgorithm::from_slicer_name,
            )?,
        })
    }
}

impl Default for LocalThresholdParams {
    /// Slicer's defaults, as the schema states them (bounds from an unknown range).
    fn default() -> Self {
        Self::from_values(&ParamValues::defaults(&LocalThreshold.spec()), || {
            (0.0, 0.0)
        })
        .expect("the Local threshold schema's defaults parse")
    }
}

/// Runs Local threshold on `source` (`[k][j][i]`, spacing along `(i, j, k)` in mm) for a
/// click at `point_kji`.
///
/// `locked` (non-zero = locked, the source's shape) is the edit mask the GrowCut algorithm
/// may not grow into besides the voxels outside the threshold (which are locked in any
/// case); the other algorithms ignore it.
///
/// Returns one Add modifier (empty when the click snaps to nothing), and reports
/// `kernel_voxels_i/j/k` and `region_voxels`.
///
/// # Errors
/// A NaN bound, a cancelled request, a `locked` array of another shape, WaterShed with a
/// `FeatureSizeMm` of 0, GrowCut on an image with fewer than 3 voxels along an axis.
pub fn local_threshold<T: Scalar + Intensity>(
    source: ArrayView3<T>,
    spacing_ijk: [f64; 3],
    point_kji: [usize; 3],
    params: &LocalThresholdParams,
    locked: Option<ArrayView3<u8>>,
    control: &Control,
) -> Result<EffectOutput, EffectError> {
    let shape = source.dim();
    if let Some(l) = &locked {
        if l.dim() != shape {
            return Err(EffectError::Input(format!(
                "the locked voxels have shape {:?} and the source {shape:?} (k, j, i)",
                l.dim()
            )));
        }
    }
    if params.segmentation_algorithm == SegmentationAlgorithm::WaterShed
        && (params.feature_size_mm.is_nan() || params.feature_size_mm <= 0.0)
    {
        return Err(EffectError::Parameter {
            name: "FeatureSizeMm".into(),
            reason: format!(
                "{} mm: the WaterShed algorithm needs a Gaussian scale > 0",
                params.feature_size_mm
            ),
        });
    }
    let kernel_kji = kernel_size_voxels(params.minimum_diameter_mm, spacing_ijk);
    let kernel_ijk = [kernel_kji[2], kernel_kji[1], kernel_kji[0]];
    let empty = |region: u64| EffectOutput {
        modifiers: vec![Modifier::selected(
            ModificationMode::Add,
            Array3::zeros(shape),
        )],
        reported: vec![
            ("kernel_voxels_i".into(), kernel_ijk[0] as f64),
            ("kernel_voxels_j".into(), kernel_ijk[1] as f64),
            ("kernel_voxels_k".into(), kernel_ijk[2] as f64),
            ("region_voxels".into(), region as f64),
        ],
        volumes: Vec::new(),
    };
    if kernel_ijk.iter().all(|&k| k <= 0) {
        // Slicer: "feature too small", nothing happens.
        return Ok(empty(0));
    }
    // An axis whose kernel rounds below one voxel is not eroded along it.
    let kernel_kji = [kernel_ijk[2], kernel_ijk[1], kernel_ijk[0]].map(|k| k.max(1) as usize);

    // 1. Threshold, inclusive, with VTK's conversion of the bounds to the voxel type.
    let thresh = threshold(
        source,
        &ThresholdParams {
            minimum_threshold: params.minimum_threshold,
            maximum_threshold: params.maximum_threshold,
            auto: None,
        },
    )?
    .modifiers
    .into_iter()
    .next()
    .map(|m| m.mask)
    .unwrap_or_else(|| Array3::zeros(shape));
    control.check()?;
    control.progress(0.2, "threshold");

    // 2. Erode, 3. drop small islands.
    let eroded = erode_ellipsoid(thresh.view(), kernel_kji);
    control.check()?;
    control.progress(0.4, "eroded");
    let comps = label_runs(eroded.view(), |&v| v != 0, Connectivity::Faces6);
    drop(eroded);
    let mut big = Array3::<u8>::zeros(shape);
    comps.paint(&mut big, |l| {
        (comps.sizes[l as usize - 1] >= MINIMUM_ISLAND_VOXELS).then_some(1u8)
    });
    control.check()?;

    // 4. Snap the click.
    let Some(seed) = snap(big.view(), point_kji, kernel_kji) else {
        return Ok(empty(0));
    };
    let Some(seed_label) = comps.label_at(seed) else {
        return Ok(empty(0));
    };

    let (out, voxels) = match params.segmentation_algorithm {
        SegmentationAlgorithm::Masking => {
            masking_region(big, thresh, &comps, seed_label, seed, kernel_kji, control)?
        }
        algorithm => {
            // 5. Seeds: 2 = clicked island, 1 = other islands, 3 = outside the threshold.
            let mut seeds = Array3::<u16>::zeros(shape);
            comps.paint(&mut seeds, |l| {
                (comps.sizes[l as usize - 1] >= MINIMUM_ISLAND_VOXELS)
                    .then_some(if l == seed_label { 2 } else { 1 })
            });
            drop(big);
            Zip::from(&mut seeds).and(&thresh).par_for_each(|s, &t| {
                if t == 0 {
                    *s = 3;
                }
            });
            control.check()?;
            control.progress(0.5, "seeds");
            let labels = if algorithm == SegmentationAlgorithm::GrowCut {
                let mut lock = thresh.mapv(|t| u8::from(t == 0));
                drop(thresh);
                if let Some(l) = locked {
                    Zip::from(&mut lock).and(l).par_for_each(|a, &b| {
                        if b != 0 {
                            *a = 1;
                        }
                    });
                }
                GrowCut::new(0.0).update(
                    source,
                    seeds.view(),
                    Some(lock.view()),
                    spacing_ijk,
                    control,
                )?
            } else {
                drop(thresh);
                let scale = WatershedParams {
                    object_scale_mm: params.feature_size_mm,
                };
                watershed(source, seeds.view(), spacing_ijk, &scale, control)?
            };
            let mut voxels = 0u64;
            let out = labels.mapv(|l| {
                let inside = l == 2;
                voxels += u64::from(inside);
                u8::from(inside)
            });
            (out, voxels)
        }
    };
    control.progress(1.0, "done");
    let mut output = empty(voxels);
    output.modifiers[0].mask = out;
    Ok(output)
}

/// The Masking algorithm (step 5): the other islands of `big`, dilated with the `2k − 1`
/// ellipsoid, are removed from `thresh`, and the 6-connected region of `seed` in what
/// remains is the result, with its voxel count.
fn masking_region(
    big: Array3<u8>,
    thresh: Array3<u8>,
    comps: &Components,
    seed_label: u32,
    seed: [usize; 3],
    kernel_kji: [usize; 3],
    control: &Control,
) -> Result<(Array3<u8>, u64), EffectError> {
    let mut others = big;
    comps.paint(&mut others, |l| (l == seed_label).then_some(0u8));
    let grown_others = dilate_ellipsoid(others.view(), kernel_kji.map(|k| 2 * k - 1));
    drop(others);
    control.check()?;
    control.progress(0.7, "other islands dilated");
    let mut allowed = thresh;
    Zip::from(&mut allowed)
        .and(&grown_others)
        .par_for_each(|a, &g| {
            if g != 0 {
                *a = 0;
            }
        });
    drop(grown_others);
    let region = label_runs(allowed.view(), |&v| v != 0, Connectivity::Faces6);
    let mut out = Array3::<u8>::zeros(allowed.dim());
    let mut voxels = 0;
    if let Some(label) = region.label_at(seed) {
        region.paint(&mut out, |l| (l == label).then_some(1u8));
        voxels = region.sizes[label as usize - 1];
    }
    Ok((out, voxels))
}

/// The voxel of `mask` nearest to `point_kji` within `±(k − 1)/2` voxels per axis, as
/// Slicer's `snapIJKPointsToLabel`: squared index distance, first in `k`, `j`, `i` scan
/// order on ties.
fn snap(mask: ArrayView3<u8>, point_kji: [usize; 3], kernel_kji: [usize; 3]) -> Option<[usize; 3]> {
    let (nk, nj, ni) = mask.dim();
    let reach = kernel_kji.map(|k| (k.saturating_sub(1) / 2) as i64);
    let p = point_kji.map(|v| v as i64);
    let mut best: Option<([usize; 3], i64)> = None;
    for dk in -reach[0]..=reach[0] {
        for dj in -reach[1]..=reach[1] {
            for di in -reach[2]..=reach[2] {
                let (k, j, i) = (p[0] + dk, p[1] + dj, p[2] + di);
                if k < 0 || j < 0 || i < 0 || k >= nk as i64 || j >= nj as i64 || i >= ni as i64 {
                    continue;
                }
                let q = [k as usize, j as usize, i as usize];
                if mask[q] == 0 {
                    continue;
                }
                let d = dk * dk + dj * dj + di * di;
                if best.is_none_or(|(_, bd)| d < bd) {
                    best = Some((q, d));
                }
            }
        }
    }
    best.map(|(q, _)| q)
}

/// The editable area Slicer's GrowCut step locks against: `GenerateEditMask` with no
/// edited segment under the request's editable area and intensity range (the threshold
/// range is added inside [`local_threshold`]).
fn edit_mask_for_growcut(
    request: &EffectRequest,
    masking: &Masking,
) -> Result<Option<Array3<u8>>, EffectError> {
    super::masking::editable_area(
        request.segments,
        request.visible,
        None,
        masking,
        request.source,
    )
}

/// The Local threshold effect in the catalog.
pub struct LocalThreshold;

impl Effect for LocalThreshold {
    fn spec(&self) -> EffectSpec {
        let mut min = ParamSpec::double("MinimumThreshold", "Minimum", "0")
            .help("Voxels with a source value of at least this are in the range (inclusive).");
        min.default_from_source = Some(FromSource::QuarterRange);
        min.range_from_source = true;
        let mut max = ParamSpec::double("MaximumThreshold", "Maximum", "0")
            .help("Voxels with a source value of at most this are in the range (inclusive).");
        max.default_from_source = Some(FromSource::Maximum);
        max.range_from_source = true;
        let diameter = ParamSpec::double("MinimumDiameterMm", "Minimum diameter", "3")
            .help(
                "Regions joined to the clicked one by a bridge thinner than this are left out, \
                 to prevent leaks through small holes.",
            )
            .range(0.0, 1000.0)
            .step(0.5)
            .unit("mm");
        let feature = ParamSpec::double("FeatureSizeMm", "Feature size", "3")
            .help("Smoothness of the surface for WaterShed (Gaussian scale).")
            .range(0.0, 1000.0)
            .step(0.5)
            .unit("mm")
            .visible_when("SegmentationAlgorithm", &["WaterShed"]);
        let algorithm = ParamSpec::choice(
            "SegmentationAlgorithm",
            "Segmentation algorithm",
            vec![
                ChoiceSpec::new(
                    "Masking",
                    "Masking",
                    "The clicked region of the threshold, kept away from the other islands.",
                ),
                ChoiceSpec::new(
                    "GrowCut",
                    "GrowCut",
                    "Grow from seeds between the clicked island, the other islands and \
                     the voxels outside the threshold.",
                ),
                ChoiceSpec::new(
                    "WaterShed",
                    "WaterShed",
                    "Watershed of the gradient between the clicked island, the other \
                     islands and the voxels outside the threshold.",
                ),
            ],
            "GrowCut",
        );
        let mut spec = EffectSpec::new(
            "Local Threshold",
            "local-threshold",
            "Local threshold",
            "Click a structure to add its part of the threshold range, without leaking \
             through bridges thinner than the minimum diameter.",
        );
        spec.inputs = vec![Input::SourceVolume, Input::Point];
        spec.params = vec![min, max, diameter, feature, algorithm];
        spec.reported = vec![
            ("kernel_voxels_i", "Minimum diameter in voxels along i."),
            ("kernel_voxels_j", "Minimum diameter in voxels along j."),
            ("kernel_voxels_k", "Minimum diameter in voxels along k."),
            ("region_voxels", "Voxels of the region added."),
        ];
        spec.intensity_range = Some(("MinimumThreshold", "MaximumThreshold"));
        spec
    }

    fn run(&self, request: &EffectRequest) -> Result<EffectOutput, EffectError> {
        let source = request.source("Local threshold")?;
        let point = request
            .point()
            .ok_or_else(|| EffectError::Input("Local threshold needs a clicked point".into()))?;
        let params = LocalThresholdParams::from_values(request.params, || {
            with_volume!(source, v => value_range(v.data.view())).unwrap_or((0.0, 0.0))
        })?;
        // Slicer's GrowCut step locks GenerateEditMask's voxels for no edited segment.
        let locked = match (params.segmentation_algorithm, request.masking) {
            (SegmentationAlgorithm::GrowCut, Some(m)) => edit_mask_for_growcut(request, m)?
                .map(|editable| editable.mapv(|e| u8::from(e == 0))),
            _ => None,
        };
        with_volume!(source, v => local_threshold(
            v.data.view(),
            request.spacing_ijk(),
            point,
            &params,
            locked.as_ref().map(|l| l.view()),
            request.control
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::s;

    fn masking(lo: f64, hi: f64, diameter: f64) -> LocalThresholdParams {
        LocalThresholdParams {
            minimum_threshold: lo,
            maximum_threshold: hi,
            minimum_diameter_mm: diameter,
            segmentation_algorithm: SegmentationAlgorithm::Masking,
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_slicers() {
        let p = LocalThresholdParams::default();
        assert_eq!(p.minimum_diameter_mm, 3.0);
        assert_eq!(p.feature_size_mm, 3.0);
        assert_eq!(p.segmentation_algorithm, SegmentationAlgorithm::GrowCut);
    }

    /// Two 7-voxel cubes joined by a one-voxel bridge: with a 3 mm diameter the bridge is
    /// eroded away, the other cube's dilation stops at the bridge, and only the clicked
    /// cube (plus the part of the bridge outside the other cube's reach) is added.
    #[test]
    fn thin_bridges_do_not_leak() {
        let mut ct = Array3::<i16>::zeros((9, 9, 21));
        ct.slice_mut(s![1..8, 1..8, 1..8]).fill(100);
        ct.slice_mut(s![1..8, 1..8, 13..20]).fill(100);
        ct.slice_mut(s![4, 4, 8..13]).fill(100);
        let out = local_threshold(
            ct.view(),
            [1.0; 3],
            [4, 4, 4],
            &masking(50.0, 150.0, 3.0),
            None,
            &Control::none(),
        )
        .unwrap();
        let m = &out.modifiers[0].mask;
        assert_eq!(count(m.slice(s![1..8, 1..8, 1..8])), 343);
        assert_eq!(
            count(m.slice(s![.., .., 13..])),
            0,
            "leaked into the other cube"
        );
        // Without the diameter constraint (1 voxel) the bridge connects them.
        let all = local_threshold(
            ct.view(),
            [1.0; 3],
            [4, 4, 4],
            &masking(50.0, 150.0, 1.0),
            None,
            &Control::none(),
        )
        .unwrap();
        assert_eq!(count(all.modifiers[0].mask.view()), 343 * 2 + 5);
    }

    #[test]
    fn a_click_off_the_range_snaps_or_adds_nothing() {
        let mut ct = Array3::<i16>::zeros((9, 9, 9));
        ct.slice_mut(s![1..8, 1..8, 1..8]).fill(100);
        // Next to the cube: within the 3-voxel kernel's reach of 1 voxel after erosion? The
        // eroded cube is 2..7, so (4, 4, 8) is 2 away along i: nothing.
        let out = local_threshold(
            ct.view(),
            [1.0; 3],
            [4, 4, 8],
            &masking(50.0, 150.0, 3.0),
            None,
            &Control::none(),
        )
        .unwrap();
        assert!(out.modifiers[0].mask.iter().all(|&v| v == 0));
        // On the cube's face (4, 4, 7): snapped to (4, 4, 6) of the eroded cube.
        let out = local_threshold(
            ct.view(),
            [1.0; 3],
            [4, 4, 7],
            &masking(50.0, 150.0, 3.0),
            None,
            &Control::none(),
        )
        .unwrap();
        assert_eq!(
            out.modifiers[0].mask.iter().filter(|&&v| v != 0).count(),
            343
        );
    }

    #[test]
    fn small_islands_are_ignored() {
        // A 4x4x4 cube is eroded to 2x2x2 = 8 voxels < 125: nothing is added.
        let mut ct = Array3::<i16>::zeros((6, 6, 6));
        ct.slice_mut(s![1..5, 1..5, 1..5]).fill(100);
        let out = local_threshold(
            ct.view(),
            [1.0; 3],
            [2, 2, 2],
            &masking(50.0, 150.0, 3.0),
            None,
            &Control::none(),
        )
        .unwrap();
        assert!(out.modifiers[0].mask.iter().all(|&v| v == 0));
    }

    /// Cube A (100) and cube B (140) joined by a one-voxel bridge whose first three voxels
    /// are 100 and last two 140: the bridge is eroded away, so its voxels are decided by
    /// the growing algorithm.
    fn two_cubes() -> Array3<i16> {
        let mut ct = Array3::<i16>::zeros((9, 9, 21));
        ct.slice_mut(s![1..8, 1..8, 1..8]).fill(100);
        ct.slice_mut(s![1..8, 1..8, 13..20]).fill(140);
        ct.slice_mut(s![4, 4, 8..11]).fill(100);
        ct.slice_mut(s![4, 4, 11..13]).fill(140);
        ct
    }

    fn growing(algorithm: SegmentationAlgorithm) -> LocalThresholdParams {
        LocalThresholdParams {
            segmentation_algorithm: algorithm,
            feature_size_mm: 1.0,
            ..masking(50.0, 150.0, 3.0)
        }
    }

    fn count(a: ndarray::ArrayView3<u8>) -> usize {
        a.iter().filter(|&&v| v != 0).count()
    }

    #[test]
    fn growcut_gives_the_clicked_island_what_is_nearest_to_it_in_intensity() {
        let ct = two_cubes();
        let p = growing(SegmentationAlgorithm::GrowCut);
        let out =
            local_threshold(ct.view(), [1.0; 3], [4, 4, 4], &p, None, &Control::none()).unwrap();
        let m = &out.modifiers[0].mask;
        assert_eq!(out.modifiers[0].mode, ModificationMode::Add);
        // The whole of cube A (its eroded shell included) and the bridge's 100 part.
        assert_eq!(count(m.slice(s![1..8, 1..8, 1..8])), 343);
        assert_eq!(m.slice(s![4, 4, 8..13]).to_vec(), vec![1, 1, 1, 0, 0]);
        assert_eq!(count(m.view()), 346);
        assert_eq!(
            out.reported
                .iter()
                .find(|(k, _)| k == "region_voxels")
                .unwrap()
                .1,
            346.0
        );
        // Clicking cube B gives B and the other part of the bridge.
        let out =
            local_threshold(ct.view(), [1.0; 3], [4, 4, 16], &p, None, &Control::none()).unwrap();
        let m = &out.modifiers[0].mask;
        assert_eq!(count(m.slice(s![1..8, 1..8, 13..20])), 343);
        assert_eq!(m.slice(s![4, 4, 8..13]).to_vec(), vec![0, 0, 0, 1, 1]);
    }

    #[test]
    fn growcut_does_not_enter_locked_voxels() {
        let ct = two_cubes();
        let mut locked = Array3::<u8>::zeros(ct.dim());
        locked.slice_mut(s![4, 4, 9..13]).fill(1);
        // Also a corner of cube A outside its eroded island.
        locked[[1, 1, 1]] = 1;
        let p = growing(SegmentationAlgorithm::GrowCut);
        let out = local_threshold(
            ct.view(),
            [1.0; 3],
            [4, 4, 4],
            &p,
            Some(locked.view()),
            &Control::none(),
        )
        .unwrap();
        let m = &out.modifiers[0].mask;
        assert_eq!(m[[1, 1, 1]], 0);
        assert_eq!(m.slice(s![4, 4, 8..13]).to_vec(), vec![1, 0, 0, 0, 0]);
        assert_eq!(count(m.view()), 343);
        let wrong = Array3::<u8>::zeros((1, 1, 1));
        let e = local_threshold(
            ct.view(),
            [1.0; 3],
            [4, 4, 4],
            &p,
            Some(wrong.view()),
            &Control::none(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("shape"), "{e}");
    }

    #[test]
    fn watershed_keeps_to_the_clicked_side_and_the_threshold() {
        let ct = two_cubes();
        let p = growing(SegmentationAlgorithm::WaterShed);
        let out =
            local_threshold(ct.view(), [1.0; 3], [4, 4, 4], &p, None, &Control::none()).unwrap();
        let m = &out.modifiers[0].mask;
        // The clicked island (cube A eroded) is in; its shell is shared with the outside's
        // label 3 along the strong gradient at the cube's faces.
        assert_eq!(count(m.slice(s![2..7, 2..7, 2..7])), 125);
        assert_eq!(count(m.slice(s![.., .., 13..])), 0, "leaked into cube B");
        assert!(m
            .iter()
            .zip(ct.iter())
            .all(|(&v, &c)| v == 0 || (50..=150).contains(&c)));
        // A scale of 0 is refused with the parameter's name.
        let flat = LocalThresholdParams {
            feature_size_mm: 0.0,
            ..p
        };
        let e = local_threshold(
            ct.view(),
            [1.0; 3],
            [4, 4, 4],
            &flat,
            None,
            &Control::none(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("FeatureSizeMm"), "{e}");
    }
}
