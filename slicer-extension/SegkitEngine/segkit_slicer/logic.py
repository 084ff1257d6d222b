"""Runs engine effects on Slicer segmentations the way the Segment Editor runs its own.

An engine effect answers *modifiers* (a mask, a mode and possibly "make a new segment");
Slicer applies them with its own `ModifySegmentByLabelmap`, so the editable area, the
editable intensity range, the overwrite mode and undo are Slicer's by construction.

The work is split in three steps so the Slicer effect can keep its GUI responsive:

1. `EngineLogic.prepare` (main thread): reads the aligned source volume and the segments on
   the reference geometry (as the Segment Editor computes them, §1.1 of the reference),
   into plain numpy arrays.
2. `EngineLogic.run` (any thread): uploads the source if the engine does not hold it yet,
   calls the engine, decodes the modifiers. No VTK or MRML object is touched.
3. `EngineLogic.commit` (main thread): saves state for undo and applies each modifier,
   all of them in one undo step (a result may change several segments), then adds the
   volumes the effect made (Mask volume) to the scene.

`EngineLogic.apply` does the three in a row on a `vtkSlicerSegmentEditorLogic`, for
scripts, the Python console and tests::

    logic = EngineLogic("127.0.0.1:50051")
    logic.apply("Threshold", {"MinimumThreshold": -1024, "MaximumThreshold": -500},
                volumeNode, segmentationNode, "Segment_1")
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import masks as mask_codec
from .geometry import (
    Lattice,
    image_ijk_to_ras,
    image_lattice,
    image_to_array,
    is_empty_extent,
    matrix_to_numpy,
    new_image,
    world_points_to_ijk,
)
from .schema import effect_spec, find_effect, format_number

BINARY_LABELMAP = "Binary labelmap"

# proto ModificationMode -> Slicer's mode names.
MODE_NAMES = {0: "Set", 1: "Add", 2: "Remove", 3: "RemoveAll"}

# Export formats: user spellings -> proto ExportFormat values.
EXPORT_FORMATS = {
    "label.nrrd": 1, "-label.nrrd": 1, "label_nrrd": 1, "export_format_label_nrrd": 1,
    "seg.nrrd": 2, ".seg.nrrd": 2, "seg_nrrd": 2, "export_format_seg_nrrd": 2,
    "nii.gz": 3, ".nii.gz": 3, "nifti_gz": 3, "export_format_nifti_gz": 3,
}

_ENCODINGS = {1: mask_codec.BITS, 2: mask_codec.RUNS, 0: mask_codec.RUNS}
_ENCODING_VALUES = {mask_codec.BITS: 1, mask_codec.RUNS: 2}


class EngineResultError(RuntimeError):
    """An engine answer that cannot be applied (wrong lattice, bad mask data)."""


# ---------------------------------------------------------------------------------------
# Plain data passed between the steps

@dataclass
class SegmentInput:
    """A segment as sent to the engine: a 0/1 `[k][j][i]` mask on the reference lattice."""

    id: str
    name: str
    visible: bool
    mask: np.ndarray
    color: Tuple[float, float, float] = (0.5, 0.5, 0.5)


@dataclass
class PreparedEffect:
    """Everything a call needs, detached from MRML (safe to hand to a worker thread)."""

    effect: str
    parameters: Dict[str, str]
    lattice: Lattice
    extent_start: Tuple[int, int, int]
    source: Optional[object]            # client.SourceVolume
    segments: List[SegmentInput]
    selected_segment_id: str
    point: Optional[Tuple[int, int, int]] = None   # lattice index (i, j, k)
    stream: bool = False
    more_points: List[Tuple[int, int, int]] = field(default_factory=list)   # after `point`
    # The Segment Editor's masking settings (mask_mode, mask_segment_id, overwrite_mode,
    # intensity range or None), sent so that effects whose algorithm stops at locked
    # voxels (Flood filling) see them; Slicer still applies masking to the result.
    masking: Optional[Tuple[int, str, int, Optional[Tuple[float, float]]]] = None
    # Ask for the effect's reported values only (ApplyEffectRequest.report_only).
    report_only: bool = False
    # The request built by `encode` (on the GUI thread), which `EngineLogic.run` sends.
    encoded: Optional[object] = field(default=None, repr=False)

    def encode(self) -> "PreparedEffect":
        """Builds the request now. `EngineLogic.prepare` calls it on Slicer's GUI thread:
        the thread that holds Python's lock runs numpy at full speed, where the worker
        thread would wait for the lock after every large numpy operation (60x slower for
        5 segments of 256x256x160; tests/test_extension_gil.py)."""
        self.encoded = self.request()
        return self

    def request(self, encoding: str = mask_codec.RUNS):
        """The ApplyEffectRequest (without volume_id: the client fills it in)."""
        from .proto.segkit.v1 import engine_pb2 as pb

        req = pb.ApplyEffectRequest(
            effect=self.effect,
            selected_segment_id=self.selected_segment_id,
            result_encoding=_ENCODING_VALUES[encoding],
            report_only=self.report_only,
        )
        for k, v in self.parameters.items():
            req.parameters[k] = v
        for s in self.segments:
            req.segments.append(pb.SegmentMask(
                id=s.id, name=s.name, visible=s.visible,
                mask=mask_to_pb(s.mask, self.lattice), color=list(s.color)))
        if self.point is not None:
            i, j, k = self.point
            req.point.ijk.i, req.point.ijk.j, req.point.ijk.k = int(i), int(j), int(k)
        if self.masking is not None:
            mode, segment_id, overwrite, intensity = self.masking
            req.masking.mask_mode = int(mode)
            req.masking.mask_segment_id = segment_id or ""
            req.masking.overwrite_mode = int(overwrite)
            if intensity is not None:
                req.masking.intensity_range_enabled = True
                req.masking.intensity_minimum, req.masking.intensity_maximum = intensity
        for i, j, k in self.more_points:
            p = req.points.add()
            p.ijk.i, p.ijk.j, p.ijk.k = int(i), int(j), int(k)
        return req


@dataclass
class Modifier:
    """One change to apply: `mask` (`[k][j][i]` on the reference lattice) with `mode`.
    `mask` is None while the answer's mask is still `encoded` (see `EffectResult.decode`)."""

    mode: str
    mask: Optional[np.ndarray]
    new_segment: bool = False
    new_segment_name: str = ""
    target_segment_id: str = ""    # an existing segment other than the selected one
    bypass_masking: bool = False   # Logical operators' BypassMasking
    overwrite_mode: Optional[int] = None   # this modifier's own overwrite mode (joint smoothing)
    reuse_named_segment: bool = False   # new_segment: use the segment of that name if any
    new_segment_color: tuple = ()       # new_segment: (r, g, b) in 0..1
    new_segment_terminology: str = ""   # new_segment: Slicer's TerminologyEntry tag
    encoded: Optional[object] = field(default=None, repr=False)   # proto Mask not decoded yet


