"""Fill between slices benchmark: `segkit apply fill-between-slices --time` beside Slicer's
`vtkITKMorphologicalContourInterpolator` (ITK's MorphologicalContourInterpolator) on the
same merged label map.

The volume is `ts/example_ct.nii.gz` resampled to 1 mm (366 x 303 x 336 int16, 37 M voxels,
as the parity tests' `ct_1mm_path` fixture makes it). The drawing is large: label 1 the body
(largest component above -300 HU, holes filled; about 300 x 230 voxels a slice), label 2
the lungs and airways (dark components below -600 HU that do not touch the border) drawn
over it, both kept only on every `--every`-th axial slice (default 5), so each kept slice
has empty slices on both sides and counts as drawn. The effect fills the slices between
them: the body slices hold several components (body, arms, table parts), so component
matching, alignment and 1-to-N splitting are all exercised.

Measured, alternating segkit and ITK in every repeat:
- segkit: the release binary's own compute time (`{"effect_seconds": S}`: the whole
  effect as the engine runs it, i.e. working box, merged label map, interpolation and the
  Apply masks; no file I/O);
- ITK: `vtkITKMorphologicalContourInterpolator.Update()` on the merged label map (short)
  cropped to the working box Slicer's auto-complete framework gives this effect (seeds'
  extent grown by max(3, 10 %) per side), which is what Slicer runs; building the VTK
  image is not timed.

The outputs are compared voxel for voxel on the whole volume (a fast wrong answer does
not count; differing voxels are printed and the run fails if any). The figure to report is
the ratio ITK time / segkit time (above 1: segkit is faster); on shared 2-core machines
absolute times are noisy.

Usage: /work/main/.venv/bin/python benches/bench_fill_between_slices.py [--repeat 3]
       [--every 5] [--segkit target/release/segkit]
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
#: Slicer's working-box ratio for Fill between slices (AbstractScriptedSegmentEditorAutoCompleteEffect).
BOX_RATIO = 0.1


def volume_1mm(data: Path, out: Path):
    """The 1 mm volume (as conftest's `ct_1mm_path`), written to `out`; answers
    (array, SimpleITK image)."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(data / "ts" / "example_ct.nii.gz"))
    size = [int(round(n * s)) for n, s in zip(image.GetSize(), image.GetSpacing())]
    resampled = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
                              (1.0, 1.0, 1.0), image.GetDirection(), -1024, sitk.sitkInt16)
    sitk.WriteImage(resampled, str(out), useCompression=False)
    return sitk.GetArrayFromImage(resampled), resampled


def drawing(ct: np.ndarray, every: int) -> np.ndarray:
    """Label 1: the body (the largest connected component above -300 HU, holes filled
    slice by slice, so a large drawing of about 300 x 230 voxels a slice); label 2: the
    dark (< -600 HU) connected components that do not touch the volume's border (lungs and
    airways), drawn over it. Both kept on every `every`-th axial slice ([k][j][i], uint16)."""
    import SimpleITK as sitk

    body = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.GetImageFromArray((ct > -300).astype(np.uint8)))) == 1
    body = sitk.GetArrayFromImage(sitk.BinaryFillhole(body, fullyConnected=False)).astype(bool)
    comps = sitk.ConnectedComponent(sitk.GetImageFromArray((ct < -600).astype(np.uint8)))
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(comps)
    size = comps.GetSize()
    lab = sitk.GetArrayFromImage(comps)
    inside = [label for label in stats.GetLabels() if all(
        b > 0 for b in stats.GetBoundingBox(label)[:3]) and all(
        b + s < n for b, s, n in zip(stats.GetBoundingBox(label)[:3], stats.GetBoundingBox(label)[3:], size))]
    labels = np.zeros(ct.shape, np.uint16)
    labels[body] = 1
    labels[np.isin(lab, inside)] = 2
    drawn = np.zeros_like(labels)
    ks = np.nonzero(labels.any(axis=(1, 2)))[0]
    for k in range(ks.min(), ks.max() + 1, every):
        drawn[k] = labels[k]
    return drawn


