"""NIfTI interoperability: segkit's `.nii.gz` output read by nibabel and SimpleITK.

For every `.nii` / `.nii.gz` in the test data folder, `segkit convert f out.nii.gz` must give
a file that nibabel reads with the same (scaled) voxels and the same affine within 1e-4 mm,
and that SimpleITK reads with the same origin, spacing and direction as the original.
A 4-D series must be refused with an error naming the file and its dimensions.
"""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

# Geometry tolerance: NIfTI stores the affine as float32, about 1e-4 mm on patient coordinates.
TOL_MM = 1e-4


def _nifti_files():
    import os

    root = Path(os.environ.get("SEGKIT_TEST_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    if not root.is_dir():
        return []
    files = [p for p in root.rglob("*") if p.name.endswith((".nii", ".nii.gz")) and p.is_file()]
    return sorted(files)


FILES = _nifti_files()


def _id(p: Path) -> str:
    return "/".join(p.parts[-3:])


def _is_single_volume(img) -> bool:
    return all(int(d) == 1 for d in img.shape[3:])


@pytest.mark.skipif(not FILES, reason="test data folder not found (set SEGKIT_TEST_DATA)")
@pytest.mark.parametrize("src", FILES, ids=_id)
def test_convert_to_nii_gz_keeps_voxels_and_geometry(src, segkit, tmp_path):
    orig = nib.load(str(src))
    out = tmp_path / "out.nii.gz"
    if not _is_single_volume(orig):
        proc = segkit("convert", src, out, check=False)
        assert proc.returncode != 0
        shape = "x".join(str(d) for d in orig.shape)
        assert src.name in proc.stderr and shape in proc.stderr, proc.stderr
        assert not out.exists()
        return
    segkit("convert", src, out)

    # nibabel: same scaled voxels, same affine.
    conv = nib.load(str(out))
    want = orig.get_fdata(dtype=np.float64)
    got = conv.get_fdata(dtype=np.float64)
    assert got.shape[:3] == want.shape[:3]
    got = got.reshape(want.shape)
    # Integer data must be exact; scaled data goes through float32.
    if np.issubdtype(orig.get_data_dtype(), np.integer) and orig.dataobj.slope in (1, None) and orig.dataobj.inter in (0, None):
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    # The affine itself (columns = step vectors, last column = origin) within 1e-4 mm.
    np.testing.assert_allclose(conv.affine, orig.affine, rtol=0, atol=TOL_MM)
    assert int(conv.header["sform_code"]) == 1 and int(conv.header["qform_code"]) == 1

    # SimpleITK: same lattice as it reads from the original.
    a = sitk.ReadImage(str(src))
    b = sitk.ReadImage(str(out))
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(b.GetOrigin(), a.GetOrigin(), rtol=0, atol=TOL_MM)
    np.testing.assert_allclose(b.GetSpacing(), a.GetSpacing(), rtol=0, atol=TOL_MM)
    np.testing.assert_allclose(b.GetDirection(), a.GetDirection(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        sitk.GetArrayFromImage(b).astype(np.float64),
        sitk.GetArrayFromImage(a).astype(np.float64),
        rtol=1e-6,
        atol=1e-6 * float(np.abs(want).max()),
    )


@pytest.mark.skipif(not FILES, reason="test data folder not found (set SEGKIT_TEST_DATA)")
@pytest.mark.parametrize("src", [f for f in FILES if f.name.endswith(".nii")][:1] or FILES[:1], ids=_id)
def test_convert_to_plain_nii(src, segkit, tmp_path):
    """The uncompressed writer gives the same file content as the compressed one."""
    if not _is_single_volume(nib.load(str(src))):
        pytest.skip("4-D")
    plain, packed = tmp_path / "out.nii", tmp_path / "out.nii.gz"
    segkit("convert", src, plain)
    segkit("convert", src, packed)
    import gzip

    assert plain.read_bytes() == gzip.decompress(packed.read_bytes())
    # The header as stored (a loaded image's header has vox_offset reset by nibabel).
    with open(plain, "rb") as f:
        hdr = nib.Nifti1Header.from_fileobj(f)
    assert hdr["vox_offset"] == 352 and hdr["magic"] == b"n+1"
    assert (hdr["scl_slope"], hdr["scl_inter"]) == (1, 0)


def test_nibabel_files_round_trip_every_dtype_and_orientation(segkit, tmp_path):
    """Files written by nibabel, in every voxel type segkit keeps, oblique and flipped,
    come back from `segkit convert` with the same voxels and affine."""
    rng = np.random.default_rng(7)
    theta = 0.3
    rot = np.array(
        [[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]]
    )
    affines = {
        "ras": np.diag([0.5, 0.75, 2.0, 1.0]),
        "lps": np.diag([-0.5, -0.75, 2.0, 1.0]),
        "oblique": np.block([[rot @ np.diag([0.7, 0.8, 2.5]), np.array([[-12.5], [30.25], [401.0]])], [np.zeros((1, 3)), np.ones((1, 1))]]),
    }
    for dtype in ["uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "uint64", "float32", "float64"]:
        info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else np.finfo(dtype)
        lo, hi = max(float(info.min), -1e6), min(float(info.max), 1e6)
        data = rng.uniform(lo, hi, size=(5, 4, 3)).astype(dtype)
        for name, affine in affines.items():
            src = tmp_path / f"{dtype}_{name}.nii"
            img = nib.Nifti1Image(data, affine, dtype=dtype)
            img.set_qform(affine, code=1)
            img.set_sform(affine, code=1)
            nib.save(img, str(src))
            out = tmp_path / f"{dtype}_{name}_out.nii.gz"
            segkit("convert", src, out)
            conv = nib.load(str(out))
            assert conv.get_data_dtype() == np.dtype(dtype), (dtype, name)
            np.testing.assert_array_equal(np.asanyarray(conv.dataobj), data)
            np.testing.assert_allclose(conv.affine, affine, rtol=0, atol=TOL_MM)


def test_scaled_uint16_ct_reads_as_int16(segkit, tmp_path):
    """CT stored as uint16 with intercept -1024 becomes int16 HU."""
    data = np.array([[[0, 1024, 4000]]], dtype=np.uint16).transpose(2, 1, 0)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_data_dtype(np.uint16)
    img.header.set_slope_inter(1.0, -1024.0)
    src = tmp_path / "ct.nii"
    nib.save(img, str(src))
    out = tmp_path / "hu.nii.gz"
    segkit("convert", src, out)
    conv = nib.load(str(out))
    assert conv.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asanyarray(conv.dataobj).ravel(), [-1024, 0, 2976])


def test_garbage_is_refused_with_the_file_name(segkit, tmp_path):
    src = tmp_path / "garbage.nii.gz"
    src.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4)
    out = tmp_path / "out.nii.gz"
    proc = segkit("convert", src, out, check=False)
    assert proc.returncode != 0
    assert "garbage.nii.gz" in proc.stderr
    assert "panicked" not in proc.stderr
    assert not out.exists()
