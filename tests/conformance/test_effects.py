"""ApplyEffect and ApplyEffectStream: Threshold and Islands on a small synthetic volume whose
answers are computed here in numpy, both mask encodings, points, and the engine-side
masking (`apply_masking`)."""

import grpc
import numpy as np
import pytest

import conformance_lib as cl
from conformance_lib import LATTICE

ENCODINGS = ["BITS", "RUNS"]


def _tight(pb, m, mask):
    """The mask's extent is the bounding box of its voxels (masks are small on the wire)."""
    nz = np.nonzero(mask)
    if nz[0].size == 0:
        assert not m.HasField("extent")
        return
    e = m.extent
    (k0, k1), (j0, j1), (i0, i1) = [(int(a.min()), int(a.max())) for a in nz]
    assert (e.i_min, e.i_max, e.j_min, e.j_max, e.k_min, e.k_max) == (i0, i1, j0, j1, k0, k1)


def _decode(pb, m, encoding=None):
    if encoding is not None and m.HasField("extent"):
        assert m.encoding == pb.MaskEncoding.Value(f"MASK_ENCODING_{encoding}"), m.encoding
    mask = cl.mask_from_pb(pb, m, LATTICE)
    _tight(pb, m, mask)
    return mask


def _apply(stub, pb, effect, volume=None, params=None, segments=(), selected="", point=None, encoding=None, **kw):
    req = pb.ApplyEffectRequest(
        effect=effect,
        volume_id=volume.volume_id if volume is not None else "",
        segments=list(segments),
        selected_segment_id=selected,
        parameters=params or {},
        **kw,
    )
    if point is not None:
        req.point.CopyFrom(point)
    if encoding is not None:
        req.result_encoding = pb.MaskEncoding.Value(f"MASK_ENCODING_{encoding}")
    return stub.ApplyEffect(req, timeout=60)


def _only_modifier(pb, r, mode="SET", encoding=None):
    assert len(r.modifiers) == 1, r.modifiers
    m = r.modifiers[0]
    assert not m.new_segment
    assert m.mode == pb.ModificationMode.Value(f"MODIFICATION_MODE_{mode}")
    return _decode(pb, m.mask, encoding)


def _declared_reported(effects, name, r):
    declared = {x.name for x in effects[name].reported}
    assert set(r.reported) <= declared, f"{name} reported {set(r.reported) - declared} not declared in EffectInfo"


# ---------------------------------------------------------------------------------------
# Threshold


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_threshold_both_bounds_inclusive(stub, pb, effects, volume, volume_array, encoding):
    """Threshold answers one SET modifier for the selected segment: the voxels with
    MinimumThreshold <= value <= MaximumThreshold, in the requested encoding, cropped to
    its voxels, on the volume's lattice; the bounds used are reported."""
    lo, hi = -200, 300
    # Make sure both bounds occur in the volume, so inclusiveness is tested.
    assert (volume_array == lo).any() and (volume_array == hi).any()
    r = _apply(stub, pb, "Threshold", volume, {"MinimumThreshold": str(lo), "MaximumThreshold": str(hi)}, encoding=encoding)
    got = _only_modifier(pb, r, "SET", encoding)
    expected = ((volume_array >= lo) & (volume_array <= hi)).astype(np.uint8)
    np.testing.assert_array_equal(got, expected)
    assert r.reported["MinimumThreshold"] == lo and r.reported["MaximumThreshold"] == hi
    _declared_reported(effects, "Threshold", r)
    assert r.compute_seconds >= 0


def test_default_result_encoding_is_runs(stub, pb, volume, volume_array):
    """Without result_encoding the answer's masks are RUNS."""
    r = _apply(stub, pb, "Threshold", volume, {"MinimumThreshold": "0", "MaximumThreshold": "400"})
    assert r.modifiers[0].mask.encoding == pb.MASK_ENCODING_RUNS
    got = _only_modifier(pb, r)
    np.testing.assert_array_equal(got, ((volume_array >= 0) & (volume_array <= 400)).astype(np.uint8))


def test_concurrent_requests_are_answered_correctly(stub, pb, volume, volume_array):
    """Requests in flight at the same time each get their own, correct answer."""
    from concurrent.futures import ThreadPoolExecutor

    bounds = [(lo, lo + 250) for lo in range(-1000, 1000, 125)]

    def one(b):
        r = _apply(stub, pb, "Threshold", volume, {"MinimumThreshold": str(b[0]), "MaximumThreshold": str(b[1])})
        return cl.mask_from_pb(pb, r.modifiers[0].mask, LATTICE)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, bounds))
    for (lo, hi), got in zip(bounds, results):
        np.testing.assert_array_equal(got, ((volume_array >= lo) & (volume_array <= hi)).astype(np.uint8))


