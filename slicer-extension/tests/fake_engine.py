"""A stand-in for the engine client, for the logic paths no engine effect exercises yet.

`FakeClient` has the methods of `segkit_slicer.client.EngineClient` that `EngineLogic`
uses. Its effects are made up here (their schema is built with the real proto messages),
each answering what the new effects of the contract answer: modifiers for other segments
(`target_segment_id`, joint smoothing), modifiers with `bypass_masking` (Logical
operators) and new volumes (`ApplyEffectResponse.volumes`, Mask volume), fetched with
`download_volume`. The answers are computed here in numpy from the request, so the tests
check what the extension does with them, not an effect.

`small_scene()` makes a tiny oblique int16 volume in a MRML scene, so these tests need no
test data.
"""

from __future__ import annotations

from typing import Callable, Dict, List

import numpy as np

from segkit_slicer.client import DownloadedVolume, EngineError, TransferStats, VolumeCache
from segkit_slicer.geometry import Lattice
from segkit_slicer.logic import mask_from_pb, mask_to_pb
from segkit_slicer.proto.segkit.v1 import engine_pb2 as pb

SELECTED, VISIBLE, SOURCE = (pb.EFFECT_INPUT_SELECTED_SEGMENT, pb.EFFECT_INPUT_VISIBLE_SEGMENTS,
                             pb.EFFECT_INPUT_SOURCE_VOLUME)
MODES = {"SET": pb.MODIFICATION_MODE_SET, "ADD": pb.MODIFICATION_MODE_ADD,
         "REMOVE": pb.MODIFICATION_MODE_REMOVE}


def _segments(request) -> Dict[str, np.ndarray]:
    out = {}
    for s in request.segments:
        out[s.id] = mask_from_pb(s.mask, Lattice.from_pb(s.mask.geometry), s.id)
    return out


def _lattice(request):
    return Lattice.from_pb(request.segments[0].mask.geometry)


def logical_info():
    """Like Logical operators: Operation, ModifierSegmentID (SEGMENT), BypassMasking."""
    info = pb.EffectInfo(name="FakeLogical", cli_name="fake-logical", title="Fake logical",
                         help="Union / subtract / copy of another segment.",
                         inputs=[SELECTED, VISIBLE])
    op = info.parameters.add(name="Operation", type=pb.PARAMETER_TYPE_CHOICE, default_value="UNION")
    for value in ("UNION", "SUBTRACT", "COPY"):
        op.choices.add(value=value, title=value.title())
    info.parameters.add(name="ModifierSegmentID", title="Modifier segment", type=pb.PARAMETER_TYPE_SEGMENT,
                        default_value="")
    info.parameters.add(name="BypassMasking", type=pb.PARAMETER_TYPE_BOOLEAN, default_value="1")
    return info


def logical_answer(request, source):
    masks = _segments(request)
    other = request.parameters.get("ModifierSegmentID", "")
    if other not in masks:
        raise EngineError("ApplyEffect", _code("INVALID_ARGUMENT"),
                          f"parameter ModifierSegmentID: no segment has the id {other!r}")
    mode = {"UNION": "ADD", "SUBTRACT": "REMOVE", "COPY": "SET"}[request.parameters.get("Operation", "UNION")]
    reply = pb.ApplyEffectResponse()
    reply.modifiers.add(mode=MODES[mode], mask=mask_to_pb(masks[other], _lattice(request)),
                        bypass_masking=request.parameters.get("BypassMasking", "1") == "1")
    return reply


def joint_info():
    """Like joint smoothing: one SET modifier for every visible segment."""
    return pb.EffectInfo(name="FakeJoint", cli_name="fake-joint", title="Fake joint",
                         help="Grows every visible segment by one voxel along i.", inputs=[SELECTED, VISIBLE])


