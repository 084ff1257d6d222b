//! Smoothing: make the selected segment's boundary smoother with a median, a
//! morphological opening or closing, or a Gaussian.
//!
//! Reference: Slicer's `SegmentEditorSmoothingEffect.py` (reference §2.10), which runs
//! VTK filters on the selected segment's 0/1 labelmap (on the whole reference extent)
//! and writes the result with mode Set:
//! - `MEDIAN`: `vtkImageMedian3D`, box kernel; see [`median_box`];
//! - `MORPHOLOGICAL_OPENING` / `MORPHOLOGICAL_CLOSING`: `vtkImageOpenClose3D` with the
//!   ellipsoid inscribed in the kernel box; see [`open_ellipsoid`], [`close_ellipsoid`];
//! - `GAUSSIAN`: the segment as 0/255, `vtkImageGaussianSmooth` (radius factor 4,
//!   standard deviation `GaussianStandardDeviationMm / spacing` voxels per axis), then
//!   `>= 127` is inside; see [`gaussian_smooth_u8`];
//! - `JOINT_TAUBIN`: joint smoothing of all visible segments together, by
//!   [`crate::kernels::joint_smoothing`] (marching cubes, Taubin's windowed-sinc filter,
//!   re-voxelisation), each visible segment written back with Set under "overwrite
//!   visible segments" as Slicer does. The surface triangulation of ambiguous cubes is
//!   segkit's own, not VTK's table, so results match Slicer to Dice 0.99 on large
//!   segments, less on thin ones (see the kernel's documentation).
//!
//! **Kernel size in voxels**, per axis, from `KernelSizeMm` and the spacing:
//! `int(round((mm / spacing + 1) / 2) * 2 - 1)` with Python's `round`, which rounds
//! halves to even: 3 mm on 1 mm voxels gives 3, 4 mm gives 3 (2.5 rounds to 2), 5 mm
//! gives 5, 6 mm gives 7. On CT of 3.05 x 3.05 x 10 mm a 3 mm kernel is 1 x 1 x 1:
//! nothing changes.
//!
//! **Borders and ties.** Outside the image nothing is read: the median counts only the
//! box's voxels inside the image and a tie (clipped box, even count) gives 0; erosion and
//! dilation ignore neighbours outside (the faces neither erode nor grow). The Gaussian's
//! kernel is clipped and re-normalised at the faces, with each pass truncated to 8 bits,
//! exactly as VTK.
//!
//! With `ApplyToAllVisibleSegments` each visible segment, in display order, gets its own
//! Set modifier computed from that segment alone. Slicer smooths them one after the other,
//! so where an earlier segment grows into a later one (overwrite) the later segment is
//! smoothed after it lost those voxels; segkit smooths every segment as it was before
//! the effect. The two agree whenever the smoothed segments do not grow into each other.
//!
//! # Example
//! ```
//! use ndarray::Array3;
//! use segkit::effects::smoothing::{smooth_segment, SmoothingMethod, SmoothingParams};
//! // A one-voxel hole in a 1 mm slab disappears with a 3 mm median.
//! let mut seg = Array3::<u8>::ones((1, 3, 3));
//! seg[[0, 1, 1]] = 0;
//! let params = SmoothingParams { smoothing_method: SmoothingMethod::Median, ..Default::default() };
//! let out = smooth_segment(seg.view(), [1.0, 1.0, 1.0], &params).unwrap();
//! assert!(out.iter().all(|&v| v == 1));
//! ```

use super::masking::OverwriteMode;
use super::schema::{ChoiceSpec, EffectSpec, Input, ParamSpec, ParamValues};
use super::{
    Control, Effect, EffectError, EffectOutput, EffectRequest, ModificationMode, Modifier, Target,
};
use crate::kernels::gaussian::gaussian_pass_u8;
#[cfg(doc)]
use crate::kernels::gaussian::gaussian_smooth_u8;
use crate::kernels::joint_smoothing::joint_smooth;
use crate::kernels::mapped;
#[cfg(doc)]
use crate::kernels::morphology::{close_ellipsoid, open_ellipsoid};
use crate::kernels::morphology::{dilate, erode, median_box, Footprint};
use ndarray::{Array3, ArrayView3};

