"""The Segkit effect's threshold preview: the cost of one range change.

The preview (`segkit_slicer.range_preview`) thresholds only what the slice views show:
each view's own reslice of the source. Here three views (Red, Yellow, Green, 800 x 700
pixels) show the issue's 1 mm CT (`ts/example_ct.nii.gz` resampled to 1 mm: 37 M voxels),
and the range moves 20 times; each change is timed until every view's coloured preview
image is up to date. Beside it, alternating, the same range change thresholded over the
whole volume with `vtkImageThreshold`, which is what a preview that did not follow the
views would cost. Printed: median milliseconds and the ratio.

Usage: /work/main/.venv/bin/python benches/range_preview_bench.py [--changes 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SEGKIT_TEST_DATA", REPO.parent / "shared" / "data"))
sys.path.insert(0, str(REPO / "slicer-extension" / "SegkitEngine"))
sys.path.insert(0, str(REPO / "slicer-extension" / "tests"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--changes", type=int, default=20)
    args = ap.parse_args()

    import SimpleITK as sitk
    import slicer
    import vtk

    import slicer_reference as ref
    from segkit_slicer.range_preview import RangePreview

    image = sitk.ReadImage(str(DATA / "ts" / "example_ct.nii.gz"))
    size = [int(round(n * s)) for n, s in zip(image.GetSize(), image.GetSpacing())]
    ct = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), (1.0, 1.0, 1.0),
                       image.GetDirection(), -1024, sitk.sitkInt16)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ct.nrrd"
        sitk.WriteImage(ct, str(path), useCompression=False)
        scene = slicer.vtkMRMLScene()
        volume = ref.load_volume(scene, path)

    views = []
    for name in ("Red", "Yellow", "Green"):
        logic = slicer.vtkMRMLSliceLogic()
        logic.SetMRMLScene(scene)
        node = logic.AddSliceNode(name)
        node.SetDimensions(800, 700, 1)
        logic.GetSliceCompositeNode().SetBackgroundVolumeID(volume.GetID())
        logic.FitSliceToAll()
        views.append((name, logic, vtk.vtkRenderer(), lambda: None))
    preview = RangePreview()
    whole = vtk.vtkImageThreshold()
    whole.SetInputData(volume.GetImageData())
    whole.SetInValue(1)
    whole.SetOutValue(0)
    whole.SetOutputScalarTypeToUnsignedChar()

    ours, theirs = [], []
    preview.show(views, volume, -1000, -400, (1, 1, 0))   # first reslice, not timed
    for n in range(args.changes):
        low, high = -1000 + 10 * n, -400 + 10 * n
        t = time.perf_counter()
        preview.show(views, volume, low, high, (1, 1, 0))
        for name, *_ in views:
            preview.pipeline(name).colors.Update()
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        whole.ThresholdBetween(low, high)
        whole.Update()
        theirs.append(time.perf_counter() - t)
    a, b = statistics.median(theirs), statistics.median(ours)
    dims = volume.GetImageData().GetDimensions()
    print(f"1 mm CT {dims}, 3 views of 800 x 700, {args.changes} range changes")
    print("| range change | median ms |")
    print("|---|---|")
    print(f"| preview in the views (segkit_slicer.range_preview) | {1e3 * b:.1f} |")
    print(f"| whole volume (vtkImageThreshold) | {1e3 * a:.1f} |")
    print(f"ratio: {a / b:.0f}x")


if __name__ == "__main__":
    main()
