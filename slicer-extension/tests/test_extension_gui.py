"""The Qt classes, run headless on stand-ins for PythonQt (`fake_slicer_gui.py`).

The Segkit effect lists the engine's effects, builds widgets from the schema, stores
parameters on the segment editor node, runs Apply (and clicks) on a worker thread polled
by its timer, and its result equals Slicer's own effect. The module panel starts a local
engine and shows its health. Real widgets and painting need a Slicer build; this checks
everything else the Qt layer does.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import vtk

import fake_slicer_gui as fake
import slicer_reference as ref

EXTENSION = Path(__file__).resolve().parents[1]


@pytest.fixture
def gui(monkeypatch):
    import slicer

    errors = fake.install(monkeypatch, slicer)
    monkeypatch.syspath_prepend(str(EXTENSION / "SegmentEditorSegkit"))
    for name in ("SegmentEditorSegkitLib.SegmentEditorEffect", "SegmentEditorSegkitLib", "SegkitEngine"):
        sys.modules.pop(name, None)
    yield errors
    for name in ("SegmentEditorSegkitLib.SegmentEditorEffect", "SegmentEditorSegkitLib", "SegkitEngine"):
        sys.modules.pop(name, None)


def run_until_idle(effect, timeout_s=60):
    """What Qt's event loop does for the effect: fire its timer until the call is over."""
    while effect.call is not None:
        effect.call.wait(timeout_s)
        effect.timer.fire()


def make_effect(world, logic, monkeypatch):
    module = importlib.import_module("SegmentEditorSegkitLib.SegmentEditorEffect")
    scripted = fake.ScriptedEffect(world.logic, world.seg)
    effect = module.SegmentEditorEffect(scripted)
    assert scripted.name == "Segkit" and scripted.perSegment
    monkeypatch.setattr(effect, "engineLogic", lambda: logic)
    effect.setupOptionsFrame()
    effect.setMRMLDefaults()
    effect.activate()
    run_until_idle(effect)
    return effect, scripted


class SliceView:
    def __init__(self, ijk):
        self.ijk = ijk

    def className(self):
        return "qMRMLSliceWidget"

    def ijk_for(self, xy):
        return self.ijk


class Interactor:
    def GetEventPosition(self):
        return (10, 20)

    def GetShiftKey(self):
        return 0

    GetControlKey = GetAltKey = GetShiftKey


