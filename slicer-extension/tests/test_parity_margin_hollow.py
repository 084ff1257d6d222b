"""Parity of Margin and Hollow: a segment edited through `EngineLogic` and the real engine
equals, voxel for voxel, the segment Slicer's own effect sequence gives.

The Slicer side repeats `SegmentEditorMarginEffect.processMargin` and
`SegmentEditorHollowEffect.processHollowing` (reference §2.8, §2.9) with Slicer's classes:
`vtkImageThreshold` to force the selected segment's labelmap to 0/1 (inverted for a
shrink), `slicer.vtkITKImageMargin` with the margins the effect passes, the inverse
threshold after a shrink, and `ModifySegmentByLabelmap(..., Set)` with masking on.

Ties: voxels whose distance is exactly a band end (a margin that is a multiple of a
spacing) are decided by ITK's float32 arithmetic. The engine reproduces that arithmetic,
so no voxel may differ; should one differ, it must be a tie voxel (ITK's float32 squared
distance within 1e-5 relative of a band end), and ties are counted and recorded.

Cases: CTChest4 (3.05 x 3.05 x 10 mm voxels) with "lungs" = the expert right lung and
"other" = the soft tissue around it (threshold -200..300), grow and shrink at several
margins (one of them two voxels along i, one exactly one voxel along k) and every Hollow
mode, each with default masking and with "outside all segments"; apply to all visible
segments; an oblique lattice with a reference extent not at 0; and the 1 mm CT with its
largest air island.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

import slicer_reference as ref

DBL_EPSILON = np.finfo(float).eps

MASKINGS = {
    "default": {},
    "outside-all-segments": {"mask_mode": "OutsideAllSegments"},
}


# ---------------------------------------------------------------------------------------
# Slicer's sequences

def _binary_input(world, sid, invert: bool):
    """The effect's first vtkImageThreshold: voxels > 0 -> 1 (or 0 when inverting)."""
    import vtk

    selected = world.selected_labelmap(sid)
    thresh = vtk.vtkImageThreshold()
    thresh.SetInputData(selected)
    thresh.ThresholdByLower(0)
    thresh.SetInValue(1 if invert else 0)
    thresh.SetOutValue(0 if invert else 1)
    thresh.SetOutputScalarType(selected.GetScalarType())
    return selected, thresh


def _modifier_from(world, image):
    """`modifierLabelmap = defaultModifierLabelmap(); modifierLabelmap.ShallowCopy(image)`."""
    import slicer

    assert world.logic.ResetModifierLabelmapToDefault()
    modifier = slicer.vtkOrientedImageData()
    modifier.DeepCopy(world.logic.GetModifierLabelmap())
    modifier.ShallowCopy(image)
    return modifier


def slicer_margin(world, sid: str, margin_mm: float) -> None:
    """SegmentEditorMarginEffect.processMargin on segment `sid`."""
    import slicer
    import vtk

    selected, thresh = _binary_input(world, sid, invert=margin_mm < 0)
    margin = slicer.vtkITKImageMargin()
    margin.SetInputConnection(thresh.GetOutputPort())
    margin.CalculateMarginInMMOn()
    margin.SetOuterMarginMM(abs(margin_mm))
    margin.Update()
    if margin_mm >= 0:
        result = margin.GetOutput()
    else:
        back = vtk.vtkImageThreshold()
        back.SetInputData(margin.GetOutput())
        back.ThresholdByLower(0)
        back.SetInValue(1)
        back.SetOutValue(0)
        back.SetOutputScalarType(selected.GetScalarType())
        back.Update()
        result = back.GetOutput()
    world.apply(sid, _modifier_from(world, result), ref.SET)


def hollow_band(mode: str, thickness_mm: float, voxel_mm: float):
    """(inner, outer) margins SegmentEditorHollowEffect passes to vtkITKImageMargin."""
    if mode == "MEDIAL_SURFACE":
        return -0.5 * thickness_mm + 0.5 * voxel_mm, 0.5 * thickness_mm
    if mode == "INSIDE_SURFACE":
        return 0.0 + 0.1 * voxel_mm, thickness_mm + 0.1 * voxel_mm
    if mode == "OUTSIDE_SURFACE":
        return -thickness_mm + voxel_mm, 0.0
    raise ValueError(mode)


