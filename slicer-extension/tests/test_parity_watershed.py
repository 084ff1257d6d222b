"""Parity of Watershed: the segments computed through `EngineLogic` and the real engine
against SimpleITK called as SlicerSegmentEditorExtraEffects' `SegmentEditorWatershed` calls
it (reference §3.2, §1.4):

- the working box of the auto-complete framework: the union of the visible segments'
  extents, enlarged per axis by `int(max(3, 0.1 * (max - min)))` voxels and clipped to the
  volume (computed here in numpy);
- the merged seeds on that box (label n = n-th visible segment, later segments winning);
- `sitk.GradientMagnitudeRecursiveGaussian(source_box, ObjectScaleMm)` with the volume's
  spacing, then `MorphologicalWatershedFromMarkersImageFilter` with
  `MarkWatershedLine(False)`, `FullyConnected(False)`, then `Cast(sitkInt16)`;
- Apply: each segment Set to the voxels of its label (default masking: nothing else
  changes).

Seeds are drawn from the expert lungs of `Segmentation.seg.nrrd` (eroded), the body's soft
tissue (eroded, away from the lungs) and the air outside the body. Each segment must reach
Dice >= 0.99 (the implementation follows ITK's visiting order, so the expected figure is
identical voxels; the differing voxels are reported in the parity table). The gradient image
is also compared with SimpleITK's numerically through the developer example
`examples/gradient_magnitude.rs` (next to the engine binary: `<target>/<profile>/examples/`).
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

import slicer_reference as ref
from conftest import missing, segkit_binary

SEGMENTS = (("lungs", "Lungs"), ("body", "Body"), ("air", "Air"))


def erode(mask: np.ndarray, steps: int, border: bool = False) -> np.ndarray:
    """`steps` 6-connected erosions; outside the volume counts as `border`."""
    m = mask.astype(bool)
    for _ in range(steps):
        p = np.pad(m, 1, constant_values=border)
        m = (p[1:-1, 1:-1, 1:-1] & p[:-2, 1:-1, 1:-1] & p[2:, 1:-1, 1:-1] & p[1:-1, :-2, 1:-1]
             & p[1:-1, 2:, 1:-1] & p[1:-1, 1:-1, :-2] & p[1:-1, 1:-1, 2:])
    return m


def seeds_from(source: np.ndarray, lungs: np.ndarray, steps: int):
    """(lungs, body, air) seed masks, [k][j][i]."""
    lung_seed = erode(lungs, 1)
    near_lung = ~erode(~lungs.astype(bool), 4, border=True)
    body = erode((source > -100) & (source < 150), steps) & ~near_lung
    outside = source < -900
    outside[:, 3:-3, 3:-3] = False  # air at the sides of the field of view only
    air = erode(outside, 1) & ~near_lung
    return [lung_seed, body, air]


def working_box(masks, shape, ratio=0.1):
    """The auto-complete framework's box: (lo, hi) half-open per axis (k, j, i)."""
    union = np.zeros(shape, bool)
    for m in masks:
        union |= m
    idx = np.argwhere(union)
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    out_lo, out_hi = [], []
    for a in range(3):
        margin = int(max(3, ratio * (hi[a] - lo[a])))
        out_lo.append(max(0, lo[a] - margin))
        out_hi.append(min(shape[a], hi[a] + margin + 1))
    return out_lo, out_hi


def sitk_watershed(source: np.ndarray, spacing_ijk, masks, sigma):
    """Slicer's sequence on the box; answers (labels on the whole lattice, box, gradient)."""
    import SimpleITK as sitk

    lo, hi = working_box(masks, source.shape)
    box = tuple(slice(lo[a], hi[a]) for a in range(3))
    merged = np.zeros(source.shape, np.int16)
    for n, m in enumerate(masks):
        merged[m] = n + 1
    image = sitk.GetImageFromArray(np.ascontiguousarray(source[box]))
    image.SetSpacing(tuple(float(s) for s in spacing_ijk))
    labels = sitk.GetImageFromArray(np.ascontiguousarray(merged[box]))
    labels.CopyInformation(image)
    feature = sitk.GradientMagnitudeRecursiveGaussian(image, float(sigma))
    f = sitk.MorphologicalWatershedFromMarkersImageFilter()
    f.SetMarkWatershedLine(False)
    f.SetFullyConnected(False)
    out = f.Execute(feature, labels)
    if out.GetPixelID() != sitk.sitkInt16:
        out = sitk.Cast(out, sitk.sitkInt16)
    whole = np.zeros(source.shape, np.int16)
    whole[box] = sitk.GetArrayFromImage(out)
    return whole, box, sitk.GetArrayFromImage(feature)


def gradient_binary():
    exe = segkit_binary().parent / "examples" / "gradient_magnitude"
    if not exe.is_file():
        missing(f"{exe} not found: run `cargo build --example gradient_magnitude` "
                "(cargo test builds it)")
    return exe


