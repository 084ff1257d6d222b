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
    monkeypatch.setattr(effect, "startLocalEngineIfNeeded", lambda: None)   # `logic` is the engine
    effect.setupOptionsFrame()
    effect.setMRMLDefaults()
    effect.activate()
    run_until_idle(effect)
    assert scripted.missing_parameters == [], "Slicer would log 'Parameter named ... cannot be found'"
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
    # The combo lists the engine's effects in the engine's order (whatever it implements).
    listed = [d for _, d in effect.effectCombo.items]
    assert listed == [e.name for e in logic.effects()]
    assert listed[0] == "Threshold" and "Islands" in listed
    assert effect.spec.name == "Threshold"
    rows = effect.rows
    assert list(rows) == ["MinimumThreshold", "MaximumThreshold", "AutoThreshold", "AutoThresholdMethod",
                          "AutoThresholdMode"]
    lo, hi = volume.GetImageData().GetScalarRange()
    # The range is one two-handle slider (ctkRangeWidget), as in Slicer's Threshold.
    slider = rows["MinimumThreshold"][1]
    assert rows["MaximumThreshold"][1] is slider is effect.rangeWidget
    assert (slider.minimum, slider.maximum) == (lo, hi)
    assert slider.minimumValue == pytest.approx(lo + 0.25 * (hi - lo))
    assert slider.maximumValue == hi
    assert not rows["AutoThresholdMethod"][1].visible
    rows["AutoThreshold"][1].checked = True
    assert rows["AutoThresholdMethod"][1].visible
    rows["AutoThreshold"][1].checked = False

    # User sets the range; the values are stored on the segment editor node's parameters.
    slider.minimumValue = -1024
    slider.maximumValue = -500
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
    effect.effectCombo.currentIndex = listed.index("Islands")
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
    effect.effectCombo.currentIndex = [d for _, d in effect.effectCombo.items].index("Islands")
    operation = effect.rows["Operation"][1]
    operation.currentIndex = operation.findData("KEEP_SELECTED_ISLAND")
    # A click outside the reference extent is refused before any call.
    assert effect.processInteractionEvents(Interactor(), vtk.vtkCommand.LeftButtonPressEvent,
                                           SliceView((1000, 0, 0)))
    assert effect.call is None and gui and "outside the reference extent" in gui[-1]


def test_a_result_is_dropped_when_the_state_changed_meanwhile(gui, monkeypatch, scene_volume, expert, logic):
    """A result lands only on the state it was computed for: painting during the call, or
    deactivating the effect, drops it (the segmentation keeps only the user's edit)."""
    scene, volume = scene_volume
    world = ref.World(scene, volume, "effect stale results")
    world.select("lungs")
    effect, scripted = make_effect(world, logic, monkeypatch)
    effect.rangeWidget.setValues(-1024, -500)

    effect.onApply()
    assert effect.call is not None
    edit = np.zeros(expert.shape, dtype=np.uint8)
    edit[5, 60:70, 60:70] = 1
    world.paint("lungs", edit)           # the user paints while the engine works
    run_until_idle(effect)
    assert gui == [] and effect.resultLabel.text.startswith("Result dropped")
    assert np.array_equal(world.mask("lungs") != 0, edit != 0)
    assert scripted.undo_states == 0

    effect.onApply()
    assert effect.call is not None
    effect.deactivate()                  # another effect is chosen: the call is cancelled
    run_until_idle(effect)
    # Cancelled in time, or finished just before: never applied.
    assert effect.resultLabel.text.startswith(("Result dropped", "Cancelled")), effect.resultLabel.text
    assert np.array_equal(world.mask("lungs") != 0, edit != 0)

    effect.activate()                    # back again: Apply works as before
    run_until_idle(effect)
    effect.onApply()
    run_until_idle(effect)
    assert effect.resultLabel.text.startswith("Done in"), effect.resultLabel.text
    assert scripted.undo_states == 1
    assert (world.mask("lungs") != 0).sum() > 100000


