"""Parity of Grow from seeds: segments grown through `EngineLogic` and the real engine
against Slicer's own `vtkImageGrowCutSegment` run the way the auto-complete framework runs
it (reference §1.4, §2.6; `AbstractScriptedSegmentEditorAutoCompleteEffect.preview` and
`SegmentEditorGrowFromSeedsEffect.computePreviewLabelmap`):

- the visible segments' union of effective extents, enlarged by `int(max(3, 0.5 * span))`
  voxels per axis (the ratio Slicer uses once an edit mask exists, see
  `src/effects/grow_from_seeds.rs`) and clipped to the source;
- the source padded to that box (`vtkImageConstantPad`), the edit mask of
  `GenerateEditMask(maskMode, box, "", maskSegment, intensity range)`, the merged labelmap
  of the visible segments (`GenerateMergedLabelmapForAllSegments`, label = index + 1);
- `vtkImageGrowCutSegment` (the filter of Slicer ≤ 5.2; `vtkITKGrowCut` of later versions is
  the same algorithm and is not wrapped in slicer-core), then each segment Set to its label.

On float images (CT plus a small deterministic noise, so no two paths cost the same) the
result must be identical voxel for voxel, with and without a seed locality factor. On the
integer CT, equal-cost paths are common and VTK breaks their ties by its Fibonacci heap's
order, segkit by its radix heap's: the test records the differing voxels and asks for a Dice
of at least 0.999 per segment. The incremental update (a seed stroke added to a computed
state) is checked on the kernel itself (`examples/grow_from_seeds`), as the engine's
ApplyEffect always computes from scratch: one `vtkImageGrowCutSegment` updated twice against
one segkit state updated twice, on float data.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import vtk

import slicer
import slicer_reference as ref
from conftest import REPO

LUNGS, OTHER = "lungs", "other"
MIN_DICE = 0.999


# ---------------------------------------------------------------------------------------
# Seeds

def seeds_ctchest4(source: np.ndarray, expert: np.ndarray):
    """Seed strokes on every 4th slice: lungs = the expert lungs shrunk by 2 voxels in the
    slice, other = the soft tissue and bone (> -300 HU) and the air outside the body
    (< -900 HU, not lung), shrunk by 1 voxel."""
    import SimpleITK as sitk

    def eroded(mask, r):
        out = np.zeros_like(mask, dtype=bool)
        for k in range(mask.shape[0]):
            img = sitk.GetImageFromArray(mask[k].astype(np.uint8))
            out[k] = sitk.GetArrayFromImage(sitk.BinaryErode(img, [r, r])).astype(bool)
        return out

    lung = (expert == 5) | (expert == 6)
    other = ((source > -300) | (source < -900)) & ~lung
    slices = np.zeros(source.shape, bool)
    slices[2::4] = True
    return (eroded(lung, 2) & slices).astype(np.uint8), (eroded(other, 1) & slices).astype(np.uint8)


def make_worlds(scene, volume, case, lungs, other):
    worlds = []
    for side in ("engine", "slicer"):
        w = ref.World(scene, volume, f"{case} ({side})")
        w.paint(LUNGS, lungs)
        w.paint(OTHER, other)
        worlds.append(w)
    return worlds


# ---------------------------------------------------------------------------------------
# Slicer's sequence

def slicer_inputs(world, ratio=0.5):
    """(clipped source, edit mask, merged seeds, segment ids) as the auto-complete
    framework prepares them."""
    seg = world.seg
    ids = vtk.vtkStringArray()
    seg.GetDisplayNode().GetVisibleSegmentIDs(ids)
    geometry = slicer.vtkOrientedImageData()
    common = seg.GetSegmentation().DetermineCommonLabelmapGeometry(
        slicer.vtkSegmentation.EXTENT_UNION_OF_EFFECTIVE_SEGMENTS, ids)
    assert common, "every visible segment is empty"
    slicer.vtkSegmentationConverter.DeserializeImageGeometry(common, geometry)
    source = world.aligned_source()
    s, e = source.GetExtent(), geometry.GetExtent()
    margin = [int(max(3, ratio * (e[2 * a + 1] - e[2 * a]))) for a in range(3)]
    box = []
    for a in range(3):
        box += [max(s[2 * a], e[2 * a] - margin[a]), min(s[2 * a + 1], e[2 * a + 1] + margin[a])]
    geometry.SetExtent(box)
    pad = vtk.vtkImageConstantPad()
    pad.SetInputData(source)
    pad.SetOutputWholeExtent(geometry.GetExtent())
    pad.Update()
    clipped = slicer.vtkOrientedImageData()
    clipped.ShallowCopy(pad.GetOutput())
    clipped.CopyDirections(geometry)
    editor = world.editor
    intensity = bool(editor.GetSourceVolumeIntensityMask())
    mask = slicer.vtkOrientedImageData()
    assert seg.GenerateEditMask(
        mask, editor.GetMaskMode(), clipped, "", editor.GetMaskSegmentID() or "",
        clipped if intensity else None,
        editor.GetSourceVolumeIntensityMaskRange() if intensity else None)
    merged = slicer.vtkOrientedImageData()
    assert seg.GenerateMergedLabelmapForAllSegments(
        merged, slicer.vtkSegmentation.EXTENT_UNION_OF_EFFECTIVE_SEGMENTS, geometry, ids)
    return clipped, mask, merged, [ids.GetValue(n) for n in range(ids.GetNumberOfValues())]


def slicer_grow_from_seeds(world, locality=0.0):
    """The preview computed by vtkImageGrowCutSegment, then Apply: each input segment Set
    to its label's voxels."""
    clipped, mask, merged, ids = slicer_inputs(world)
    f = slicer.vtkImageGrowCutSegment()
    f.SetIntensityVolume(clipped)
    f.SetMaskVolume(mask)
    f.SetDistancePenalty(locality)
    f.SetSeedLabelVolume(merged)
    f.Update()
    out = f.GetOutput()
    assert out.GetNumberOfPoints() > 0, "vtkImageGrowCutSegment failed"
    labels = ref.image_array(out)
    m = vtk.vtkMatrix4x4()
    merged.GetImageToWorldMatrix(m)
    for n, sid in enumerate(ids):
        modifier = slicer.vtkOrientedImageData()
        modifier.SetExtent(out.GetExtent())
        modifier.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        ref.image_array(modifier)[...] = (labels == n + 1).astype(np.uint8)
        modifier.SetImageToWorldMatrix(m)
        world.apply(sid, modifier, ref.SET)
    return labels