/// How to smooth (Slicer's `SmoothingMethod` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmoothingMethod {
    /// Median of the kernel box.
    #[default]
    Median,
    /// Gaussian of the 0/255 segment, thresholded at 127.
    Gaussian,
    /// Erosion then dilation with the ellipsoid kernel (removes extrusions).
    MorphologicalOpening,
    /// Dilation then erosion with the ellipsoid kernel (fills holes).
    MorphologicalClosing,
    /// Joint smoothing of all visible segments (surface smoothing): not implemented here.
    JointTaubin,
}

impl SmoothingMethod {
    /// All methods, in Slicer's order of values.
    pub const ALL: [SmoothingMethod; 5] = [
        SmoothingMethod::Median,
        SmoothingMethod::MorphologicalOpening,
        SmoothingMethod::MorphologicalClosing,
        SmoothingMethod::Gaussian,
        SmoothingMethod::JointTaubin,
    ];

    /// Slicer's parameter value (`MEDIAN`, ...).
    pub fn slicer_name(self) -> &'static str {
        match self {
            SmoothingMethod::Median => "MEDIAN",
            SmoothingMethod::Gaussian => "GAUSSIAN",
            SmoothingMethod::MorphologicalOpening => "MORPHOLOGICAL_OPENING",
            SmoothingMethod::MorphologicalClosing => "MORPHOLOGICAL_CLOSING",
            SmoothingMethod::JointTaubin => "JOINT_TAUBIN",
        }
    }

    /// The method Slicer names `name`.
    pub fn from_slicer_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.slicer_name() == name)
    }

    /// True for the methods that use `KernelSizeMm`.
    pub fn uses_kernel(self) -> bool {
        matches!(
            self,
            SmoothingMethod::Median
                | SmoothingMethod::MorphologicalOpening
                | SmoothingMethod::MorphologicalClosing
        )
    }
}

/// Parameters of the Smoothing effect; `Default` gives Slicer's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothingParams {
    /// `SmoothingMethod`, default `MEDIAN`.
    pub smoothing_method: SmoothingMethod,
    /// `KernelSizeMm`, default 3: the kernel's diameter for median, opening and closing.
    pub kernel_size_mm: f64,
    /// `GaussianStandardDeviationMm`, default 3.
    pub gaussian_standard_deviation_mm: f64,
    /// `JointTaubinSmoothingFactor`, default 0.5 (0.01 to 1).
    pub joint_taubin_smoothing_factor: f64,
    /// `ApplyToAllVisibleSegments`, default off.
    pub apply_to_all_visible_segments: bool,
}

impl SmoothingParams {
    /// The parameters from checked values (given or the schema's defaults).
    pub fn from_values(v: &ParamValues) -> Result<Self, EffectError> {
        Ok(SmoothingParams {
            smoothing_method: v.choice("SmoothingMethod", SmoothingMethod::from_slicer_name)?,
            kernel_size_mm: v.double("KernelSizeMm")?,
            gaussian_standard_deviation_mm: v.double("GaussianStandardDeviationMm")?,
            joint_taubin_smoothing_factor: v.double("JointTaubinSmoothingFactor")?,
            apply_to_all_visible_segments: v.boolean("ApplyToAllVisibleSegments")?,
        })
    }
}

impl Default for SmoothingParams {
    /// Slicer's defaults, as the schema states them.
    fn default() -> Self {
        Self::from_values(&ParamValues::defaults(&Smoothing.spec()))
            .expect("the Smoothing schema's defaults parse")
    }
}

