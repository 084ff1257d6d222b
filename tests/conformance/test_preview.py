"""Preview sessions (StartPreview, UpdatePreview, ApplyPreview, CancelPreview) of every
effect the engine marks `preview`: the contract, whatever the algorithm.

Two seed segments (small cubes near opposite corners of the synthetic volume) are the
input; each preview effect must answer a preview of its input segments on the volume's
lattice inside its working box, keep the seeds, accept an update with a seed edit, apply
as Set modifiers of those segments (closing the session), and answer NOT_FOUND for a
closed session; Cancel is always accepted.
"""

import grpc
import numpy as np
import pytest

import conformance_lib as cl
from conformance_lib import LATTICE


def _cube(lo, size=2):
    m = np.zeros(LATTICE.shape, np.uint8)
    k, j, i = lo
    m[k:k + size, j:j + size, i:i + size] = 1
    return m


def _segments(pb, masks):
    return [pb.SegmentMask(id=sid, name=sid, visible=True, mask=cl.mask_to_pb(pb, m, LATTICE))
            for sid, m in masks.items()]


@pytest.fixture(scope="module")
def seeds():
    nk, nj, ni = LATTICE.shape
    a = _cube((nk // 2 - 1, 3, 3))
    b = _cube((nk // 2 - 1, nj - 5, ni - 5))
    return {"a": a, "b": b}


def _preview_effects(effects):
    return sorted(name for name, e in effects.items() if e.preview)


def test_non_preview_effects_are_refused(stub, pb, effects, volume, seeds, expect_error):
    plain = next(name for name, e in effects.items() if not e.preview)
    expect_error(lambda: stub.StartPreview(pb.StartPreviewRequest(
        effect=plain, volume_id=volume.volume_id, segments=_segments(pb, seeds),
        selected_segment_id="a"), timeout=60), grpc.StatusCode.INVALID_ARGUMENT, plain)


def test_unknown_sessions_are_not_found_and_cancel_is_always_accepted(stub, pb, expect_error):
    expect_error(lambda: stub.UpdatePreview(pb.UpdatePreviewRequest(session_id="no-such-session"),
                                            timeout=10), grpc.StatusCode.NOT_FOUND)
    expect_error(lambda: stub.ApplyPreview(pb.PreviewSessionRequest(session_id="no-such-session"),
                                           timeout=10), grpc.StatusCode.NOT_FOUND)
    stub.CancelPreview(pb.PreviewSessionRequest(session_id="no-such-session"), timeout=10)


def test_every_preview_effect_follows_the_session_contract(stub, pb, effects, volume, seeds, expect_error):
    names = _preview_effects(effects)
    if not names:
        pytest.skip("the engine lists no preview effect")
    for name in names:
        start = stub.StartPreview(pb.StartPreviewRequest(
            effect=name, volume_id=volume.volume_id, segments=_segments(pb, seeds),
            selected_segment_id="a"), timeout=120)
        assert start.session_id, name
        assert not start.empty, name
        ids = [s.id for s in start.segments]
        assert ids and set(ids) <= set(seeds), (name, ids)
        box = start.working_box
        nk, nj, ni = LATTICE.shape
        assert 0 <= box.i_min <= box.i_max < ni and 0 <= box.j_min <= box.j_max < nj, name
        assert 0 <= box.k_min <= box.k_max < nk, name
        for s in start.segments:
            mask = cl.mask_from_pb(pb, s.mask, LATTICE)
            assert mask[seeds[s.id] != 0].all(), f"{name}: the preview of {s.id} keeps its seed"
            inside = np.zeros_like(mask)
            inside[box.k_min:box.k_max + 1, box.j_min:box.j_max + 1, box.i_min:box.i_max + 1] = 1
            assert not (mask & (inside == 0)).any(), f"{name}: {s.id} outside the working box"

        # A seed edit: one more voxel next to segment a's cube.
        added = np.zeros(LATTICE.shape, np.uint8)
        k, j, i = np.argwhere(seeds["a"])[0]
        added[k, j, i + 2] = 1
        update = stub.UpdatePreview(pb.UpdatePreviewRequest(
            session_id=start.session_id,
            edits=[pb.SeedEdit(segment_id="a", added=cl.mask_to_pb(pb, added, LATTICE))]), timeout=120)
        assert update.session_id == start.session_id
        last = {s.id: cl.mask_from_pb(pb, s.mask, LATTICE) for s in update.segments}
        if "a" in last:
            assert last["a"][k, j, i + 2] == 1, f"{name}: the added seed voxel is in the preview"

        applied = stub.ApplyPreview(pb.PreviewSessionRequest(session_id=start.session_id), timeout=60)
        assert applied.modifiers, name
        for m in applied.modifiers:
            assert m.mode == pb.ModificationMode.Value("MODIFICATION_MODE_SET"), name
            assert m.target_segment_id in last, (name, m.target_segment_id)
            assert np.array_equal(cl.mask_from_pb(pb, m.mask, LATTICE), last[m.target_segment_id]), name
        expect_error(lambda: stub.UpdatePreview(pb.UpdatePreviewRequest(session_id=start.session_id),
                                                timeout=10), grpc.StatusCode.NOT_FOUND)
        stub.CancelPreview(pb.PreviewSessionRequest(session_id=start.session_id), timeout=10)
