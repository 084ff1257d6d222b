//! Threshold: the voxels whose source intensity lies in `[minimum, maximum]`.
//!
//! Reference: Slicer's `SegmentEditorThresholdEffect.py`, which runs
//! `vtkImageThreshold::ThresholdBetween(min, max)` on the aligned source volume and writes
//! the result with mode Set. Both bounds are **inclusive**. As in VTK, the bounds are first
//! converted to the source's voxel type: clamped to the type's range, then truncated toward
//! zero for integer types (a minimum of 10.5 on an integer image keeps 10; a maximum of
//! -20.5 keeps -20) and rounded to `f32` for `f32` images. A NaN voxel is never inside.
//!
//! Automatic bounds (Slicer's Auto button) come from [`super::auto_threshold`] on the
//! whole source volume and set one or both bounds according to [`AutoThresholdMode`].
//!
//! # Example
//! ```
//! use ndarray::Array3;
//! use segkit::effects::threshold::{threshold, ThresholdParams};
//! let ct = Array3::from_shape_vec((1, 1, 4), vec![-1000i16, -600, -400, 40]).unwrap();
//! let params = ThresholdParams { minimum_threshold: -1024.0, maximum_threshold: -500.0, ..Default::default() };
//! let out = threshold(ct.view(), &params).unwrap();
//! assert_eq!(out.modifiers[0].mask.as_slice().unwrap(), &[1, 1, 0, 0]);
//! ```

use super::auto_threshold::{auto_threshold, AutoThresholdError, AutoThresholdMethod};
use super::schema::{ChoiceSpec, EffectSpec, FromSource, Input, ParamSpec};
use super::{Effect, EffectError, EffectOutput, EffectRequest, ModificationMode, Modifier, Target};
use crate::volume::{Scalar, ScalarType};
use crate::with_volume;
use ndarray::{ArrayView3, Zip};

impl From<AutoThresholdError> for EffectError {
    fn from(e: AutoThresholdError) -> Self {
        match e {
            AutoThresholdError::NotSupported { .. } => EffectError::Unsupported(e.to_string()),
            _ => EffectError::Input(e.to_string()),
        }
    }
}

/// How an automatic threshold sets the bounds (Slicer's `AutoThresholdMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoThresholdMode {
    /// `[t, max]`: the bright side ("threshold above"), Slicer's default.
    #[default]
    SetLowerMax,
    /// `[min, t]`: the dark side.
    SetMinUpper,
    /// Only the minimum becomes `t`.
    SetLower,
    /// Only the maximum becomes `t`.
    SetUpper,
}

impl AutoThresholdMode {
    /// All modes, in Slicer's order.
    pub const ALL: [AutoThresholdMode; 4] = [
        AutoThresholdMode::SetLowerMax,
        AutoThresholdMode::SetMinUpper,
        AutoThresholdMode::SetLower,
        AutoThresholdMode::SetUpper,
    ];

    /// Slicer's parameter value.
    pub fn slicer_name(self) -> &'static str {
        match self {
            AutoThresholdMode::SetLowerMax => "SET_LOWER_MAX",
            AutoThresholdMode::SetMinUpper => "SET_MIN_UPPER",
            AutoThresholdMode::SetLower => "SET_LOWER",
            AutoThresholdMode::SetUpper => "SET_UPPER",
        }
    }

    /// The mode Slicer names `name`.
    pub fn from_slicer_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.slicer_name() == name)
    }
}

/// Parameters of the Threshold effect.
///
/// Slicer's initial bounds depend on the volume: `minimum = lo + 0.25 (hi - lo)` and
/// `maximum = hi` over the source's value range; [`ThresholdParams::initial`] gives them.
/// `Default` gives the same from an unknown range (0, 0).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ThresholdParams {
    /// `MinimumThreshold`, inclusive, in source units.
    pub minimum_threshold: f64,
    /// `MaximumThreshold`, inclusive, in source units.
    pub maximum_threshold: f64,
    /// When set, the bounds are first computed by this method (Slicer's Auto button):
    /// `AutoThresholdMethod` and `AutoThresholdMode`.
    pub auto: Option<(AutoThresholdMethod, AutoThresholdMode)>,
}

impl ThresholdParams {
    /// Slicer's initial bounds for a source whose values span `[lo, hi]`.
    pub fn initial(lo: f64, hi: f64) -> Self {
        ThresholdParams {
            minimum_threshold: lo + 0.25 * (hi - lo),
            maximum_threshold: hi,
            auto: None,
        }
    }
}

