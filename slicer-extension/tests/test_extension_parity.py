"""Parity: a segment edited through `EngineLogic` and the real engine equals, voxel for
voxel, the segment Slicer's own classes give for the same action.

Two identical segmentations ("worlds") of CTChest4 are built in one scene: the engine
world is edited with `EngineLogic.apply`, the Slicer world with the call sequences of
Slicer's Threshold and Islands effects (`slicer_reference.py`). Every segment of both is
then read back with Slicer's own `UpdateSelectedSegmentLabelmap` and compared.

The masking settings live on each world's `vtkMRMLSegmentEditorNode` (editable area,
editable intensity range, overwrite mode), so they are Slicer's in both worlds. "Other"
is the right lung of the expert segmentation shipped with the data
(`Segmentation.seg.nrrd`, label 5), so editable areas and overwrites bite into the lungs.
"""

from __future__ import annotations

import numpy as np
import pytest

import slicer_reference as ref

THRESHOLD = (-1024, -500)
MINIMUM_SIZE = 1000

# name -> (World.set_masking arguments, segments to hide)
MASKINGS = {
    "default": ({}, ()),
    "outside-all-segments": ({"mask_mode": "OutsideAllSegments"}, ()),
    "inside-single-segment": ({"mask_mode": "InsideSingleSegment", "mask_segment": "other"}, ()),
    "outside-visible, other hidden": ({"mask_mode": "OutsideVisibleSegments"}, ("other",)),
    "intensity -900..-700": ({"intensity": (-900.0, -700.0)}, ()),
    "overwrite none": ({"overwrite": "None"}, ()),
    "overwrite visible, other hidden": ({"overwrite": "Visible"}, ("other",)),
}


def make_worlds(scene_volume, expert, case: str, lungs=None):
    """The engine world and the Slicer world, with "other" = the expert right lung and
    "lungs" = `lungs` (a [k][j][i] array) or empty."""
    scene, volume = scene_volume
    worlds = []
    for side in ("engine", "slicer"):
        w = ref.World(scene, volume, f"{case} ({side})")
        w.paint("other", (expert == 5).astype(np.uint8))
        if lungs is not None:
            w.paint("lungs", lungs)
        worlds.append(w)
    return worlds


def configure(worlds, masking: str):
    settings, hidden = MASKINGS[masking]
    for w in worlds:
        w.set_masking(**settings)
        for sid in hidden:
            w.hide(sid)


def assert_same(case: str, engine_world, slicer_world, parity):
    """Same segments (order, names, label values, layers) and the same voxels in each.

    Segments created by an effect get random IDs, so segments are matched by position."""
    ids_a, ids_b = engine_world.segment_ids(), slicer_world.segment_ids()
    assert engine_world.segment_names() == slicer_world.segment_names()
    seg_a, seg_b = engine_world.seg.GetSegmentation(), slicer_world.seg.GetSegmentation()
    for sid_a, sid_b in zip(ids_a, ids_b):
        a, b = engine_world.mask(sid_a), slicer_world.mask(sid_b)
        differing = int(np.count_nonzero(a != b))
        name = seg_b.GetSegment(sid_b).GetName()
        parity(case, name, int(b.sum()), int(a.sum()), differing)
        assert differing == 0, f"{case}: segment {name} differs in {differing} voxels"
        assert seg_a.GetSegment(sid_a).GetLabelValue() == seg_b.GetSegment(sid_b).GetLabelValue()
    assert seg_a.GetNumberOfLayers() == seg_b.GetNumberOfLayers()


def thresholded(volume) -> np.ndarray:
    """The threshold result computed directly, to start island cases from."""
    source = ref.image_array(volume.GetImageData())
    return ((source >= THRESHOLD[0]) & (source <= THRESHOLD[1])).astype(np.uint8)


def lung_point(expert, lungs, label=6):
    """The voxel of the expert lung `label` inside `lungs` nearest to that lung's
    centroid, as (i, j, k)."""
    inside = np.argwhere((expert == label) & (lungs != 0))
    assert inside.size, "no thresholded voxel in the expert lung"
    centroid = np.argwhere(expert == label).mean(axis=0)
    k, j, i = inside[np.argmin(((inside - centroid) ** 2).sum(axis=1))]
    return int(i), int(j), int(k)


# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("masking", list(MASKINGS))
def test_threshold(scene_volume, expert, logic, parity, masking):
    case = f"Threshold {THRESHOLD[0]}..{THRESHOLD[1]}, {masking}"
    engine_world, slicer_world = make_worlds(scene_volume, expert, case)
    configure((engine_world, slicer_world), masking)
    _, volume = scene_volume

    result = logic.apply("Threshold", {"MinimumThreshold": THRESHOLD[0], "MaximumThreshold": THRESHOLD[1]},
                         volume, engine_world.seg, "lungs", segment_editor_node=engine_world.editor)
    ref.threshold(slicer_world, "lungs", *THRESHOLD)

    assert result.reported == {"MinimumThreshold": THRESHOLD[0], "MaximumThreshold": THRESHOLD[1]}
    assert [m.mode for m in result.modifiers] == ["Set"]
    assert_same(case, engine_world, slicer_world, parity)
    assert engine_world.mask("lungs").sum() > 0


