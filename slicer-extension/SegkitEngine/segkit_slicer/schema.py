"""What the parameter widgets of an engine effect look like, read from its schema.

The engine lists its effects with a parameter schema (`EffectInfo`, `ParameterInfo`).
The Slicer effect builds its widgets from `ParameterSpec`s computed here, so a new effect
or parameter in the engine appears in Slicer without a line of Python changing. Keeping
the rules here (not in the Qt class) lets them be tested without Qt:

- defaults and ranges that depend on the source volume (`default_from_source`,
  `range_from_source`) are resolved against the source's value range;
- a parameter is shown only when `visible_when_parameter` has one of
  `visible_when_values`;
- an effect needs a click when it, or the selected value of one of its choices, lists
  the POINT input;
- a SEGMENT parameter is chosen among the segmentation's segments (`segment_items`):
  its value is a segment id, "" for none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple

# Names of the proto enums, so this module does not need the generated code.
DOUBLE, INTEGER, BOOLEAN, CHOICE, STRING, SEGMENT = (
    "double", "integer", "boolean", "choice", "string", "segment")
_TYPES = {1: DOUBLE, 2: INTEGER, 3: BOOLEAN, 4: CHOICE, 5: STRING, 6: SEGMENT}
# The proto ParameterType values this client builds widgets for.
KNOWN_PARAMETER_TYPES = frozenset(_TYPES)

# The title of the "no segment" entry of a segment selector (value "").
NO_SEGMENT_TITLE = "(none)"

INPUT_SOURCE_VOLUME, INPUT_SELECTED_SEGMENT, INPUT_VISIBLE_SEGMENTS, INPUT_POINT = 1, 2, 3, 4
# Several positions from a markups point list (Segment from boundary points).
INPUT_POINT_LIST = 5
INPUT_ALL_SEGMENTS = 6
# Slicer's editable-area modes (vtkMRMLSegmentationNode::EditAllowed...), the proto's MaskMode.
(MASK_EVERYWHERE, MASK_INSIDE_ALL, MASK_INSIDE_VISIBLE, MASK_OUTSIDE_ALL, MASK_OUTSIDE_VISIBLE,
 MASK_INSIDE_SINGLE) = range(6)

_SOURCE_MINIMUM, _SOURCE_MAXIMUM, _SOURCE_QUARTER_RANGE = 1, 2, 3

# Steps a slider with a range but no step is divided into (Slicer's Threshold uses 1000).
DEFAULT_SLIDER_STEPS = 1000


@dataclass(frozen=True)
class ChoiceSpec:
    value: str
    title: str
    help: str = ""
    inputs: Tuple[int, ...] = ()


@dataclass(frozen=True)
class ParameterSpec:
    """One widget: its kind, label, range, step, unit, default and visibility rule."""

    name: str
    title: str
    kind: str
    default: str
    help: str = ""
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    step: Optional[float] = None
    decimals: int = 0
    unit: str = ""
    choices: Tuple[ChoiceSpec, ...] = ()
    visible_when_parameter: str = ""
    visible_when_values: Tuple[str, ...] = ()
    # The value is in the source volume's unit (its range or default comes from the source).
    source_units: bool = False

    def is_visible(self, values: Mapping[str, str]) -> bool:
        if not self.visible_when_parameter:
            return True
        return values.get(self.visible_when_parameter, "") in self.visible_when_values

    def normalize(self, value: str) -> str:
        """A value as the engine expects it: numbers clamped to the range, booleans 0/1,
        choices one of the values (else the default)."""
        if self.kind == BOOLEAN:
            return "1" if str(value).strip().lower() in ("1", "true", "yes", "on") else "0"
        if self.kind == CHOICE:
            return value if any(c.value == value for c in self.choices) else self.default
        if self.kind in (DOUBLE, INTEGER):
            try:
                x = float(value)
            except (TypeError, ValueError):
                return self.default
            if self.minimum is not None:
                x = max(x, self.minimum)
            if self.maximum is not None:
                x = min(x, self.maximum)
            return str(int(round(x))) if self.kind == INTEGER else format_number(x)
        return str(value)


@dataclass(frozen=True)
class EffectSpec:
    name: str
    title: str
    help: str
    parameters: Tuple[ParameterSpec, ...]
    inputs: Tuple[int, ...]
    long_running: bool = False
    reported: Tuple[Tuple[str, str], ...] = ()
    produces_volume: bool = False   # answers new volumes (Mask volume)
    preview: bool = False           # auto-complete effect: Initialize / preview / Apply / Cancel
    # (minimum, maximum) parameters of the source intensity range the effect keeps, which
    # the slice views preview while it moves (Threshold), or None.
    range_parameters: Optional[Tuple[str, str]] = None
    # The boolean parameter that makes the effect choose that range itself ("" = none).
    auto_range_parameter: str = ""

    def parameter(self, name: str) -> ParameterSpec:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(f"effect {self.name} has no parameter {name!r}")

    def intensity_range(self, values: Mapping[str, str]) -> Optional[Tuple[float, float]]:
        """The range the effect keeps with these values, or None (no range parameters)."""
        if self.range_parameters is None:
            return None
        lo, hi = (self.parameter(name) for name in self.range_parameters)
        try:
            return (float(values.get(lo.name, lo.default)), float(values.get(hi.name, hi.default)))
        except ValueError:
            return None

    def defaults(self) -> Dict[str, str]:
        return {p.name: p.default for p in self.parameters}

    def inputs_for(self, values: Mapping[str, str]) -> Tuple[int, ...]:
        """The effect's inputs plus those of the selected value of each visible choice."""
        needed = list(self.inputs)
        for p in self.parameters:
            if p.kind != CHOICE or not p.is_visible(values):
                continue
            selected = values.get(p.name, p.default)
            for c in p.choices:
                if c.value == selected:
                    needed += [i for i in c.inputs if i not in needed]
        return tuple(needed)

    def needs_point(self, values: Mapping[str, str]) -> bool:
        return INPUT_POINT in self.inputs_for(values)

    def needs_point_list(self, values: Mapping[str, str]) -> bool:
        return INPUT_POINT_LIST in self.inputs_for(values)

    def segments_to_send(self, values: Mapping[str, str], segment_ids: Sequence[str],
                         visible: Sequence[str], selected: Optional[str],
                         masking=None) -> Tuple[str, ...]:
        """The segments a request must carry, in segmentation order: the selected one when
        the effect reads it, the visible ones when it (or its chosen operation) reads them,
        segments named by segment parameters, and those the editable area is made of
        (`masking` as `EditorContext.masking_settings` gives it). Nothing else is read from
        MRML or sent."""
        inputs = self.inputs_for(values)
        wanted = set()
        if INPUT_SELECTED_SEGMENT in inputs and selected:
            wanted.add(selected)
        if INPUT_VISIBLE_SEGMENTS in inputs:
            wanted.update(visible)
        if INPUT_ALL_SEGMENTS in inputs:
            wanted.update(segment_ids)
        for p in self.parameters:
            if p.kind == SEGMENT and p.is_visible(values) and values.get(p.name):
                wanted.add(values[p.name])
        if masking is not None:
            mode, mask_segment = masking[0], masking[1]
            if mode in (MASK_INSIDE_ALL, MASK_OUTSIDE_ALL):
                wanted.update(segment_ids)
            elif mode in (MASK_INSIDE_VISIBLE, MASK_OUTSIDE_VISIBLE):
                wanted.update(visible)
            elif mode == MASK_INSIDE_SINGLE and mask_segment:
                wanted.add(mask_segment)
        return tuple(sid for sid in segment_ids if sid in wanted)

    def needs_source(self, values: Mapping[str, str]) -> bool:
        return INPUT_SOURCE_VOLUME in self.inputs_for(values)

    def request_parameters(self, values: Mapping[str, str]) -> Dict[str, str]:
        """The parameters to send: every visible parameter, normalized; hidden ones are
        left out so the engine uses its defaults."""
        out = {}
        for p in self.parameters:
            if p.is_visible(values) and p.name in values:
                out[p.name] = p.normalize(values[p.name])
        return out


