"""What Slicer itself does, written with Slicer's own classes (PyPI slicer-core).

Each function repeats the call sequence of one Segment Editor effect (read in
`SegmentEditorThresholdEffect.py` and `SegmentEditorIslandsEffect.py`, reference §2.1 and
§2.12) on a `vtkSlicerSegmentEditorLogic`, so the parity tests compare the extension's
result with Slicer's, not with a re-implementation of our own. Masks are read back with
the logic's `UpdateSelectedSegmentLabelmap` (Slicer's code, not the extension's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

SET = slicer.vtkSlicerSegmentEditorLogic.ModificationModeSet
ADD = slicer.vtkSlicerSegmentEditorLogic.ModificationModeAdd
REMOVE = slicer.vtkSlicerSegmentEditorLogic.ModificationModeRemove

MASK_MODES = {
    "Everywhere": slicer.vtkMRMLSegmentationNode.EditAllowedEverywhere,
    "InsideAllSegments": slicer.vtkMRMLSegmentationNode.EditAllowedInsideAllSegments,
    "InsideVisibleSegments": slicer.vtkMRMLSegmentationNode.EditAllowedInsideVisibleSegments,
    "OutsideAllSegments": slicer.vtkMRMLSegmentationNode.EditAllowedOutsideAllSegments,
    "OutsideVisibleSegments": slicer.vtkMRMLSegmentationNode.EditAllowedOutsideVisibleSegments,
    "InsideSingleSegment": slicer.vtkMRMLSegmentationNode.EditAllowedInsideSingleSegment,
}
OVERWRITE_MODES = {
    "All": slicer.vtkMRMLSegmentEditorNode.OverwriteAllSegments,
    "Visible": slicer.vtkMRMLSegmentEditorNode.OverwriteVisibleSegments,
    "None": slicer.vtkMRMLSegmentEditorNode.OverwriteNone,
}


def load_volume(scene, path: Path):
    """A scalar volume node read the way Slicer reads it (archetype storage node)."""
    volume = slicer.vtkMRMLScalarVolumeNode()
    volume.SetName(path.name.split(".")[0])
    scene.AddNode(volume)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    if not storage.ReadData(volume):
        raise RuntimeError(f"Slicer could not read {path}")
    volume.SetAndObserveStorageNodeID(storage.GetID())
    return volume


def image_array(image) -> np.ndarray:
    e = image.GetExtent()
    shape = (e[5] - e[4] + 1, e[3] - e[2] + 1, e[1] - e[0] + 1)
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape)


class World:
    """A segmentation with its own segment editor node and logic, on a shared volume.

    The parity tests build two identical worlds: one edited through the extension's
    `EngineLogic`, one by the Slicer sequences below.
    """

    def __init__(self, scene, volume, name: str, segments=(("lungs", "Lungs"), ("other", "Other"))):
        self.scene = scene
        self.volume = volume
        self.seg = slicer.vtkMRMLSegmentationNode()
        self.seg.SetName(name)
        scene.AddNode(self.seg)
        self.seg.CreateDefaultDisplayNodes()
        self.seg.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        for sid, sname in segments:
            self.seg.GetSegmentation().AddEmptySegment(sid, sname)
        self.editor = slicer.vtkMRMLSegmentEditorNode()
        scene.AddNode(self.editor)
        self.logic = slicer.vtkSlicerSegmentEditorLogic()
        self.logic.SetMRMLScene(scene)
        self.logic.SetSegmentEditorNode(self.editor)
        self.logic.SetSegmentationNode(self.seg)
        self.logic.SetSourceVolumeNode(volume)

    # -- state ------------------------------------------------------------------------------

    def select(self, sid: str):
        self.logic.SetCurrentSegmentID(sid)

    def set_masking(self, mask_mode="Everywhere", mask_segment="", overwrite="All", intensity=None):
        self.editor.SetMaskMode(MASK_MODES[mask_mode])
        self.editor.SetMaskSegmentID(mask_segment or None)
        self.editor.SetOverwriteMode(OVERWRITE_MODES[overwrite])
        if intensity is None:
            self.editor.SourceVolumeIntensityMaskOff()
        else:
            self.editor.SourceVolumeIntensityMaskOn()
            self.editor.SetSourceVolumeIntensityMaskRange(*intensity)

    def hide(self, sid: str):
        self.seg.GetDisplayNode().SetSegmentVisibility(sid, False)

    def reference(self):
        self.logic.UpdateReferenceGeometryImage()
        return self.logic.GetReferenceGeometryImage()

    def aligned_source(self):
        assert self.logic.UpdateAlignedSourceVolume()
        return self.logic.GetAlignedSourceVolume()

    def modifier(self, array: np.ndarray):
        """A modifier labelmap (Slicer's default one) filled with a `[k][j][i]` array."""
        assert self.logic.ResetModifierLabelmapToDefault()
        image = slicer.vtkOrientedImageData()
        image.DeepCopy(self.logic.GetModifierLabelmap())
        image_array(image)[...] = array
        image.Modified()
        return image

    def paint(self, sid: str, array: np.ndarray, mode=ADD):
        """Sets voxels of a segment with masking bypassed (test setup only)."""
        self.logic.ModifySegmentByLabelmap(self.seg, sid, self.modifier(array), mode, True, True)

    def selected_labelmap(self, sid: str):
        self.select(sid)
        assert self.logic.UpdateSelectedSegmentLabelmap()
        return self.logic.GetSelectedSegmentLabelmap()

    def mask(self, sid: str) -> np.ndarray:
        """A segment as a `[k][j][i]` 0/1 array on the reference extent, read by Slicer."""
        reference = self.reference()
        r = reference.GetExtent()
        out = np.zeros((r[5] - r[4] + 1, r[3] - r[2] + 1, r[1] - r[0] + 1), dtype=np.uint8)
        image = self.selected_labelmap(sid)
        e = image.GetExtent()
        if e[0] > e[1] or e[2] > e[3] or e[4] > e[5]:
            return out
        part = image_array(image) != 0
        lo = [max(r[2 * a], e[2 * a]) for a in range(3)]
        hi = [min(r[2 * a + 1], e[2 * a + 1]) for a in range(3)]
        dst = tuple(slice(lo[a] - r[2 * a], hi[a] - r[2 * a] + 1) for a in (2, 1, 0))
        src = tuple(slice(lo[a] - e[2 * a], hi[a] - e[2 * a] + 1) for a in (2, 1, 0))
        out[dst] = part[src]
        return out

    def segment_ids(self):
        return list(self.seg.GetSegmentation().GetSegmentIDs())

    def segment_names(self):
        s = self.seg.GetSegmentation()
        return [s.GetSegment(i).GetName() for i in self.segment_ids()]

    def apply(self, sid: str, modifier, mode):
        """modifySelectedSegmentByLabelmap as an effect calls it (masking on)."""
        self.select(sid)
        self.logic.SaveStateForUndo()
        self.logic.ModifySegmentByLabelmap(self.seg, sid, modifier, mode, True, False)


# ---------------------------------------------------------------------------------------
# The effects, as Slicer runs them

def threshold(world: World, sid: str, minimum: float, maximum: float) -> None:
    """Threshold effect, Apply (§2.1): vtkImageThreshold on the aligned source, Set."""
    world.select(sid)
    source = world.aligned_source()
    assert world.logic.ResetModifierLabelmapToDefault()
    modifier_type = world.logic.GetModifierLabelmap().GetScalarType()
    f = vtk.vtkImageThreshold()
    f.SetInputData(source)
    f.ThresholdBetween(minimum, maximum)
    f.SetInValue(1)
    f.SetOutValue(0)
    f.SetOutputScalarType(modifier_type)
    f.Update()
    modifier = slicer.vtkOrientedImageData()
    modifier.DeepCopy(f.GetOutput())
    m = vtk.vtkMatrix4x4()
    source.GetImageToWorldMatrix(m)
    modifier.SetImageToWorldMatrix(m)
    world.apply(sid, modifier, SET)


def _island_image(world: World, sid: str, minimum_size: int):
    selected = world.selected_labelmap(sid)
    cast = vtk.vtkImageCast()
    cast.SetInputData(selected)
    cast.SetOutputScalarTypeToUnsignedInt()
    islands = slicer.vtkITKIslandMath()
    islands.SetInputConnection(cast.GetOutputPort())
    islands.SetFullyConnected(False)
    islands.SetMinimumSize(minimum_size)
    islands.Update()
    m = vtk.vtkMatrix4x4()
    selected.GetImageToWorldMatrix(m)
    return islands, m


def _label_modifier(islands, matrix, lo, hi):
    f = vtk.vtkImageThreshold()
    f.SetInputData(islands.GetOutput())
    f.ThresholdBetween(lo, hi)
    f.SetInValue(1)
    f.SetOutValue(0)
    f.SetOutputScalarTypeToUnsignedChar()
    f.Update()
    image = slicer.vtkOrientedImageData()
    image.DeepCopy(f.GetOutput())
    image.SetGeometryFromImageToWorldMatrix(matrix)
    return image


def islands_split(world: World, sid: str, minimum_size: int, operation: str) -> None:
    """Islands KEEP_LARGEST_ISLAND / REMOVE_SMALL_ISLANDS / SPLIT_ISLANDS_TO_SEGMENTS
    (§2.12): vtkITKIslandMath on the uint32 selected segment, 6-connected, labels by
    size; the new segments first (Add, in the selected segment's layer, unique labels),
    the selected segment last (Set), as Slicer does since 2026-07."""
    islands, matrix = _island_image(world, sid, minimum_size)
    count = islands.GetNumberOfIslands()
    segmentation = world.seg.GetSegmentation()
    selected = segmentation.GetSegment(sid)
    world.select(sid)
    world.logic.SaveStateForUndo()
    if operation == "SPLIT_ISLANDS_TO_SEGMENTS":
        for label in range(2, count + 1):
            segment = slicer.vtkSegment()
            segment.SetName(f"{selected.GetName()}_{label}")
            segment.AddRepresentation("Binary labelmap", selected.GetRepresentation("Binary labelmap"))
            segmentation.AddSegment(segment)
            new_id = segmentation.GetSegmentIdBySegment(segment)
            segment.SetLabelValue(segmentation.GetUniqueLabelValueForSharedLabelmap(sid))
            world.logic.ModifySegmentByLabelmap(world.seg, new_id, _label_modifier(islands, matrix, label, label),
                                                ADD, True, False)
        keep = (1, 1)
    elif operation == "KEEP_LARGEST_ISLAND":
        keep = (1, 1)
    elif operation == "REMOVE_SMALL_ISLANDS":
        keep = (1, max(count, 1))
    else:
        raise ValueError(operation)
    world.logic.ModifySegmentByLabelmap(world.seg, sid, _label_modifier(islands, matrix, *keep), SET, True, False)


def islands_click(world: World, sid: str, ijk, operation: str) -> None:
    """Islands KEEP_SELECTED_ISLAND / REMOVE_SELECTED_ISLAND / ADD_SELECTED_ISLAND (§2.12):
    vtkImageThresholdConnectivity from the clicked voxel, over the clicked value, on the
    selected segment (or, for Add, on the merged labelmap of the visible segments cropped to
    their padded union extent)."""
    world.select(sid)
    if operation == "ADD_SELECTED_ISLAND":
        visible = vtk.vtkStringArray()
        world.seg.GetDisplayNode().GetVisibleSegmentIDs(visible)
        label_image = slicer.vtkOrientedImageData()
        assert world.seg.GenerateMergedLabelmapForAllSegments(
            label_image, slicer.vtkSegmentation.EXTENT_UNION_OF_SEGMENTS_PADDED, None, visible)
    else:
        selected = world.selected_labelmap(sid)
        label_image = selected
    e = label_image.GetExtent()
    inside = all(e[2 * a] <= ijk[a] <= e[2 * a + 1] for a in range(3))
    value = label_image.GetScalarComponentAsFloat(*ijk, 0) if inside else 0.0
    world.logic.SaveStateForUndo()
    f = vtk.vtkImageThresholdConnectivity()
    f.SetInputData(label_image)
    seeds = vtk.vtkPoints()
    origin, spacing = label_image.GetOrigin(), label_image.GetSpacing()
    seeds.InsertNextPoint(*(origin[a] + ijk[a] * spacing[a] for a in range(3)))
    f.SetSeedPoints(seeds)
    f.ThresholdBetween(value, value)
    f.SetInValue(1)
    f.SetOutValue(0)
    if operation == "ADD_SELECTED_ISLAND":
        f.Update()
        assert world.logic.ResetModifierLabelmapToDefault()
        modifier = slicer.vtkOrientedImageData()
        modifier.DeepCopy(world.logic.GetModifierLabelmap())
        modifier.DeepCopy(f.GetOutput())
        m = vtk.vtkMatrix4x4()
        label_image.GetImageToWorldMatrix(m)
        modifier.SetImageToWorldMatrix(m)
        world.logic.ModifySegmentByLabelmap(world.seg, sid, modifier, ADD, True, False)
        return
    if value == 0:
        return  # clicking outside the segment does nothing
    f.Update()
    modifier = slicer.vtkOrientedImageData()
    modifier.DeepCopy(f.GetOutput())
    m = vtk.vtkMatrix4x4()
    label_image.GetImageToWorldMatrix(m)
    modifier.SetImageToWorldMatrix(m)
    mode = SET if operation == "KEEP_SELECTED_ISLAND" else REMOVE
    world.logic.ModifySegmentByLabelmap(world.seg, sid, modifier, mode, True, False)