def working_box(labels: np.ndarray, ratio: float = BOX_RATIO):
    """Slicer's auto-complete working box: the seeds' extent grown by
    int(max(3, ratio * (max - min))) voxels per side, clipped to the volume."""
    nz = np.nonzero(labels)
    box = []
    for d in range(3):
        lo, hi = int(nz[d].min()), int(nz[d].max())
        m = int(max(3, ratio * (hi - lo)))
        box.append(slice(max(0, lo - m), min(labels.shape[d], hi + m + 1)))
    return tuple(box)


def itk_filter(labels: np.ndarray):
    """The interpolator on `labels` (short, as Slicer's merged label map), ready to Update."""
    import slicer
    import vtk
    from vtk.util import numpy_support

    image = vtk.vtkImageData()
    image.SetDimensions(labels.shape[2], labels.shape[1], labels.shape[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(
        np.ascontiguousarray(labels, dtype=np.int16).reshape(-1), deep=True, array_type=vtk.VTK_SHORT))
    f = slicer.vtkITKMorphologicalContourInterpolator()
    f.SetInputData(image)
    return f, image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--segkit", type=Path, default=Path(os.environ.get(
        "CARGO_TARGET_DIR", REPO / "target")) / "release" / "segkit")
    args = parser.parse_args()
    data = Path(os.environ.get("SEGKIT_TEST_DATA", REPO.parent / "shared" / "data"))
    if not args.segkit.is_file():
        subprocess.run(["cargo", "build", "--release", "--bin", "segkit"], cwd=REPO, check=True)

    import SimpleITK as sitk
    from vtk.util import numpy_support

    with tempfile.TemporaryDirectory() as tmp:
        vol_path = Path(tmp) / "ct_1mm.nrrd"
        lab_path = Path(tmp) / "drawn.nrrd"
        out_path = Path(tmp) / "filled.nrrd"
        ct, image = volume_1mm(data, vol_path)
        drawn = drawing(ct, args.every)
        lab_image = sitk.GetImageFromArray(drawn)
        lab_image.CopyInformation(image)
        sitk.WriteImage(lab_image, str(lab_path), useCompression=False)
        box = working_box(drawn)
        n_slices = int(np.count_nonzero(drawn.any(axis=(1, 2))))
        print(f"volume {ct.shape[::-1]} (i, j, k); labels {sorted(set(np.unique(drawn)) - {0})} drawn on "
              f"{n_slices} axial slices (every {args.every}th), {int(np.count_nonzero(drawn))} voxels; "
              f"working box {[(s.start, s.stop) for s in box][::-1]} (i, j, k)")
        command = [str(args.segkit), "apply", "fill-between-slices", str(vol_path), "--labels", str(lab_path),
                   "--segment", "1", "-o", str(out_path), "--time"]
        segkit_times, itk_times = [], []
        for n in range(args.repeat):
            run = subprocess.run(command, capture_output=True, text=True, check=True)
            segkit_times.append(json.loads(run.stdout.strip().splitlines()[-1])["effect_seconds"])
            f, _image = itk_filter(drawn[box])
            started = time.perf_counter()
            f.Update()
            itk_times.append(time.perf_counter() - started)
            if n == 0:
                ours = sitk.GetArrayFromImage(sitk.ReadImage(str(out_path))).astype(np.int64)
                theirs = drawn.astype(np.int64)
                theirs[box] = numpy_support.vtk_to_numpy(
                    f.GetOutput().GetPointData().GetScalars()).reshape(drawn[box].shape)
                differing = int(np.count_nonzero(ours != theirs))
                for label in sorted(set(np.unique(theirs)) - {0}):
                    a, b = ours == label, theirs == label
                    dice = 2 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))
                    print(f"label {label}: segkit {int(a.sum())}, ITK {int(b.sum())} voxels, Dice {dice:.6f}")
                print(f"differing voxels: {differing}")
                if differing:
                    sys.exit("the outputs differ: the timing does not count")
        s, v = statistics.median(segkit_times), statistics.median(itk_times)
        print(f"segkit fill-between-slices (release, effect_seconds):   median {s:.3f} s  "
              f"{[round(t, 3) for t in segkit_times]}")
        print(f"vtkITKMorphologicalContourInterpolator.Update() on box: median {v:.3f} s  "
              f"{[round(t, 3) for t in itk_times]}")
        print(f"ratio ITK / segkit: {v / s:.1f}x")


if __name__ == "__main__":
    main()
