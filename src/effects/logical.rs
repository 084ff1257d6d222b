//! Logical operators: combine the selected segment with another segment, or invert, clear
//! or fill it.
//!
//! Reference: Slicer's `SegmentEditorLogicalEffect.py`. Each operation builds one modifier
//! and writes it to the selected segment with a modification mode:
//!
//! | `Operation` | modifier | mode |
//! |---|---|---|
//! | `COPY` | the modifier segment | Set |
//! | `UNION` | the modifier segment | Add |
//! | `SUBTRACT` | the modifier segment | Remove |
//! | `INTERSECT` | voxel-wise minimum of the selected and modifier segments | Set |
//! | `INVERT` | complement of the selected segment | Set |
//! | `CLEAR` | all zeros | Set |
//! | `FILL` | all ones | Set |
//!
//! `BypassMasking` (default **1**, as in Slicer's code; its developer docs say 0) applies
//! the modifier without the editable area and without overwriting other segments; the
//! editable intensity range still applies, as in Slicer (§1.2 of the reference).
//!
//! Extents. Slicer writes COPY with the modifier segment's labelmap, whose extent is its
//! labelmap layer's, and INTERSECT "inside the intersection of the two segments'
//! extents"; Set first clears the selected segment everywhere. Segments here are full
//! masks on the reference lattice and the modifier is zero outside that extent anyway,
//! so the full-lattice Set gives the same segment, except for one Slicer quirk: when part
//! of the selected segment is locked (editable area with `BypassMasking` 0, or the
//! editable intensity range, which applies even when bypassed) and lies outside the
//! modifier's extent, which happens when the two segments sit in different labelmap
//! layers (Slicer splits overlapping segments into layers), Slicer clears it and segkit
//! keeps it, as the masking rule "locked voxels keep their value" says. Masks carry no
//! layers, so segkit cannot reproduce it; the parity tests check that the differing
//! voxels are exactly those.
//!
//! Empty segmentation. Slicer's `INVERT` and `FILL` start from the selected segment's
//! labelmap, which has an *empty extent* when the segment's labelmap layer holds nothing;
//! they then change nothing. Segments share one layer by default, so that happens when
//! every segment of the layer is empty. Masks sent to segkit carry no layers, so segkit
//! changes nothing when the selected segment **and every segment sent** are empty (or the
//! selected segment is not among them): exact for Slicer's default single layer.
//!
//! # Example
//! ```
//! use ndarray::Array3;
//! use segkit::effects::logical::{logical, LogicalOperation, LogicalParams};
//! use segkit::effects::ModificationMode;
//! let selected = Array3::from_shape_vec((1, 1, 4), vec![1u8, 1, 0, 0]).unwrap();
//! let other = Array3::from_shape_vec((1, 1, 4), vec![0u8, 1, 1, 0]).unwrap();
//! let params = LogicalParams { operation: LogicalOperation::Intersect, bypass_masking: true };
//! let out = logical(Some(selected.view()), Some(other.view()), false, &params).unwrap();
//! assert_eq!(out.modifiers[0].mask.as_slice().unwrap(), &[0, 1, 0, 0]);
//! assert_eq!(out.modifiers[0].mode, ModificationMode::Set);
//! ```

use super::schema::{ChoiceSpec, EffectSpec, Input, ParamSpec, ParamValues};
use super::{Effect, EffectError, EffectOutput, EffectRequest, ModificationMode, Modifier};
use ndarray::{Array3, ArrayView3, Zip};

/// The logical operation (Slicer's `Operation` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogicalOperation {
    /// Replace the selected segment by the modifier segment.
    #[default]
    Copy,
    /// Add the modifier segment.
    Union,
    /// Remove the modifier segment.
    Subtract,
    /// Keep the voxels also in the modifier segment.
    Intersect,
    /// The complement of the selected segment.
    Invert,
    /// Empty the selected segment.
    Clear,
    /// Fill the whole reference lattice.
    Fill,
}

