"""Watershed benchmark: `segkit apply watershed --time` beside SimpleITK's
`GradientMagnitudeRecursiveGaussian` + `MorphologicalWatershedFromMarkersImageFilter` as
SlicerSegmentEditorExtraEffects' Watershed effect calls them.

The volume is `ts/example_ct.nii.gz` resampled to 1 mm (366 x 303 x 336 int16, 37 M voxels,
as the parity tests' `ct_1mm_path` fixture makes it). Two seed segments:
- lungs: the dark (< -600) connected components among the three largest that do not touch
  the volume's border, eroded twice (6-connected);
- body: soft tissue (-100 .. 150) eroded four times, more than 4 voxels from the lungs.
The working box (the auto-complete framework's: seed extent + int(max(3, 0.1 * span)) per
axis) is the region both sides compute on; ObjectScaleMm 2 (Slicer's default).

Measured, alternating segkit and SimpleITK in every repeat:
- segkit: the release binary's own compute time (`{"effect_seconds": S}`: seeds merged,
  box cropped, gradient, watershed, the per-segment masks; no file I/O);
- SimpleITK: `GradientMagnitudeRecursiveGaussian(box, 2.0)` then the watershed
  (`MarkWatershedLine(False)`, `FullyConnected(False)`) and `Cast(sitkInt16)` on the box
  image and the merged int16 seeds, built beforehand and not timed; both steps are also
  shown separately. Both sides use every core (SimpleITK's default, rayon's default).

The outputs are compared label by label (Dice and differing voxels; a fast wrong answer
does not count). The figure to report is the ratio SimpleITK time / segkit time (above 1:
segkit is faster); on shared 2-core machines absolute times are noisy.

Usage: /work/main/.venv/bin/python benches/bench_watershed.py [--repeat 3] [--sigma 2]
       [--segkit target/release/segkit]
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
sys.path.insert(0, str(REPO / "benches"))

from bench_flood_level import volume_1mm  # noqa: E402


def erode(mask: np.ndarray, steps: int, border: bool = False) -> np.ndarray:
    m = mask.astype(bool)
    for _ in range(steps):
        p = np.pad(m, 1, constant_values=border)
        m = (p[1:-1, 1:-1, 1:-1] & p[:-2, 1:-1, 1:-1] & p[2:, 1:-1, 1:-1] & p[1:-1, :-2, 1:-1]
             & p[1:-1, 2:, 1:-1] & p[1:-1, 1:-1, :-2] & p[1:-1, 1:-1, 2:])
    return m


def seeds(ct: np.ndarray) -> np.ndarray:
    """Merged seeds, int16: 1 = lungs, 2 = body."""
    import SimpleITK as sitk

    labels = sitk.GetArrayFromImage(sitk.RelabelComponent(sitk.ConnectedComponent(
        sitk.GetImageFromArray((ct < -600).astype(np.uint8)))))
    sides = [labels[0], labels[-1], labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]]
    touching = set(np.unique(np.concatenate([s.ravel() for s in sides])))
    lungs = np.isin(labels, [n for n in range(1, 4) if n not in touching])
    if not lungs.any():
        sys.exit("no dark component inside the volume")
    near = ~erode(~lungs, 4, border=True)
    body = erode((ct > -100) & (ct < 150), 4) & ~near
    merged = np.zeros(ct.shape, np.int16)
    merged[erode(lungs, 2)] = 1
    merged[body] = 2
    return merged


def working_box(merged: np.ndarray, ratio=0.1):
    idx = np.argwhere(merged != 0)
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    box = []
    for a in range(3):
        margin = int(max(3, ratio * (hi[a] - lo[a])))
        box.append(slice(max(0, lo[a] - margin), min(merged.shape[a], hi[a] + margin + 1)))
    return tuple(box)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sigma", type=float, default=2.0)
    parser.add_argument("--segkit", type=Path, default=Path(os.environ.get(
        "CARGO_TARGET_DIR", REPO / "target")) / "release" / "segkit")
    args = parser.parse_args()
    data = Path(os.environ.get("SEGKIT_TEST_DATA", REPO.parent / "shared" / "data"))
    if not args.segkit.is_file():
        subprocess.run(["cargo", "build", "--release", "--bin", "segkit"], cwd=REPO, check=True)
    import SimpleITK as sitk

    with tempfile.TemporaryDirectory() as tmp:
        vol_path = Path(tmp) / "ct_1mm.nrrd"
        seeds_path = Path(tmp) / "seeds.nrrd"
        out_path = Path(tmp) / "watershed.nrrd"
        ct = volume_1mm(data, vol_path)
        merged = seeds(ct)
        reference = sitk.ReadImage(str(vol_path))
        seed_image = sitk.GetImageFromArray(merged.astype(np.uint8))
        seed_image.CopyInformation(reference)
        sitk.WriteImage(seed_image, str(seeds_path), useCompression=False)
        box = working_box(merged)
        box_shape = tuple(s.stop - s.start for s in box)
        print(f"volume {ct.shape[::-1]} (i, j, k); seeds: lungs {int((merged == 1).sum())}, "
              f"body {int((merged == 2).sum())} voxels; working box {box_shape[::-1]} (i, j, k), "
              f"{int(np.prod(box_shape)) / 1e6:.1f} M voxels; ObjectScaleMm {args.sigma}")
        source_box = sitk.GetImageFromArray(np.ascontiguousarray(ct[box]))
        source_box.SetSpacing(reference.GetSpacing())
        seeds_box = sitk.GetImageFromArray(np.ascontiguousarray(merged[box]))
        seeds_box.CopyInformation(source_box)
        command = [str(args.segkit), "apply", "watershed", str(vol_path), "--labels", str(seeds_path),
                   "-o", str(out_path), "-p", f"ObjectScaleMm={args.sigma}", "--time"]
        segkit_times, itk_times, itk_gradient, itk_flood = [], [], [], []
        for n in range(args.repeat):
            run = subprocess.run(command, capture_output=True, text=True, check=True)
            segkit_times.append(json.loads(run.stdout.strip().splitlines()[-1])["effect_seconds"])
            started = time.perf_counter()
            feature = sitk.GradientMagnitudeRecursiveGaussian(source_box, args.sigma)
            middle = time.perf_counter()
            f = sitk.MorphologicalWatershedFromMarkersImageFilter()
            f.SetMarkWatershedLine(False)
            f.SetFullyConnected(False)
            labels = sitk.Cast(f.Execute(feature, seeds_box), sitk.sitkInt16)
            ended = time.perf_counter()
            itk_times.append(ended - started)
            itk_gradient.append(middle - started)
            itk_flood.append(ended - middle)
            del feature
            if n == 0:
                ours = sitk.GetArrayFromImage(sitk.ReadImage(str(out_path)))
                theirs = np.zeros(ct.shape, np.int16)
                theirs[box] = sitk.GetArrayFromImage(labels)
                for label, name in ((1, "lungs"), (2, "body")):
                    a, b = ours == label, theirs == label
                    dice = 2 * int((a & b).sum()) / max(1, int(a.sum()) + int(b.sum()))
                    print(f"{name}: segkit {int(a.sum())}, SimpleITK {int(b.sum())} voxels, "
                          f"differing {int((a != b).sum())}, Dice {dice:.6f}")
                    if dice < 0.99:
                        sys.exit("the outputs differ: the timing does not count")
        s, i = statistics.median(segkit_times), statistics.median(itk_times)
        print(f"segkit watershed (release, effect_seconds): median {s:.3f} s  "
              f"{[round(t, 3) for t in segkit_times]}")
        print(f"SimpleITK gradient + watershed:             median {i:.3f} s  "
              f"{[round(t, 3) for t in itk_times]}")
        print(f"  of which GradientMagnitudeRecursiveGaussian {statistics.median(itk_gradient):.3f} s, "
              f"MorphologicalWatershedFromMarkers {statistics.median(itk_flood):.3f} s")
        print(f"ratio SimpleITK / segkit: {i / s:.1f}x")


if __name__ == "__main__":
    main()
