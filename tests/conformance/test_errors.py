"""Error cases: each is refused with the contract's status code and a message that names what
is wrong, and the engine goes on serving afterwards (every `expect_error` ends with a
GetEngineInfo)."""

import grpc
import numpy as np
import pytest

import conformance_lib as cl
from conformance_lib import LATTICE

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
TOO_BIG = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
UNKNOWN_ID = "0123456789abcdef0123456789abcdef"


def _req(pb, volume=None, **kw):
    kw.setdefault("effect", "Threshold")
    return pb.ApplyEffectRequest(volume_id=volume.volume_id if volume is not None else "", **kw)


def _both(stub, req):
    """The same request through ApplyEffect and ApplyEffectStream."""
    return [lambda: stub.ApplyEffect(req, timeout=30), lambda: stub.ApplyEffectStream(req, timeout=30)]


# ---------------------------------------------------------------------------------------
# Unknown volumes


def test_apply_to_unknown_volume_is_not_found(stub, pb, expect_error):
    """ApplyEffect(Stream) naming a volume id the engine does not hold is NOT_FOUND, so the
    client knows to upload the volume again."""
    for call in _both(stub, pb.ApplyEffectRequest(effect="Threshold", volume_id=UNKNOWN_ID)):
        expect_error(call, NOT_FOUND)


# ---------------------------------------------------------------------------------------
# Segments and points


def test_segment_geometry_not_matching_the_volume(stub, pb, volume, expect_error):
    """A segment mask whose geometry is not the volume's (another origin, size, spacing or
    direction) is INVALID_ARGUMENT, naming the segment."""
    seg = cl.islands_segment()
    for lat, arr in (
        (LATTICE.moved(origin=(-20.0, 35.5, 101.25)), seg),
        (LATTICE.moved(spacing=(0.5, 1.25, 2.5)), seg),
        (LATTICE.moved(direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)), seg),
        (LATTICE.moved(size=(12, 10, 7)), np.concatenate([seg, seg[:1]])),
    ):
        s = cl.segment(pb, "misfit", arr, lat)
        req = _req(pb, volume, effect="Islands", segments=[s], selected_segment_id="misfit")
        for call in _both(stub, req):
            expect_error(call, INVALID, "misfit")


def test_bad_mask_data(stub, pb, volume, expect_error):
    """Mask data that does not fill its extent (runs adding up to another count, a bit array
    of the wrong length, an extent past the lattice) is INVALID_ARGUMENT."""
    seg = cl.islands_segment()
    runs = cl.segment(pb, "runs", seg, LATTICE)
    runs.mask.data = runs.mask.data + cl._varint(3)
    bits = cl.segment(pb, "bits", seg, LATTICE, encoding="BITS")
    bits.mask.data = bits.mask.data + b"\x00"
    past = cl.segment(pb, "past", seg, LATTICE)
    past.mask.extent.i_max = LATTICE.size[0]
    for s in (runs, bits, past):
        req = _req(pb, volume, effect="Islands", segments=[s], selected_segment_id=s.id)
        expect_error(lambda: stub.ApplyEffect(req, timeout=30), INVALID, s.id)


@pytest.mark.parametrize("ijk", [(12, 0, 0), (0, 10, 0), (0, 0, 6), (4000000000, 0, 0)])
def test_point_outside_the_volume_ijk(stub, pb, volume, ijk, expect_error):
    """A PointIjk outside the lattice is INVALID_ARGUMENT."""
    s = cl.segment(pb, "sel", cl.islands_segment(), LATTICE)
    req = _req(pb, volume, effect="Islands", segments=[s], selected_segment_id="sel", parameters={"Operation": "KEEP_SELECTED_ISLAND"})
    req.point.ijk.i, req.point.ijk.j, req.point.ijk.k = ijk
    for call in _both(stub, req):
        expect_error(call, INVALID, "point")


@pytest.mark.parametrize("ijk", [(-0.51, 0, 0), (11.5, 0, 0), (0, 0, 5.5), (0, -3, 0), (1e9, 0, 0)])
def test_point_outside_the_volume_lps(stub, pb, volume, ijk, expect_error):
    """A PointLps that rounds (floor(x + 0.5)) to an index outside the lattice is
    INVALID_ARGUMENT."""
    s = cl.segment(pb, "sel", cl.islands_segment(), LATTICE)
    x, y, z = LATTICE.ijk_to_lps(ijk)
    req = _req(pb, volume, effect="Islands", segments=[s], selected_segment_id="sel", parameters={"Operation": "REMOVE_SELECTED_ISLAND"})
    req.point.lps.x, req.point.lps.y, req.point.lps.z = x, y, z
    for call in _both(stub, req):
        expect_error(call, INVALID, "point")