impl LogicalOperation {
    /// All operations, in Slicer's order.
    pub const ALL: [LogicalOperation; 7] = [
        LogicalOperation::Copy,
        LogicalOperation::Union,
        LogicalOperation::Subtract,
        LogicalOperation::Intersect,
        LogicalOperation::Invert,
        LogicalOperation::Clear,
        LogicalOperation::Fill,
    ];

    /// Slicer's parameter value (`COPY`, ...).
    pub fn slicer_name(self) -> &'static str {
        match self {
            LogicalOperation::Copy => "COPY",
            LogicalOperation::Union => "UNION",
            LogicalOperation::Subtract => "SUBTRACT",
            LogicalOperation::Intersect => "INTERSECT",
            LogicalOperation::Invert => "INVERT",
            LogicalOperation::Clear => "CLEAR",
            LogicalOperation::Fill => "FILL",
        }
    }

    /// The operation Slicer names `name`.
    pub fn from_slicer_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.slicer_name() == name)
    }

    /// True for the operations that read a second segment (`ModifierSegmentID`).
    pub fn needs_modifier_segment(self) -> bool {
        matches!(
            self,
            LogicalOperation::Copy
                | LogicalOperation::Union
                | LogicalOperation::Subtract
                | LogicalOperation::Intersect
        )
    }
}

/// Parameters of the Logical operators effect; `Default` gives Slicer's defaults. The
/// modifier segment (`ModifierSegmentID`) is an input of [`logical`], not a field here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogicalParams {
    /// `Operation`, default `COPY`.
    pub operation: LogicalOperation,
    /// `BypassMasking`, default 1: ignore the editable area and overwrite settings.
    pub bypass_masking: bool,
}

impl LogicalParams {
    /// The parameters from checked values (given or the schema's defaults).
    pub fn from_values(v: &ParamValues) -> Result<Self, EffectError> {
        Ok(LogicalParams {
            operation: v.choice("Operation", LogicalOperation::from_slicer_name)?,
            bypass_masking: v.boolean("BypassMasking")?,
        })
    }
}

impl Default for LogicalParams {
    /// Slicer's defaults, as the schema states them.
    fn default() -> Self {
        Self::from_values(&ParamValues::defaults(&Logical.spec()))
            .expect("the Logical operators schema's defaults parse")
    }
}