def test_segment_geometry_within_rounding_is_accepted(stub, pb, volume):
    """A segment whose geometry differs from the volume's only by floating-point rounding
    (1e-9 mm, as a RAS <-> LPS round trip through a 4x4 matrix gives) is accepted."""
    noisy = LATTICE.moved(
        origin=tuple(x + 1e-9 for x in LATTICE.origin),
        spacing=tuple(x * (1 + 1e-12) for x in LATTICE.spacing),
        direction=tuple(x + 1e-12 for x in LATTICE.direction),
    )
    seg = cl.islands_segment()
    s = cl.segment(pb, "sel", seg, noisy)
    r = _apply(stub, pb, "Islands", volume, {"MinimumSize": "1"}, [s], "sel")
    np.testing.assert_array_equal(_only_modifier(pb, r), cl.islands6(seg)[0])


def test_threshold_defaults_come_from_the_source(stub, pb, volume, volume_array):
    """Without parameters, Threshold uses Slicer's initial bounds: minimum + 0.25 (maximum -
    minimum) and maximum of the source (SOURCE_DERIVED_QUARTER_RANGE / MAXIMUM)."""
    lo, hi = float(volume_array.min()), float(volume_array.max())
    t = lo + 0.25 * (hi - lo)
    assert t == int(t)  # the synthetic volume spans [-1000, 1000]: t = -500
    r = _apply(stub, pb, "Threshold", volume)
    got = _only_modifier(pb, r)
    np.testing.assert_array_equal(got, ((volume_array >= t) & (volume_array <= hi)).astype(np.uint8))
    assert r.reported["MinimumThreshold"] == pytest.approx(t)
    assert r.reported["MaximumThreshold"] == pytest.approx(hi)


def test_threshold_that_selects_nothing_is_an_empty_mask(stub, pb, volume):
    """A SET modifier with no voxels is a mask without an extent (the segment is cleared)."""
    r = _apply(stub, pb, "Threshold", volume, {"MinimumThreshold": "5000", "MaximumThreshold": "6000"})
    m = r.modifiers[0].mask
    assert not m.HasField("extent") and len(m.data) == 0
    cl.assert_same_lattice(m.geometry, LATTICE)


def test_threshold_on_a_float_volume(stub, pb):
    """Threshold works on float32 sources with fractional bounds."""
    rng = np.random.default_rng(3)
    arr = rng.normal(size=LATTICE.shape).astype(np.float32)
    ref = cl.upload(stub, pb, arr, LATTICE)
    r = _apply(stub, pb, "Threshold", ref, {"MinimumThreshold": "-0.25", "MaximumThreshold": "0.5"})
    got = _only_modifier(pb, r)
    np.testing.assert_array_equal(got, ((arr >= -0.25) & (arr <= 0.5)).astype(np.uint8))


# ---------------------------------------------------------------------------------------
# Islands


@pytest.fixture(scope="module")
def seg():
    return cl.islands_segment()


def _islands(stub, pb, seg, params, encoding="RUNS", point=None, segments=None, selected="sel", volume=None):
    segs = segments if segments is not None else [cl.segment(pb, "sel", seg, LATTICE, encoding=encoding)]
    return _apply(stub, pb, "Islands", volume, params, segs, selected, point=point, encoding=encoding)


def test_reference_islands_are_as_built(seg):
    """The numpy reference finds the islands the fixture was built with."""
    sizes = [int(x.sum()) for x in cl.islands6(seg)]
    assert sizes == [27, 8, 5, 1, 1, 1]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_keep_largest_island(stub, pb, effects, seg, encoding):
    """KEEP_LARGEST_ISLAND answers SET with the largest 6-connected island (diagonal
    neighbours are separate islands); the segment may arrive in either encoding."""
    r = _islands(stub, pb, seg, {"Operation": "KEEP_LARGEST_ISLAND", "MinimumSize": "1"}, encoding)
    got = _only_modifier(pb, r, "SET", encoding)
    np.testing.assert_array_equal(got, cl.islands6(seg)[0])
    _declared_reported(effects, "Islands", r)
    if "islands" in r.reported:
        assert r.reported["islands"] == 6


