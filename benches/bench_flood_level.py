"""Flood filling benchmark: `segkit apply flood-filling --time` beside VTK's
`vtkImageThresholdConnectivity` as SlicerSegmentEditorExtraEffects' Flood filling calls it.

The volume is `ts/example_ct.nii.gz` resampled to 1 mm (366 x 303 x 336 int16, 37 M voxels,
as the parity tests' `ct_1mm_path` fixture makes it). The click is a lung voxel (the voxel
below -800 nearest to the centroid of the largest dark component that does not touch the
border); tolerance 150, neighbourhood radius 1 (Slicer's default), so the fill covers a
large region.

Measured, alternating segkit and VTK in every repeat:
- segkit: the release binary's own compute time (`{"effect_seconds": S}`, no file I/O);
- VTK: `vtkImageThresholdConnectivity.Update()` on the same array, seeded at the same voxel,
  range [v - 150, v + 150], radius 1, fraction 0.5, with the stencil Slicer passes (the
  editable voxels; all of them with default masking), built beforehand and not timed.

The outputs are checked voxel for voxel (a fast wrong answer does not count). The figure
to report is the ratio VTK time / segkit time (above 1: segkit is faster); on shared
2-core machines absolute times are noisy.

Usage: /work/main/.venv/bin/python benches/bench_flood_level.py [--repeat 5] [--tolerance 150]
       [--neighborhood 1] [--segkit target/release/segkit]
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


def volume_1mm(data: Path, out: Path):
    """The 1 mm volume (as conftest's `ct_1mm_path`), written to `out`; answers the array."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(data / "ts" / "example_ct.nii.gz"))
    size = [int(round(n * s)) for n, s in zip(image.GetSize(), image.GetSpacing())]
    resampled = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
                              (1.0, 1.0, 1.0), image.GetDirection(), -1024, sitk.sitkInt16)
    sitk.WriteImage(resampled, str(out), useCompression=False)
    return sitk.GetArrayFromImage(resampled)


def lung_click(ct: np.ndarray):
    """(i, j, k) of the lung voxel below -800 nearest to the centroid of the largest dark
    (< -600) component that does not touch the border."""
    import SimpleITK as sitk

    labels = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.GetImageFromArray((ct < -600).astype(np.uint8))))
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(labels)
    size = labels.GetSize()
    lab = sitk.GetArrayViewFromImage(labels)
    for label in sorted(stats.GetLabels()):
        x, y, z, sx, sy, sz = stats.GetBoundingBox(label)
        if x > 0 and y > 0 and z > 0 and x + sx < size[0] and y + sy < size[1] and z + sz < size[2]:
            box = (slice(z, z + sz), slice(y, y + sy), slice(x, x + sx))
            idx = np.argwhere((lab[box] == label) & (ct[box] < -800))
            centre = idx.mean(axis=0)
            k, j, i = idx[np.argmin(((idx - centre) ** 2).sum(axis=1))]
            return int(i) + x, int(j) + y, int(k) + z
    sys.exit("no dark component inside the volume")


def vtk_image(ct: np.ndarray):
    import vtk
    from vtk.util import numpy_support

    image = vtk.vtkImageData()
    image.SetDimensions(ct.shape[2], ct.shape[1], ct.shape[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(ct.reshape(-1), deep=True,
                                                               array_type=vtk.VTK_SHORT))
    return image


def vtk_flood(image, point, tolerance, radius):
    """The filter configured as the effect configures it; answers (filter, stencil) ready
    to Update (the stencil = all voxels editable, as with default masking)."""
    import vtk

    editable = vtk.vtkImageData()
    editable.SetDimensions(image.GetDimensions())
    editable.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    editable.GetPointData().GetScalars().Fill(0)  # GenerateEditMask: 0 = editable
    to_stencil = vtk.vtkImageToImageStencil()
    to_stencil.SetInputData(editable)
    to_stencil.ThresholdByLower(0)
    to_stencil.Update()
    value = image.GetScalarComponentAsFloat(*point, 0)
    f = vtk.vtkImageThresholdConnectivity()
    f.SetInputData(image)
    seeds = vtk.vtkPoints()
    seeds.InsertNextPoint(*point)  # origin 0, spacing 1
    f.SetSeedPoints(seeds)
    f.SetStencilData(to_stencil.GetOutput())
    f.SetNeighborhoodRadius(radius, radius, radius)
    f.SetNeighborhoodFraction(0.5)
    f.ThresholdBetween(value - tolerance, value + tolerance)
    f.SetInValue(1)
    f.SetOutValue(0)
    return f, to_stencil


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tolerance", type=float, default=150.0)
    parser.add_argument("--neighborhood", type=float, default=1.0)
    parser.add_argument("--segkit", type=Path, default=Path(os.environ.get(
        "CARGO_TARGET_DIR", REPO / "target")) / "release" / "segkit")
    args = parser.parse_args()
    data = Path(os.environ.get("SEGKIT_TEST_DATA", REPO.parent / "shared" / "data"))
    if not args.segkit.is_file():
        subprocess.run(["cargo", "build", "--release", "--bin", "segkit"], cwd=REPO, check=True)

    from vtk.util import numpy_support

    with tempfile.TemporaryDirectory() as tmp:
        vol_path = Path(tmp) / "ct_1mm.nrrd"
        out_path = Path(tmp) / "filled.nrrd"
        ct = volume_1mm(data, vol_path)
        point = lung_click(ct)
        print(f"volume {ct.shape[::-1]} (i, j, k), click {point} = {ct[point[2], point[1], point[0]]}, "
              f"tolerance {args.tolerance}, radius {args.neighborhood}")
        image = vtk_image(ct)
        command = [str(args.segkit), "apply", "flood-filling", str(vol_path), "-o", str(out_path),
                   "--point", ",".join(map(str, point)), "-p", f"IntensityTolerance={args.tolerance}",
                   "-p", f"NeighborhoodSizeMm={args.neighborhood}", "--time"]
        segkit_times, vtk_times = [], []
        for n in range(args.repeat):
            run = subprocess.run(command, capture_output=True, text=True, check=True)
            segkit_times.append(json.loads(run.stdout.strip().splitlines()[-1])["effect_seconds"])
            f, _stencil = vtk_flood(image, point, args.tolerance, args.neighborhood)
            started = time.perf_counter()
            f.Update()
            vtk_times.append(time.perf_counter() - started)
            if n == 0:
                import SimpleITK as sitk

                ours = sitk.GetArrayFromImage(sitk.ReadImage(str(out_path))) != 0
                theirs = numpy_support.vtk_to_numpy(f.GetOutput().GetPointData().GetScalars()).reshape(ct.shape) != 0
                differing = int(np.count_nonzero(ours != theirs))
                print(f"filled voxels: segkit {int(ours.sum())}, VTK {int(theirs.sum())}, differing {differing}")
                if differing:
                    sys.exit("the outputs differ: the timing does not count")
        s, v = statistics.median(segkit_times), statistics.median(vtk_times)
        print(f"segkit flood-filling (release, effect_seconds): median {s:.4f} s  {[round(t, 4) for t in segkit_times]}")
        print(f"vtkImageThresholdConnectivity.Update():        median {v:.4f} s  {[round(t, 4) for t in vtk_times]}")
        print(f"ratio VTK / segkit: {v / s:.1f}x")


if __name__ == "__main__":
    main()
