//! Building blocks shared by several effects: connected components, flood fill, ...
//!
//! Kernels take plain arrays and plain arguments; effects give them Slicer's meaning.

pub mod bbox;
pub mod components;
pub mod distance;
pub mod gaussian;
pub mod growcut;
pub mod joint_smoothing;
pub mod morphology;
