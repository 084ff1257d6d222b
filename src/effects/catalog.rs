//! The list of effects, and running one by name with Slicer-named string parameters.
//!
//! This is what the engine's `ListEffects` and `ApplyEffect`, and the command line's
//! `segkit effects` and `segkit apply`, share. Each effect is one file with a unit struct
//! implementing [`Effect`]; adding an effect means writing that file and listing the
//! struct in [`EFFECTS`]. The Slicer extension builds its widgets from the schema.

use super::auto_complete::AutoComplete;
use super::masking::Masking;
use super::{
    check_point, Control, Effect, EffectError, EffectOutput, EffectRequest, EffectSpec, ParamValues,
};
use crate::volume::{AnyVolume, Geometry};
use ndarray::Array3;
use std::collections::BTreeMap;
use std::sync::OnceLock;

pub use super::schema::{ChoiceSpec, FromSource, Input, ParamSpec, ParamType};

/// Every effect segkit implements, in the order the user interface lists them.
pub static EFFECTS: &[&dyn Effect] = &[
    &super::threshold::Threshold,
    &super::paint::Paint,
    &super::paint::Erase,
    &super::level_tracing::LevelTracing,
    &super::margin::Margin,
    &super::hollow::Hollow,
    &super::smoothing::Smoothing,
    &super::islands::Islands,
    &super::logical::Logical,
    &super::mask_volume::MaskVolume,
    &super::fill_between_slices::FillBetweenSlices,
    &super::flood_filling::FloodFilling,
    &super::grow_from_seeds::GrowFromSeeds,
    &super::local_threshold::LocalThreshold,
    &super::watershed::Watershed,
    &super::fast_marching::FastMarching,
    &super::auto_lungs::AutoLungs,
    &super::boundary_points::BoundaryPoints,
];

/// The effects with their schemas, built once.
fn registry() -> &'static [(EffectSpec, &'static dyn Effect)] {
    static REGISTRY: OnceLock<Vec<(EffectSpec, &'static dyn Effect)>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        EFFECTS
            .iter()
            .map(|e| {
                let mut spec = e.spec();
                spec.preview = e.auto_complete().is_some();
                (spec, *e)
            })
            .collect()
    })
}

/// The schemas of every effect.
pub fn effects() -> Vec<EffectSpec> {
    registry().iter().map(|(s, _)| s.clone()).collect()
}

/// The effect named `name` (Slicer's name or the command-line name, any case).
///
/// # Errors
/// An unknown name; the message lists the effects.
pub fn find(name: &str) -> Result<EffectSpec, EffectError> {
    lookup(name).map(|(s, _)| s.clone())
}