def format_number(x: float) -> str:
    """Shortest string that reads back as the same double ("-500", "0.25")."""
    if math.isfinite(x) and x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return repr(float(x))


def _decimals_for(step: Optional[float]) -> int:
    if not step or step >= 1 or not math.isfinite(step):
        return 0
    return min(6, max(1, int(math.ceil(-math.log10(step)))))


def parameter_spec(p, source_range: Optional[Tuple[float, float]] = None,
                   integer_source: bool = False) -> ParameterSpec:
    """The widget spec of a proto `ParameterInfo`, given the source's value range (None
    when no source is selected yet: source-derived values then fall back to the schema's)."""
    kind = _TYPES.get(p.type, STRING)
    minimum = p.minimum if p.HasField("minimum") else None
    maximum = p.maximum if p.HasField("maximum") else None
    step = p.step if p.HasField("step") else None
    default = p.default_value
    if source_range is not None:
        lo, hi = source_range
        if p.range_from_source:
            minimum, maximum = lo, hi
        derived = {
            _SOURCE_MINIMUM: lo,
            _SOURCE_MAXIMUM: hi,
            _SOURCE_QUARTER_RANGE: lo + 0.25 * (hi - lo),
        }.get(p.default_from_source)
        if derived is not None:
            default = format_number(derived)
    if kind == DOUBLE and step is None and minimum is not None and maximum is not None and maximum > minimum:
        step = (maximum - minimum) / DEFAULT_SLIDER_STEPS
        if integer_source and p.range_from_source:
            step = max(1.0, round(step))
    if kind == INTEGER and step is None:
        step = 1.0
    choices = tuple(
        ChoiceSpec(c.value, c.title or c.value, c.help, tuple(c.inputs)) for c in p.choices
    )
    return ParameterSpec(
        name=p.name,
        title=p.title or p.name,
        kind=kind,
        default=default,
        help=p.help,
        minimum=minimum,
        maximum=maximum,
        step=step,
        decimals=0 if kind == INTEGER else _decimals_for(step),
        unit=p.unit,
        choices=choices,
        visible_when_parameter=p.visible_when_parameter,
        visible_when_values=tuple(p.visible_when_values),
        source_units=bool(p.range_from_source or p.default_from_source),
    )


