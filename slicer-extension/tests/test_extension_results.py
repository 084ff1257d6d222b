"""What `EngineLogic` does with the answers of the new effects, on engine answers made up
by `fake_engine.FakeClient` (no engine effect answers them yet):

- a modifier with `target_segment_id` changes that segment, not the selected one;
- `bypass_masking` skips the editable area and the overwrite of other segments while the
  editable intensity range still applies: the same result as Slicer's own
  `vtkSlicerSegmentEditorLogic::ModifySegmentByLabelmap(..., bypassMasking=True)`;
- a target segment removed while the engine worked refuses the whole result, changing
  nothing;
- every modifier of one result is one undo step;
- the volumes of `ApplyEffectResponse.volumes` are downloaded in `run` and added to the
  scene in `commit`, with the lattice's IJK->RAS, a label map node for label volumes.
"""

from __future__ import annotations

import numpy as np
import pytest

import fake_engine as fe
import slicer_reference as ref


@pytest.fixture
def small():
    return fe.small_scene()


def worlds(small, n=2, masking=None):
    """`n` identical worlds with segments a, b, c (a selected)."""
    scene, volume, _ = small
    out = []
    for k in range(n):
        w = ref.World(scene, volume, f"world {k}", segments=(("a", "A"), ("b", "B"), ("c", "C")))
        for sid, mask in fe.blocks().items():
            w.paint(sid, mask)
        if masking:
            w.set_masking(**masking)
        w.select("a")
        out.append(w)
    return out


def masks(world):
    return {sid: world.mask(sid).copy() for sid in world.segment_ids()}


def fake_logic(client=None):
    from segkit_slicer.logic import EngineLogic

    return EngineLogic(client=client or fe.FakeClient())


def test_modifiers_for_other_segments_change_those_segments(small):
    engine_world, slicer_world = worlds(small)
    logic = fake_logic()
    before = masks(engine_world)
    result = logic.apply("FakeJoint", {}, engine_world.volume, engine_world.seg, "a", engine_world.editor)
    assert [m.target_segment_id for m in result.modifiers] == ["", "b", "c"]
    assert result.changed_segment_ids == ["a", "b", "c"]
    # Slicer: each segment set to its grown mask with masking on, in the same order.
    slicer_world.select("a")
    slicer_world.logic.SaveStateForUndo()
    for sid in ("a", "b", "c"):
        slicer_world.logic.ModifySegmentByLabelmap(slicer_world.seg, sid, slicer_world.modifier(fe.grow_i(before[sid])),
                                                   ref.SET, True, False)
    after, expected = masks(engine_world), masks(slicer_world)
    for sid in ("a", "b", "c"):
        assert np.array_equal(after[sid], expected[sid]), sid
        assert not np.array_equal(after[sid], before[sid]), sid   # every segment changed
    # The last SET (c) overwrote b where they overlap now: the order was kept.
    assert not (after["b"] & after["c"]).any()


def test_bypassed_masking_keeps_the_intensity_range(small):
    scene, volume, voxels = small
    masking = dict(mask_mode="OutsideAllSegments", overwrite="All", intensity=(-200, 600))
    engine_world, slicer_world, masked_world = worlds(small, 3, masking)
    logic = fake_logic()
    before = masks(engine_world)
    params = {"Operation": "UNION", "ModifierSegmentID": "b", "BypassMasking": True}
    result = logic.apply("FakeLogical", params, volume, engine_world.seg, "a", engine_world.editor)
    assert [(m.mode, m.bypass_masking) for m in result.modifiers] == [("Add", True)]
    got = masks(engine_world)

    # Slicer's own logic with bypassMasking = True.
    slicer_world.logic.SaveStateForUndo()
    slicer_world.logic.ModifySegmentByLabelmap(slicer_world.seg, "a", slicer_world.modifier(before["b"]),
                                               ref.ADD, True, True)
    expected = masks(slicer_world)
    for sid in got:
        assert np.array_equal(got[sid], expected[sid]), sid

    # By hand: b is added to a only where the source is in the range, although b lies
    # outside the editable area (inside another segment), and b is not overwritten.
    in_range = (voxels >= -200) & (voxels <= 600)
    assert np.array_equal(got["a"], (before["a"] | (before["b"] & in_range)).astype(np.uint8))
    assert np.array_equal(got["b"], before["b"]) and np.array_equal(got["c"], before["c"])
    assert (before["b"] & ~in_range & ~before["a"]).any()    # the range did cut something

    # Without bypass, Slicer's masking would have locked all of b (inside a segment).
    params["BypassMasking"] = False
    logic.apply("FakeLogical", params, volume, masked_world.seg, "a", masked_world.editor)
    assert np.array_equal(masked_world.mask("a"), before["a"])


