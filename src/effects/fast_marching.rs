//! Fast Marching: grows the selected segment into the voxels whose intensity and texture
//! resemble the segment's, up to a maximum volume, and lets the user trim the result.
//!
//! Reference: `SegmentEditorFastMarching` of SlicerSegmentEditorExtraEffects, which runs
//! Pichon's `vtkPichonFastMarching` (see [`crate::kernels::fast_marching`] for the
//! algorithm) on the source cast to 16-bit integers and rescaled into 0..300:
//!
//! - the seed is the **selected segment** only; no other segment is needed;
//! - `PercentMax` ("Maximum volume", default 10 %): the march accepts
//!   `int(voxels · PercentMax / 100)` voxels;
//! - `SegmentVolume` ("Segment volume", default 100 %): the result is the seed plus the
//!   first `floor((N − 1) · SegmentVolume / 100) + 1` voxels the front accepted. In Slicer
//!   it is a slider shown after Initialize; here it is a parameter, and in a preview session
//!   changing it only trims the march already computed (no new march);
//! - the voxel size is ignored (as in Slicer: the front moves one voxel per unit of time
//!   on every axis), and voxels within 3 voxels of the image border are never reached;
//! - Apply writes the selected segment with mode Set (masking applies then).
//!
//! The march is not voxel-for-voxel Pichon's (his filter reads uninitialised memory for
//! its first densities and breaks ties in the order of its own heap); it fills the same
//! region first and trims in arrival order. Where Slicer's effect shifts a negative image
//! whose range is at most 300 and scales it by 0 (a blank image), segkit keeps the values.

use super::auto_complete::{self, AutoComplete, Options, Preview, PreviewInput, Seeds};
use super::schema::{EffectSpec, Input, ParamSpec, ParamValues};
use super::{Effect, EffectError, EffectOutput, EffectRequest};
use crate::kernels::fast_marching::{march, prepare_intensities, March};
use crate::volume::Scalar;
use crate::with_volume;
use ndarray::{Array3, Zip};

/// Parameters of Fast Marching; `Default` gives Slicer's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FastMarchingParams {
    /// `PercentMax`: the largest volume the segment may reach, in % of the image's voxels.
    pub percent_max: f64,
    /// "Segment volume": the part of the march shown, in % of it.
    pub segment_volume: f64,
}

impl FastMarchingParams {
    /// The parameters from checked values (given or the schema's defaults).
    pub fn from_values(v: &ParamValues) -> Result<Self, EffectError> {
        Ok(FastMarchingParams {
            percent_max: v.double("PercentMax")?,
            segment_volume: v.double("SegmentVolume")?,
        })
    }

    /// Voxels the march accepts on an image of `voxels` voxels.
    pub fn npoints(&self, voxels: usize) -> usize {
        (voxels as f64 * self.percent_max / 100.0) as usize
    }
}

impl Default for FastMarchingParams {
    fn default() -> Self {
        Self::from_values(&ParamValues::defaults(&FastMarching.spec()))
            .expect("the Fast Marching schema's defaults parse")
    }
}

/// The Fast Marching effect.
pub struct FastMarching;

impl Effect for FastMarching {
    fn spec(&self) -> EffectSpec {
        let percent_max = ParamSpec::double("PercentMax", "Maximum volume", "10")
            .help(
                "Approximate volume of the structure as a percentage of the image: the \
                 segment grows from its seed until this many voxels are reached.",
            )
            .range(0.0, 100.0)
            .step(1.0)
            .unit("%");
        let segment_volume = ParamSpec::double("SegmentVolume", "Segment volume", "100")
            .help(
                "Part of the grown region kept, in the order the region grew (the seed is \
                 always kept). In a preview, changing it only trims the result.",
            )
            .range(0.0, 100.0)
            .step(0.1)
            .unit("%");
        let mut spec = EffectSpec::new(
            "Fast Marching",
            "fast-marching",
            "Fast Marching",
            "Grows the selected segment into the region of similar intensity and texture \
             (Pichon's statistical fast marching), up to a maximum volume; the segment \
             volume trims the result. No other segment is needed.",
        );
        spec.inputs = vec![Input::SourceVolume, Input::SelectedSegment];
        spec.params = vec![percent_max, segment_volume];
        spec.long_running = true;
        spec
    }

    fn run(&self, request: &EffectRequest) -> Result<EffectOutput, EffectError> {
        auto_complete::run_request(&FastMarching, request, "Fast Marching")
    }

    fn auto_complete(&self) -> Option<&'static dyn AutoComplete> {
        Some(&FastMarching)
    }
}

impl AutoComplete for FastMarching {
    fn options(&self) -> Options {
        Options {
            seeds: Seeds::Selected,
            min_segments: 1,
            min_segments_with_edit_mask: 1,
            box_ratio: None,
            edit_mask: false,
            source: true,
        }
    }

    fn start(&self) -> Box<dyn Preview> {
        Box::new(FastMarchingState::default())
    }
}

/// The march of a preview, kept so that a new segment volume only trims it.
#[derive(Default)]
struct FastMarchingState {
    /// The seeds and `PercentMax` the march was computed for, and the march.
    computed: Option<(Array3<u16>, f64, March)>,
}