def slicer_hollow(world, sid: str, mode: str, thickness_mm: float) -> None:
    """SegmentEditorHollowEffect.processHollowing on segment `sid`."""
    import slicer

    selected, thresh = _binary_input(world, sid, invert=False)
    margin = slicer.vtkITKImageMargin()
    margin.SetInputConnection(thresh.GetOutputPort())
    margin.CalculateMarginInMMOn()
    inner, outer = hollow_band(mode, abs(thickness_mm), min(selected.GetSpacing()))
    margin.SetOuterMarginMM(outer)
    margin.SetInnerMarginMM(inner)
    margin.Update()
    world.apply(sid, _modifier_from(world, margin.GetOutput()), ref.SET)


def slicer_all_visible(world, process) -> None:
    """onApply with ApplyToAllVisibleSegments: each visible segment selected in turn, in
    segment order, and processed as it is then."""
    import vtk

    ids = vtk.vtkStringArray()
    world.seg.GetDisplayNode().GetVisibleSegmentIDs(ids)
    for n in range(ids.GetNumberOfValues()):
        process(world, ids.GetValue(n))


# ---------------------------------------------------------------------------------------
# Worlds, ties and comparison

def make_worlds(scene_volume, case: str, lungs, other):
    scene, volume = scene_volume
    worlds = []
    for side in ("engine", "slicer"):
        w = ref.World(scene, volume, f"{case} ({side})")
        w.paint("other", other)
        w.paint("lungs", lungs)
        worlds.append(w)
    return worlds


def itk_squared_sdf(mask: np.ndarray, spacing_ijk) -> np.ndarray:
    """ITK's float32 squared signed Maurer distance of a [k][j][i] 0/1 mask (as
    vtkITKImageMargin computes it), to find tie voxels."""
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(tuple(float(s) for s in spacing_ijk))
    f = sitk.SignedMaurerDistanceMapImageFilter()
    f.SetSquaredDistance(True)
    f.SetUseImageSpacing(True)
    f.SetInsideIsPositive(False)
    f.SetBackgroundValue(0)
    return sitk.GetArrayFromImage(f.Execute(image))


def tie_voxels(mask: np.ndarray, spacing_ijk, ends_mm) -> np.ndarray:
    """Voxels whose ITK squared signed distance is a band end `m·|m|` up to 1e-5
    (relative): their side of the band is decided by float32 rounding."""
    sdf = itk_squared_sdf(mask, spacing_ijk).astype(np.float64)
    ties = np.zeros(mask.shape, dtype=bool)
    for m in ends_mm:
        target = m * abs(m)
        ties |= np.abs(sdf - target) <= 1e-5 * max(abs(target), 1e-12)
    return ties


def assert_same(case: str, engine_world, slicer_world, parity, ties=None):
    """The same voxels in every segment; a differing voxel must be a tie voxel."""
    tie_count = int(ties.sum()) if ties is not None else 0
    for sid in engine_world.segment_ids():
        a, b = engine_world.mask(sid), slicer_world.mask(sid)
        differ = a != b
        differing = int(np.count_nonzero(differ))
        parity(f"{case} (tie voxels: {tie_count})", sid, int(b.sum()), int(a.sum()), differing)
        if differing:
            assert ties is not None and not np.any(differ & ~ties), (
                f"{case}: segment {sid} differs in {differing} voxels, "
                f"{int(np.count_nonzero(differ & ~ties))} of them not ties")
    assert engine_world.segment_ids() == slicer_world.segment_ids()


# ---------------------------------------------------------------------------------------
# CTChest4

@pytest.fixture(scope="module")
def chest(scene_volume, expert):
    """(right lung, soft tissue, spacing (i, j, k)) on CTChest4's reference lattice."""
    _, volume = scene_volume
    source = ref.image_array(volume.GetImageData())
    lungs = (expert == 5).astype(np.uint8)
    tissue = ((source >= -200) & (source <= 300)).astype(np.uint8)
    probe = ref.World(*scene_volume, "spacing probe")
    spacing = tuple(probe.reference().GetSpacing())
    assert spacing[0] == pytest.approx(3.046875953674, abs=1e-9)
    assert spacing[2] == pytest.approx(10.0, abs=1e-9)
    return lungs, tissue, spacing


def chest_margins(spacing):
    """3 mm (Slicer's default), two voxels along i and one voxel along k (exact multiples
    of a spacing: ties), and 7.5 mm."""
    return [3.0, 2 * spacing[0], spacing[2], 7.5]


