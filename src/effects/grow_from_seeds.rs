//! Grow from seeds: every visible segment grows from its voxels (the seeds) until the
//! segments meet where the source intensity changes most.
//!
//! Reference: Slicer's `SegmentEditorGrowFromSeedsEffect.py` on the auto-complete framework
//! ([`super::auto_complete`], `../shared/reference/slicer-effects.md` §1.4 and §2.6). The
//! algorithm is Fast GrowCut (Zhu et al., IMIC 2014), a multi-source Dijkstra over the 26
//! neighbours with costs `|ΔI| + SeedLocalityFactor · step in mm`: see
//! [`crate::kernels::growcut`] for the arithmetic, the ties and the border.
//!
//! - **Inputs**: the visible segments, in display order, label n = n-th of them (a later
//!   segment wins where two overlap); at least 2, or 1 when an editable area or intensity
//!   range is set. The algorithm sees only the working box.
//! - **Locked voxels**: the edit mask (editable area and intensity range) freezes voxels at
//!   label 0, so segments neither take nor cross them.
//! - **Working box ratio 0.5.** Slicer sets its ratio inside `computePreviewLabelmap`, which
//!   runs *after* the box of the first update is made: 0.5 when `clippedMaskImageData` has a
//!   non-empty extent, 0.2 otherwise. `GenerateEditMask` always returns a mask on the whole
//!   extent (all zeros without masking), so "a mask is used" always holds and the ratio is
//!   0.5 for every box after the first; the very first box of a Slicer session uses the
//!   framework's default 0.1. segkit uses 0.5 throughout (slightly larger boxes; segments
//!   can grow a little farther than in Slicer's first preview).
//! - **Incremental update**: a preview keeps the distances and labels; seeds added since the
//!   last update continue the computation (as Slicer), removed seeds are not taken back
//!   until the preview starts over. Changing `SeedLocalityFactor` starts over.
//! - **Apply** sets each input segment to its label's voxels (mode Set, masking applies).
//!
//! Differences from Slicer: ties between equal-cost paths may fall the other way on a few
//! border voxels of integer images (heap order; float images match voxel for voxel); a seed
//! painted on a locked voxel stays frozen in later updates, where Slicer's incremental
//! update starts growing from it; Slicer's very first box uses ratio 0.1 (see above).

use super::auto_complete::{self, AutoComplete, Options, Preview, PreviewInput, Seeds};
use super::schema::{EffectSpec, Input, ParamSpec, ParamValues};
use super::{Effect, EffectError, EffectOutput, EffectRequest};
use crate::kernels::growcut::GrowCut;
use crate::with_volume;
use ndarray::Array3;

/// Slicer's working-box ratio for Grow from seeds when an edit mask is used (always, in
/// practice; see the module documentation).
const BOX_RATIO: f64 = 0.5;

/// Parameters of Grow from seeds; `Default` gives Slicer's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrowFromSeedsParams {
    /// `SeedLocalityFactor`: cost added per mm of path, in intensity units; larger values
    /// keep segments nearer their seeds.
    pub seed_locality_factor: f64,
}

impl GrowFromSeedsParams {
    /// The parameters from checked values (given or the schema's defaults).
    pub fn from_values(v: &ParamValues) -> Result<Self, EffectError> {
        Ok(GrowFromSeedsParams {
            seed_locality_factor: v.double("SeedLocalityFactor")?,
        })
    }
}

impl Default for GrowFromSeedsParams {
    /// Slicer's defaults, as the schema states them.
    fn default() -> Self {
        Self::from_values(&ParamValues::defaults(&GrowFromSeeds.spec()))
            .expect("the Grow from seeds schema's defaults parse")
    }
}

/// The Grow from seeds effect in the catalog.
pub struct GrowFromSeeds;

impl Effect for GrowFromSeeds {
    fn spec(&self) -> EffectSpec {
        let locality = ParamSpec::double("SeedLocalityFactor", "Seed locality", "0")
            .help(
                "Increasing this value makes the effect of seeds more localized, thereby \
                 reducing leaks, but requires seed regions to be more evenly distributed in \
                 the image. The value is specified as an additional \"intensity level \
                 difference\" per \"unit distance.\"",
            )
            .range(0.0, 10.0)
            .step(0.1);
        let mut spec = EffectSpec::new(
            "Grow from seeds",
            "grow-from-seeds",
            "Grow from seeds",
            "Grows every visible segment from its voxels (seeds) to a complete \
             segmentation; boundaries settle where the source intensity changes abruptly \
             (Fast GrowCut). Paint seeds in at least two segments (one with an editable \
             area or intensity range).",
        );
        spec.inputs = vec![Input::SourceVolume, Input::VisibleSegments];
        spec.params = vec![locality];
        spec.long_running = true;
        spec
    }

    fn run(&self, request: &EffectRequest) -> Result<EffectOutput, EffectError> {
        auto_complete::run_request(&GrowFromSeeds, request, "Grow from seeds")
    }

    fn auto_complete(&self) -> Option<&'static dyn AutoComplete> {
        Some(&GrowFromSeeds)
    }
}

impl AutoComplete for GrowFromSeeds {
    fn options(&self) -> Options {
        Options {
            seeds: Seeds::Visible,
            min_segments: 2,
            min_segments_with_edit_mask: 1,
            box_ratio: Some(BOX_RATIO),
            edit_mask: true,
            source: true,
        }
    }

    fn start(&self) -> Box<dyn Preview> {
        Box::new(GrowFromSeedsPreview { state: None })
    }
}

/// A preview's Fast GrowCut state (made on the first update, and again when the seed
/// locality changes).
struct GrowFromSeedsPreview {
    state: Option<GrowCut>,
}

