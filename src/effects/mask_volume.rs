//! Mask volume: a copy of the source volume with the voxels inside or outside the
//! selected segment replaced by a fill value, or a label volume of two values.
//!
//! Reference: Slicer's `SegmentEditorMaskVolumeEffect.py` (`maskVolumeWithSegment`,
//! reference §2.14). The segment is the mask on the source's lattice (non-zero =
//! inside); masking settings (editable area, intensity range, overwrite) do not apply and
//! no segment changes. The output keeps the source's voxel type.
//!
//! **Hard edge** (`SoftEdgeMm` 0), as `vtkImageStencil` with the stencil "mask <= 0":
//! - `FILL_OUTSIDE`: outside the segment the voxels become `FillValue`;
//! - `FILL_INSIDE`: inside the segment they become `FillValue`;
//! - `FILL_INSIDE_AND_OUTSIDE`: `BinaryMaskFillValueInside` inside and
//!   `BinaryMaskFillValueOutside` outside (Slicer makes it a label volume "`<name> label`").
//!
//! Fill values become the voxel type as VTK converts them: the stencil's background
//! (`FillValue`, the inside value) is rounded half up (`floor(v + 0.5)`) for integer
//! types; the outside value of `FILL_INSIDE_AND_OUTSIDE` goes through
//! `vtkImageThreshold`, which clamps and truncates toward zero. Values beyond the type's
//! range saturate (VTK's plain cast is undefined there).
//!
//! **Soft edge** (`SoftEdgeMm` > 0): the mask as 0/255 is smoothed with
//! `vtkImageGaussianSmooth` (standard deviation `SoftEdgeMm / spacing` voxels per axis,
//! radius factor 3, see [`gaussian_smooth_u8`]) and normalised by its actual minimum and
//! maximum to a weight `w` in `[0, 1]` (about 1 inside the segment). Then, in `f64`:
//! - `FILL_OUTSIDE`: `value * w + FillValue * (1 - w)`;
//! - `FILL_INSIDE`: the same with `w` replaced by `1 - w`;
//! - `FILL_INSIDE_AND_OUTSIDE`: `inside + (outside - inside) * w`. With `w` near 1 inside
//!   the segment, the segment's interior gets the **outside** value: the opposite of the
//!   hard edge. This is Slicer's behaviour (a bug in its code, kept here for parity).
//!
//! The result is cast to the voxel type as numpy's `astype` does: truncated toward zero
//! for integer types (saturating out of range), rounded to nearest for `f32`. A segment
//! that is empty or fills the whole volume leaves the smoothed mask constant: Slicer
//! divides 0 by 0 there; segkit refuses it with an error.
//!
//! # Example
//! ```
//! use ndarray::Array3;
//! use segkit::effects::mask_volume::{mask_volume, MaskOperation, MaskVolumeParams};
//! let ct = Array3::from_shape_vec((1, 1, 4), vec![10i16, 20, 30, 40]).unwrap();
//! let seg = Array3::from_shape_vec((1, 1, 4), vec![0u8, 1, 1, 0]).unwrap();
//! let params = MaskVolumeParams { fill_value: -1000.0, ..Default::default() };
//! let out = mask_volume(ct.view(), seg.view(), [1.0; 3], &params).unwrap();
//! assert_eq!(out.into_raw_vec_and_offset().0, [-1000, 20, 30, -1000]);
//! ```

use super::schema::{ChoiceSpec, EffectSpec, Input, ParamSpec, ParamValues};
use super::{Control, Effect, EffectError, EffectOutput, EffectRequest, OutputVolume};
use crate::kernels::gaussian::gaussian_pass_u8;
#[cfg(doc)]
use crate::kernels::gaussian::gaussian_smooth_u8;
use crate::volume::{AnyVolume, Scalar, Volume};
use crate::with_volume;
use ndarray::{Array3, ArrayView3, Zip};

/// What to fill (Slicer's `Operation` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaskOperation {
    /// Fill the voxels outside the segment.
    #[default]
    FillOutside,
    /// Fill the voxels inside the segment.
    FillInside,
    /// A label volume: one value inside, another outside.
    FillInsideAndOutside,
}

