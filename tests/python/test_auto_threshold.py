"""Parity of segkit's automatic threshold methods with Slicer's Threshold effect.

Slicer computes "Automatic threshold" with `vtkITKImageThresholdCalculator` (ITK histogram of
the whole volume, 64 bins, then an ITK threshold calculator). Here that class (PyPI
slicer-core) and segkit run on exactly the same numpy array, for every method and a set of
real and synthetic images, and must agree to 1e-9 (relative).

segkit's side is the developer example `examples/auto_threshold.rs`, fed raw little-endian
voxels (the CLI's `segkit apply threshold -p AutoThresholdMethod=...` does not exist yet).
The binary is `target/debug/examples/auto_threshold`, or $SEGKIT_AUTO_THRESHOLD_BIN; it is
built with `cargo build --example auto_threshold` when missing, and the tests fail with a
message when that fails.

Outcomes per (image, method):
- segkit returns a value: Slicer must return the same value without error.
- segkit reports that the method *fails* (an ITK exception): Slicer must log an error and
  return 0.
- segkit reports *not supported* (ITK reads out of range or never returns): Slicer's value
  is undefined, the case is skipped and the skip reason shows Slicer's value.

`python tests/python/test_auto_threshold.py` prints the parity table (method x image).
"""

import os
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SEGKIT_TEST_DATA", REPO.parent / "shared" / "data"))

# Slicer's AutoThresholdMethod values -> vtkITKImageThresholdCalculator.SetMethodTo<...>
METHODS = {
    "OTSU": "Otsu",
    "HUANG": "Huang",
    "ISO_DATA": "IsoData",
    "KITTLER_ILLINGWORTH": "KittlerIllingworth",
    "LI": "Li",
    "MAXIMUM_ENTROPY": "MaximumEntropy",
    "MOMENTS": "Moments",
    "RENYI_ENTROPY": "RenyiEntropy",
    "SHANBHAG": "Shanbhag",
    "TRIANGLE": "Triangle",
    "YEN": "Yen",
    "INTERMODES": "Intermodes",
}

RUST_TYPE = {
    np.uint8: "u8",
    np.int8: "i8",
    np.uint16: "u16",
    np.int16: "i16",
    np.uint32: "u32",
    np.int32: "i32",
    np.uint64: "u64",
    np.int64: "i64",
    np.float32: "f32",
    np.float64: "f64",
}

REL_TOL = 1e-9


# ---------------------------------------------------------------------------------------------
# Images, all as C-ordered [k][j][i] numpy arrays


def _nrrd(rel):
    nrrd = pytest.importorskip("nrrd")
    path = DATA / rel
    if not path.exists():
        pytest.skip(f"{path} not found (set SEGKIT_TEST_DATA)")
    data, _ = nrrd.read(str(path), index_order="C")
    return data


def _nifti(rel):
    nib = pytest.importorskip("nibabel")
    path = DATA / rel
    if not path.exists():
        pytest.skip(f"{path} not found (set SEGKIT_TEST_DATA)")
    img = nib.load(str(path))
    slope, inter = img.dataobj.slope, img.dataobj.inter
    # Slicer reads the stored type when there is no scaling; keep that type.
    assert (slope in (1.0,) or np.isnan(slope)) and (inter in (0.0,) or np.isnan(inter))
    return np.asarray(img.dataobj.get_unscaled()).transpose(2, 1, 0)


def _ct_float32():
    # A float image made from real CT: Hounsfield units / 1000, with a little noise so that
    # values are not on a grid.
    ct = _nifti("ts/example_ct_sm.nii.gz").astype(np.float64)
    noise = np.random.default_rng(0).normal(0.0, 0.4, ct.shape)
    return ((ct + noise) / 1000.0).astype(np.float32)


def _ct_uint8():
    # A uint8 image made from real CT: soft-tissue window (-160 .. 240 HU) to 0 .. 255.
    ct = _nrrd("slicerio/slicerio/data/CTChest4.nrrd").astype(np.float64)
    return np.clip((ct + 160.0) * (255.0 / 400.0), 0, 255).astype(np.uint8)


