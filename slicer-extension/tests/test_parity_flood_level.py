"""Parity of Flood filling and Level tracing: a segment edited through `EngineLogic` and
the real engine equals, voxel for voxel, the segment Slicer's own classes give.

The Slicer side repeats the call sequences of the effects (read in
SlicerSegmentEditorExtraEffects' `SegmentEditorFloodFilling` and Slicer's
`SegmentEditorLevelTracingEffect.py`, reference §3.3 and §2.5):

- Flood filling: `vtkImageThresholdConnectivity` on the aligned source from the clicked
  voxel, range [v - tol, v + tol], neighbourhood radius `NeighborhoodSizeMm` (read in
  voxels by VTK), fraction 0.5, and as stencil the editable voxels of
  `GenerateEditMask` (editable area and editable intensity range); mode Add.
- Level tracing: `vtkITKLevelTracingImageFilter` on the aligned source (plane IJ, IK or
  JK), its chain of pixel centres filled as `CreateMaskImageFromPolyData` fills it with
  `vtkImageFillROI` (the image origin one pixel below the polygon's bounds), at one
  screen pixel per voxel with the view's axes along the slice's index axes; mode Add.

The engine does not receive the masking settings, so it cannot block the fill with
Slicer's stencil (see `flood_filling.rs`): where the editable area cuts the region, the
test checks that the engine's result is exactly the unblocked fill, masked, and records
how much it differs from Slicer's.
"""

from __future__ import annotations

import numpy as np
import pytest

import slicer_reference as ref

ADD = ref.ADD


def make_worlds(scene_volume, case: str, other=None):
    scene, volume = scene_volume
    worlds = []
    for side in ("engine", "slicer"):
        w = ref.World(scene, volume, f"{case} ({side})")
        if other is not None:
            w.paint("other", other)
        worlds.append(w)
    return worlds


def assert_same(case, engine_world, slicer_world, parity, allowed=None):
    """Same voxels in every segment; `allowed` maps a segment id to a boolean array of the
    voxels where a difference is expected (recorded, and checked to be exactly there)."""
    for sid in engine_world.segment_ids():
        a, b = engine_world.mask(sid), slicer_world.mask(sid)
        differing = a != b
        parity(case, sid, int(b.sum()), int(a.sum()), int(differing.sum()))
        if allowed is not None and sid in allowed:
            assert np.array_equal(differing, allowed[sid]), f"{case}: {sid} differs elsewhere"
        else:
            assert not differing.any(), f"{case}: segment {sid} differs in {int(differing.sum())} voxels"


# ---------------------------------------------------------------------------------------
# Slicer's sequences

def slicer_flood_fill(world, sid, ijk, tolerance, neighborhood, use_stencil=True):
    """SegmentEditorFloodFilling.floodFillFromPoint on a world (masking from its editor
    node); `use_stencil=False` leaves the edit-mask stencil out (what the engine does)."""
    import slicer
    import vtk

    world.select(sid)
    source = world.aligned_source()
    value = source.GetScalarComponentAsFloat(*ijk, 0)
    f = vtk.vtkImageThresholdConnectivity()
    f.SetInputData(source)
    seeds = vtk.vtkPoints()
    origin, spacing = source.GetOrigin(), source.GetSpacing()
    seeds.InsertNextPoint(*(origin[a] + ijk[a] * spacing[a] for a in range(3)))
    f.SetSeedPoints(seeds)
    if use_stencil:
        editor = world.editor
        intensity = bool(editor.GetSourceVolumeIntensityMask())
        edit_mask = slicer.vtkOrientedImageData()
        assert world.seg.GenerateEditMask(
            edit_mask, editor.GetMaskMode(), source, sid, editor.GetMaskSegmentID() or "",
            source if intensity else None,
            editor.GetSourceVolumeIntensityMaskRange() if intensity else None)
        stencil = vtk.vtkImageToImageStencil()
        stencil.SetInputData(edit_mask)
        stencil.ThresholdByLower(0)
        stencil.Update()
        f.SetStencilData(stencil.GetOutput())
    f.SetNeighborhoodRadius(neighborhood, neighborhood, neighborhood)
    f.SetNeighborhoodFraction(0.5)
    f.ThresholdBetween(value - tolerance, value + tolerance)
    f.SetInValue(1)
    f.SetOutValue(0)
    f.Update()
    assert world.logic.ResetModifierLabelmapToDefault()
    modifier = slicer.vtkOrientedImageData()
    modifier.DeepCopy(world.logic.GetModifierLabelmap())
    modifier.DeepCopy(f.GetOutput())
    m = vtk.vtkMatrix4x4()
    source.GetImageToWorldMatrix(m)
    modifier.SetImageToWorldMatrix(m)
    world.apply(sid, modifier, ADD)
    return ref.image_array(f.GetOutput()).copy()


