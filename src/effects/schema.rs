//! The parameter schema of an effect, and its parameter values checked against it.
//!
//! An effect states its parameters once, in its [`EffectSpec`]: Slicer's name, type,
//! default (as the string Slicer stores), range and unit. The engine sends the schema to
//! the Slicer extension, which builds its widgets from it; the command line prints it.
//! A request's `name -> value` strings are checked against the schema by
//! [`ParamValues::new`], which refuses an unknown name or a bad value with a message that
//! names the parameter, the accepted values and the value given; the effect then reads
//! typed values (the given one, or the schema's default) with [`ParamValues::double`] and
//! its siblings.

use super::EffectError;
use std::collections::BTreeMap;

/// What an effect needs besides its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    SourceVolume,
    SelectedSegment,
    VisibleSegments,
    Point,
    /// Several positions at once (a markups point list: Segment from boundary points).
    PointList,
    /// Every segment, hidden ones too (Logical operators' Invert and Fill look at the
    /// selected segment's whole layer).
    AllSegments,
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
    /// The id of one of the request's segments (Logical operators' `ModifierSegmentID`);
    /// empty = none.
    Segment,
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

impl ChoiceSpec {
    /// A choice that needs no input of its own.
    pub fn new(value: &'static str, title: &'static str, help: &'static str) -> Self {
        ChoiceSpec {
            value,
            title,
            help,
            inputs: vec![],
        }
    }

    /// The same choice, needing `inputs` too.
    pub fn needs(mut self, inputs: &[Input]) -> Self {
        self.inputs = inputs.to_vec();
        self
    }
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
    /// A parameter of type `kind` with default `default` and nothing else set.
    pub fn new(
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

    /// A real number.
    pub fn double(name: &'static str, title: &'static str, default: &'static str) -> Self {
        Self::new(name, title, ParamType::Double, default)
    }

    /// An integer.
    pub fn integer(name: &'static str, title: &'static str, default: &'static str) -> Self {
        Self::new(name, title, ParamType::Integer, default)
    }

    /// A boolean (`0` / `1`).
    pub fn boolean(name: &'static str, title: &'static str, default: &'static str) -> Self {
        Self::new(name, title, ParamType::Boolean, default)
    }

    /// One of `choices`.
    pub fn choice(
        name: &'static str,
        title: &'static str,
        choices: Vec<ChoiceSpec>,
        default: &'static str,
    ) -> Self {
        Self::new(name, title, ParamType::Choice(choices), default)
    }

    /// The id of one of the request's segments (default: none).
    pub fn segment(name: &'static str, title: &'static str) -> Self {
        Self::new(name, title, ParamType::Segment, "")
    }

    /// With this help text.
    pub fn help(mut self, help: &'static str) -> Self {
        self.help = help;
        self
    }

    /// With inclusive bounds.
    pub fn range(mut self, minimum: f64, maximum: f64) -> Self {
        self.minimum = Some(minimum);
        self.maximum = Some(maximum);
        self
    }

    /// With a slider step.
    pub fn step(mut self, step: f64) -> Self {
        self.step = Some(step);
        self
    }

    /// With a unit ("mm", "voxels", "%").
    pub fn unit(mut self, unit: &'static str) -> Self {
        self.unit = unit;
        self
    }

    /// Shown only when `parameter` has one of `values`.
    pub fn visible_when(mut self, parameter: &'static str, values: &[&'static str]) -> Self {
        self.visible_when = Some((parameter, values.to_vec()));
        self
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
    /// The effect makes a new volume (Mask volume) instead of, or besides, modifiers.
    pub produces_volume: bool,
    /// An auto-complete effect, which also runs as a preview session (set by the catalog
    /// from [`super::Effect::auto_complete`]).
    pub preview: bool,
    /// The effect keeps the source voxels whose value lies between these two parameters
    /// (minimum, maximum), both inclusive: a client can preview that range in its slice
    /// views while the user moves it (Slicer's pulsing threshold preview).
    pub intensity_range: Option<(&'static str, &'static str)>,
    /// A boolean parameter which, set, makes the effect choose the range itself and report
    /// the bounds used under the names of [`EffectSpec::intensity_range`]: a client can offer
    /// a button that asks for the bounds alone (a report-only call) and sets the range.
    pub auto_range: Option<&'static str>,
}

impl EffectSpec {
    /// An effect with no parameters, inputs or reported values yet.
    pub fn new(
        name: &'static str,
        cli_name: &'static str,
        title: &'static str,
        help: &'static str,
    ) -> Self {
        EffectSpec {
            name,
            cli_name,
            title,
            help,
            inputs: vec![],
            params: vec![],
            long_running: false,
            reported: vec![],
            produces_volume: false,
            preview: false,
            intensity_range: None,
            auto_range: None,
        }
    }