ISLAND_MASKINGS = ["default", "inside-single-segment", "intensity -900..-700", "overwrite none"]


@pytest.mark.parametrize("masking", ISLAND_MASKINGS)
@pytest.mark.parametrize("operation", ["KEEP_LARGEST_ISLAND", "REMOVE_SMALL_ISLANDS", "SPLIT_ISLANDS_TO_SEGMENTS"])
def test_islands_by_size(scene_volume, expert, logic, parity, operation, masking):
    case = f"Islands {operation} {MINIMUM_SIZE}, {masking}"
    _, volume = scene_volume
    engine_world, slicer_world = make_worlds(scene_volume, expert, case, lungs=thresholded(volume))
    configure((engine_world, slicer_world), masking)

    result = logic.apply("Islands", {"Operation": operation, "MinimumSize": MINIMUM_SIZE},
                         volume, engine_world.seg, "lungs", segment_editor_node=engine_world.editor)
    ref.islands_split(slicer_world, "lungs", MINIMUM_SIZE, operation)

    assert result.reported["islands_kept"] >= 1
    assert_same(case, engine_world, slicer_world, parity)


@pytest.mark.parametrize("masking", ISLAND_MASKINGS)
@pytest.mark.parametrize("operation", ["KEEP_SELECTED_ISLAND", "REMOVE_SELECTED_ISLAND", "ADD_SELECTED_ISLAND"])
def test_islands_by_click(scene_volume, expert, logic, parity, operation, masking):
    _, volume = scene_volume
    lungs = thresholded(volume)
    if operation == "ADD_SELECTED_ISLAND":
        # A voxel of "other" (the right lung) outside "lungs": its component is added.
        candidates = np.argwhere((expert == 5) & (lungs == 0))
        k, j, i = candidates[len(candidates) // 2]
        point = (int(i), int(j), int(k))
    else:
        point = lung_point(expert, lungs)
    case = f"Islands {operation} at {point}, {masking}"
    engine_world, slicer_world = make_worlds(scene_volume, expert, case, lungs=lungs)
    configure((engine_world, slicer_world), masking)

    logic.apply("Islands", {"Operation": operation}, volume, engine_world.seg, "lungs",
                segment_editor_node=engine_world.editor, point_ijk=point)
    ref.islands_click(slicer_world, "lungs", point, operation)

    assert_same(case, engine_world, slicer_world, parity)


def test_threshold_then_islands_on_one_segment(scene_volume, expert, logic, parity):
    """The issue's sequence on one segment: Threshold, then Keep largest island."""
    case = "Threshold then KEEP_LARGEST_ISLAND"
    engine_world, slicer_world = make_worlds(scene_volume, expert, case)
    _, volume = scene_volume
    params = {"MinimumThreshold": THRESHOLD[0], "MaximumThreshold": THRESHOLD[1]}
    logic.apply("Threshold", params, volume, engine_world.seg, "lungs", engine_world.editor)
    logic.apply("Islands", {"Operation": "KEEP_LARGEST_ISLAND", "MinimumSize": MINIMUM_SIZE},
                volume, engine_world.seg, "lungs", engine_world.editor)
    ref.threshold(slicer_world, "lungs", *THRESHOLD)
    ref.islands_split(slicer_world, "lungs", MINIMUM_SIZE, "KEEP_LARGEST_ISLAND")
    assert_same(case, engine_world, slicer_world, parity)


def test_undo_restores_the_segment(scene_volume, expert, logic):
    """Each apply saves state for undo first (through Slicer's segmentation history)."""
    engine_world, _ = make_worlds(scene_volume, expert, "undo")
    _, volume = scene_volume
    before = engine_world.mask("other").copy()
    logic.apply("Threshold", {"MinimumThreshold": THRESHOLD[0], "MaximumThreshold": THRESHOLD[1]},
                volume, engine_world.seg, "lungs", engine_world.editor)
    assert engine_world.mask("lungs").sum() > 0
    assert engine_world.mask("other").sum() < before.sum()  # overwritten where they overlap
    logic.undo()
    assert engine_world.mask("lungs").sum() == 0
    assert np.array_equal(engine_world.mask("other"), before)
    logic.redo()
    assert engine_world.mask("lungs").sum() > 0


def test_point_outside_the_reference_extent_is_refused(scene_volume, expert, logic):
    engine_world, _ = make_worlds(scene_volume, expert, "bad point")
    _, volume = scene_volume
    with pytest.raises(ValueError, match="outside the reference extent"):
        logic.apply("Islands", {"Operation": "KEEP_SELECTED_ISLAND"}, volume, engine_world.seg,
                    "lungs", engine_world.editor, point_ijk=(500, 0, 0))
    with pytest.raises(ValueError, match="needs a clicked point"):
        logic.apply("Islands", {"Operation": "KEEP_SELECTED_ISLAND"}, volume, engine_world.seg,
                    "lungs", engine_world.editor)


# ---------------------------------------------------------------------------------------
# Geometry: oblique axes and a reference extent that does not start at 0

def oblique_scene():
    """A synthetic int16 volume on oblique axes (two dark balls and a thin bridge)."""
    import slicer
    import vtk
    from vtk.util import numpy_support

    scene = slicer.vtkMRMLScene()
    dims = (30, 26, 18)
    k, j, i = np.indices(dims[::-1])
    values = np.full(dims[::-1], 40, dtype=np.int16)
    values[(i - 9) ** 2 + (j - 12) ** 2 + ((k - 8) * 1.5) ** 2 < 30] = -800
    values[(i - 21) ** 2 + (j - 13) ** 2 + ((k - 9) * 1.5) ** 2 < 20] = -750
    values[(i == 15) & (j == 12) & (k == 8)] = -600
    image = vtk.vtkImageData()
    image.SetDimensions(*dims)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(values.reshape(-1), deep=True,
                                                               array_type=vtk.VTK_SHORT))
    volume = slicer.vtkMRMLScalarVolumeNode()
    volume.SetName("oblique")
    scene.AddNode(volume)
    volume.SetAndObserveImageData(image)
    m = vtk.vtkMatrix4x4()
    c, s = np.cos(0.4), np.sin(0.4)
    rows = [[0.8 * c, -0.9 * s, 0, -12.5], [0.8 * s, 0.9 * c, 0.3, 40.25], [0, 0, 1.9, -7.0], [0, 0, 0, 1]]
    for r in range(4):
        for col in range(4):
            m.SetElement(r, col, rows[r][col])
    volume.SetIJKToRASMatrix(m)
    return scene, volume


