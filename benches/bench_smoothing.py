"""Smoothing: release `segkit apply smoothing ... --time` against Slicer's VTK filters.

Usage: /work/main/.venv/bin/python benches/bench_smoothing.py [--repeat N] [--methods GAUSSIAN,...]
(build first: cargo build --release --bin segkit). Uses the 1 mm CT (ts/example_ct.nii.gz
resampled to 1 mm, 366 x 303 x 336) and a large segment (body: HU > -300). For each
method the VTK filter runs as Slicer's effect calls it (3 mm kernel = 3 x 3 x 3, 3 mm
standard deviation), alternating with segkit; the outputs are checked equal voxel for
voxel and the median times compared (segkit's effect_seconds excludes file I/O).

JOINT_TAUBIN (not in the default list: Slicer's pipeline takes minutes on this volume) smooths
three segments together (air and lung: -1000 < HU < -400, soft tissue: -300 <= HU < 200,
bone: HU >= 200) with factor 0.5, against the VTK pipeline of Slicer's
smoothMultipleSegments (as in slicer-extension/tests/test_parity_joint_smoothing.py); the
results are compared by Dice per segment (the smallest is printed), since segkit's
marching-cubes triangulation differs from VTK's case table (see that test)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import nrrd
import numpy as np
import SimpleITK as sitk
import vtk
from vtk.util import numpy_support as ns

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SEGKIT_TEST_DATA", REPO.parent / "shared" / "data"))
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
SEGKIT = TARGET / "release" / "segkit"


def vtk_image(a):
    im = vtk.vtkImageData()
    im.SetDimensions(a.shape[2], a.shape[1], a.shape[0])
    im.GetPointData().SetScalars(ns.numpy_to_vtk(a.reshape(-1), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR))
    return im


def slicer_smooth(seg, method):
    """The filters of SegmentEditorSmoothingEffect.smoothSelectedSegment (1 mm voxels)."""
    im = vtk_image(seg)
    if method == "GAUSSIAN":
        th = vtk.vtkImageThreshold(); th.SetInputData(im); th.ThresholdByLower(0)
        th.SetInValue(0); th.SetOutValue(255); th.SetOutputScalarType(vtk.VTK_UNSIGNED_CHAR)
        g = vtk.vtkImageGaussianSmooth(); g.SetInputConnection(th.GetOutputPort())
        g.SetStandardDeviation(3.0, 3.0, 3.0); g.SetRadiusFactor(4.0)
        t2 = vtk.vtkImageThreshold(); t2.SetInputConnection(g.GetOutputPort()); t2.ThresholdByUpper(127)
        t2.SetInValue(1); t2.SetOutValue(0); t2.SetOutputScalarType(vtk.VTK_UNSIGNED_CHAR)
        f = t2
    elif method == "MEDIAN":
        f = vtk.vtkImageMedian3D(); f.SetInputData(im); f.SetKernelSize(3, 3, 3)
    else:
        f = vtk.vtkImageOpenClose3D(); f.SetInputData(im); f.SetKernelSize(3, 3, 3)
        opening = method == "MORPHOLOGICAL_OPENING"
        f.SetOpenValue(1 if opening else 0); f.SetCloseValue(0 if opening else 1)
    t = time.perf_counter(); f.Update(); dt = time.perf_counter() - t
    out = ns.vtk_to_numpy(f.GetOutput().GetPointData().GetScalars()).reshape(seg.shape)
    return out, dt


def slicer_joint_smooth(labels, factor):
    """Slicer's joint smoothing pipeline, from the parity test (one definition)."""
    import sys
    sys.path.insert(0, str(REPO / "slicer-extension" / "tests"))
    from test_parity_joint_smoothing import slicer_joint_smooth as pipeline
    return pipeline(labels, factor)