def test_keep_largest_island_below_minimum_size_clears(stub, pb, seg):
    """When even the largest island is smaller than MinimumSize, KEEP_LARGEST_ISLAND clears
    the segment (Slicer's behaviour): a SET modifier with an empty mask. The default
    MinimumSize (1000) does this to the 27-voxel island."""
    for params in ({"MinimumSize": "28"}, {}):
        r = _islands(stub, pb, seg, params)
        got = _only_modifier(pb, r, "SET")
        assert not got.any()
    r = _islands(stub, pb, seg, {"MinimumSize": "27"})
    np.testing.assert_array_equal(_only_modifier(pb, r), cl.islands6(seg)[0])


def test_remove_small_islands_keeps_at_least_minimum_size(stub, pb, seg):
    """REMOVE_SMALL_ISLANDS keeps the islands of at least MinimumSize voxels (an island of
    exactly MinimumSize stays)."""
    r = _islands(stub, pb, seg, {"Operation": "REMOVE_SMALL_ISLANDS", "MinimumSize": "5"})
    got = _only_modifier(pb, r, "SET")
    isl = cl.islands6(seg)
    np.testing.assert_array_equal(got, isl[0] | isl[1] | isl[2])
    if "islands_kept" in r.reported:
        assert r.reported["islands_kept"] == 3


def test_split_islands_to_segments(stub, pb, seg):
    """SPLIT_ISLANDS_TO_SEGMENTS: the largest island replaces the selected segment (SET) and
    every other island of at least MinimumSize becomes a new segment named
    `<selected name>_2`, `_3`, ... by decreasing size (ADD)."""
    segs = [cl.segment(pb, "sel", seg, LATTICE, name="Lung")]
    r = _islands(stub, pb, seg, {"Operation": "SPLIT_ISLANDS_TO_SEGMENTS", "MinimumSize": "5"}, segments=segs)
    isl = cl.islands6(seg)
    selected = [m for m in r.modifiers if not m.new_segment]
    new = {m.new_segment_name: m for m in r.modifiers if m.new_segment}
    assert len(selected) == 1 and selected[0].mode == pb.MODIFICATION_MODE_SET
    np.testing.assert_array_equal(_decode(pb, selected[0].mask), isl[0])
    assert sorted(new) == ["Lung_2", "Lung_3"], sorted(new)
    for name, island in (("Lung_2", isl[1]), ("Lung_3", isl[2])):
        assert new[name].mode == pb.MODIFICATION_MODE_ADD
        np.testing.assert_array_equal(_decode(pb, new[name].mask), island)


def _ijk(pb, i, j, k):
    return pb.Point(ijk=pb.PointIjk(i=i, j=j, k=k))


def _lps(pb, ijk):
    x, y, z = LATTICE.ijk_to_lps(ijk)
    return pb.Point(lps=pb.PointLps(x=x, y=y, z=z))


def test_keep_selected_island_at_an_ijk_point(stub, pb, seg):
    """KEEP_SELECTED_ISLAND at a voxel index answers SET with the island under the point."""
    r = _islands(stub, pb, seg, {"Operation": "KEEP_SELECTED_ISLAND"}, point=_ijk(pb, 5, 6, 1))
    np.testing.assert_array_equal(_only_modifier(pb, r, "SET"), cl.islands6(seg)[1])


def test_remove_selected_island(stub, pb, seg):
    """REMOVE_SELECTED_ISLAND answers REMOVE with the island under the point."""
    r = _islands(stub, pb, seg, {"Operation": "REMOVE_SELECTED_ISLAND"}, point=_ijk(pb, 8, 8, 4))
    np.testing.assert_array_equal(_only_modifier(pb, r, "REMOVE"), cl.islands6(seg)[2])


def test_click_on_background_changes_nothing(stub, pb, seg):
    """A click outside the segment's islands changes nothing: no modifiers."""
    r = _islands(stub, pb, seg, {"Operation": "KEEP_SELECTED_ISLAND"}, point=_ijk(pb, 4, 6, 1))
    assert list(r.modifiers) == []


