//! Fill between slices: completes segments drawn on some slices by interpolating the
//! slices between them (morphological contour interpolation).
//!
//! Reference: Slicer's `SegmentEditorFillBetweenSlicesEffect.py`, an auto-complete effect
//! (see [`super::auto_complete`]) whose preview is `vtkITKMorphologicalContourInterpolator`
//! on the merged label map of the visible segments (label n = n-th visible segment), with
//! ITK's settings Label 0 (all labels), Axis -1 (all axes), HeuristicAlignment on,
//! UseDistanceTransform off, UseBallStructuringElement off; reference
//! `../shared/reference/slicer-effects.md` §2.7. The algorithm is
//! [`crate::kernels::contour_interpolation`] (Zukić et al., *ND Morphological Contour
//! Interpolation*, Insight Journal 2016). The effect has no parameters, in Slicer as here.
//!
//! Rules (all ITK's, verified against Slicer's classes by the parity test):
//!
//! - **Which slices count as drawn**: a voxel counts for an axis only if its two
//!   neighbours along that axis are empty and, along each of the two other axes, both
//!   neighbours have its label. So a drawn slice needs an empty slice on each side: two
//!   adjacent drawn slices (a sphere brush, a thick blob) do not count, and nothing is
//!   filled next to them.
//! - **Between, never beyond**: consecutive drawn slices of a label are interpolated; no
//!   slice before the first or after the last drawn one changes.
//! - **All axes**: a label drawn on axial slices and another (or the same) on sagittal
//!   slices are both interpolated; where results meet, the higher label (the later visible
//!   segment) wins.
//! - **Drawn voxels are kept**: every voxel of an input segment stays in it.
//! - **Components**: each 4-connected piece of a slice is matched to the pieces it
//!   overlaps on the next drawn slice; a piece that overlaps nothing shrinks to a point
//!   towards that slice (ITK's extrapolation, on by default).
//! - **Working box**: the preview is computed on the seeds' box grown by 10 % (at least 3
//!   voxels) on each side, as Slicer does; the interpolation never reaches outside the
//!   drawn slices' extent anyway.
//! - **Masking** (editable area, intensity range, overwrite) applies at Apply time, when
//!   each segment is Set to its label's voxels.
//!
//! # Example
//! ```
//! use ndarray::Array3;
//! use segkit::effects::Control;
//! use segkit::effects::fill_between_slices::fill_between_slices;
//! // One segment drawn on slices 0 and 2 of a 3-slice volume: slice 1 is filled.
//! let mut seeds = Array3::<u16>::zeros((3, 5, 5));
//! for k in [0, 2] {
//!     for j in 1..4 {
//!         for i in 1..4 {
//!             seeds[[k, j, i]] = 1;
//!         }
//!     }
//! }
//! let out = fill_between_slices(seeds.view(), &Control::none()).unwrap();
//! assert_eq!(out[[1, 2, 2]], 1);
//! assert_eq!(out.iter().filter(|&&l| l == 1).count(), 27);
//! ```

use super::auto_complete::{self, AutoComplete, Options, Preview, PreviewInput, Seeds};
use super::schema::{EffectSpec, Input};
use super::{Control, Effect, EffectError, EffectOutput, EffectRequest};
use crate::kernels::contour_interpolation;
use ndarray::{Array3, ArrayView3};

/// Slicer's working-box growth ratio for this effect (the framework's default).
const BOX_RATIO: f64 = 0.1;

/// Interpolates the slices between the drawn slices of every label of `seeds` (`[k][j][i]`,
/// 0 = none): see the module documentation. Returns the label map with the filled slices;
/// every non-zero voxel of `seeds` keeps its label.
///
/// # Errors
/// A cancelled request.
pub fn fill_between_slices(
    seeds: ArrayView3<u16>,
    control: &Control,
) -> Result<Array3<u16>, EffectError> {
    contour_interpolation::interpolate(seeds, control)
}

/// The Fill between slices effect.
pub struct FillBetweenSlices;

impl Effect for FillBetweenSlices {
    fn spec(&self) -> EffectSpec {
        let mut spec = EffectSpec::new(
            "Fill between slices",
            "fill-between-slices",
            "Fill between slices",
            "Interpolates every visible segment between the slices where it is drawn \
             (morphological contour interpolation, along all three axes). A slice counts \
             as drawn only if the slices on both sides of it are empty for that segment: \
             leave at least one empty slice between drawn slices, and do not use a sphere \
             brush. Nothing is added before the first or after the last drawn slice. \
             Drawn voxels are kept; where segments meet, the one lower in the list wins.",
        );
        spec.inputs = vec![Input::VisibleSegments];
        spec.long_running = true;
        spec
    }

    fn run(&self, request: &EffectRequest) -> Result<EffectOutput, EffectError> {
        auto_complete::run_request(&FillBetweenSlices, request, "Fill between slices")
    }

    fn auto_complete(&self) -> Option<&'static dyn AutoComplete> {
        Some(&FillBetweenSlices)
    }
}

impl AutoComplete for FillBetweenSlices {
    fn options(&self) -> Options {
        Options {
            seeds: Seeds::Visible,
            min_segments: 1,
            min_segments_with_edit_mask: 1,
            box_ratio: Some(BOX_RATIO),
            edit_mask: false,
            source: false,
        }
    }

    fn start(&self) -> Box<dyn Preview> {
        Box::new(FillState::default())
    }
}