@pytest.mark.parametrize("masking", list(MASKINGS))
@pytest.mark.parametrize("which", range(4))
@pytest.mark.parametrize("sign", [1, -1], ids=["grow", "shrink"])
def test_margin_on_chest(scene_volume, chest, logic, parity, sign, which, masking):
    lungs, tissue, spacing = chest
    margin = sign * chest_margins(spacing)[which]
    case = f"Margin {margin:+.6g} mm, CTChest4, {masking}"
    engine_world, slicer_world = make_worlds(scene_volume, case, lungs, tissue)
    for w in (engine_world, slicer_world):
        w.set_masking(**MASKINGS[masking])
    _, volume = scene_volume

    result = logic.apply("Margin", {"MarginSizeMm": margin}, volume, engine_world.seg, "lungs",
                         segment_editor_node=engine_world.editor)
    slicer_margin(slicer_world, "lungs", margin)

    assert [m.mode for m in result.modifiers] == ["Set"]
    # A shrink grows the background: ties are measured on the inverted segment.
    mask = lungs if margin >= 0 else 1 - lungs
    ties = tie_voxels(mask, spacing, [abs(margin) + DBL_EPSILON])
    if which in (1, 2):
        assert ties.sum() > 0, "a margin that is a multiple of a spacing has tie voxels"
    assert_same(case, engine_world, slicer_world, parity, ties)
    if abs(margin) >= min(spacing):  # 3 mm is below one 3.05 mm voxel: nothing moves
        assert engine_world.mask("lungs").sum() != lungs.sum()


HOLLOW_CASES = [
    ("INSIDE_SURFACE", 3.0),
    ("INSIDE_SURFACE", 10.0),
    ("MEDIAL_SURFACE", 6.1),
    ("OUTSIDE_SURFACE", "2 voxels"),
    ("OUTSIDE_SURFACE", 10.0),
]


@pytest.mark.parametrize("masking", list(MASKINGS))
@pytest.mark.parametrize("mode,thickness", HOLLOW_CASES)
def test_hollow_on_chest(scene_volume, chest, logic, parity, mode, thickness, masking):
    lungs, tissue, spacing = chest
    if thickness == "2 voxels":
        thickness = 2 * spacing[0]
    case = f"Hollow {mode} {thickness:.6g} mm, CTChest4, {masking}"
    engine_world, slicer_world = make_worlds(scene_volume, case, lungs, tissue)
    for w in (engine_world, slicer_world):
        w.set_masking(**MASKINGS[masking])
    _, volume = scene_volume

    result = logic.apply("Hollow", {"ShellMode": mode, "ShellThicknessMm": thickness}, volume,
                         engine_world.seg, "lungs", segment_editor_node=engine_world.editor)
    slicer_hollow(slicer_world, "lungs", mode, thickness)

    assert [m.mode for m in result.modifiers] == ["Set"]
    inner, outer = hollow_band(mode, thickness, min(spacing))
    ties = tie_voxels(lungs, spacing, [inner - DBL_EPSILON, outer + DBL_EPSILON])
    assert_same(case, engine_world, slicer_world, parity, ties)
    assert engine_world.mask("lungs").sum() > 0


@pytest.mark.parametrize("effect", ["Margin -6.1", "Margin +6.1 overwrite none", "Hollow OUTSIDE"])
def test_apply_to_all_visible_segments(scene_volume, expert, logic, parity, effect):
    """Both lungs and a hidden third segment: each visible segment is processed, in
    segment order, the hidden one is not. Shrinks and Hollow OUTSIDE_SURFACE stay inside
    each segment, and a grow with "overwrite none" does not touch the others, so Slicer's
    one-after-the-other reading gives the same result as reading all segments first."""
    scene, volume = scene_volume
    right = (expert == 5).astype(np.uint8)
    left = (expert == 6).astype(np.uint8)
    hidden = np.zeros_like(right)
    hidden[10:20, 40:80, 40:80] = 1
    hidden[(right != 0) | (left != 0)] = 0  # disjoint, so no edit may take from it
    case = f"{effect}, apply to all visible"
    worlds = []
    for side in ("engine", "slicer"):
        w = ref.World(scene, volume, f"{case} ({side})",
                      segments=(("right", "Right"), ("left", "Left"), ("hidden", "Hidden")))
        w.paint("right", right)
        w.paint("left", left)
        w.paint("hidden", hidden)
        w.hide("hidden")
        if "overwrite none" in effect:
            w.set_masking(overwrite="None")
        worlds.append(w)
    engine_world, slicer_world = worlds

    if effect.startswith("Margin"):
        margin = float(effect.split()[1])
        params = {"MarginSizeMm": margin, "ApplyToAllVisibleSegments": 1}
        logic.apply("Margin", params, volume, engine_world.seg, "left", engine_world.editor)
        slicer_all_visible(slicer_world, lambda w, sid: slicer_margin(w, sid, margin))
    else:
        params = {"ShellMode": "OUTSIDE_SURFACE", "ShellThicknessMm": 10.0,
                  "ApplyToAllVisibleSegments": 1}
        logic.apply("Hollow", params, volume, engine_world.seg, "left", engine_world.editor)
        slicer_all_visible(slicer_world, lambda w, sid: slicer_hollow(w, sid, "OUTSIDE_SURFACE", 10.0))

    assert_same(case, engine_world, slicer_world, parity)
    assert np.array_equal(engine_world.mask("hidden"), hidden)
    assert not np.array_equal(engine_world.mask("right"), right)
    assert not np.array_equal(engine_world.mask("left"), left)


