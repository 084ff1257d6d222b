"""Parity: Local threshold (SlicerSegmentEditorExtraEffects, Ctrl+click) through
`EngineLogic` and the real engine equals, voxel for voxel, the pipeline the effect runs with
VTK and vtkITK classes (reference §3.4): vtkImageThreshold, vtkImageDilateErode3D erosion,
vtkITKIslandMath (125 voxels), the snap of the click, then the Masking algorithm
(vtkImageThresholdConnectivity, dilation of the other islands, vtkImageMask, flood fill
again), written with mode Add while the editable intensity range is narrowed to the
threshold range.

GrowCut and WaterShed (Slicer's default is GrowCut) need the region-growing effects: the
engine answers "not supported" for them, which is checked here too.
"""

from __future__ import annotations

import numpy as np
import pytest
import vtk

import slicer
import slicer_reference as ref
from test_extension_parity import configure, make_worlds, assert_same

ADD = ref.ADD


def kernel_voxels(diameter_mm: float, spacing) -> list[int]:
    """Slicer's odd kernel size: Python's round is half-to-even."""
    return [int(round((diameter_mm / s + 1) / 2) * 2 - 1) for s in spacing]


def nearest_label_voxel(image, ijk, kernel):
    """The effect's snap: the nonzero voxel of `image` nearest to `ijk` within
    ±(k - 1)/2 per axis, the first found (k outer, i inner) on ties; None if none."""
    e = image.GetExtent()
    best, best_d = None, None
    reach = [int((k - 1) // 2) for k in kernel]
    for dk in range(-reach[2], reach[2] + 1):
        for dj in range(-reach[1], reach[1] + 1):
            for di in range(-reach[0], reach[0] + 1):
                i, j, k = ijk[0] + di, ijk[1] + dj, ijk[2] + dk
                if not (e[0] <= i <= e[1] and e[2] <= j <= e[3] and e[4] <= k <= e[5]):
                    continue
                if image.GetScalarComponentAsFloat(i, j, k, 0) <= 0:
                    continue
                d = di * di + dj * dj + dk * dk
                if best_d is None or d < best_d:
                    best, best_d = (i, j, k), d
    return best


def slicer_local_threshold(world, sid, lo, hi, diameter_mm, ijk):
    """The effect's apply() with SegmentationAlgorithm = Masking, as Slicer runs it."""
    world.select(sid)
    source = world.aligned_source()
    # The effect takes the spacing of the selected segment's labelmap: the reference
    # lattice's, which the aligned source shares.
    kernel = kernel_voxels(diameter_mm, source.GetSpacing())
    thresh = vtk.vtkImageThreshold()
    thresh.SetInputData(source)
    thresh.SetInValue(1)
    thresh.SetOutValue(0)
    thresh.ThresholdBetween(lo, hi)
    thresh.SetOutputScalarTypeToUnsignedChar()
    thresh.Update()
    erode = vtk.vtkImageDilateErode3D()
    erode.SetInputConnection(thresh.GetOutputPort())
    erode.SetDilateValue(0)
    erode.SetErodeValue(1)
    erode.SetKernelSize(*kernel)
    cast = vtk.vtkImageCast()
    cast.SetInputConnection(erode.GetOutputPort())
    cast.SetOutputScalarTypeToUnsignedInt()
    islands = slicer.vtkITKIslandMath()
    islands.SetInputConnection(cast.GetOutputPort())
    islands.SetFullyConnected(False)
    islands.SetMinimumSize(125)
    big = vtk.vtkImageThreshold()
    big.SetInputConnection(islands.GetOutputPort())
    big.ThresholdByLower(0)
    big.SetInValue(0)
    big.SetOutValue(1)
    big.SetOutputScalarTypeToUnsignedChar()
    big.Update()
    snapped = nearest_label_voxel(big.GetOutput(), ijk, kernel)
    if snapped is None:
        return
    origin, spacing = source.GetOrigin(), source.GetSpacing()
    seeds = vtk.vtkPoints()
    seeds.InsertNextPoint(*(origin[a] + snapped[a] * spacing[a] for a in range(3)))
    island = vtk.vtkImageThresholdConnectivity()
    island.SetInputData(big.GetOutput())
    island.SetInValue(0)
    island.ReplaceInOn()
    island.ReplaceOutOff()
    island.ThresholdBetween(1, 1)
    island.SetSeedPoints(seeds)
    dilate = vtk.vtkImageDilateErode3D()
    dilate.SetInputConnection(island.GetOutputPort())
    dilate.SetDilateValue(1)
    dilate.SetErodeValue(0)
    dilate.SetKernelSize(*(2 * k - 1 for k in kernel))
    dilate.Update()
    masked = vtk.vtkImageMask()
    masked.SetInputConnection(thresh.GetOutputPort())
    masked.SetMaskedOutputValue(0)
    masked.NotMaskOn()
    masked.SetMaskInputData(dilate.GetOutput())
    fill = vtk.vtkImageThresholdConnectivity()
    fill.SetInputConnection(masked.GetOutputPort())
    fill.SetInValue(1)
    fill.SetOutValue(0)
    fill.ThresholdBetween(1, 1)
    fill.SetSeedPoints(seeds)
    fill.Update()
    modifier = slicer.vtkOrientedImageData()
    modifier.DeepCopy(fill.GetOutput())
    m = vtk.vtkMatrix4x4()
    source.GetImageToWorldMatrix(m)
    modifier.SetImageToWorldMatrix(m)
    # The effect narrows the editable intensity range to the threshold for this edit.
    editor = world.editor
    old_on, old_range = editor.GetSourceVolumeIntensityMask(), editor.GetSourceVolumeIntensityMaskRange()
    rng = (lo, hi) if not old_on else (max(old_range[0], lo), min(old_range[1], hi))
    editor.SourceVolumeIntensityMaskOn()
    editor.SetSourceVolumeIntensityMaskRange(*rng)
    world.apply(sid, modifier, ADD)
    editor.SetSourceVolumeIntensityMask(old_on)
    editor.SetSourceVolumeIntensityMaskRange(*old_range)


def lung_click(expert, label=6):
    centroid = np.argwhere(expert == label).mean(axis=0).round().astype(int)
    k, j, i = centroid
    return int(i), int(j), int(k)


CASES = [
    # (name, threshold, diameter mm, masking)
    ("lung 10 mm", (-1024, -400), 10.0, "default"),
    ("lung 20 mm", (-1024, -400), 20.0, "default"),
    ("lung 10 mm, overwrite none", (-1024, -400), 10.0, "overwrite none"),
    ("lung 10 mm, intensity -900..-700", (-1024, -400), 10.0, "intensity -900..-700"),
    ("lung 3 mm (kernel 1)", (-1024, -400), 3.0, "default"),
]


@pytest.mark.parametrize("name,window,diameter,masking", CASES)
def test_local_threshold_masking(scene_volume, expert, logic, parity, name, window, diameter, masking):
    case = f"Local threshold {name}"
    engine_world, slicer_world = make_worlds(scene_volume, expert, case)
    configure((engine_world, slicer_world), masking)
    _, volume = scene_volume
    point = lung_click(expert)
    result = logic.apply("Local Threshold", {
        "MinimumThreshold": window[0], "MaximumThreshold": window[1],
        "MinimumDiameterMm": diameter, "SegmentationAlgorithm": "Masking"},
        volume, engine_world.seg, "lungs", segment_editor_node=engine_world.editor, point_ijk=point)
    slicer_local_threshold(slicer_world, "lungs", window[0], window[1], diameter, point)
    assert [m.mode for m in result.modifiers] == ["Add"]
    assert_same(case, engine_world, slicer_world, parity)
    assert engine_world.mask("lungs").sum() > 0


def test_local_threshold_bone_click(scene_volume, expert, logic, parity):
    """A click on a vertebra with a bone window: a thin-walled structure where erosion
    and the 125-voxel island rule decide what stays."""
    _, volume = scene_volume
    source = ref.image_array(volume.GetImageData())
    bone = np.argwhere(source > 300)
    centre = bone.mean(axis=0)
    k, j, i = bone[np.argmin(((bone - centre) ** 2).sum(axis=1))]
    point = (int(i), int(j), int(k))
    case = f"Local threshold bone 200..3000 at {point}"
    engine_world, slicer_world = make_worlds(scene_volume, expert, case)
    logic.apply("Local Threshold", {"MinimumThreshold": 200, "MaximumThreshold": 3000,
                                    "MinimumDiameterMm": 7, "SegmentationAlgorithm": "Masking"},
                volume, engine_world.seg, "lungs", segment_editor_node=engine_world.editor,
                point_ijk=point)
    slicer_local_threshold(slicer_world, "lungs", 200, 3000, 7.0, point)
    assert_same(case, engine_world, slicer_world, parity)


def test_local_threshold_on_the_1mm_volume(scene_volume_1mm, logic, parity):
    scene, volume = scene_volume_1mm
    source = ref.image_array(volume.GetImageData())
    nk, nj, ni = source.shape
    # A lung voxel near the middle of the volume's dark regions inside the body box.
    box = source[:, nj // 4: 3 * nj // 4, ni // 8: ni // 2]
    dark = np.argwhere(box < -800)
    assert dark.size, "no lung in the 1 mm volume's box"
    k, j, i = dark[len(dark) // 2]
    point = (int(i) + ni // 8, int(j) + nj // 4, int(k))
    worlds = []
    for side in ("engine", "slicer"):
        worlds.append(ref.World(scene, volume, f"local threshold 1 mm ({side})"))
    engine_world, slicer_world = worlds
    case = f"Local threshold 1 mm lung at {point}"
    logic.apply("Local Threshold", {"MinimumThreshold": -1024, "MaximumThreshold": -400,
                                    "MinimumDiameterMm": 5, "SegmentationAlgorithm": "Masking"},
                volume, engine_world.seg, "lungs", segment_editor_node=engine_world.editor,
                point_ijk=point)
    slicer_local_threshold(slicer_world, "lungs", -1024, -400, 5.0, point)
    assert_same(case, engine_world, slicer_world, parity)
    assert engine_world.mask("lungs").sum() > 100000


@pytest.mark.parametrize("algorithm", ["GrowCut", "WaterShed"])
def test_growing_algorithms_are_refused_as_not_supported(scene_volume, expert, logic, algorithm):
    engine_world, _ = make_worlds(scene_volume, expert, f"local threshold {algorithm}")
    _, volume = scene_volume
    with pytest.raises(Exception, match="not supported"):
        logic.apply("Local Threshold", {"MinimumThreshold": -1024, "MaximumThreshold": -400,
                                        "SegmentationAlgorithm": algorithm},
                    volume, engine_world.seg, "lungs", segment_editor_node=engine_world.editor,
                    point_ijk=lung_click(expert))
    assert engine_world.mask("lungs").sum() == 0
