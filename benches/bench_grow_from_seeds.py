"""Grow from seeds benchmark: segkit's Fast GrowCut kernel beside Slicer's
`vtkImageGrowCutSegment` on the same working box and seeds, a first computation and an
incremental update after a new seed stroke.

The volume is `ts/example_ct.nii.gz` resampled to 1 mm (366 x 303 x 336 int16, 37 M voxels,
as the parity tests' `ct_1mm_path` fixture makes it). Two segments of seeds, painted on every
20th axial slice as an annotator would: "lungs" (voxels below -900 HU in the dark components
that do not touch the volume's sides along i or j, eroded by 2 voxels) and "other" (soft tissue and bone,
-200..1500 HU, eroded by 2 voxels, and the air around the body). The working box is Slicer's
(`int(max(3, 0.5 * span))` voxels of margin, clipped): here the whole volume. The update adds
a lung stroke (a 15 x 15 voxel square) on a slice between two seeded ones.

Measured, alternating segkit and VTK in every repeat:
- segkit: `target/release/examples/grow_from_seeds --time` (the kernel's own time for each
  computation: the first from scratch, the second incremental on the same state, as the
  engine's preview session keeps it; no file I/O);
- VTK: `Update()` of one `vtkImageGrowCutSegment` with the same int16 box, `short` seeds and
  the all-zero `unsigned char` edit mask Slicer passes without masking, then `Modified()` on
  the seeds and `Update()` again (Slicer's incremental update).

The labels are compared (Dice per label and differing voxels: on integer CT equal-cost ties
may fall differently, see `src/kernels/growcut.rs`). The figure to report is the ratio VTK
time / segkit time (above 1: segkit is faster); on shared 2-core machines absolute times are
noisy.

Usage: /work/main/.venv/bin/python benches/bench_grow_from_seeds.py [--repeat 3]
       [--every 20] [--locality 0] [--example target/release/examples/grow_from_seeds]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def volume_1mm(data: Path) -> np.ndarray:
    """The 1 mm volume (as conftest's `ct_1mm_path`), `[k][j][i]` int16."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(data / "ts" / "example_ct.nii.gz"))
    size = [int(round(n * s)) for n, s in zip(image.GetSize(), image.GetSpacing())]
    resampled = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
                              (1.0, 1.0, 1.0), image.GetDirection(), -1024, sitk.sitkInt16)
    return sitk.GetArrayFromImage(resampled)


