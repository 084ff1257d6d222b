//! Segment Editor effects as pure functions over arrays.
//!
//! One effect per file, each with its parameter struct (`Default` = Slicer's defaults) and
//! one entry point. Effects never see a path, a socket or a proto type.

pub mod auto_threshold;