impl MaskOperation {
    /// All operations.
    pub const ALL: [MaskOperation; 3] = [
        MaskOperation::FillOutside,
        MaskOperation::FillInside,
        MaskOperation::FillInsideAndOutside,
    ];

    /// Slicer's parameter value.
    pub fn slicer_name(self) -> &'static str {
        match self {
            MaskOperation::FillOutside => "FILL_OUTSIDE",
            MaskOperation::FillInside => "FILL_INSIDE",
            MaskOperation::FillInsideAndOutside => "FILL_INSIDE_AND_OUTSIDE",
        }
    }

    /// The operation Slicer names `name`.
    pub fn from_slicer_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.slicer_name() == name)
    }

    /// What Slicer appends to the source's name for the new volume: `" masked"`, or
    /// `" label"` for the label volume of `FILL_INSIDE_AND_OUTSIDE`.
    pub fn name_suffix(self) -> &'static str {
        match self {
            MaskOperation::FillInsideAndOutside => " label",
            _ => " masked",
        }
    }
}

/// Parameters of the Mask volume effect; `Default` gives Slicer's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskVolumeParams {
    /// `Operation`, default `FILL_OUTSIDE`.
    pub operation: MaskOperation,
    /// `FillValue`, default 0 (`FILL_INSIDE`, `FILL_OUTSIDE`).
    pub fill_value: f64,
    /// `BinaryMaskFillValueInside`, default 1 (`FILL_INSIDE_AND_OUTSIDE`).
    pub binary_mask_fill_value_inside: f64,
    /// `BinaryMaskFillValueOutside`, default 0 (`FILL_INSIDE_AND_OUTSIDE`).
    pub binary_mask_fill_value_outside: f64,
    /// `SoftEdgeMm`, default 0 (a hard edge): the Gaussian's standard deviation.
    pub soft_edge_mm: f64,
}

impl MaskVolumeParams {
    /// The parameters from checked values (given or the schema's defaults).
    pub fn from_values(v: &ParamValues) -> Result<Self, EffectError> {
        Ok(MaskVolumeParams {
            operation: v.choice("Operation", MaskOperation::from_slicer_name)?,
            fill_value: v.double("FillValue")?,
            binary_mask_fill_value_inside: v.double("BinaryMaskFillValueInside")?,
            binary_mask_fill_value_outside: v.double("BinaryMaskFillValueOutside")?,
            soft_edge_mm: v.double("SoftEdgeMm")?,
        })
    }
}

impl Default for MaskVolumeParams {
    /// Slicer's defaults, as the schema states them.
    fn default() -> Self {
        Self::from_values(&ParamValues::defaults(&MaskVolume.spec()))
            .expect("the Mask volume schema's defaults parse")
    }
}

/// Slicer's radius factor for the soft edge's Gaussian.
pub const SOFT_EDGE_RADIUS_FACTOR: f64 = 3.0;

/// Masks `source` with `mask` (both `[k][j][i]` on one lattice; mask non-zero = inside
/// the segment), voxels of `spacing_ijk` mm. Returns the new volume's voxels, of the
/// source's type. See the module documentation for the rules.
///
/// # Errors
/// Shapes that differ; a soft edge on a mask that is empty or fills the volume; a
/// spacing that is not positive.
pub fn mask_volume<T: Scalar>(
    source: ArrayView3<T>,
    mask: ArrayView3<u8>,
    spacing_ijk: [f64; 3],
    params: &MaskVolumeParams,
) -> Result<Array3<T>, EffectError> {
    mask_volume_with(source, mask, spacing_ijk, params, &Control::none())
}

