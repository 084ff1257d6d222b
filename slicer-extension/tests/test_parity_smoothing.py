"""Parity: Smoothing through `EngineLogic.apply` + the engine equals, voxel for voxel,
Slicer's own sequence (SegmentEditorSmoothingEffect.smoothSelectedSegment: the VTK filter
on the selected segment's 0/1 labelmap, then ModifySegmentByLabelmap with mode Set).

CTChest4 (3.05 x 3.05 x 10 mm) makes the kernels anisotropic; "lungs" starts as the
thresholded lungs, "other" is the expert right lung (so overwrite and masking bite)."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
import vtk

import slicer_reference as ref
from test_extension_parity import assert_same, configure, make_worlds, thresholded


def slicer_smoothing(world, sid, method, kernel_mm=3.0, sigma_mm=3.0):
    """smoothSelectedSegment without a brush mask, as Slicer runs it."""
    selected = world.selected_labelmap(sid)
    if method == "GAUSSIAN":
        spacing = selected.GetSpacing()
        th = vtk.vtkImageThreshold(); th.SetInputData(selected); th.ThresholdByLower(0)
        th.SetInValue(0); th.SetOutValue(255); th.SetOutputScalarType(vtk.VTK_UNSIGNED_CHAR)
        g = vtk.vtkImageGaussianSmooth(); g.SetInputConnection(th.GetOutputPort())
        g.SetStandardDeviation(*[sigma_mm / s for s in spacing]); g.SetRadiusFactor(4.0)
        f = vtk.vtkImageThreshold(); f.SetInputConnection(g.GetOutputPort()); f.ThresholdByUpper(127)
        f.SetInValue(1); f.SetOutValue(0); f.SetOutputScalarType(selected.GetScalarType())
    else:
        spacing = selected.GetSpacing()
        kernel = [int(round((kernel_mm / s + 1) / 2) * 2 - 1) for s in spacing]
        if method == "MEDIAN":
            f = vtk.vtkImageMedian3D(); f.SetInputData(selected)
        else:
            th = vtk.vtkImageThreshold(); th.SetInputData(selected); th.ThresholdByLower(0)
            th.SetInValue(0); th.SetOutValue(1); th.SetOutputScalarType(selected.GetScalarType())
            f = vtk.vtkImageOpenClose3D(); f.SetInputConnection(th.GetOutputPort())
            opening = method == "MORPHOLOGICAL_OPENING"
            f.SetOpenValue(1 if opening else 0); f.SetCloseValue(0 if opening else 1)
        f.SetKernelSize(*kernel)
    f.Update()
    modifier = slicer.vtkOrientedImageData()
    modifier.DeepCopy(f.GetOutput())
    m = vtk.vtkMatrix4x4()
    selected.GetImageToWorldMatrix(m)
    modifier.SetImageToWorldMatrix(m)
    world.apply(sid, modifier, ref.SET)


CASES = [(m, k) for m in ("MEDIAN", "MORPHOLOGICAL_OPENING", "MORPHOLOGICAL_CLOSING") for k in (10.0, 20.0, 40.0)]
CASES += [("GAUSSIAN", s) for s in (3.0, 6.0)]
CASES = [(m, s, "default") for m, s in CASES] + [
    (m, s, "intensity -900..-700") for m, s in CASES if s == 20.0 or m == "GAUSSIAN"]


@pytest.mark.parametrize("method,size,masking", CASES)
def test_smoothing_ctchest4(scene_volume, expert, logic, parity, method, size, masking):
    _, volume = scene_volume
    case = f"Smoothing {method} {size} mm, {masking}"
    engine_world, slicer_world = make_worlds(scene_volume, expert, case, lungs=thresholded(volume))
    configure((engine_world, slicer_world), masking)
    params = {"SmoothingMethod": method}
    params["GaussianStandardDeviationMm" if method == "GAUSSIAN" else "KernelSizeMm"] = size
    logic.apply("Smoothing", params, volume, engine_world.seg, "lungs", segment_editor_node=engine_world.editor)
    if method == "GAUSSIAN":
        slicer_smoothing(slicer_world, "lungs", method, sigma_mm=size)
    else:
        slicer_smoothing(slicer_world, "lungs", method, kernel_mm=size)
    assert_same(case, engine_world, slicer_world, parity)


@pytest.mark.parametrize("method", ["MEDIAN", "MORPHOLOGICAL_OPENING", "MORPHOLOGICAL_CLOSING", "GAUSSIAN"])
def test_smoothing_1mm(scene_volume_1mm, logic, parity, method):
    """One case per method on the 1 mm CT; 4 mm kernels are 3 voxels (banker's rounding)."""
    scene, volume = scene_volume_1mm
    source = ref.image_array(volume.GetImageData())
    lungs = ((source >= -1000) & (source <= -500)).astype(np.uint8)
    worlds = []
    for side in ("engine", "slicer"):
        w = ref.World(scene, volume, f"1mm {method} ({side})")
        w.paint("lungs", lungs)
        worlds.append(w)
    engine_world, slicer_world = worlds
    case = f"1 mm Smoothing {method} 4 mm"
    params = {"SmoothingMethod": method, "KernelSizeMm": 4.0, "GaussianStandardDeviationMm": 2.0}
    logic.apply("Smoothing", params, volume, engine_world.seg, "lungs", segment_editor_node=engine_world.editor)
    slicer_smoothing(slicer_world, "lungs", method, kernel_mm=4.0, sigma_mm=2.0)
    assert_same(case, engine_world, slicer_world, parity)
