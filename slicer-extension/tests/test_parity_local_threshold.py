"""Parity: Local threshold (SlicerSegmentEditorExtraEffects, Ctrl+click) through
`EngineLogic` and the real engine equals, voxel for voxel, the pipeline the effect runs with
VTK and vtkITK classes (reference §3.4): vtkImageThreshold, vtkImageDilateErode3D erosion,
vtkITKIslandMath (125 voxels), the snap of the click, then the algorithm step, written
with mode Add while the editable intensity range is narrowed to the threshold range:

- Masking: vtkImageThresholdConnectivity, dilation of the other islands, vtkImageMask,
  flood fill again; equal voxel for voxel.
- GrowCut (Slicer's default): seeds 2 = clicked island, 1 = other islands, 3 = outside the
  threshold (vtkImageThresholdConnectivity + vtkImageMask), `vtkImageGrowCutSegment` with
  the `GenerateEditMask` of no edited segment under the narrowed range, label 2 kept. On
  CTChest4 (int16) equal-cost paths are common and VTK's Fibonacci heap breaks their ties
  in another order than segkit's radix heap (see test_parity_grow_from_seeds): Dice >=
  0.999 and the differing voxels recorded; on the float copy of CTChest4 with noise (no
  ties) equal voxel for voxel.
- WaterShed: the same seeds through SimpleITK's GradientMagnitudeRecursiveGaussian at
  FeatureSizeMm and MorphologicalWatershedFromMarkers, as the effect's runWatershed; the
  gradients differ in float rounding (test_parity_watershed): Dice >= 0.99.
"""

from __future__ import annotations

import numpy as np
import pytest
import vtk

import slicer
import slicer_reference as ref
from test_extension_parity import configure, make_worlds, assert_same
from test_parity_grow_from_seeds import float_scene  # noqa: F401 (a fixture)

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


def slicer_local_threshold(world, sid, lo, hi, diameter_mm, ijk, algorithm="Masking",
                           feature_mm=3.0):
    """The effect's apply() with `algorithm`, as Slicer runs it."""
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
    # The effect narrows the editable intensity range to the threshold for this edit
    # (and GrowCut's edit mask is generated under it).
    editor = world.editor
    old_on, old_range = editor.GetSourceVolumeIntensityMask(), editor.GetSourceVolumeIntensityMaskRange()
    rng = (lo, hi) if not old_on else (max(old_range[0], lo), min(old_range[1], hi))
    editor.SourceVolumeIntensityMaskOn()
    editor.SetSourceVolumeIntensityMaskRange(*rng)
    try:
        if algorithm == "Masking":
            output = masking_step(thresh, big, seeds, kernel)
        else:
            output = growing_step(world, source, thresh, big, seeds, algorithm, feature_mm)
        modifier = slicer.vtkOrientedImageData()
        modifier.DeepCopy(output)
        m = vtk.vtkMatrix4x4()
        source.GetImageToWorldMatrix(m)
        modifier.SetImageToWorldMatrix(m)
        world.apply(sid, modifier, ADD)
    finally:
        editor.SetSourceVolumeIntensityMask(old_on)
        editor.SetSourceVolumeIntensityMaskRange(*old_range)


def masking_step(thresh, big, seeds, kernel):
    """The effect's runMasking."""
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
    return fill.GetOutput()


def growing_step(world, source, thresh, big, seeds, algorithm, feature_mm):
    """The effect's apply() branch for GrowCut and WaterShed: the seed labelmap, the
    algorithm on the whole source, label 2 kept."""
    island = vtk.vtkImageThresholdConnectivity()
    island.SetInputData(big.GetOutput())
    island.SetInValue(2)
    island.ReplaceInOn()
    island.ReplaceOutOff()
    island.ThresholdBetween(1, 1)
    island.SetSeedPoints(seeds)
    island.Update()
    outside = vtk.vtkImageMask()
    outside.SetInputConnection(island.GetOutputPort())
    outside.SetMaskedOutputValue(3)
    outside.SetMaskInputData(thresh.GetOutput())
    outside.Update()
    seed_labels = outside.GetOutput()
    if algorithm == "GrowCut":
        editor = world.editor
        mask = slicer.vtkOrientedImageData()
        assert world.seg.GenerateEditMask(
            mask, editor.GetMaskMode(), source, "", editor.GetMaskSegmentID() or "",
            source, editor.GetSourceVolumeIntensityMaskRange())
        f = slicer.vtkImageGrowCutSegment()
        f.SetIntensityVolume(source)
        f.SetSeedLabelVolume(seed_labels)
        f.SetMaskVolume(mask)
        f.Update()
        labels = ref.image_array(f.GetOutput())
        assert labels.size, "vtkImageGrowCutSegment failed"
    else:
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(np.ascontiguousarray(ref.image_array(source)))
        image.SetSpacing(tuple(float(v) for v in source.GetSpacing()))
        markers = sitk.GetImageFromArray(np.ascontiguousarray(ref.image_array(seed_labels)))
        markers.CopyInformation(image)
        feature = sitk.GradientMagnitudeRecursiveGaussian(image, float(feature_mm))
        f = sitk.MorphologicalWatershedFromMarkersImageFilter()
        f.SetMarkWatershedLine(False)
        f.SetFullyConnected(False)
        labels = sitk.GetArrayFromImage(sitk.Cast(f.Execute(feature, markers), sitk.sitkInt16))
    out = vtk.vtkImageData()
    out.SetExtent(source.GetExtent())
    out.SetSpacing(source.GetSpacing())
    out.SetOrigin(source.GetOrigin())
    out.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    ref.image_array(out)[...] = (labels == 2).astype(np.uint8)
    return out


