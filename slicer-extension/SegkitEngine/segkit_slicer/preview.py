"""Slicer's auto-complete flow (Grow from seeds, Fill between slices, Watershed, Fast
Marching) through the engine's preview sessions.

Slicer's `AbstractScriptedSegmentEditorAutoCompleteEffect` computes a preview of every
input segment in a separate segmentation node ("<name> preview"), updates it after the
seeds change, and on Apply writes each preview segment into its segment (mode Set, with
masking, one undo step); Cancel drops the preview and leaves the segmentation untouched.
`PreviewController` does the same with the engine holding the algorithm's state:

- `prepare_start()` (main thread) reads the segments, masking and source;
  `start(prepared)` (any thread) opens the engine's session and answers the preview;
- `prepare_update()` (main thread) reads the segments again and keeps only the voxels that
  changed since the last request (the engine applies them to its copy);
  `update(request)` (any thread) answers the new preview;
- `show(result)` (main thread) writes the preview into the preview node;
- `fetch_apply()` (any thread) asks the modifiers; `commit_apply(result)` (main thread)
  writes them with the user's masking in one undo step and removes the preview node;
- `cancel()` (main thread; the engine call is quick) closes the session and removes the
  preview node.

The worker-thread steps touch no VTK, MRML or Qt object: they take and return plain
numpy arrays and protobuf messages, as `EngineLogic.run` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from .geometry import image_lattice, new_image
from .logic import (EditorContext, EngineLogic, EngineResultError, PreparedEffect, mask_from_pb,
                    mask_to_pb, parameter_strings, segment_masks)

PREVIEW_NODE_SUFFIX = " preview"


@dataclass
class PreviewResult:
    """A preview as the engine answered it, decoded on the reference lattice."""

    session_id: str
    # Each input segment's preview, full `[k][j][i]` 0/1 arrays, in input order.
    segments: Dict[str, np.ndarray] = field(default_factory=dict)
    working_box: Optional[Tuple[int, int, int, int, int, int]] = None   # i0, i1, j0, j1, k0, k1
    reset: bool = False
    empty: bool = False
    compute_seconds: float = 0.0


class PreviewController:
    """One preview of an auto-complete effect on one segmentation (see the module
    documentation for which step runs on which thread)."""

    def __init__(self, logic: EngineLogic, context: EditorContext, effect: str,
                 parameters: Optional[Mapping[str, object]] = None):
        self.logic = logic
        self.context = context
        self.effect = effect
        self.parameters = dict(parameters or {})
        self.session_id: Optional[str] = None
        self.prepared: Optional[PreparedEffect] = None
        self.preview_node = None
        self.last: Optional[PreviewResult] = None
        self._pending: Dict[str, np.ndarray] = {}
        # The masks the engine holds for each segment (what the last request left there).
        self._sent: Dict[str, np.ndarray] = {}
        # A failed update leaves the engine's copy uncertain: the next update starts over.
        self._stale = False

    # -- Initialize ---------------------------------------------------------------------------

    def prepare_start(self) -> PreparedEffect:
        """Main thread: reads what the session starts from."""
        # Encoded here, on the GUI thread (see PreparedEffect.encode).
        prepared = self.logic.prepare(self.context, self.effect, self.parameters).encode()
        if not prepared.segments:
            # The effect reads segments (its schema says so); this is a safeguard.
            raise ValueError(f"{prepared.effect} needs segments to start a preview")
        self.prepared = prepared
        return prepared

    def start_request(self, prepared: PreparedEffect):
        from .proto.segkit.v1 import engine_pb2 as pb

        base = prepared.encoded if prepared.encoded is not None else prepared.request()
        req = pb.StartPreviewRequest(effect=base.effect,
                                     selected_segment_id=base.selected_segment_id,
                                     result_encoding=base.result_encoding)
        req.segments.extend(base.segments)
        for k, v in base.parameters.items():
            req.parameters[k] = v
        if base.HasField("masking"):
            req.masking.CopyFrom(base.masking)
        return req

    def start(self, prepared: PreparedEffect) -> PreviewResult:
        """Any thread: opens the engine's session; answers the first preview."""
        reply = self.logic.client.start_preview(self.start_request(prepared), source=prepared.source)
        self.session_id = reply.session_id
        self._sent = {s.id: s.mask for s in prepared.segments}
        self._stale = False
        return self._decode(reply)

    # -- auto-update ----------------------------------------------------------------------------

    def prepare_update(self, parameters: Optional[Mapping[str, object]] = None):
        """Main thread: the UpdatePreviewRequest with the voxels that changed since the last
        request, and the parameters given here; `None` when nothing changed. Raises when no
        session is open."""
        from .proto.segkit.v1 import engine_pb2 as pb

        if self.session_id is None or self.prepared is None:
            raise RuntimeError("no preview is open: initialize it first")
        req = pb.UpdatePreviewRequest(session_id=self.session_id)
        changed_params = parameter_strings(parameters or {})
        for k, v in changed_params.items():
            req.parameters[k] = v
        self.parameters.update(parameters or {})
        lattice = self.prepared.lattice
        seg_node = self.context.segmentation_node
        ids = [s.id for s in self.prepared.segments]
        present = set(seg_node.GetSegmentation().GetSegmentIDs())
        missing = [sid for sid in ids if sid not in present]
        if missing:
            raise EngineResultError(f"segment {missing[0]!r} was removed: cancel the preview and "
                                    f"initialize it again")
        now = segment_masks(seg_node, self.context.reference_image(), ids)
        pending = {}
        for sid in ids:
            old, new = self._sent[sid], now[sid]
            added = (new != 0) & (old == 0)
            removed = (new == 0) & (old != 0)
            if not added.any() and not removed.any():
                continue
            edit = req.edits.add(segment_id=sid)
            if added.any():
                edit.added.CopyFrom(mask_to_pb(added.astype(np.uint8), lattice))
            if removed.any():
                edit.removed.CopyFrom(mask_to_pb(removed.astype(np.uint8), lattice))
            pending[sid] = new
        if not req.edits and not changed_params:
            return None
        self._pending = pending
        return req

    def update(self, request) -> PreviewResult:
        """Any thread: sends the edits; answers the new preview."""
        try:
            reply = self.logic.client.update_preview(request)
        except Exception:
            self._stale = True
            raise
        self._sent.update(self._pending)
        self._pending = {}
        return self._decode(reply)

    @property
    def stale(self) -> bool:
        """True after a failed update: cancel and initialize again."""
        return self._stale

    def _decode(self, reply) -> PreviewResult:
        lattice = self.prepared.lattice
        result = PreviewResult(session_id=reply.session_id, reset=reply.reset, empty=reply.empty,
                               compute_seconds=reply.compute_seconds)
        if reply.HasField("working_box"):
            b = reply.working_box
            result.working_box = (b.i_min, b.i_max, b.j_min, b.j_max, b.k_min, b.k_max)
        for n, s in enumerate(reply.segments):
            result.segments[s.id] = mask_from_pb(s.mask, lattice, f"preview segment {n} ({s.id})")
        self.last = result
        return result

    # -- showing the preview ----------------------------------------------------------------------

    def show(self, result: PreviewResult):
        """Main thread: writes the preview into the preview segmentation node ("<name>
        preview", created on first use, segments named and coloured as the inputs)."""
        import slicer

        seg_node = self.context.segmentation_node
        scene = seg_node.GetScene()
        if self.preview_node is None or self.preview_node.GetScene() is None:
            node = slicer.vtkMRMLSegmentationNode()
            node.SetName((seg_node.GetName() or "Segmentation") + PREVIEW_NODE_SUFFIX)
            node.SetHideFromEditors(False)
            node.SetSaveWithScene(False)
            if scene is not None:
                scene.AddNode(node)
                node.CreateDefaultDisplayNodes()
            source_volume = getattr(self.context, "source_volume_node", None)
            if source_volume is not None:
                node.SetReferenceImageGeometryParameterFromVolumeNode(source_volume)
            self.preview_node = node
        segmentation = self.preview_node.GetSegmentation()
        source = seg_node.GetSegmentation()
        lattice, start = image_lattice(self.context.reference_image())
        for sid, mask in result.segments.items():
            if segmentation.GetSegment(sid) is None:
                original = source.GetSegment(sid)
                segmentation.AddEmptySegment(sid, original.GetName() if original else sid,
                                             original.GetColor() if original else (0.5, 0.5, 0.5))
            image = new_image(lattice, start, mask)
            slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
                image, self.preview_node, sid,
                slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
        return self.preview_node

    def preview_mask(self, segment_id: str) -> Optional[np.ndarray]:
        """The last preview of one input segment."""
        return None if self.last is None else self.last.segments.get(segment_id)

    # -- Apply / Cancel -----------------------------------------------------------------------------

    def fetch_apply(self):
        """Any thread: the modifiers that write the last preview (closes the session),
        still encoded: `commit_apply` decodes them on the GUI thread."""
        if self.session_id is None:
            raise RuntimeError("no preview is open: initialize it first")
        reply = self.logic.client.apply_preview(self.session_id)
        self.session_id = None
        return self.logic.result_from_reply(self.prepared, reply, decode=False)

    def commit_apply(self, result) -> List[str]:
        """Main thread: writes the preview into the segments (one undo step, the user's
        masking) and removes the preview node. Answers the segments modified."""
        changed = self.logic.commit(self.context, result)
        self._remove_preview_node()
        return changed

    def apply(self) -> List[str]:
        """Both Apply steps on the calling thread (scripts and tests)."""
        return self.commit_apply(self.fetch_apply())

    def cancel(self) -> None:
        """Closes the session and removes the preview; the segments stay as they are."""
        session, self.session_id = self.session_id, None
        try:
            if session is not None:
                self.logic.client.cancel_preview(session)
        finally:
            self._remove_preview_node()

    def _remove_preview_node(self) -> None:
        node, self.preview_node = self.preview_node, None
        if node is not None and node.GetScene() is not None:
            node.GetScene().RemoveNode(node)
