"""segkit's DICOM reader against dcm2niix (its reference outputs and the PyPI binary run
here) and SimpleITK's ImageSeriesReader, through `segkit convert DICOM out.nii.gz`.

Images are compared in world coordinates: both sides are reoriented to the closest
canonical (RAS+) axes with nibabel, which only permutes and flips axes, so voxel values
must then match exactly and the affines within 1e-4 mm (NIfTI stores float32).
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

AFFINE_TOL_MM = 1e-4


def convert(segkit, src, out, *extra):
    """`segkit convert src out extra...`; returns the CompletedProcess (not checked)."""
    return segkit("convert", src, out, *extra, check=False)


def canonical(path_or_img):
    img = nib.load(str(path_or_img)) if not isinstance(path_or_img, nib.Nifti1Image) else path_or_img
    return nib.as_closest_canonical(img)


def assert_same_image(ours, ref, *, exact=True, atol=0.0):
    """Values (exactly, or within atol) and affine (within 1e-4 mm) in canonical orientation."""
    a, r = canonical(ours), canonical(ref)
    assert a.shape == r.shape, f"shape {a.shape} vs {r.shape}"
    np.testing.assert_allclose(a.affine, r.affine, atol=AFFINE_TOL_MM, rtol=0)
    da, dr = np.asarray(a.dataobj, dtype=np.float64), np.asarray(r.dataobj, dtype=np.float64)
    if exact:
        np.testing.assert_array_equal(da, dr)
    else:
        np.testing.assert_allclose(da, dr, atol=atol, rtol=0)


def count_sizes(text, i, j, k):
    """How many times `segkit info` reports a size of i x j x k (spaces optional)."""
    return len(re.findall(rf"\b{i}\s*x\s*{j}\s*x\s*{k}\b", text))


def jpeg_ls_unsupported(proc):
    return proc.returncode != 0 and "--features jpegls" in proc.stderr


# --- dcm2niix's reference outputs shipped with dcm_qa_* ---


@pytest.mark.parametrize("n", range(1, 10))
def test_dcm_qa_ts_each_syntax_matches_dcm2niix_reference(segkit, data, tmp_path, n):
    """Nine files, one SeriesInstanceUID, one position: series N is file N.dcm (MOSAIC,
    de-mosaiced to 64x64x35)."""
    out = tmp_path / f"{n}.nii.gz"
    proc = convert(segkit, data / "dcm_qa_ts/In", out, "--series", n)
    if jpeg_ls_unsupported(proc):
        pytest.skip("segkit built without --features jpegls")
    assert proc.returncode == 0, proc.stderr
    assert_same_image(out, data / f"dcm_qa_ts/Ref/{n}.nii")


def test_dcm_qa_ts_folder_is_nine_series_not_a_stack(segkit, data, tmp_path):
    proc = convert(segkit, data / "dcm_qa_ts/In", tmp_path / "x.nii.gz")
    assert proc.returncode != 0
    assert "9 series" in proc.stderr, proc.stderr
    info = segkit("info", data / "dcm_qa_ts/In").stdout
    assert count_sizes(info, 64, 64, 35) == 9, info


@pytest.mark.parametrize(
    "name, ref, lo, hi",
    [
        ("12bitUnsigned.dcm", "2.nii", 0, 2908),
        ("12bitUnsigned_0x0F0F.dcm", "3.nii", 0, 4095),
        ("12bitSigned_0x0F0F.dcm", "4.nii", -2048, 2047),
    ],
)
def test_dcm_qa_12bit_matches_dcm2niix_reference(segkit, data, tmp_path, name, ref, lo, hi):
    out = tmp_path / "out.nii.gz"
    proc = convert(segkit, data / "dcm_qa_12bit/In" / name, out)
    assert proc.returncode == 0, proc.stderr
    values = np.asarray(nib.load(out).dataobj)
    assert (values.min(), values.max()) == (lo, hi)
    assert_same_image(out, data / "dcm_qa_12bit/Ref" / ref)


def test_dcm_qa_enh_siemens_volumes_match_the_4d_reference(segkit, data, tmp_path):
    """Four enhanced MR files of six frames at the same positions: four series, one per
    time point of dcm2niix's 4-D output."""
    ref = nib.load(data / "dcm_qa_enh/Ref/Siemens_REST1_w_SMS_PF7-8_6.nii")
    src = data / "dcm_qa_enh/In/Siemens/XA10"
    for t in range(4):
        out = tmp_path / f"t{t}.nii.gz"
        proc = convert(segkit, src, out, "--series", t + 1)
        assert proc.returncode == 0, proc.stderr
        ref_t = nib.Nifti1Image(np.asarray(ref.dataobj)[..., t], ref.affine)
        assert_same_image(out, ref_t)


