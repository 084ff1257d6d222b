//! Slicer's auto-complete framework: the effects that compute a preview of several segments
//! from seed segments (Grow from seeds, Fill between slices, Watershed, Fast Marching),
//! then write the preview back on Apply.
//!
//! Reference: `AbstractScriptedSegmentEditorAutoCompleteEffect.py` (Slicer core) and
//! `../shared/reference/slicer-effects.md` §1.4. What this module reproduces:
//!
//! - **Inputs** are fixed when the preview starts: the visible segments, in display order
//!   (Fast Marching: the selected segment only). They are merged into one label map with
//!   label = position in the inputs + 1, a later segment winning overlaps
//!   (`GenerateMergedLabelmapForAllSegments`). An effect needs at least
//!   [`Options::min_segments`] of them, or [`Options::min_segments_with_edit_mask`] when an
//!   editable area or intensity range is set.
//! - **Working box**: the union of the inputs' non-empty extents, enlarged on each axis by
//!   `int(max(3, ratio · (max − min)))` voxels (inclusive bounds, as VTK extents) and clipped
//!   to the volume. The algorithm only sees this box: segments cannot grow beyond it.
//!   When the seeds come within 3 voxels of a box side that is not the volume's side, the
//!   box is computed again and the algorithm starts over (`effectiveExtentChanged`).
//! - **Edit mask** (effects with [`Options::edit_mask`]): `GenerateEditMask` with no edited
//!   segment, computed on the box when the box is made; non-zero = locked.
//! - **Apply** writes each input segment as the preview's voxels of its label with mode Set
//!   (so masking and overwrite apply at Apply time, as in Slicer).
//!
//! The algorithms themselves implement [`Preview`]: a state that survives between updates,
//! so Grow from seeds can update incrementally when seeds are added and Fast Marching can
//! trim its arrival order without marching again.

use super::masking::{self, Masking};
use super::{Control, EffectError, EffectOutput, ModificationMode, Modifier, ParamValues, Target};
use crate::volume::{AnyVolume, Geometry, Volume};
use crate::with_volume;
use ndarray::{s, Array3, ArrayView3, Zip};

/// Margin, in voxels, the seeds keep from the box's sides before the box is made again.
const MINIMUM_EXTENT_MARGIN: usize = 3;

/// A box of voxels: half-open ranges `lo..hi` along k, j, i.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkingBox {
    pub lo: [usize; 3],
    pub hi: [usize; 3],
}

impl WorkingBox {
    /// The whole lattice of `shape` (`(nk, nj, ni)`).
    pub fn whole(shape: (usize, usize, usize)) -> Self {
        WorkingBox {
            lo: [0; 3],
            hi: [shape.0, shape.1, shape.2],
        }
    }

    /// The box's shape `(nk, nj, ni)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        (
            self.hi[0] - self.lo[0],
            self.hi[1] - self.lo[1],
            self.hi[2] - self.lo[2],
        )
    }

    /// Number of voxels in the box.
    pub fn len(&self) -> usize {
        let (a, b, c) = self.shape();
        a * b * c
    }

    /// True when the box holds no voxel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The part of a whole-lattice array inside the box.
    pub fn view<'a, T>(&self, a: &'a Array3<T>) -> ArrayView3<'a, T> {
        a.slice(s![
            self.lo[0]..self.hi[0],
            self.lo[1]..self.hi[1],
            self.lo[2]..self.hi[2]
        ])
    }
}

/// The non-empty extent of `masks` together: half-open ranges along k, j, i; `None` when
/// every mask is empty.
pub fn seeds_extent<'m>(masks: impl IntoIterator<Item = ArrayView3<'m, u8>>) -> Option<WorkingBox> {
    let mut out: Option<WorkingBox> = None;
    for m in masks {
        if let Some(b) = crate::kernels::bbox::nonzero_box(m, 0) {
            let b = WorkingBox {
                lo: [b[0].0, b[1].0, b[2].0],
                hi: [b[0].1, b[1].1, b[2].1],
            };
            out = Some(match out {
                None => b,
                Some(o) => WorkingBox {
                    lo: [0, 1, 2].map(|d| o.lo[d].min(b.lo[d])),
                    hi: [0, 1, 2].map(|d| o.hi[d].max(b.hi[d])),
                },
            });
        }
    }
    out
}

