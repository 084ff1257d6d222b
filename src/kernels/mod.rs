//! Building blocks shared by several effects: connected components, flood fill, ...
//!
//! Kernels take plain arrays and plain arguments; effects give them Slicer's meaning.

pub mod bbox;
pub mod components;
pub mod contour_interpolation;
pub mod distance;
pub mod fast_marching;
pub mod gaussian;
pub mod growcut;
pub mod joint_smoothing;
pub mod morphology;
pub mod recursive_gaussian;
pub mod watershed;
