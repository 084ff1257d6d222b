"""Side-by-side I/O benchmark: read a 512x512x300 CT series and write it as gzip NRRD.

Builds the series in a temporary folder from the real slices of
`lung_pet_ct_dx/Lung_Dx-A0002` (Explicit VR Little Endian, 12-bit, intercept -1024),
cycling through them with new SOP Instance UIDs and valid positions 1 mm apart, then
times, alternating in one run:

- segkit:    `segkit convert SERIES out.nrrd` (the release binary; process start included)
- SimpleITK: ImageSeriesReader (GDCM) + WriteImage(out.nrrd, useCompression=True)
- dcm2niix:  the PyPI dcm2niix writing a gzip NIfTI (`-z y`)

It prints the median of each and the ratios (reference time / segkit time: above 1 means
segkit is faster). Absolute times on shared 2-core machines are noisy; the ratios are the
figures to report.

Usage: .venv/bin/python benches/io_bench.py [--slices 300] [--repeat 5] [--segkit target/release/segkit]
"""

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.uid import generate_uid

REPO = Path(__file__).resolve().parents[1]


def build_series(data: Path, out: Path, slices: int) -> None:
    src = sorted(glob.glob(str(data / "lung_pet_ct_dx/Lung_Dx-A0002/**/*.dcm"), recursive=True))
    if not src:
        sys.exit(f"no source slices under {data}/lung_pet_ct_dx (set SEGKIT_TEST_DATA)")
    templates = [pydicom.dcmread(p) for p in src]
    series_uid = generate_uid()
    origin = [float(v) for v in templates[0].ImagePositionPatient]
    for n in range(slices):
        ds = templates[n % len(templates)].copy()
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = n + 1
        ds.ImagePositionPatient = [origin[0], origin[1], origin[2] - n * 1.0]
        ds.SliceLocation = origin[2] - n * 1.0
        ds.SliceThickness = 1.0
        ds.save_as(out / f"IM{n:04d}.dcm", enforce_file_format=True)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--segkit", default=str(REPO / "target/release/segkit"))
    ap.add_argument("--data", default=os.environ.get("SEGKIT_TEST_DATA", str(REPO.parent / "shared/data")))
    args = ap.parse_args()

    dcm2niix = shutil.which("dcm2niix", path=str(Path(sys.executable).parent)) or shutil.which("dcm2niix")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        series = tmp / "series"
        series.mkdir()
        build_series(Path(args.data), series, args.slices)
        out = tmp / "out"
        out.mkdir()

        def run_segkit():
            subprocess.run([args.segkit, "convert", str(series), str(out / "segkit.nrrd")],
                           check=True, capture_output=True)

        def run_sitk():
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series)))
            img = reader.Execute()
            sitk.WriteImage(img, str(out / "sitk.nrrd"), useCompression=True)

        def run_dcm2niix():
            subprocess.run([dcm2niix, "-z", "y", "-f", "d2n", "-o", str(out), str(series)],
                           check=True, capture_output=True)

        tools = {"segkit": run_segkit, "SimpleITK": run_sitk}
        if dcm2niix:
            tools["dcm2niix"] = run_dcm2niix
        times = {name: [] for name in tools}
        for fn in tools.values():  # warm the page cache and the binaries once
            fn()
        for _ in range(args.repeat):
            for name, fn in tools.items():
                times[name].append(timed(fn))

        # The comparison only counts if the outputs agree.
        ours = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "segkit.nrrd")))
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "sitk.nrrd")))
        same = ours.shape == ref.shape and np.array_equal(ours, ref)

        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"series: {args.slices} slices of 512x512 int16 ({args.slices * 512 * 512 * 2 / 1e6:.0f} MB), "
              f"median of {args.repeat} runs, outputs equal: {same}")
        for name, t in med.items():
            print(f"  {name:10s} {t:7.3f} s")
        for name, t in med.items():
            if name != "segkit":
                print(f"ratio {name}/segkit: {t / med['segkit']:.2f}")
        sizes = {"segkit": out / "segkit.nrrd", "SimpleITK": out / "sitk.nrrd"}
        sizes = {k: p.stat().st_size for k, p in sizes.items()}
        print(f"compressed size: segkit {sizes['segkit'] / 1e6:.1f} MB, SimpleITK "
              f"{sizes['SimpleITK'] / 1e6:.1f} MB ({100 * (sizes['segkit'] / sizes['SimpleITK'] - 1):+.1f}%)")
        if not same:
            sys.exit("segkit's output differs from SimpleITK's")


if __name__ == "__main__":
    main()