def test_busy_cursor_while_the_engine_works_and_cleanup_lets_the_effect_go(gui, monkeypatch, scene_volume,
                                                                           expert, logic):
    scene, volume = scene_volume
    world = ref.World(scene, volume, "effect cursor and cleanup")
    world.select("lungs")
    effect, scripted = make_effect(world, logic, monkeypatch)
    assert fake.Application.cursors == []
    effect.rangeWidget.setValues(-1024, -500)
    effect.onApply()
    assert fake.Application.cursors == [("cursor", 16)]     # Qt::BusyCursor while it runs
    run_until_idle(effect)
    assert fake.Application.cursors == [] and effect.resultLabel.text.startswith("Done in")

    # The selected segment is hidden and the user declines to show it: nothing runs.
    scripted.confirmation = 0
    asked = scripted.confirmations
    effect.onApply()
    assert effect.call is None and scripted.confirmations == asked + 1
    scripted.confirmation = 2            # shown after the dialog: Apply goes on
    # Slicer deletes the effect (scene closed) while a call runs: the call is cancelled,
    # the cursor restored, the timers stopped and disconnected, the observers removed.
    effect.rangeWidget.maximumValue = -300
    before = world.mask("lungs").copy()
    effect.onApply()
    call = effect.call
    assert call is not None
    effect.cleanup()
    assert effect.call is None and fake.Application.cursors == []
    assert not effect.timer.active and not effect.autoUpdateTimer.active
    assert effect.timer._slots.get("timeout") == [] and effect.autoUpdateTimer._slots.get("timeout") == []
    assert effect.observedSegmentation is None
    call.wait(60)
    effect.timer.fire()                  # nothing is connected any more: nothing lands
    assert np.array_equal(world.mask("lungs"), before)


def test_a_new_engine_is_listed_off_the_gui_thread_before_anything_runs(gui, monkeypatch, scene_volume, engine,
                                                                        logic):
    """After the address or token changes the module makes a new EngineLogic; its first
    call may wait for a connection, so Apply lists the new engine's effects on the worker
    thread instead of asking for them on the GUI thread, and the next Apply runs."""
    import threading

    from segkit_slicer.logic import EngineLogic

    scene, volume = scene_volume
    world = ref.World(scene, volume, "effect new engine")
    world.select("lungs")
    effect, scripted = make_effect(world, logic, monkeypatch)

    listed_on = []

    class Recording(EngineLogic):
        def effects(self, refresh=False):
            if self._effects is None or refresh:      # a call to the engine
                listed_on.append(threading.current_thread() is threading.main_thread())
            return super().effects(refresh)

    other = Recording(engine.address)
    try:
        monkeypatch.setattr(effect, "engineLogic", lambda: other)
        effect.onApply()
        assert effect.resultLabel.text.startswith("The engine changed")
        run_until_idle(effect)
        assert listed_on == [False], listed_on      # asked once, on the worker thread
        assert effect.listedBy is other and scripted.undo_states == 0
        effect.onApply()
        run_until_idle(effect)
        assert gui == [] and effect.resultLabel.text.startswith("Done in"), effect.resultLabel.text
        assert listed_on == [False]                  # prepare used the list it had
    finally:
        other.close()


def extreme_points(mask):
    """For each axis and side, the voxel (k, j, i) of the mask's extreme slice nearest to
    that slice's centre: the points a user places for Segment from boundary points."""
    voxels = np.argwhere(mask)
    out = []
    for a in range(3):
        for side in (voxels[:, a].min(), voxels[:, a].max()):
            s = voxels[voxels[:, a] == side]
            centre = s.mean(axis=0)
            out.append(tuple(int(x) for x in s[np.argmin(((s - centre) ** 2).sum(axis=1))]))
    return out


