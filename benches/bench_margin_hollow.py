"""Margin and Hollow: `segkit apply ... --time` beside Slicer's `vtkITKImageMargin`.

The volume is the issue's 1 mm CT (`ts/example_ct.nii.gz` resampled to 1 mm with linear
interpolation: 366 x 303 x 336, 37 M voxels), the segment its largest 6-connected island
of -1024..-400 HU (the air around the patient, 15 M voxels, touching the image border) or
the second largest (a lung, which lets segkit crop to the segment's box).

For each case, alternating in every repeat:
- segkit: `target/release/segkit apply margin|hollow CT --labels L --segment 1 -p ... --time`,
  whose last line is `{"effect_seconds": S}` (the effect's compute time without I/O);
- Slicer: what `SegmentEditorMarginEffect.processMargin` / `SegmentEditorHollowEffect.
  processHollowing` compute, in this process: `vtkImageThreshold` (force 0/1, inverted for a
  shrink), `slicer.vtkITKImageMargin` with the effect's margins, and for a shrink the
  inverse `vtkImageThreshold`.

Outputs are checked equal voxel for voxel. Printed: median seconds and
`reference / segkit` (above 1: segkit is faster). Target: at least 5x.

Usage: /work/main/.venv/bin/python benches/bench_margin_hollow.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

CASES = [
    ("air", "margin", {"MarginSizeMm": "3"}),
    ("air", "margin", {"MarginSizeMm": "-3"}),
    ("air", "hollow", {"ShellMode": "INSIDE_SURFACE", "ShellThicknessMm": "3"}),
    ("lung", "margin", {"MarginSizeMm": "5"}),
    ("lung", "hollow", {"ShellMode": "MEDIAL_SURFACE", "ShellThicknessMm": "4"}),
]


def build(data: Path, out: Path):
    import SimpleITK as sitk

    image = sitk.ReadImage(str(data / "ts" / "example_ct.nii.gz"))
    size = [int(round(n * s)) for n, s in zip(image.GetSize(), image.GetSpacing())]
    ct = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
                       (1.0, 1.0, 1.0), image.GetDirection(), -1024, sitk.sitkInt16)
    sitk.WriteImage(ct, str(out / "ct.nrrd"), useCompression=False)
    a = sitk.GetArrayFromImage(ct)
    air = ((a >= -1024) & (a <= -400)).astype(np.uint8)
    islands = sitk.GetArrayFromImage(
        sitk.RelabelComponent(sitk.ConnectedComponent(sitk.GetImageFromArray(air), False)))
    segments = {}
    for name, label in (("air", 1), ("lung", 2)):
        mask = (islands == label).astype(np.uint8)
        img = sitk.GetImageFromArray(mask)
        img.CopyInformation(ct)
        sitk.WriteImage(img, str(out / f"{name}.nrrd"), useCompression=False)
        segments[name] = mask
    return out / "ct.nrrd", segments


def vtk_image(mask: np.ndarray):
    import vtk
    from vtk.util import numpy_support

    image = vtk.vtkImageData()
    nk, nj, ni = mask.shape
    image.SetDimensions(ni, nj, nk)
    image.SetSpacing(1.0, 1.0, 1.0)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(
        mask.reshape(-1), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR))
    return image


def reference(image, effect: str, params: dict):
    """Slicer's effect computation; returns (seconds, 0/1 [k][j][i] array)."""
    import slicer
    import vtk
    from vtk.util import numpy_support

    t0 = time.perf_counter()
    shrink = effect == "margin" and float(params["MarginSizeMm"]) < 0
    thresh = vtk.vtkImageThreshold()
    thresh.SetInputData(image)
    thresh.ThresholdByLower(0)
    thresh.SetInValue(1 if shrink else 0)
    thresh.SetOutValue(0 if shrink else 1)
    thresh.SetOutputScalarType(image.GetScalarType())
    margin = slicer.vtkITKImageMargin()
    margin.SetInputConnection(thresh.GetOutputPort())
    margin.CalculateMarginInMMOn()
    if effect == "margin":
        margin.SetOuterMarginMM(abs(float(params["MarginSizeMm"])))
    else:
        t, v = float(params["ShellThicknessMm"]), 1.0
        inner, outer = {
            "INSIDE_SURFACE": (0.0 + 0.1 * v, t + 0.1 * v),
            "MEDIAL_SURFACE": (-0.5 * t + 0.5 * v, 0.5 * t),
            "OUTSIDE_SURFACE": (-t + v, 0.0),
        }[params["ShellMode"]]
        margin.SetOuterMarginMM(outer)
        margin.SetInnerMarginMM(inner)
    margin.Update()
    result = margin.GetOutput()
    if shrink:
        back = vtk.vtkImageThreshold()
        back.SetInputData(result)
        back.ThresholdByLower(0)
        back.SetInValue(1)
        back.SetOutValue(0)
        back.SetOutputScalarType(image.GetScalarType())
        back.Update()
        result = back.GetOutput()
    seconds = time.perf_counter() - t0
    dims = result.GetDimensions()
    arr = numpy_support.vtk_to_numpy(result.GetPointData().GetScalars())
    return seconds, (arr.reshape(dims[::-1]) != 0).astype(np.uint8)


def run_segkit(segkit: Path, ct: Path, labels: Path, effect: str, params: dict, out: Path):
    cmd = [str(segkit), "apply", effect, str(ct), "--labels", str(labels), "--segment", "1",
           "-o", str(out), "--time"]
    for k, v in params.items():
        cmd += ["-p", f"{k}={v}"]
    p = subprocess.run(cmd, check=True, capture_output=True, text=True)
    seconds = json.loads(p.stdout.strip().splitlines()[-1])["effect_seconds"]
    import SimpleITK as sitk

    result = (sitk.GetArrayFromImage(sitk.ReadImage(str(out))) == 1).astype(np.uint8)
    return seconds, result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--segkit", type=Path, default=Path(os.environ.get(
        "CARGO_TARGET_DIR", REPO / "target")) / "release" / "segkit")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get(
        "SEGKIT_TEST_DATA", REPO.parent / "shared" / "data")))
    args = ap.parse_args()
    if not args.segkit.is_file():
        subprocess.run(["cargo", "build", "--release", "--bin", "segkit"], cwd=REPO, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ct, segments = build(args.data, tmp)
        print(f"1 mm CT {segments['air'].shape[::-1]}; air {int(segments['air'].sum())} voxels, "
              f"lung {int(segments['lung'].sum())} voxels; {os.cpu_count()} CPUs")
        print("| segment | effect | parameters | segkit s | vtkITKImageMargin s | ratio |")
        print("|---|---|---|---|---|---|")
        for name, effect, params in CASES:
            image = vtk_image(segments[name])
            ours, theirs = [], []
            for _ in range(args.repeat):
                s, a = run_segkit(args.segkit, ct, tmp / f"{name}.nrrd", effect, params,
                                  tmp / "out.nrrd")
                r, b = reference(image, effect, params)
                differing = int(np.count_nonzero(a != b))
                if differing:
                    raise SystemExit(f"{name} {effect} {params}: {differing} voxels differ")
                ours.append(s)
                theirs.append(r)
            o, t = statistics.median(ours), statistics.median(theirs)
            text = " ".join(f"{k}={v}" for k, v in params.items())
            print(f"| {name} | {effect} | {text} | {o:.3f} | {t:.3f} | {t / o:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