PLANES = {"K": ("SetPlaneToIJ", (0, 1)), "J": ("SetPlaneToIK", (0, 2)), "I": ("SetPlaneToJK", (1, 2))}


def fill_roi(points_uv):
    """vtkImageFillROI as CreateMaskImageFromPolyData runs it: origin one pixel below the
    bounds, 32 pixels of margin; answers (pixels[v][u], u0, v0)."""
    import slicer
    import vtk

    us = [p[0] for p in points_uv]
    vs = [p[1] for p in points_uv]
    u0, v0 = min(us) - 1.0, min(vs) - 1.0
    w, h = int(max(us) - u0) + 32, int(max(vs) - v0) + 32
    image = vtk.vtkImageData()
    image.SetDimensions(w, h, 1)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    points = vtk.vtkPoints()
    for u, v in points_uv:
        points.InsertNextPoint(u - u0, v - v0, 0.0)
    fill = slicer.vtkImageFillROI()
    fill.SetInputData(image)
    fill.SetValue(1)
    fill.SetPoints(points)
    fill.Update()
    return ref.image_array(fill.GetOutput())[0].copy(), int(u0), int(v0)


def slicer_level_trace(world, sid, ijk, axis):
    """SegmentEditorLevelTracingEffect: trace on the aligned source, fill the chain, Add.
    Answers the number of contour points."""
    import slicer

    world.select(sid)
    source = world.aligned_source()
    tracing = slicer.vtkITKLevelTracingImageFilter()
    tracing.SetInputData(source)
    tracing.SetSeed(*ijk)
    method, (a, b) = PLANES[axis]
    getattr(tracing, method)()
    tracing.Update()
    poly = tracing.GetOutput()
    points = [poly.GetPoint(n) for n in range(poly.GetNumberOfPoints())]
    modifier_array = np.zeros_like(ref.image_array(source), dtype=np.uint8)
    if poly.GetLines() is not None and poly.GetLines().GetNumberOfCells() > 0:
        pixels, u0, v0 = fill_roi([(p[a], p[b]) for p in points])
        shape = modifier_array.shape[::-1]  # (ni, nj, nk)
        for v, u in np.argwhere(pixels != 0):
            voxel = list(ijk)
            voxel[a], voxel[b] = u + u0, v + v0
            if all(0 <= voxel[c] < shape[c] for c in range(3)):
                modifier_array[voxel[2], voxel[1], voxel[0]] = 1
    world.apply(sid, world.modifier(modifier_array), ADD)
    return len(points), [tuple(int(round(c)) for c in p) for p in points]


# ---------------------------------------------------------------------------------------
# Clicks on CTChest4, found from the data (no hard-coded voxel)

@pytest.fixture(scope="module")
def ct(scene_volume):
    _, volume = scene_volume
    return ref.image_array(volume.GetImageData()).copy()


def nearest(cond, target):
    idx = np.argwhere(cond)
    assert idx.size
    k, j, i = idx[np.argmin(((idx - target) ** 2).sum(axis=1))]
    return int(i), int(j), int(k)


@pytest.fixture(scope="module")
def clicks(ct, expert):
    """(i, j, k) clicks: the left lung near its centre, soft tissue and bone between the
    lungs."""
    left = np.argwhere(expert == 6).mean(axis=0)
    between = (left + np.argwhere(expert == 5).mean(axis=0)) / 2
    return {
        "lung": nearest((expert == 6) & (ct < -800), left),
        "soft tissue": nearest((ct >= 30) & (ct <= 50), between),
        "bone": nearest(eroded(ct >= 400, 1), between),
    }


def eroded(mask, r):
    """`mask` where the whole box of radius `r` around the voxel is in `mask`."""
    out = mask.copy()
    for axis in range(3):
        for d in range(1, r + 1):
            for sign in (1, -1):
                shifted = np.zeros_like(mask)
                src = [slice(None)] * 3
                dst = [slice(None)] * 3
                src[axis], dst[axis] = (slice(d, None), slice(None, -d)) if sign == 1 else (slice(None, -d), slice(d, None))
                shifted[tuple(dst)] = mask[tuple(src)]
                out &= shifted
    return out


