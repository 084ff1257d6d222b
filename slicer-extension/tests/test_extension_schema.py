"""Parameter widgets are described from the engine's schema alone: source-derived
defaults and ranges, visibility rules, and which inputs (a click) a choice needs. A
made-up effect shows that a new engine effect needs no Python change."""

from __future__ import annotations

import pytest

from segkit_slicer import schema
from segkit_slicer.proto.segkit.v1 import engine_pb2 as pb


@pytest.fixture(scope="module")
def effects(engine):
    from segkit_slicer.client import EngineClient

    with EngineClient(engine.address) as client:
        return client.list_effects()


def test_threshold_defaults_and_ranges_come_from_the_source(effects):
    info = schema.find_effect(effects, "threshold")
    spec = schema.effect_spec(info, source_range=(-3024.0, 3070.0), integer_source=True)
    minimum = spec.parameter("MinimumThreshold")
    assert minimum.kind == schema.DOUBLE
    assert (minimum.minimum, minimum.maximum) == (-3024.0, 3070.0)
    assert float(minimum.default) == -3024.0 + 0.25 * 6094.0   # Slicer's initial minimum
    assert spec.parameter("MaximumThreshold").default == "3070"
    assert minimum.step == 6.0                                  # range / 1000, whole for integers
    # Without a source, the schema's own defaults.
    assert schema.effect_spec(info).parameter("MaximumThreshold").default == "0"
    assert spec.needs_source(spec.defaults()) and not spec.needs_point(spec.defaults())


def test_visibility_follows_the_controlling_parameter(effects):
    spec = schema.effect_spec(schema.find_effect(effects, "Threshold"), (0.0, 100.0))
    values = spec.defaults()
    assert not spec.parameter("AutoThresholdMethod").is_visible(values)
    assert "AutoThresholdMethod" not in spec.request_parameters(values)
    values["AutoThreshold"] = "1"
    assert spec.parameter("AutoThresholdMethod").is_visible(values)
    assert spec.request_parameters(values)["AutoThresholdMethod"] == "OTSU"


def test_island_choices_say_when_a_click_is_needed(effects):
    spec = schema.effect_spec(schema.find_effect(effects, "Islands"))
    size = spec.parameter("MinimumSize")
    assert (size.kind, size.unit, size.step, size.minimum) == (schema.INTEGER, "voxels", 1.0, 0.0)
    assert size.default == "1000"
    # Segments s1 and s2, both visible, s2 selected: Add selected island also reads the
    # visible segments (it floods their merged label map).
    for operation, needs_point, shows_size, sent in [
        ("KEEP_LARGEST_ISLAND", False, True, ("s2",)),
        ("SPLIT_ISLANDS_TO_SEGMENTS", False, True, ("s2",)),
        ("KEEP_SELECTED_ISLAND", True, False, ("s2",)),
        ("ADD_SELECTED_ISLAND", True, False, ("s1", "s2")),
    ]:
        values = {"Operation": operation, "MinimumSize": "1000"}
        assert spec.needs_point(values) is needs_point, operation
        assert size.is_visible(values) is shows_size, operation
        assert spec.segments_to_send(values, ["s1", "s2"], ["s1", "s2"], "s2") == sent, operation


def test_values_are_normalized_for_the_engine(effects):
    spec = schema.effect_spec(schema.find_effect(effects, "Islands"))
    size = spec.parameter("MinimumSize")
    assert size.normalize("12.6") == "13"
    assert size.normalize("-5") == "0"
    assert size.normalize("abc") == "1000"
    assert spec.parameter("Operation").normalize("NOPE") == "KEEP_LARGEST_ISLAND"
    threshold = schema.effect_spec(schema.find_effect(effects, "Threshold"), (-10.0, 10.0))
    assert threshold.parameter("MinimumThreshold").normalize("-20") == "-10"
    assert threshold.parameter("AutoThreshold").normalize("true") == "1"


def test_a_new_engine_effect_needs_no_python_change():
    """Every parameter type of the contract becomes a widget spec."""
    info = pb.EffectInfo(name="Margin", cli_name="margin", title="Margin", help="Grow or shrink.",
                         inputs=[pb.EFFECT_INPUT_SELECTED_SEGMENT], long_running=True)
    info.parameters.add(name="MarginSizeMm", title="Margin size", type=pb.PARAMETER_TYPE_DOUBLE,
                        default_value="3", minimum=-50, maximum=50, unit="mm")
    info.parameters.add(name="Iterations", type=pb.PARAMETER_TYPE_INTEGER, default_value="2", minimum=1,
                        maximum=10)
    info.parameters.add(name="ApplyToAllVisibleSegments", type=pb.PARAMETER_TYPE_BOOLEAN, default_value="0")
    shape = info.parameters.add(name="Shape", type=pb.PARAMETER_TYPE_CHOICE, default_value="BALL")
    shape.choices.add(value="BALL", title="Ball")
    shape.choices.add(value="PICK", title="Picked", inputs=[pb.EFFECT_INPUT_POINT])
    info.parameters.add(name="Note", type=pb.PARAMETER_TYPE_STRING, default_value="",
                        visible_when_parameter="Shape", visible_when_values=["PICK"])
    spec = schema.effect_spec(info)
    kinds = [(p.name, p.kind) for p in spec.parameters]
    assert kinds == [("MarginSizeMm", "double"), ("Iterations", "integer"),
                     ("ApplyToAllVisibleSegments", "boolean"), ("Shape", "choice"), ("Note", "string")]
    margin = spec.parameter("MarginSizeMm")
    assert (margin.minimum, margin.maximum, margin.unit, margin.step, margin.decimals) == (-50, 50, "mm", 0.1, 1)
    assert spec.long_running
    assert not spec.needs_point(spec.defaults())
    assert spec.needs_point({"Shape": "PICK"})
    assert not spec.parameter("Note").is_visible(spec.defaults())


