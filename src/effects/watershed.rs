//! Watershed: every visible segment grows from its seeds until it meets another, the
//! borders placed where the source intensity changes abruptly.
//!
//! Reference: `SegmentEditorWatershed` of SlicerSegmentEditorExtraEffects
//! (`SegmentEditorWatershedLib/SegmentEditorEffect.py`; `../shared/reference/slicer-effects.md`
//! §3.2), an auto-complete effect (minimum 2 segments, working box ratio 0.1; see
//! [`super::auto_complete`]). On the working box, with the visible segments merged into one
//! label map (label n = the n-th visible segment, a later one winning overlaps), it runs
//! through SimpleITK:
//!
//! 1. `GradientMagnitudeRecursiveGaussian(source, σ = ObjectScaleMm)`: the gradient
//!    magnitude at scale σ in mm (voxel spacing taken into account), `f32`
//!    ([`crate::kernels::recursive_gaussian::gradient_magnitude`]);
//! 2. `MorphologicalWatershedFromMarkersImageFilter` with `MarkWatershedLine(False)` and
//!    `FullyConnected(False)` on the merged seeds
//!    ([`crate::kernels::watershed::watershed_from_markers`]): each voxel of the box gets the
//!    label of the seed that floods it first (face neighbours, lowest gradient first; ties in
//!    queue order as ITK);
//! 3. `Cast(sitkInt16)`: the labels are the segment numbers, which the merged `short` label
//!    map already holds, so the cast changes nothing (labels here are `u16`; Slicer's merged
//!    map would wrap above 32767 segments).
//!
//! **Ties and borders**: see the kernels; the box's sides are the image's border for both
//! filters (the gradient extends the box's edge values outward, as ITK does). Voxels of the
//! box not connected to any seed (impossible in a box, which is connected) would stay 0.
//!
//! No edit mask reaches the algorithm; Apply writes each segment with mode Set, so masking
//! and overwrite apply then (the effect's help says masking is bypassed; the framework's
//! Apply does not bypass it, and neither does this).
//!
//! Between updates of a preview the gradient is kept: new seeds only run the watershed
//! again; a new `ObjectScaleMm` computes the gradient again.

use super::auto_complete::{self, AutoComplete, Options, Preview, PreviewInput, Seeds};
use super::schema::{EffectSpec, Input, ParamSpec, ParamValues};
use super::{Control, Effect, EffectError, EffectOutput, EffectRequest};
use crate::kernels::{recursive_gaussian, watershed};
use crate::volume::Scalar;
use crate::with_volume;
use ndarray::{Array3, ArrayView3};

/// Parameters of Watershed; `Default` gives Slicer's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WatershedParams {
    /// `ObjectScaleMm`: the Gaussian σ, in mm, of the gradient that places the borders.
    /// Larger values give smoother segments and fewer leaks.
    pub object_scale_mm: f64,
}

impl WatershedParams {
    /// The parameters from checked values (given or the schema's defaults).
    pub fn from_values(v: &ParamValues) -> Result<Self, EffectError> {
        Ok(WatershedParams {
            object_scale_mm: v.double("ObjectScaleMm")?,
        })
    }
}

impl Default for WatershedParams {
    /// Slicer's defaults, as the schema states them.
    fn default() -> Self {
        Self::from_values(&ParamValues::defaults(&Watershed.spec()))
            .expect("the Watershed schema's defaults parse")
    }
}

/// The gradient magnitude the watershed floods: SimpleITK's
/// `GradientMagnitudeRecursiveGaussian(source, object_scale_mm)`.
///
/// # Errors
/// A scale that is not positive, fewer than 4 voxels along an axis, a cancelled request.
pub fn feature_image<T: Scalar>(
    source: ArrayView3<T>,
    spacing_ijk: [f64; 3],
    params: &WatershedParams,
    control: &Control,
) -> Result<Array3<f32>, EffectError> {
    check(params)?;
    recursive_gaussian::gradient_magnitude(source, spacing_ijk, params.object_scale_mm, control)
}

/// The Watershed effect's labels on a box: the gradient of `source` at
/// `params.object_scale_mm`, flooded from `seeds` (0 = none, n = segment n).
///
/// # Errors
/// Shapes that differ, a scale that is not positive, fewer than 4 voxels along an axis, a
/// cancelled request.
pub fn watershed<T: Scalar>(
    source: ArrayView3<T>,
    seeds: ArrayView3<u16>,
    spacing_ijk: [f64; 3],
    params: &WatershedParams,
    control: &Control,
) -> Result<Array3<u16>, EffectError> {
    if source.dim() != seeds.dim() {
        return Err(EffectError::Input(format!(
            "the source has shape {:?} and the seeds {:?} (k, j, i)",
            source.dim(),
            seeds.dim()
        )));
    }
    let relief = feature_image(source, spacing_ijk, params, control)?;
    watershed::watershed_from_markers(relief.view(), seeds, control)
}