fn mask_volume_with<T: Scalar>(
    source: ArrayView3<T>,
    mask: ArrayView3<u8>,
    spacing_ijk: [f64; 3],
    params: &MaskVolumeParams,
    control: &Control,
) -> Result<Array3<T>, EffectError> {
    if source.dim() != mask.dim() {
        return Err(EffectError::Input(format!(
            "the segment has shape {:?} (k, j, i) but the volume {:?}",
            mask.dim(),
            source.dim()
        )));
    }
    if params.soft_edge_mm > 0.0 {
        return soft_edge(source, mask, spacing_ijk, params, control);
    }
    let op = params.operation;
    let (inside, outside): (Option<T>, Option<T>) = match op {
        MaskOperation::FillOutside => (None, Some(stencil_background(params.fill_value))),
        MaskOperation::FillInside => (Some(stencil_background(params.fill_value)), None),
        MaskOperation::FillInsideAndOutside => (
            Some(stencil_background(params.binary_mask_fill_value_inside)),
            Some(threshold_value(params.binary_mask_fill_value_outside)),
        ),
    };
    Ok(Zip::from(&source).and(&mask).par_map_collect(|&v, &m| {
        let fill = if m != 0 { inside } else { outside };
        fill.unwrap_or(v)
    }))
}

/// `vtkImageStencil`'s background value in the image's type: as is for floating-point
/// types, `floor(v + 0.5)` for integers (saturating).
fn stencil_background<T: Scalar>(v: f64) -> T {
    if T::TYPE.is_float() {
        T::from_f64(v)
    } else {
        T::from_f64((v + 0.5).floor())
    }
}

/// `vtkImageThreshold`'s in/out value in the output type: clamped to the type's range,
/// truncated toward zero for integers (`SafeCastFromDouble`).
fn threshold_value<T: Scalar>(v: f64) -> T {
    cast_like_numpy(v)
}

/// numpy's `astype` from `f64`: truncation toward zero for integers (saturating here),
/// rounding to nearest for `f32`.
fn cast_like_numpy<T: Scalar>(v: f64) -> T {
    if T::TYPE.is_float() {
        T::from_f64(v)
    } else {
        T::from_f64(v.trunc())
    }
}