# A volume whose name ends with one of these (any case) and whose voxels are integers
# becomes a label map volume node: Slicer's own names for label volumes ("CT label" from
# CreateAndAddLabelVolume, "CT-label.nrrd"). The contract has no flag for it yet.
LABEL_MAP_SUFFIXES = (" label", "-label", "_label")


def is_label_map(name: str, dtype) -> bool:
    """Whether a volume an effect made is shown as a label map (`LABEL_MAP_SUFFIXES`)."""
    return (np.issubdtype(np.dtype(dtype), np.integer)
            and name.lower().endswith(LABEL_MAP_SUFFIXES))


@dataclass
class OutputVolume:
    """A volume an effect made: its `[k][j][i]` voxels on `lattice` (LPS), downloaded off
    the GUI thread; `node_id` is filled by `commit`."""

    name: str
    array: np.ndarray
    lattice: Lattice
    volume_id: str = ""          # the engine's id (its cache holds it)
    label_map: bool = False      # `is_label_map`: a vtkMRMLLabelMapVolumeNode
    node_id: str = ""


@dataclass
class EffectResult:
    effect: str
    lattice: Lattice
    extent_start: Tuple[int, int, int]
    modifiers: List[Modifier] = field(default_factory=list)
    reported: Dict[str, float] = field(default_factory=dict)
    compute_seconds: float = 0.0
    volumes: List[OutputVolume] = field(default_factory=list)
    changed_segment_ids: List[str] = field(default_factory=list)   # filled by commit

    def decode(self) -> "EffectResult":
        """Decodes the modifiers' masks still encoded (`EngineLogic.run(decode=False)`):
        `commit` calls it on the GUI thread, where numpy runs without waiting for the
        interpreter lock."""
        for n, m in enumerate(self.modifiers):
            if m.mask is None and m.encoded is not None:
                m.mask = mask_from_pb(m.encoded, self.lattice, f"modifier {n}")
                m.encoded = None
        return self

    @property
    def volume_node_ids(self) -> List[str]:
        """The scene ids of the volumes `commit` added."""
        return [v.node_id for v in self.volumes if v.node_id]


def mask_to_pb(mask: np.ndarray, lattice: Lattice, encoding: str = "smallest"):
    """A proto `Mask` of a `[k][j][i]` 0/1 array on `lattice`, cropped to its voxels."""
    from .proto.segkit.v1 import engine_pb2 as pb

    encoded = mask_codec.encode_mask(mask, encoding)
    out = pb.Mask(geometry=lattice.to_pb(), encoding=_ENCODING_VALUES[encoded.encoding],
                  data=encoded.data)
    if encoded.extent is not None:
        i0, i1, j0, j1, k0, k1 = encoded.extent
        out.extent.i_min, out.extent.i_max = i0, i1
        out.extent.j_min, out.extent.j_max = j0, j1
        out.extent.k_min, out.extent.k_max = k0, k1
    return out


def mask_from_pb(m, lattice: Lattice, what: str = "mask") -> np.ndarray:
    """The full `[k][j][i]` uint8 array of a proto `Mask`, checked against `lattice`."""
    mask_lattice = Lattice.from_pb(m.geometry)
    if not mask_lattice.matches(lattice):
        raise EngineResultError(
            f"{what}: the engine answered on another lattice ({mask_lattice}) than the "
            f"reference geometry ({lattice})")
    extent = None
    if m.HasField("extent"):
        e = m.extent
        extent = (e.i_min, e.i_max, e.j_min, e.j_max, e.k_min, e.k_max)
    try:
        return mask_codec.decode_mask(extent, _ENCODINGS.get(m.encoding, "?"), m.data,
                                      lattice.shape, what)
    except mask_codec.MaskError as e:
        raise EngineResultError(str(e)) from None