fn check(params: &WatershedParams) -> Result<(), EffectError> {
    let s = params.object_scale_mm;
    if !(s.is_finite() && s > 0.0) {
        return Err(EffectError::Parameter {
            name: "ObjectScaleMm".into(),
            reason: format!("{s} is not a number > 0"),
        });
    }
    Ok(())
}

/// The Watershed effect in the catalog.
pub struct Watershed;

/// A preview's state: the gradient of the box at the scale it was computed for.
struct WatershedPreview {
    relief: Option<(f64, Array3<f32>)>,
}

impl Preview for WatershedPreview {
    fn update(&mut self, input: &PreviewInput) -> Result<Array3<u16>, EffectError> {
        let params = WatershedParams::from_values(input.params)?;
        check(&params)?;
        let source = input
            .source
            .ok_or_else(|| EffectError::Input("Watershed needs a source volume".into()))?;
        let fresh = match &self.relief {
            Some((scale, r)) => *scale != params.object_scale_mm || r.dim() != input.seeds.dim(),
            None => true,
        };
        if fresh {
            self.relief = None;
            let relief = with_volume!(source, v => {
                if v.data.dim() != input.seeds.dim() {
                    return Err(EffectError::Internal(format!(
                        "the cropped source has shape {:?}, the seeds {:?}",
                        v.data.dim(),
                        input.seeds.dim()
                    )));
                }
                feature_image(v.data.view(), input.spacing_ijk, &params, input.control)
            })?;
            self.relief = Some((params.object_scale_mm, relief));
        }
        let (_, relief) = self
            .relief
            .as_ref()
            .ok_or_else(|| EffectError::Internal("the gradient was just computed".into()))?;
        input.control.progress(0.5, "Watershed: flooding");
        watershed::watershed_from_markers(relief.view(), input.seeds, input.control)
    }

    fn bytes(&self) -> usize {
        self.relief.as_ref().map_or(0, |(_, r)| 4 * r.len())
    }
}

impl AutoComplete for Watershed {
    fn options(&self) -> Options {
        Options {
            seeds: Seeds::Visible,
            min_segments: 2,
            min_segments_with_edit_mask: 2,
            box_ratio: Some(0.1),
            edit_mask: false,
            source: true,
        }
    }

    fn start(&self) -> Box<dyn Preview> {
        Box::new(WatershedPreview { relief: None })
    }
}

impl Effect for Watershed {
    fn spec(&self) -> EffectSpec {
        let scale = ParamSpec::double("ObjectScaleMm", "Object scale", "2")
            .help(
                "Increasing this value smooths the segmentation and reduces leaks. This is \
                 the sigma used for edge detection.",
            )
            // Slicer's slider: 0.0001 to 10 mm, 3 decimals (the length unit's precision).
            .range(0.0001, 10.0)
            .step(0.001)
            .unit("mm");
        let mut spec = EffectSpec::new(
            "Watershed",
            "watershed",
            "Watershed",
            "Grows every visible segment from its seeds into a complete segmentation; \
             borders are placed where the source intensity changes abruptly. Paint seeds in \
             each region with a different segment (at least two segments). Segments only \
             grow within a box around the seeds (10 % larger). Segments higher in the list \
             win where seeds overlap.",
        );
        spec.inputs = vec![Input::SourceVolume, Input::VisibleSegments];
        spec.params = vec![scale];
        spec.long_running = true;
        spec
    }

    fn run(&self, request: &EffectRequest) -> Result<EffectOutput, EffectError> {
        auto_complete::run_request(&Watershed, request, "Watershed")
    }