/// Slicer's kernel size in voxels along (k, j, i) for a diameter of `kernel_size_mm` on
/// voxels of `spacing_ijk` mm: `int(round((mm / spacing + 1) / 2) * 2 - 1)`, halves
/// rounded to even as Python's `round` does. Can be -1 for 0 mm.
///
/// ```
/// use segkit::effects::smoothing::kernel_size_voxels;
/// assert_eq!(kernel_size_voxels(4.0, [1.0, 1.0, 1.0]), [3, 3, 3]);
/// assert_eq!(kernel_size_voxels(6.0, [1.0, 2.0, 3.0]), [3, 3, 7]);
/// ```
pub fn kernel_size_voxels(kernel_size_mm: f64, spacing_ijk: [f64; 3]) -> [i64; 3] {
    let along =
        |spacing: f64| ((kernel_size_mm / spacing + 1.0) / 2.0).round_ties_even() as i64 * 2 - 1;
    [
        along(spacing_ijk[2]),
        along(spacing_ijk[1]),
        along(spacing_ijk[0]),
    ]
}

/// Smooths one segment's 0/1 mask (`[k][j][i]`, non-zero = inside) on voxels of
/// `spacing_ijk` mm, as Slicer's Smoothing smooths the selected segment. Returns the new
/// 0/1 mask on the same lattice.
///
/// # Errors
/// `JOINT_TAUBIN` ([`EffectError::Unsupported`]); a kernel size that gives no kernel
/// (`KernelSizeMm` 0, which Slicer turns into a kernel of -1 voxels); a spacing that is
/// not positive.
pub fn smooth_segment(
    mask: ArrayView3<u8>,
    spacing_ijk: [f64; 3],
    params: &SmoothingParams,
) -> Result<Array3<u8>, EffectError> {
    smooth_segment_with(mask, spacing_ijk, params, &Control::none())
}

fn smooth_segment_with(
    mask: ArrayView3<u8>,
    spacing_ijk: [f64; 3],
    params: &SmoothingParams,
    control: &Control,
) -> Result<Array3<u8>, EffectError> {
    if spacing_ijk.iter().any(|&s| !(s > 0.0 && s.is_finite())) {
        return Err(EffectError::Input(format!(
            "voxel spacing {spacing_ijk:?} mm is not positive"
        )));
    }
    let method = params.smoothing_method;
    if method == SmoothingMethod::JointTaubin {
        return Err(EffectError::Input(
            "joint smoothing (JOINT_TAUBIN) smooths all visible segments together, not one \
             segment: run the Smoothing effect"
                .into(),
        ));
    }
    if method == SmoothingMethod::Gaussian {
        let sigma_mm = params.gaussian_standard_deviation_mm;
        let sigma_kji = [spacing_ijk[2], spacing_ijk[1], spacing_ijk[0]].map(|s| sigma_mm / s);
        let mut image = mapped(mask, |v| if v != 0 { 255 } else { 0 });
        for (axis, &sigma) in sigma_kji.iter().enumerate() {
            control.check()?;
            image = gaussian_pass_u8(image.view(), axis, sigma, GAUSSIAN_RADIUS_FACTOR);
            control.progress((axis + 1) as f64 / 3.0, "Gaussian");
        }
        // vtkImageThreshold::ThresholdByUpper(int(255 / 2)): 127 and above are inside.
        image.par_mapv_inplace(|v| u8::from(v >= 127));
        return Ok(image);
    }
    let kernel = kernel_size_voxels(params.kernel_size_mm, spacing_ijk);
    if kernel.iter().any(|&k| k < 1) {
        return Err(EffectError::Parameter {
            name: "KernelSizeMm".into(),
            reason: format!(
                "{} mm gives a kernel of {:?} voxels (k, j, i); give a size above 0",
                params.kernel_size_mm, kernel
            ),
        });
    }
    let kernel = kernel.map(|k| k as usize);
    control.check()?;
    Ok(match method {
        SmoothingMethod::Median => median_box(mask, kernel),
        SmoothingMethod::MorphologicalOpening | SmoothingMethod::MorphologicalClosing => {
            let fp = Footprint::ellipsoid(kernel);
            let opening = method == SmoothingMethod::MorphologicalOpening;
            let first = if opening {
                erode(mask, &fp)
            } else {
                dilate(mask, &fp)
            };
            control.check()?;
            control.progress(0.5, method.slicer_name());
            let second = if opening {
                dilate(first.view(), &fp)
            } else {
                erode(first.view(), &fp)
            };
            second
        }
        SmoothingMethod::Gaussian | SmoothingMethod::JointTaubin => {
            unreachable!("handled above")
        }
    })
}