def assert_close(case, engine_world, slicer_world, parity, min_dice):
    """Each segment's differing voxels recorded; Dice >= min_dice (1.0: identical)."""
    assert engine_world.segment_names() == slicer_world.segment_names()
    for sid in engine_world.segment_ids():
        a, b = engine_world.mask(sid), slicer_world.mask(sid)
        differing = int(np.count_nonzero(a != b))
        total = int(a.sum()) + int(b.sum())
        dice = 2 * np.count_nonzero(a & b) / total if total else 1.0
        parity(f"{case} (Dice {dice:.6f})", sid, int(b.sum()), int(a.sum()), differing)
        if min_dice >= 1.0:
            assert differing == 0, f"{case}: {sid} differs in {differing} voxels"
        else:
            assert dice >= min_dice, f"{case}: {sid} Dice {dice:.6f} ({differing} voxels differ)"


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


def click_1mm(volume):
    """A dark voxel (below -800 HU) near the middle of the dark voxels of a box of the
    1 mm volume, as (i, j, k)."""
    source = ref.image_array(volume.GetImageData())
    nk, nj, ni = source.shape
    box = source[:, nj // 4: 3 * nj // 4, ni // 8: ni // 2]
    dark = np.argwhere(box < -800)
    assert dark.size, "no dark voxel in the 1 mm volume's box"
    k, j, i = dark[len(dark) // 2]
    return (int(i) + ni // 8, int(j) + nj // 4, int(k))


def test_local_threshold_on_the_1mm_volume(scene_volume_1mm, logic, parity):
    scene, volume = scene_volume_1mm
    point = click_1mm(volume)
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


GROWING = [
    # (name, algorithm, threshold, diameter mm, masking, minimum Dice on the int16 CT)
    ("GrowCut lung 10 mm", "GrowCut", (-1024, -400), 10.0, "default", 0.999),
    ("GrowCut lung 10 mm, outside all segments", "GrowCut", (-1024, -400), 10.0,
     "outside-all-segments", 0.999),
    ("GrowCut lung 10 mm, intensity -900..-700", "GrowCut", (-1024, -400), 10.0,
     "intensity -900..-700", 0.999),
    ("WaterShed lung 10 mm", "WaterShed", (-1024, -400), 10.0, "default", 0.99),
]


@pytest.mark.parametrize("name,algorithm,window,diameter,masking,min_dice", GROWING)
def test_local_threshold_growing(scene_volume, expert, logic, parity, name, algorithm, window,
                                 diameter, masking, min_dice):
    case = f"Local threshold {name}"
    engine_world, slicer_world = make_worlds(scene_volume, expert, case)
    configure((engine_world, slicer_world), masking)
    _, volume = scene_volume
    point = lung_click(expert)
    result = logic.apply("Local Threshold", {
        "MinimumThreshold": window[0], "MaximumThreshold": window[1],
        "MinimumDiameterMm": diameter, "FeatureSizeMm": 3.0,
        "SegmentationAlgorithm": algorithm},
        volume, engine_world.seg, "lungs", segment_editor_node=engine_world.editor, point_ijk=point)
    slicer_local_threshold(slicer_world, "lungs", window[0], window[1], diameter, point,
                           algorithm, 3.0)
    assert [m.mode for m in result.modifiers] == ["Add"]
    assert slicer_world.mask("lungs").sum() > 10000, "Slicer's result is nearly empty"
    assert_close(case, engine_world, slicer_world, parity, min_dice)


def test_local_threshold_growcut_float_is_identical(float_scene, expert, logic, parity):
    """Without equal-cost paths (float CT plus noise) GrowCut matches voxel for voxel."""
    scene, volume = float_scene
    point = lung_click(expert)
    case = "Local threshold GrowCut lung 10 mm, CTChest4 float"
    engine_world, slicer_world = make_worlds((scene, volume), expert, case)
    logic.apply("Local Threshold", {"MinimumThreshold": -1024, "MaximumThreshold": -400,
                                    "MinimumDiameterMm": 10, "SegmentationAlgorithm": "GrowCut"},
                volume, engine_world.seg, "lungs", segment_editor_node=engine_world.editor,
                point_ijk=point)
    slicer_local_threshold(slicer_world, "lungs", -1024, -400, 10.0, point, "GrowCut")
    assert slicer_world.mask("lungs").sum() > 10000, "Slicer's result is nearly empty"
    assert_close(case, engine_world, slicer_world, parity, 1.0)


@pytest.mark.parametrize("algorithm,min_dice", [("GrowCut", 0.999), ("WaterShed", 0.99)])
def test_local_threshold_growing_on_the_1mm_volume(scene_volume_1mm, logic, parity, algorithm,
                                                    min_dice):
    """The issue's 37 M voxel volume: the whole image is grown, as in Slicer."""
    scene, volume = scene_volume_1mm
    point = click_1mm(volume)
    engine_world, slicer_world = (ref.World(scene, volume, f"local threshold 1 mm {algorithm} ({side})")
                                  for side in ("engine", "slicer"))
    case = f"Local threshold {algorithm} 1 mm lung at {point}"
    logic.apply("Local Threshold", {"MinimumThreshold": -1024, "MaximumThreshold": -400,
                                    "MinimumDiameterMm": 5, "FeatureSizeMm": 3,
                                    "SegmentationAlgorithm": algorithm},
                volume, engine_world.seg, "lungs", segment_editor_node=engine_world.editor,
                point_ijk=point)
    slicer_local_threshold(slicer_world, "lungs", -1024, -400, 5.0, point, algorithm, 3.0)
    assert slicer_world.mask("lungs").sum() > 100000, "Slicer's result is nearly empty"
    assert_close(case, engine_world, slicer_world, parity, min_dice)
