"""The Segkit effect shows an effect's intensity range as Slicer's Threshold effect does.

Headless, on the Qt stand-ins of `fake_slicer_gui.py`, but with real slice views' logic:
each view is a `vtkMRMLSliceLogic` on the scene that holds CTChest4, whose layers reslice
the volume to the view's pixels exactly as in Slicer. The effect's preview must threshold
that reslice (both bounds inclusive) in every view that shows the source and in no other,
follow the range and the selected segment's colour, pulse, and go away when the effect
is left; "Use for masking" must set Slicer's editable intensity range and switch to Paint;
"Set range now" must give Slicer's own automatic threshold (`vtkITKImageThresholdCalculator`,
as Slicer's Threshold effect runs it) without changing any segment.
"""

from __future__ import annotations

import numpy as np
import pytest
from vtk.util import numpy_support

import fake_slicer_gui as fake
import slicer_reference as ref
from test_extension_gui import gui, make_effect, run_until_idle  # noqa: F401 (fixture)


def slice_views(scene, volume, shown=("Red", "Green")):
    """Red (axial), Yellow (sagittal) and Green (coronal) views; those in `shown` have the
    volume as their background layer, the others show nothing."""
    import slicer

    widgets = {}
    for name in ("Red", "Yellow", "Green"):
        logic = slicer.vtkMRMLSliceLogic()
        logic.SetMRMLScene(scene)
        node = logic.AddSliceNode(name)
        node.SetDimensions(160, 120, 1)
        if name in shown:
            logic.GetSliceCompositeNode().SetBackgroundVolumeID(volume.GetID())
        logic.FitSliceToAll()
        widgets[name] = fake.SliceWidget(logic)
    return widgets


def resliced(widget) -> np.ndarray:
    """The source as the view shows it: its background layer's reslice, [y][x]."""
    reslice = widget.sliceLogic().GetBackgroundLayer().GetReslice()
    reslice.Update()
    image = reslice.GetOutput()
    nx, ny, _ = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(ny, nx)


@pytest.fixture
def threshold_effect(gui, monkeypatch, scene_volume, logic):
    import slicer

    scene, volume = scene_volume
    world = ref.World(scene, volume, "threshold preview")
    world.select("lungs")
    world.seg.GetSegmentation().GetSegment("lungs").SetColor(0.2, 0.6, 1.0)
    widgets = slice_views(scene, volume)
    layout = fake.LayoutManager(widgets)
    monkeypatch.setattr(slicer.app, "layoutManager", lambda: layout, raising=False)
    effect, scripted = make_effect(world, logic, monkeypatch)
    assert effect.spec.name == "Threshold"
    return effect, scripted, world, widgets


def test_the_range_pulses_in_the_views_that_show_the_source(threshold_effect):
    effect, scripted, world, widgets = threshold_effect
    assert effect.spec.range_parameters == ("MinimumThreshold", "MaximumThreshold")
    assert effect.rangeRow.visible and effect.pulseTimer.active

    slider = effect.rangeWidget
    for low, high in ((-1024, -500), (-200, 300)):
        slider.setValues(low, high)
        for name in ("Red", "Green"):
            pipeline = effect.rangePreview.pipeline(name)
            assert pipeline.actor.GetVisibility()
            actors = scripted.renderer(widgets[name]).GetActors2D()
            assert actors.IsItemPresent(pipeline.actor)
            values = resliced(widgets[name])
            expected = (values >= low) & (values <= high)
            assert 0 < expected.sum() < expected.size, "a slice with voxels in and out of range"
            assert np.array_equal(pipeline.mask() == 1, expected), (name, low, high)
        # The view that does not show the source has no preview.
        assert not effect.rangePreview.pipeline("Yellow").actor.GetVisibility()

    # Both bounds are inclusive: a value of the slice taken as both gives exactly its pixels.
    values = resliced(widgets["Red"])
    v = float(np.median(values))
    slider.setValues(v, v)
    assert np.array_equal(effect.rangePreview.pipeline("Red").mask() == 1, values == v)

    # The selected segment's colour, pulsing: the opacity changes step by step and each
    # step asks the views to render.
    lookup = effect.rangePreview.pipeline("Red").lookup
    assert lookup.GetTableValue(1)[:3] == pytest.approx((0.2, 0.6, 1.0))
    opacities, renders = [], widgets["Red"].renders
    for _ in range(6):
        effect.pulseTimer.fire()
        opacities.append(lookup.GetTableValue(1)[3])
    assert len(set(opacities)) >= 3 and widgets["Red"].renders >= renders + 6

    # Another effect (no range), then back; leaving the effect removes the preview.
    names = [d for _, d in effect.effectCombo.items]
    effect.effectCombo.currentIndex = names.index("Islands")
    assert not effect.rangePreview.pipelines and not effect.pulseTimer.active
    assert not effect.rangeRow.visible
    effect.effectCombo.currentIndex = names.index("Threshold")
    assert effect.rangePreview.pipeline("Red").actor.GetVisibility() and effect.pulseTimer.active
    effect.deactivate()
    assert not effect.rangePreview.pipelines and not effect.pulseTimer.active
    for name in widgets:
        assert scripted.renderer(widgets[name]).GetActors2D().GetNumberOfItems() == 0
    effect.activate()
    assert effect.rangePreview.pipeline("Red").actor.GetVisibility()
    effect.cleanup()
    assert not effect.rangePreview.pipelines and not effect.pulseTimer.active


