//! What an effect receives: the source, the segments, the clicked points, the checked
//! parameters, the lattice's geometry, and a [`Control`] to poll for cancellation and to
//! report progress on.

use super::masking::Masking;
use super::{EffectError, ParamValues};
use crate::volume::{AnyVolume, Geometry};
use ndarray::{Array3, ArrayView3, CowArray, Ix3, Zip};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A progress callback: fraction done in `0..=1` and a short message.
pub type ProgressFn = dyn Fn(f64, &str) + Send + Sync;

/// Cancellation and progress of one request.
///
/// The engine sets the cancel flag when the client cancels the call or goes away; long
/// effects call [`Control::check`] between passes (often enough to stop within 100 ms)
/// and report [`Control::progress`], which the engine streams to the client.
#[derive(Clone, Default)]
pub struct Control {
    cancel: Arc<AtomicBool>,
    progress: Option<Arc<ProgressFn>>,
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Control")
            .field("cancelled", &self.is_cancelled())
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl Control {
    /// A control that is never cancelled and reports nowhere.
    pub fn none() -> Self {
        Control::default()
    }

    /// A control on a shared cancel flag, reporting to `progress`.
    pub fn new(cancel: Arc<AtomicBool>, progress: Option<Arc<ProgressFn>>) -> Self {
        Control { cancel, progress }
    }

    /// The shared cancel flag (set it to cancel the request).
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Cancels the request.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// True once the request is cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// `Err(Cancelled)` once the request is cancelled: `control.check()?` between passes.
    pub fn check(&self) -> Result<(), EffectError> {
        if self.is_cancelled() {
            Err(EffectError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Reports progress (`fraction` in `0..=1`).
    pub fn progress(&self, fraction: f64, message: &str) {
        if let Some(p) = &self.progress {
            p(fraction.clamp(0.0, 1.0), message);
        }
    }
}

/// Everything an effect may use, on the reference lattice (`[k][j][i]`).
///
/// The catalog checks a request before an effect sees it: the parameters against the
/// schema, every segment's shape against the lattice, the points inside it, and the
/// selected index.
#[derive(Debug, Clone, Copy)]
pub struct EffectRequest<'a> {
    /// The source volume, aligned to the reference lattice.
    pub source: Option<&'a AnyVolume>,
    /// The reference lattice's geometry (spacing in mm for effects that work in mm).
    pub geometry: &'a Geometry,
    /// The reference lattice's shape `(nk, nj, ni)`.
    pub shape: (usize, usize, usize),
    /// The segments as 0/1 masks, in display order.
    pub segments: &'a [Array3<u8>],
    /// Visibility of each segment.
    pub visible: &'a [bool],
    /// Each segment's id (for parameters that name a segment).
    pub segment_ids: &'a [String],
    /// Index of the selected segment in `segments`; `None` for a new, empty segment.
    pub selected: Option<usize>,
    /// The clicked voxels `[k, j, i]`, in order (Paint takes several; click effects the
    /// first).
    pub points_kji: &'a [[usize; 3]],
    /// Parameters, checked against the effect's schema.
    pub params: &'a ParamValues,
    /// Cancellation and progress.
    pub control: &'a Control,
    /// The Segment Editor's masking settings, when the caller knows them. Masking is
    /// applied to an effect's result afterwards; this is for effects whose algorithm
    /// itself stops at locked voxels (Flood filling), via [`EffectRequest::editable_area`].
    pub masking: Option<&'a Masking>,
}

impl<'a> EffectRequest<'a> {
    /// The clicked voxel `[k, j, i]`, if any.
    pub fn point(&self) -> Option<[usize; 3]> {
        self.points_kji.first().copied()
    }

    /// Voxel spacing in mm along `(i, j, k)`.
    pub fn spacing_ijk(&self) -> [f64; 3] {
        self.geometry.spacing
    }

    /// The source volume, or an error naming `effect`.
    pub fn source(&self, effect: &str) -> Result<&'a AnyVolume, EffectError> {
        self.source
            .ok_or_else(|| EffectError::Input(format!("{effect} needs a source volume")))
    }

    /// The selected segment's mask; all zeros for a new segment.
    pub fn selected_mask(&self) -> CowArray<'a, u8, Ix3> {
        match self.selected {
            Some(n) => CowArray::from(self.segments[n].view()),
            None => CowArray::from(Array3::<u8>::zeros(self.shape)),
        }
    }

    /// Slicer's edit mask for the selected segment: 1 where it may change, under the
    /// request's masking (editable area and intensity range); `None` when everything is
    /// editable or the caller sent no masking.
    pub fn editable_area(&self) -> Result<Option<Array3<u8>>, EffectError> {
        match self.masking {
            None => Ok(None),
            Some(m) => super::masking::editable_area(
                self.segments,
                self.visible,
                self.selected,
                m,
                self.source,
            ),
        }
    }

    /// The index of the segment whose id is `id`.
    pub fn segment_index(&self, id: &str) -> Option<usize> {
        self.segment_ids.iter().position(|s| s == id)
    }

    /// Label map of the visible segments, label = position + 1, later segments winning,
    /// as Slicer's `GenerateMergedLabelmap`.
    pub fn merged_visible(&self) -> Array3<u16> {
        let masks = self
            .segments
            .iter()
            .zip(self.visible)
            .enumerate()
            .filter(|(_, (_, &v))| v)
            .map(|(n, (m, _))| (m.view(), (n + 1).min(u16::MAX as usize) as u16));
        flatten_masks(masks, self.shape)
    }
}

/// Flattens masks into one label map: each mask's non-zero voxels get its label, and
/// where masks overlap the later one wins (Slicer's merged label map and "Export to label
/// map").
pub fn flatten_masks<'m>(
    masks: impl IntoIterator<Item = (ArrayView3<'m, u8>, u16)>,
    shape: (usize, usize, usize),
) -> Array3<u16> {
    let mut out = Array3::<u16>::zeros(shape);
    for (mask, label) in masks {
        Zip::from(&mut out).and(&mask).par_for_each(|o, &m| {
            if m != 0 {
                *o = label;
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_masks_win_where_they_overlap() {
        let a = Array3::from_shape_vec((1, 1, 3), vec![1u8, 1, 0]).unwrap();
        let b = Array3::from_shape_vec((1, 1, 3), vec![0u8, 1, 1]).unwrap();
        let out = flatten_masks([(a.view(), 4), (b.view(), 9)], (1, 1, 3));
        assert_eq!(out.as_slice().unwrap(), &[4, 9, 9]);
    }

    #[test]
    fn control_cancels_and_reports() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let c = Control::new(
            Arc::new(AtomicBool::new(false)),
            Some(Arc::new(move |f, _m: &str| s.lock().unwrap().push(f))),
        );
        assert!(c.check().is_ok());
        c.progress(1.5, "done");
        c.cancel();
        assert_eq!(c.check(), Err(EffectError::Cancelled));
        assert_eq!(*seen.lock().unwrap(), vec![1.0]);
    }
}
