"""Local threshold benchmark: `segkit apply local-threshold --time` beside the pipeline
SlicerSegmentEditorExtraEffects' Local threshold runs (VTK, vtkITK and SimpleITK), for its
three algorithms: Masking, GrowCut (Slicer's default) and WaterShed.

The volume is `ts/example_ct.nii.gz` resampled to 1 mm (366 x 303 x 336 int16, 37 M voxels,
as the parity tests' `ct_1mm_path` fixture makes it). Threshold -1024..-400 HU, minimum
diameter 5 mm (erosion kernel 5), feature size 3 mm. The CT is an abdomen-pelvis scan with
no lungs, so the click is in the largest gas pocket inside the body: the voxel below -800 HU
nearest to the centroid of the second-largest 6-connected island of -1024..-400 (a gas-
filled bowel loop of 116 k voxels, the island bench_margin_hollow calls "lung"; the largest
is the air around the patient).

Measured, alternating segkit and Slicer's pipeline in every repeat:
- segkit: the release binary's own compute time (`{"effect_seconds": S}`, no file I/O);
- Slicer: the effect's apply() on a plain vtkImageData of the same array (spacing 1), as
  `slicer_local_threshold` in slicer-extension/tests/test_parity_local_threshold.py:
  vtkImageThreshold -> vtkImageDilateErode3D erosion -> vtkImageCast (unsigned int) ->
  vtkITKIslandMath (6-connected, 125 voxels) -> threshold > 0, the snap of the click (numpy,
  a 5x5x5 box), then
  - Masking: vtkImageThresholdConnectivity, dilation of the other islands, vtkImageMask,
    vtkImageThresholdConnectivity again;
  - GrowCut: seeds (clicked island 2, other islands 1, outside the threshold 3) and
    vtkImageGrowCutSegment over the CT with the edit mask GenerateEditMask gives under
    default masking and the range narrowed to the threshold (1 outside [lo, hi]); that
    mask is built beforehand and not timed (as bench_flood_level's stencil);
  - WaterShed: the same seeds, SimpleITK GradientMagnitudeRecursiveGaussian(FeatureSizeMm)
    and MorphologicalWatershedFromMarkers (no watershed line, 6-connected);
  timed from the threshold to the numpy array of the kept voxels (label 2).

Printed: the volume shape, CPU count, click, then a markdown table (algorithm, voxels kept,
median seconds of each side, ratio). The outputs are checked voxel for voxel in every repeat;
a row whose outputs differ shows the differing voxel count and Dice and its ratio does not
count. The figure to report is the ratio Slicer time / segkit time (above 1: segkit is
faster); on shared 2-core machines absolute times are noisy.

Usage: /work/main/.venv/bin/python benches/bench_local_threshold.py [--repeat 3]
       [--algorithms Masking,GrowCut,WaterShed] [--segkit target/release/segkit]
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
LO, HI, DIAMETER_MM, FEATURE_MM = -1024, -400, 5.0, 3.0


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
    """(i, j, k) of the voxel below -800 nearest to the centroid of the second-largest
    6-connected island of [LO, HI]."""
    import SimpleITK as sitk

    window = sitk.GetImageFromArray(((ct >= LO) & (ct <= HI)).astype(np.uint8))
    islands = sitk.GetArrayFromImage(sitk.RelabelComponent(sitk.ConnectedComponent(window, False)))
    idx = np.argwhere((islands == 2) & (ct < -800))
    if not idx.size:
        sys.exit("no second island below -800 HU")
    k, j, i = idx[np.argmin(((idx - idx.mean(axis=0)) ** 2).sum(axis=1))]
    return int(i), int(j), int(k)


def vtk_image(array: np.ndarray, vtk_type):
    import vtk
    from vtk.util import numpy_support

    image = vtk.vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    image.SetSpacing(1.0, 1.0, 1.0)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(array.reshape(-1), deep=True,
                                                               array_type=vtk_type))
    return image


def as_array(image) -> np.ndarray:
    from vtk.util import numpy_support

    dims = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1])


def snap(big: np.ndarray, ijk, reach: int):
    """The effect's snap: the nonzero voxel nearest to `ijk` within ±reach, the first in
    k, j, i order on ties; None if none."""
    i, j, k = ijk
    k0, j0, i0 = max(k - reach, 0), max(j - reach, 0), max(i - reach, 0)
    box = big[k0:k + reach + 1, j0:j + reach + 1, i0:i + reach + 1]
    found = np.argwhere(box != 0)
    if not found.size:
        return None
    dk, dj, di = found[np.argmin(((found - (k - k0, j - j0, i - i0)) ** 2).sum(axis=1))]
    return int(di) + i0, int(dj) + j0, int(dk) + k0


def slicer_pipeline(ct_image, ct: np.ndarray, ijk, algorithm: str, edit_mask):
    """The effect's apply(); answers (seconds, bool [k][j][i] array of the kept voxels)."""
    import slicer
    import vtk

    started = time.perf_counter()
    kernel = int(round((DIAMETER_MM / 1.0 + 1) / 2) * 2 - 1)  # Slicer's, spacing 1
    thresh = vtk.vtkImageThreshold()
    thresh.SetInputData(ct_image)
    thresh.SetInValue(1)
    thresh.SetOutValue(0)
    thresh.ThresholdBetween(LO, HI)
    thresh.SetOutputScalarTypeToUnsignedChar()
    thresh.Update()
    erode = vtk.vtkImageDilateErode3D()
    erode.SetInputConnection(thresh.GetOutputPort())
    erode.SetDilateValue(0)
    erode.SetErodeValue(1)
    erode.SetKernelSize(kernel, kernel, kernel)
    cast = vtk.vtkImageCast()
    cast.SetInputConnection(erode.GetOutputPort())
    cast.SetOutputScalarTypeToUnsignedInt()
    islands = slicer.vtkITKIslandMath()
    islands.SetInputConnection(cast.GetOutputPort())
    islands.SetFullyConnected(False)
    islands.SetMinimumSize(125)
    big = vtk.vtkImageThreshold()
    big.SetInputConnection(islands.GetOutputPort())
    big.ThresholdByLower(0)
    big.SetInValue(0)
    big.SetOutValue(1)
    big.SetOutputScalarTypeToUnsignedChar()
    big.Update()
    snapped = snap(as_array(big.GetOutput()), ijk, (kernel - 1) // 2)
    if snapped is None:
        return time.perf_counter() - started, np.zeros(ct.shape, bool)
    seeds = vtk.vtkPoints()
    seeds.InsertNextPoint(*snapped)  # origin 0, spacing 1
    island = vtk.vtkImageThresholdConnectivity()
    island.SetInputData(big.GetOutput())
    island.SetInValue(0 if algorithm == "Masking" else 2)
    island.ReplaceInOn()
    island.ReplaceOutOff()
    island.ThresholdBetween(1, 1)
    island.SetSeedPoints(seeds)
    if algorithm == "Masking":
        dilate = vtk.vtkImageDilateErode3D()
        dilate.SetInputConnection(island.GetOutputPort())
        dilate.SetDilateValue(1)
        dilate.SetErodeValue(0)
        dilate.SetKernelSize(2 * kernel - 1, 2 * kernel - 1, 2 * kernel - 1)
        dilate.Update()
        masked = vtk.vtkImageMask()
        masked.SetInputConnection(thresh.GetOutputPort())
        masked.SetMaskedOutputValue(0)
        masked.NotMaskOn()
        masked.SetMaskInputData(dilate.GetOutput())
        fill = vtk.vtkImageThresholdConnectivity()
        fill.SetInputConnection(masked.GetOutputPort())
        fill.SetInValue(1)
        fill.SetOutValue(0)
        fill.ThresholdBetween(1, 1)
        fill.SetSeedPoints(seeds)
        fill.Update()
        kept = as_array(fill.GetOutput()) != 0
        return time.perf_counter() - started, kept
    island.Update()
    outside = vtk.vtkImageMask()
    outside.SetInputConnection(island.GetOutputPort())
    outside.SetMaskedOutputValue(3)
    outside.SetMaskInputData(thresh.GetOutput())
    outside.Update()
    if algorithm == "GrowCut":
        f = slicer.vtkImageGrowCutSegment()
        f.SetIntensityVolume(ct_image)
        f.SetSeedLabelVolume(outside.GetOutput())
        f.SetMaskVolume(edit_mask)
        f.Update()
        labels = as_array(f.GetOutput())
    else:
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(ct)
        image.SetSpacing((1.0, 1.0, 1.0))
        markers = sitk.GetImageFromArray(as_array(outside.GetOutput()))
        markers.CopyInformation(image)
        feature = sitk.GradientMagnitudeRecursiveGaussian(image, FEATURE_MM)
        w = sitk.MorphologicalWatershedFromMarkersImageFilter()
        w.SetMarkWatershedLine(False)
        w.SetFullyConnected(False)
        labels = sitk.GetArrayFromImage(w.Execute(feature, markers))
    kept = labels == 2
    return time.perf_counter() - started, kept


def run_segkit(segkit: Path, ct_path: Path, out: Path, ijk, algorithm: str):
    import SimpleITK as sitk

    command = [str(segkit), "apply", "local-threshold", str(ct_path), "-o", str(out),
               "--point", ",".join(map(str, ijk)), "-p", f"MinimumThreshold={LO}",
               "-p", f"MaximumThreshold={HI}", "-p", f"MinimumDiameterMm={DIAMETER_MM:g}",
               "-p", f"FeatureSizeMm={FEATURE_MM:g}", "-p", f"SegmentationAlgorithm={algorithm}",
               "--time"]
    run = subprocess.run(command, capture_output=True, text=True, check=True)
    seconds = json.loads(run.stdout.strip().splitlines()[-1])["effect_seconds"]
    return seconds, sitk.GetArrayFromImage(sitk.ReadImage(str(out))) == 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--algorithms", default="Masking,GrowCut,WaterShed")
    parser.add_argument("--segkit", type=Path, default=Path(os.environ.get(
        "CARGO_TARGET_DIR", REPO / "target")) / "release" / "segkit")
    args = parser.parse_args()
    data = Path(os.environ.get("SEGKIT_TEST_DATA", REPO.parent / "shared" / "data"))
    if not args.segkit.is_file():
        subprocess.run(["cargo", "build", "--release", "--bin", "segkit"], cwd=REPO, check=True)

    import vtk

    with tempfile.TemporaryDirectory() as tmp:
        ct_path, out_path = Path(tmp) / "ct_1mm.nrrd", Path(tmp) / "out.nrrd"
        ct = volume_1mm(data, ct_path)
        click = lung_click(ct)
        print(f"1 mm CT {ct.shape[::-1]} (i, j, k), {ct.size / 1e6:.1f} M voxels; {os.cpu_count()} CPUs; "
              f"click {click} = {ct[click[2], click[1], click[0]]} HU (second-largest island of "
              f"{LO}..{HI}: bowel gas, voxel below -800 nearest its centroid); diameter {DIAMETER_MM:g} mm, "
              f"feature size {FEATURE_MM:g} mm")
        ct_image = vtk_image(ct, vtk.VTK_SHORT)
        edit_mask = vtk_image(((ct < LO) | (ct > HI)).astype(np.uint8), vtk.VTK_UNSIGNED_CHAR)
        print("| algorithm | voxels | segkit s | Slicer s | ratio |")
        print("|---|---|---|---|---|")
        for algorithm in args.algorithms.split(","):
            ours, theirs, differing, dice = [], [], 0, 1.0
            for _ in range(args.repeat):
                s, a = run_segkit(args.segkit, ct_path, out_path, click, algorithm)
                r, b = slicer_pipeline(ct_image, ct, click, algorithm, edit_mask)
                ours.append(s)
                theirs.append(r)
                differing = max(differing, int(np.count_nonzero(a != b)))
                total = int(a.sum()) + int(b.sum())
                dice = min(dice, 2 * np.count_nonzero(a & b) / total if total else 1.0)
                voxels = int(b.sum())
            o, t = statistics.median(ours), statistics.median(theirs)
            ratio = f"{t / o:.1f}x" if not differing else \
                f"not counted: {differing} voxels differ (Dice {dice:.6f}), {t / o:.1f}x"
            print(f"| {algorithm} | {voxels} | {o:.3f} | {t:.3f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