def test_use_for_masking_sets_the_editable_intensity_range(threshold_effect):
    effect, scripted, world, widgets = threshold_effect
    effect.rangeWidget.setValues(-950, -400)
    assert not world.editor.GetSourceVolumeIntensityMask()
    effect.useForMaskingButton.emit("clicked")
    assert world.editor.GetSourceVolumeIntensityMask()
    assert tuple(world.editor.GetSourceVolumeIntensityMaskRange()) == (-950, -400)
    assert scripted.selected_effect == "Paint"


def test_set_range_now_gives_slicers_automatic_threshold(threshold_effect, scene_volume):
    import slicer

    effect, scripted, world, widgets = threshold_effect
    _, volume = scene_volume
    rows = effect.rows
    assert not effect.autoRangeButton.visible   # only with the automatic threshold chosen
    rows["AutoThreshold"][1].checked = True
    assert effect.autoRangeButton.visible
    method = rows["AutoThresholdMethod"][1]
    lo, hi = volume.GetImageData().GetScalarRange()
    for name, calculator_method, mode in (("OTSU", "SetMethodToOtsu", "SET_LOWER_MAX"),
                                          ("TRIANGLE", "SetMethodToTriangle", "SET_MIN_UPPER")):
        method.currentIndex = method.findData(name)
        rows["AutoThresholdMode"][1].currentIndex = rows["AutoThresholdMode"][1].findData(mode)
        effect.autoRangeButton.emit("clicked")
        assert effect.call is not None   # off the GUI thread
        run_until_idle(effect)
        assert effect.resultLabel.text.startswith("Automatic range"), effect.resultLabel.text

        # Slicer's Threshold effect: the calculator on the whole source, then the mode.
        calculator = slicer.vtkITKImageThresholdCalculator()
        calculator.SetInputData(volume.GetImageData())
        getattr(calculator, calculator_method)()
        calculator.Update()
        t = calculator.GetThreshold()
        expected = (t, hi) if mode == "SET_LOWER_MAX" else (lo, t)
        got = (float(scripted.parameters["Threshold.MinimumThreshold"]),
               float(scripted.parameters["Threshold.MaximumThreshold"]))
        assert got == pytest.approx(expected, rel=1e-9), name
        assert (effect.rangeWidget.minimumValue, effect.rangeWidget.maximumValue) == pytest.approx(got)
        # The preview follows the new range; nothing was written into the segments.
        values = resliced(widgets["Red"])
        assert np.array_equal(effect.rangePreview.pipeline("Red").mask() == 1,
                              (values >= got[0]) & (values <= got[1]))
    assert scripted.undo_states == 0 and scripted.calls == []
    assert not world.mask("lungs").any()


def test_range_sliders_carry_the_volume_unit(gui, monkeypatch, scene_volume, logic):
    import slicer

    scene, volume = scene_volume
    world = ref.World(scene, volume, "threshold units")
    world.select("lungs")
    units = slicer.vtkCodedEntry()
    units.SetValueSchemeMeaning("[hnsf'U]", "UCUM", "Hounsfield unit")
    previous = volume.GetVoxelValueUnits()
    volume.SetVoxelValueUnits(units)
    try:
        effect, _ = make_effect(world, logic, monkeypatch)
        assert effect.rangeWidget.suffix == " HU"
    finally:
        volume.SetVoxelValueUnits(previous)