def test_a_removed_target_segment_refuses_the_whole_result(small):
    (world,) = worlds(small, 1)
    logic = fake_logic()
    context = logic.editor_context(world.volume, world.seg, "a", world.editor)
    prepared = logic.prepare(context, "FakeJoint", {})
    result = logic.run(prepared)
    world.seg.GetSegmentation().RemoveSegment("c")     # while the engine worked
    before = masks(world)
    assert not logic._editor_logic.CanUndo()
    from segkit_slicer.logic import EngineResultError

    with pytest.raises(EngineResultError, match="'c' was removed"):
        logic.commit(context, result)
    after = masks(world)
    assert after.keys() == before.keys()
    for sid in after:
        assert np.array_equal(after[sid], before[sid]), sid    # a and b untouched too
    assert not logic._editor_logic.CanUndo()     # no undo state saved either


def test_one_undo_restores_every_segment(small):
    (world,) = worlds(small, 1)
    logic = fake_logic()
    before = masks(world)
    logic.apply("FakeJoint", {}, world.volume, world.seg, "a", world.editor)
    changed = masks(world)
    assert all(not np.array_equal(changed[s], before[s]) for s in before)
    logic.undo()
    after = masks(world)
    for sid in before:
        assert np.array_equal(after[sid], before[sid]), sid
    logic.redo()
    for sid, mask in masks(world).items():
        assert np.array_equal(mask, changed[sid]), sid


def test_new_segments_are_added_in_one_batch_of_node_events(small):
    # Slicer's views and segment lists redraw on every event of the segmentation node: a
    # result that adds many segments sends them once, at the end (NodeModify batching).
    import vtk

    (world,) = worlds(small, 1)
    logic = fake_logic()
    before = masks(world)
    events = []
    tags = [world.seg.AddObserver(vtk.vtkCommand.AnyEvent, lambda caller, event: events.append(event))]
    try:
        result = logic.apply("FakeSplit", {}, world.volume, world.seg, "a", world.editor)
    finally:
        for tag in tags:
            world.seg.RemoveObserver(tag)
    assert len(result.changed_segment_ids) == 3
    names = [world.seg.GetSegmentation().GetSegment(sid).GetName() for sid in result.changed_segment_ids]
    assert names == ["A copy", "B copy", "C copy"]
    for sid, new in zip(("a", "b", "c"), result.changed_segment_ids):
        # Overwrite mode "all segments": later copies take their voxels from earlier ones.
        assert world.mask(new).any() and not (world.mask(new) & ~before[sid].astype(bool)).any()
    # One event of each kind the segmentation node sends (modified, segment added, segment
    # modified, ...), 4 in all; 22 without the batch.
    assert len(events) <= 4, events