def segkit_gradient(source: np.ndarray, spacing_ijk, sigma, tmp_path):
    types = {np.dtype(np.int16): "i16", np.dtype(np.int32): "i32", np.dtype(np.float32): "f32",
             np.dtype(np.uint8): "u8", np.dtype(np.uint16): "u16", np.dtype(np.float64): "f64"}
    raw, out = tmp_path / "voxels.raw", tmp_path / "gradient.raw"
    np.ascontiguousarray(source).astype(source.dtype.newbyteorder("<")).tofile(raw)
    nk, nj, ni = source.shape
    subprocess.run([str(gradient_binary()), "--type", types[source.dtype], "--dims", str(ni),
                    str(nj), str(nk), "--spacing", *map(str, spacing_ijk), "--sigma", str(sigma),
                    str(raw), str(out)], check=True)
    return np.fromfile(out, "<f4").reshape(source.shape)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def run_case(scene_volume, lungs, logic, parity, case, sigma, steps=2):
    scene, volume = scene_volume
    source = ref.image_array(volume.GetImageData()).copy()
    spacing = volume.GetSpacing()
    masks = seeds_from(source, lungs, steps)
    assert all(m.sum() > 0 for m in masks), "a seed is empty"
    world = ref.World(scene, volume, f"{case} (engine)", segments=SEGMENTS)
    for (sid, _), m in zip(SEGMENTS, masks):
        world.paint(sid, m.astype(np.uint8), ref.SET)
    result = logic.apply("Watershed", {"ObjectScaleMm": sigma}, volume, world.seg, "lungs",
                         segment_editor_node=world.editor)
    assert [m.mode for m in result.modifiers] == ["Set"] * len(SEGMENTS)
    expected, box, _ = sitk_watershed(source, spacing, masks, sigma)
    for n, (sid, _) in enumerate(SEGMENTS):
        ours = world.mask(sid) != 0
        theirs = expected == n + 1
        differing = int((ours != theirs).sum())
        parity(case, sid, int(theirs.sum()), int(ours.sum()), differing)
        d = dice(ours, theirs)
        assert d >= 0.99, f"{case}: {sid} Dice {d:.5f}, {differing} voxels differ"
    return source, spacing, box


@pytest.fixture(scope="module")
def lungs(expert):
    return (expert == 5) | (expert == 6)


@pytest.mark.parametrize("sigma", [2.0, 0.5, 6.0])
def test_watershed_lungs_body_air(scene_volume, lungs, logic, parity, sigma):
    run_case(scene_volume, lungs, logic, parity, f"Watershed CTChest4 sigma {sigma}", sigma)


def test_watershed_gradient_equals_simpleitk(scene_volume, lungs, tmp_path):
    """segkit's gradient magnitude on the working box against SimpleITK's, float for
    float (ITK's order of operations and float storage between passes)."""
    _, volume = scene_volume
    source = ref.image_array(volume.GetImageData()).copy()
    spacing = volume.GetSpacing()
    masks = seeds_from(source, lungs, 2)
    for sigma in (2.0, 0.5, 6.0):
        _, box, theirs = sitk_watershed(source, spacing, masks, sigma)
        ours = segkit_gradient(np.ascontiguousarray(source[box]), spacing, sigma, tmp_path)
        err = np.abs(ours.astype(np.float64) - theirs)
        rel = err / np.maximum(np.abs(theirs), 1e-6)
        print(f"sigma {sigma}: max abs {err.max():.3g}, max rel {rel.max():.3g}, "
              f"identical {float((ours == theirs).mean()):.6f}")
        assert err.max() <= 1e-4 * max(1.0, float(np.abs(theirs).max())), sigma


def test_watershed_on_the_1mm_volume(scene_volume_1mm, logic, parity):
    """The 37 M voxel CT: lungs (< -600, the large dark components inside the body),
    body and outside air."""
    scene, volume = scene_volume_1mm
    source = ref.image_array(volume.GetImageData())
    import SimpleITK as sitk

    dark = sitk.GetImageFromArray((source < -600).astype(np.uint8))
    labels = sitk.GetArrayFromImage(sitk.RelabelComponent(sitk.ConnectedComponent(dark)))
    touching = set(np.unique(np.concatenate([labels[0].ravel(), labels[-1].ravel(),
                                             labels[:, 0].ravel(), labels[:, -1].ravel(),
                                             labels[:, :, 0].ravel(), labels[:, :, -1].ravel()])))
    inner = [l for l in range(1, 4) if l not in touching]
    assert inner, "no dark component inside the 1 mm volume"
    lungs = np.isin(labels, inner)
    lungs = erode(lungs, 2)
    run_case(scene_volume_1mm, lungs, logic, parity, "Watershed 1 mm sigma 2", 2.0, steps=4)


def test_watershed_needs_two_segments(scene_volume, lungs, logic):
    scene, volume = scene_volume
    world = ref.World(scene, volume, "watershed one segment", segments=SEGMENTS[:1])
    world.paint("lungs", lungs.astype(np.uint8), ref.SET)
    with pytest.raises(Exception, match="at least 2"):
        logic.apply("Watershed", {}, volume, world.seg, "lungs", segment_editor_node=world.editor)