/// Runs the Threshold effect on `source` (`[k][j][i]`).
///
/// Returns one Set modifier for the selected segment, and reports the bounds used as
/// `MinimumThreshold` and `MaximumThreshold` (the automatic ones when `auto` is set).
///
/// # Errors
/// A NaN bound, or an automatic method that fails (an empty volume).
pub fn threshold<T: Scalar>(
    source: ArrayView3<T>,
    params: &ThresholdParams,
) -> Result<EffectOutput, EffectError> {
    let (mut lo, mut hi) = (params.minimum_threshold, params.maximum_threshold);
    if let Some((method, mode)) = params.auto {
        let t = auto_threshold(source, method)?;
        let (vmin, vmax) = value_range(source)
            .ok_or_else(|| EffectError::Input("automatic threshold on an empty volume".into()))?;
        match mode {
            AutoThresholdMode::SetLowerMax => (lo, hi) = (t, vmax),
            AutoThresholdMode::SetMinUpper => (lo, hi) = (vmin, t),
            AutoThresholdMode::SetLower => lo = t,
            AutoThresholdMode::SetUpper => hi = t,
        }
    }
    for (name, v) in [("MinimumThreshold", lo), ("MaximumThreshold", hi)] {
        if v.is_nan() {
            return Err(EffectError::Parameter {
                name: name.into(),
                reason: "is NaN".into(),
            });
        }
    }
    let (tlo, thi) = (to_voxel_type::<T>(lo), to_voxel_type::<T>(hi));
    let mask = Zip::from(&source).par_map_collect(|v| u8::from(*v >= tlo && *v <= thi));
    Ok(EffectOutput {
        modifiers: vec![Modifier {
            bypass_masking: false,
            overwrite: None,
            target: Target::Selected,
            mode: ModificationMode::Set,
            mask,
        }],
        reported: vec![
            ("MinimumThreshold".into(), lo),
            ("MaximumThreshold".into(), hi),
        ],
        volumes: Vec::new(),
    })
}

/// A bound converted to the voxel type as `vtkImageThreshold` converts it: clamped to the
/// type's range, then truncated toward zero (integers) or rounded (`f32`).
fn to_voxel_type<T: Scalar>(v: f64) -> T {
    let (tmin, tmax) = type_range(T::TYPE);
    let clamped = v.clamp(tmin, tmax);
    if T::TYPE.is_float() {
        T::from_f64(clamped)
    } else {
        T::from_f64(clamped.trunc())
    }
}

fn type_range(t: ScalarType) -> (f64, f64) {
    match t {
        ScalarType::U8 => (0.0, u8::MAX as f64),
        ScalarType::I8 => (i8::MIN as f64, i8::MAX as f64),
        ScalarType::U16 => (0.0, u16::MAX as f64),
        ScalarType::I16 => (i16::MIN as f64, i16::MAX as f64),
        ScalarType::U32 => (0.0, u32::MAX as f64),
        ScalarType::I32 => (i32::MIN as f64, i32::MAX as f64),
        ScalarType::U64 => (0.0, u64::MAX as f64),
        ScalarType::I64 => (i64::MIN as f64, i64::MAX as f64),
        ScalarType::F32 => (f32::MIN as f64, f32::MAX as f64),
        ScalarType::F64 => (f64::MIN, f64::MAX),
    }
}

/// Smallest and largest value (NaN ignored), in one parallel pass.
pub fn value_range<T: Scalar>(source: ArrayView3<T>) -> Option<(f64, f64)> {
    use rayon::prelude::*;
    let slices: Vec<_> = source.outer_iter().collect();
    slices
        .par_iter()
        .map(|s| {
            s.iter().fold(None, |acc: Option<(f64, f64)>, v| {
                let v = v.to_f64();
                if v.is_nan() {
                    return acc;
                }
                Some(match acc {
                    None => (v, v),
                    Some((a, b)) => (a.min(v), b.max(v)),
                })
            })
        })
        .reduce(
            || None,
            |a, b| match (a, b) {
                (None, x) | (x, None) => x,
                (Some((a0, a1)), Some((b0, b1))) => Some((a0.min(b0), a1.max(b1))),
            },
        )
}

/// The Threshold effect in the catalog.
pub struct Threshold;