@pytest.mark.parametrize(
    "ijk, inside",
    [
        ((5.0, 6.0, 1.0), True),  # the centre of a voxel of island B
        ((5.3, 6.4, 1.4), True),
        ((4.5, 6.0, 1.0), True),  # exactly half way: floor(4.5 + 0.5) = 5
        ((4.49, 6.0, 1.0), False),  # rounds to i = 4, next to B, empty
        ((6.49, 7.49, 2.49), True),
        ((5.0, 6.0, 0.5), True),  # floor(0.5 + 0.5) = 1
        ((5.0, 6.0, 0.45), False),  # k = 0, below B
        ((5.0, 5.6, 1.0), True),  # j = 6
        ((5.0, 5.4, 1.0), False),  # j = 5, beside B
    ],
)
def test_point_in_lps_rounds_to_the_nearest_voxel(stub, pb, seg, ijk, inside):
    """A PointLps is mapped through the volume's geometry (direction columns = axis unit
    vectors, row-major) and rounded with floor(x + 0.5): a click at that position keeps
    island B exactly when the rounded index is inside B."""
    r = _islands(stub, pb, seg, {"Operation": "KEEP_SELECTED_ISLAND"}, point=_lps(pb, ijk))
    if inside:
        np.testing.assert_array_equal(_only_modifier(pb, r, "SET"), cl.islands6(seg)[1])
    else:
        assert list(r.modifiers) == []


def test_add_selected_island_fills_an_enclosed_hole(stub, pb):
    """ADD_SELECTED_ISLAND at a hole enclosed by the segment answers ADD with the hole."""
    ring = np.zeros(LATTICE.shape, np.uint8)
    ring[1:4, 2:7, 2:7] = 1
    ring[2, 4, 4] = 0  # a one-voxel cavity
    segs = [cl.segment(pb, "sel", ring, LATTICE)]
    r = _apply(stub, pb, "Islands", None, {"Operation": "ADD_SELECTED_ISLAND"}, segs, "sel", point=_ijk(pb, 4, 4, 2))
    hole = np.zeros_like(ring)
    hole[2, 4, 4] = 1
    np.testing.assert_array_equal(_only_modifier(pb, r, "ADD"), hole)


def test_islands_of_the_volume_lattice(stub, pb, volume, seg):
    """With a volume_id the volume's lattice is the reference; the answer is the same."""
    r = _islands(stub, pb, seg, {"MinimumSize": "1"}, volume=volume)
    np.testing.assert_array_equal(_only_modifier(pb, r), cl.islands6(seg)[0])


# ---------------------------------------------------------------------------------------
# Streaming


def test_apply_effect_stream_gives_progress_then_the_result(stub, pb, volume, volume_array):
    """ApplyEffectStream yields progress events (fraction in 0..1, not decreasing) and then
    exactly one result, the last event, equal to ApplyEffect's."""
    req = pb.ApplyEffectRequest(
        effect="Threshold", volume_id=volume.volume_id, parameters={"MinimumThreshold": "-10", "MaximumThreshold": "700"}
    )
    events = list(stub.ApplyEffectStream(req, timeout=60))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[-1] == "result" and kinds.count("result") == 1, kinds
    assert "progress" in kinds, "no progress event before the result"
    fractions = [e.progress.fraction for e in events if e.WhichOneof("event") == "progress"]
    assert all(0.0 <= f <= 1.0 for f in fractions) and fractions == sorted(fractions), fractions
    got = _only_modifier(pb, events[-1].result)
    np.testing.assert_array_equal(got, ((volume_array >= -10) & (volume_array <= 700)).astype(np.uint8))


def test_apply_effect_stream_can_be_cancelled(stub, pb, engine, volume):
    """Cancelling ApplyEffectStream after its first event ends the call on the client with
    CANCELLED, and the engine goes on serving."""
    call = stub.ApplyEffectStream(pb.ApplyEffectRequest(effect="Threshold", volume_id=volume.volume_id), timeout=60)
    first = next(call)
    assert first.WhichOneof("event") in ("progress", "result")
    if call.cancel():  # False when the call had already finished: nothing to cancel
        with pytest.raises(grpc.RpcError) as e:
            for _ in call:
                pass
        assert e.value.code() == grpc.StatusCode.CANCELLED
    engine.assert_serving("after a cancelled stream")


# ---------------------------------------------------------------------------------------
# apply_masking: the engine applies the modifiers with Slicer's masking


@pytest.fixture(scope="module")
def three_segments():
    """The selected segment and two others (one hidden), overlapping the threshold."""
    rng = np.random.default_rng(11)
    sel = (rng.random(LATTICE.shape) < 0.3).astype(np.uint8)
    vis = (rng.random(LATTICE.shape) < 0.3).astype(np.uint8)
    hid = (rng.random(LATTICE.shape) < 0.3).astype(np.uint8)
    return sel, vis, hid