/// Slicer's radius factor for the Smoothing effect's Gaussian.
pub const GAUSSIAN_RADIUS_FACTOR: f64 = 4.0;

/// The segments Smoothing works on, all `[k][j][i]` on the reference lattice.
#[derive(Debug, Clone)]
pub struct SmoothingInput<'a> {
    /// Every segment's 0/1 mask, in display order.
    pub segments: &'a [Array3<u8>],
    /// Visibility of each segment.
    pub visible: &'a [bool],
    /// The selected segment; `None` for a new, empty one.
    pub selected: Option<usize>,
    /// Voxel spacing along (i, j, k) in mm.
    pub spacing_ijk: [f64; 3],
}

/// Runs the Smoothing effect: one Set modifier for the selected segment, or, with
/// `apply_to_all_visible_segments`, one per visible segment in display order
/// ([`Target::Segment`]), each smoothed from its own mask.
///
/// # Errors
/// See [`smooth_segment`]; a cancelled request.
pub fn smoothing(
    input: &SmoothingInput,
    params: &SmoothingParams,
    control: &Control,
) -> Result<EffectOutput, EffectError> {
    let mut output = EffectOutput::default();
    if params.smoothing_method == SmoothingMethod::JointTaubin {
        return joint(input, params, control);
    }
    if params.apply_to_all_visible_segments
        && params.smoothing_method != SmoothingMethod::JointTaubin
    {
        let visible: Vec<usize> = (0..input.segments.len())
            .filter(|&n| input.visible.get(n).copied().unwrap_or(false))
            .collect();
        for (done, &n) in visible.iter().enumerate() {
            control.progress(
                done as f64 / visible.len() as f64,
                "smoothing visible segments",
            );
            let mask =
                smooth_segment_with(input.segments[n].view(), input.spacing_ijk, params, control)?;
            output.modifiers.push(Modifier {
                target: Target::Segment(n),
                mode: ModificationMode::Set,
                mask,
                bypass_masking: false,
                overwrite: None,
            });
        }
        return Ok(output);
    }
    let mask = match input.selected {
        Some(n) => {
            smooth_segment_with(input.segments[n].view(), input.spacing_ijk, params, control)?
        }
        None => {
            // A new segment is empty: every method keeps it empty (joint smoothing still
            // says it is not supported).
            let shape = input.segments.first().map(|s| s.dim()).unwrap_or((0, 0, 0));
            smooth_segment_with(
                Array3::<u8>::zeros(shape).view(),
                input.spacing_ijk,
                params,
                control,
            )?
        }
    };
    output
        .modifiers
        .push(Modifier::selected(ModificationMode::Set, mask));
    Ok(output)
}