def compare(case, engine_world, slicer_world, parity, exact):
    """Records each segment's differing voxels; exact, or Dice >= MIN_DICE."""
    for sid in (LUNGS, OTHER):
        a, b = engine_world.mask(sid), slicer_world.mask(sid)
        differing = int(np.count_nonzero(a != b))
        dice = 2 * np.count_nonzero(a & b) / max(1, int(a.sum()) + int(b.sum()))
        parity(f"{case} (Dice {dice:.6f})", sid, int(b.sum()), int(a.sum()), differing)
        assert b.sum() > 0, f"{case}: Slicer's {sid} is empty"
        if exact:
            assert differing == 0, f"{case}: {sid} differs in {differing} voxels"
        else:
            assert dice >= MIN_DICE, f"{case}: {sid} Dice {dice:.6f} ({differing} voxels differ)"


# ---------------------------------------------------------------------------------------
# Volumes

@pytest.fixture(scope="module")
def float_scene(ct_path, tmp_path_factory):
    """CTChest4 as float32 plus a deterministic noise in [0, 1): no equal-cost paths."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(ct_path))
    values = sitk.GetArrayFromImage(image).astype(np.float32)
    noise = np.random.default_rng(20261202).random(values.shape, dtype=np.float32)
    out = sitk.GetImageFromArray(values + noise)
    out.CopyInformation(image)
    path = tmp_path_factory.mktemp("growcut") / "CTChest4_float.nrrd"
    sitk.WriteImage(out, str(path), useCompression=False)
    scene = slicer.vtkMRMLScene()
    return scene, ref.load_volume(scene, path)


@pytest.fixture(scope="module")
def example_bin():
    """`examples/grow_from_seeds` ($SEGKIT_GROWCUT_EXAMPLE overrides): the release build if
    present, else the debug one, built when missing."""
    env = os.environ.get("SEGKIT_GROWCUT_EXAMPLE")
    if env:
        return Path(env)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    for profile in ("release", "debug"):
        path = target / profile / "examples" / "grow_from_seeds"
        if path.is_file():
            return path
    build = subprocess.run(["cargo", "build", "--example", "grow_from_seeds"], cwd=REPO,
                           capture_output=True, text=True)
    if build.returncode != 0 or not path.is_file():
        pytest.fail(f"cannot build examples/grow_from_seeds.rs:\n{build.stderr[-3000:]}")
    return path


# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("locality", [0.0, 1.5])
def test_float_ct_is_identical(float_scene, expert, logic, parity, locality):
    scene, volume = float_scene
    source = ref.image_array(volume.GetImageData())
    lungs, other = seeds_ctchest4(source, expert)
    case = f"Grow from seeds, CTChest4 float, SeedLocalityFactor {locality}"
    engine_world, slicer_world = make_worlds(scene, volume, case, lungs, other)
    logic.apply("Grow from seeds", {"SeedLocalityFactor": locality}, volume, engine_world.seg, LUNGS,
                segment_editor_node=engine_world.editor)
    slicer_grow_from_seeds(slicer_world, locality)
    compare(case, engine_world, slicer_world, parity, exact=True)


MASKINGS = {
    "default": {},
    "intensity -1100..-400": {"intensity": (-1100, -400)},
}


@pytest.mark.parametrize("masking", list(MASKINGS))
def test_integer_ct_within_ties(scene_volume, expert, logic, parity, masking):
    scene, volume = scene_volume
    source = ref.image_array(volume.GetImageData())
    lungs, other = seeds_ctchest4(source, expert)
    case = f"Grow from seeds, CTChest4 int32, {masking}"
    engine_world, slicer_world = make_worlds(scene, volume, case, lungs, other)
    for w in (engine_world, slicer_world):
        w.set_masking(**MASKINGS[masking])
    logic.apply("Grow from seeds", {}, volume, engine_world.seg, LUNGS,
                segment_editor_node=engine_world.editor)
    slicer_grow_from_seeds(slicer_world)
    compare(case, engine_world, slicer_world, parity, exact=False)


def test_incremental_update_matches_vtk_and_a_fresh_run(float_scene, expert, example_bin, parity, tmp_path):
    """A lung stroke added after a first computation: one VTK filter updated twice and one
    segkit state updated twice give the same labels, equal to a fresh run."""
    scene, volume = float_scene
    source = ref.image_array(volume.GetImageData())
    lungs, other = seeds_ctchest4(source, expert)
    world = make_worlds(scene, volume, "Grow from seeds incremental", lungs, other)[1]
    clipped, mask, merged, _ = slicer_inputs(world)
    seeds = ref.image_array(merged).astype(np.int16).copy()
    # The stroke: a 7 x 7 square of lung on the unseeded slice where the lungs are largest.
    e = merged.GetExtent()
    k0, j0, i0 = e[4], e[2], e[0]
    more = seeds.copy()
    lung = (expert == 5) | (expert == 6)
    k = max((k for k in range(lung.shape[0]) if k % 4 != 2), key=lambda k: int(lung[k].sum()))
    stroke = lung[k]
    ks = k - k0
    sub = stroke[j0:j0 + seeds.shape[1], i0:i0 + seeds.shape[2]]
    jj, ii = np.nonzero(sub)
    centre = np.argmin((jj - jj.mean()) ** 2 + (ii - ii.mean()) ** 2)
    j, i = int(jj[centre]), int(ii[centre])
    patch = more[ks, j - 3:j + 4, i - 3:i + 4]
    patch[sub[j - 3:j + 4, i - 3:i + 4]] = 1
    added = int(np.count_nonzero(more != seeds))
    assert added > 0

    f = slicer.vtkImageGrowCutSegment()
    f.SetIntensityVolume(clipped)
    f.SetMaskVolume(mask)
    f.SetDistancePenalty(0.0)
    seed_image = slicer.vtkOrientedImageData()
    seed_image.DeepCopy(merged)
    f.SetSeedLabelVolume(seed_image)
    f.Update()
    vtk_first = ref.image_array(f.GetOutput()).copy()
    ref.image_array(seed_image)[...] = more
    seed_image.Modified()
    f.Update()
    vtk_second = ref.image_array(f.GetOutput()).copy()
    fresh = slicer.vtkImageGrowCutSegment()
    fresh.SetIntensityVolume(clipped)
    fresh.SetMaskVolume(mask)
    fresh.SetSeedLabelVolume(seed_image)
    fresh.Update()
    vtk_fresh = ref.image_array(fresh.GetOutput()).copy()
    assert np.array_equal(vtk_second, vtk_fresh), "VTK's incremental update differs from a fresh run"

    values = ref.image_array(clipped)
    assert values.dtype == np.float32
    values.astype("<f4").tofile(tmp_path / "v.raw")
    seeds.astype("<u2").tofile(tmp_path / "s1.raw")
    more.astype("<u2").tofile(tmp_path / "s2.raw")
    ref.image_array(mask).astype(np.uint8).tofile(tmp_path / "m.raw")
    nk, nj, ni = values.shape
    sp = clipped.GetSpacing()
    subprocess.run([str(example_bin), "--type", "f32", "--dims", str(ni), str(nj), str(nk),
                    "--spacing", *map(str, sp), "--locked", str(tmp_path / "m.raw"),
                    str(tmp_path / "v.raw"), str(tmp_path / "s1.raw"), str(tmp_path / "o1.raw"),
                    str(tmp_path / "s2.raw"), str(tmp_path / "o2.raw")], check=True)
    first = np.fromfile(tmp_path / "o1.raw", "<u2").reshape(values.shape)
    second = np.fromfile(tmp_path / "o2.raw", "<u2").reshape(values.shape)
    parity("Grow from seeds kernel, float, first", "labels", int(vtk_first.size),
           int(first.size), int(np.count_nonzero(first != vtk_first)))
    parity(f"Grow from seeds kernel, float, +{added} seed voxels (incremental)", "labels",
           int(vtk_second.size), int(second.size), int(np.count_nonzero(second != vtk_second)))
    assert np.array_equal(first, vtk_first)
    assert np.array_equal(second, vtk_second)
    assert not np.array_equal(first, second), "the stroke changed nothing: a weak test"


def seeds_1mm(source: np.ndarray, band: int = 40, every: int = 10):
    """Strokes on every `every`-th axial slice of a `band`-slice band centred where the lungs
    are largest: lungs = below -900 HU in dark components that do not touch the volume's
    sides along i or j, other = -200..1500 HU or the air around the body; both eroded by 2
    voxels in the slice."""
    import SimpleITK as sitk

    comps = sitk.GetArrayFromImage(sitk.ConnectedComponent(
        sitk.GetImageFromArray((source < -600).astype(np.uint8))))
    sides = set(np.unique(np.concatenate([comps[:, 0].ravel(), comps[:, -1].ravel(),
                                          comps[:, :, 0].ravel(), comps[:, :, -1].ravel()])))
    lung = (comps > 0) & ~np.isin(comps, list(sides)) & (source < -900)
    other = ((source >= -200) & (source <= 1500)) | (np.isin(comps, [c for c in sides if c]) & (source < -900))
    widest = int(np.argmax(lung.sum(axis=(1, 2))))
    first = max(0, widest - band // 2)
    lungs_seed = np.zeros(source.shape, np.uint8)
    other_seed = np.zeros(source.shape, np.uint8)
    for k in range(first, min(source.shape[0], first + band), every):
        for mask, out in ((lung, lungs_seed), (other, other_seed)):
            img = sitk.GetImageFromArray(mask[k].astype(np.uint8))
            out[k] = sitk.GetArrayFromImage(sitk.BinaryErode(img, [2, 2]))
    other_seed[lungs_seed != 0] = 0
    assert lungs_seed.any() and other_seed.any()
    return lungs_seed, other_seed


def test_integer_ct_1mm_within_ties(scene_volume_1mm, logic, parity):
    """The 1 mm CT (int16, 37 M voxels; the working box holds about 80 slices)."""
    scene, volume = scene_volume_1mm
    source = ref.image_array(volume.GetImageData())
    lungs, other = seeds_1mm(source)
    case = "Grow from seeds, 1 mm CT int16"
    engine_world, slicer_world = make_worlds(scene, volume, case, lungs, other)
    logic.apply("Grow from seeds", {}, volume, engine_world.seg, LUNGS,
                segment_editor_node=engine_world.editor)
    slicer_grow_from_seeds(slicer_world)
    compare(case, engine_world, slicer_world, parity, exact=False)