@pytest.mark.parametrize("operation, node_class, suffix", [
    ("FILL_OUTSIDE", "vtkMRMLScalarVolumeNode", "masked"),
    ("FILL_INSIDE_AND_OUTSIDE", "vtkMRMLLabelMapVolumeNode", "label"),
])
def test_new_volumes_are_downloaded_then_added_with_their_geometry(small, operation, node_class, suffix):
    import vtk

    from segkit_slicer.geometry import matrix_to_numpy

    scene, volume, voxels = small
    (world,) = worlds(small, 1)
    client = fe.FakeClient()
    logic = fake_logic(client)
    context = logic.editor_context(volume, world.seg, "a", world.editor)
    added = []
    context.volume_added = lambda node, output: added.append((node.GetID(), output.name))
    nodes_before = scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode")

    prepared = logic.prepare(context, "FakeMaskVolume", {"Operation": operation})
    result = logic.run(prepared)
    # Downloaded in run (the worker thread), nothing in the scene yet.
    assert client.downloads == ["fake-volume-0"] and len(result.volumes) == 1
    assert scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode") == nodes_before
    output = result.volumes[0]
    assert output.name == f"Small {suffix}" and output.label_map == (suffix == "label")

    segments_before = masks(world)
    assert logic.commit(context, result) == []          # no modifier: no segment changes
    node = scene.GetNodeByID(output.node_id)
    assert node is not None and node.GetClassName() == node_class
    assert result.volume_node_ids == [output.node_id]
    assert added == [(output.node_id, output.name)]
    assert node.GetName() == f"Small {suffix}" and node.GetDisplayNode() is not None
    # The source's own IJK->RAS (the engine's LPS lattice turned back into RAS).
    a, b = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(a)
    volume.GetIJKToRASMatrix(b)
    assert np.allclose(matrix_to_numpy(a), matrix_to_numpy(b), atol=1e-9)
    got = ref.image_array(node.GetImageData())
    expected = segments_before["a"] if suffix == "label" else np.where(segments_before["a"] != 0, voxels, 0)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    for sid, mask in masks(world).items():
        assert np.array_equal(mask, segments_before[sid])
    # Committing the same result again adds nothing.
    logic.commit(context, result)
    assert scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode") == nodes_before + 1


def test_a_new_volume_goes_under_the_segmentation_transform(small):
    import slicer

    from segkit_slicer.geometry import Lattice
    from segkit_slicer.logic import OutputVolume, add_volume_node

    scene, volume, _ = small
    (world,) = worlds(small, 1)
    transform = slicer.vtkMRMLLinearTransformNode()
    scene.AddNode(transform)
    world.seg.SetAndObserveTransformNodeID(transform.GetID())
    lattice = Lattice(size=(3, 2, 1), origin=(1.0, 2.0, 3.0), spacing=(1.0, 1.0, 1.0),
                      direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    node = add_volume_node(world.seg, OutputVolume("t", np.arange(6, dtype=np.float32).reshape(1, 2, 3), lattice))
    assert node.GetTransformNodeID() == transform.GetID()
    assert node.GetOrigin() == pytest.approx((-1.0, -2.0, 3.0))    # LPS -> RAS


def test_label_map_rule():
    from segkit_slicer.logic import is_label_map

    assert is_label_map("CT label", np.uint8) and is_label_map("CT-Label", np.int16)
    assert not is_label_map("CT label", np.float32)      # a float volume is never a label map
    assert not is_label_map("CT masked", np.int16) and not is_label_map("labels of CT", np.uint8)


def test_a_lost_volume_is_not_found_clearly(small):
    from segkit_slicer.client import EngineError

    (world,) = worlds(small, 1)
    client = fe.FakeClient()
    logic = fake_logic(client)
    context = logic.editor_context(world.volume, world.seg, "a", world.editor)
    prepared = logic.prepare(context, "FakeMaskVolume", {})
    original = client._mask_volume_answer

    def answer_then_evict(request, source):
        reply = original(request, source)
        client.held.pop(reply.volumes[0].volume_id)
        return reply

    client.effects["FakeMaskVolume"] = (client.effects["FakeMaskVolume"][0], answer_then_evict)
    with pytest.raises(EngineError) as e:
        logic.run(prepared)
    assert e.value.code.name == "NOT_FOUND" and "fake-volume-0" in str(e.value)