def seeds_for(ct: np.ndarray, every: int):
    """(seeds, seeds with one more lung stroke) as uint16 `[k][j][i]`: 1 = lungs, 2 = other."""
    import SimpleITK as sitk

    dark = sitk.GetImageFromArray((ct < -600).astype(np.uint8))
    comps = sitk.GetArrayFromImage(sitk.ConnectedComponent(dark))
    touching = set(np.unique(np.concatenate([
        comps[:, 0].ravel(), comps[:, -1].ravel(), comps[:, :, 0].ravel(), comps[:, :, -1].ravel()])))
    lungs = (comps > 0) & ~np.isin(comps, list(touching)) & (ct < -900)
    tissue = (ct >= -200) & (ct <= 1500)
    outside = np.isin(comps, [c for c in touching if c != 0]) & (ct < -900)

    def eroded(mask):
        img = sitk.GetImageFromArray(mask.astype(np.uint8))
        return sitk.GetArrayFromImage(sitk.BinaryErode(img, [2, 2, 0])).astype(bool)

    seeds = np.zeros(ct.shape, np.uint16)
    slices = range(every // 2, ct.shape[0], every)
    for k in slices:
        seeds[k][eroded(tissue[k:k + 1])[0] | eroded(outside[k:k + 1])[0]] = 2
        seeds[k][eroded(lungs[k:k + 1])[0]] = 1
    if not (seeds == 1).any():
        sys.exit("no lung seeds found")
    # The stroke: a 15 x 15 square of lung halfway between two seeded slices, where the
    # lungs are largest.
    more = seeds.copy()
    widest = int(np.argmax(lungs.sum(axis=(1, 2))))
    k = min(list(slices), key=lambda s: abs(s - widest)) + every // 2
    k = min(k, ct.shape[0] - 1)
    jj, ii = np.nonzero(eroded(lungs[k:k + 1])[0])
    centre = np.argmin((jj - jj.mean()) ** 2 + (ii - ii.mean()) ** 2)
    j, i = int(jj[centre]), int(ii[centre])
    patch = more[k, j - 7:j + 8, i - 7:i + 8]
    patch[lungs[k, j - 7:j + 8, i - 7:i + 8]] = 1
    return seeds, more


def working_box(seeds: np.ndarray, ratio: float = 0.5):
    """Slicer's working box as slices `[k][j][i]`."""
    nz = np.nonzero(seeds)
    box = []
    for axis, n in enumerate(seeds.shape):
        lo, hi = int(nz[axis].min()), int(nz[axis].max())
        margin = int(max(3, ratio * (hi - lo)))
        box.append(slice(max(0, lo - margin), min(n - 1, hi + margin) + 1))
    return tuple(box)


def vtk_image(a: np.ndarray, vtk_type):
    import vtk
    from vtk.util import numpy_support

    image = vtk.vtkImageData()
    image.SetDimensions(a.shape[2], a.shape[1], a.shape[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(
        np.ascontiguousarray(a).reshape(-1), deep=True, array_type=vtk_type))
    return image


def vtk_array(image) -> np.ndarray:
    from vtk.util import numpy_support

    dims = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(
        dims[2], dims[1], dims[0])


def run_vtk(ct, seeds, more, locality):
    """(first, update) seconds and labels, one vtkImageGrowCutSegment kept between them."""
    import slicer
    import vtk

    source = vtk_image(ct, vtk.VTK_SHORT)
    seed_image = vtk_image(seeds.astype(np.int16), vtk.VTK_SHORT)
    mask = vtk_image(np.zeros(ct.shape, np.uint8), vtk.VTK_UNSIGNED_CHAR)
    f = slicer.vtkImageGrowCutSegment()
    f.SetIntensityVolume(source)
    f.SetMaskVolume(mask)
    f.SetDistancePenalty(locality)
    f.SetSeedLabelVolume(seed_image)
    t = time.perf_counter()
    f.Update()
    first_s = time.perf_counter() - t
    first = vtk_array(f.GetOutput()).copy()
    vtk_array(seed_image)[...] = more.astype(np.int16)
    seed_image.Modified()
    t = time.perf_counter()
    f.Update()
    update_s = time.perf_counter() - t
    return first_s, update_s, first, vtk_array(f.GetOutput()).copy()


def run_segkit(example, ct, seeds, more, locality, tmp: Path):
    """(first, update) seconds and labels from the example binary."""
    ct.astype("<i2").tofile(tmp / "ct.raw")
    seeds.astype("<u2").tofile(tmp / "s1.raw")
    more.astype("<u2").tofile(tmp / "s2.raw")
    nk, nj, ni = ct.shape
    proc = subprocess.run(
        [str(example), "--type", "i16", "--dims", str(ni), str(nj), str(nk), "--spacing", "1", "1", "1",
         "--locality", str(locality), "--time", str(tmp / "ct.raw"),
         str(tmp / "s1.raw"), str(tmp / "o1.raw"), str(tmp / "s2.raw"), str(tmp / "o2.raw")],
        capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"segkit failed: {proc.stderr}")
    times = [json.loads(line)["seconds"] for line in proc.stderr.splitlines() if line.startswith("{")]
    read = lambda p: np.fromfile(p, "<u2").reshape(ct.shape)
    return times[0], times[1], read(tmp / "o1.raw"), read(tmp / "o2.raw")


def compare(a: np.ndarray, b: np.ndarray) -> str:
    parts = [f"{int((a != b).sum())} differing"]
    for label in (1, 2):
        x, y = a == label, b == label
        dice = 2 * (x & y).sum() / max(1, x.sum() + y.sum())
        parts.append(f"Dice {label}: {dice:.6f}")
    return ", ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--every", type=int, default=20, help="seed every N-th axial slice")
    parser.add_argument("--locality", type=float, default=0.0, help="SeedLocalityFactor")
    parser.add_argument("--example", default=str(REPO / "target" / "release" / "examples" / "grow_from_seeds"))
    parser.add_argument("--data", default=os.environ.get("SEGKIT_TEST_DATA", str(REPO.parent / "shared" / "data")))
    args = parser.parse_args()
    if not Path(args.example).is_file():
        sys.exit(f"{args.example} not found: run `cargo build --release --example grow_from_seeds`")

    ct = volume_1mm(Path(args.data))
    seeds, more = seeds_for(ct, args.every)
    box = working_box(more)
    ct, seeds, more = ct[box], seeds[box], more[box]
    print(f"box {ct.shape[::-1]} (i, j, k) = {ct.size / 1e6:.1f} M voxels; seeds: lungs "
          f"{int((seeds == 1).sum())}, other {int((seeds == 2).sum())}; stroke "
          f"{int((more != seeds).sum())} voxels; SeedLocalityFactor {args.locality}", flush=True)

    rows = {"initial": ([], []), "update": ([], [])}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            s_first, s_update, s1, s2 = run_segkit(args.example, ct, seeds, more, args.locality, Path(tmp))
            v_first, v_update, v1, v2 = run_vtk(ct, seeds, more, args.locality)
            rows["initial"][0].append(s_first)
            rows["initial"][1].append(v_first)
            rows["update"][0].append(s_update)
            rows["update"][1].append(v_update)
            print(f"repeat {r + 1}: segkit {s_first:.2f} s + {s_update:.3f} s, "
                  f"VTK {v_first:.2f} s + {v_update:.3f} s", flush=True)
            if r == 0:
                print(f"  initial: {compare(s1, v1)}")
                print(f"  update:  {compare(s2, v2)}", flush=True)

    print()
    print("| computation | segkit (median s) | VTK vtkImageGrowCutSegment (median s) | VTK / segkit |")
    print("|---|---|---|---|")
    for name, (s, v) in rows.items():
        ms, mv = statistics.median(s), statistics.median(v)
        print(f"| {name} | {ms:.3f} | {mv:.3f} | {mv / ms:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
