"""Makes a 512x512x300 chest CT DICOM series for timing `segkit lungs` and `segkit batch`.

The shared data has no 300-slice chest CT, so this stretches Lung_Dx-A0002 (30 slices of
8 mm) to 300 slices of 0.8 mm by repeating each slice ten times with new positions and
UIDs: the anatomy is blocky along the body axis but sizes, voxel count, file count and
intensities are those of a thin-slice chest CT.

usage: make_ct300.py OUTPUT_DIR [--cases N]   (N copies: case000, case001, ...)
"""
import argparse
import copy
import os
import sys
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

data = Path(os.environ.get("SEGKIT_TEST_DATA", Path(__file__).resolve().parents[1] / "../shared/data"))
src = data / "lung_pet_ct_dx/Lung_Dx-A0002/series3_8mm_B40f"

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("output")
    ap.add_argument("--cases", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=10)
    a = ap.parse_args()
    files = sorted(src.glob("*.dcm"))
    if not files:
        sys.exit(f"no DICOM files in {src}")
    slices = [pydicom.dcmread(f) for f in files]
    slices.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    z0 = float(slices[0].ImagePositionPatient[2])
    step = float(slices[1].ImagePositionPatient[2]) - z0
    for c in range(a.cases):
        out = Path(a.output) / f"case{c:03d}"
        out.mkdir(parents=True, exist_ok=True)
        series_uid = generate_uid()
        study_uid = generate_uid()
        n = 0
        for d in slices:
            for r in range(a.repeat):
                e = copy.deepcopy(d)
                ipp = list(map(float, d.ImagePositionPatient))
                ipp[2] = z0 + (n * step) / a.repeat
                e.ImagePositionPatient = [f"{v:.4f}" for v in ipp]
                e.SliceThickness = f"{step / a.repeat:.4f}"
                e.SeriesInstanceUID = series_uid
                e.StudyInstanceUID = study_uid
                e.SOPInstanceUID = generate_uid()
                e.file_meta.MediaStorageSOPInstanceUID = e.SOPInstanceUID
                e.InstanceNumber = n + 1
                e.PatientID = f"SEGKIT-BENCH-{c:03d}"
                e.save_as(out / f"{n:04d}.dcm")
                n += 1
    print(f"wrote {a.cases} case(s) of {len(slices) * a.repeat} slices under {a.output}")

if __name__ == "__main__":
    main()