fn lookup(name: &str) -> Result<&'static (EffectSpec, &'static dyn Effect), EffectError> {
    let wanted = name.to_ascii_lowercase();
    let all = registry();
    all.iter()
        .find(|(s, _)| s.name.to_ascii_lowercase() == wanted || s.cli_name == wanted)
        .ok_or_else(|| {
            EffectError::Input(format!(
                "unknown effect {name:?}; the effects are: {}",
                all.iter()
                    .map(|(s, _)| s.cli_name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// The auto-complete effect named `name`, for a preview session.
///
/// # Errors
/// An unknown effect, or one that has no preview.
pub fn find_auto_complete(
    name: &str,
) -> Result<(EffectSpec, &'static dyn AutoComplete), EffectError> {
    let (spec, effect) = lookup(name)?;
    let auto = effect.auto_complete().ok_or_else(|| {
        let with: Vec<&str> = registry()
            .iter()
            .filter(|(s, _)| s.preview)
            .map(|(s, _)| s.name)
            .collect();
        EffectError::Input(format!(
            "{} has no preview; the effects with one are: {}",
            spec.name,
            if with.is_empty() {
                "none".to_string()
            } else {
                with.join(", ")
            }
        ))
    })?;
    Ok((spec.clone(), auto))
}

/// The inputs of a request before they are checked: what the engine and the command
/// line assemble.
#[derive(Debug, Clone, Copy)]
pub struct RunInput<'a> {
    /// The source volume; its lattice is the reference when present.
    pub source: Option<&'a AnyVolume>,
    /// The reference lattice's geometry (the source's when there is one).
    pub geometry: &'a Geometry,
    /// The segments as 0/1 masks, in display order.
    pub segments: &'a [Array3<u8>],
    pub visible: &'a [bool],
    /// One id per segment.
    pub segment_ids: &'a [String],
    pub selected: Option<usize>,
    /// Clicked voxels `[k, j, i]`.
    pub points_kji: &'a [[usize; 3]],
    /// Parameters by Slicer's names; missing ones take their defaults.
    pub parameters: &'a BTreeMap<String, String>,
    pub control: &'a Control,
    /// The masking settings, when known (see [`EffectRequest::masking`]).
    pub masking: Option<&'a Masking>,
}

/// Runs the effect named `name` on `input`, after checking the parameters against its
/// schema and the inputs against each other.
///
/// # Errors
/// An unknown effect or parameter, a value that does not parse or is out of range (the
/// message names the parameter, the accepted values and the value given), inputs that
/// do not fit together, a missing input, or the effect's own errors.
pub fn run(name: &str, input: &RunInput) -> Result<EffectOutput, EffectError> {
    let (spec, effect) = lookup(name)?;
    let params = ParamValues::new(spec, input.parameters)?;
    let shape = reference_shape(input)?;
    for p in &spec.params {
        if p.kind == ParamType::Segment {
            let id = params.raw(p.name)?;
            if !id.is_empty() && !input.segment_ids.iter().any(|s| s == id) {
                return Err(EffectError::Parameter {
                    name: p.name.into(),
                    reason: format!("no segment has the id {id:?}"),
                });
            }
        }
    }
    if spec.inputs.contains(&Input::SourceVolume) && input.source.is_none() {
        return Err(EffectError::Input(format!(
            "{} needs a source volume",
            spec.name
        )));
    }
    let request = EffectRequest {
        source: input.source,
        geometry: input.geometry,
        shape,
        segments: input.segments,
        visible: input.visible,
        segment_ids: input.segment_ids,
        selected: input.selected,
        points_kji: input.points_kji,
        params: &params,
        control: input.control,
        masking: input.masking,
    };
    input.control.check()?;
    effect.run(&request)
}

/// The reference lattice's shape, checked across the inputs.
fn reference_shape(input: &RunInput) -> Result<(usize, usize, usize), EffectError> {
    let from_source = input.source.map(|s| {
        let [ni, nj, nk] = s.size_ijk();
        (nk, nj, ni)
    });
    let shape = from_source
        .or_else(|| input.segments.first().map(|s| s.dim()))
        .ok_or_else(|| {
            EffectError::Input("no source volume and no segment: nothing to work on".into())
        })?;
    if let Some(bad) = input.segments.iter().find(|s| s.dim() != shape) {
        return Err(EffectError::Input(format!(
            "a segment has shape {:?} (k, j, i) but the reference lattice is {shape:?}",
            bad.dim()
        )));
    }
    if input.visible.len() != input.segments.len()
        || input.segment_ids.len() != input.segments.len()
    {
        return Err(EffectError::Input(
            "one visibility flag and one id per segment are needed".into(),
        ));
    }
    if let Some(n) = input.selected {
        if n >= input.segments.len() {
            return Err(EffectError::Input(format!(
                "selected segment {n} does not exist ({} segments)",
                input.segments.len()
            )));
        }
    }
    for &p in input.points_kji {
        check_point(p, shape)?;
    }
    Ok(shape)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::volume::{Geometry, Volume};

    pub(crate) fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Runs `effect` on a source and segments with `pairs`, all segments visible.
    pub(crate) fn run_on(
        effect: &str,
        source: Option<&AnyVolume>,
        segments: &[Array3<u8>],
        selected: Option<usize>,
        points: &[[usize; 3]],
        pairs: &[(&str, &str)],
    ) -> Result<EffectOutput, EffectError> {
        let visible = vec![true; segments.len()];
        let ids: Vec<String> = (0..segments.len()).map(|n| format!("s{n}")).collect();
        let p = params(pairs);
        let g = source.map(|s| *s.geometry()).unwrap_or_default();
        run(
            effect,
            &RunInput {
                source,
                geometry: &g,
                segments,
                visible: &visible,
                segment_ids: &ids,
                selected,
                points_kji: points,
                parameters: &p,
                control: &Control::none(),
                masking: None,
            },
        )
    }

    #[test]
    fn effects_are_found_by_either_name() {
        assert_eq!(find("Islands").unwrap().cli_name, "islands");
        assert_eq!(find("threshold").unwrap().name, "Threshold");
        let err = find("no-such").unwrap_err().to_string();
        assert!(
            err.contains("threshold") && err.contains("islands"),
            "{err}"
        );
    }

    #[test]
    fn names_are_unique_and_cli_names_are_kebab_case() {
        let all = effects();
        for (n, e) in all.iter().enumerate() {
            assert!(
                e.cli_name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '-'),
                "{}",
                e.cli_name
            );
            assert!(all[n + 1..]
                .iter()
                .all(|o| o.name != e.name && o.cli_name != e.cli_name));
            for p in &e.params {
                assert_eq!(e.params.iter().filter(|q| q.name == p.name).count(), 1);
            }
        }
    }

    /// A declared intensity range names two double parameters with the source's range, and
    /// an automatic range a boolean parameter of an effect that reports both bounds.
    #[test]
    fn intensity_ranges_name_declared_parameters() {
        let mut ranges = 0;
        for e in effects() {
            if let Some((lo, hi)) = e.intensity_range {
                ranges += 1;
                for name in [lo, hi] {
                    let p = e
                        .param(name)
                        .unwrap_or_else(|| panic!("{}: {name}", e.name));
                    assert!(matches!(p.kind, ParamType::Double), "{}: {name}", e.name);
                    assert!(p.range_from_source, "{}: {name}", e.name);
                }
            }
            if let Some(auto) = e.auto_range {
                let (lo, hi) = e.intensity_range.expect("an automatic range needs a range");
                assert!(matches!(
                    e.param(auto).map(|p| &p.kind),
                    Some(ParamType::Boolean)
                ));
                for name in [lo, hi] {
                    assert!(e.reported.iter().any(|r| r.0 == name), "{}: {name}", e.name);
                }
            }
        }
        assert_eq!(ranges, 2, "Threshold and Local threshold");
    }

    /// Every effect runs with its defaults and with each value of each choice on a small
    /// volume without reading an undeclared parameter: a schema and its `run` agree.
    #[test]
    fn every_effect_reads_only_declared_parameters() {
        let data = Array3::from_shape_fn((4, 5, 6), |(k, j, i)| ((k * 7 + j * 3 + i) % 11) as i16);
        let source: AnyVolume = Volume::new(data, Geometry::default()).into();
        let mut seg = Array3::<u8>::zeros((4, 5, 6));
        seg[[1, 2, 3]] = 1;
        seg[[2, 2, 3]] = 1;
        let mut other = Array3::<u8>::zeros((4, 5, 6));
        other[[1, 1, 1]] = 1;
        let segments = vec![seg, other];
        for spec in effects() {
            let mut cases = vec![vec![]];
            for p in &spec.params {
                if let ParamType::Choice(choices) = &p.kind {
                    for c in choices {
                        cases.push(vec![(p.name, c.value)]);
                    }
                }
                if p.kind == ParamType::Segment {
                    cases.push(vec![(p.name, "s1")]);
                }
            }
            for case in cases {
                let r = run_on(
                    spec.name,
                    Some(&source),
                    &segments,
                    Some(0),
                    &[[1, 2, 3]],
                    &case,
                );
                if let Err(e) = r {
                    assert!(
                        !matches!(e, EffectError::Internal(_)),
                        "{} {case:?}: {e}",
                        spec.name
                    );
                }
            }
        }
    }

    #[test]
    fn bad_parameters_are_named() {
        let seg = vec![Array3::<u8>::ones((1, 1, 3))];
        let check = |p: &[(&str, &str)]| {
            run_on("islands", None, &seg, Some(0), &[], p)
                .unwrap_err()
                .to_string()
        };
        assert!(check(&[("MinimumSise", "3")]).contains("MinimumSise"));
        assert!(check(&[("MinimumSize", "-3")]).contains("outside"));
        assert!(check(&[("MinimumSize", "x")]).contains("not an integer"));
        let e = check(&[("Operation", "KEEP")]);
        assert!(e.contains("KEEP_LARGEST_ISLAND"), "{e}");
    }

    #[test]
    fn a_cancelled_request_does_not_run() {
        let seg = vec![Array3::<u8>::ones((1, 1, 3))];
        let control = Control::none();
        control.cancel();
        let g = Geometry::default();
        let p = params(&[]);
        let r = run(
            "islands",
            &RunInput {
                source: None,
                geometry: &g,
                segments: &seg,
                visible: &[true],
                segment_ids: &["a".into()],
                selected: Some(0),
                points_kji: &[],
                parameters: &p,
                control: &control,
                masking: None,
            },
        );
        assert_eq!(r, Err(EffectError::Cancelled));
    }

    #[test]
    fn threshold_defaults_come_from_the_source_range() {
        let data = Array3::from_shape_vec((1, 1, 5), vec![0i16, 10, 25, 50, 100]).unwrap();
        let source: AnyVolume = Volume::new(data, Geometry::default()).into();
        let out = run_on("threshold", Some(&source), &[], None, &[], &[]).unwrap();
        // Initial bounds [25, 100].
        assert_eq!(out.modifiers[0].mask.as_slice().unwrap(), &[0, 0, 1, 1, 1]);
    }

    #[test]
    fn islands_on_a_new_segment_changes_nothing_visible() {
        let seg = vec![Array3::<u8>::ones((1, 1, 3))];
        let out = run_on("islands", None, &seg, None, &[], &[("MinimumSize", "0")]).unwrap();
        assert!(out.modifiers[0].mask.iter().all(|&v| v == 0));
    }
}