impl Preview for GrowFromSeedsPreview {
    fn update(&mut self, input: &PreviewInput) -> Result<Array3<u16>, EffectError> {
        let params = GrowFromSeedsParams::from_values(input.params)?;
        let source = input
            .source
            .ok_or_else(|| EffectError::Input("Grow from seeds needs a source volume".into()))?;
        let penalty = params.seed_locality_factor;
        let state = match &mut self.state {
            Some(s) if s.penalty() == penalty => s,
            slot => slot.insert(GrowCut::new(penalty)),
        };
        with_volume!(source, v => state.update(
            v.data.view(),
            input.seeds,
            input.locked,
            input.spacing_ijk,
            input.control,
        ))
    }

    fn bytes(&self) -> usize {
        self.state.as_ref().map_or(0, GrowCut::bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::auto_complete::{Session, SessionInput};
    use crate::effects::catalog::tests::run_on;
    use crate::effects::masking::{MaskMode, Masking};
    use crate::effects::{Control, ModificationMode, Target};
    use crate::volume::{AnyVolume, Geometry, Volume};

    /// Two flat regions along i (0 on the left, 100 on the right) and one seed in each.
    fn two_regions() -> (AnyVolume, Vec<Array3<u8>>) {
        let shape = (5, 5, 12);
        let data = Array3::from_shape_fn(shape, |(_, _, i)| if i < 6 { 0i16 } else { 100 });
        let source: AnyVolume = Volume::new(data, Geometry::default()).into();
        let mut left = Array3::<u8>::zeros(shape);
        let mut right = Array3::<u8>::zeros(shape);
        left[[2, 2, 2]] = 1;
        right[[2, 2, 9]] = 1;
        (source, vec![left, right])
    }

    #[test]
    fn defaults_are_slicers() {
        assert_eq!(GrowFromSeedsParams::default().seed_locality_factor, 0.0);
        let spec = GrowFromSeeds.spec();
        let p = &spec.params[0];
        assert_eq!(
            (p.minimum, p.maximum, p.step),
            (Some(0.0), Some(10.0), Some(0.1))
        );
    }

    #[test]
    fn each_segment_is_set_to_its_side() {
        let (source, segments) = two_regions();
        let out = run_on(
            "grow-from-seeds",
            Some(&source),
            &segments,
            Some(0),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(out.modifiers.len(), 2);
        for (n, m) in out.modifiers.iter().enumerate() {
            assert_eq!(m.target, Target::Segment(n));
            assert_eq!(m.mode, ModificationMode::Set);
        }
        // The box is the whole volume (3 voxels of margin reach every side): the left
        // region is segment 0, the right segment 1.
        for ((_, _, i), &v) in out.modifiers[0].mask.indexed_iter() {
            assert_eq!(v, u8::from(i < 6), "at i = {i}");
        }
        for ((_, _, i), &v) in out.modifiers[1].mask.indexed_iter() {
            assert_eq!(v, u8::from(i >= 6), "at i = {i}");
        }
    }

    #[test]
    fn one_segment_is_enough_with_an_editable_area_and_too_few_are_refused() {
        let (source, segments) = two_regions();
        let err = run_on(
            "grow-from-seeds",
            Some(&source),
            &segments[..1],
            Some(0),
            &[],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("at least 2 visible segments"), "{err}");
        // Intensity range [-10, 10]: the right region is locked, the single segment fills
        // the left one.
        let masking = Masking {
            intensity_range: Some((-10.0, 10.0)),
            mask_mode: MaskMode::Everywhere,
            ..Masking::default()
        };
        let geometry = *source.geometry();
        let params = ParamValues::defaults(&GrowFromSeeds.spec());
        let control = Control::none();
        let input = SessionInput {
            source: Some(&source),
            geometry: &geometry,
            segments: &segments[..1],
            visible: &[true],
            selected: Some(0),
            params: &params,
            masking: Some(&masking),
            control: &control,
        };
        let out = auto_complete::run_once(&GrowFromSeeds, "Grow from seeds", &input).unwrap();
        for ((_, _, i), &v) in out.modifiers[0].mask.indexed_iter() {
            assert_eq!(v, u8::from(i < 6), "at i = {i}");
        }
    }

    #[test]
    fn a_preview_updates_incrementally_and_restarts_on_a_new_locality() {
        let (source, segments) = two_regions();
        let geometry = *source.geometry();
        let control = Control::none();
        let defaults = ParamValues::defaults(&GrowFromSeeds.spec());
        let visible = [true, true];
        let base = SessionInput {
            source: Some(&source),
            geometry: &geometry,
            segments: &segments,
            visible: &visible,
            selected: Some(0),
            params: &defaults,
            masking: None,
            control: &control,
        };
        let mut session = Session::start(&GrowFromSeeds, "Grow from seeds", &base).unwrap();
        let first = session.update(&base).unwrap().unwrap();
        assert_eq!(first.labels[[2, 2, 8]], 2);
        // A seed of segment 0 inside the right region: incremental, no new box.
        let mut more = segments.clone();
        more[0][[2, 2, 8]] = 1;
        let r = session
            .update(&SessionInput {
                segments: &more,
                ..base
            })
            .unwrap()
            .unwrap();
        assert!(!r.reset);
        assert_eq!(r.labels[[2, 2, 8]], 1);
        // A new locality factor recomputes (the result is a valid labelling).
        let local = ParamValues::new(
            &GrowFromSeeds.spec(),
            &[("SeedLocalityFactor".to_string(), "2".to_string())]
                .into_iter()
                .collect(),
        )
        .unwrap();
        let r = session
            .update(&SessionInput {
                segments: &more,
                params: &local,
                ..base
            })
            .unwrap()
            .unwrap();
        assert!(r.labels.iter().all(|&l| l == 1 || l == 2));
    }
}