def test_click_operation_without_a_point(stub, pb, volume, expect_error):
    """An operation whose choice needs a point (EFFECT_INPUT_POINT) without one is
    INVALID_ARGUMENT."""
    s = cl.segment(pb, "sel", cl.islands_segment(), LATTICE)
    req = _req(pb, volume, effect="Islands", segments=[s], selected_segment_id="sel", parameters={"Operation": "KEEP_SELECTED_ISLAND"})
    expect_error(lambda: stub.ApplyEffect(req, timeout=30), INVALID, "point")


def test_effect_needing_a_source_without_volume(stub, pb, expect_error):
    """An effect whose inputs include the source volume, called without volume_id, is
    INVALID_ARGUMENT."""
    s = cl.segment(pb, "sel", cl.islands_segment(), LATTICE)
    req = _req(pb, effect="Threshold", segments=[s], selected_segment_id="sel")
    expect_error(lambda: stub.ApplyEffect(req, timeout=30), INVALID)


def test_segment_ids_must_be_unique(stub, pb, volume, expect_error):
    """Two segments with the same id are INVALID_ARGUMENT."""
    s = cl.segment(pb, "twice", cl.islands_segment(), LATTICE)
    req = _req(pb, volume, effect="Islands", segments=[s, s], selected_segment_id="twice")
    expect_error(lambda: stub.ApplyEffect(req, timeout=30), INVALID, "twice")


# ---------------------------------------------------------------------------------------
# Effects and parameters


def test_unknown_effect(stub, pb, volume, expect_error):
    """An effect the engine does not list is INVALID_ARGUMENT, naming it."""
    for call in _both(stub, _req(pb, volume, effect="Teleport")):
        expect_error(call, INVALID, "Teleport")


def test_unknown_parameter(stub, pb, volume, expect_error):
    """A parameter the effect does not declare is INVALID_ARGUMENT, naming it (a misspelt
    parameter must not silently fall back to its default)."""
    req = _req(pb, volume, parameters={"MinimumTreshold": "5"})
    for call in _both(stub, req):
        expect_error(call, INVALID, "MinimumTreshold")


@pytest.mark.parametrize(
    "effect, name, value",
    [
        ("Threshold", "MinimumThreshold", "abc"),
        ("Threshold", "MaximumThreshold", "nan"),
        ("Threshold", "AutoThreshold", "maybe"),
        ("Threshold", "AutoThresholdMethod", "GUESS"),
        ("Islands", "MinimumSize", "-3"),
        ("Islands", "MinimumSize", "12.5"),
        ("Islands", "Operation", "KEEP"),
    ],
)
def test_bad_parameter_value(stub, pb, volume, effect, name, value, expect_error):
    """A value that does not parse as the parameter's type, is out of its range or is not
    one of its choices is INVALID_ARGUMENT, naming the parameter."""
    s = cl.segment(pb, "sel", cl.islands_segment(), LATTICE)
    req = _req(pb, volume, effect=effect, segments=[s], selected_segment_id="sel", parameters={name: value})
    if effect == "Threshold" and name.startswith("AutoThreshold") and name != "AutoThreshold":
        req.parameters["AutoThreshold"] = "1"
    for call in _both(stub, req):
        expect_error(call, INVALID, name)


def test_unknown_mask_segment(stub, pb, volume, expect_error):
    """apply_masking with MASK_MODE_INSIDE_SINGLE_SEGMENT naming a segment that was not sent
    is INVALID_ARGUMENT, naming it."""
    req = _req(pb, volume, apply_masking=True, parameters={"MinimumThreshold": "0", "MaximumThreshold": "1"})
    req.masking.mask_mode = pb.MASK_MODE_INSIDE_SINGLE_SEGMENT
    req.masking.mask_segment_id = "ghost-seg"
    expect_error(lambda: stub.ApplyEffect(req, timeout=30), INVALID, "ghost-seg")