/// Slicer's working box: `extent` enlarged on each axis by `int(max(3, ratio · (max −
/// min)))` voxels, `max` and `min` the inclusive bounds, clipped to `shape`.
pub fn working_box(extent: WorkingBox, shape: (usize, usize, usize), ratio: f64) -> WorkingBox {
    let n = [shape.0, shape.1, shape.2];
    let mut lo = [0; 3];
    let mut hi = [0; 3];
    for d in 0..3 {
        let span = (extent.hi[d] - extent.lo[d]).saturating_sub(1) as f64;
        let margin = (ratio * span).max(3.0) as usize; // int() truncates a positive value
        lo[d] = extent.lo[d].saturating_sub(margin);
        hi[d] = (extent.hi[d] + margin).min(n[d]);
    }
    WorkingBox { lo, hi }
}

/// Slicer's `effectiveExtentChanged`: true when the seeds' `extent` comes within 3 voxels of
/// a side of `current` that is not a side of the volume of `shape`.
pub fn needs_new_box(
    current: WorkingBox,
    extent: WorkingBox,
    shape: (usize, usize, usize),
) -> bool {
    let n = [shape.0, shape.1, shape.2];
    (0..3).any(|d| {
        // Inclusive bounds as in Slicer: box [lo, hi - 1], extent [elo, ehi - 1].
        let low_side = current.lo[d] != 0
            && current.lo[d] as i64 > extent.lo[d] as i64 - MINIMUM_EXTENT_MARGIN as i64;
        let high_side = current.hi[d] != n[d]
            && (current.hi[d] as i64 - 1)
                < (extent.hi[d] as i64 - 1) + MINIMUM_EXTENT_MARGIN as i64;
        low_side || high_side
    })
}

/// Which segments an auto-complete effect takes as seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seeds {
    /// The visible segments, in display order (Grow from seeds, Fill between slices,
    /// Watershed).
    Visible,
    /// The selected segment only (Fast Marching).
    Selected,
}

/// How the framework prepares an effect's input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub seeds: Seeds,
    /// Fewest input segments.
    pub min_segments: usize,
    /// Fewest input segments when an editable area or intensity range is set.
    pub min_segments_with_edit_mask: usize,
    /// The working box's growth ratio; `None` = the whole volume.
    pub box_ratio: Option<f64>,
    /// The algorithm takes the edit mask (locked voxels).
    pub edit_mask: bool,
    /// The algorithm reads the source volume.
    pub source: bool,
}

/// What an algorithm sees on each update, all on the working box.
#[derive(Debug, Clone, Copy)]
pub struct PreviewInput<'a> {
    /// The source volume cropped to the box (its geometry is the box's: origin moved).
    pub source: Option<&'a AnyVolume>,
    /// The merged seeds: 0 = none, n = the n-th input segment (1-based).
    pub seeds: ArrayView3<'a, u16>,
    /// Non-zero = locked (may not change), when the effect takes the edit mask and one is
    /// set.
    pub locked: Option<ArrayView3<'a, u8>>,
    /// Voxel spacing in mm along `(i, j, k)`.
    pub spacing_ijk: [f64; 3],
    /// The effect's parameters, checked against its schema.
    pub params: &'a ParamValues,
    pub control: &'a Control,
}

/// An algorithm's state between updates of one preview.
pub trait Preview: Send {
    /// Computes the preview on the box for the current seeds and parameters: a label map of
    /// the box's shape, 0 = no segment, n = the n-th input segment. The first call computes
    /// from scratch; later calls may reuse what the state kept (new seeds, a parameter that
    /// only trims).
    ///
    /// # Errors
    /// A parameter that does not fit, a cancelled request.
    fn update(&mut self, input: &PreviewInput) -> Result<Array3<u16>, EffectError>;

    /// Bytes the state holds (the engine bounds the memory of its open previews).
    fn bytes(&self) -> usize {
        0
    }
}

/// An effect computed through the auto-complete framework.
pub trait AutoComplete: Sync {
    /// How the framework prepares the input.
    fn options(&self) -> Options;

    /// A fresh algorithm state (called when a preview starts and when its box is made
    /// again).
    fn start(&self) -> Box<dyn Preview>;
}

/// What a preview update needs from the caller.
#[derive(Debug, Clone, Copy)]
pub struct SessionInput<'a> {
    pub source: Option<&'a AnyVolume>,
    pub geometry: &'a Geometry,
    /// Every segment, in display order, whole lattice.
    pub segments: &'a [Array3<u8>],
    pub visible: &'a [bool],
    pub selected: Option<usize>,
    pub params: &'a ParamValues,
    pub masking: Option<&'a Masking>,
    pub control: &'a Control,
}