def crop_reference(world, extent):
    """Sets the segmentation's reference geometry to a sub-extent of the volume's lattice."""
    import slicer
    import vtk

    m = vtk.vtkMatrix4x4()
    world.volume.GetIJKToRASMatrix(m)
    text = slicer.vtkSegmentationConverter.SerializeImageGeometry(m, extent)
    world.seg.GetSegmentation().SetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(), text)
    assert tuple(world.reference().GetExtent()) == tuple(extent)


@pytest.mark.parametrize("operation", ["threshold", "KEEP_SELECTED_ISLAND", "SPLIT_ISLANDS_TO_SEGMENTS"])
def test_oblique_volume_with_reference_extent_not_at_zero(logic, parity, operation):
    scene, volume = oblique_scene()
    extent = (4, 27, 3, 22, 2, 15)
    worlds = []
    for side in ("engine", "slicer"):
        w = ref.World(scene, volume, f"oblique ({side})")
        crop_reference(w, extent)
        worlds.append(w)
    engine_world, slicer_world = worlds
    case = f"oblique, extent {extent}: {operation}"
    params = {"MinimumThreshold": -1000, "MaximumThreshold": -600}
    logic.apply("Threshold", params, volume, engine_world.seg, "lungs", engine_world.editor)
    ref.threshold(slicer_world, "lungs", -1000, -600)
    if operation == "KEEP_SELECTED_ISLAND":
        point = (21, 13, 9)   # an index of the reference image, inside the second ball
        logic.apply("Islands", {"Operation": operation}, volume, engine_world.seg, "lungs",
                    engine_world.editor, point_ijk=point)
        ref.islands_click(slicer_world, "lungs", point, operation)
    elif operation == "SPLIT_ISLANDS_TO_SEGMENTS":
        logic.apply("Islands", {"Operation": operation, "MinimumSize": 5}, volume, engine_world.seg,
                    "lungs", engine_world.editor)
        ref.islands_split(slicer_world, "lungs", 5, operation)
    assert_same(case, engine_world, slicer_world, parity)
    assert engine_world.mask("lungs").sum() > 0


def test_segments_on_another_lattice_are_resampled_like_slicer(logic):
    """A segment imported on a finer lattice is read onto the reference geometry with
    nearest neighbour, as Slicer's selected-segment labelmap is."""
    import slicer
    import vtk

    from segkit_slicer.logic import segment_masks

    scene, volume = oblique_scene()
    w = ref.World(scene, volume, "fine segment", segments=())
    m = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(m)
    fine = slicer.vtkOrientedImageData()
    fine.SetExtent(-3, 40, 5, 30, 4, 20)
    fine.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    for c in range(3):  # half the spacing, shifted by a quarter voxel
        for r in range(3):
            m.SetElement(r, c, m.GetElement(r, c) / 2)
        m.SetElement(c, 3, m.GetElement(c, 3) + 0.1)
    fine.SetImageToWorldMatrix(m)
    k, j, i = np.indices((17, 26, 44))
    ref.image_array(fine)[...] = (((i - 20) ** 2 + (j - 12) ** 2 + (k - 6) ** 2) < 60) * 3
    segment = slicer.vtkSegment()
    segment.SetName("fine")
    segment.SetLabelValue(3)
    segment.AddRepresentation("Binary labelmap", fine)
    w.seg.GetSegmentation().AddSegment(segment, "fine")
    reference = w.reference()
    ours = segment_masks(w.seg, reference, ["fine"])["fine"]
    slicers = w.mask("fine")
    assert slicers.sum() > 0
    assert np.array_equal(ours, slicers)