def parameter_strings(params: Mapping[str, object]) -> Dict[str, str]:
    """Parameters as Slicer stores them: strings, booleans "0"/"1", shortest numbers."""
    out = {}
    for k, v in params.items():
        if isinstance(v, bool):
            out[k] = "1" if v else "0"
        elif isinstance(v, (int, np.integer)):
            out[k] = str(int(v))
        elif isinstance(v, (float, np.floating)):
            out[k] = format_number(float(v))
        else:
            out[k] = str(v)
    return out


# ---------------------------------------------------------------------------------------
# Reading segments on the reference geometry (Slicer's selectedSegmentLabelmap, per segment)

def segment_masks(segmentation_node, reference_image, segment_ids: Sequence[str],
                  transform=None) -> Dict[str, np.ndarray]:
    """Each segment as a 0/1 `[k][j][i]` array on the lattice of `reference_image`.

    As `vtkSlicerSegmentEditorLogic::UpdateSelectedSegmentLabelmap` does: the segment's
    label value is thresholded out of its (possibly shared) layer, then the result is
    resampled with nearest neighbour onto the reference extent. When the layer already
    lies on the reference lattice (the usual case) that resampling is a plain copy of
    the overlapping box, done here with numpy. `transform` (a vtkAbstractTransform from
    segmentation to reference coordinates) is only used by export.
    """
    import slicer

    lattice, start = image_lattice(reference_image)
    ref_extent = reference_image.GetExtent()
    segmentation = segmentation_node.GetSegmentation()
    layers: Dict[str, np.ndarray] = {}
    out = {}
    for sid in segment_ids:
        segment = segmentation.GetSegment(sid)
        if segment is None:
            raise KeyError(f"segmentation {segmentation_node.GetName()} has no segment {sid!r}")
        full = np.zeros(lattice.shape, dtype=np.uint8)
        out[sid] = full
        layer = segment.GetRepresentation(BINARY_LABELMAP)
        if layer is None or is_empty_extent(layer.GetExtent()):
            continue
        label = segment.GetLabelValue()
        if transform is None and slicer.vtkOrientedImageDataResample.DoGeometriesMatch(reference_image, layer):
            key = layer.GetAddressAsString("vtkOrientedImageData")
            if key not in layers:
                layers[key] = image_to_array(layer, copy=False)
            _paste_overlap(full, ref_extent, layers[key] == label, layer.GetExtent())
        else:
            binary = _threshold_label(layer, label)
            resampled = slicer.vtkOrientedImageData()
            slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
                binary, reference_image, resampled, False, False, transform)
            if not is_empty_extent(resampled.GetExtent()):
                _paste_overlap(full, ref_extent, image_to_array(resampled, copy=False) != 0,
                               resampled.GetExtent())
    return out


def _threshold_label(layer, label: int):
    import slicer
    import vtk

    threshold = vtk.vtkImageThreshold()
    threshold.SetInputData(layer)
    threshold.ThresholdBetween(label, label)
    threshold.SetInValue(1)
    threshold.SetOutValue(0)
    threshold.SetOutputScalarTypeToUnsignedChar()
    threshold.Update()
    binary = slicer.vtkOrientedImageData()
    binary.ShallowCopy(threshold.GetOutput())
    binary.CopyDirections(layer)
    return binary


def _paste_overlap(full: np.ndarray, full_extent, part: np.ndarray, part_extent) -> None:
    """Writes the overlap of `part` (on `part_extent`) into `full` (on `full_extent`);
    both extents are indices of the same lattice."""
    lo = [max(full_extent[2 * a], part_extent[2 * a]) for a in range(3)]
    hi = [min(full_extent[2 * a + 1], part_extent[2 * a + 1]) for a in range(3)]
    if any(lo[a] > hi[a] for a in range(3)):
        return
    dst = tuple(slice(lo[a] - full_extent[2 * a], hi[a] - full_extent[2 * a] + 1) for a in (2, 1, 0))
    src = tuple(slice(lo[a] - part_extent[2 * a], hi[a] - part_extent[2 * a] + 1) for a in (2, 1, 0))
    full[dst] = part[src]


def visible_segment_ids(segmentation_node) -> List[str]:
    """Segments shown by the segmentation's display node; every segment when it has none."""
    display = segmentation_node.GetDisplayNode()
    ids = list(segmentation_node.GetSegmentation().GetSegmentIDs())
    if display is None:
        return ids
    return [sid for sid in ids if display.GetSegmentVisibility(sid)]


def add_segment_in_layer(segmentation_node, layer_segment_id: str, name: str) -> str:
    """A new empty segment named `name` in the layer of `layer_segment_id`, with a label
    value unused in that layer (as Slicer's Islands effect does when splitting)."""
    import slicer

    segmentation = segmentation_node.GetSegmentation()
    base = segmentation.GetSegment(layer_segment_id)
    if base is None:
        raise KeyError(f"no segment {layer_segment_id!r} to share a layer with")
    segment = slicer.vtkSegment()
    segment.SetName(name)
    segment.AddRepresentation(BINARY_LABELMAP, base.GetRepresentation(BINARY_LABELMAP))
    segmentation.AddSegment(segment)
    segment_id = segmentation.GetSegmentIdBySegment(segment)
    segment.SetLabelValue(segmentation.GetUniqueLabelValueForSharedLabelmap(layer_segment_id))
    return segment_id


def named_segment_id(segmentation_node, name: str) -> Optional[str]:
    """The ID of the first segment named `name`, or None."""
    segmentation = segmentation_node.GetSegmentation()
    for n in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(n)
        if segmentation.GetSegment(segment_id).GetName() == name:
            return segment_id
    return None