    fn auto_complete(&self) -> Option<&'static dyn AutoComplete> {
        Some(&Watershed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::catalog::tests::run_on;
    use crate::effects::{ModificationMode, Target};
    use crate::volume::{AnyVolume, Geometry, Volume};

    /// Two dark boxes (-1000) in bright tissue (40) side by side along i, separated by a
    /// bright wall; one seed in each box.
    fn two_rooms() -> (Array3<i16>, Array3<u16>) {
        let shape = (8, 10, 20);
        let ct = Array3::from_shape_fn(
            shape,
            |(_, _, i)| if (9..11).contains(&i) { 40 } else { -1000 },
        );
        let mut seeds = Array3::<u16>::zeros(shape);
        seeds[[4, 5, 3]] = 1;
        seeds[[4, 5, 16]] = 2;
        (ct, seeds)
    }

    #[test]
    fn each_seed_fills_its_room_and_the_border_is_on_the_wall() {
        let (ct, seeds) = two_rooms();
        let p = WatershedParams {
            object_scale_mm: 1.0,
        };
        let labels = watershed(ct.view(), seeds.view(), [1.0; 3], &p, &Control::none()).unwrap();
        for ((_, _, i), &l) in labels.indexed_iter() {
            if i < 9 {
                assert_eq!(l, 1, "i {i}");
            } else if i > 10 {
                assert_eq!(l, 2, "i {i}");
            } else {
                assert!(l == 1 || l == 2);
            }
        }
        // Every voxel is labelled and the split is symmetric: 10 columns each.
        let ones = labels.iter().filter(|&&l| l == 1).count();
        assert_eq!(ones, 8 * 10 * 10);
    }

    #[test]
    fn defaults_are_slicers_and_bad_scales_are_refused() {
        assert_eq!(WatershedParams::default().object_scale_mm, 2.0);
        let (ct, seeds) = two_rooms();
        let p = WatershedParams {
            object_scale_mm: 0.0,
        };
        let e = watershed(ct.view(), seeds.view(), [1.0; 3], &p, &Control::none()).unwrap_err();
        assert!(e.to_string().contains("ObjectScaleMm"), "{e}");
        let small = Array3::<i16>::zeros((2, 10, 10));
        let e = watershed(
            small.view(),
            Array3::<u16>::zeros((2, 10, 10)).view(),
            [1.0; 3],
            &WatershedParams::default(),
            &Control::none(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("at least 4 voxels"), "{e}");
    }

    #[test]
    fn the_effect_sets_every_visible_segment_in_the_box() {
        let (ct, seeds) = two_rooms();
        let source: AnyVolume = Volume::new(ct, Geometry::default()).into();
        let segments: Vec<Array3<u8>> = (1..=2u16)
            .map(|l| seeds.mapv(|s| u8::from(s == l)))
            .collect();
        let out = run_on(
            "watershed",
            Some(&source),
            &segments,
            Some(0),
            &[],
            &[("ObjectScaleMm", "1")],
        )
        .unwrap();
        assert_eq!(out.modifiers.len(), 2);
        assert_eq!(out.modifiers[0].target, Target::Segment(0));
        assert_eq!(out.modifiers[1].mode, ModificationMode::Set);
        // The box: seeds span i 3..=16 (13 voxels: margin 3), j 5 and k 4 (margin 3):
        // i 0..20, j 2..9, k 1..8.
        let a = &out.modifiers[0].mask;
        let b = &out.modifiers[1].mask;
        assert_eq!(a[[1, 2, 0]], 1);
        assert_eq!(a[[0, 2, 0]], 0, "outside the box along k");
        assert_eq!(b[[7, 8, 19]], 1);
        assert_eq!(b[[7, 9, 19]], 0, "outside the box along j");
        assert_eq!(
            a.iter().zip(b).filter(|(&x, &y)| x == 1 && y == 1).count(),
            0
        );
        // One segment is not enough.
        let e = run_on(
            "watershed",
            Some(&source),
            &segments[..1],
            Some(0),
            &[],
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("at least 2"), "{e}");
    }

    #[test]
    fn a_preview_keeps_its_gradient_until_the_scale_changes() {
        let (ct, seeds) = two_rooms();
        let source: AnyVolume = Volume::new(ct, Geometry::default()).into();
        let mut state = WatershedPreview { relief: None };
        let spec = Watershed.spec();
        let mut given = std::collections::BTreeMap::new();
        given.insert("ObjectScaleMm".to_string(), "1.5".to_string());
        let params = ParamValues::new(&spec, &given).unwrap();
        let control = Control::none();
        let input = PreviewInput {
            source: Some(&source),
            seeds: seeds.view(),
            locked: None,
            spacing_ijk: [1.0; 3],
            params: &params,
            control: &control,
        };
        let first = state.update(&input).unwrap();
        assert_eq!(state.bytes(), 4 * seeds.len());
        let mut more = seeds.clone();
        more[[4, 5, 8]] = 2;
        let second = state
            .update(&PreviewInput {
                seeds: more.view(),
                ..input
            })
            .unwrap();
        assert_ne!(first, second);
        assert_eq!(second[[4, 5, 8]], 2);
        // The gradient was kept (the same buffer); a new scale makes a new one.
        let kept = state.relief.as_ref().map(|(_, r)| r.as_ptr());
        state.update(&input).unwrap();
        assert_eq!(state.relief.as_ref().map(|(_, r)| r.as_ptr()), kept);
        given.insert("ObjectScaleMm".to_string(), "3".to_string());
        let params = ParamValues::new(&spec, &given).unwrap();
        state
            .update(&PreviewInput {
                params: &params,
                ..input
            })
            .unwrap();
        assert_eq!(state.relief.as_ref().map(|(s, _)| *s), Some(3.0));
    }

    /// `ArrayView3` of a preview's seeds must match the source: a mismatch is an error,
    /// not a panic.
    #[test]
    fn mismatched_seeds_are_an_error() {
        let (ct, _) = two_rooms();
        let seeds = Array3::<u16>::zeros((8, 10, 19));
        let e = watershed(
            ct.view(),
            seeds.view(),
            [1.0; 3],
            &WatershedParams::default(),
            &Control::none(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("shape"), "{e}");
        let _: ArrayView3<u16> = seeds.view();
    }
}