    /// The parameter named `name`.
    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// Parameter values checked against an effect's schema.
///
/// Every declared parameter has a value: the one given, or the schema's default.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamValues {
    effect: &'static str,
    values: Vec<(ParamSpec, Option<String>)>,
}

impl ParamValues {
    /// Checks `given` against `spec`.
    ///
    /// # Errors
    /// A name the effect does not declare, or a value that does not parse, is outside the
    /// declared range or is not one of the choices; the message names the parameter, what
    /// it accepts and the value given.
    pub fn new(spec: &EffectSpec, given: &BTreeMap<String, String>) -> Result<Self, EffectError> {
        for (name, value) in given {
            let Some(p) = spec.param(name) else {
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
        Ok(ParamValues {
            effect: spec.name,
            values: spec
                .params
                .iter()
                .map(|p| (p.clone(), given.get(p.name).cloned()))
                .collect(),
        })
    }

    /// Every parameter at its default.
    pub fn defaults(spec: &EffectSpec) -> Self {
        ParamValues {
            effect: spec.name,
            values: spec.params.iter().map(|p| (p.clone(), None)).collect(),
        }
    }

    fn entry(&self, name: &str) -> Result<&(ParamSpec, Option<String>), EffectError> {
        self.values
            .iter()
            .find(|(p, _)| p.name == name)
            .ok_or_else(|| {
                EffectError::Internal(format!(
                    "effect {} reads parameter {name}, which its schema does not declare",
                    self.effect
                ))
            })
    }

    /// The value as given or defaulted, as a string.
    pub fn raw(&self, name: &str) -> Result<&str, EffectError> {
        let (p, v) = self.entry(name)?;
        Ok(v.as_deref().unwrap_or(p.default))
    }

    /// True when the request gave this parameter.
    pub fn is_given(&self, name: &str) -> Result<bool, EffectError> {
        Ok(self.entry(name)?.1.is_some())
    }

    /// A `Double` parameter.
    pub fn double(&self, name: &str) -> Result<f64, EffectError> {
        parse_f64(name, self.raw(name)?)
    }

    /// A `Double` parameter the request gave; `None` when left to its default (for
    /// defaults that depend on the source, such as Threshold's bounds).
    pub fn given_double(&self, name: &str) -> Result<Option<f64>, EffectError> {
        let (_, v) = self.entry(name)?;
        v.as_deref().map(|v| parse_f64(name, v)).transpose()
    }

    /// An `Integer` parameter.
    pub fn integer(&self, name: &str) -> Result<i64, EffectError> {
        parse_i64(name, self.raw(name)?)
    }

    /// A `Boolean` parameter.
    pub fn boolean(&self, name: &str) -> Result<bool, EffectError> {
        parse_bool(name, self.raw(name)?)
    }

    /// A `Choice` parameter, converted by `from_name` (an enum's `from_slicer_name`).
    pub fn choice<T>(
        &self,
        name: &str,
        from_name: fn(&str) -> Option<T>,
    ) -> Result<T, EffectError> {
        let v = self.raw(name)?;
        from_name(v).ok_or_else(|| EffectError::Parameter {
            name: name.into(),
            reason: format!("unknown value {v:?}"),
        })
    }
}

fn check_value(p: &ParamSpec, value: &str) -> Result<(), EffectError> {
    let number = match &p.kind {
        ParamType::Double => Some(parse_f64(p.name, value)?),
        ParamType::Integer => Some(parse_i64(p.name, value)? as f64),
        ParamType::Boolean => parse_bool(p.name, value).map(|_| None)?,
        ParamType::Segment => None,
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

    fn spec() -> EffectSpec {
        let mut s = EffectSpec::new("Demo", "demo", "Demo", "");
        s.params = vec![
            ParamSpec::double("SizeMm", "Size", "3").range(-10.0, 10.0),
            ParamSpec::integer("Count", "Count", "1000").range(0.0, 1e9),
            ParamSpec::boolean("Flag", "Flag", "0"),
            ParamSpec::choice(
                "Mode",
                "Mode",
                vec![ChoiceSpec::new("A", "a", ""), ChoiceSpec::new("B", "b", "")],
                "A",
            ),
        ];
        s
    }

    fn given(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_given_values_are_typed() {
        let v = ParamValues::new(&spec(), &given(&[("Count", "7.0"), ("Flag", "1")])).unwrap();
        assert_eq!(v.double("SizeMm").unwrap(), 3.0);
        assert_eq!(v.given_double("SizeMm").unwrap(), None);
        assert_eq!(v.integer("Count").unwrap(), 7);
        assert!(v.boolean("Flag").unwrap());
        assert_eq!(v.raw("Mode").unwrap(), "A");
    }

    #[test]
    fn bad_values_name_the_parameter_range_and_value() {
        let err = |p: &[(&str, &str)]| {
            ParamValues::new(&spec(), &given(p))
                .unwrap_err()
                .to_string()
        };
        let e = err(&[("SizeMm", "11")]);
        assert!(
            e.contains("SizeMm") && e.contains("11") && e.contains("-10 ..= 10"),
            "{e}"
        );
        assert!(err(&[("Sise", "1")]).contains("SizeMm, Count, Flag, Mode"));
        assert!(err(&[("Count", "x")]).contains("not an integer"));
        assert!(err(&[("Mode", "C")]).contains("A, B"));
        assert!(err(&[("SizeMm", "nan")]).contains("not a finite number"));
    }

    #[test]
    fn an_undeclared_read_is_an_error_not_a_panic() {
        let v = ParamValues::defaults(&spec());
        let e = v.double("Other").unwrap_err();
        assert!(matches!(e, EffectError::Internal(_)), "{e}");
    }
}