def test_unknown_effect_names_the_known_ones(effects):
    with pytest.raises(KeyError, match="Threshold"):
        schema.find_effect(effects, "No such effect")


def test_segment_parameters_and_volume_effects():
    """A SEGMENT parameter is a segment selector: "(none)" = "", then the segments by name
    with their ids as values; a segment that is gone falls back to none. `produces_volume`
    reaches the spec."""
    info = pb.EffectInfo(name="Logical", cli_name="logical", produces_volume=True,
                         inputs=[pb.EFFECT_INPUT_SELECTED_SEGMENT])
    info.parameters.add(name="ModifierSegmentID", type=pb.PARAMETER_TYPE_SEGMENT, default_value="")
    spec = schema.effect_spec(info)
    p = spec.parameter("ModifierSegmentID")
    assert p.kind == schema.SEGMENT and p.default == "" and spec.produces_volume
    assert p.normalize("Segment_2") == "Segment_2"
    assert spec.request_parameters({"ModifierSegmentID": "Segment_2"}) == {"ModifierSegmentID": "Segment_2"}
    segments = [("Segment_1", "Liver"), ("Segment_2", "")]
    assert schema.segment_items(segments) == (("(none)", ""), ("Liver", "Segment_1"), ("Segment_2", "Segment_2"))
    assert schema.segment_value("Segment_2", segments) == "Segment_2"
    assert schema.segment_value("Segment_9", segments) == ""
    assert set(schema.KNOWN_PARAMETER_TYPES) == {v for v in pb.ParameterType.values() if v != 0}


def test_every_engine_parameter_type_is_known(effects):
    for info in effects:
        for p in info.parameters:
            assert p.type in schema.KNOWN_PARAMETER_TYPES, (info.name, p.name, p.type)


def test_only_the_segments_an_effect_reads_are_sent(effects):
    """Each segment sent is a full-size array read from MRML on the GUI thread: the schema
    and the editable area decide which go (issue 10), in segmentation order."""
    ids = ["s1", "s2", "s3", "s4"]
    visible = ["s1", "s3"]

    def send(effect, values=None, selected="s2", masking=None):
        spec = schema.effect_spec(schema.find_effect(effects, effect))
        merged = dict(spec.defaults())
        merged.update(values or {})
        return spec.segments_to_send(merged, ids, visible, selected, masking)

    # Threshold reads no segment; Margin its selected one and, for "apply to visible
    # segments", the visible ones; Islands' ADD_SELECTED_ISLAND the visible ones.
    assert send("Threshold") == ()
    assert send("Margin") == ("s1", "s2", "s3")
    assert send("Islands", {"Operation": "KEEP_LARGEST_ISLAND"}) == ("s2",)
    assert send("Islands", {"Operation": "ADD_SELECTED_ISLAND"}) == ("s1", "s2", "s3")
    assert send("Grow from seeds", selected="s4") == ("s1", "s3")
    # Logical operators: the selected and the modifier segment, hidden or not; Invert
    # and Fill look at every segment.
    assert send("Logical operators", {"Operation": "SUBTRACT", "ModifierSegmentID": "s4"}) == ("s2", "s4")
    assert send("Logical operators", {"Operation": "INVERT"}) == tuple(ids)
    # The editable area's segments go with any effect (the engine builds locked voxels).
    inside_single, outside_all, outside_visible = 5, 3, 4
    assert send("Threshold", masking=(inside_single, "s4", 0, None)) == ("s4",)
    assert send("Threshold", masking=(outside_all, "", 0, None)) == tuple(ids)
    assert send("Flood filling", masking=(outside_visible, "", 0, None)) == ("s1", "s3")
    assert send("Threshold", masking=(0, "", 0, (-100.0, 100.0))) == ()
    # A new segment (none selected) reads nothing of itself.
    assert send("Islands", {"Operation": "KEEP_LARGEST_ISLAND"}, selected=None) == ()


def test_masking_settings_read_the_names_of_slicer_5_0():
    """Slicer < 5.1 names the editor node's intensity mask after the "master" volume; the
    settings sent with every effect must read it there too."""
    from segkit_slicer.logic import EditorContext

    class EditorNode50:   # vtkMRMLSegmentEditorNode of Slicer 5.0: only the "Master" names
        def GetMaskMode(self):
            return 3

        def GetMaskSegmentID(self):
            return "s1"

        def GetOverwriteMode(self):
            return 1

        def GetMasterVolumeIntensityMask(self):
            return True

        def GetMasterVolumeIntensityMaskRange(self):
            return (-900, -400)

    class Context50(EditorContext):
        def editor_node(self):
            return EditorNode50()

    assert Context50().masking_settings() == (3, "s1", 1, (-900.0, -400.0))