/// Joint smoothing, as Slicer's `smoothMultipleSegments`: the visible segments merged into
/// one label map (label = position among the visible ones + 1, later segments winning),
/// smoothed together by [`joint_smooth`], and each visible segment written back with Set
/// in display order under "overwrite visible segments" (the later one wins where two
/// smoothed segments overlap; hidden segments are not touched). A visible segment whose
/// surface vanished is cleared.
fn joint(
    input: &SmoothingInput,
    params: &SmoothingParams,
    control: &Control,
) -> Result<EffectOutput, EffectError> {
    let visible: Vec<usize> = (0..input.segments.len())
        .filter(|&n| input.visible.get(n).copied().unwrap_or(false))
        .collect();
    let mut output = EffectOutput::default();
    let Some(&first) = visible.first() else {
        // Slicer: "Smoothing operation skipped: there are no visible segments".
        return Ok(output);
    };
    let shape = input.segments[first].dim();
    let labels = crate::effects::flatten_masks(
        visible.iter().enumerate().map(|(p, &n)| {
            (
                input.segments[n].view(),
                (p + 1).min(u16::MAX as usize) as u16,
            )
        }),
        shape,
    );
    let smoothed = joint_smooth(labels.view(), params.joint_taubin_smoothing_factor, control)?;
    drop(labels);
    let mut by_label: std::collections::HashMap<u16, Array3<u8>> = smoothed.into_iter().collect();
    for (p, &n) in visible.iter().enumerate() {
        let label = (p + 1).min(u16::MAX as usize) as u16;
        let mask = by_label
            .remove(&label)
            .unwrap_or_else(|| Array3::zeros(shape));
        output.modifiers.push(Modifier {
            target: Target::Segment(n),
            mode: ModificationMode::Set,
            mask,
            bypass_masking: false,
            overwrite: Some(OverwriteMode::VisibleSegments),
        });
    }
    Ok(output)
}

/// The Smoothing effect in the catalog.
pub struct Smoothing;

impl Effect for Smoothing {
    fn spec(&self) -> EffectSpec {
        let methods = vec![
            ChoiceSpec::new(
                "MEDIAN",
                "Median",
                "Removes small details while keeping smooth contours mostly unchanged.",
            ),
            ChoiceSpec::new(
                "MORPHOLOGICAL_OPENING",
                "Opening (remove extrusions)",
                "Removes extrusions smaller than the kernel.",
            ),
            ChoiceSpec::new(
                "MORPHOLOGICAL_CLOSING",
                "Closing (fill holes)",
                "Fills sharp corners and holes smaller than the kernel.",
            ),
            ChoiceSpec::new(
                "GAUSSIAN",
                "Gaussian",
                "Smooths all contours; tends to shrink the segment.",
            ),
            ChoiceSpec::new(
                "JOINT_TAUBIN",
                "Joint smoothing",
                "Smooths all visible segments at once, keeping their interfaces watertight \
                 (not implemented by segkit yet).",
            )
            .needs(&[Input::VisibleSegments]),
        ];
        let method = ParamSpec::choice("SmoothingMethod", "Smoothing method", methods, "MEDIAN");
        let kernel = ParamSpec::double("KernelSizeMm", "Kernel size", "3")
            .help(
                "Diameter of the neighbourhood around each voxel; per axis it becomes an odd \
                 number of voxels, round((size / spacing + 1) / 2) * 2 - 1 (halves to even).",
            )
            .range(0.0, 1e6)
            .step(1.0)
            .unit("mm")
            .visible_when(
                "SmoothingMethod",
                &["MEDIAN", "MORPHOLOGICAL_OPENING", "MORPHOLOGICAL_CLOSING"],
            );
        let sigma = ParamSpec::double("GaussianStandardDeviationMm", "Standard deviation", "3")
            .help("Standard deviation of the Gaussian; higher values smooth more.")
            .range(0.0, 1e6)
            .step(1.0)
            .unit("mm")
            .visible_when("SmoothingMethod", &["GAUSSIAN"]);
        let factor = ParamSpec::double("JointTaubinSmoothingFactor", "Smoothing factor", "0.5")
            .help("Higher values smooth more (joint smoothing).")
            .range(0.01, 1.0)
            .step(0.01)
            .visible_when("SmoothingMethod", &["JOINT_TAUBIN"]);
        let all = ParamSpec::boolean(
            "ApplyToAllVisibleSegments",
            "Apply to visible segments",
            "0",
        )
        .help("Smooth every visible segment, each on its own, instead of the selected one.")
        .visible_when(
            "SmoothingMethod",
            &[
                "MEDIAN",
                "MORPHOLOGICAL_OPENING",
                "MORPHOLOGICAL_CLOSING",
                "GAUSSIAN",
            ],
        );
        let mut spec = EffectSpec::new(
            "Smoothing",
            "smoothing",
            "Smoothing",
            "Make segment boundaries smoother by removing extrusions and filling small holes \
             (median, opening, closing or Gaussian). Replaces the segment inside the editable area.",
        );
        // The visible segments are read with `ApplyToAllVisibleSegments`.
        spec.inputs = vec![Input::SelectedSegment, Input::VisibleSegments];
        spec.params = vec![method, kernel, sigma, factor, all];
        spec.long_running = true;
        spec
    }