impl Effect for Threshold {
    fn spec(&self) -> EffectSpec {
        let mut min = ParamSpec::double("MinimumThreshold", "Minimum", "0")
            .help("Voxels with a source value of at least this are included (inclusive).");
        min.default_from_source = Some(FromSource::QuarterRange);
        min.range_from_source = true;
        let mut max = ParamSpec::double("MaximumThreshold", "Maximum", "0")
            .help("Voxels with a source value of at most this are included (inclusive).");
        max.default_from_source = Some(FromSource::Maximum);
        max.range_from_source = true;
        let auto = ParamSpec::boolean("AutoThreshold", "Automatic threshold", "0").help(
            "Compute the bounds with the automatic method before applying, as Slicer's \
             Auto button does; the bounds used are reported back.",
        );
        let methods = AutoThresholdMethod::ALL
            .iter()
            .map(|m| ChoiceSpec::new(m.slicer_name(), m.slicer_name(), ""))
            .collect();
        let method = ParamSpec::choice("AutoThresholdMethod", "Method", methods, "OTSU")
            .help("Histogram method (ITK, 64 bins over the whole source volume).")
            .visible_when("AutoThreshold", &["1"]);
        let modes = vec![
            ChoiceSpec::new(
                "SET_LOWER_MAX",
                "Threshold above",
                "[t, maximum]: the bright side.",
            ),
            ChoiceSpec::new(
                "SET_MIN_UPPER",
                "Threshold below",
                "[minimum, t]: the dark side.",
            ),
            ChoiceSpec::new("SET_LOWER", "Set lower", "Only the minimum becomes t."),
            ChoiceSpec::new("SET_UPPER", "Set upper", "Only the maximum becomes t."),
        ];
        let mode = ParamSpec::choice("AutoThresholdMode", "Mode", modes, "SET_LOWER_MAX")
            .visible_when("AutoThreshold", &["1"]);
        let mut spec = EffectSpec::new(
            "Threshold",
            "threshold",
            "Threshold",
            "Fill the segment with the voxels whose source intensity lies between the minimum \
             and the maximum (both inclusive). Replaces the segment inside the editable area.",
        );
        spec.inputs = vec![Input::SourceVolume];
        spec.params = vec![min, max, auto, method, mode];
        spec.reported = vec![
            (
                "MinimumThreshold",
                "The minimum used (the automatic one when requested).",
            ),
            ("MaximumThreshold", "The maximum used."),
        ];
        spec.intensity_range = Some(("MinimumThreshold", "MaximumThreshold"));
        spec.auto_range = Some("AutoThreshold");
        spec
    }

    fn run(&self, request: &EffectRequest) -> Result<EffectOutput, EffectError> {
        let source = request.source("Threshold")?;
        let p = request.params;
        let (minimum_threshold, maximum_threshold) = match (
            p.given_double("MinimumThreshold")?,
            p.given_double("MaximumThreshold")?,
        ) {
            (Some(lo), Some(hi)) => (lo, hi),
            (lo, hi) => {
                // The source's range is needed only for a bound left to its default.
                let (vlo, vhi) =
                    with_volume!(source, v => value_range(v.data.view())).unwrap_or((0.0, 0.0));
                let i = ThresholdParams::initial(vlo, vhi);
                (
                    lo.unwrap_or(i.minimum_threshold),
                    hi.unwrap_or(i.maximum_threshold),
                )
            }
        };
        let auto = if p.boolean("AutoThreshold")? {
            Some((
                p.choice("AutoThresholdMethod", AutoThresholdMethod::from_slicer_name)?,
                p.choice("AutoThresholdMode", AutoThresholdMode::from_slicer_name)?,
            ))
        } else {
            None
        };
        let params = ThresholdParams {
            minimum_threshold,
            maximum_threshold,
            auto,
        };
        with_volume!(source, v => threshold(v.data.view(), &params))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    fn run<T: Scalar>(values: Vec<T>, lo: f64, hi: f64) -> Vec<u8> {
        let n = values.len();
        let a = Array3::from_shape_vec((1, 1, n), values).unwrap();
        let p = ThresholdParams {
            minimum_threshold: lo,
            maximum_threshold: hi,
            auto: None,
        };
        threshold(a.view(), &p).unwrap().modifiers[0]
            .mask
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn bounds_are_inclusive() {
        assert_eq!(run(vec![1i16, 2, 3, 4, 5], 2.0, 4.0), vec![0, 1, 1, 1, 0]);
        assert_eq!(
            run(vec![1.0f32, 2.0, 2.5, 4.0, 4.5], 2.0, 4.0),
            vec![0, 1, 1, 1, 0]
        );
    }

    #[test]
    fn fractional_bounds_truncate_toward_zero_on_integer_images() {
        // VTK casts 10.5 to 10 and -20.5 to -20.
        assert_eq!(run(vec![9i32, 10, 11], 10.5, 100.0), vec![0, 1, 1]);
        assert_eq!(run(vec![-21i32, -20, -19], -100.0, -20.5), vec![1, 1, 0]);
        // On a float image the bounds are exact.
        assert_eq!(run(vec![10.0f32, 10.5, 11.0], 10.5, 100.0), vec![0, 1, 1]);
    }

    #[test]
    fn bounds_outside_the_type_are_clamped() {
        assert_eq!(run(vec![0u8, 128, 255], -5.0, 1e9), vec![1, 1, 1]);
        assert_eq!(run(vec![0u8, 255], 300.0, 400.0), vec![0, 1]);
    }

    #[test]
    fn nan_voxels_are_outside_and_nan_bounds_are_refused() {
        assert_eq!(run(vec![f32::NAN, 1.0], -1e9, 1e9), vec![0, 1]);
        let a = Array3::<i16>::zeros((1, 1, 1));
        let p = ThresholdParams {
            minimum_threshold: f64::NAN,
            ..Default::default()
        };
        assert!(threshold(a.view(), &p).is_err());
    }

    #[test]
    fn initial_bounds_are_a_quarter_up_the_range() {
        let p = ThresholdParams::initial(-1000.0, 3000.0);
        assert_eq!((p.minimum_threshold, p.maximum_threshold), (0.0, 3000.0));
    }
}
