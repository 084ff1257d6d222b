//! Segment Editor effects as pure functions over arrays.
//!
//! One effect per file, each with its parameter struct (`Default` = Slicer's defaults) and
//! one entry point. Effects never see a path, a socket or a proto type.
//!
//! An effect does what Slicer's effect computes before it calls
//! `modifySelectedSegmentByLabelmap`: it returns one or more [`Modifier`]s, each a binary
//! mask on the reference lattice with a [`ModificationMode`] and a target segment. Masking
//! (editable area, editable intensity range, overwrite of other segments) is applied after
//! that, by Slicer itself when the extension applies the result, or by [`masking`] when
//! segkit applies it (command line, batch).

pub mod auto_complete;
pub mod auto_lungs;
pub mod auto_threshold;
pub mod boundary_points;
pub mod catalog;
pub mod fast_marching;
pub mod fill_between_slices;
pub mod flood_filling;
pub mod grow_from_seeds;
pub mod hollow;
pub mod islands;
pub mod level_tracing;
pub mod local_threshold;
pub mod logical;
pub mod margin;
pub mod mask_volume;
pub mod masking;
pub mod paint;
mod request;
pub mod schema;
pub mod smoothing;
pub mod threshold;
pub mod watershed;

pub use request::{flatten_masks, Control, EffectRequest, ProgressFn};
pub use schema::{ChoiceSpec, EffectSpec, FromSource, Input, ParamSpec, ParamType, ParamValues};

use crate::volume::AnyVolume;
use ndarray::Array3;

/// One Segment Editor effect: its schema and its computation.
///
/// Each effect lives in its own file with a unit struct implementing this trait, and is
/// listed once in [`catalog`]. `spec` states every parameter once (Slicer's name, type,
/// default, range); `run` reads typed values from `request.params`, which the catalog has
/// already checked against the schema, and calls the effect's pure function. Long
/// effects poll `request.control.check()` and report `request.control.progress(..)`.
pub trait Effect: Sync {
    /// Names, help, inputs and parameters.
    fn spec(&self) -> EffectSpec;

    /// Computes the effect's modifiers on a checked request.
    ///
    /// # Errors
    /// A missing input, a parameter that does not fit the input, a cancelled request, or a
    /// case the effect does not implement ([`EffectError::Unsupported`]).
    fn run(&self, request: &EffectRequest) -> Result<EffectOutput, EffectError>;

    /// The effect as an auto-complete effect (Grow from seeds, Fill between slices,
    /// Watershed, Fast Marching), which the engine can also run as a preview session;
    /// `None` for the others. Such an effect's `run` is [`auto_complete::run_request`].
    fn auto_complete(&self) -> Option<&'static dyn auto_complete::AutoComplete> {
        None
    }
}

/// How a modifier changes its segment (Slicer's `ModificationMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModificationMode {
    /// The segment becomes the modifier (inside the editable area).
    #[default]
    Set,
    /// The modifier is added to the segment.
    Add,
    /// The modifier is removed from the segment.
    Remove,
    /// The modifier is removed from the segment and from every other segment.
    RemoveAll,
}

impl ModificationMode {
    /// Slicer's name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            ModificationMode::Set => "SET",
            ModificationMode::Add => "ADD",
            ModificationMode::Remove => "REMOVE",
            ModificationMode::RemoveAll => "REMOVE_ALL",
        }
    }
}

/// Which segment a modifier applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// The segment selected in the Segment Editor.
    Selected,
    /// A new segment in the selected segment's layer, named after the selected segment
    /// followed by `suffix` (Slicer's Split islands: `<name>_2`, `<name>_3`, ...).
    NewSegment { suffix: String },
    /// An existing segment, by its index in the request's segments (joint smoothing
    /// changes every visible segment).
    Segment(usize),
    /// The segment named `name`, created with this colour and Slicer terminology entry
    /// when the segmentation has none (Auto lungs' "right lung" and "left lung").
    Named {
        name: String,
        color: [f64; 3],
        terminology: String,
    },
}

/// One change to one segment: a 0/1 mask on the reference lattice and how to apply it.
#[derive(Debug, Clone, PartialEq)]
pub struct Modifier {
    pub target: Target,
    pub mode: ModificationMode,
    /// 0/1 voxels, `[k][j][i]`, on the reference lattice.
    pub mask: Array3<u8>,
    /// Apply without the editable area and the overwrite of other segments (Logical
    /// operators' `BypassMasking`); the editable intensity range still applies.
    pub bypass_masking: bool,
    /// Apply with this overwrite mode instead of the user's (Slicer's joint smoothing
    /// writes every segment with "overwrite visible segments").
    pub overwrite: Option<masking::OverwriteMode>,
}

impl Modifier {
    /// A modifier of the selected segment, with masking.
    pub fn selected(mode: ModificationMode, mask: Array3<u8>) -> Self {
        Modifier {
            target: Target::Selected,
            mode,
            mask,
            bypass_masking: false,
            overwrite: None,
        }
    }
}

/// What an effect returns: the modifiers, in the order Slicer applies them. An empty list
/// means the effect changes nothing (e.g. a click on background for Keep selected island).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EffectOutput {
    pub modifiers: Vec<Modifier>,
    /// Values the effect computed that the user interface shows (the thresholds an
    /// automatic method chose, the number of islands, ...), as `(name, value)` pairs.
    pub reported: Vec<(String, f64)>,
    /// New volumes the effect made (Mask volume), on their own geometry.
    pub volumes: Vec<OutputVolume>,
}

/// A volume an effect made.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputVolume {
    /// What Slicer appends to the source volume's name for it (" masked" gives
    /// "CT masked"); the engine and the command line add the source's name.
    pub name: String,
    pub volume: AnyVolume,
}

/// Errors of effects: a parameter or an input that does not fit.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EffectError {
    /// A parameter value is outside what the effect accepts.
    #[error("parameter {name}: {reason}")]
    Parameter { name: String, reason: String },
    /// An input is missing or does not match the others (shape, point outside).
    #[error("{0}")]
    Input(String),
    /// The effect does not implement this case.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The client cancelled the request (or went away) while the effect ran.
    #[error("cancelled")]
    Cancelled,
    /// A bug in segkit: an effect read a parameter its schema does not declare.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<EffectError> for crate::Error {
    fn from(e: EffectError) -> Self {
        match e {
            EffectError::Unsupported(what) => {
                crate::Error::InvalidArgument(format!("not supported: {what}"))
            }
            other => crate::Error::InvalidArgument(other.to_string()),
        }
    }
}

/// The elements of an array made contiguous by `as_standard_layout`, as a slice.
pub(crate) fn standard_slice<'a, T, D: ndarray::Dimension>(
    array: &'a ndarray::CowArray<'_, T, D>,
) -> Result<&'a [T], EffectError> {
    array
        .as_slice()
        .ok_or_else(|| EffectError::Internal("a standard-layout array has no slice".into()))
}

/// Checks that a point `[k, j, i]` lies inside an array of shape `(nk, nj, ni)`.
pub fn check_point(point_kji: [usize; 3], shape: (usize, usize, usize)) -> Result<(), EffectError> {
    let (nk, nj, ni) = shape;
    if point_kji[0] < nk && point_kji[1] < nj && point_kji[2] < ni {
        Ok(())
    } else {
        Err(EffectError::Input(format!(
            "point (i={}, j={}, k={}) is outside the volume of {ni} x {nj} x {nk} voxels",
            point_kji[2], point_kji[1], point_kji[0]
        )))
    }
}