@pytest.mark.parametrize("field", ["mask_mode", "overwrite_mode"])
def test_unknown_masking_enum(stub, pb, volume, field, expect_error):
    """An unknown MaskMode or OverwriteMode value is INVALID_ARGUMENT, naming the field."""
    req = _req(pb, volume, apply_masking=True, parameters={"MinimumThreshold": "0", "MaximumThreshold": "1"})
    setattr(req.masking, field, 42)
    expect_error(lambda: stub.ApplyEffect(req, timeout=30), INVALID, field)


def test_unknown_mask_encoding(stub, pb, volume, expect_error):
    """A segment mask in an unknown MaskEncoding is INVALID_ARGUMENT."""
    s = cl.segment(pb, "odd", cl.islands_segment(), LATTICE)
    s.mask.encoding = 42
    req = _req(pb, volume, effect="Islands", segments=[s], selected_segment_id="odd")
    expect_error(lambda: stub.ApplyEffect(req, timeout=30), INVALID, "encoding")


# ---------------------------------------------------------------------------------------
# Uploads


def _header(pb, arr, lattice=LATTICE, **kw):
    h = cl.volume_header(pb, arr, lattice)
    for k, v in kw.items():
        setattr(h, k, v)
    return pb.UploadVolumeRequest(header=h)


def _upload(stub, messages):
    return lambda: stub.UploadVolume(iter(messages), timeout=60)


@pytest.fixture
def small(pb):
    arr = np.arange(np.prod(LATTICE.shape), dtype=np.int16).reshape(LATTICE.shape)
    return arr, arr.tobytes()


def test_upload_chunk_out_of_order(stub, pb, small, expect_error):
    """A chunk whose offset is not the number of bytes received so far is INVALID_ARGUMENT."""
    arr, data = small
    msgs = [_header(pb, arr), pb.UploadVolumeRequest(data=data[100:], offset=100), pb.UploadVolumeRequest(data=data[:100], offset=0)]
    expect_error(_upload(stub, msgs), INVALID, "offset")
    msgs = [_header(pb, arr), pb.UploadVolumeRequest(data=data[:100], offset=0), pb.UploadVolumeRequest(data=data[100:], offset=0)]
    expect_error(_upload(stub, msgs), INVALID, "offset")


def test_upload_chunk_past_the_total(stub, pb, small, expect_error):
    """Bytes beyond the declared total are INVALID_ARGUMENT."""
    arr, data = small
    msgs = [_header(pb, arr), pb.UploadVolumeRequest(data=data, offset=0), pb.UploadVolumeRequest(data=b"\0\0", offset=len(data))]
    expect_error(_upload(stub, msgs), INVALID)


def test_upload_short_of_the_total(stub, pb, small, expect_error):
    """A stream that ends before the declared total is INVALID_ARGUMENT."""
    arr, data = small
    msgs = [_header(pb, arr), pb.UploadVolumeRequest(data=data[:-2], offset=0)]
    expect_error(_upload(stub, msgs), INVALID)


