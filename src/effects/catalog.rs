//! The list of effects with their parameter schemas, and running an effect by name with
//! Slicer-named string parameters.
//!
//! This is what the engine's `ListEffects` and `ApplyEffect`, and the command line's
//! `segkit effects` and `segkit apply`, share: adding an effect means adding its file and
//! one entry here; the Slicer extension builds its widgets from the schema.

use super::auto_threshold::AutoThresholdMethod;
use super::islands::{islands, IslandOperation, IslandsInput, IslandsParams};
use super::threshold::{threshold, value_range, AutoThresholdMode, ThresholdParams};
use super::{EffectError, EffectOutput};
use crate::volume::AnyVolume;
use crate::with_volume;
use ndarray::{Array3, ArrayView3, Zip};
use std::collections::BTreeMap;

/// What an effect needs besides its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    SourceVolume,
    SelectedSegment,
    VisibleSegments,
    Point,
}

/// The type of a parameter's value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamType {
    Double,
    Integer,
    /// `0` / `1`, as Slicer stores booleans.
    Boolean,
    /// One of these values.
    Choice(Vec<ChoiceSpec>),
}

/// One value of a choice parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceSpec {
    pub value: &'static str,
    pub title: &'static str,
    pub help: &'static str,
    /// Inputs this choice needs on top of the effect's.
    pub inputs: Vec<Input>,
}

/// A default or range that depends on the source volume's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromSource {
    Minimum,
    Maximum,
    /// `minimum + 0.25 (maximum - minimum)`: Slicer's initial minimum threshold.
    QuarterRange,
}

/// One parameter: Slicer's name, type, default and range.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub name: &'static str,
    pub title: &'static str,
    pub help: &'static str,
    pub kind: ParamType,
    pub default: &'static str,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub step: Option<f64>,
    pub unit: &'static str,
    pub default_from_source: Option<FromSource>,
    pub range_from_source: bool,
    /// Shown only when this parameter has one of these values.
    pub visible_when: Option<(&'static str, Vec<&'static str>)>,
}

impl ParamSpec {
    fn new(
        name: &'static str,
        title: &'static str,
        kind: ParamType,
        default: &'static str,
    ) -> Self {
        ParamSpec {
            name,
            title,
            help: "",
            kind,
            default,
            minimum: None,
            maximum: None,
            step: None,
            unit: "",
            default_from_source: None,
            range_from_source: false,
            visible_when: None,
        }
    }
}

/// An effect: its names, help, inputs and parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectSpec {
    /// Slicer's effect name ("Threshold").
    pub name: &'static str,
    /// Lower-case kebab form for the command line ("threshold").
    pub cli_name: &'static str,
    pub title: &'static str,
    pub help: &'static str,
    pub inputs: Vec<Input>,
    pub params: Vec<ParamSpec>,
    pub long_running: bool,
    /// Values reported back, with their meaning.
    pub reported: Vec<(&'static str, &'static str)>,
}

/// Every effect segkit implements.
pub fn effects() -> Vec<EffectSpec> {
    vec![threshold_spec(), islands_spec()]
}