def grow_i(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[:, :, 1:] |= mask[:, :, :-1]
    return out


def joint_answer(request, source):
    masks = _segments(request)
    reply = pb.ApplyEffectResponse()
    for s in request.segments:
        if not s.visible:
            continue
        # The selected segment as "the selected one", the others by id.
        target = "" if s.id == request.selected_segment_id else s.id
        reply.modifiers.add(mode=pb.MODIFICATION_MODE_SET, mask=mask_to_pb(grow_i(masks[s.id]), _lattice(request)),
                            target_segment_id=target)
    return reply


def split_info():
    """Like Islands' split to segments: one new segment per visible segment."""
    return pb.EffectInfo(name="FakeSplit", cli_name="fake-split", title="Fake split",
                         help="Adds a copy of every visible segment as a new segment.",
                         inputs=[SELECTED, VISIBLE])


def split_answer(request, source):
    masks = _segments(request)
    reply = pb.ApplyEffectResponse()
    for s in request.segments:
        if s.visible:
            reply.modifiers.add(mode=pb.MODIFICATION_MODE_SET, mask=mask_to_pb(masks[s.id], _lattice(request)),
                                new_segment=True, new_segment_name=f"{s.name} copy")
    return reply


def mask_volume_info():
    """Like Mask volume: a new volume, no modifier."""
    info = pb.EffectInfo(name="FakeMaskVolume", cli_name="fake-mask-volume", title="Fake mask volume",
                         help="Blanks the source outside the selected segment.", inputs=[SOURCE, SELECTED],
                         produces_volume=True)
    op = info.parameters.add(name="Operation", type=pb.PARAMETER_TYPE_CHOICE, default_value="FILL_OUTSIDE")
    op.choices.add(value="FILL_OUTSIDE", title="Fill outside")
    op.choices.add(value="FILL_INSIDE_AND_OUTSIDE", title="Binary mask")
    return info


class FakeClient:
    """The client methods EngineLogic calls, answering from Python functions."""

    def __init__(self, source_name: str = "Small"):
        self.address = "fake:0"
        self.stats = TransferStats()
        self.volumes = VolumeCache()
        self.requests: List[object] = []
        self.downloads: List[str] = []
        self.held: Dict[str, DownloadedVolume] = {}
        self.source_name = source_name
        self.effects: Dict[str, tuple] = {
            "FakeLogical": (logical_info(), logical_answer),
            "FakeJoint": (joint_info(), joint_answer),
            "FakeSplit": (split_info(), split_answer),
            "FakeMaskVolume": (mask_volume_info(), self._mask_volume_answer),
        }

    def close(self):
        pass

    def cancel(self):
        pass

    def list_effects(self):
        return [info for info, _ in self.effects.values()]

    def apply_effect(self, request, source=None, stream=False, on_progress=None, timeout_s=None):
        self.requests.append(request)
        self.stats.effect_calls += 1
        _, answer = self.effects[request.effect]
        if on_progress is not None:
            on_progress(1.0, f"{request.effect}: done")
        return answer(request, source)

    def download_volume(self, volume_id: str) -> DownloadedVolume:
        self.downloads.append(volume_id)
        if volume_id not in self.held:
            raise EngineError("DownloadVolume", _code("NOT_FOUND"), f"volume {volume_id} is not in the engine's cache")
        return self.held[volume_id]

    def hold(self, volume_id: str, array: np.ndarray, lattice: Lattice, name: str):
        ref = pb.VolumeRef(volume_id=volume_id, header=pb.VolumeHeader(
            geometry=lattice.to_pb(), scalar_type=pb.ScalarType.Value(_scalar(array.dtype)),
            total_bytes=array.nbytes, name=name))
        self.held[volume_id] = DownloadedVolume(array, ref)
        return ref

    def _mask_volume_answer(self, request, source):
        selected = _segments(request)[request.selected_segment_id]
        if request.parameters.get("Operation", "FILL_OUTSIDE") == "FILL_INSIDE_AND_OUTSIDE":
            array, name = selected.astype(np.uint8), f"{source.name} label"
        else:
            array, name = np.where(selected != 0, source.array, 0).astype(source.array.dtype), f"{source.name} masked"
        volume_id = f"fake-volume-{len(self.held)}"
        reply = pb.ApplyEffectResponse()
        reply.volumes.append(self.hold(volume_id, array, source.lattice, name))
        return reply


def _scalar(dtype):
    from segkit_slicer.geometry import scalar_type_name

    return scalar_type_name(dtype)


def _code(name):
    import grpc

    return getattr(grpc.StatusCode, name)


def small_scene(name: str = "Small"):
    """A MRML scene with a 12 x 10 x 6 int16 volume on an oblique lattice (values -1000..1000)."""
    import slicer
    import vtk
    from vtk.util import numpy_support

    scene = slicer.vtkMRMLScene()
    rng = np.random.default_rng(7)
    array = rng.integers(-1000, 1001, size=(6, 10, 12), dtype=np.int16)
    image = vtk.vtkImageData()
    image.SetDimensions(12, 10, 6)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(array.reshape(-1), deep=True,
                                                               array_type=vtk.VTK_SHORT))
    volume = slicer.vtkMRMLScalarVolumeNode()
    volume.SetName(name)
    volume.SetAndObserveImageData(image)
    volume.SetSpacing(0.5, 1.25, 2.0)
    volume.SetOrigin(20.0, -35.5, 100.25)
    directions = vtk.vtkMatrix4x4()
    for r, row in enumerate(((0.0, -1.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0))):
        for c in range(3):
            directions.SetElement(r, c, row[c])
    volume.SetIJKToRASDirectionMatrix(directions)
    scene.AddNode(volume)
    return scene, volume, array


def blocks(shape=(6, 10, 12)) -> Dict[str, np.ndarray]:
    """Three overlapping box segments on the small lattice."""
    a = np.zeros(shape, np.uint8)
    a[1:4, 2:6, 2:7] = 1
    b = np.zeros(shape, np.uint8)
    b[2:5, 4:8, 5:10] = 1
    c = np.zeros(shape, np.uint8)
    c[1:3, 6:9, 8:11] = 1
    return {"a": a, "b": b, "c": c}


Answer = Callable[[object, object], object]