def describe_segment(segmentation_node, segment_id: str, color, terminology: str) -> None:
    """Sets a new segment's colour and terminology entry when the engine gave them."""
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        return
    if len(color) == 3:
        segment.SetColor(*[float(c) for c in color])
    if terminology:
        segment.SetTag("TerminologyEntry", terminology)


def add_volume_node(segmentation_node, output: OutputVolume):
    """A new volume node in the segmentation's scene holding `output`: a
    vtkMRMLLabelMapVolumeNode when `output.label_map`, else a vtkMRMLScalarVolumeNode, with
    the IJK->RAS matrix of its LPS lattice and display nodes. The lattice is in the
    coordinates of the segmentation (the engine worked on the source aligned to the
    segmentation's reference geometry), so the node goes under the segmentation's parent
    transform."""
    import slicer
    import vtk
    from vtk.util import numpy_support

    from .geometry import numpy_to_vtk_matrix

    scene = segmentation_node.GetScene()
    if scene is None:
        raise EngineResultError("the segmentation is in no scene: nowhere to add the new volume")
    array = np.ascontiguousarray(output.array)
    if tuple(array.shape) != output.lattice.shape:
        raise EngineResultError(f"volume {output.name!r}: voxels of shape {array.shape} on a lattice "
                                f"of shape {output.lattice.shape}")
    image = vtk.vtkImageData()
    image.SetDimensions(*output.lattice.size)
    scalars = numpy_support.numpy_to_vtk(array.reshape(-1), deep=True,
                                         array_type=numpy_support.get_vtk_array_type(array.dtype))
    scalars.SetName("ImageScalars")
    image.GetPointData().SetScalars(scalars)
    node = slicer.vtkMRMLLabelMapVolumeNode() if output.label_map else slicer.vtkMRMLScalarVolumeNode()
    node.SetName(scene.GenerateUniqueName(output.name))
    node.SetIJKToRASMatrix(numpy_to_vtk_matrix(output.lattice.index_to_ras()))
    node.SetAndObserveImageData(image)
    scene.AddNode(node)
    node.CreateDefaultDisplayNodes()
    transform_id = segmentation_node.GetTransformNodeID()
    if transform_id:
        node.SetAndObserveTransformNodeID(transform_id)
    return node


# ---------------------------------------------------------------------------------------
# Where the Segment Editor's state comes from

def editor_method(obj, name: str):
    """The method `name` of a Segment Editor object (its node, or the scripted effect),
    or the same method under its Slicer < 5.1 spelling: 5.1 renamed the editor's "master"
    volume to "source" (GetMasterVolumeNode, masterVolumeImageData, ...)."""
    method = getattr(obj, name, None)
    if method is None:
        method = getattr(obj, name.replace("Source", "Master").replace("source", "master"))
    return method


class EditorContext:
    """What the Segment Editor gives an effect. The Slicer effect implements it over
    `scriptedEffect`; `LogicContext` over `vtkSlicerSegmentEditorLogic`."""

    segmentation_node = None
    selected_segment_id: str = ""
    source_volume_node = None

    def reference_image(self):
        """An image with the reference geometry and extent (scalars not needed)."""
        raise NotImplementedError

    def aligned_source(self):
        """The source volume resampled onto the reference geometry (or None)."""
        raise NotImplementedError

    def save_state_for_undo(self) -> None:
        raise NotImplementedError

    def modify_segment(self, segment_id: str, modifier_image, mode: str, selected: bool,
                       bypass_masking: bool = False) -> None:
        """Applies a modifier with Slicer's masking and overwrite rules (with
        `bypass_masking`, only the editable intensity range applies, as in Slicer)."""
        raise NotImplementedError

    def visible_segment_ids(self) -> List[str]:
        return visible_segment_ids(self.segmentation_node)

    def editor_node(self):
        """The `vtkMRMLSegmentEditorNode` holding the masking settings (or None)."""
        return None

    def masking_settings(self):
        """(mask mode, mask segment id, overwrite mode, intensity range or None) from the
        editor node; Slicer's enum values are the proto's."""
        node = self.editor_node()
        if node is None:
            return None
        intensity = None
        if editor_method(node, "GetSourceVolumeIntensityMask")():
            lo, hi = editor_method(node, "GetSourceVolumeIntensityMaskRange")()
            intensity = (float(lo), float(hi))
        return (int(node.GetMaskMode()), node.GetMaskSegmentID() or "",
                int(node.GetOverwriteMode()), intensity)

    def volume_added(self, volume_node, output: "OutputVolume") -> None:
        """Called after `commit` added a volume the effect made to the scene; the Slicer
        effect shows it in the slice views. Nothing here."""

    def source_key(self) -> Tuple[tuple, tuple]:
        """(node key, fingerprint) of the aligned source: which node and geometry it comes
        from, and the modification times that change when its voxels may have."""
        node = self.source_volume_node
        seg = self.segmentation_node
        reference = self.reference_image()
        geometry = (tuple(reference.GetExtent()), tuple(np.round(
            matrix_to_numpy(_image_to_world(reference)).reshape(-1), 9)))
        transforms = tuple(
            (t.GetID(), t.GetMTime()) if t is not None else None
            for t in (node.GetParentTransformNode(), seg.GetParentTransformNode()))
        image = node.GetImageData()
        fingerprint = (node.GetMTime(), image.GetMTime() if image is not None else 0, transforms)
        return (node.GetID(), geometry), fingerprint