/// One preview: the inputs chosen when it started, the working box, the cropped source and
/// edit mask, and the algorithm's state.
pub struct Session {
    effect: &'static dyn AutoComplete,
    options: Options,
    /// Indices of the input segments in the request's segments.
    inputs: Vec<usize>,
    shape: (usize, usize, usize),
    state: Option<Built>,
    /// The last preview, on the box.
    preview: Option<Array3<u16>>,
    /// How many times the box was made.
    resets: usize,
}

struct Built {
    bbox: WorkingBox,
    source: Option<AnyVolume>,
    locked: Option<Array3<u8>>,
    algorithm: Box<dyn Preview>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("inputs", &self.inputs)
            .field("box", &self.state.as_ref().map(|b| b.bbox))
            .field("resets", &self.resets)
            .finish()
    }
}

/// The preview after an update.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewResult<'a> {
    pub bbox: WorkingBox,
    /// Labels on the box: n = the n-th input segment (1-based).
    pub labels: &'a Array3<u16>,
    /// Indices of the input segments, label n being `inputs[n - 1]`.
    pub inputs: &'a [usize],
    /// True when the box was (re)made by this update and the algorithm started over.
    pub reset: bool,
}

impl Session {
    /// Starts a preview: picks the input segments and checks their number.
    ///
    /// # Errors
    /// Too few input segments (the message is Slicer's), a missing source.
    pub fn start(
        effect: &'static dyn AutoComplete,
        name: &str,
        input: &SessionInput,
    ) -> Result<Session, EffectError> {
        let options = effect.options();
        let inputs: Vec<usize> = match options.seeds {
            Seeds::Visible => (0..input.segments.len())
                .filter(|&n| input.visible.get(n).copied().unwrap_or(true))
                .collect(),
            Seeds::Selected => match input.selected {
                Some(n) => vec![n],
                None => {
                    return Err(EffectError::Input(format!(
                        "{name} needs a selected segment holding the seeds"
                    )))
                }
            },
        };
        let edit_mask_set = input.masking.is_some_and(|m| {
            m.intensity_range.is_some() || m.mask_mode != masking::MaskMode::Everywhere
        });
        let needed = if edit_mask_set {
            options.min_segments_with_edit_mask
        } else {
            options.min_segments
        };
        if inputs.len() < needed {
            let what = match options.seeds {
                Seeds::Visible => "visible segments",
                Seeds::Selected => "segments",
            };
            let extra = if !edit_mask_set && options.min_segments_with_edit_mask < needed {
                " (or an editable area or intensity range)"
            } else {
                ""
            };
            return Err(EffectError::Input(format!(
                "{name} needs at least {needed} {what}{extra}; there are {}",
                inputs.len()
            )));
        }
        if options.source && input.source.is_none() {
            return Err(EffectError::Input(format!("{name} needs a source volume")));
        }
        let shape = input
            .segments
            .first()
            .map(|m| m.dim())
            .or_else(|| {
                input.source.map(|s| {
                    let [i, j, k] = s.size_ijk();
                    (k, j, i)
                })
            })
            .unwrap_or((0, 0, 0));
        Ok(Session {
            effect,
            options,
            inputs,
            shape,
            state: None,
            preview: None,
            resets: 0,
        })
    }

    /// The input segments' indices, label n being `inputs()[n - 1]`.
    pub fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    /// How many times the working box was made.
    pub fn resets(&self) -> usize {
        self.resets
    }

    /// Bytes held: the cropped source, the edit mask, the preview and the algorithm.
    pub fn bytes(&self) -> usize {
        let built = self.state.as_ref().map_or(0, |b| {
            b.source
                .as_ref()
                .map_or(0, |s| s.scalar_type().size() * b.bbox.len())
                + b.locked.as_ref().map_or(0, |l| l.len())
                + b.algorithm.bytes()
        });
        built + self.preview.as_ref().map_or(0, |p| 2 * p.len())
    }