/// Runs a logical operation.
///
/// `selected` is the selected segment (`None` for a segment not yet painted), `modifier`
/// the segment named by `ModifierSegmentID` (needed by COPY, UNION, SUBTRACT and
/// INTERSECT), both 0/1 masks `[k][j][i]` on the reference lattice. `layer_empty` says
/// that the selected segment's labelmap layer holds no voxel at all: INVERT and FILL then
/// change nothing, as in Slicer. Returns one modifier of the selected segment, or none.
///
/// # Errors
/// An operation that needs a modifier segment without one, or masks of different shapes.
pub fn logical(
    selected: Option<ArrayView3<u8>>,
    modifier: Option<ArrayView3<u8>>,
    layer_empty: bool,
    params: &LogicalParams,
) -> Result<EffectOutput, EffectError> {
    let op = params.operation;
    let shape = match (selected.as_ref(), modifier.as_ref()) {
        (Some(s), Some(m)) if s.dim() != m.dim() => {
            return Err(EffectError::Input(format!(
                "the selected segment has shape {:?} (k, j, i), the modifier segment {:?}",
                s.dim(),
                m.dim()
            )))
        }
        (Some(s), _) => s.dim(),
        (None, Some(m)) => m.dim(),
        (None, None) => {
            return Err(EffectError::Input(format!(
                "{} needs the selected segment or the modifier segment",
                op.slicer_name()
            )))
        }
    };
    let binary = |m: &ArrayView3<u8>| Zip::from(m).par_map_collect(|&v| u8::from(v != 0));
    let modifier_mask = || {
        modifier
            .as_ref()
            .map(binary)
            .ok_or_else(|| EffectError::Parameter {
                name: "ModifierSegmentID".into(),
                reason: format!(
                    "{} needs a modifier segment: give the id of one of the segments",
                    op.slicer_name()
                ),
            })
    };
    let (mode, mask) = match op {
        LogicalOperation::Copy => (ModificationMode::Set, modifier_mask()?),
        LogicalOperation::Union => (ModificationMode::Add, modifier_mask()?),
        LogicalOperation::Subtract => (ModificationMode::Remove, modifier_mask()?),
        LogicalOperation::Intersect => {
            let m = modifier_mask()?;
            let mask = match selected.as_ref() {
                Some(s) => Zip::from(s)
                    .and(&m)
                    .par_map_collect(|&a, &b| u8::from(a != 0 && b != 0)),
                None => Array3::zeros(shape),
            };
            (ModificationMode::Set, mask)
        }
        LogicalOperation::Invert | LogicalOperation::Fill if layer_empty => {
            return Ok(EffectOutput::default());
        }
        LogicalOperation::Invert => {
            let mask = match selected.as_ref() {
                Some(s) => Zip::from(s).par_map_collect(|&v| u8::from(v == 0)),
                None => Array3::ones(shape),
            };
            (ModificationMode::Set, mask)
        }
        LogicalOperation::Clear => (ModificationMode::Set, Array3::zeros(shape)),
        LogicalOperation::Fill => (ModificationMode::Set, Array3::ones(shape)),
    };
    let mut m = Modifier::selected(mode, mask);
    m.bypass_masking = params.bypass_masking;
    Ok(EffectOutput {
        modifiers: vec![m],
        ..Default::default()
    })
}

/// The Logical operators effect in the catalog.
pub struct Logical;

impl Effect for Logical {
    fn spec(&self) -> EffectSpec {
        let op = |o: LogicalOperation, title, help| ChoiceSpec::new(o.slicer_name(), title, help);
        let operations = vec![
            op(
                LogicalOperation::Copy,
                "Copy",
                "Replace the selected segment by the modifier segment.",
            ),
            op(
                LogicalOperation::Union,
                "Add",
                "Add the modifier segment to the selected segment.",
            ),
            op(
                LogicalOperation::Subtract,
                "Subtract",
                "Remove the modifier segment from the selected segment.",
            ),
            op(
                LogicalOperation::Intersect,
                "Intersect",
                "Keep only the voxels of the selected segment that are also in the modifier segment.",
            ),
            op(
                LogicalOperation::Invert,
                "Invert",
                "Invert the selected segment (nothing happens while the segmentation is empty, as in Slicer).",
            )
            .needs(&[Input::AllSegments]),
            op(LogicalOperation::Clear, "Clear", "Clear the selected segment."),
            op(
                LogicalOperation::Fill,
                "Fill",
                "Fill the selected segment completely (nothing happens while the segmentation is empty, as in Slicer).",
            )
            .needs(&[Input::AllSegments]),
        ];
        let needs_modifier: Vec<&'static str> = LogicalOperation::ALL
            .into_iter()
            .filter(|o| o.needs_modifier_segment())
            .map(|o| o.slicer_name())
            .collect();
        let mut spec = EffectSpec::new(
            "Logical operators",
            "logical-operators",
            "Logical operators",
            "Combine the selected segment with a modifier segment, or invert, clear or fill it.",
        );
        // The selected segment and the one `ModifierSegmentID` names (a segment
        // parameter: clients send it); INVERT and FILL also need every segment, to know
        // whether the segmentation is empty (they then do nothing, as in Slicer).
        spec.inputs = vec![Input::SelectedSegment];
        spec.params = vec![
            ParamSpec::choice("Operation", "Operation", operations, "COPY"),
            ParamSpec::segment("ModifierSegmentID", "Modifier segment")
                .help("The segment combined with the selected one (it is not changed).")
                .visible_when("Operation", &needs_modifier),
            ParamSpec::boolean("BypassMasking", "Bypass masking", "1").help(
                "Ignore the editable area and the overwrite settings and change only the selected segment (the editable intensity range still applies).",
            ),
        ];
        spec
    }