def markups_points_ijk(markups_node, segmentation_node, reference_image) -> List[Tuple[int, int, int]]:
    """The defined control points of a markups point list (in world coordinates) as voxel
    indices (i, j, k) of the reference image, through the segmentation's parent transform.
    Points still being placed or without a position are left out, as Slicer does."""
    import vtk

    points = []
    for n in range(markups_node.GetNumberOfControlPoints()):
        if markups_node.GetNthControlPointPositionStatus(n) != markups_node.PositionDefined:
            continue
        p = [0.0, 0.0, 0.0]
        markups_node.GetNthControlPointPositionWorld(n, p)
        points.append(p)
    transform_node = segmentation_node.GetParentTransformNode()
    if transform_node is not None:
        from_world = vtk.vtkGeneralTransform()
        transform_node.GetTransformFromWorld(from_world)
        points = [from_world.TransformPoint(p) for p in points]
    return world_points_to_ijk(points, image_ijk_to_ras(reference_image))


def _image_to_world(image):
    import vtk

    m = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(m)
    return m


class LogicContext(EditorContext):
    """The Segment Editor's state held by a `vtkSlicerSegmentEditorLogic` and its
    `vtkMRMLSegmentEditorNode` (masking settings, selected segment, source volume)."""

    def __init__(self, editor_logic, segment_editor_node, segmentation_node, source_volume_node,
                 segment_id: str):
        self.logic = editor_logic
        self.editor_node_ = segment_editor_node
        self.segmentation_node = segmentation_node
        self.source_volume_node = source_volume_node
        self.selected_segment_id = segment_id
        scene = segmentation_node.GetScene()
        if scene is None:
            raise ValueError("the segmentation node must be in a MRML scene")
        if editor_logic.GetMRMLScene() is not scene:
            editor_logic.SetMRMLScene(scene)
        if editor_logic.GetSegmentEditorNode() is not segment_editor_node:
            editor_logic.SetSegmentEditorNode(segment_editor_node)
        editor_logic.SetSegmentationNode(segmentation_node)
        editor_logic.SetSourceVolumeNode(source_volume_node)
        if segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
            raise KeyError(f"segmentation {segmentation_node.GetName()} has no segment {segment_id!r}")
        editor_logic.SetCurrentSegmentID(segment_id)

    def reference_image(self):
        if not self.logic.UpdateReferenceGeometryImage():
            raise ValueError("no reference geometry: select a source volume first")
        return self.logic.GetReferenceGeometryImage()

    def aligned_source(self):
        if self.source_volume_node is None:
            return None
        if not self.logic.UpdateAlignedSourceVolume():
            raise ValueError("the source volume could not be aligned to the segmentation")
        return self.logic.GetAlignedSourceVolume()

    def save_state_for_undo(self) -> None:
        self.logic.SaveStateForUndo()

    def editor_node(self):
        return self.editor_node_

    def modify_segment(self, segment_id, modifier_image, mode, selected,
                       bypass_masking=False) -> None:
        modes = {
            "Set": self.logic.ModificationModeSet,
            "Add": self.logic.ModificationModeAdd,
            "Remove": self.logic.ModificationModeRemove,
            "RemoveAll": self.logic.ModificationModeRemoveAll,
        }
        # isPerSegment=True, bypassMasking=False: exactly modifySelectedSegmentByLabelmap.
        self.logic.ModifySegmentByLabelmap(self.segmentation_node, segment_id, modifier_image,
                                           modes[mode], True, bool(bypass_masking))


# ---------------------------------------------------------------------------------------
# The logic