def lung_click_1mm(ct):
    """A lung voxel of the 1 mm volume (the same click as the benchmark): the largest dark
    (< -600) component that does not touch the image border is a lung; the click is its
    voxel below -800 nearest to its centroid."""
    import SimpleITK as sitk

    labels = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.GetImageFromArray((ct < -600).astype(np.uint8))))
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(labels)
    size = labels.GetSize()
    for label in sorted(stats.GetLabels()):
        x, y, z, sx, sy, sz = stats.GetBoundingBox(label)
        if x > 0 and y > 0 and z > 0 and x + sx < size[0] and y + sy < size[1] and z + sz < size[2]:
            lab = sitk.GetArrayViewFromImage(labels)
            box = (slice(z, z + sz), slice(y, y + sy), slice(x, x + sx))
            inside = (lab[box] == label) & (ct[box] < -800)
            i, j, k = nearest(inside, np.argwhere(inside).mean(axis=0))
            return i + x, j + y, k + z
    raise AssertionError("no dark component inside the 1 mm volume")


FLOOD_CASES = [
    ("lung", 10, 0.0),
    ("lung", 40, 1.0),
    ("lung", 150, 1.0),
    ("lung", 150, 0.0),
    ("lung", 60, 2.5),
    ("soft tissue", 20, 1.0),
    ("soft tissue", 40, 0.0),
    ("bone", 300, 1.0),
    ("bone", 150, 1.6),
]


@pytest.mark.parametrize("tissue,tolerance,neighborhood", FLOOD_CASES)
@pytest.mark.parametrize("masking", ["default", "overwrite none"])
def test_flood_filling(scene_volume, expert, clicks, logic, parity, tissue, tolerance, neighborhood, masking):
    point = clicks[tissue]
    case = f"Flood filling {tissue} {point} tol {tolerance} nbhd {neighborhood}, {masking}"
    engine_world, slicer_world = make_worlds(scene_volume, case, (expert == 5).astype(np.uint8))
    for w in (engine_world, slicer_world):
        if masking == "overwrite none":
            w.set_masking(overwrite="None")
    _, volume = scene_volume
    result = logic.apply("Flood filling", {"IntensityTolerance": tolerance, "NeighborhoodSizeMm": neighborhood},
                         volume, engine_world.seg, "lungs", segment_editor_node=engine_world.editor,
                         point_ijk=point)
    filled = slicer_flood_fill(slicer_world, "lungs", point, tolerance, neighborhood)
    assert [m.mode for m in result.modifiers] == ["Add"]
    assert result.reported["filled_voxels"] == int(filled.sum())
    assert filled.sum() > 0
    assert_same(case, engine_world, slicer_world, parity)


# name -> (World.set_masking arguments, "other" segment or None for the expert right lung)
STENCIL_MASKINGS = {
    "intensity -1000..-800": ({"intensity": (-1000.0, -800.0)}, None),
    "inside left lung cut at a slice": ({"mask_mode": "InsideSingleSegment", "mask_segment": "other"}, "cut"),
}


@pytest.mark.parametrize("masking", list(STENCIL_MASKINGS))
def test_flood_filling_where_the_editable_area_cuts_the_region(scene_volume, expert, clicks, logic, parity,
                                                                masking):
    """Maskings whose stencil cuts the region: Slicer's stencil stops the fill at locked
    voxels. The extension sends the masking settings with the request, so the engine stops
    there too: the result equals Slicer's voxel for voxel, and differs from a fill that
    ignores the stencil (so the case does test the stencil)."""
    point = clicks["lung"]
    settings, other_kind = STENCIL_MASKINGS[masking]
    if other_kind == "cut":
        other = (expert == 6).astype(np.uint8)
        other[point[2] + 2] = 0
    else:
        other = (expert == 5).astype(np.uint8)
    case = f"Flood filling lung {point} tol 150, {masking}"
    engine_world, slicer_world = make_worlds(scene_volume, case, other)
    unblocked_world = make_worlds(scene_volume, case + " unblocked", other)[1]
    for w in (engine_world, slicer_world, unblocked_world):
        w.set_masking(**settings)
    _, volume = scene_volume
    logic.apply("Flood filling", {"IntensityTolerance": 150}, volume, engine_world.seg, "lungs",
                segment_editor_node=engine_world.editor, point_ijk=point)
    slicer_flood_fill(slicer_world, "lungs", point, 150, 1.0)
    slicer_flood_fill(unblocked_world, "lungs", point, 150, 1.0, use_stencil=False)
    assert ((unblocked_world.mask("lungs") != 0) & (slicer_world.mask("lungs") == 0)).any(), \
        "this masking should cut the region"
    assert_same(case, engine_world, slicer_world, parity)


def test_flood_filling_on_the_1mm_volume(scene_volume_1mm, logic, parity):
    """The 37 M voxel volume: a click in the left lung, tolerance 150, radius 1."""
    scene, volume = scene_volume_1mm
    point = lung_click_1mm(ref.image_array(volume.GetImageData()))
    case = f"Flood filling 1 mm lung {point} tol 150"
    engine_world, slicer_world = make_worlds((scene, volume), case)
    result = logic.apply("Flood filling", {"IntensityTolerance": 150, "NeighborhoodSizeMm": 1.0}, volume,
                         engine_world.seg, "lungs", segment_editor_node=engine_world.editor, point_ijk=point)
    filled = slicer_flood_fill(slicer_world, "lungs", point, 150, 1.0)
    assert filled.sum() > 50_000
    assert result.reported["filled_voxels"] == int(filled.sum())
    assert_same(case, engine_world, slicer_world, parity)