def test_dcm_qa_enh_philips_geometry_and_field_map(segkit, data, tmp_path):
    """Magnitude and field map share positions: two series. The field map's DICOM rescale
    (slope 0.2442, intercept -500) is what dcm2niix applies too; Philips private scaling of
    the magnitude is not applied by segkit, so only its geometry is compared."""
    src = data / "dcm_qa_enh/In/Philips"
    info = segkit("info", src).stdout
    assert count_sizes(info, 64, 64, 32) == 2, info
    outs = []
    for n in (1, 2):
        out = tmp_path / f"p{n}.nii.gz"
        proc = convert(segkit, src, out, "--series", n)
        assert proc.returncode == 0, proc.stderr
        outs.append(out)
    field_ref = canonical(data / "dcm_qa_enh/Ref/Philips_WIP_B0_NS_801_e2_fieldmaphz.nii")
    mag_ref = canonical(data / "dcm_qa_enh/Ref/Philips_WIP_B0_NS_801_e1.nii")
    # The listing orders the split by EchoTime: 0 (field map) then 1.52 (magnitude).
    field, mag = canonical(outs[0]), canonical(outs[1])
    for ours, ref in ((field, field_ref), (mag, mag_ref)):
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours.affine, ref.affine, atol=AFFINE_TOL_MM, rtol=0)
    # Field map values: the same rescale; dcm2niix stores int16 with its own scl_slope and
    # scl_inter, which shifts values by up to 0.006 Hz (a fortieth of one stored step).
    np.testing.assert_allclose(
        np.asarray(field.dataobj, np.float64), np.asarray(field_ref.dataobj, np.float64), atol=0.01
    )


# --- SimpleITK's ImageSeriesReader (GDCM) ---


def sitk_series(sitk, folder):
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(folder))
    reader.SetFileNames(files)
    return reader.Execute()


@pytest.mark.parametrize(
    "rel",
    ["lung_pet_ct_dx/Lung_Dx-A0002/series3_8mm_B40f", "ts/dicom", "slicer_testdata/Testing/Data/Input/CTHeadAxialDicom"],
)
def test_ct_series_match_simpleitk(segkit, data, tmp_path, rel):
    sitk = pytest.importorskip("SimpleITK")
    out = tmp_path / "ct.nii.gz"
    proc = convert(segkit, data / rel, out)
    assert proc.returncode == 0, proc.stderr
    ref = sitk_series(sitk, data / rel)
    ours = sitk.ReadImage(str(out))
    assert ours.GetSize() == ref.GetSize()
    np.testing.assert_allclose(ours.GetOrigin(), ref.GetOrigin(), atol=AFFINE_TOL_MM)
    np.testing.assert_allclose(ours.GetSpacing(), ref.GetSpacing(), atol=AFFINE_TOL_MM)
    np.testing.assert_allclose(ours.GetDirection(), ref.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(ours).astype(np.float64), sitk.GetArrayFromImage(ref).astype(np.float64)
    )