def test_boundary_points_effect_reads_a_markups_point_list(gui, monkeypatch, scene_volume, expert, logic):
    import slicer

    scene, volume = scene_volume
    world = ref.World(scene, volume, "effect boundary points")
    world.select("lungs")
    effect, scripted = make_effect(world, logic, monkeypatch)
    names = [d for _, d in effect.effectCombo.items]
    effect.effectCombo.currentIndex = names.index("Boundary points")
    assert effect.pointListRow.visible and effect.applyButton.visible and not effect.pointLabel.visible

    # Without a point list Apply says what is missing and calls nothing.
    effect.onApply()
    assert effect.call is None and gui and "choose a point list" in gui[-1]

    # The six extreme points of the left lung, placed in world (RAS) coordinates.
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(ijk_to_ras)
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "left lung points")
    truth = expert == 6
    for k, j, i in extreme_points(truth):
        ras = ijk_to_ras.MultiplyPoint((i, j, k, 1.0))[:3]
        points.AddControlPoint(*ras)
    effect.pointListSelector.setCurrentNode(points)
    gui.clear()
    effect.onApply()
    run_until_idle(effect)
    assert gui == [], gui
    assert scripted.undo_states == 1
    mask = world.mask("lungs") != 0
    dice = 2 * np.count_nonzero(mask & truth) / (np.count_nonzero(mask) + np.count_nonzero(truth))
    assert dice >= 0.975, dice
    assert "volume_ml" in effect.resultLabel.text


