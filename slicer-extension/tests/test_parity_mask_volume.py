"""Parity: Mask volume through `EngineLogic` and the engine (the new volume made by the
engine, downloaded and added to the scene) equals, voxel for voxel, what Slicer's Mask
volume effect computes with VTK (reference §2.14): hard edge with `vtkImageToImageStencil`
of the segment and `vtkImageStencil` (or a `vtkImageThreshold` label volume for
FILL_INSIDE_AND_OUTSIDE), soft edge with `vtkImageGaussianSmooth` (radius factor 3) of the
0/255 mask normalised by its actual range, blended and cast back to the input type."""

from __future__ import annotations

import numpy as np
import pytest
import vtk
from vtk.util import numpy_support

import slicer_reference as ref
from test_extension_parity import make_worlds


def _image(array: np.ndarray, spacing, vtk_type):
    image = vtk.vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    image.SetSpacing(*spacing)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(array.reshape(-1), deep=True,
                                                               array_type=vtk_type))
    return image


def slicer_mask_volume(source: np.ndarray, mask: np.ndarray, spacing, operation: str, fill: float,
                       inside: float, outside: float, soft_mm: float) -> np.ndarray:
    """The effect's maskVolumeWithSegment on arrays already on the same grid."""
    src_type = numpy_support.get_vtk_array_type(source.dtype)
    if soft_mm == 0:
        stencil_of_outside = vtk.vtkImageToImageStencil()
        stencil_of_outside.ThresholdByLower(0)
        stencil_of_outside.SetInputData(_image(mask, spacing, vtk.VTK_UNSIGNED_CHAR))
        stencil = vtk.vtkImageStencil()
        if operation == "FILL_INSIDE_AND_OUTSIDE":
            constant = vtk.vtkImageThreshold()
            constant.SetInputData(_image(source, spacing, src_type))
            constant.ThresholdByLower(0)
            constant.SetInValue(outside)
            constant.SetOutValue(outside)
            constant.SetOutputScalarType(src_type)
            constant.Update()
            stencil.SetInputData(constant.GetOutput())
            background = inside
        else:
            stencil.SetInputData(_image(source, spacing, src_type))
            background = fill
        stencil.SetStencilConnection(stencil_of_outside.GetOutputPort())
        stencil.SetReverseStencil(operation == "FILL_OUTSIDE")
        stencil.SetBackgroundValue(background)
        stencil.Update()
        return numpy_support.vtk_to_numpy(stencil.GetOutput().GetPointData().GetScalars()).reshape(source.shape)
    binary = vtk.vtkImageThreshold()
    binary.SetOutputScalarTypeToUnsignedChar()
    binary.SetInputData(_image(mask, spacing, vtk.VTK_UNSIGNED_CHAR))
    binary.ThresholdByLower(0)
    binary.SetInValue(0)
    binary.SetOutValue(255)
    gauss = vtk.vtkImageGaussianSmooth()
    gauss.SetInputConnection(binary.GetOutputPort())
    gauss.SetStandardDeviations(*[soft_mm / s for s in spacing])
    gauss.SetRadiusFactor(3.0)
    gauss.Update()
    w = numpy_support.vtk_to_numpy(gauss.GetOutput().GetPointData().GetScalars()).reshape(source.shape)
    weight = (w.astype(float) - w.min()) / float(w.max() - w.min())
    if operation == "FILL_INSIDE_AND_OUTSIDE":
        result = inside + (outside - inside) * weight   # Slicer's own formula (§2.14 quirk)
    else:
        if operation == "FILL_INSIDE":
            weight = 1.0 - weight
        result = source * weight + float(fill) * (1.0 - weight)
    return result.astype(source.dtype)


@pytest.mark.parametrize("soft", [0.0, 5.0])
@pytest.mark.parametrize("operation", ["FILL_OUTSIDE", "FILL_INSIDE", "FILL_INSIDE_AND_OUTSIDE"])
def test_mask_volume(scene_volume, expert, logic, parity, operation, soft):
    scene, volume = scene_volume
    case = f"Mask volume {operation} soft edge {soft} mm"
    world, _ = make_worlds(scene_volume, expert, case, lungs=(expert == 5).astype(np.uint8))
    before = {n.GetID() for n in _volume_nodes(scene)}
    params = {"Operation": operation, "FillValue": -1000.4, "BinaryMaskFillValueInside": 7,
              "BinaryMaskFillValueOutside": 2, "SoftEdgeMm": soft}
    result = logic.apply("Mask volume", params, volume, world.seg, "lungs",
                         segment_editor_node=world.editor)
    assert result.modifiers == []
    assert len(result.volumes) == 1
    made = [n for n in _volume_nodes(scene) if n.GetID() not in before]
    assert [n.GetID() for n in made] == [result.volumes[0].node_id]
    suffix = " label" if operation == "FILL_INSIDE_AND_OUTSIDE" else " masked"
    assert made[0].GetName().startswith(volume.GetName() + suffix)
    ours = ref.image_array(made[0].GetImageData())
    source = ref.image_array(volume.GetImageData())
    theirs = slicer_mask_volume(source, world.mask("lungs"), volume.GetSpacing(), operation,
                                -1000.4, 7, 2, soft)
    assert ours.dtype == theirs.dtype == source.dtype
    differing = int(np.count_nonzero(ours != theirs))
    parity(case, "new volume", int(theirs.size), int(ours.size), differing)
    assert differing == 0
    # The new volume sits where the source is.
    m_ours, m_src = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    made[0].GetIJKToRASMatrix(m_ours)
    volume.GetIJKToRASMatrix(m_src)
    assert all(abs(m_ours.GetElement(r, c) - m_src.GetElement(r, c)) < 1e-6
               for r in range(4) for c in range(4))


def _volume_nodes(scene):
    nodes = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    return [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())]
