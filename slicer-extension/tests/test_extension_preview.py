"""The auto-complete flow through `PreviewController` and the real engine, on a MRML scene
of CTChest4 (slicer-core): Initialize off the GUI thread, the preview node, seed edits sent
as deltas, a parameter that only trims, Apply in one undo step with the user's masking, and
Cancel leaving the segmentation untouched.

Fast Marching (the selected segment grows into the lung) is the effect here because it
needs one seed segment; the flow is the same for every effect the engine marks `preview`.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import slicer_reference as ref
from segkit_slicer.client import EngineError
from segkit_slicer.preview import PREVIEW_NODE_SUFFIX, PreviewController


def off_gui_thread(function, *args):
    """Runs `function` on another thread, as the effect's BackgroundCall does."""
    box = {}

    def run():
        try:
            box["value"] = function(*args)
        except BaseException as e:  # pragma: no cover - re-raised below
            box["error"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join(120)
    assert not t.is_alive(), "the engine call did not finish"
    if "error" in box:
        raise box["error"]
    return box["value"]


def lung_seed(expert):
    """A small cube of seed voxels inside the right lung."""
    inside = np.argwhere(expert == 5)
    k, j, i = inside[len(inside) // 2]
    seed = np.zeros(expert.shape, dtype=np.uint8)
    seed[k, j - 1:j + 2, i - 1:i + 2] = 1
    return seed & (expert == 5)


def preview_nodes(scene):
    return [n for n in (scene.GetNthNode(x) for x in range(scene.GetNumberOfNodes()))
            if n.IsA("vtkMRMLSegmentationNode") and n.GetName().endswith(PREVIEW_NODE_SUFFIX)]


def test_initialize_update_trim_and_apply(scene_volume, expert, logic):
    scene, volume = scene_volume
    world = ref.World(scene, volume, "preview apply")
    seed = lung_seed(expert)
    world.paint("lungs", seed)
    world.select("lungs")
    context = logic.editor_context(volume, world.seg, "lungs", world.editor)
    controller = PreviewController(logic, context, "Fast Marching", {"PercentMax": 2})

    prepared = controller.prepare_start()
    first = off_gui_thread(controller.start, prepared)
    assert controller.session_id and not first.empty
    assert list(first.segments) == ["lungs"]
    grown = first.segments["lungs"]
    assert grown[seed != 0].all(), "the seed stays"
    # The march fills the lung before it leaks: 2 % of the image is less than a lung.
    in_lung = np.count_nonzero(grown & (expert == 5))
    assert in_lung / np.count_nonzero(grown) > 0.97, (in_lung, np.count_nonzero(grown))
    # Nothing is written into the segment before Apply; the preview has its own node.
    assert np.array_equal(world.mask("lungs"), seed)
    controller.show(first)
    nodes = preview_nodes(scene)
    assert len(nodes) == 1 and nodes[0].GetName() == "preview apply" + PREVIEW_NODE_SUFFIX
    assert nodes[0].GetSegmentation().GetSegment("lungs") is not None

    # The same computation as ApplyEffect, in one call.
    once = logic.run(logic.prepare(context, "Fast Marching", {"PercentMax": 2}))
    assert len(once.modifiers) == 1 and np.array_equal(once.modifiers[0].mask, grown)

    # Trimming: only the parameter goes; the segment volume shrinks in arrival order.
    trim = controller.prepare_update({"SegmentVolume": 40})
    assert len(trim.edits) == 0 and dict(trim.parameters) == {"SegmentVolume": "40"}
    trimmed = off_gui_thread(controller.update, trim).segments["lungs"]
    assert 0 < np.count_nonzero(trimmed) < np.count_nonzero(grown)
    assert not (trimmed & (grown == 0)).any()

    # The user paints more seed in the other lung: only those voxels go to the engine.
    more = lung_seed(np.where(expert == 6, 5, 0))
    world.paint("lungs", more)
    update = controller.prepare_update({"SegmentVolume": 100})
    assert len(update.edits) == 1 and update.edits[0].segment_id == "lungs"
    e = update.edits[0].added.extent
    assert (e.k_max - e.k_min + 1) * (e.j_max - e.j_min + 1) * (e.i_max - e.i_min + 1) <= 9
    assert not update.edits[0].HasField("removed")
    updated = off_gui_thread(controller.update, update)
    both = updated.segments["lungs"]
    assert both[more != 0].all()
    fresh = logic.run(logic.prepare(context, "Fast Marching", {"PercentMax": 2}))
    assert np.array_equal(fresh.modifiers[0].mask, both), "the update equals a fresh computation"
    controller.show(updated)
    assert controller.prepare_update() is None, "nothing changed since"

    # Apply: one undo step, with the user's masking (editable area outside "other", which
    # holds one voxel of the preview).
    other = np.zeros_like(seed)
    other[tuple(np.argwhere((both != 0) & (seed == 0) & (more == 0))[0])] = 1
    world.paint("other", other)
    world.set_masking(mask_mode="OutsideAllSegments")
    before = world.mask("lungs")
    result = off_gui_thread(controller.fetch_apply)
    changed = controller.commit_apply(result)
    assert changed == ["lungs"]
    expected = np.where(other != 0, before, both)
    assert np.array_equal(world.mask("lungs"), expected)
    assert np.array_equal(world.mask("other"), other)
    assert preview_nodes(scene) == []
    with pytest.raises(EngineError) as closed:
        logic.client.update_preview(update)
    assert closed.value.code.name == "NOT_FOUND"
    logic.undo()
    assert np.array_equal(world.mask("lungs"), before)


def test_cancel_leaves_the_segmentation_untouched(scene_volume, expert, logic):
    scene, volume = scene_volume
    world = ref.World(scene, volume, "preview cancel")
    seed = lung_seed(expert)
    world.paint("lungs", seed)
    world.select("lungs")
    context = logic.editor_context(volume, world.seg, "lungs", world.editor)
    controller = PreviewController(logic, context, "Fast Marching", {"PercentMax": 1})
    result = off_gui_thread(controller.start, controller.prepare_start())
    controller.show(result)
    session = controller.session_id
    assert len(preview_nodes(scene)) == 1
    controller.cancel()
    assert preview_nodes(scene) == []
    assert np.array_equal(world.mask("lungs"), seed)
    assert np.count_nonzero(world.mask("other")) == 0
    from segkit_slicer.proto.segkit.v1 import engine_pb2 as pb

    with pytest.raises(EngineError) as closed:
        logic.client.update_preview(pb.UpdatePreviewRequest(session_id=session))
    assert closed.value.code.name == "NOT_FOUND"


def test_a_cancelled_update_keeps_the_session_usable(scene_volume, expert, logic):
    """Cancelling the running update stops it; the next update starts the algorithm over
    and answers the right preview."""
    scene, volume = scene_volume
    world = ref.World(scene, volume, "preview cancelled update")
    world.paint("lungs", lung_seed(expert))
    world.select("lungs")
    context = logic.editor_context(volume, world.seg, "lungs", world.editor)
    controller = PreviewController(logic, context, "Fast Marching", {"PercentMax": 1})
    first = off_gui_thread(controller.start, controller.prepare_start())
    request = controller.prepare_update({"PercentMax": 60})
    timer = threading.Timer(0.05, logic.client.cancel)
    timer.start()
    try:
        controller.update(request)
        cancelled = False
    except EngineError as e:
        cancelled = e.code.name == "CANCELLED"
    timer.cancel()
    if cancelled:
        assert controller.stale
    again = off_gui_thread(controller.update, controller.prepare_update({"PercentMax": 1}))
    assert np.array_equal(again.segments["lungs"], first.segments["lungs"])
    controller.cancel()