    fn run(&self, request: &EffectRequest) -> Result<EffectOutput, EffectError> {
        let params = SmoothingParams::from_values(request.params)?;
        let input = SmoothingInput {
            segments: request.segments,
            visible: request.visible,
            selected: request.selected,
            spacing_ijk: request.spacing_ijk(),
        };
        if request.selected.is_none() && request.segments.is_empty() {
            // No segment at all: smooth an empty mask of the lattice's shape.
            let empty = [Array3::<u8>::zeros(request.shape)];
            let input = SmoothingInput {
                segments: &empty,
                visible: &[false],
                ..input
            };
            return smoothing(&input, &params, request.control);
        }
        smoothing(&input, &params, request.control)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(method: SmoothingMethod, kernel_mm: f64) -> SmoothingParams {
        SmoothingParams {
            smoothing_method: method,
            kernel_size_mm: kernel_mm,
            ..Default::default()
        }
    }

    #[test]
    fn kernel_sizes_round_halves_to_even_like_python() {
        let k = |mm: f64| kernel_size_voxels(mm, [1.0, 1.0, 1.0])[0];
        assert_eq!([2.0, 3.0, 4.0, 5.0, 6.0, 8.0].map(k), [3, 3, 3, 5, 7, 7]);
        assert_eq!(k(0.0), -1);
        assert_eq!(k(0.5), 1);
        // CTChest4: 3.05 x 3.05 x 10 mm.
        let ct = [3.046875953674319, 3.046875953674319, 9.999999999999995];
        assert_eq!(kernel_size_voxels(3.0, ct), [1, 1, 1]);
        assert_eq!(kernel_size_voxels(10.0, ct), [1, 3, 3]);
        assert_eq!(kernel_size_voxels(20.0, ct), [3, 7, 7]);
        // 40 / 9.999999999999995 is a hair above 4: 2.5000000000000004 rounds up.
        assert_eq!(kernel_size_voxels(40.0, ct)[0], 5);
    }

    #[test]
    fn defaults_are_slicers() {
        let p = SmoothingParams::default();
        assert_eq!(p.smoothing_method, SmoothingMethod::Median);
        assert_eq!(
            (p.kernel_size_mm, p.gaussian_standard_deviation_mm),
            (3.0, 3.0)
        );
        assert_eq!(p.joint_taubin_smoothing_factor, 0.5);
        assert!(!p.apply_to_all_visible_segments);
    }

    #[test]
    fn a_kernel_of_one_voxel_changes_nothing() {
        let seg = Array3::from_shape_fn((3, 4, 5), |(k, j, i)| u8::from((k + j * i) % 3 == 0));
        for m in [
            SmoothingMethod::Median,
            SmoothingMethod::MorphologicalOpening,
            SmoothingMethod::MorphologicalClosing,
        ] {
            // 3 mm on 3.05 mm voxels: 1 x 1 x 1.
            let out = smooth_segment(seg.view(), [3.05, 3.05, 10.0], &params(m, 3.0)).unwrap();
            assert_eq!(out, seg, "{m:?}");
        }
    }

    #[test]
    fn anisotropic_spacing_gives_anisotropic_kernels() {
        // A plate one voxel thick along k, 1 mm in-plane and 5 mm between slices: a 3 mm
        // opening is 1 x 3 x 3, so the plate survives; on 1 mm slices it would vanish.
        let mut seg = Array3::<u8>::zeros((3, 7, 7));
        for j in 0..7 {
            for i in 0..7 {
                seg[[1, j, i]] = 1;
            }
        }
        let opening = params(SmoothingMethod::MorphologicalOpening, 3.0);
        let out = smooth_segment(seg.view(), [1.0, 1.0, 5.0], &opening).unwrap();
        assert_eq!(out, seg);
        let out = smooth_segment(seg.view(), [1.0, 1.0, 1.0], &opening).unwrap();
        assert!(out.iter().all(|&v| v == 0));
    }

    #[test]
    fn gaussian_keeps_a_half_space_at_its_boundary() {
        // A half-space along i: the symmetric kernel gives >= 127 on the inside of the
        // step (the voxel at the step is 0.5 * 255 + a bit after truncation) and 0 far out.
        let seg = Array3::from_shape_fn((3, 3, 12), |(_, _, i)| u8::from(i >= 6));
        let mut p = params(SmoothingMethod::Gaussian, 3.0);
        p.gaussian_standard_deviation_mm = 1.0;
        let out = smooth_segment(seg.view(), [1.0, 1.0, 1.0], &p).unwrap();
        assert_eq!(out, seg);
    }

    #[test]
    fn joint_smoothing_writes_every_visible_segment_under_overwrite_visible() {
        let mut a = Array3::<u8>::zeros((16, 16, 16));
        a.slice_mut(ndarray::s![2..14, 2..14, 2..8]).fill(1);
        let mut b = Array3::<u8>::zeros((16, 16, 16));
        b.slice_mut(ndarray::s![2..14, 2..14, 8..14]).fill(1);
        let hidden = Array3::<u8>::ones((16, 16, 16));
        let segments = vec![a, hidden, b];
        let input = SmoothingInput {
            segments: &segments,
            visible: &[true, false, true],
            selected: Some(0),
            spacing_ijk: [1.0; 3],
        };
        let out = smoothing(
            &input,
            &params(SmoothingMethod::JointTaubin, 3.0),
            &Control::none(),
        )
        .unwrap();
        let targets: Vec<_> = out.modifiers.iter().map(|m| m.target.clone()).collect();
        assert_eq!(targets, vec![Target::Segment(0), Target::Segment(2)]);
        for m in &out.modifiers {
            assert_eq!(m.mode, ModificationMode::Set);
            assert_eq!(m.overwrite, Some(OverwriteMode::VisibleSegments));
            assert!(m.mask.iter().any(|&v| v != 0));
        }
    }

    #[test]
    fn joint_smoothing_and_empty_kernels_are_refused() {
        let seg = Array3::<u8>::ones((2, 2, 2));
        let e = smooth_segment(
            seg.view(),
            [1.0; 3],
            &params(SmoothingMethod::JointTaubin, 3.0),
        );
        assert!(matches!(e, Err(EffectError::Input(_))), "{e:?}");
        let e = smooth_segment(seg.view(), [1.0; 3], &params(SmoothingMethod::Median, 0.0))
            .unwrap_err();
        assert!(e.to_string().contains("KernelSizeMm"), "{e}");
    }

    #[test]
    fn visible_segments_each_get_a_set_modifier() {
        let a = Array3::from_shape_fn((1, 3, 3), |(_, j, i)| u8::from(j != 1 || i != 1));
        let b = Array3::<u8>::zeros((1, 3, 3));
        let segments = vec![a.clone(), b.clone(), a.clone()];
        let input = SmoothingInput {
            segments: &segments,
            visible: &[true, false, true],
            selected: Some(1),
            spacing_ijk: [1.0; 3],
        };
        let mut p = params(SmoothingMethod::Median, 3.0);
        p.apply_to_all_visible_segments = true;
        let out = smoothing(&input, &p, &Control::none()).unwrap();
        let targets: Vec<_> = out
            .modifiers
            .iter()
            .map(|m| (m.target.clone(), m.mode))
            .collect();
        assert_eq!(
            targets,
            vec![
                (Target::Segment(0), ModificationMode::Set),
                (Target::Segment(2), ModificationMode::Set)
            ]
        );
        // The hole is filled in each.
        assert!(out.modifiers.iter().all(|m| m.mask.iter().all(|&v| v == 1)));
    }
}