impl Preview for FastMarchingState {
    fn update(&mut self, input: &PreviewInput) -> Result<Array3<u16>, EffectError> {
        let params = FastMarchingParams::from_values(input.params)?;
        let fresh = match &self.computed {
            Some((seeds, percent_max, _)) => {
                *percent_max != params.percent_max || seeds.view() != input.seeds
            }
            None => true,
        };
        if fresh {
            let source = input
                .source
                .ok_or_else(|| EffectError::Input("Fast Marching needs a source volume".into()))?;
            let shape = input.seeds.dim();
            let (intensities, max) = with_volume!(source, v => {
                prepare_intensities(v.data.iter().map(|x| x.to_f64()), shape)
            });
            let seeds = input.seeds.mapv(|l| u8::from(l != 0));
            let npoints = params.npoints(seeds.len());
            let m = march(
                intensities.view(),
                max,
                seeds.view(),
                npoints,
                input.control,
            )?;
            self.computed = Some((input.seeds.to_owned(), params.percent_max, m));
        }
        let (_, _, m) = self.computed.as_ref().expect("computed above");
        let shown = m.show(params.segment_volume / 100.0);
        let mut labels = Array3::<u16>::zeros(shown.dim());
        Zip::from(&mut labels)
            .and(&shown)
            .for_each(|l, &s| *l = u16::from(s));
        Ok(labels)
    }

    fn bytes(&self) -> usize {
        self.computed
            .as_ref()
            .map_or(0, |(seeds, _, m)| 2 * seeds.len() + m.bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::auto_complete::{Session, SessionInput};
    use crate::effects::{Control, ModificationMode, Target};
    use crate::volume::{AnyVolume, Geometry, Volume};
    use std::collections::BTreeMap;

    fn cube() -> (AnyVolume, Array3<u8>) {
        let shape = (24, 24, 24);
        let img = Array3::from_shape_fn(shape, |(k, j, i)| {
            if (6..16).contains(&k) && (6..16).contains(&j) && (6..16).contains(&i) {
                -200i16
            } else {
                400
            }
        });
        let mut seed = Array3::<u8>::zeros(shape);
        seed[[10, 10, 10]] = 1;
        seed[[10, 10, 11]] = 1;
        (Volume::new(img, Geometry::default()).into(), seed)
    }

    #[test]
    fn defaults_are_slicers() {
        let p = FastMarchingParams::default();
        assert_eq!((p.percent_max, p.segment_volume), (10.0, 100.0));
        assert_eq!(p.npoints(1000), 100);
    }

    #[test]
    fn a_preview_grows_the_selected_segment_and_trims_without_marching_again() {
        let (source, seed) = cube();
        let other = Array3::<u8>::zeros(seed.dim());
        let segments = vec![other, seed];
        let geometry = Geometry::default();
        let spec = FastMarching.spec();
        let mut given = BTreeMap::new();
        given.insert("PercentMax".to_string(), "3".to_string());
        let params = ParamValues::new(&spec, &given).unwrap();
        let control = Control::none();
        let input = SessionInput {
            source: Some(&source),
            geometry: &geometry,
            segments: &segments,
            visible: &[true, true],
            selected: Some(1),
            params: &params,
            masking: None,
            control: &control,
        };
        let mut session = Session::start(&FastMarching, "Fast Marching", &input).unwrap();
        assert_eq!(session.inputs(), &[1]);
        let full = session.update(&input).unwrap().unwrap().labels.clone();
        let count = |a: &Array3<u16>| a.iter().filter(|&&l| l != 0).count();
        // 3 % of 24^3 = 414 marching steps after the seed's neighbours: fewer than the
        // cube's core (8^3 voxels whose neighbourhood is all in the cube), nothing outside.
        let total = count(&full);
        assert!(total > 2 + 414 && total < 512, "{total}");
        let outside = full.indexed_iter().any(|((k, j, i), &l)| {
            l != 0 && !((6..16).contains(&k) && (6..16).contains(&j) && (6..16).contains(&i))
        });
        assert!(!outside, "the march fills the cube first");
        // Trimming: half of the march, and the seed stays.
        given.insert("SegmentVolume".to_string(), "50".to_string());
        let params = ParamValues::new(&spec, &given).unwrap();
        let input = SessionInput {
            params: &params,
            ..input
        };
        let half = session.update(&input).unwrap().unwrap();
        assert!(!half.reset);
        let half = half.labels.clone();
        let known = total - 2;
        assert_eq!(count(&half), 2 + ((known - 1) as f64 * 0.5) as usize + 1);
        assert!(half
            .iter()
            .zip(full.iter())
            .all(|(&h, &f)| h == 0 || f != 0));
        let modifiers = session.modifiers();
        assert_eq!(modifiers.len(), 1);
        assert_eq!(modifiers[0].target, Target::Segment(1));
        assert_eq!(modifiers[0].mode, ModificationMode::Set);
    }

    #[test]
    fn an_empty_selected_segment_is_refused() {
        let (source, seed) = cube();
        let empty = Array3::<u8>::zeros(seed.dim());
        let geometry = Geometry::default();
        let params = ParamValues::defaults(&FastMarching.spec());
        let control = Control::none();
        let input = SessionInput {
            source: Some(&source),
            geometry: &geometry,
            segments: std::slice::from_ref(&empty),
            visible: &[true],
            selected: Some(0),
            params: &params,
            masking: None,
            control: &control,
        };
        let err = auto_complete::run_once(&FastMarching, "Fast Marching", &input).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let input = SessionInput {
            selected: None,
            ..input
        };
        assert!(Session::start(&FastMarching, "Fast Marching", &input).is_err());
    }
}