def _masked(stub, pb, volume, segs_arrays, masking, selected="sel", encoding="RUNS"):
    sel, vis, hid = segs_arrays
    segs = [
        cl.segment(pb, "sel", sel, LATTICE, encoding=encoding),
        cl.segment(pb, "vis", vis, LATTICE, visible=True, encoding=encoding),
        cl.segment(pb, "hid", hid, LATTICE, visible=False, encoding=encoding),
    ]
    r = _apply(
        stub,
        pb,
        "Threshold",
        volume,
        {"MinimumThreshold": "-300", "MaximumThreshold": "400"},
        segs,
        selected,
        encoding=encoding,
        masking=masking,
        apply_masking=True,
    )
    return r, {s.id: _decode(pb, s.mask) for s in r.segments}


def _expect_segments(got, before, after):
    """`got` holds exactly the segments that changed, each whole."""
    changed = {k for k in after if k not in before or not np.array_equal(after[k], before[k])}
    assert set(got) == changed, (sorted(got), sorted(changed))
    for k in changed:
        np.testing.assert_array_equal(got[k], after[k], err_msg=k)


@pytest.mark.parametrize(
    "mode, overwritten",
    [("ALL_SEGMENTS", {"vis", "hid"}), ("VISIBLE_SEGMENTS", {"vis"}), ("NONE", set())],
)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_apply_masking_overwrite_modes(stub, pb, volume, volume_array, three_segments, mode, overwritten, encoding):
    """With apply_masking, a SET result replaces the selected segment and is removed from
    all other segments, the visible ones, or none (OverwriteMode); the answer lists every
    segment that changed, whole, and still carries the modifiers."""
    sel, vis, hid = three_segments
    m = ((volume_array >= -300) & (volume_array <= 400)).astype(np.uint8)
    masking = pb.Masking(overwrite_mode=pb.OverwriteMode.Value(f"OVERWRITE_MODE_{mode}"))
    r, got = _masked(stub, pb, volume, three_segments, masking, encoding=encoding)
    before = {"sel": sel, "vis": vis, "hid": hid}
    after = {"sel": m, "vis": vis & (1 - m) if "vis" in overwritten else vis, "hid": hid & (1 - m) if "hid" in overwritten else hid}
    _expect_segments(got, before, after)
    np.testing.assert_array_equal(_only_modifier(pb, r), m)


def _set_with_lock(m, sel, lock, others):
    """Slicer's ModifySegmentByLabelmap for SET with a lock image L: M' = (M and not L) or
    (S and L); the selected segment becomes M' and every overwritten segment loses M'
    (so where S was kept inside the locked area, overlaps with S are removed too)."""
    mp = (m & (1 - lock)) | (sel & lock)
    return mp, {k: v & (1 - mp) for k, v in others.items()}


def test_apply_masking_intensity_range(stub, pb, volume, volume_array, three_segments):
    """An editable intensity range (inclusive) locks the voxels outside it: there the
    selected segment keeps its voxels; the other segments lose the new selected segment
    (Slicer's ModifySegmentByLabelmap, overwrite all)."""
    sel, vis, hid = three_segments
    m = ((volume_array >= -300) & (volume_array <= 400)).astype(np.uint8)
    inr = ((volume_array >= 0) & (volume_array <= 1000)).astype(np.uint8)
    masking = pb.Masking(intensity_range_enabled=True, intensity_minimum=0, intensity_maximum=1000)
    _, got = _masked(stub, pb, volume, three_segments, masking)
    new_sel, others = _set_with_lock(m, sel, 1 - inr, {"vis": vis, "hid": hid})
    _expect_segments(got, {"sel": sel, "vis": vis, "hid": hid}, {"sel": new_sel, **others})


def test_apply_masking_outside_all_segments(stub, pb, volume, volume_array, three_segments):
    """Editable area OUTSIDE_ALL_SEGMENTS locks the other segments' voxels: the threshold
    fills only where no other segment is, the selected segment is kept where they are."""
    sel, vis, hid = three_segments
    m = ((volume_array >= -300) & (volume_array <= 400)).astype(np.uint8)
    masking = pb.Masking(mask_mode=pb.MASK_MODE_OUTSIDE_ALL_SEGMENTS)
    _, got = _masked(stub, pb, volume, three_segments, masking)
    new_sel, others = _set_with_lock(m, sel, vis | hid, {"vis": vis, "hid": hid})
    _expect_segments(got, {"sel": sel, "vis": vis, "hid": hid}, {"sel": new_sel, **others})