/// The effect named `name` (Slicer's name or the command-line name, any case).
pub fn find(name: &str) -> Result<EffectSpec, EffectError> {
    let all = effects();
    let wanted = name.to_ascii_lowercase();
    all.iter()
        .find(|e| e.name.to_ascii_lowercase() == wanted || e.cli_name == wanted)
        .cloned()
        .ok_or_else(|| {
            EffectError::Input(format!(
                "unknown effect {name:?}; the effects are: {}",
                all.iter()
                    .map(|e| e.cli_name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

fn threshold_spec() -> EffectSpec {
    let mut min = ParamSpec::new("MinimumThreshold", "Minimum", ParamType::Double, "0");
    min.help = "Voxels with a source value of at least this are included (inclusive).";
    min.default_from_source = Some(FromSource::QuarterRange);
    min.range_from_source = true;
    let mut max = ParamSpec::new("MaximumThreshold", "Maximum", ParamType::Double, "0");
    max.help = "Voxels with a source value of at most this are included (inclusive).";
    max.default_from_source = Some(FromSource::Maximum);
    max.range_from_source = true;
    let mut auto = ParamSpec::new(
        "AutoThreshold",
        "Automatic threshold",
        ParamType::Boolean,
        "0",
    );
    auto.help = "Compute the bounds with the automatic method before applying, as Slicer's \
                 Auto button does; the bounds used are reported back.";
    let method_choices = AutoThresholdMethod::ALL
        .iter()
        .map(|m| ChoiceSpec {
            value: m.slicer_name(),
            title: m.slicer_name(),
            help: "",
            inputs: vec![],
        })
        .collect();
    let mut method = ParamSpec::new(
        "AutoThresholdMethod",
        "Method",
        ParamType::Choice(method_choices),
        "OTSU",
    );
    method.help = "Histogram method (ITK, 64 bins over the whole source volume).";
    method.visible_when = Some(("AutoThreshold", vec!["1"]));
    let mode_choices = vec![
        choice(
            "SET_LOWER_MAX",
            "Threshold above",
            "[t, maximum]: the bright side.",
        ),
        choice(
            "SET_MIN_UPPER",
            "Threshold below",
            "[minimum, t]: the dark side.",
        ),
        choice("SET_LOWER", "Set lower", "Only the minimum becomes t."),
        choice("SET_UPPER", "Set upper", "Only the maximum becomes t."),
    ];
    let mut mode = ParamSpec::new(
        "AutoThresholdMode",
        "Mode",
        ParamType::Choice(mode_choices),
        "SET_LOWER_MAX",
    );
    mode.visible_when = Some(("AutoThreshold", vec!["1"]));
    EffectSpec {
        name: "Threshold",
        cli_name: "threshold",
        title: "Threshold",
        help: "Fill the segment with the voxels whose source intensity lies between the minimum \
               and the maximum (both inclusive). Replaces the segment inside the editable area.",
        inputs: vec![Input::SourceVolume],
        params: vec![min, max, auto, method, mode],
        long_running: false,
        reported: vec![
            (
                "MinimumThreshold",
                "The minimum used (the automatic one when requested).",
            ),
            ("MaximumThreshold", "The maximum used."),
        ],
    }
}

fn choice(value: &'static str, title: &'static str, help: &'static str) -> ChoiceSpec {
    ChoiceSpec {
        value,
        title,
        help,
        inputs: vec![],
    }
}

fn islands_spec() -> EffectSpec {
    let op = |o: IslandOperation, title, help, point: bool| ChoiceSpec {
        value: o.slicer_name(),
        title,
        help,
        inputs: match o {
            // Floods the merged label map of the visible segments.
            IslandOperation::AddSelectedIsland => vec![Input::Point, Input::VisibleSegments],
            _ if point => vec![Input::Point],
            _ => vec![],
        },
    };
    let operations = vec![
        op(
            IslandOperation::KeepLargestIsland,
            "Keep largest island",
            "Keep only the largest island; the segment is cleared when it is below the minimum size.",
            false,
        ),
        op(
            IslandOperation::RemoveSmallIslands,
            "Remove small islands",
            "Remove the islands smaller than the minimum size.",
            false,
        ),
        op(
            IslandOperation::SplitIslandsToSegments,
            "Split islands to segments",
            "Make a segment of each island of at least the minimum size, ordered by size.",
            false,
        ),
        op(
            IslandOperation::KeepSelectedIsland,
            "Keep selected island",
            "Click an island to keep it and remove the others.",
            true,
        ),
        op(
            IslandOperation::RemoveSelectedIsland,
            "Remove selected island",
            "Click an island to remove it.",
            true,
        ),
        op(
            IslandOperation::AddSelectedIsland,
            "Add selected island",
            "Click a region (a hole, another segment's island) to add it to the segment.",
            true,
        ),
    ];
    let operation = ParamSpec::new(
        "Operation",
        "Operation",
        ParamType::Choice(operations),
        "KEEP_LARGEST_ISLAND",
    );
    let mut size = ParamSpec::new("MinimumSize", "Minimum size", ParamType::Integer, "1000");
    size.help =
        "Islands of fewer voxels than this are removed (an island of exactly this size is kept).";
    size.minimum = Some(0.0);
    size.maximum = Some(i32::MAX as f64);
    size.step = Some(1.0);
    size.unit = "voxels";
    size.visible_when = Some((
        "Operation",
        vec![
            "KEEP_LARGEST_ISLAND",
            "REMOVE_SMALL_ISLANDS",
            "SPLIT_ISLANDS_TO_SEGMENTS",
        ],
    ));
    EffectSpec {
        name: "Islands",
        cli_name: "islands",
        title: "Islands",
        help: "Edit the islands (6-connected components) of the selected segment.",
        inputs: vec![Input::SelectedSegment],
        params: vec![operation, size],
        long_running: false,
        reported: vec![
            ("islands", "Number of islands in the segment."),
            (
                "islands_kept",
                "Number of islands of at least the minimum size.",
            ),
            (
                "island_voxels",
                "Size of the clicked island (click operations).",
            ),
        ],
    }
}

/// Everything an effect may use, on the reference lattice (`[k][j][i]`).
#[derive(Debug, Clone, Copy)]
pub struct EffectRequest<'a> {
    /// The source volume, aligned to the reference lattice.
    pub source: Option<&'a AnyVolume>,
    /// The segments as 0/1 masks, in display order.
    pub segments: &'a [Array3<u8>],
    /// Visibility of each segment.
    pub visible: &'a [bool],
    /// Index of the selected segment in `segments`; `None` for a new, empty segment.
    pub selected: Option<usize>,
    /// The clicked voxel `[k, j, i]`.
    pub point_kji: Option<[usize; 3]>,
    /// Parameters by Slicer's names; missing ones take their defaults.
    pub parameters: &'a BTreeMap<String, String>,
}

/// Runs effect `spec` on `request`.
///
/// # Errors
/// An unknown parameter or a value that does not parse or is out of range (the message
/// names the parameter and the accepted values), or a missing input.
pub fn run(spec: &EffectSpec, request: &EffectRequest) -> Result<EffectOutput, EffectError> {
    let params = Params::new(spec, request.parameters)?;
    let shape = reference_shape(request)?;
    match spec.name {
        "Threshold" => {
            let source = request
                .source
                .ok_or_else(|| missing(spec, "a source volume"))?;
            // The source's range is needed only for a bound left to its default.
            let initial = || {
                let (lo, hi) =
                    with_volume!(source, v => value_range(v.data.view())).unwrap_or((0.0, 0.0));
                ThresholdParams::initial(lo, hi)
            };
            let minimum = params.double("MinimumThreshold")?;
            let maximum = params.double("MaximumThreshold")?;
            let (minimum_threshold, maximum_threshold) = match (minimum, maximum) {
                (Some(lo), Some(hi)) => (lo, hi),
                (lo, hi) => {
                    let i = initial();
                    (
                        lo.unwrap_or(i.minimum_threshold),
                        hi.unwrap_or(i.maximum_threshold),
                    )
                }
            };
            let p = ThresholdParams {
                minimum_threshold,
                maximum_threshold,
                auto: if params.boolean("AutoThreshold")? {
                    let method = params.choice("AutoThresholdMethod")?;
                    let mode = params.choice("AutoThresholdMode")?;
                    Some((
                        AutoThresholdMethod::from_slicer_name(&method)
                            .ok_or_else(|| bad_choice("AutoThresholdMethod", &method))?,
                        AutoThresholdMode::from_slicer_name(&mode)
                            .ok_or_else(|| bad_choice("AutoThresholdMode", &mode))?,
                    ))
                } else {
                    None
                },
            };
            with_volume!(source, v => threshold(v.data.view(), &p))
        }
        "Islands" => {
            let op = params.choice("Operation")?;
            let p = IslandsParams {
                operation: IslandOperation::from_slicer_name(&op)
                    .ok_or_else(|| bad_choice("Operation", &op))?,
                minimum_size: params.integer("MinimumSize")?.max(0) as u64,
            };
            let empty;
            let selected: ArrayView3<u8> = match request.selected {
                Some(n) => request.segments[n].view(),
                None => {
                    empty = Array3::<u8>::zeros(shape);
                    empty.view()
                }
            };
            let merged = (p.operation == IslandOperation::AddSelectedIsland)
                .then(|| merged_visible(request, shape));
            let input = IslandsInput {
                selected,
                point_kji: request.point_kji,
                visible_labels: merged.as_ref().map(|m| m.view()),
            };
            islands(&input, &p)
        }
        other => Err(EffectError::Unsupported(format!("effect {other}"))),
    }
}

/// The reference lattice's shape, checked across the inputs.
fn reference_shape(request: &EffectRequest) -> Result<(usize, usize, usize), EffectError> {
    let from_source = request.source.map(|s| {
        let [ni, nj, nk] = s.size_ijk();
        (nk, nj, ni)
    });
    let shape = from_source
        .or_else(|| request.segments.first().map(|s| s.dim()))
        .ok_or_else(|| {
            EffectError::Input("no source volume and no segment: nothing to work on".into())
        })?;
    if let Some(bad) = request.segments.iter().find(|s| s.dim() != shape) {
        return Err(EffectError::Input(format!(
            "a segment has shape {:?} (k, j, i) but the reference lattice is {shape:?}",
            bad.dim()
        )));
    }
    if request.visible.len() != request.segments.len() {
        return Err(EffectError::Input(
            "one visibility flag per segment is needed".into(),
        ));
    }
    if let Some(n) = request.selected {
        if n >= request.segments.len() {
            return Err(EffectError::Input(format!(
                "selected segment {n} does not exist ({} segments)",
                request.segments.len()
            )));
        }
    }
    if let Some(p) = request.point_kji {
        super::check_point(p, shape)?;
    }
    Ok(shape)
}

/// Label map of the visible segments, label = position + 1, later segments winning, as
/// Slicer's `GenerateMergedLabelmap`.
fn merged_visible(request: &EffectRequest, shape: (usize, usize, usize)) -> Array3<u16> {
    let mut out = Array3::<u16>::zeros(shape);
    for (n, (mask, &vis)) in request.segments.iter().zip(request.visible).enumerate() {
        if vis {
            let label = (n + 1).min(u16::MAX as usize) as u16;
            Zip::from(&mut out).and(mask).for_each(|o, &m| {
                if m != 0 {
                    *o = label;
                }
            });
        }
    }
    out
}

fn missing(spec: &EffectSpec, what: &str) -> EffectError {
    EffectError::Input(format!("{} needs {what}", spec.name))
}

fn bad_choice(name: &str, value: &str) -> EffectError {
    EffectError::Parameter {
        name: name.into(),
        reason: format!("unknown value {value:?}"),
    }
}

/// Parameter values checked against the schema.
struct Params<'a> {
    spec: &'a EffectSpec,
    values: &'a BTreeMap<String, String>,
}

impl<'a> Params<'a> {
    fn new(
        spec: &'a EffectSpec,
        values: &'a BTreeMap<String, String>,
    ) -> Result<Self, EffectError> {
        for (name, value) in values {
            let Some(p) = spec.params.iter().find(|p| p.name == name) else {
                return Err(EffectError::Parameter {
                    name: name.clone(),
                    reason: format!(
                        "{} has no such parameter; its parameters are: {}",
                        spec.name,
                        spec.params
                            .iter()
                            .map(|p| p.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            };
            check_value(p, value)?;
        }
        Ok(Params { spec, values })
    }

    fn raw(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    fn spec(&self, name: &str) -> &ParamSpec {
        self.spec
            .params
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| {
                panic!(
                    "effect {} reads undeclared parameter {name}",
                    self.spec.name
                )
            })
    }

    /// The value, or `None` when the request leaves it to its default.
    fn double(&self, name: &str) -> Result<Option<f64>, EffectError> {
        self.raw(name).map(|v| parse_f64(name, v)).transpose()
    }

    fn integer(&self, name: &str) -> Result<i64, EffectError> {
        let v = self.raw(name).unwrap_or(self.spec(name).default);
        parse_i64(name, v)
    }

    fn boolean(&self, name: &str) -> Result<bool, EffectError> {
        let v = self.raw(name).unwrap_or(self.spec(name).default);
        parse_bool(name, v)
    }

    fn choice(&self, name: &str) -> Result<String, EffectError> {
        Ok(self
            .raw(name)
            .unwrap_or(self.spec(name).default)
            .to_string())
    }
}

fn check_value(p: &ParamSpec, value: &str) -> Result<(), EffectError> {
    let number = match &p.kind {
        ParamType::Double => Some(parse_f64(p.name, value)?),
        ParamType::Integer => Some(parse_i64(p.name, value)? as f64),
        ParamType::Boolean => parse_bool(p.name, value).map(|_| None)?,
        ParamType::Choice(choices) => {
            if !choices.iter().any(|c| c.value == value) {
                return Err(EffectError::Parameter {
                    name: p.name.into(),
                    reason: format!(
                        "unknown value {value:?}; the values are: {}",
                        choices
                            .iter()
                            .map(|c| c.value)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
            None
        }
    };
    if let Some(x) = number {
        if p.minimum.is_some_and(|m| x < m) || p.maximum.is_some_and(|m| x > m) {
            return Err(EffectError::Parameter {
                name: p.name.into(),
                reason: format!(
                    "{value} is outside {} ..= {}",
                    p.minimum.map_or("-inf".into(), |m| m.to_string()),
                    p.maximum.map_or("inf".into(), |m| m.to_string())
                ),
            });
        }
    }
    Ok(())
}

fn parse_f64(name: &str, v: &str) -> Result<f64, EffectError> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| EffectError::Parameter {
            name: name.into(),
            reason: format!("{v:?} is not a finite number"),
        })
}

fn parse_i64(name: &str, v: &str) -> Result<i64, EffectError> {
    let t = v.trim();
    // Slicer stores integers as strings and sometimes as "1000.0".
    t.parse::<i64>()
        .ok()
        .or_else(|| {
            t.parse::<f64>()
                .ok()
                .filter(|x| x.fract() == 0.0 && x.abs() < 9e15)
                .map(|x| x as i64)
        })
        .ok_or_else(|| EffectError::Parameter {
            name: name.into(),
            reason: format!("{v:?} is not an integer"),
        })
}

fn parse_bool(name: &str, v: &str) -> Result<bool, EffectError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(EffectError::Parameter {
            name: name.into(),
            reason: format!("{v:?} is not a boolean (0 or 1)"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{Geometry, Volume};

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn effects_are_found_by_either_name() {
        assert_eq!(find("Islands").unwrap().cli_name, "islands");
        assert_eq!(find("threshold").unwrap().name, "Threshold");
        let err = find("paint").unwrap_err().to_string();
        assert!(err.contains("threshold, islands"), "{err}");
    }

    #[test]
    fn bad_parameters_are_named() {
        let spec = find("islands").unwrap();
        let seg = vec![Array3::<u8>::ones((1, 1, 3))];
        let check = |p: BTreeMap<String, String>| {
            let req = EffectRequest {
                source: None,
                segments: &seg,
                visible: &[true],
                selected: Some(0),
                point_kji: None,
                parameters: &p,
            };
            run(&spec, &req).unwrap_err().to_string()
        };
        assert!(check(params(&[("MinimumSise", "3")])).contains("MinimumSise"));
        assert!(check(params(&[("MinimumSize", "-3")])).contains("outside"));
        assert!(check(params(&[("MinimumSize", "x")])).contains("not an integer"));
        let e = check(params(&[("Operation", "KEEP")]));
        assert!(e.contains("KEEP_LARGEST_ISLAND"), "{e}");
    }

    #[test]
    fn threshold_defaults_come_from_the_source_range() {
        let spec = find("threshold").unwrap();
        let data = Array3::from_shape_vec((1, 1, 5), vec![0i16, 10, 25, 50, 100]).unwrap();
        let source: AnyVolume = Volume::new(data, Geometry::default()).into();
        let p = params(&[]);
        let req = EffectRequest {
            source: Some(&source),
            segments: &[],
            visible: &[],
            selected: None,
            point_kji: None,
            parameters: &p,
        };
        let out = run(&spec, &req).unwrap();
        // Initial bounds [25, 100].
        assert_eq!(out.modifiers[0].mask.as_slice().unwrap(), &[0, 0, 1, 1, 1]);
    }

    #[test]
    fn islands_on_a_new_segment_changes_nothing_visible() {
        let spec = find("islands").unwrap();
        let seg = vec![Array3::<u8>::ones((1, 1, 3))];
        let p = params(&[("MinimumSize", "0")]);
        let req = EffectRequest {
            source: None,
            segments: &seg,
            visible: &[true],
            selected: None,
            point_kji: None,
            parameters: &p,
        };
        let out = run(&spec, &req).unwrap();
        assert!(out.modifiers[0].mask.iter().all(|&v| v == 0));
    }
}
