"""Engine information, health, reflection and the effect catalogue (ListEffects)."""

import math
import re

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

import conformance_lib as cl


def test_engine_info(info):
    """GetEngineInfo names the engine and the API version, and gives usable limits."""
    assert info.name
    assert info.version
    assert info.api_version == "segkit.v1"
    assert info.max_message_bytes >= 1 << 20, "the engine must accept at least 1 MiB messages"
    assert 0 < info.upload_chunk_bytes <= info.max_message_bytes, "a recommended chunk must fit in a message"
    assert info.cache_bytes > 0


def test_health_is_serving_without_token(engine):
    """The standard health service answers SERVING for the server and for segkit.v1.Engine,
    without a token (so load balancers can probe it)."""
    channel = cl.open_channel(engine.address)  # no token on purpose
    try:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "segkit.v1.Engine"):
            r = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert r.status == health_pb2.HealthCheckResponse.SERVING, service
    finally:
        channel.close()


def _list_services(channel, version):
    call = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    (resp,) = list(call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
    return {s.name for s in resp.list_services_response.service}


def test_reflection_lists_the_engine(engine):
    """Server reflection (grpc.reflection.v1, or v1alpha) lists segkit.v1.Engine, so generic
    tools (grpcurl) can call the engine without the proto file. The v1 and v1alpha messages
    are identical; grpcio-reflection only ships v1alpha, so the v1 path is called with them."""
    found = None
    for version in ("v1", "v1alpha"):
        try:
            found = _list_services(engine.channel, version)
            break
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
    assert found is not None, "neither grpc.reflection.v1 nor v1alpha is served"
    assert "segkit.v1.Engine" in found, found


KEBAB = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def _check_value(pb, p, value, what):
    t = p.type
    if t == pb.PARAMETER_TYPE_DOUBLE:
        x = float(value)
        assert math.isfinite(x), what
        return x
    if t == pb.PARAMETER_TYPE_INTEGER:
        return int(value)
    if t == pb.PARAMETER_TYPE_BOOLEAN:
        assert value in ("0", "1"), f"{what}: boolean {value!r} must be '0' or '1'"
        return None
    if t == pb.PARAMETER_TYPE_CHOICE:
        values = [c.value for c in p.choices]
        assert value in values, f"{what}: {value!r} is not among {values}"
        return None
    if t == pb.PARAMETER_TYPE_SEGMENT:
        # A segment id exists only in a request: a schema's default can only be "none".
        assert value == "", f"{what}: a SEGMENT default must be '' (none), not {value!r}"
        return None
    assert t == pb.PARAMETER_TYPE_STRING, f"{what}: type {t} is not a known ParameterType"
    return None


def test_effect_schemas_are_sane(pb, effects):
    """Every effect has a name, a kebab-case cli_name, a title, its inputs, and parameters
    whose defaults parse per their type, whose ranges hold the default, whose choices are
    non-empty and unique, and whose visibility conditions name a sibling parameter."""
    assert effects, "ListEffects is empty"
    cli_names = [e.cli_name for e in effects.values()]
    assert len(set(cli_names)) == len(cli_names), cli_names
    for e in effects.values():
        assert e.name and e.title, e
        assert KEBAB.match(e.cli_name), f"{e.name}: cli_name {e.cli_name!r} is not lower-case kebab"
        assert e.cli_name.replace("-", "") == e.name.lower().replace(" ", "").replace("-", ""), (e.name, e.cli_name)
        assert list(e.inputs), f"{e.name}: no inputs"
        assert pb.EFFECT_INPUT_UNSPECIFIED not in e.inputs, e.name
        names = [p.name for p in e.parameters]
        assert len(set(names)) == len(names), f"{e.name}: parameter names repeat: {names}"
        by_name = {p.name: p for p in e.parameters}
        for p in e.parameters:
            what = f"{e.name}.{p.name}"
            assert p.name and p.title, what
            assert p.type != pb.PARAMETER_TYPE_UNSPECIFIED, what
            x = _check_value(pb, p, p.default_value, what)
            if p.type == pb.PARAMETER_TYPE_CHOICE:
                values = [c.value for c in p.choices]
                assert values and all(values), f"{what}: a choice needs values"
                assert len(set(values)) == len(values), f"{what}: {values}"
                for c in p.choices:
                    assert c.title, f"{what}: choice {c.value} has no title"
                    assert pb.EFFECT_INPUT_UNSPECIFIED not in c.inputs, what
            else:
                assert not p.choices, f"{what}: only CHOICE parameters have choices"
            if p.HasField("minimum") and p.HasField("maximum"):
                assert p.minimum <= p.maximum, what
            if x is not None and p.default_from_source == pb.SOURCE_DERIVED_NONE and not p.range_from_source:
                if p.HasField("minimum"):
                    assert x >= p.minimum, f"{what}: default {x} below minimum {p.minimum}"
                if p.HasField("maximum"):
                    assert x <= p.maximum, f"{what}: default {x} above maximum {p.maximum}"
            if p.HasField("step"):
                assert p.step > 0, what
            if p.visible_when_parameter:
                other = by_name.get(p.visible_when_parameter)
                assert other is not None and other.name != p.name, f"{what}: visible_when names {p.visible_when_parameter!r}"
                assert list(p.visible_when_values), f"{what}: visible_when without values"
                for v in p.visible_when_values:
                    _check_value(pb, other, v, f"{what} visible_when")
            else:
                assert not p.visible_when_values, what
        reported = [r.name for r in e.reported]
        assert all(reported) and len(set(reported)) == len(reported), f"{e.name}: {reported}"


def test_threshold_and_islands_follow_slicer(pb, effects):
    """Threshold and Islands carry Slicer's names, defaults and inputs: the Slicer UI and
    the rest of this suite rely on them."""
    assert "Threshold" in effects and "Islands" in effects, sorted(effects)
    t = effects["Threshold"]
    assert t.cli_name == "threshold"
    assert pb.EFFECT_INPUT_SOURCE_VOLUME in t.inputs
    tp = {p.name: p for p in t.parameters}
    assert tp["MinimumThreshold"].type == pb.PARAMETER_TYPE_DOUBLE
    assert tp["MaximumThreshold"].type == pb.PARAMETER_TYPE_DOUBLE
    assert tp["MinimumThreshold"].default_from_source == pb.SOURCE_DERIVED_QUARTER_RANGE
    assert tp["MaximumThreshold"].default_from_source == pb.SOURCE_DERIVED_MAXIMUM
    assert tp["MinimumThreshold"].range_from_source and tp["MaximumThreshold"].range_from_source

    i = effects["Islands"]
    assert i.cli_name == "islands"
    assert pb.EFFECT_INPUT_SELECTED_SEGMENT in i.inputs
    ip = {p.name: p for p in i.parameters}
    op = ip["Operation"]
    assert op.type == pb.PARAMETER_TYPE_CHOICE and op.default_value == "KEEP_LARGEST_ISLAND"
    choices = {c.value: c for c in op.choices}
    assert set(choices) >= {
        "KEEP_LARGEST_ISLAND",
        "REMOVE_SMALL_ISLANDS",
        "SPLIT_ISLANDS_TO_SEGMENTS",
        "KEEP_SELECTED_ISLAND",
        "REMOVE_SELECTED_ISLAND",
        "ADD_SELECTED_ISLAND",
    }
    for clicked in ("KEEP_SELECTED_ISLAND", "REMOVE_SELECTED_ISLAND", "ADD_SELECTED_ISLAND"):
        assert pb.EFFECT_INPUT_POINT in choices[clicked].inputs, f"{clicked} needs a point"
    size = ip["MinimumSize"]
    assert size.type == pb.PARAMETER_TYPE_INTEGER and int(size.default_value) == 1000
    assert size.unit == "voxels"


@pytest.mark.parametrize("name", ["Threshold", "threshold"])
def test_effect_is_found_by_either_name(stub, pb, volume, name):
    """ApplyEffectRequest.effect accepts EffectInfo.name or cli_name."""
    r = stub.ApplyEffect(
        pb.ApplyEffectRequest(
            effect=name,
            volume_id=volume.volume_id,
            parameters={"MinimumThreshold": "0", "MaximumThreshold": "10"},
        ),
        timeout=30,
    )
    assert len(r.modifiers) == 1


def test_parameter_types_and_produces_volume(pb, effects):
    """Every parameter type is one of the contract's ParameterType values (a client builds a
    widget for each), and `produces_volume` says which effects answer new volumes: neither
    Threshold nor Islands does."""
    known = set(pb.ParameterType.values()) - {pb.PARAMETER_TYPE_UNSPECIFIED}
    for e in effects.values():
        for p in e.parameters:
            assert p.type in known, f"{e.name}.{p.name}: type {p.type} is not in {sorted(known)}"
        assert isinstance(e.produces_volume, bool)
    assert not effects["Threshold"].produces_volume and not effects["Islands"].produces_volume
