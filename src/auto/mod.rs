//! Automatic pipelines built from segkit's effects and kernels: whole-structure
//! segmentations that run without a user's clicks (the command line's `segkit lungs` and
//! `segkit batch`, and the engine's "Auto lungs" effect), and segmentation from a few
//! boundary points.

pub mod boundary;
pub mod lungs;