def test_preview_effect_initialize_auto_update_apply_and_cancel(gui, monkeypatch, scene_volume, expert, logic):
    scene, volume = scene_volume
    world = ref.World(scene, volume, "effect auto-complete")
    inside = np.argwhere(expert == 5)
    k, j, i = inside[len(inside) // 2]
    seed = np.zeros(expert.shape, dtype=np.uint8)
    seed[k, j, i] = 1
    world.paint("lungs", seed)
    world.select("lungs")
    effect, scripted = make_effect(world, logic, monkeypatch)
    names = [d for _, d in effect.effectCombo.items]
    assert "Fast Marching" in names, (names, effect.resultLabel.text, effect.engineLabel.text)
    effect.effectCombo.currentIndex = names.index("Fast Marching")
    assert effect.spec.preview and effect.previewRow.visible
    assert effect.initializeButton.enabled and not effect.applyButton.enabled
    effect.rows["PercentMax"][1].value = 2

    effect.onInitialize()
    assert effect.call is not None and not effect.initializeButton.enabled   # off the GUI thread
    run_until_idle(effect)
    assert gui == [] and effect.preview is not None
    assert effect.applyButton.enabled and effect.cancelButton.enabled and not effect.initializeButton.enabled
    assert effect.resultLabel.text.startswith("Preview of 1 segments")
    first = effect.preview.last.segments["lungs"]
    assert np.count_nonzero(first) > 1000
    assert np.array_equal(world.mask("lungs"), seed), "nothing written before Apply"

    # Painting a seed starts the auto-update timer; when it fires the preview follows.
    inside = np.argwhere(expert == 6)
    k, j, i = inside[len(inside) // 2]
    more = np.zeros_like(seed)
    more[k, j, i] = 1
    world.paint("lungs", more)
    assert effect.autoUpdateTimer.active
    effect.autoUpdateTimer.fire()
    run_until_idle(effect)
    assert gui == []
    grown = effect.preview.last.segments["lungs"]
    assert grown[more != 0].all() and np.count_nonzero(grown) > np.count_nonzero(first)

    # A parameter change also updates (the segment volume only trims).
    effect.rows["SegmentVolume"][1].value = 50
    assert effect.previewParametersChanged and effect.autoUpdateTimer.active
    effect.autoUpdateTimer.fire()
    run_until_idle(effect)
    trimmed = effect.preview.last.segments["lungs"]
    assert 0 < np.count_nonzero(trimmed) < np.count_nonzero(grown)

    effect.onApply()
    run_until_idle(effect)
    assert gui == [] and effect.preview is None and effect.initializeButton.enabled
    assert np.array_equal(world.mask("lungs"), trimmed)
    assert scripted.undo_states == 1
    assert effect.resultLabel.text == "Applied to 1 segments."

    # Cancel: the preview goes, the segment stays.
    effect.onInitialize()
    run_until_idle(effect)
    assert effect.preview is not None
    effect.onCancel()
    assert effect.preview is None and not effect.cancelButton.enabled
    assert np.array_equal(world.mask("lungs"), trimmed)
    assert effect.resultLabel.text.startswith("Preview cancelled")


def test_module_starts_a_local_engine_and_shows_health(gui, monkeypatch, segkit_bin):
    monkeypatch.syspath_prepend(str(EXTENSION / "SegkitEngine"))
    module = importlib.import_module("SegkitEngine")
    monkeypatch.setattr(module.SegkitEngineLogic, "_shared", None)
    fake.Settings.store[module.SETTINGS_BINARY] = str(segkit_bin)
    fake.Settings.store[module.SETTINGS_ADDRESS] = "10.1.2.3:6000"   # the user's remote engine
    widget = module.SegkitEngineWidget(types.SimpleNamespace())
    widget.setup()
    try:
        widget.onStart()
        engine = widget.logic.localEngine
        assert engine is not None
        engine.wait_ready()
        widget._startPoll.fire()
        # Calls go to the local engine while it runs; the configured address is kept.
        assert widget.logic.address() == engine.address
        assert widget.addressEdit.text == "10.1.2.3:6000"
        assert fake.Settings.store[module.SETTINGS_ADDRESS] == "10.1.2.3:6000"
        assert widget.stopButton.enabled and not widget.startButton.enabled
        widget.pollHealth()                  # starts the check on a worker thread
        widget._healthCall.wait(10)
        widget.pollHealth()                  # shows it
        assert "SERVING" in widget.statusLabel.text and engine.address in widget.statusLabel.text
        assert "segkit" in widget.statusLabel.text
    finally:
        widget.onStop()
    assert widget.logic.localEngine is None and widget.startButton.enabled
    assert widget.logic.address() == "10.1.2.3:6000"


# ---------------------------------------------------------------------------------------
# SEGMENT parameters, bypassed masking and new volumes, on a made-up engine (fake_engine)


def fake_world(small, name):
    import fake_engine as fe

    scene, volume, _ = small
    w = ref.World(scene, volume, name, segments=(("a", "A"), ("b", "B"), ("c", "C")))
    for sid, mask in fe.blocks().items():
        w.paint(sid, mask)
    w.set_masking(mask_mode="OutsideAllSegments", intensity=(-200, 600))
    w.select("a")
    return w


@pytest.fixture
def small():
    import fake_engine as fe

    return fe.small_scene()


def test_segment_parameters_are_segment_selectors(gui, monkeypatch, small):
    import fake_engine as fe
    from segkit_slicer.logic import EngineLogic

    engine_world, slicer_world = fake_world(small, "selector (engine)"), fake_world(small, "selector (slicer)")
    before = {sid: engine_world.mask(sid).copy() for sid in ("a", "b", "c")}
    engine_world.select("a")    # mask() selects the segment it reads
    logic = EngineLogic(client=fe.FakeClient())
    effect, scripted = make_effect(engine_world, logic, monkeypatch)
    assert effect.spec.name == "FakeLogical"
    combo = effect.rows["ModifierSegmentID"][1]
    assert combo.items == [("(none)", ""), ("A", "a"), ("B", "b"), ("C", "c")]
    assert combo.currentIndex == 0

    combo.currentIndex = combo.findData("b")
    assert scripted.parameters["FakeLogical.ModifierSegmentID"] == "b"
    # Segments added, renamed and removed rebuild the selector (observers on the segmentation).
    segmentation = engine_world.seg.GetSegmentation()
    segmentation.AddEmptySegment("d", "D")
    assert combo.items[-1] == ("D", "d") and combo.itemData(combo.currentIndex) == "b"
    segmentation.GetSegment("c").SetName("Cee")
    assert ("Cee", "c") in combo.items
    segmentation.RemoveSegment("b")
    assert [v for _, v in combo.items] == ["", "a", "c", "d"]
    assert combo.currentIndex == 0 and scripted.parameters["FakeLogical.ModifierSegmentID"] == ""
    segmentation.RemoveSegment("d")

    # Union with c, masking bypassed: through modifySegmentByLabelmap(..., bypassMasking).
    combo.currentIndex = combo.findData("c")
    assert effect.rows["BypassMasking"][1].checked     # the schema's default, "1"
    effect.onApply()
    run_until_idle(effect)
    assert gui == [] and effect.resultLabel.text.startswith("Done in")
    request = logic.client.requests[-1]
    assert request.parameters["ModifierSegmentID"] == "c" and request.parameters["BypassMasking"] == "1"
    assert scripted.calls == [("modifySegmentByLabelmap", "a", ref.ADD, True)]
    slicer_world.logic.SaveStateForUndo()
    slicer_world.logic.ModifySegmentByLabelmap(slicer_world.seg, "a", slicer_world.modifier(before["c"]), ref.ADD,
                                               True, True)
    assert np.array_equal(engine_world.mask("a"), slicer_world.mask("a"))
    assert not np.array_equal(engine_world.mask("a"), before["a"])
    effect.deactivate()
    assert effect.observedSegmentation is None


def test_new_volume_is_added_shown_and_named(gui, monkeypatch, small):
    import fake_engine as fe
    from segkit_slicer.logic import EngineLogic

    scene, volume, _ = small
    world = fake_world(small, "mask volume")
    logic = EngineLogic(client=fe.FakeClient())
    effect, scripted = make_effect(world, logic, monkeypatch)
    effect.effectCombo.currentIndex = effect.effectCombo.findData("FakeMaskVolume")
    assert effect.spec.produces_volume and "new volume" in effect.helpLabel.text
    effect.onApply()
    run_until_idle(effect)
    assert gui == []
    nodes = [scene.GetNthNodeByClass(n, "vtkMRMLScalarVolumeNode")
             for n in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]
    made = [n for n in nodes if n.GetName() == "Small masked"]
    assert len(made) == 1
    assert f'new volume "Small masked" ({made[0].GetID()})' in effect.resultLabel.text
    assert fake.shown == [{"background": made[0], "fit": False}]
    assert scripted.undo_states == 0     # no segment changed: no undo step

    operation = effect.rows["Operation"][1]
    operation.currentIndex = operation.findData("FILL_INSIDE_AND_OUTSIDE")
    effect.onApply()
    run_until_idle(effect)
    label = scene.GetFirstNodeByName("Small label")
    assert label is not None and label.GetClassName() == "vtkMRMLLabelMapVolumeNode"
    assert fake.shown[-1] == {"label": label, "fit": False}
    assert f'new label map "Small label" ({label.GetID()})' in effect.resultLabel.text


def test_a_source_change_rebuilds_the_widgets_once(gui, monkeypatch, scene_volume, logic):
    """Slicer 5.1+ notifies a source change with sourceVolumeNodeChanged and then
    masterVolumeNodeChanged (qMRMLSegmentEditorWidget, "for backward compatibility");
    Slicer 5.0 only with the latter. Either way the widgets are built once."""
    scene, volume = scene_volume
    world = ref.World(scene, volume, "source change")
    effect, _ = make_effect(world, logic, monkeypatch)
    builds = []
    original = effect.buildParameterWidgets
    monkeypatch.setattr(effect, "buildParameterWidgets", lambda: (builds.append(1), original())[1])
    effect.sourceVolumeNodeChanged()
    effect.masterVolumeNodeChanged()
    assert len(builds) == 1
    # A Slicer 5.0 effect (a fresh one) only hears masterVolumeNodeChanged.
    old, _ = make_effect(world, logic, monkeypatch)
    old_builds = []
    original_old = old.buildParameterWidgets
    monkeypatch.setattr(old, "buildParameterWidgets", lambda: (old_builds.append(1), original_old())[1])
    old.masterVolumeNodeChanged()
    assert len(old_builds) == 1


def test_the_effect_starts_a_local_engine_when_first_used(gui, monkeypatch, scene_volume, segkit_bin):
    """Like MONAI Label's module: with no engine address of the user's own, the first use
    of the effect starts `segkit serve` (found beside the extension, in the settings or on
    PATH), waits for its address off the GUI thread and lists its effects. An address of
    the user's own, or the setting off, starts nothing."""
    monkeypatch.syspath_prepend(str(EXTENSION / "SegkitEngine"))
    engine_module = importlib.import_module("SegkitEngine")
    monkeypatch.setattr(engine_module.SegkitEngineLogic, "_shared", None)
    monkeypatch.setattr(fake.Settings, "store", {engine_module.SETTINGS_BINARY: str(segkit_bin)})
    scene, volume = scene_volume
    world = ref.World(scene, volume, "auto-start")
    module = importlib.import_module("SegmentEditorSegkitLib.SegmentEditorEffect")
    effect = module.SegmentEditorEffect(fake.ScriptedEffect(world.logic, world.seg))
    effect.setupOptionsFrame()
    effect.setMRMLDefaults()
    shared = engine_module.SegkitEngineLogic.shared()
    try:
        effect.activate()
        # Waiting for the engine's address, or (if it was quick) already listing its effects.
        assert effect.call is not None
        run_until_idle(effect)
        engine = shared.localEngine
        assert engine is not None and engine.running and engine.address
        assert effect.effectInfos and engine.address in effect.engineLabel.text
        # The configured address was not touched.
        assert engine_module.SETTINGS_ADDRESS not in fake.Settings.store
    finally:
        shared.stopLocalEngine()
    fake.Settings.store[engine_module.SETTINGS_ADDRESS] = "10.1.2.3:6000"
    assert shared.autoStartLocalEngine() is None and shared.localEngine is None
    fake.Settings.store[engine_module.SETTINGS_ADDRESS] = ""
    fake.Settings.store[engine_module.SETTINGS_AUTOSTART] = "0"
    assert shared.autoStartLocalEngine() is None and shared.localEngine is None


def test_the_module_remembers_engine_addresses(gui, monkeypatch):
    monkeypatch.syspath_prepend(str(EXTENSION / "SegkitEngine"))
    module = importlib.import_module("SegkitEngine")
    monkeypatch.setattr(module.SegkitEngineLogic, "_shared", None)
    monkeypatch.setattr(fake.Settings, "store", {})
    widget = module.SegkitEngineWidget(types.SimpleNamespace())
    widget.setup()
    try:
        for address in ("10.0.0.1:6000", "10.0.0.2:6000", "10.0.0.1:6000"):
            widget.addressEdit.text = address
            widget.onSettingsChanged()
        assert widget.logic.recentAddresses() == ["10.0.0.1:6000", "10.0.0.2:6000"]
        assert [t for t, _ in widget.recentCombo.items][1:] == ["10.0.0.1:6000", "10.0.0.2:6000"]
        # Picking a recent address makes it the configured one (and the most recent).
        widget.recentCombo.currentIndex = 2
        assert widget.addressEdit.text == "10.0.0.2:6000"
        assert fake.Settings.store[module.SETTINGS_ADDRESS] == "10.0.0.2:6000"
        assert widget.logic.recentAddresses()[0] == "10.0.0.2:6000"
        for n in range(20):
            widget.logic.setConfiguredAddress(f"host{n}:1")
        assert len(widget.logic.recentAddresses()) == module.RECENT_ADDRESSES
    finally:
        widget.cleanup()