def test_apply_masking_creates_the_selected_segment(stub, pb, volume, volume_array, three_segments):
    """A selected_segment_id that is not among the segments is a new, empty segment: it is
    answered under that id."""
    sel, vis, hid = three_segments
    m = ((volume_array >= -300) & (volume_array <= 400)).astype(np.uint8)
    _, got = _masked(stub, pb, volume, three_segments, pb.Masking(), selected="brand-new")
    after = {"sel": sel & (1 - m), "vis": vis & (1 - m), "hid": hid & (1 - m), "brand-new": m}
    _expect_segments(got, {"sel": sel, "vis": vis, "hid": hid}, after)


# ---------------------------------------------------------------------------------------
# More points (ApplyEffectRequest.points), streams ending, answers without volumes


def _lps_text(x: float) -> str:
    return f"{x:g}"


def _names_point(details: str, n: int, coords) -> bool:
    """The message names the point: its position in the request ("point N", `point` = 0,
    `points[m]` = m + 1) or its coordinates."""
    d = details.lower()
    return f"point {n}" in d or all(_lps_text(c) in d for c in coords)


def test_more_points_in_ijk_and_lps_are_decoded(stub, pb, seg):
    """Points after `point` may be indices or LPS positions, mixed; a click effect keeps the
    island under the first one (`point`), whatever the others are."""
    isl = cl.islands6(seg)
    others = [_lps(pb, (8.0, 8.0, 4.0)), _ijk(pb, 2, 2, 2), _lps(pb, (0.2, 0.3, 5.4))]
    r = _islands(stub, pb, seg, {"Operation": "KEEP_SELECTED_ISLAND"}, point=_ijk(pb, 5, 6, 1))
    r_more = _apply(stub, pb, "Islands", None, {"Operation": "KEEP_SELECTED_ISLAND"},
                    [cl.segment(pb, "sel", seg, LATTICE)], "sel", point=_lps(pb, (5.2, 6.4, 1.3)),
                    points=others)
    np.testing.assert_array_equal(_only_modifier(pb, r, "SET"), isl[1])
    np.testing.assert_array_equal(_only_modifier(pb, r_more, "SET"), isl[1])


@pytest.mark.parametrize("kind", ["ijk", "lps"])
def test_a_point_outside_the_volume_is_refused_naming_it(stub, pb, seg, expect_error, kind):
    """Any point outside the lattice, even one after a valid `point`, is INVALID_ARGUMENT
    with a message that names the point (its place in the request or its coordinates)."""
    if kind == "ijk":
        bad, coords = _ijk(pb, 40, 6, 1), (40, 6, 1)
    else:
        bad = _lps(pb, (5.0, 6.0, 9.0))   # k = 9 of 6 slices
        coords = tuple(float(x) for x in LATTICE.ijk_to_lps((5.0, 6.0, 9.0)))
    req = pb.ApplyEffectRequest(effect="Islands", segments=[cl.segment(pb, "sel", seg, LATTICE)],
                                selected_segment_id="sel", parameters={"Operation": "KEEP_SELECTED_ISLAND"})
    req.point.CopyFrom(_ijk(pb, 5, 6, 1))
    req.points.extend([_ijk(pb, 1, 1, 1), bad])
    e = expect_error(lambda: stub.ApplyEffect(req, timeout=30), grpc.StatusCode.INVALID_ARGUMENT, "point")
    assert _names_point(e.details(), 2, coords), e.details()


@pytest.mark.parametrize("effect, params, needs", [
    ("Threshold", {"MinimumThreshold": "-10", "MaximumThreshold": "700"}, "volume"),
    ("Islands", {"Operation": "REMOVE_SMALL_ISLANDS", "MinimumSize": "5"}, "segment"),
])
def test_apply_effect_stream_ends_with_progress_1_then_the_result(stub, pb, volume, seg, effect, params, needs):
    """The last two events of ApplyEffectStream are a progress of 1.0 and the result; an
    effect that makes no volume answers none."""
    req = pb.ApplyEffectRequest(effect=effect, parameters=params)
    if needs == "volume":
        req.volume_id = volume.volume_id
    else:
        req.segments.append(cl.segment(pb, "sel", seg, LATTICE))
        req.selected_segment_id = "sel"
    events = list(stub.ApplyEffectStream(req, timeout=60))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[-2:] == ["progress", "result"], kinds
    assert events[-2].progress.fraction == 1.0
    assert len(events[-1].result.modifiers) >= 1 and list(events[-1].result.volumes) == []