def test_upload_total_bytes_inconsistent_with_size(stub, pb, small, expect_error):
    """total_bytes other than size[0] * size[1] * size[2] * bytes per value is
    INVALID_ARGUMENT, naming total_bytes."""
    arr, data = small
    msgs = [_header(pb, arr, total_bytes=len(data) + 2), pb.UploadVolumeRequest(data=data + b"\0\0", offset=0)]
    expect_error(_upload(stub, msgs), INVALID, "total_bytes")
    msgs = [_header(pb, arr, total_bytes=len(data) // 2), pb.UploadVolumeRequest(data=data[: len(data) // 2], offset=0)]
    expect_error(_upload(stub, msgs), INVALID, "total_bytes")


def test_upload_without_header(stub, pb, small, expect_error):
    """A stream whose first message is not the header, or an empty stream, is
    INVALID_ARGUMENT naming the header; so is a second header."""
    arr, data = small
    expect_error(_upload(stub, [pb.UploadVolumeRequest(data=data, offset=0)]), INVALID, "header")
    expect_error(_upload(stub, []), INVALID, "header")
    msgs = [_header(pb, arr), _header(pb, arr), pb.UploadVolumeRequest(data=data, offset=0)]
    expect_error(_upload(stub, msgs), INVALID, "header")


def test_upload_absurd_dimensions(stub, pb, expect_error):
    """A header declaring 100000^3 voxels is refused at once (INVALID_ARGUMENT or
    RESOURCE_EXHAUSTED) without allocating it: the engine stays up."""
    lat = LATTICE.moved(size=(100000, 100000, 100000))
    h = pb.VolumeHeader(geometry=lat.to_pb(pb), scalar_type=pb.SCALAR_TYPE_INT16, total_bytes=2 * 100000**3)
    expect_error(_upload(stub, [pb.UploadVolumeRequest(header=h)]), TOO_BIG)
    # A size that fits the voxel limit but not the cache: still refused before allocating.
    lat = LATTICE.moved(size=(2048, 2048, 2048))
    h = pb.VolumeHeader(geometry=lat.to_pb(pb), scalar_type=pb.SCALAR_TYPE_FLOAT64, total_bytes=8 * 2048**3)
    msgs = [pb.UploadVolumeRequest(header=h), pb.UploadVolumeRequest(data=b"\0" * 1024, offset=0)]
    expect_error(_upload(stub, msgs), TOO_BIG)


@pytest.mark.parametrize(
    "field, value, word",
    [
        ("size", [12, 10], "size"),
        ("size", [12, 0, 6], "size"),
        ("spacing", [0.5, 0.0, 2.0], "spacing"),
        ("spacing", [0.5, float("nan"), 2.0], "spacing"),
        ("origin", [0.0, 0.0], "origin"),
        ("direction", [1.0, 0.0, 0.0], "direction"),
        ("direction", [0.0] * 9, "direction"),
    ],
)
def test_upload_bad_geometry(stub, pb, small, field, value, word, expect_error):
    """A geometry without 3 positive sizes, 3 finite origin values, 3 positive spacings or
    an invertible 3x3 direction is INVALID_ARGUMENT, naming the field."""
    arr, data = small
    msg = _header(pb, arr)
    g = msg.header.geometry
    del getattr(g, field)[:]
    getattr(g, field).extend(value)
    expect_error(_upload(stub, [msg, pb.UploadVolumeRequest(data=data, offset=0)]), INVALID, word)


def test_upload_unknown_scalar_type(stub, pb, small, expect_error):
    """SCALAR_TYPE_UNSPECIFIED (or an unknown value) is INVALID_ARGUMENT."""
    arr, data = small
    for t in (0, 99):
        msgs = [_header(pb, arr, scalar_type=t), pb.UploadVolumeRequest(data=data, offset=0)]
        expect_error(_upload(stub, msgs), INVALID, "scalar_type")


def test_upload_cancelled_by_the_client(stub, pb, engine):
    """A client that cancels an upload half way leaves the engine serving."""
    import threading

    arr = np.zeros((64, 256, 256), np.int16)
    lat = cl.Lattice(size=(256, 256, 64))
    sent = threading.Event()

    def messages():
        for n, m in enumerate(cl.upload_messages(pb, arr, lat, chunk_bytes=1 << 16)):
            if n == 20:
                sent.set()
                threading.Event().wait(5)  # the client cancels meanwhile
            yield m

    future = stub.UploadVolume.future(messages(), timeout=60)
    assert sent.wait(30)
    future.cancel()
    with pytest.raises(grpc.FutureCancelledError):
        future.result()
    engine.assert_serving("after a cancelled upload")


def test_the_engine_still_serves(engine):
    """After all the refused requests the engine answers GetEngineInfo."""
    engine.assert_serving("at the end of the error cases")


def test_not_supported_is_unimplemented(stub, pb, volume_array, expect_error):
    """A case the effect does not implement is UNIMPLEMENTED with "not supported", not a
    bad request: in segkit, the automatic threshold Li on a constant image, where ITK reads
    past its histogram and has no defined result. An engine that defines one answers it
    instead."""
    flat = cl.upload(stub, pb, np.full_like(volume_array, 7), LATTICE, name="constant")
    req = _req(pb, flat, effect="Threshold",
               parameters={"AutoThreshold": "1", "AutoThresholdMethod": "LI"})
    try:
        stub.ApplyEffect(req, timeout=30)
    except grpc.RpcError as e:
        assert "not supported" in e.details(), (e.code(), e.details())
        assert e.code() == grpc.StatusCode.UNIMPLEMENTED, (e.code(), e.details())
        assert e.code() == grpc.StatusCode.UNIMPLEMENTED, (e.code(), e.details())