# ---------------------------------------------------------------------------------------
# An oblique lattice whose reference extent does not start at 0

@pytest.mark.parametrize("effect", ["Margin 2.5", "Margin -1.9", "Hollow MEDIAL_SURFACE 3"])
def test_oblique_lattice(logic, parity, effect):
    from test_extension_parity import crop_reference, oblique_scene

    scene, volume = oblique_scene()
    extent = (4, 27, 3, 22, 2, 15)
    worlds = []
    for side in ("engine", "slicer"):
        w = ref.World(scene, volume, f"oblique {effect} ({side})")
        crop_reference(w, extent)
        ref.threshold(w, "lungs", -1000, -600)
        worlds.append(w)
    engine_world, slicer_world = worlds
    spacing = engine_world.reference().GetSpacing()
    assert min(spacing) < max(spacing)
    name, *args = effect.split()
    if name == "Margin":
        logic.apply("Margin", {"MarginSizeMm": float(args[0])}, volume, engine_world.seg,
                    "lungs", engine_world.editor)
        slicer_margin(slicer_world, "lungs", float(args[0]))
    else:
        logic.apply("Hollow", {"ShellMode": args[0], "ShellThicknessMm": float(args[1])}, volume,
                    engine_world.seg, "lungs", engine_world.editor)
        slicer_hollow(slicer_world, "lungs", args[0], float(args[1]))
    assert_same(f"oblique, extent {extent}: {effect}", engine_world, slicer_world, parity)
    assert engine_world.mask("lungs").sum() > 0


# ---------------------------------------------------------------------------------------
# The 1 mm CT (37 M voxels)

@pytest.fixture(scope="module")
def air_1mm(scene_volume_1mm):
    """The largest 6-connected island of -1024..-400 HU on the 1 mm CT: the air around
    the patient (it touches the image border, so shrinking shows the border rule)."""
    _, volume = scene_volume_1mm
    source = ref.image_array(volume.GetImageData())
    air = ((source >= -1024) & (source <= -400)).astype(np.uint8)
    islands = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.GetImageFromArray(air), False))
    largest = (sitk.GetArrayFromImage(islands) == 1).astype(np.uint8)
    assert largest.sum() > 5_000_000
    return largest


@pytest.mark.parametrize("effect", ["Margin 3", "Margin -2.5", "Hollow INSIDE_SURFACE 2"])
def test_1mm(scene_volume_1mm, air_1mm, logic, parity, effect):
    scene, volume = scene_volume_1mm
    case = f"{effect}, 1 mm CT, largest air island"
    worlds = []
    for side in ("engine", "slicer"):
        w = ref.World(scene, volume, f"{case} ({side})", segments=(("air", "Air"),))
        w.paint("air", air_1mm)
        worlds.append(w)
    engine_world, slicer_world = worlds
    name, *args = effect.split()
    if name == "Margin":
        margin = float(args[0])
        logic.apply("Margin", {"MarginSizeMm": margin}, volume, engine_world.seg, "air",
                    engine_world.editor)
        slicer_margin(slicer_world, "air", margin)
    else:
        logic.apply("Hollow", {"ShellMode": args[0], "ShellThicknessMm": float(args[1])}, volume,
                    engine_world.seg, "air", engine_world.editor)
        slicer_hollow(slicer_world, "air", args[0], float(args[1]))
    a, b = engine_world.mask("air"), slicer_world.mask("air")
    differing = int(np.count_nonzero(a != b))
    parity(case, "air", int(b.sum()), int(a.sum()), differing)
    assert differing == 0, f"{case}: {differing} voxels differ"
    assert a.sum() != air_1mm.sum()
