"""Parity of Fill between slices: segments filled through `EngineLogic` and the real engine
equal, voxel for voxel, the segments Slicer's own classes give.

Slicer's side repeats `SegmentEditorFillBetweenSlicesEffect` inside the auto-complete
framework (`AbstractScriptedSegmentEditorAutoCompleteEffect`, reference §1.4 and §2.7):

- the visible segments, in display order, merged into one label map (label = position + 1);
- the working box: the segments' extent grown by `int(max(3, 0.1 * (max - min)))` voxels on
  each side, clipped to the reference extent; the merged label map cropped to it, as short;
- `slicer.vtkITKMorphologicalContourInterpolator` (ITK's MorphologicalContourInterpolator,
  all labels, all axes, heuristic alignment, dilations with the cross element) on it;
- Apply: each segment Set to its label's voxels with `ModifySegmentByLabelmap` (masking on).

The drawings come from the expert lungs of `Segmentation.seg.nrrd` on CTChest4 (5 = right,
6 = left), kept on every n-th slice along one axis so that each kept slice counts as drawn,
and from hand-made disks reproducing the reference's verified edge cases (§2.7).
Each case records, per segment, Slicer's voxels, the engine's and the differing voxels
(parity table), and asserts Dice >= 0.99 per segment and no differing voxel.
"""

from __future__ import annotations

import numpy as np
import pytest

import slicer_reference as ref

DICE_TARGET = 0.99
#: Slicer's working-box ratio for this effect.
BOX_RATIO = 0.1
SEGMENTS = (("right", "Right lung"), ("left", "Left lung"))


def every_nth(mask: np.ndarray, axis: int, n: int, offset: int = 0) -> np.ndarray:
    """`mask` kept only on the slices across `axis` (0 = k, 1 = j, 2 = i) whose index
    minus the mask's first slice is `offset` modulo `n`."""
    out = np.zeros_like(mask)
    other = tuple(a for a in range(3) if a != axis)
    present = np.nonzero(mask.any(axis=other))[0]
    if present.size == 0:
        return out
    for s in range(present.min() + offset, present.max() + 1, n):
        idx = [slice(None)] * 3
        idx[axis] = s
        out[tuple(idx)] = mask[tuple(idx)]
    return out


def disk(shape, k: int, centre, radius: float) -> np.ndarray:
    """A disk of voxel centres within `radius` of `centre` (j, i) on slice `k`."""
    out = np.zeros(shape, np.uint8)
    jj, ii = np.ogrid[: shape[1], : shape[2]]
    out[k][(jj - centre[0]) ** 2 + (ii - centre[1]) ** 2 <= radius**2] = 1
    return out


def working_box(labels: np.ndarray, ratio: float = BOX_RATIO):
    nz = np.nonzero(labels)
    box = []
    for d in range(3):
        lo, hi = int(nz[d].min()), int(nz[d].max())
        m = int(max(3, ratio * (hi - lo)))
        box.append(slice(max(0, lo - m), min(labels.shape[d], hi + m + 1)))
    return tuple(box)