class EngineLogic:
    """Runs the engine's effects on Slicer segmentations; see the module documentation."""

    def __init__(self, address: Optional[str] = None, token: Optional[str] = None, client=None,
                 compression: str = "auto", max_undo_states: int = 10):
        if client is None:
            if address is None:
                raise ValueError("give an engine address (host:port) or a client")
            from .client import EngineClient

            client = EngineClient(address, token=token, compression=compression)
        self.client = client
        self.max_undo_states = max_undo_states
        self._effects = None
        self._editor_logic = None
        self._editor_node = None

    def close(self) -> None:
        self.client.close()

    # -- engine effects ---------------------------------------------------------------------

    def effects(self, refresh: bool = False):
        """The engine's `EffectInfo` list (asked once, then remembered)."""
        if self._effects is None or refresh:
            self._effects = self.client.list_effects()
        return self._effects

    def effect_info(self, name: str):
        return find_effect(self.effects(), name)

    # -- step 1: main thread ------------------------------------------------------------------

    def prepare(self, context: EditorContext, effect: str, parameters: Mapping[str, object],
                point_ijk: Optional[Sequence[int]] = None,
                points_ijk: Optional[Sequence[Sequence[int]]] = None,
                report_only: bool = False) -> PreparedEffect:
        """Reads what the effect needs from the Segment Editor's state. `point_ijk` is an
        index of the reference image (as `xyToIjk` answers it); `points_ijk` several, in
        order (a Paint stroke), the first taking the place of `point_ijk`. With
        `report_only` the call asks for the effect's reported values alone: no segment and
        no masking are read or sent, and its answer changes nothing."""
        from .client import SourceVolume

        info = self.effect_info(effect)
        spec = effect_spec(info)
        values = parameter_strings(parameters)
        merged = dict(spec.defaults())
        merged.update(values)
        reference = context.reference_image()
        lattice, start = image_lattice(reference)

        source = None
        if spec.needs_source(merged):
            aligned = context.aligned_source()
            if aligned is None:
                raise ValueError(f"{info.name} needs a source volume")
            aligned_lattice, aligned_start = image_lattice(aligned)
            if not aligned_lattice.matches(lattice) or tuple(aligned_start) != tuple(start):
                raise ValueError("the aligned source volume is not on the reference geometry")
            node_key, fingerprint = context.source_key()
            # A volume the engine already holds is only read again if the engine lost it
            # (restart): a view of VTK's voxels is enough then. A new or changed one is
            # copied, so the worker thread hashes and uploads voxels nobody changes.
            uploaded = self.client.volumes.known(node_key, fingerprint)
            source = SourceVolume(node_key=node_key, fingerprint=fingerprint,
                                  array=image_to_array(aligned, copy=not uploaded), lattice=lattice,
                                  name=context.source_volume_node.GetName() or "")

        # Only the segments the effect reads go (each is a full-size array read from MRML
        # on the GUI thread): the selected one, the visible ones when the effect or its
        # chosen operation says so in its schema, segments named by parameters, and those
        # the editable area is made of (effects whose algorithm stops at locked voxels,
        # such as Flood filling, build it in the engine).
        masking = None if report_only else context.masking_settings()
        segments: List[SegmentInput] = []
        seg_node = context.segmentation_node
        ids = list(seg_node.GetSegmentation().GetSegmentIDs())
        visible = context.visible_segment_ids()
        send = () if report_only else spec.segments_to_send(
            merged, ids, visible, context.selected_segment_id, masking)
        if send:
            arrays = segment_masks(seg_node, reference, send)
            for sid in send:
                segment = seg_node.GetSegmentation().GetSegment(sid)
                segments.append(SegmentInput(
                    id=sid, name=segment.GetName() or sid, visible=sid in visible,
                    mask=arrays[sid], color=tuple(segment.GetColor())))

        clicked = [point_ijk] if point_ijk is not None else []
        clicked += list(points_ijk or [])
        points = []
        for p in clicked:
            q = tuple(int(p[a]) - start[a] for a in range(3))
            if any(not 0 <= q[a] < lattice.size[a] for a in range(3)):
                raise ValueError(f"point {tuple(p)} is outside the reference extent "
                                 f"{tuple(reference.GetExtent())}")
            points.append(q)
        point = points[0] if points else None
        if point is None and spec.needs_point(merged):
            raise ValueError(f"{info.name} with these parameters needs a clicked point")
        if point is None and spec.needs_point_list(merged):
            raise ValueError(f"{info.name} needs points: place them in a markups point list "
                             "and choose it")

        return PreparedEffect(
            effect=info.name, parameters=values, lattice=lattice, extent_start=tuple(start),
            source=source, segments=segments, selected_segment_id=context.selected_segment_id,
            point=point, stream=info.long_running, more_points=points[1:],
            masking=masking, report_only=report_only)

    def prepare_automatic_range(self, context: EditorContext, effect: str,
                                parameters: Mapping[str, object]) -> PreparedEffect:
        """A report-only call for the intensity range the effect would choose itself (its
        automatic-range parameter set, e.g. Threshold's AutoThreshold with the chosen
        method and mode). Run it with `run`, then read the bounds with `reported_range`."""
        spec = effect_spec(self.effect_info(effect))
        if not spec.auto_range_parameter:
            raise ValueError(f"{spec.name} cannot choose its intensity range itself")
        values = parameter_strings(parameters)
        values[spec.auto_range_parameter] = "1"
        return self.prepare(context, effect, values, report_only=True).encode()

    def reported_range(self, effect: str, result: "EffectResult") -> Tuple[float, float]:
        """The (minimum, maximum) an effect reported under its range parameters' names."""
        spec = effect_spec(self.effect_info(effect))
        if spec.range_parameters is None:
            raise ValueError(f"{spec.name} has no intensity range")
        lo, hi = spec.range_parameters
        missing = [n for n in (lo, hi) if n not in result.reported]
        if missing:
            raise EngineResultError(f"{spec.name} did not report {', '.join(missing)}")
        return float(result.reported[lo]), float(result.reported[hi])

    # -- step 2: any thread -------------------------------------------------------------------

    def run(self, prepared: PreparedEffect, on_progress=None, decode: bool = True) -> EffectResult:
        """Calls the engine (uploading the source when it does not hold it) and decodes
        the answer. Touches no VTK or MRML object. On a worker thread in Slicer, pass an
        `encode`d `prepared` and `decode=False`, and let `commit` decode on the GUI
        thread: the worker then runs almost no Python (see `PreparedEffect.encode`)."""
        request = prepared.encoded if prepared.encoded is not None else prepared.request()
        reply = self.client.apply_effect(request, source=prepared.source,
                                         stream=prepared.stream, on_progress=on_progress)
        return self.result_from_reply(prepared, reply, decode=decode)

    def result_from_reply(self, prepared: PreparedEffect, reply, decode: bool = True) -> EffectResult:
        """Decodes an ApplyEffectResponse (of ApplyEffect or ApplyPreview) on the lattice
        of `prepared`, fetching the volumes it made. Touches no VTK or MRML object. With
        `decode=False` the masks stay encoded until `EffectResult.decode`."""
        result = EffectResult(effect=prepared.effect, lattice=prepared.lattice,
                              extent_start=prepared.extent_start,
                              reported=dict(reply.reported), compute_seconds=reply.compute_seconds)
        for n, m in enumerate(reply.modifiers):
            if m.mode not in MODE_NAMES:
                raise EngineResultError(f"modifier {n}: unknown mode {m.mode}")
            result.modifiers.append(Modifier(
                mode=MODE_NAMES[m.mode],
                mask=mask_from_pb(m.mask, prepared.lattice, f"modifier {n}") if decode else None,
                encoded=None if decode else m.mask,
                new_segment=m.new_segment,
                new_segment_name=m.new_segment_name,
                target_segment_id=m.target_segment_id,
                bypass_masking=m.bypass_masking,
                overwrite_mode=m.overwrite_mode if m.HasField("overwrite_mode") else None,
                reuse_named_segment=m.reuse_named_segment,
                new_segment_color=tuple(m.new_segment_color),
                new_segment_terminology=m.new_segment_terminology))
        for n, ref in enumerate(reply.volumes):
            result.volumes.append(self._download(ref, n))
        return result

    def _download(self, ref, n: int) -> OutputVolume:
        """Fetches volume `n` of an answer, checked against the VolumeRef the answer gave."""
        got = self.client.download_volume(ref.volume_id)
        lattice = got.lattice
        if ref.HasField("header") and (
                not Lattice.from_pb(ref.header.geometry).matches(lattice)
                or ref.header.scalar_type != got.ref.header.scalar_type):
            raise EngineResultError(
                f"volume {n} ({ref.volume_id}): the engine sent another geometry or voxel type "
                f"than its answer announced")
        name = ref.header.name or got.name or f"{ref.volume_id[:8]}"
        return OutputVolume(name=name, array=got.array, lattice=lattice, volume_id=ref.volume_id,
                            label_map=is_label_map(name, got.array.dtype))

    # -- step 3: main thread ------------------------------------------------------------------

    def commit(self, context: EditorContext, result: EffectResult) -> List[str]:
        """Saves state for undo and applies the modifiers in order (one undo step for all
        of them, whichever segments they change), then adds the volumes the effect made to
        the scene (`result.volumes[n].node_id`). Answers the IDs of the segments modified
        (new ones included). Everything is checked before anything changes: a segment
        removed while the engine worked refuses the whole result."""
        result.decode()
        if result.modifiers:
            self._check_modifiers(context, result)
        changed: List[str] = []
        if result.modifiers:
            lattice, start = image_lattice(context.reference_image())
            selected = context.selected_segment_id
            # One undo step for the whole result, however many segments it changes.
            context.save_state_for_undo()
            # One batch of node events too (as slicer.util.NodeModify): views and segment
            # lists redraw once, not after every segment added or changed.
            seg_node = context.segmentation_node
            was_modifying = seg_node.StartModify()
            try:
                for m in result.modifiers:
                    changed_here = self._commit_modifier(context, m, lattice, start, selected)
                    if changed_here not in changed:
                        changed.append(changed_here)
            finally:
                seg_node.EndModify(was_modifying)
        result.changed_segment_ids = changed
        for output in result.volumes:
            if output.node_id:
                continue   # committed already
            node = add_volume_node(context.segmentation_node, output)
            output.node_id = node.GetID()
            context.volume_added(node, output)
        return changed

    def _commit_modifier(self, context: EditorContext, m: "Modifier", lattice, start, selected: str) -> str:
        """Applies one modifier (in `commit`'s batch); answers the segment it changed."""
        image = new_image(lattice, start, m.mask)
        existing = (named_segment_id(context.segmentation_node, m.new_segment_name)
                    if m.new_segment and m.reuse_named_segment else None)
        if existing:
            target = existing
        elif m.new_segment:
            target = add_segment_in_layer(context.segmentation_node, selected,
                                          m.new_segment_name or "Segment")
            describe_segment(context.segmentation_node, target, m.new_segment_color,
                             m.new_segment_terminology)
        elif m.target_segment_id:
            target = m.target_segment_id
        else:
            target = selected
        node = context.editor_node() if m.overwrite_mode is not None else None
        old = node.GetOverwriteMode() if node is not None else None
        if node is not None:
            # As Slicer's joint smoothing: this write uses its own overwrite mode.
            node.SetOverwriteMode(int(m.overwrite_mode))
        try:
            context.modify_segment(target, image, m.mode, selected=target == selected,
                                   bypass_masking=m.bypass_masking)
        finally:
            if node is not None:
                node.SetOverwriteMode(old)
        return target

    def _check_modifiers(self, context: EditorContext, result: EffectResult) -> None:
        lattice, start = image_lattice(context.reference_image())
        if not lattice.matches(result.lattice) or tuple(start) != tuple(result.extent_start):
            raise EngineResultError(
                "the segmentation's reference geometry changed while the engine was working: "
                "apply the effect again")
        segmentation = context.segmentation_node.GetSegmentation()
        selected = context.selected_segment_id
        needed = {m.target_segment_id or selected for m in result.modifiers}
        for sid in sorted(needed):
            if segmentation.GetSegment(sid) is None:
                raise EngineResultError(f"segment {sid!r} was removed while the engine was working")

    # -- headless use -------------------------------------------------------------------------

    def editor_context(self, source_volume_node, segmentation_node, segment_id: str,
                       segment_editor_node=None) -> LogicContext:
        """A `LogicContext` on this logic's own `vtkSlicerSegmentEditorLogic` (so undo
        history survives between calls) and the given or a private editor node."""
        import slicer

        if self._editor_logic is None:
            self._editor_logic = slicer.vtkSlicerSegmentEditorLogic()
            self._editor_logic.SetMaximumNumberOfUndoStates(self.max_undo_states)
        if segment_editor_node is None:
            scene = segmentation_node.GetScene()
            if self._editor_node is None or self._editor_node.GetScene() is not scene:
                self._editor_node = slicer.vtkMRMLSegmentEditorNode()
                self._editor_node.SetName("SegkitEngineEditor")
                self._editor_node.SetSaveWithScene(False)
                self._editor_node.SetHideFromEditors(True)
                if scene is not None:
                    scene.AddNode(self._editor_node)
            segment_editor_node = self._editor_node
        return LogicContext(self._editor_logic, segment_editor_node, segmentation_node,
                            source_volume_node, segment_id)

    def apply(self, effect: str, params: Mapping[str, object], source_volume_node, segmentation_node,
              segment_id: str, segment_editor_node=None,
              point_ijk: Optional[Sequence[int]] = None,
              points_ijk: Optional[Sequence[Sequence[int]]] = None) -> EffectResult:
        """Runs `effect` on segment `segment_id` as the Segment Editor would, with the
        masking settings of `segment_editor_node` (Slicer's defaults when None)."""
        context = self.editor_context(source_volume_node, segmentation_node, segment_id,
                                      segment_editor_node)
        prepared = self.prepare(context, effect, params, point_ijk, points_ijk)
        result = self.run(prepared)
        self.commit(context, result)
        return result

    def undo(self) -> None:
        if self._editor_logic is not None:
            self._editor_logic.Undo()

    def redo(self) -> None:
        if self._editor_logic is not None:
            self._editor_logic.Redo()

    # -- export ---------------------------------------------------------------------------------

    def export(self, segmentation_node, reference_volume_node, path: str, format=None,
               segment_ids: Optional[Sequence[str]] = None) -> str:
        """Writes segments (all by default, in segment order) with the engine's Export on
        the lattice of `reference_volume_node`, to the local `path`. `format` is
        "label.nrrd", "seg.nrrd" or "nii.gz" (default: from the file name)."""
        from .client import SourceVolume
        from .proto.segkit.v1 import engine_pb2 as pb

        fmt = export_format(format if format is not None else path)
        reference = _volume_geometry_image(reference_volume_node)
        lattice, _ = image_lattice(reference)
        ids = list(segment_ids) if segment_ids is not None else list(
            segmentation_node.GetSegmentation().GetSegmentIDs())
        transform = _transform_between(segmentation_node, reference_volume_node)
        arrays = segment_masks(segmentation_node, reference, ids, transform)
        visible = set(visible_segment_ids(segmentation_node))
        request = pb.ExportRequest(format=fmt)
        for sid in ids:
            segment = segmentation_node.GetSegmentation().GetSegment(sid)
            request.segments.append(pb.SegmentMask(
                id=sid, name=segment.GetName() or sid, visible=sid in visible,
                mask=mask_to_pb(arrays[sid], lattice), color=list(segment.GetColor()),
                label_value=0))
        source = None
        if not ids:
            # Nothing carries the lattice: the engine takes it from the volume.
            image = reference_volume_node.GetImageData()
            source = SourceVolume(
                node_key=(reference_volume_node.GetID(), "export"),
                fingerprint=(reference_volume_node.GetMTime(), image.GetMTime()),
                array=image_to_array(image), lattice=lattice,
                name=reference_volume_node.GetName() or "")
        data = self.client.export(request, source)
        write_atomically(path, data)
        return path