/// The preview's state: the last seeds and result, returned again while the seeds do not
/// change (the interpolation has no parameter to trim).
#[derive(Default)]
struct FillState {
    last: Option<(Array3<u16>, Array3<u16>)>,
}

impl Preview for FillState {
    fn update(&mut self, input: &PreviewInput) -> Result<Array3<u16>, EffectError> {
        if let Some((seeds, result)) = &self.last {
            if seeds.view() == input.seeds {
                return Ok(result.clone());
            }
        }
        let result = fill_between_slices(input.seeds, input.control)?;
        self.last = Some((input.seeds.to_owned(), result.clone()));
        Ok(result)
    }

    fn bytes(&self) -> usize {
        self.last
            .as_ref()
            .map_or(0, |(s, r)| 2 * (s.len() + r.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::catalog::tests::run_on;
    use crate::effects::{ModificationMode, Target};
    use ndarray::{s, Axis};

    /// A `(nk, nj, ni)` mask with a filled square `[lo, hi)` on each slice `ks`.
    fn squares(shape: (usize, usize, usize), ks: &[usize], lo: usize, hi: usize) -> Array3<u8> {
        let mut m = Array3::<u8>::zeros(shape);
        for &k in ks {
            m.slice_mut(s![k, lo..hi, lo..hi]).fill(1);
        }
        m
    }

    fn count(m: &Array3<u8>) -> usize {
        m.iter().filter(|&&v| v != 0).count()
    }

    #[test]
    fn every_visible_segment_is_filled_between_its_slices_and_set() {
        let shape = (12, 16, 16);
        let a = squares(shape, &[2, 6], 2, 6);
        let hidden = squares(shape, &[1, 9], 10, 14);
        let b = squares(shape, &[3, 9], 9, 13);
        let segments = vec![a, hidden.clone(), b];
        let out = crate::effects::catalog::run(
            "Fill between slices",
            &crate::effects::catalog::RunInput {
                source: None,
                geometry: &Default::default(),
                segments: &segments,
                visible: &[true, false, true],
                segment_ids: &["a".into(), "h".into(), "b".into()],
                selected: Some(0),
                points_kji: &[],
                parameters: &Default::default(),
                control: &Control::none(),
                masking: None,
            },
        )
        .unwrap();
        assert_eq!(out.modifiers.len(), 2);
        assert_eq!(out.modifiers[0].target, Target::Segment(0));
        assert_eq!(out.modifiers[1].target, Target::Segment(2));
        assert!(out
            .modifiers
            .iter()
            .all(|m| m.mode == ModificationMode::Set));
        // Segment a: squares of 16 on slices 2..=6; b: squares of 16 on 3..=9.
        assert_eq!(count(&out.modifiers[0].mask), 5 * 16);
        assert_eq!(count(&out.modifiers[1].mask), 7 * 16);
        for k in 2..=6 {
            assert_eq!(
                out.modifiers[0].mask.index_axis(Axis(0), k),
                segments[0].index_axis(Axis(0), 2)
            );
        }
    }

    #[test]
    fn one_segment_is_enough_and_adjacent_slices_fill_nothing() {
        let shape = (12, 12, 12);
        let seg = squares(shape, &[4, 5, 9], 3, 8);
        let out = run_on(
            "Fill between slices",
            None,
            std::slice::from_ref(&seg),
            Some(0),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(out.modifiers.len(), 1);
        assert_eq!(out.modifiers[0].mask, seg);
    }

    #[test]
    fn empty_segments_are_refused_with_a_message() {
        let seg = Array3::<u8>::zeros((4, 4, 4));
        let err = run_on("Fill between slices", None, &[seg], Some(0), &[], &[]).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let err = run_on("Fill between slices", None, &[], None, &[], &[]).unwrap_err();
        assert!(!err.to_string().is_empty());
    }

    #[test]
    fn a_sagittal_drawing_is_filled_along_i() {
        // Segment drawn on i = 2 and i = 8 (sagittal), squares in (k, j).
        let shape = (16, 16, 12);
        let mut seg = Array3::<u8>::zeros(shape);
        for i in [2, 8] {
            seg.slice_mut(s![4..10, 3..9, i]).fill(1);
        }
        let out = run_on("Fill between slices", None, &[seg], Some(0), &[], &[]).unwrap();
        let m = &out.modifiers[0].mask;
        assert_eq!(count(m), 7 * 36);
        for i in 2..=8 {
            assert_eq!(m.slice(s![4..10, 3..9, i]).sum(), 36);
        }
    }

    #[test]
    fn the_preview_state_reuses_its_result_while_the_seeds_do_not_change() {
        let shape = (8, 8, 8);
        let mut seeds = Array3::<u16>::zeros(shape);
        seeds.slice_mut(s![1, 2..6, 2..6]).fill(1);
        seeds.slice_mut(s![5, 2..6, 2..6]).fill(1);
        let params = crate::effects::ParamValues::defaults(&FillBetweenSlices.spec());
        let control = Control::none();
        let input = PreviewInput {
            source: None,
            seeds: seeds.view(),
            locked: None,
            spacing_ijk: [1.0; 3],
            params: &params,
            control: &control,
        };
        let mut state = FillBetweenSlices.start();
        let first = state.update(&input).unwrap();
        assert_eq!(first.iter().filter(|&&l| l == 1).count(), 5 * 16);
        assert_eq!(state.update(&input).unwrap(), first);
        assert!(state.bytes() > 0);
    }
}
