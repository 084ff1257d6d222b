"""The pulsing preview of an intensity range in Slicer's slice views, as Slicer's Threshold
effect shows it while the user moves the range.

Each slice view that shows the source volume (as its background or foreground layer)
already reslices it to the view's pixels for display: the preview thresholds that 2-D image
(`vtkImageThreshold`, both bounds inclusive, as the engine's Threshold), colours the pixels
in range with the selected segment's colour, and draws them over the view with a 2-D actor
in the effect's renderer. Only the visible slices are computed, so moving the range stays
immediate on any volume size; nothing is sent to the engine. Views that show the source in
no layer get no preview, as in Slicer.

The pulse is the colour's opacity going up and down (`pulse_opacity`), advanced by the
effect's timer. Everything here runs on the GUI thread: it touches VTK and MRML objects.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple

import vtk

# One period of the pulse, in timer steps; the opacity goes from LOW to HIGH and back.
PULSE_STEPS = 10
PULSE_LOW = 0.25
PULSE_HIGH = 0.9


def pulse_opacity(step: int) -> float:
    """The preview's opacity at pulse step `step` (a triangle wave of PULSE_STEPS steps)."""
    phase = step % PULSE_STEPS
    half = PULSE_STEPS / 2
    rising = phase / half if phase <= half else (PULSE_STEPS - phase) / half
    return PULSE_LOW + (PULSE_HIGH - PULSE_LOW) * rising


def source_layer(slice_logic, source_node):
    """The layer logic of a slice view that shows `source_node` (background first, then
    foreground), or None."""
    if source_node is None:
        return None
    for layer in (slice_logic.GetBackgroundLayer(), slice_logic.GetForegroundLayer()):
        shown = layer.GetVolumeNode() if layer is not None else None
        if shown is not None and shown.GetID() == source_node.GetID():
            return layer
    return None


class SlicePipeline:
    """The preview of one slice view: threshold of the view's reslice of the source, coloured
    by a two-entry lookup table, drawn by a 2-D actor."""

    def __init__(self):
        self.threshold = vtk.vtkImageThreshold()
        self.threshold.SetInValue(1)
        self.threshold.SetOutValue(0)
        self.threshold.SetOutputScalarTypeToUnsignedChar()
        self.lookup = vtk.vtkLookupTable()
        self.lookup.SetNumberOfTableValues(2)
        self.lookup.SetTableRange(0, 1)
        self.lookup.SetTableValue(0, 0, 0, 0, 0)
        self.colors = vtk.vtkImageMapToRGBA()
        self.colors.SetLookupTable(self.lookup)
        self.colors.SetInputConnection(self.threshold.GetOutputPort())
        self.mapper = vtk.vtkImageMapper()
        self.mapper.SetColorWindow(255)
        self.mapper.SetColorLevel(127.5)
        self.mapper.SetInputConnection(self.colors.GetOutputPort())
        self.actor = vtk.vtkActor2D()
        self.actor.SetMapper(self.mapper)
        self.actor.VisibilityOff()
        self.color = (1.0, 1.0, 0.0)

    def show(self, reslice_port, low: float, high: float, color, opacity: float) -> None:
        self.threshold.SetInputConnection(reslice_port)
        self.threshold.ThresholdBetween(low, high)
        self.color = tuple(color)
        self.set_opacity(opacity)
        self.actor.VisibilityOn()

    def set_opacity(self, opacity: float) -> None:
        r, g, b = self.color
        self.lookup.SetTableValue(1, r, g, b, opacity)
        self.lookup.Modified()

    def hide(self) -> None:
        self.actor.VisibilityOff()

    def mask(self):
        """The preview's pixels (1 = in range) as a numpy array [y][x]; for tests."""
        from vtk.util import numpy_support

        self.threshold.Update()
        image = self.threshold.GetOutput()
        nx, ny, _ = image.GetDimensions()
        return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(ny, nx)


class RangePreview:
    """The preview in every slice view. `views` gives, for each view, a tuple (key,
    slice logic, renderer, schedule_render callable); the effect builds it from Slicer's
    layout manager."""

    def __init__(self):
        self.pipelines: Dict[object, Tuple[SlicePipeline, object]] = {}
        self.step = 0
        self.shown = False
        self._renders: Dict[object, Callable[[], None]] = {}

    def show(self, views: Sequence[tuple], source_node, low: float, high: float, color) -> int:
        """Shows [low, high] of `source_node` in each view that displays it; hides the
        preview in the others. Returns the number of views showing it."""
        showing = 0
        opacity = pulse_opacity(self.step)
        seen = set()
        for key, slice_logic, renderer, schedule_render in views:
            seen.add(key)
            pipeline = self._pipeline(key, renderer)
            self._renders[key] = schedule_render
            layer = source_layer(slice_logic, source_node)
            if layer is None or layer.GetReslice() is None:
                pipeline.hide()
            else:
                pipeline.show(layer.GetReslice().GetOutputPort(), low, high, color, opacity)
                showing += 1
            schedule_render()
        for key in list(self.pipelines):
            if key not in seen:
                self._remove(key)
        self.shown = showing > 0
        return showing

    def pulse(self) -> None:
        """Advances the pulse one step (the effect's timer calls this)."""
        if not self.shown:
            return
        self.step += 1
        opacity = pulse_opacity(self.step)
        for key, (pipeline, _) in self.pipelines.items():
            if pipeline.actor.GetVisibility():
                pipeline.set_opacity(opacity)
                self._renders[key]()

    def hide(self) -> None:
        """Removes the preview from every view."""
        for key in list(self.pipelines):
            self._remove(key)
        self.shown = False

    def pipeline(self, key) -> Optional[SlicePipeline]:
        entry = self.pipelines.get(key)
        return entry[0] if entry else None

    def _pipeline(self, key, renderer) -> SlicePipeline:
        entry = self.pipelines.get(key)
        if entry is not None and entry[1] is renderer:
            return entry[0]
        if entry is not None:
            self._remove(key)
        pipeline = SlicePipeline()
        renderer.AddViewProp(pipeline.actor)
        self.pipelines[key] = (pipeline, renderer)
        return pipeline

    def _remove(self, key) -> None:
        pipeline, renderer = self.pipelines.pop(key)
        pipeline.hide()
        renderer.RemoveViewProp(pipeline.actor)
        render = self._renders.pop(key, None)
        if render is not None:
            render()