def bench_joint(ct, tmp, repeat):
    hu = sitk.GetArrayFromImage(ct)
    labels = np.zeros(hu.shape, np.uint16)
    labels[(hu > -1000) & (hu < -400)] = 1
    labels[(hu >= -300) & (hu < 200)] = 2
    labels[hu >= 200] = 3
    lab = sitk.GetImageFromArray(labels); lab.CopyInformation(ct)
    sitk.WriteImage(lab, str(tmp / "three-label.nrrd"), useCompression=False)
    ours, theirs, worst = [], [], 1.0
    for _ in range(repeat):
        ref, dt = slicer_joint_smooth(labels, 0.5)
        theirs.append(dt)
        out = tmp / "out.nrrd"
        r = subprocess.run([str(SEGKIT), "apply", "smoothing", str(tmp / "ct.nrrd"), "--labels",
                            str(tmp / "three-label.nrrd"), "--segment", "1", "-o", str(out),
                            "-p", "SmoothingMethod=JOINT_TAUBIN",
                            "-p", "JointTaubinSmoothingFactor=0.5", "--time"],
                           check=True, capture_output=True, text=True)
        ours.append(json.loads(r.stdout.strip().splitlines()[-1])["effect_seconds"])
        got, _ = nrrd.read(str(out), index_order="C")
        for value in (1, 2, 3):
            a, b = ref == value, got == value
            worst = min(worst, 2.0 * int(np.count_nonzero(a & b)) / max(1, int(a.sum() + b.sum())))
    a, b = statistics.median(theirs), statistics.median(ours)
    print(f"| JOINT_TAUBIN (3 segments) | {a:.3f} | {b:.3f} | {a / b:.1f}x | smallest Dice {worst:.4f} |",
          flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--methods", default="MEDIAN,MORPHOLOGICAL_OPENING,MORPHOLOGICAL_CLOSING,GAUSSIAN",
                    help="comma-separated SmoothingMethod values to run")
    args = ap.parse_args()
    if not SEGKIT.is_file():
        raise SystemExit(f"{SEGKIT} not found: cargo build --release --bin segkit")
    tmp = Path(tempfile.mkdtemp(prefix="bench_smoothing"))
    image = sitk.ReadImage(str(DATA / "ts" / "example_ct.nii.gz"))
    size = [int(round(n * s)) for n, s in zip(image.GetSize(), image.GetSpacing())]
    ct = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), (1.0, 1.0, 1.0),
                       image.GetDirection(), -1024, sitk.sitkInt16)
    sitk.WriteImage(ct, str(tmp / "ct.nrrd"), useCompression=False)
    seg = (sitk.GetArrayFromImage(ct) > -300).astype(np.uint8)
    lab = sitk.GetImageFromArray(seg); lab.CopyInformation(ct)
    sitk.WriteImage(lab, str(tmp / "body-label.nrrd"), useCompression=False)
    print(f"1 mm CT {seg.shape[::-1]}, body segment {int(seg.sum())} voxels")
    print("| method | VTK s | segkit s | ratio | differing voxels |")
    print("|---|---|---|---|---|")
    for method in args.methods.split(","):
        if method == "JOINT_TAUBIN":
            bench_joint(ct, tmp, args.repeat)
            continue
        ours, theirs, diff = [], [], None
        for _ in range(args.repeat):
            ref, dt = slicer_smooth(seg, method)
            theirs.append(dt)
            out = tmp / "out.nrrd"
            r = subprocess.run([str(SEGKIT), "apply", "smoothing", str(tmp / "ct.nrrd"), "--labels",
                                str(tmp / "body-label.nrrd"), "--segment", "1", "-o", str(out),
                                "-p", f"SmoothingMethod={method}", "-p", "KernelSizeMm=3",
                                "-p", "GaussianStandardDeviationMm=3", "--time"],
                               check=True, capture_output=True, text=True)
            ours.append(json.loads(r.stdout.strip().splitlines()[-1])["effect_seconds"])
            got, _ = nrrd.read(str(out), index_order="C")
            diff = int(np.count_nonzero((got == 1) != (ref == 1)))
        a, b = statistics.median(theirs), statistics.median(ours)
        print(f"| {method} | {a:.3f} | {b:.3f} | {a / b:.1f}x | {diff} |", flush=True)


if __name__ == "__main__":
    main()