def itk_interpolate(labels: np.ndarray) -> np.ndarray:
    """vtkITKMorphologicalContourInterpolator on a `[k][j][i]` label map (as short)."""
    import slicer
    import vtk
    from vtk.util import numpy_support

    image = vtk.vtkImageData()
    image.SetDimensions(labels.shape[2], labels.shape[1], labels.shape[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(
        np.ascontiguousarray(labels, dtype=np.int16).reshape(-1), deep=True, array_type=vtk.VTK_SHORT))
    f = slicer.vtkITKMorphologicalContourInterpolator()
    f.SetInputData(image)
    f.Update()
    return ref.image_array(f.GetOutput()).astype(np.int64)


def slicer_fill_between_slices(world: ref.World, visible_ids):
    """The effect as Slicer runs it (see the module docstring) on `world`."""
    merged = np.zeros(world.mask(visible_ids[0]).shape, np.int64)
    for n, sid in enumerate(visible_ids):
        merged[world.mask(sid) != 0] = n + 1
    box = working_box(merged)
    preview = np.zeros_like(merged)
    preview[box] = itk_interpolate(merged[box])
    for n, sid in enumerate(visible_ids):
        world.apply(sid, world.modifier((preview == n + 1).astype(np.uint8)), ref.SET)


def run_case(scene_volume, logic, parity, case: str, drawings: dict):
    """Paints `drawings` (segment id -> mask) in two worlds, fills one through the engine and
    one as Slicer does, and compares every segment."""
    scene, volume = scene_volume
    worlds = []
    for side in ("engine", "slicer"):
        w = ref.World(scene, volume, f"{case} ({side})", segments=SEGMENTS)
        for sid, mask in drawings.items():
            w.paint(sid, mask)
        worlds.append(w)
    engine_world, slicer_world = worlds
    visible = [sid for sid, _ in SEGMENTS]
    logic.apply("Fill between slices", {}, volume, engine_world.seg, visible[0], engine_world.editor)
    slicer_fill_between_slices(slicer_world, visible)
    for sid in visible:
        a, b = engine_world.mask(sid) != 0, slicer_world.mask(sid) != 0
        differing = int(np.count_nonzero(a != b))
        parity(case, sid, int(b.sum()), int(a.sum()), differing)
        total = int(a.sum()) + int(b.sum())
        dice = 1.0 if total == 0 else 2 * int(np.count_nonzero(a & b)) / total
        assert dice >= DICE_TARGET, f"{case}: {sid} Dice {dice:.4f} < {DICE_TARGET}"
        assert differing == 0, f"{case}: {sid} differs in {differing} voxels (Dice {dice:.5f})"
    return engine_world


@pytest.mark.parametrize("axis,every", [(0, 3), (0, 5), (1, 5), (2, 6)],
                         ids=["axial-every-3rd", "axial-every-5th", "coronal-every-5th", "sagittal-every-6th"])
def test_lungs_drawn_every_nth_slice(scene_volume, expert, logic, parity, axis, every):
    case = f"fill lungs axis {'kji'[axis]} every {every}"
    drawings = {
        "right": every_nth((expert == 5).astype(np.uint8), axis, every),
        "left": every_nth((expert == 6).astype(np.uint8), axis, every, offset=1),
    }
    world = run_case(scene_volume, logic, parity, case, drawings)
    # Something was filled, and the drawn voxels are kept.
    for sid, drawn in drawings.items():
        filled = world.mask(sid)
        assert filled.sum() > 1.5 * drawn.sum(), f"{case}: {sid} barely filled"
        assert np.all(filled[drawn != 0]), f"{case}: {sid} lost drawn voxels"


def test_lungs_on_two_axes(scene_volume, expert, logic, parity):
    """Right lung drawn on axial slices, left lung on sagittal slices: both axes are
    interpolated in one run."""
    drawings = {
        "right": every_nth((expert == 5).astype(np.uint8), 0, 4),
        "left": every_nth((expert == 6).astype(np.uint8), 2, 5),
    }
    run_case(scene_volume, logic, parity, "fill lungs axial + sagittal", drawings)


def test_disks_grow_monotonically_as_itk(scene_volume, expert, logic, parity):
    """Reference §2.7: disks of area 29 (k = 2) and 113 (k = 8) give areas 29, 49, 73, 73,
    101, 113, 113 on k = 2..8, nothing outside."""
    shape = expert.shape
    centre = (shape[1] // 2, shape[2] // 2)
    drawings = {"right": disk(shape, 2, centre, 3) | disk(shape, 8, centre, 6)}
    world = run_case(scene_volume, logic, parity, "fill disks 29 / 113", drawings)
    filled = world.mask("right")
    areas = [int(filled[k].sum()) for k in range(shape[0])]
    assert areas[2:9] == [29, 49, 73, 73, 101, 113, 113]
    assert sum(areas) == sum(areas[2:9])


def test_adjacent_slices_fill_nothing(scene_volume, expert, logic, parity):
    """Reference §2.7: slices 4 and 5 (adjacent) plus slice 9 -> nothing is filled; a
    3-slice-thick blob plus one slice -> nothing is filled."""
    shape = expert.shape
    centre = (shape[1] // 2, shape[2] // 2)
    adjacent = disk(shape, 4, centre, 5) | disk(shape, 5, centre, 5) | disk(shape, 9, centre, 5)
    thick = disk(shape, 14, centre, 5) | disk(shape, 15, centre, 5) | disk(shape, 16, centre, 5)
    thick |= disk(shape, 22, centre, 5)
    drawings = {"right": adjacent, "left": thick}
    world = run_case(scene_volume, logic, parity, "fill adjacent / thick", drawings)
    for sid, drawn in drawings.items():
        assert np.array_equal(world.mask(sid), drawn), f"{sid}: something was filled"


def test_several_components_and_unmatched_ones(scene_volume, expert, logic, parity):
    """Two blobs on one slice against one on the next (1-to-N and M-to-1 splitting), and a
    blob that overlaps nothing (ITK shrinks it to a point towards the other slice)."""
    shape = expert.shape
    c = (shape[1] // 2, shape[2] // 2)
    right = disk(shape, 6, c, 9) | disk(shape, 12, (c[0] - 5, c[1] - 5), 4)
    right |= disk(shape, 12, (c[0] + 5, c[1] + 6), 4) | disk(shape, 12, (c[0] - 30, c[1] + 30), 5)
    left = disk(shape, 16, (c[0] - 4, c[1] - 6), 4) | disk(shape, 16, (c[0] + 6, c[1] + 4), 3)
    left |= disk(shape, 24, c, 10)
    run_case(scene_volume, logic, parity, "fill 1-to-N / M-to-1 / unmatched", {"right": right, "left": left})
