"""Logical operators and Paint: segkit's compute time beside the equivalents in Slicer.

On the 1 mm CT (`ts/example_ct.nii.gz` resampled to 1 mm, 366 x 303 x 336 = 37 M voxels,
as the parity tests build it), alternating segkit and the reference in each repeat:

- Logical operators UNION of two segments (a label map with label 1 = -1024..-400 HU and
  label 2 = 100..3000 HU): `segkit apply logical-operators ... --time` (the effect's own
  compute seconds, no I/O) beside `vtk.vtkImageLogic` (OR) on the same two masks, the VTK
  class a re-implementation in Slicer would use (Slicer's effect hands the modifier
  segment's labelmap to ModifySegmentByLabelmap, whose merge is the same voxel pass).
- Paint, 25 mm sphere brush, a stroke of 5 points 20 voxels apart (interpolated every
  5 mm as in Slicer): `segkit apply paint ... --time` beside Slicer's path:
  vtkSphereSource -> vtkPolyDataToImageStencil -> vtkImageStencilToImage, then for each
  stroke point vtkImageChangeInformation + vtkOrientedImageDataResample.ModifyImage into a
  default modifier labelmap of the volume's size.

Outputs are checked equal (Paint: the segkit label map against the VTK modifier) before
times count. Prints median times and the ratio reference / segkit (> 1: segkit faster).

Usage: /work/main/.venv/bin/python benches/bench_logical_paint.py [--repeat 5] [--segkit target/release/segkit]
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
sys.path.insert(0, str(REPO / "slicer-extension" / "tests"))


def build_ct(data: Path, out: Path) -> Path:
    import SimpleITK as sitk

    image = sitk.ReadImage(str(data / "ts" / "example_ct.nii.gz"))
    size = [int(round(n * s)) for n, s in zip(image.GetSize(), image.GetSpacing())]
    resampled = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
                              (1.0, 1.0, 1.0), image.GetDirection(), -1024, sitk.sitkInt16)
    sitk.WriteImage(resampled, str(out), useCompression=False)
    return out


def segkit_time(cmd) -> float:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["effect_seconds"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--segkit", default=str(REPO / "target" / "release" / "segkit"))
    args = ap.parse_args()
    data = Path(os.environ.get("SEGKIT_TEST_DATA", REPO.parent / "shared" / "data"))

    import SimpleITK as sitk
    import slicer
    import vtk
    from vtk.util import numpy_support

    import slicer_reference as ref
    from test_parity_logical_paint import brush_stencil, stroke_world

    tmp = Path(tempfile.mkdtemp())
    ct_path = build_ct(data, tmp / "ct.nrrd")
    ct = sitk.GetArrayFromImage(sitk.ReadImage(str(ct_path)))
    a = ((ct >= -1024) & (ct <= -400)).astype(np.uint8)
    b = ((ct >= 100) & (ct <= 3000)).astype(np.uint8)
    labels = a.astype(np.uint16)
    labels[b != 0] = 2
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(sitk.ReadImage(str(ct_path)))
    sitk.WriteImage(label_image, str(tmp / "labels.nrrd"))
    print(f"volume {ct.shape[::-1]} ({ct.size / 1e6:.0f} M voxels)")

    def vtk_image(array):
        image = vtk.vtkImageData()
        image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
        image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(array.reshape(-1), deep=False))
        return image

    # -- Logical UNION -------------------------------------------------------------------
    va, vb = vtk_image(a), vtk_image(b)
    union_cmd = [args.segkit, "apply", "logical-operators", str(ct_path), "--labels", str(tmp / "labels.nrrd"),
                 "--segment", "1", "-p", "Operation=UNION", "-p", "ModifierSegmentID=2",
                 "-o", str(tmp / "union.nrrd"), "--time"]
    ours, theirs = [], []
    for _ in range(args.repeat):
        ours.append(segkit_time(union_cmd))
        t = time.perf_counter()
        f = vtk.vtkImageLogic()
        f.SetInput1Data(va)
        f.SetInput2Data(vb)
        f.SetOperationToOr()
        f.SetOutputTrueValue(1)
        f.Update()
        theirs.append(time.perf_counter() - t)
    vtk_union = ref.image_array(f.GetOutput()) != 0
    seg_union = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp / "union.nrrd")))
    # The label map shows label 2 where the segments overlap (later segments win).
    assert np.array_equal(seg_union != 0, vtk_union), "UNION differs"
    report("Logical UNION vs vtkImageLogic OR", ours, theirs)

    # -- Paint ---------------------------------------------------------------------------
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
    factory.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())
    scene = slicer.vtkMRMLScene()
    volume = ref.load_volume(scene, ct_path)
    world = ref.World(scene, volume, "bench", segments=(("s", "S"),))
    dims = volume.GetImageData().GetDimensions()
    c = (dims[0] // 2, dims[1] // 2, dims[2] // 2)
    points = [(c[0] + 20 * n, c[1] + 5 * n, c[2]) for n in range(-2, 3)]
    diameter = 25.0
    paint_cmd = [args.segkit, "apply", "paint", str(ct_path), "-p", f"BrushAbsoluteDiameter={diameter}",
                 "-p", "BrushSphere=1", "-o", str(tmp / "paint.nrrd"), "--time"]
    for p in points:
        paint_cmd += ["--point", ",".join(map(str, p))]
    ours, theirs = [], []
    for _ in range(args.repeat):
        ours.append(segkit_time(paint_cmd))
        t = time.perf_counter()
        assert world.logic.ResetModifierLabelmapToDefault()
        modifier = world.logic.GetModifierLabelmap()
        stencil = brush_stencil(modifier, diameter, True)
        to_image = vtk.vtkImageStencilToImage()
        to_image.SetInputConnection(stencil.GetOutputPort())
        to_image.SetInsideValue(1)
        to_image.SetOutsideValue(0)
        to_image.SetOutputScalarType(modifier.GetScalarType())
        positioner = vtk.vtkImageChangeInformation()
        positioner.SetInputConnection(to_image.GetOutputPort())
        positioner.SetOutputSpacing(modifier.GetSpacing())
        positioner.SetOutputOrigin(modifier.GetOrigin())
        to_ijk = vtk.vtkMatrix4x4()
        modifier.GetWorldToImageMatrix(to_ijk)
        for p in stroke_world(modifier, points, diameter):
            ijk = to_ijk.MultiplyPoint((*p, 1.0))[:3]
            positioner.SetExtentTranslation([vtk.vtkMath.Round(x) for x in ijk])
            positioner.Update()
            brush = slicer.vtkOrientedImageData()
            brush.ShallowCopy(positioner.GetOutput())
            brush.CopyDirections(modifier)
            slicer.vtkOrientedImageDataResample.ModifyImage(
                modifier, brush, slicer.vtkOrientedImageDataResample.OPERATION_MAXIMUM)
        theirs.append(time.perf_counter() - t)
    seg_paint = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp / "paint.nrrd"))) != 0
    vtk_paint = ref.image_array(modifier) != 0
    differing = int(np.count_nonzero(seg_paint != vtk_paint))
    print(f"Paint: {int(vtk_paint.sum())} voxels in Slicer's stroke, {differing} differ")
    # The sphere's documented residual: voxels next to the faceted surface (paint.rs).
    assert differing <= 0.01 * vtk_paint.sum(), "Paint differs"
    report("Paint 25 mm sphere, 5-point stroke vs vtkPolyDataToImageStencil path", ours, theirs)


def report(name, ours, theirs):
    o, t = statistics.median(ours), statistics.median(theirs)
    print(f"{name}: segkit {o * 1e3:.1f} ms, reference {t * 1e3:.1f} ms, ratio {t / o:.1f}x")


if __name__ == "__main__":
    main()