@pytest.mark.parametrize("syntax", ["RLE", "JPLL", "J2KR"])
@pytest.mark.parametrize("image", ["CT1", "CT2", "MR1", "NM1"])
def test_wg04_lossless_matches_simpleitk(segkit, data, tmp_path, syntax, image):
    sitk = pytest.importorskip("SimpleITK")
    src = data / f"dicom_conformance/wg04/{syntax}/{image}_{syntax}"
    out = tmp_path / "x.nii.gz"
    proc = convert(segkit, src, out)
    assert proc.returncode == 0, proc.stderr
    ref = sitk.ReadImage(str(src))
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(sitk.ReadImage(str(out))).astype(np.float64).ravel(),
        sitk.GetArrayFromImage(ref).astype(np.float64).ravel(),
    )


# --- PyPI dcm2niix, run here ---


def dcm2niix_exe():
    """The PyPI dcm2niix: the one beside this Python (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "dcm2niix"
    exe = str(beside) if beside.exists() else shutil.which("dcm2niix")
    if exe is None:
        pytest.skip("dcm2niix not installed (pip install dcm2niix)")
    return exe


def run_dcm2niix(src, outdir):
    proc = subprocess.run(
        [dcm2niix_exe(), "-z", "n", "-b", "n", "-f", "%s", "-o", str(outdir), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    niftis = sorted(outdir.glob("*.nii"))
    assert len(niftis) == 1, (niftis, proc.stdout)
    return niftis[0]


@pytest.mark.parametrize("rel", ["ts/dicom", "lung_pet_ct_dx/Lung_Dx-A0002"])
def test_ct_series_match_dcm2niix(segkit, data, tmp_path, rel):
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    ref = run_dcm2niix(data / rel, ref_dir)
    out = tmp_path / "ours.nii.gz"
    proc = convert(segkit, data / rel, out)
    assert proc.returncode == 0, proc.stderr
    assert_same_image(out, ref)


def test_gantry_tilt_keeps_the_slices_on_the_k_axis(segkit, data, tmp_path):
    """dcm_qa_ct's GE series: 18.5 degree tilt and spacing from 1.1 to 7.4 mm. dcm2niix
    resamples (tilt correction is implementation-defined); segkit keeps the voxels as
    stored, puts slice 0 exactly at its ImagePositionPatient and points k from the first
    slice to the last (sheared, not along the slice normal). The uneven spacing cannot be
    one step, so only the direction to the last slice is exact."""
    pydicom = pytest.importorskip("pydicom")
    src = data / "dcm_qa_ct/In/GE"
    out = tmp_path / "ge.nii.gz"
    proc = convert(segkit, src, out)
    assert proc.returncode == 0, proc.stderr
    info = segkit("info", src)
    assert "tilt" in info.stdout + info.stderr
    img = nib.load(out)

    def depth(d):
        o = np.asarray(d.ImageOrientationPatient, float)
        return float(np.dot(np.asarray(d.ImagePositionPatient, float), np.cross(o[:3], o[3:])))

    slices = sorted((pydicom.dcmread(p) for p in src.glob("*.dcm")), key=depth)
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    first = lps_to_ras @ np.asarray(slices[0].ImagePositionPatient, float)
    last = lps_to_ras @ np.asarray(slices[-1].ImagePositionPatient, float)
    np.testing.assert_allclose(img.affine[:3, 3], first, atol=1e-3)
    k = img.affine[:3, 2] / np.linalg.norm(img.affine[:3, 2])
    span = last - first
    np.testing.assert_allclose(span - np.dot(span, k) * k, 0.0, atol=1e-3)
    normal = lps_to_ras @ np.cross(*np.split(np.asarray(slices[0].ImageOrientationPatient, float), 2))
    tilt = np.degrees(np.arccos(abs(np.dot(k, normal))))
    assert abs(tilt - 18.5) < 0.1, tilt
    volume = np.asarray(img.dataobj)
    for z, d in ((0, slices[0]), (volume.shape[2] - 1, slices[-1])):
        expected = d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept)
        np.testing.assert_array_equal(volume[:, :, z].T, expected)  # NIfTI is [i][j][k]