def export_format(format_or_path) -> int:
    """The proto ExportFormat of "label.nrrd" / "seg.nrrd" / "nii.gz", of a file name
    ending that way, or of a proto value."""
    if isinstance(format_or_path, int):
        if format_or_path not in (1, 2, 3):
            raise ValueError(f"unknown export format {format_or_path}")
        return format_or_path
    text = str(format_or_path).strip().lower()
    if text in EXPORT_FORMATS:
        return EXPORT_FORMATS[text]
    for suffix, value in (("-label.nrrd", 1), (".seg.nrrd", 2), (".nii.gz", 3)):
        if text.endswith(suffix):
            return value
    raise ValueError(f"unknown export format {format_or_path!r}: use label.nrrd, seg.nrrd or nii.gz")


def _volume_geometry_image(volume_node):
    """A geometry-only vtkOrientedImageData with a volume node's lattice."""
    import slicer
    import vtk

    image = volume_node.GetImageData()
    if image is None:
        raise ValueError(f"volume {volume_node.GetName()} has no voxels")
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(ijk_to_ras)
    out = slicer.vtkOrientedImageData()
    out.SetExtent(image.GetExtent())
    out.SetImageToWorldMatrix(ijk_to_ras)
    return out


def _transform_between(segmentation_node, volume_node):
    """The transform from segmentation to volume coordinates, or None when both share
    their parent transform (then the lattices compare directly)."""
    import slicer
    import vtk

    a, b = segmentation_node.GetParentTransformNode(), volume_node.GetParentTransformNode()
    if a is b:
        return None
    transform = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(a, b, transform)
    return transform


def write_atomically(path: str, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file in the same folder."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".segkit-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


__all__ = [
    "EngineLogic", "EditorContext", "LogicContext", "PreparedEffect", "EffectResult", "Modifier",
    "OutputVolume", "SegmentInput", "EngineResultError", "segment_masks", "add_segment_in_layer",
    "add_volume_node", "is_label_map", "LABEL_MAP_SUFFIXES",
    "visible_segment_ids", "mask_to_pb", "mask_from_pb", "parameter_strings", "export_format",
]