fn soft_edge<T: Scalar>(
    source: ArrayView3<T>,
    mask: ArrayView3<u8>,
    spacing_ijk: [f64; 3],
    params: &MaskVolumeParams,
    control: &Control,
) -> Result<Array3<T>, EffectError> {
    if spacing_ijk.iter().any(|&s| !(s > 0.0 && s.is_finite())) {
        return Err(EffectError::Input(format!(
            "voxel spacing {spacing_ijk:?} mm is not positive"
        )));
    }
    let sigma = params.soft_edge_mm;
    let sigma_kji = [spacing_ijk[2], spacing_ijk[1], spacing_ijk[0]].map(|s| sigma / s);
    let mut smoothed = mask.mapv(|m| if m != 0 { 255u8 } else { 0 });
    for (axis, &s) in sigma_kji.iter().enumerate() {
        control.check()?;
        smoothed = gaussian_pass_u8(smoothed.view(), axis, s, SOFT_EDGE_RADIUS_FACTOR);
        control.progress((axis + 1) as f64 / 4.0, "soft edge");
    }
    let (lo, hi) = smoothed
        .iter()
        .fold((u8::MAX, u8::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if lo >= hi {
        return Err(EffectError::Input(format!(
            "the soft edge needs a segment that neither is empty nor fills the volume \
             (the smoothed mask is {lo} everywhere; Slicer divides 0 by 0 here)"
        )));
    }
    control.check()?;
    let (lo_f, range) = (f64::from(lo), f64::from(hi - lo));
    let weight = |g: u8| (f64::from(g) - lo_f) / range;
    let out = match params.operation {
        MaskOperation::FillInsideAndOutside => {
            let (a, b) = (
                params.binary_mask_fill_value_inside,
                params.binary_mask_fill_value_outside,
            );
            // Slicer's formula: w is about 1 inside, so the inside gets `b` (see above).
            smoothed.mapv(|g| cast_like_numpy::<T>(a + (b - a) * weight(g)))
        }
        op => {
            let fill = params.fill_value;
            let inside = op == MaskOperation::FillInside;
            Zip::from(&source).and(&smoothed).par_map_collect(|&v, &g| {
                let mut w = weight(g);
                if inside {
                    w = 1.0 - w;
                }
                cast_like_numpy::<T>(v.to_f64() * w + fill * (1.0 - w))
            })
        }
    };
    Ok(out)
}

/// The Mask volume effect in the catalog.
pub struct MaskVolume;

impl Effect for MaskVolume {
    fn spec(&self) -> EffectSpec {
        let operations = vec![
            ChoiceSpec::new(
                "FILL_OUTSIDE",
                "Fill outside",
                "Voxels outside the segment get the fill value.",
            ),
            ChoiceSpec::new(
                "FILL_INSIDE",
                "Fill inside",
                "Voxels inside the segment get the fill value.",
            ),
            ChoiceSpec::new(
                "FILL_INSIDE_AND_OUTSIDE",
                "Fill inside and outside",
                "A label volume with one value inside the segment and another outside.",
            ),
        ];
        let operation = ParamSpec::choice("Operation", "Operation", operations, "FILL_OUTSIDE");
        let fill = ParamSpec::double("FillValue", "Fill value", "0")
            .help("The value of the masked voxels.")
            .visible_when("Operation", &["FILL_INSIDE", "FILL_OUTSIDE"]);
        let inside = ParamSpec::double("BinaryMaskFillValueInside", "Inside fill value", "1")
            .help("The value inside the segment.")
            .visible_when("Operation", &["FILL_INSIDE_AND_OUTSIDE"]);
        let outside = ParamSpec::double("BinaryMaskFillValueOutside", "Outside fill value", "0")
            .help("The value outside the segment.")
            .visible_when("Operation", &["FILL_INSIDE_AND_OUTSIDE"]);
        let soft = ParamSpec::double("SoftEdgeMm", "Soft edge", "0")
            .help(
                "Standard deviation of the Gaussian that blurs the edge of the mask; 0 for a \
                 hard edge. With a soft edge, Fill inside and outside swaps the two values \
                 (as Slicer does).",
            )
            .range(0.0, 1e6)
            .step(0.5)
            .unit("mm");
        let mut spec = EffectSpec::new(
            "Mask volume",
            "mask-volume",
            "Mask volume",
            "Make a copy of the source volume with the voxels inside or outside the selected \
             segment set to a fill value, or a label volume of the segment. No segment changes.",
        );
        spec.inputs = vec![Input::SourceVolume, Input::SelectedSegment];
        spec.params = vec![operation, fill, inside, outside, soft];
        spec.produces_volume = true;
        spec
    }

    fn run(&self, request: &EffectRequest) -> Result<EffectOutput, EffectError> {
        let params = MaskVolumeParams::from_values(request.params)?;
        let source = request.source("Mask volume")?;
        let mask = request.selected_mask();
        let spacing = request.spacing_ijk();
        let volume: AnyVolume = with_volume!(source, v => {
            let data = mask_volume_with(v.data.view(), mask.view(), spacing, &params, request.control)?;
            Volume::new(data, v.geometry).into()
        });
        Ok(EffectOutput {
            modifiers: Vec::new(),
            reported: Vec::new(),
            // The suffix Slicer appends to the source's name ("CT masked", "CT label").
            volumes: vec![OutputVolume {
                name: params.operation.name_suffix().to_string(),
                volume,
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<T: Clone>(v: &[T]) -> Array3<T> {
        Array3::from_shape_vec((1, 1, v.len()), v.to_vec()).unwrap()
    }

    fn run<T: Scalar>(src: &Array3<T>, seg: &[u8], p: MaskVolumeParams) -> Vec<T> {
        mask_volume(src.view(), row(seg).view(), [1.0; 3], &p)
            .unwrap()
            .into_raw_vec_and_offset()
            .0
    }

    #[test]
    fn hard_edge_operations() {
        let src = row(&[10i16, 20, 30, 40]);
        let seg = [0u8, 2, 1, 0];
        let p = |op, fill| MaskVolumeParams {
            operation: op,
            fill_value: fill,
            ..Default::default()
        };
        assert_eq!(
            run(&src, &seg, p(MaskOperation::FillOutside, 7.0)),
            [7, 20, 30, 7]
        );
        assert_eq!(
            run(&src, &seg, p(MaskOperation::FillInside, 7.0)),
            [10, 7, 7, 40]
        );
        let mut both = p(MaskOperation::FillInsideAndOutside, 0.0);
        both.binary_mask_fill_value_inside = 5.0;
        both.binary_mask_fill_value_outside = -3.0;
        assert_eq!(run(&src, &seg, both), [-3, 5, 5, -3]);
    }

    #[test]
    fn fill_values_are_converted_as_vtk_converts_them() {
        let src = row(&[10i16, 20]);
        let seg = [1u8, 0];
        // The stencil's background rounds half up; vtkImageThreshold truncates.
        let mut p = MaskVolumeParams {
            operation: MaskOperation::FillInsideAndOutside,
            ..Default::default()
        };
        p.binary_mask_fill_value_inside = -2.5;
        p.binary_mask_fill_value_outside = -2.7;
        assert_eq!(run(&src, &seg, p), [-2, -2]);
        p.binary_mask_fill_value_inside = 2.5;
        p.binary_mask_fill_value_outside = 2.7;
        assert_eq!(run(&src, &seg, p), [3, 2]);
        // Out of range saturates; floating-point volumes take the value as is.
        p.binary_mask_fill_value_inside = 1e6;
        assert_eq!(run(&src, &seg, p)[0], i16::MAX);
        let f = row(&[1.0f32, 2.0]);
        let q = MaskVolumeParams {
            fill_value: 0.25,
            ..Default::default()
        };
        assert_eq!(run(&f, &seg, q), [1.0, 0.25]);
    }

    #[test]
    fn soft_edge_blends_and_swaps_inside_and_outside_for_the_label_volume() {
        // A half-space along i, 1 mm voxels, soft edge 1 mm (radius 3).
        let src = Array3::from_elem((1, 1, 10), 100i16);
        let seg: Vec<u8> = (0..10).map(|i| u8::from(i >= 5)).collect();
        let mask = row(&seg);
        let soft = |op, fill: f64| MaskVolumeParams {
            operation: op,
            fill_value: fill,
            soft_edge_mm: 1.0,
            binary_mask_fill_value_inside: 1000.0,
            binary_mask_fill_value_outside: 0.0,
        };
        let outside = mask_volume(
            src.view(),
            mask.view(),
            [1.0; 3],
            &soft(MaskOperation::FillOutside, 0.0),
        )
        .unwrap()
        .into_raw_vec_and_offset()
        .0;
        // 0 far outside, 100 far inside, in between across the edge, monotone.
        assert_eq!((outside[0], outside[9]), (0, 100));
        assert!(outside.windows(2).all(|w| w[0] <= w[1]), "{outside:?}");
        assert!(outside[4] > 0 && outside[5] < 100, "{outside:?}");
        let inside = mask_volume(
            src.view(),
            mask.view(),
            [1.0; 3],
            &soft(MaskOperation::FillInside, 0.0),
        )
        .unwrap()
        .into_raw_vec_and_offset()
        .0;
        assert_eq!((inside[0], inside[9]), (100, 0));
        // Label volume: inside 1000, outside 0 ... but Slicer's soft edge swaps them.
        let label = mask_volume(
            src.view(),
            mask.view(),
            [1.0; 3],
            &soft(MaskOperation::FillInsideAndOutside, 0.0),
        )
        .unwrap()
        .into_raw_vec_and_offset()
        .0;
        assert_eq!((label[0], label[9]), (1000, 0));
    }

    #[test]
    fn soft_edge_on_an_empty_segment_is_refused() {
        let src = Array3::from_elem((2, 2, 2), 1u8);
        let mask = Array3::<u8>::zeros((2, 2, 2));
        let p = MaskVolumeParams {
            soft_edge_mm: 2.0,
            ..Default::default()
        };
        let e = mask_volume(src.view(), mask.view(), [1.0; 3], &p).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        // The hard edge is fine: everything is outside.
        let p = MaskVolumeParams::default();
        assert!(mask_volume(src.view(), mask.view(), [1.0; 3], &p)
            .unwrap()
            .iter()
            .all(|&v| v == 0));
    }

    #[test]
    fn output_is_named_like_slicers_and_keeps_the_type() {
        let spec = MaskVolume.spec();
        assert!(spec.produces_volume);
        assert_eq!(MaskOperation::FillOutside.name_suffix(), " masked");
        assert_eq!(MaskOperation::FillInsideAndOutside.name_suffix(), " label");
    }
}