    /// Computes the preview for the segments as they are now.
    ///
    /// Returns `Ok(None)` when every input segment is empty (Slicer skips the update).
    ///
    /// # Errors
    /// Segments whose number or shape changed since the start, the algorithm's errors.
    pub fn update(
        &mut self,
        input: &SessionInput,
    ) -> Result<Option<PreviewResult<'_>>, EffectError> {
        if let Some(&bad) = self.inputs.iter().find(|&&n| n >= input.segments.len()) {
            return Err(EffectError::Input(format!(
                "the preview's input segment {bad} is gone ({} segments now)",
                input.segments.len()
            )));
        }
        if input.segments.iter().any(|m| m.dim() != self.shape) {
            return Err(EffectError::Input(
                "the segments' lattice changed since the preview started".into(),
            ));
        }
        let Some(extent) = seeds_extent(self.inputs.iter().map(|&n| input.segments[n].view()))
        else {
            return Ok(None);
        };
        let reset = match &self.state {
            None => true,
            Some(b) => {
                self.options.box_ratio.is_some() && needs_new_box(b.bbox, extent, self.shape)
            }
        };
        if reset {
            self.state = None;
            self.preview = None;
            let bbox = match self.options.box_ratio {
                Some(ratio) => working_box(extent, self.shape, ratio),
                None => WorkingBox::whole(self.shape),
            };
            let source = match (self.options.source, input.source) {
                (true, Some(s)) => Some(crop(s, bbox)),
                (true, None) => return Err(EffectError::Input("needs a source volume".into())),
                (false, _) => None,
            };
            let locked = match (self.options.edit_mask, input.masking) {
                (true, Some(m)) => {
                    masking::editable_area(input.segments, input.visible, None, m, input.source)?
                        .map(|editable| bbox.view(&editable).mapv(|e| u8::from(e == 0)))
                }
                _ => None,
            };
            self.state = Some(Built {
                bbox,
                source,
                locked,
                algorithm: self.effect.start(),
            });
            self.resets += 1;
        }
        input.control.check()?;
        let built = self.state.as_mut().expect("the box was just made");
        let seeds = merged_seeds(&self.inputs, input.segments, built.bbox);
        let labels = match built.algorithm.update(&PreviewInput {
            source: built.source.as_ref(),
            seeds: seeds.view(),
            locked: built.locked.as_ref().map(|l| l.view()),
            spacing_ijk: input.geometry.spacing,
            params: input.params,
            control: input.control,
        }) {
            Ok(labels) => labels,
            Err(e) => {
                // A cancelled or failed update may leave the algorithm's state half
                // updated: the next update starts over.
                self.state = None;
                self.preview = None;
                return Err(e);
            }
        };
        if labels.dim() != built.bbox.shape() {
            return Err(EffectError::Internal(format!(
                "the preview has shape {:?}, the box {:?}",
                labels.dim(),
                built.bbox.shape()
            )));
        }
        self.preview = Some(labels);
        Ok(Some(PreviewResult {
            bbox: built.bbox,
            labels: self.preview.as_ref().expect("just set"),
            inputs: &self.inputs,
            reset,
        }))
    }

    /// The modifiers that apply the last preview: each input segment Set to its label's
    /// voxels (whole lattice), in input order. Empty before the first update.
    pub fn modifiers(&self) -> Vec<Modifier> {
        let (Some(built), Some(labels)) = (&self.state, &self.preview) else {
            return Vec::new();
        };
        self.inputs
            .iter()
            .enumerate()
            .map(|(n, &segment)| {
                let label = (n + 1) as u16;
                let mut mask = Array3::<u8>::zeros(self.shape);
                Zip::from(mask.slice_mut(s![
                    built.bbox.lo[0]..built.bbox.hi[0],
                    built.bbox.lo[1]..built.bbox.hi[1],
                    built.bbox.lo[2]..built.bbox.hi[2]
                ]))
                .and(labels)
                .par_for_each(|m, &l| *m = u8::from(l == label));
                Modifier {
                    target: Target::Segment(segment),
                    mode: ModificationMode::Set,
                    mask,
                    bypass_masking: false,
                    overwrite: None,
                }
            })
            .collect()
    }
}

/// Runs an auto-complete effect once (start, one update, the Apply modifiers): what
/// `ApplyEffect` and the command line do with these effects.
///
/// # Errors
/// As [`Session::start`] and [`Session::update`]; all input segments empty.
pub fn run_once(
    effect: &'static dyn AutoComplete,
    name: &str,
    input: &SessionInput,
) -> Result<EffectOutput, EffectError> {
    let mut session = Session::start(effect, name, input)?;
    if session.update(input)?.is_none() {
        return Err(EffectError::Input(format!(
            "{name}: every input segment is empty; paint seeds first"
        )));
    }
    Ok(EffectOutput {
        modifiers: session.modifiers(),
        ..EffectOutput::default()
    })
}