def _mr_float64():
    return _nrrd("pyradiomics/data/prostate_phantom_subvolume.nrrd").astype(np.float64) / 7.3 + 50.0


def _bimodal_float32():
    # Two Gaussian modes in 0.06 .. 0.6: Li's integer rounding of its estimate falls below
    # the histogram (ITK undefined behaviour, segkit "not supported").
    rng = np.random.default_rng(1)
    v = np.concatenate([rng.normal(100, 20, 5000), rng.normal(400, 50, 3000)]) / 1000.0
    return v.reshape(10, 20, 40).astype(np.float32)


def _constant_int16():
    return np.full((4, 5, 6), 42, np.int16)


IMAGES = {
    "CTChest4 (i32)": lambda: _nrrd("slicerio/slicerio/data/CTChest4.nrrd"),
    "example_ct_sm (i16)": lambda: _nifti("ts/example_ct_sm.nii.gz"),
    "example_ct (i32)": lambda: _nifti("ts/example_ct.nii.gz"),
    "breast1 (i16)": lambda: _nrrd("pyradiomics/data/breast1_image.nrrd"),
    "prostate_phantom (u16)": lambda: _nrrd("pyradiomics/data/prostate_phantom_subvolume.nrrd"),
    "CT/1000 + noise (f32)": _ct_float32,
    "CT window (u8)": _ct_uint8,
    "phantom/7.3 + 50 (f64)": _mr_float64,
    "bimodal (f32)": _bimodal_float32,
    "constant (i16)": _constant_int16,
}


@lru_cache(maxsize=None)
def image(name):
    return np.ascontiguousarray(IMAGES[name]())


# ---------------------------------------------------------------------------------------------
# The two implementations