def test_effect_widgets_apply_and_click(gui, monkeypatch, scene_volume, expert, logic, parity):
    scene, volume = scene_volume
    engine_world = ref.World(scene, volume, "effect (engine)")
    slicer_world = ref.World(scene, volume, "effect (slicer)")
    for w in (engine_world, slicer_world):
        w.paint("other", (expert == 5).astype(np.uint8))
        w.set_masking(mask_mode="OutsideAllSegments")
        w.select("lungs")
    effect, scripted = make_effect(engine_world, logic, monkeypatch)

    # The engine's effects, and widgets from the Threshold schema.
    assert [d for _, d in effect.effectCombo.items] == ["Threshold", "Islands"]
    assert effect.spec.name == "Threshold"
    rows = effect.rows
    assert list(rows) == ["MinimumThreshold", "MaximumThreshold", "AutoThreshold", "AutoThresholdMethod",
                          "AutoThresholdMode"]
    lo, hi = volume.GetImageData().GetScalarRange()
    minimum = rows["MinimumThreshold"][1]
    assert (minimum.minimum, minimum.maximum) == (lo, hi)
    assert minimum.value == pytest.approx(lo + 0.25 * (hi - lo))
    assert not rows["AutoThresholdMethod"][1].visible
    rows["AutoThreshold"][1].checked = True
    assert rows["AutoThresholdMethod"][1].visible
    rows["AutoThreshold"][1].checked = False

    # User sets the range; the values are stored on the segment editor node's parameters.
    minimum.value = -1024
    rows["MaximumThreshold"][1].value = -500
    assert scripted.parameters["Threshold.MinimumThreshold"] == "-1024"
    assert scripted.parameters["Threshold.MaximumThreshold"] == "-500"
    assert scripted.parameters["EngineEffect"] == "Threshold"

    effect.onApply()
    assert effect.call is not None and not effect.applyButton.enabled   # running off the GUI thread
    run_until_idle(effect)
    assert gui == [] and effect.applyButton.enabled
    assert effect.resultLabel.text.startswith("Done in")
    assert scripted.undo_states == 1
    ref.threshold(slicer_world, "lungs", -1024, -500)
    for sid in ("lungs", "other"):
        a, b = engine_world.mask(sid), slicer_world.mask(sid)
        parity("Segkit effect (Qt class): Threshold, outside all segments", sid, int(b.sum()), int(a.sum()),
               int(np.count_nonzero(a != b)))
        assert np.array_equal(a, b)

    # Islands: a click operation hides Apply and runs on a left click in a slice view.
    effect.effectCombo.currentIndex = 1
    assert effect.spec.name == "Islands"
    operation = effect.rows["Operation"][1]
    operation.currentIndex = operation.findData("KEEP_SELECTED_ISLAND")
    assert effect.pointLabel.visible and not effect.applyButton.visible
    assert not effect.rows["MinimumSize"][1].visible
    lungs = engine_world.mask("lungs")
    inside = np.argwhere((expert == 6) & (lungs != 0))
    k, j, i = inside[len(inside) // 2]
    point = (int(i), int(j), int(k))
    assert effect.processInteractionEvents(Interactor(), vtk.vtkCommand.LeftButtonPressEvent, SliceView(point))
    run_until_idle(effect)
    assert gui == []
    ref.islands_click(slicer_world, "lungs", point, "KEEP_SELECTED_ISLAND")
    a, b = engine_world.mask("lungs"), slicer_world.mask("lungs")
    parity("Segkit effect (Qt class): Islands KEEP_SELECTED_ISLAND click", "lungs", int(b.sum()), int(a.sum()),
           int(np.count_nonzero(a != b)))
    assert np.array_equal(a, b)
    # Other events pass through.
    assert not effect.processInteractionEvents(Interactor(), vtk.vtkCommand.MouseMoveEvent, SliceView(point))


def test_effect_reports_engine_errors(gui, monkeypatch, scene_volume, logic):
    scene, volume = scene_volume
    world = ref.World(scene, volume, "effect errors")
    world.select("lungs")
    effect, _ = make_effect(world, logic, monkeypatch)
    effect.effectCombo.currentIndex = 1
    operation = effect.rows["Operation"][1]
    operation.currentIndex = operation.findData("KEEP_SELECTED_ISLAND")
    # A click outside the reference extent is refused before any call.
    assert effect.processInteractionEvents(Interactor(), vtk.vtkCommand.LeftButtonPressEvent,
                                           SliceView((1000, 0, 0)))
    assert effect.call is None and gui and "outside the reference extent" in gui[-1]


def test_module_starts_a_local_engine_and_shows_health(gui, monkeypatch, segkit_bin):
    monkeypatch.syspath_prepend(str(EXTENSION / "SegkitEngine"))
    module = importlib.import_module("SegkitEngine")
    monkeypatch.setattr(module.SegkitEngineLogic, "_shared", None)
    fake.Settings.store[module.SETTINGS_BINARY] = str(segkit_bin)
    widget = module.SegkitEngineWidget(types.SimpleNamespace())
    widget.setup()
    try:
        widget.onStart()
        engine = widget.logic.localEngine
        assert engine is not None
        engine.wait_ready()
        widget._startPoll.fire()
        assert widget.addressEdit.text == engine.address
        assert fake.Settings.store[module.SETTINGS_ADDRESS] == engine.address
        assert widget.stopButton.enabled and not widget.startButton.enabled
        widget.pollHealth()                  # starts the check on a worker thread
        widget._healthCall.wait(10)
        widget.pollHealth()                  # shows it
        assert "SERVING" in widget.statusLabel.text and engine.address in widget.statusLabel.text
        assert "segkit" in widget.statusLabel.text
    finally:
        widget.onStop()
    assert widget.logic.localEngine is None and widget.startButton.enabled