def effect_spec(info, source_range: Optional[Tuple[float, float]] = None,
                integer_source: bool = False) -> EffectSpec:
    """The spec of a proto `EffectInfo`. Range and automatic-range parameters that the
    effect does not declare with the right type are ignored (an engine's mistake must not
    break the panel)."""
    parameters = tuple(parameter_spec(p, source_range, integer_source) for p in info.parameters)
    kinds = {p.name: p.kind for p in parameters}
    names = (getattr(info, "range_minimum_parameter", ""), getattr(info, "range_maximum_parameter", ""))
    range_parameters = names if all(kinds.get(n) == DOUBLE for n in names) else None
    auto = getattr(info, "auto_range_parameter", "")
    reported = {r.name for r in info.reported}
    if range_parameters is None or kinds.get(auto) != BOOLEAN or not set(names) <= reported:
        auto = ""
    return EffectSpec(
        name=info.name,
        title=info.title or info.name,
        help=info.help,
        parameters=parameters,
        inputs=tuple(info.inputs),
        long_running=info.long_running,
        reported=tuple((r.name, r.help) for r in info.reported),
        produces_volume=info.produces_volume,
        preview=info.preview,
        range_parameters=range_parameters,
        auto_range_parameter=auto,
    )


def segment_items(segments: Sequence[Tuple[str, str]]) -> Tuple[Tuple[str, str], ...]:
    """The entries of a SEGMENT parameter's selector, as (title, value): "(none)" with value
    "" first, then each segment by name with its id as the value, in segment order."""
    return ((NO_SEGMENT_TITLE, ""),) + tuple((name or sid, sid) for sid, name in segments)


def segment_value(value: str, segments: Sequence[Tuple[str, str]]) -> str:
    """A SEGMENT parameter's value kept only while its segment exists ("" otherwise)."""
    return value if any(sid == value for sid, _ in segments) else ""


def find_effect(effects: Sequence, name: str):
    """The `EffectInfo` named `name` (Slicer name or cli name, any case)."""
    wanted = name.lower()
    for e in effects:
        if e.name.lower() == wanted or e.cli_name == wanted:
            return e
    names = ", ".join(e.name for e in effects)
    raise KeyError(f"the engine has no effect {name!r}; it has: {names}")
