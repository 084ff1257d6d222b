//! segkit: a segmentation engine for 3D Slicer's Segment Editor, and the DICOM / NRRD /
//! NIfTI toolkit it stands on.
//!
//! Layers, from the bottom: [`volume`] (arrays on one LPS geometry), [`io`] (files in and
//! out). Effects, the engine and the command line are built on these.
//!
//! Conventions: arrays are `ndarray::Array3` indexed `[k][j][i]` (slice, row, column) in
//! standard order; world coordinates are LPS millimetres; see [`volume::Geometry`].

pub mod auto;
pub mod cli;
pub mod effects;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod io;
pub mod kernels;
pub mod service;
pub mod volume;

pub use error::{Error, Result};