@lru_cache(maxsize=None)
def example_binary():
    env = os.environ.get("SEGKIT_AUTO_THRESHOLD_BIN")
    if env:
        return Path(env)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    exe = target / "debug" / "examples" / "auto_threshold"
    if not exe.exists():
        proc = subprocess.run(
            ["cargo", "build", "--example", "auto_threshold"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not exe.exists():
            # A build failure is a failure, not a reason to skip the parity checks.
            pytest.fail(
                "cannot build the segkit example (cargo build --example auto_threshold):\n"
                + proc.stderr[-2000:]
            )
    return exe


@lru_cache(maxsize=None)
def segkit_thresholds(name):
    """{method: float | ("failed" | "unsupported", message)} from the segkit example."""
    a = image(name)
    k, j, i = a.shape
    with tempfile.TemporaryDirectory() as d:
        raw = Path(d) / "voxels.raw"
        raw.write_bytes(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes(order="C"))
        proc = subprocess.run(
            [
                str(example_binary()),
                "--type",
                RUST_TYPE[a.dtype.type],
                "--dims",
                str(i),
                str(j),
                str(k),
                "--method",
                "ALL",
                str(raw),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert proc.returncode == 0, proc.stderr
    out = {}
    for line in proc.stdout.splitlines():
        method, value = line.split(" ", 1)
        if value.startswith("error: "):
            message = value[len("error: ") :]
            kind = "unsupported" if "not supported" in message else "failed"
            out[method] = (kind, message)
        else:
            out[method] = float(value)
    assert set(out) == set(METHODS), proc.stdout
    return out


def _vtk_image(a):
    vtk = pytest.importorskip("vtk")
    from vtk.util import numpy_support

    img = vtk.vtkImageData()
    k, j, i = a.shape
    img.SetDimensions(i, j, k)
    scalars = numpy_support.numpy_to_vtk(
        a.ravel(order="C"), deep=True, array_type=numpy_support.get_vtk_array_type(a.dtype)
    )
    img.GetPointData().SetScalars(scalars)
    return img


@lru_cache(maxsize=None)
def slicer_thresholds(name):
    """{method: (threshold, error_logged)} from Slicer's vtkITKImageThresholdCalculator."""
    slicer = pytest.importorskip("slicer", reason="slicer-core (PyPI) not installed")
    vtk = pytest.importorskip("vtk")
    img = _vtk_image(image(name))
    out = {}
    for method, suffix in METHODS.items():
        calc = slicer.vtkITKImageThresholdCalculator()
        errors = []
        calc.AddObserver(vtk.vtkCommand.ErrorEvent, lambda *_: errors.append(True))
        getattr(calc, "SetMethodTo" + suffix)()
        calc.SetInputData(img)
        calc.Update()
        out[method] = (calc.GetThreshold(), bool(errors))
    return out


def outcome(name, method):
    """("match" | "mismatch" | "failed in both" | "unsupported" | ..., detail)."""
    ours = segkit_thresholds(name)[method]
    theirs, error = slicer_thresholds(name)[method]
    if isinstance(ours, float):
        if error:
            return "mismatch", f"segkit {ours!r}, Slicer logged an error and returned {theirs!r}"
        if abs(ours - theirs) <= REL_TOL * max(1.0, abs(theirs)):
            return "match", f"{ours!r}"
        return "mismatch", f"segkit {ours!r} != Slicer {theirs!r}"
    kind, message = ours
    if kind == "failed":
        if error and theirs == 0.0:
            return "fails in both", message
        return "mismatch", f"segkit: {message}; Slicer returned {theirs!r} (error logged: {error})"
    return "unsupported", f"{message}; Slicer (undefined behaviour) returned {theirs!r}"


# ---------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("name", list(IMAGES))
def test_matches_slicer(name, method):
    result, detail = outcome(name, method)
    if result == "unsupported":
        pytest.skip(f"ITK's result is undefined here: {detail}")
    assert result in ("match", "fails in both"), detail


def test_otsu_on_ct_is_a_plausible_threshold():
    """A sanity check independent of Slicer: Otsu on CT separates air from tissue (on
    CTChest4, whose -3024 padding outside the field of view is its own class, it separates
    the padding from the body instead)."""
    t = segkit_thresholds("example_ct_sm (i16)")["OTSU"]
    assert isinstance(t, float) and -900.0 < t < 0.0, t
    t = segkit_thresholds("CTChest4 (i32)")["OTSU"]
    assert isinstance(t, float) and -3024.0 < t < -1000.0, t


def test_unknown_method_and_bad_size_are_rejected():
    exe = example_binary()
    with tempfile.TemporaryDirectory() as d:
        raw = Path(d) / "v.raw"
        raw.write_bytes(np.arange(8, dtype="<i2").tobytes())
        ok = subprocess.run(
            [str(exe), "--type", "i16", "--dims", "2", "2", "2", "--method", "OTSU", str(raw)],
            capture_output=True,
            text=True,
        )
        assert ok.returncode == 0 and float(ok.stdout) > 0.0, ok.stderr
        bad = subprocess.run(
            [str(exe), "--type", "i16", "--dims", "2", "2", "2", "--method", "otsu", str(raw)],
            capture_output=True,
            text=True,
        )
        assert bad.returncode == 2 and "unknown method" in bad.stderr
        short = subprocess.run(
            [str(exe), "--type", "i16", "--dims", "2", "2", "3", str(raw)],
            capture_output=True,
            text=True,
        )
        assert short.returncode == 2 and "expected" in short.stderr


def main():
    """Prints the parity table as Markdown."""
    names = list(IMAGES)
    symbol = {
        "match": "match",
        "fails in both": "error (both)",
        "unsupported": "n/s (ITK UB)",
        "mismatch": "**MISMATCH**",
    }
    print("| method | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    details = []
    for method in METHODS:
        cells = []
        for name in names:
            try:
                result, detail = outcome(name, method)
            except pytest.skip.Exception as e:
                result, detail = "skipped", str(e)
            cells.append(symbol.get(result, result))
            if result not in ("match",):
                details.append(f"- {method} / {name}: {result}: {detail}")
        print(f"| {method} | " + " | ".join(cells) + " |")
    print()
    print("\n".join(details))


if __name__ == "__main__":
    main()