/// [`run_once`] on an effect request: what an auto-complete effect's [`super::Effect::run`]
/// calls.
///
/// # Errors
/// As [`run_once`].
pub fn run_request(
    effect: &'static dyn AutoComplete,
    request: &super::EffectRequest,
    name: &str,
) -> Result<EffectOutput, EffectError> {
    run_once(
        effect,
        name,
        &SessionInput {
            source: request.source,
            geometry: request.geometry,
            segments: request.segments,
            visible: request.visible,
            selected: request.selected,
            params: request.params,
            masking: request.masking,
            control: request.control,
        },
    )
}

/// The input segments merged on the box: label = position + 1, later segments winning.
pub fn merged_seeds(inputs: &[usize], segments: &[Array3<u8>], bbox: WorkingBox) -> Array3<u16> {
    let mut out = Array3::<u16>::zeros(bbox.shape());
    for (n, &segment) in inputs.iter().enumerate() {
        let label = (n + 1).min(u16::MAX as usize) as u16;
        Zip::from(&mut out)
            .and(bbox.view(&segments[segment]))
            .par_for_each(|o, &m| {
                if m != 0 {
                    *o = label;
                }
            });
    }
    out
}

/// `volume` cropped to `bbox`, its origin moved to the box's first voxel.
pub fn crop(volume: &AnyVolume, bbox: WorkingBox) -> AnyVolume {
    with_volume!(volume, v => {
        let mut geometry = v.geometry;
        geometry.origin = v.geometry.index_to_lps([
            bbox.lo[2] as f64,
            bbox.lo[1] as f64,
            bbox.lo[0] as f64,
        ]);
        AnyVolume::from(Volume::new(bbox.view(&v.data).to_owned(), geometry))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::schema::EffectSpec;

    #[test]
    fn the_box_grows_by_the_ratio_or_three_voxels_and_stays_in_the_volume() {
        // Seeds on k 10..=20 (span 10), j 5..=5 (span 0), i 0..=99 (span 99).
        let extent = WorkingBox {
            lo: [10, 5, 0],
            hi: [21, 6, 100],
        };
        let b = working_box(extent, (40, 40, 120), 0.5);
        // k: int(max(3, 5)) = 5; j: 3; i: int(49.5) = 49, clipped at 0 and 120.
        assert_eq!(
            b,
            WorkingBox {
                lo: [5, 2, 0],
                hi: [26, 9, 120]
            }
        );
        let b = working_box(extent, (40, 40, 120), 0.1);
        assert_eq!(
            b,
            WorkingBox {
                lo: [7, 2, 0],
                hi: [24, 9, 109]
            }
        );
    }

    #[test]
    fn the_box_is_made_again_when_seeds_come_near_an_inner_side() {
        let shape = (40, 40, 40);
        let current = WorkingBox {
            lo: [5, 0, 10],
            hi: [30, 40, 30],
        };
        // 3 voxels or more from every inner side: kept.
        let inside = WorkingBox {
            lo: [8, 0, 13],
            hi: [27, 40, 27],
        };
        assert!(!needs_new_box(current, inside, shape));
        // 2 voxels from the low k side.
        let near = WorkingBox {
            lo: [7, 0, 13],
            hi: [27, 40, 27],
        };
        assert!(needs_new_box(current, near, shape));
        // Up to the volume's own side along j: kept.
        let at_volume_side = WorkingBox {
            lo: [8, 0, 13],
            hi: [27, 40, 27],
        };
        assert!(!needs_new_box(current, at_volume_side, shape));
        // 2 voxels from the high i side (last seed at 27, box's last voxel 29).
        let near_high = WorkingBox {
            lo: [8, 0, 13],
            hi: [27, 40, 28],
        };
        assert!(needs_new_box(current, near_high, shape));
    }

    /// A test algorithm: each unlabelled voxel takes the label of the nearest seed along
    /// i in its row (ties to the left), and counts its calls.
    struct RowFill;
    struct RowFillState {
        calls: usize,
    }
    impl Preview for RowFillState {
        fn update(&mut self, input: &PreviewInput) -> Result<Array3<u16>, EffectError> {
            self.calls += 1;
            let mut out = input.seeds.to_owned();
            for mut row in out.rows_mut() {
                let seeds: Vec<(usize, u16)> = row
                    .iter()
                    .enumerate()
                    .filter(|(_, &l)| l != 0)
                    .map(|(i, &l)| (i, l))
                    .collect();
                for (i, v) in row.iter_mut().enumerate() {
                    if let Some(&(_, l)) = seeds.iter().min_by_key(|(s, _)| s.abs_diff(i)) {
                        *v = l;
                    }
                }
            }
            Ok(out)
        }
    }
    impl AutoComplete for RowFill {
        fn options(&self) -> Options {
            Options {
                seeds: Seeds::Visible,
                min_segments: 2,
                min_segments_with_edit_mask: 1,
                box_ratio: Some(0.1),
                edit_mask: true,
                source: false,
            }
        }
        fn start(&self) -> Box<dyn Preview> {
            Box::new(RowFillState { calls: 0 })
        }
    }

    fn params() -> ParamValues {
        ParamValues::defaults(&EffectSpec::new("Row fill", "row-fill", "Row fill", "test"))
    }

    #[test]
    fn a_session_runs_on_the_box_and_applies_every_input_segment_with_set() {
        let shape = (1, 1, 30);
        let mut a = Array3::<u8>::zeros(shape);
        let mut b = Array3::<u8>::zeros(shape);
        let hidden = Array3::<u8>::from_elem(shape, 1);
        a[[0, 0, 10]] = 1;
        b[[0, 0, 16]] = 1;
        let segments = vec![a, hidden, b];
        let visible = vec![true, false, true];
        let geometry = Geometry::default();
        let params = params();
        let control = Control::none();
        let input = SessionInput {
            source: None,
            geometry: &geometry,
            segments: &segments,
            visible: &visible,
            selected: Some(0),
            params: &params,
            masking: None,
            control: &control,
        };
        let mut session = Session::start(&RowFill, "Row fill", &input).unwrap();
        assert_eq!(session.inputs(), &[0, 2]);
        let result = session.update(&input).unwrap().unwrap();
        // Extent i 10..=16, span 6: margin 3, box 7..20.
        assert_eq!(
            result.bbox,
            WorkingBox {
                lo: [0, 0, 7],
                hi: [1, 1, 20]
            }
        );
        assert!(result.reset);
        let modifiers = session.modifiers();
        assert_eq!(modifiers.len(), 2);
        assert_eq!(modifiers[0].target, Target::Segment(0));
        assert_eq!(modifiers[1].target, Target::Segment(2));
        let first: Vec<usize> = modifiers[0]
            .mask
            .iter()
            .enumerate()
            .filter(|(_, &m)| m != 0)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(first, (7..=13).collect::<Vec<_>>());
        let second: Vec<usize> = modifiers[1]
            .mask
            .iter()
            .enumerate()
            .filter(|(_, &m)| m != 0)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(second, (14..20).collect::<Vec<_>>());
        // A seed near the box's side makes the box again.
        let mut moved = segments.clone();
        moved[2][[0, 0, 18]] = 1;
        let input = SessionInput {
            segments: &moved,
            ..input
        };
        let result = session.update(&input).unwrap().unwrap();
        assert!(result.reset);
        assert_eq!(session.resets(), 2);
    }

    #[test]
    fn too_few_segments_are_refused_with_slicers_rule() {
        let shape = (1, 1, 5);
        let segments = vec![Array3::<u8>::zeros(shape)];
        let geometry = Geometry::default();
        let params = params();
        let control = Control::none();
        let input = SessionInput {
            source: None,
            geometry: &geometry,
            segments: &segments,
            visible: &[true],
            selected: Some(0),
            params: &params,
            masking: None,
            control: &control,
        };
        let err = Session::start(&RowFill, "Row fill", &input).unwrap_err();
        assert!(
            err.to_string()
                .contains("at least 2 visible segments (or an editable area"),
            "{err}"
        );
        // With an intensity range one segment is enough; an empty one gives no preview.
        let masking = Masking {
            intensity_range: Some((0.0, 1.0)),
            ..Masking::default()
        };
        let input = SessionInput {
            masking: Some(&masking),
            ..input
        };
        let mut session = Session::start(&RowFill, "Row fill", &input).unwrap();
        assert!(session.update(&input).unwrap().is_none());
        assert!(run_once(&RowFill, "Row fill", &input).is_err());
    }
}