    fn run(&self, request: &EffectRequest) -> Result<EffectOutput, EffectError> {
        let p = LogicalParams::from_values(request.params)?;
        let modifier = if p.operation.needs_modifier_segment() {
            let id = request.params.raw("ModifierSegmentID")?;
            if id.is_empty() {
                return Err(EffectError::Parameter {
                    name: "ModifierSegmentID".into(),
                    reason: format!(
                        "{} needs a modifier segment: give the id of one of the segments",
                        p.operation.slicer_name()
                    ),
                });
            }
            let n = request
                .segment_index(id)
                .ok_or_else(|| EffectError::Parameter {
                    name: "ModifierSegmentID".into(),
                    reason: format!("no segment has the id {id:?}"),
                })?;
            Some(request.segments[n].view())
        } else {
            None
        };
        // A segment not among those sent is new: Slicer's labelmap of it is all zeros.
        let zeros;
        let selected = match request.selected {
            Some(n) => request.segments[n].view(),
            None => {
                zeros = Array3::<u8>::zeros(request.shape);
                zeros.view()
            }
        };
        let layer_empty = selected.iter().all(|&v| v == 0)
            && request.segments.iter().all(|s| s.iter().all(|&v| v == 0));
        logical(Some(selected), modifier, layer_empty, &p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::catalog::tests::run_on;

    fn a(v: &[u8]) -> Array3<u8> {
        Array3::from_shape_vec((1, 1, v.len()), v.to_vec()).unwrap()
    }

    fn run(op: &str, segments: &[Array3<u8>], selected: Option<usize>) -> EffectOutput {
        run_on(
            "logical-operators",
            None,
            segments,
            selected,
            &[],
            &[("Operation", op), ("ModifierSegmentID", "s1")],
        )
        .unwrap()
    }

    fn only(out: &EffectOutput) -> (ModificationMode, Vec<u8>, bool) {
        assert_eq!(out.modifiers.len(), 1);
        let m = &out.modifiers[0];
        (m.mode, m.mask.iter().copied().collect(), m.bypass_masking)
    }

    #[test]
    fn each_operation_has_slicers_mode_and_mask() {
        let segs = [a(&[1, 1, 0, 0]), a(&[0, 1, 1, 0])];
        use ModificationMode::*;
        let cases = [
            ("COPY", Set, vec![0, 1, 1, 0]),
            ("UNION", Add, vec![0, 1, 1, 0]),
            ("SUBTRACT", Remove, vec![0, 1, 1, 0]),
            ("INTERSECT", Set, vec![0, 1, 0, 0]),
            ("INVERT", Set, vec![0, 0, 1, 1]),
            ("CLEAR", Set, vec![0, 0, 0, 0]),
            ("FILL", Set, vec![1, 1, 1, 1]),
        ];
        for (op, mode, mask) in cases {
            assert_eq!(only(&run(op, &segs, Some(0))), (mode, mask, true), "{op}");
        }
    }

    #[test]
    fn bypass_masking_defaults_to_on_and_can_be_turned_off() {
        let segs = [a(&[1, 0]), a(&[0, 1])];
        let out = run_on(
            "logical-operators",
            None,
            &segs,
            Some(0),
            &[],
            &[("Operation", "FILL"), ("BypassMasking", "0")],
        )
        .unwrap();
        assert!(!only(&out).2);
        assert!(LogicalParams::default().bypass_masking);
        assert_eq!(LogicalParams::default().operation, LogicalOperation::Copy);
    }

    #[test]
    fn label_values_other_than_one_count_as_inside() {
        let out = logical(
            Some(a(&[3, 0, 7]).view()),
            Some(a(&[2, 2, 0]).view()),
            false,
            &LogicalParams {
                operation: LogicalOperation::Intersect,
                bypass_masking: false,
            },
        )
        .unwrap();
        assert_eq!(only(&out).1, vec![1, 0, 0]);
    }

    #[test]
    fn invert_and_fill_do_nothing_while_every_segment_is_empty() {
        let empty = [a(&[0, 0, 0]), a(&[0, 0, 0])];
        for op in ["INVERT", "FILL"] {
            assert!(run(op, &empty, Some(0)).modifiers.is_empty(), "{op}");
            assert!(run(op, &empty, None).modifiers.is_empty(), "{op}");
        }
        // An empty segment beside a painted one shares its (non-empty) layer: it fills.
        let one_painted = [a(&[0, 0, 0]), a(&[0, 1, 0])];
        assert_eq!(only(&run("FILL", &one_painted, Some(0))).1, vec![1, 1, 1]);
        assert_eq!(only(&run("INVERT", &one_painted, None)).1, vec![1, 1, 1]);
        // Clear of an empty segment is harmless either way.
        let out = run("CLEAR", &empty, Some(0));
        assert!(out.modifiers.iter().all(|m| m.mask.iter().all(|&v| v == 0)));
    }

    #[test]
    fn a_missing_or_unknown_modifier_segment_is_refused_by_name() {
        let segs = [a(&[1, 0]), a(&[0, 1])];
        for op in ["COPY", "UNION", "SUBTRACT", "INTERSECT"] {
            let e = run_on(
                "logical-operators",
                None,
                &segs,
                Some(0),
                &[],
                &[("Operation", op)],
            )
            .unwrap_err();
            assert!(e.to_string().contains("ModifierSegmentID"), "{op}: {e}");
            let e = run_on(
                "logical-operators",
                None,
                &segs,
                Some(0),
                &[],
                &[("Operation", op), ("ModifierSegmentID", "nope")],
            )
            .unwrap_err();
            assert!(
                e.to_string().contains("ModifierSegmentID") && e.to_string().contains("nope"),
                "{op}: {e}"
            );
        }
        // Operations without a modifier segment ignore it.
        assert_eq!(only(&run("CLEAR", &segs, Some(0))).1, vec![0, 0]);
    }

    #[test]
    fn copy_to_a_new_segment_and_intersect_of_a_new_segment() {
        let segs = [a(&[1, 1, 0]), a(&[0, 1, 1])];
        assert_eq!(only(&run("COPY", &segs, None)).1, vec![0, 1, 1]);
        assert_eq!(only(&run("INTERSECT", &segs, None)).1, vec![0, 0, 0]);
    }

    proptest::proptest! {
        /// Union then intersect with the same segment gives the modifier segment back;
        /// invert twice gives the segment back.
        #[test]
        fn set_algebra(s in proptest::collection::vec(0u8..2, 12), m in proptest::collection::vec(0u8..2, 12)) {
            let (s, m) = (a(&s), a(&m));
            let p = |operation| LogicalParams { operation, bypass_masking: true };
            let union: Array3<u8> = Zip::from(&s).and(&m).map_collect(|&x, &y| x | y);
            let inter = logical(Some(union.view()), Some(m.view()), false, &p(LogicalOperation::Intersect)).unwrap();
            proptest::prop_assert_eq!(&inter.modifiers[0].mask, &m);
            let inv = logical(Some(s.view()), None, false, &p(LogicalOperation::Invert)).unwrap();
            let inv2 = logical(Some(inv.modifiers[0].mask.view()), None, false, &p(LogicalOperation::Invert)).unwrap();
            proptest::prop_assert_eq!(&inv2.modifiers[0].mask, &s);
        }
    }
}