# ---------------------------------------------------------------------------------------
# Level tracing

def in_plane_neighbours(ct, axis):
    """For every voxel, the 8 in-plane neighbours' values stacked (edge-padded with the
    voxel's own value, so the border does not count as darker)."""
    a, b = {"K": (2, 1), "J": (2, 0), "I": (1, 0)}[axis]
    out = []
    for du in (-1, 0, 1):
        for dv in (-1, 0, 1):
            if du == 0 and dv == 0:
                continue
            shifted = np.full_like(ct, np.iinfo(ct.dtype).max)
            src = [slice(None)] * 3
            dst = [slice(None)] * 3
            for axis_n, d in ((a, du), (b, dv)):
                if d == 1:
                    src[axis_n], dst[axis_n] = slice(1, None), slice(None, -1)
                elif d == -1:
                    src[axis_n], dst[axis_n] = slice(None, -1), slice(1, None)
            shifted[tuple(dst)] = ct[tuple(src)]
            out.append(shifted)
    return np.stack(out)


def level_clicks(ct, expert, axis):
    """Clicks for one plane: the body's outline (a large contour around the lungs, which
    the fill takes in), edges of bone, lung and soft tissue, an interior voxel
    (nothing darker around: no contour) and a lone bright pixel (no step)."""
    left = np.argwhere(expert == 6).mean(axis=0)
    between = (left + np.argwhere(expert == 5).mean(axis=0)) / 2
    around = in_plane_neighbours(ct, axis)
    # On an edge (a face neighbour darker), with at least 5 neighbours in the region.
    faces = around[[1, 3, 4, 6]]
    has_darker = (faces < ct).any(axis=0) & ((around >= ct).sum(axis=0) >= 5)
    interior = (around >= ct).all(axis=0)
    lone = (around < ct).all(axis=0) & (ct > -500)
    inner = np.zeros(ct.shape, bool)
    inner[2:-2, 2:-2, 2:-2] = True
    nk, nj, ni = ct.shape
    body_edge = (ct > -200) & (faces < -900).any(axis=0) & inner
    return {
        "body outline": nearest(body_edge, np.array([nk / 2, nj / 2, 0])),
        "bone edge": nearest((ct >= 400) & has_darker, between),
        "lung edge": nearest((expert == 6) & has_darker, left),
        "soft tissue edge": nearest((ct >= 20) & (ct <= 60) & has_darker & inner, between),
        "interior": nearest(interior & inner & (ct > -500), between),
        "lone pixel": nearest(lone & inner, between),
    }


@pytest.mark.parametrize("axis", ["K", "J", "I"])
def test_level_tracing(scene_volume, expert, ct, logic, parity, axis):
    _, volume = scene_volume
    for name, point in level_clicks(ct, expert, axis).items():
        case = f"Level tracing {axis} {name} {point}"
        engine_world, slicer_world = make_worlds(scene_volume, case, (expert == 5).astype(np.uint8))
        result = logic.apply("Level tracing", {"SliceAxis": axis}, volume, engine_world.seg, "lungs",
                             segment_editor_node=engine_world.editor, point_ijk=point)
        n_points, _ = slicer_level_trace(slicer_world, "lungs", point, axis)
        assert result.reported["contour_points"] == n_points, case
        if name in ("interior", "lone pixel"):
            assert n_points == 0 and not result.modifiers, case
        else:
            assert n_points >= 3 and [m.mode for m in result.modifiers] == ["Add"], case
            assert engine_world.mask("lungs").sum() > 0, case
        assert_same(case, engine_world, slicer_world, parity)


def test_level_tracing_with_the_intensity_range_masking(scene_volume, expert, ct, logic, parity):
    _, volume = scene_volume
    point = level_clicks(ct, expert, "K")["bone edge"]
    case = f"Level tracing K bone edge {point}, intensity 0..3000"
    engine_world, slicer_world = make_worlds(scene_volume, case, (expert == 5).astype(np.uint8))
    for w in (engine_world, slicer_world):
        w.set_masking(intensity=(0.0, 3000.0))
    logic.apply("Level tracing", {}, volume, engine_world.seg, "lungs",
                segment_editor_node=engine_world.editor, point_ijk=point)
    slicer_level_trace(slicer_world, "lungs", point, "K")
    assert_same(case, engine_world, slicer_world, parity)
    assert engine_world.mask("lungs").sum() > 0
