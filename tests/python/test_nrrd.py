"""NRRD interoperability: segkit's NRRD output read by pynrrd, SimpleITK, Teem and slicer-core.

1. Conversion: for every NRRD in the test data folders, `segkit convert f out.nrrd`
   (`out.seg.nrrd` for a `.seg.nrrd`) must give a file that pynrrd reads with the same samples,
   the same type and the same geometry (in LPS, within 1e-9 relative) as pynrrd reading `f`
   (Teem's `unu` is the oracle where pynrrd cannot read). The two files that are invalid by
   design must make segkit exit non-zero with a message naming the file.
2. Every encoding: volumes, `-label.nrrd` label maps and `.seg.nrrd` segmentations that segkit
   writes in raw, gzip, bzip2, ascii and hex, attached and detached (written by the ignored
   Rust test `write_interop_fixtures` in `tests/nrrd.rs`, with their truth as raw arrays),
   must read back identically in pynrrd, SimpleITK, Teem and slicer-core. Readers that lack an
   encoding are skipped for it, saying so: pynrrd 1.1 has no hex, and ITK's NrrdIO (SimpleITK,
   slicer-core) is built without bzip2 (slicer-core even aborts the process on a bzip2
   segmentation, so it is not tried).
3. slicer-core reads the segmentations segkit converts with their segment names, colours,
   label values, layers and voxels, as it reads Slicer's own files.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import nrrd
import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
REL = 1e-9
FOLDERS = ("pynrrd", "slicer_testdata", "slicerio", "pyradiomics", "dcmqi")
# Invalid by design: name -> words the refusal must contain.
INVALID = {
    "BallBinary30x30x30_nifti.nhdr": "byte skip: -1",
    "BallBinary30x30x30_byteskip_minus_five.nhdr": "byte skip -5",
}
ENCODINGS = ("raw", "gzip", "bzip2", "ascii", "hex")


def _data_root() -> Path:
    return Path(os.environ.get("SEGKIT_TEST_DATA", REPO.parent / "shared" / "data"))


def _nrrd_files():
    root = _data_root()
    if not root.is_dir():
        return []
    files = []
    for folder in FOLDERS:
        files += [p for p in (root / folder).rglob("*") if p.suffix in (".nrrd", ".nhdr") and p.is_file()]
    return sorted(files)


FILES = _nrrd_files()


def _id(p: Path) -> str:
    return "/".join(p.parts[-2:])


def assert_close(got, want, what=""):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    tol = REL * np.maximum(np.maximum(np.abs(got), np.abs(want)), 1.0)
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}"
    assert np.all(np.abs(got - want) <= tol), f"{what}: {got} vs {want}"


LPS_SIGNS = {
    "right-anterior-superior": (-1, -1, 1),
    "left-anterior-superior": (-1, 1, 1),
    "right-anterior-superior-time": (-1, -1, 1),
    "left-anterior-superior-time": (-1, 1, 1),
}


def spatial_frame(header):
    """(origin, steps) in LPS of the spatial axes of a pynrrd header, or None without space
    directions. Steps are one row per spatial axis, fastest first."""
    dirs = header.get("space directions")
    if dirs is None:
        return None
    dirs = np.asarray(dirs, dtype=np.float64)
    signs = np.asarray(LPS_SIGNS.get(header.get("space", ""), (1, 1, 1)), dtype=np.float64)
    rows = [row[:3] * signs for row in dirs if not np.isnan(row).any()]
    origin = header.get("space origin")
    origin = np.zeros(3) if origin is None else np.asarray(origin, dtype=np.float64)[:3] * signs
    return origin, np.asarray(rows)


def read_oracle(path: Path, tmp_path: Path, teem):
    """pynrrd's reading of `path`, or pynrrd reading Teem's raw re-save when pynrrd cannot."""
    try:
        return nrrd.read(str(path), index_order="C")
    except Exception:
        if teem is None:
            raise
        raw = tmp_path / "oracle.nrrd"
        subprocess.run([teem, "save", "-i", str(path), "-f", "nrrd", "-e", "raw", "-o", str(raw)], check=True)
        return nrrd.read(str(raw), index_order="C")


# ----------------------------------------------------------------------------- 1. conversion


@pytest.mark.skipif(not FILES, reason="test data folder not found (set SEGKIT_TEST_DATA)")
@pytest.mark.parametrize("src", FILES, ids=_id)
def test_convert_keeps_samples_and_geometry(src, segkit, tmp_path):
    out = tmp_path / ("out.seg.nrrd" if src.name.endswith(".seg.nrrd") else "out.nrrd")
    if src.name in INVALID:
        proc = segkit("convert", src, out, check=False)
        assert proc.returncode != 0
        assert src.name in proc.stderr and INVALID[src.name] in proc.stderr, proc.stderr
        assert not out.exists()
        return

    want, want_h = read_oracle(src, tmp_path, shutil.which("teem-unu") or shutil.which("unu"))
    proc = segkit("convert", src, out, check=False)
    assert proc.returncode == 0, proc.stderr

    got, got_h = nrrd.read(str(out), index_order="C")
    assert got.dtype == want.dtype, f"type {got.dtype} vs {want.dtype}"
    if got.shape == want.shape:
        np.testing.assert_array_equal(got, want)
    else:
        # A 4-D file with a size-1 non-spatial axis becomes 3-D.
        np.testing.assert_array_equal(np.squeeze(got), np.squeeze(want))

    if got.ndim != 3:
        # Not a 3-D volume: copied as it is, so its own space (a DWI's RAS frame goes with
        # its measurement frame), spacings and custom fields are kept, not normalised.
        for key in ("space", "space origin", "space directions", "spacings", "kinds", "measurement frame"):
            if key in want_h:
                a, b = np.asarray(got_h[key], dtype=object), np.asarray(want_h[key], dtype=object)
                assert str(a) == str(b), f"{key}: {got_h[key]} vs {want_h[key]}"
        for key, value in want_h.items():
            if key.startswith(("DWMRI_", "int", "double", "string")) or ":=" in key:
                assert got_h.get(key) == value, key
        return

    frame = spatial_frame(want_h)
    if frame is not None:
        origin, steps = frame
        g_origin, g_steps = spatial_frame(got_h)
        assert got_h["space"] == "left-posterior-superior"
        assert_close(g_origin, origin, "space origin (LPS)")
        assert_close(g_steps, steps, "space directions (LPS)")
    elif "spacings" in want_h:
        spacings = [s for s in want_h["spacings"] if not np.isnan(s)]
        g = spatial_frame(got_h)
        assert g is not None
        assert_close(np.linalg.norm(g[1], axis=1), spacings, "spacings")

    # SimpleITK agrees on the 3-D volumes it can read.
    if got.ndim == 3 and not src.name.endswith(".seg.nrrd"):
        try:
            a = sitk.ReadImage(str(src))
        except RuntimeError:
            return
        b = sitk.ReadImage(str(out))
        assert a.GetSize() == b.GetSize()
        assert_close(b.GetOrigin(), a.GetOrigin(), "SimpleITK origin")
        assert_close(b.GetSpacing(), a.GetSpacing(), "SimpleITK spacing")
        np.testing.assert_allclose(b.GetDirection(), a.GetDirection(), rtol=0, atol=1e-9)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(b), sitk.GetArrayFromImage(a))


@pytest.mark.skipif(not FILES, reason="test data folder not found (set SEGKIT_TEST_DATA)")
def test_detached_output_reads_in_pynrrd_and_simpleitk(segkit, data, tmp_path):
    src = data / "slicerio/slicerio/data/CTChest4.nrrd"
    out = tmp_path / "ct.nhdr"
    segkit("convert", src, out)
    header = nrrd.read_header(str(out))
    assert header["data file"] == "ct.raw.gz"
    want, _ = nrrd.read(str(src), index_order="C")
    got, _ = nrrd.read(str(out), index_order="C")
    np.testing.assert_array_equal(got, want)
    a, b = sitk.ReadImage(str(src)), sitk.ReadImage(str(out))
    assert_close(b.GetOrigin(), a.GetOrigin(), "origin")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(b), sitk.GetArrayFromImage(a))


@pytest.mark.skipif(not FILES, reason="test data folder not found (set SEGKIT_TEST_DATA)")
def test_label_map_output_is_slicer_like(segkit, data, tmp_path):
    src = data / "slicerio/slicerio/data/Segmentation.seg.nrrd"
    out = tmp_path / "seg-label.nrrd"
    segkit("convert", src, out)
    h = nrrd.read_header(str(out))
    assert h["type"] == "short" and h["encoding"] == "gzip" and h["space"] == "left-posterior-superior"
    assert list(h["kinds"]) == ["domain"] * 3
    want, _ = nrrd.read(str(src), index_order="C")
    got, _ = nrrd.read(str(out), index_order="C")
    # Segments 1..7 carry labels 1..7, so Slicer's export numbering keeps the values.
    np.testing.assert_array_equal(got, want.astype(np.int16))
    img = sitk.ReadImage(str(out))
    assert img.GetPixelID() == sitk.sitkInt16
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), want.astype(np.int16))


# ------------------------------------------------------------- 2. every encoding, four readers


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory):
    """The files of `write_interop_fixtures` (tests/nrrd.rs) and their manifest."""
    out = tmp_path_factory.mktemp("nrrd_fixtures")
    env = dict(os.environ, SEGKIT_NRRD_FIXTURES=str(out))
    proc = subprocess.run(
        ["cargo", "test", "--test", "nrrd", "write_interop_fixtures", "--", "--ignored", "--exact"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    manifest = json.loads((out / "manifest.json").read_text())
    return out, {f["file"]: f for f in manifest["files"]}, manifest["size_ijk"]


def _fixture_names():
    names = []
    for enc in ENCODINGS:
        for detached in (False, True):
            tag = enc + ("_detached" if detached else "")
            ext = "nhdr" if detached else "nrrd"
            names += [f"vol_i16_{tag}.{ext}", f"vol_f32_{tag}.{ext}", f"labels_{tag}-label.{ext}", f"seg_{tag}.seg.{ext}"]
    return names


FIXTURES = _fixture_names()


def truth(root: Path, entry, size):
    """The samples a fixture must hold, `[k][j][i]` (segmentations: `[layer][k][j][i]`)."""
    ni, nj, nk = size
    dtypes = {"vol_i16.bin": "<i2", "vol_f32.bin": "<f4", "labels.bin": "<u2", "layer1.bin": "<u2"}
    load = lambda name: np.fromfile(root / name, dtype=dtypes[name]).reshape(nk, nj, ni)
    if entry["kind"] == "segmentation":
        return np.stack([load(n) for n in entry["truth"]])
    return load(entry["truth"])


def check_lps(origin, steps, entry, what):
    assert_close(origin, entry["geometry"]["origin"], f"{what} origin")
    assert_close(steps, entry["geometry"]["steps"], f"{what} steps")


@pytest.mark.parametrize("name", FIXTURES)
def test_pynrrd_reads_every_encoding(name, fixtures):
    root, manifest, size = fixtures
    entry = manifest[name]
    if entry["encoding"] == "hex":
        pytest.skip("pynrrd 1.1 has no hex encoding")
    data, h = nrrd.read(str(root / name), index_order="C")
    want = truth(root, entry, size)
    assert str(data.dtype) == entry["dtype"]
    if entry["kind"] == "segmentation":
        data = np.moveaxis(data, -1, 0)  # list axis (fastest) first
    np.testing.assert_array_equal(data, want.astype(data.dtype))
    assert h["space"] == "left-posterior-superior"
    origin, steps = spatial_frame(h)
    check_lps(origin, steps, entry, "pynrrd")
    if entry["kind"] == "segmentation":
        for n, seg in enumerate(entry["segments"]):
            # pynrrd decodes headers as ASCII and drops other characters (Slicer keeps UTF-8).
            assert h[f"Segment{n}_Name"] == seg["name"].encode("ascii", "ignore").decode()
            assert int(h[f"Segment{n}_LabelValue"]) == seg["label"]
            assert int(h[f"Segment{n}_Layer"]) == seg["layer"]


@pytest.mark.parametrize("name", FIXTURES)
def test_simpleitk_reads_every_encoding(name, fixtures):
    root, manifest, size = fixtures
    entry = manifest[name]
    if entry["encoding"] == "bzip2":
        pytest.skip("ITK's NrrdIO (SimpleITK) is built without bzip2")
    img = sitk.ReadImage(str(root / name))
    data = sitk.GetArrayFromImage(img)
    want = truth(root, entry, size)
    if entry["kind"] == "segmentation":
        data = np.moveaxis(data, -1, 0)  # the list axis is read as vector components
    np.testing.assert_array_equal(data, want.astype(data.dtype))
    assert str(data.dtype) == entry["dtype"]
    direction = np.asarray(img.GetDirection()).reshape(3, 3)
    steps = (direction * np.asarray(img.GetSpacing())).T
    check_lps(img.GetOrigin(), steps, entry, "SimpleITK")


@pytest.mark.parametrize("name", FIXTURES)
def test_teem_reads_every_encoding(name, fixtures, teem_unu, tmp_path):
    root, manifest, size = fixtures
    entry = manifest[name]
    raw = tmp_path / "teem.nrrd"
    subprocess.run([teem_unu, "save", "-i", str(root / name), "-f", "nrrd", "-e", "raw", "-o", str(raw)], check=True)
    data, h = nrrd.read(str(raw), index_order="C")
    want = truth(root, entry, size)
    if entry["kind"] == "segmentation":
        data = np.moveaxis(data, -1, 0)
    np.testing.assert_array_equal(data, want.astype(data.dtype))
    assert str(data.dtype) == entry["dtype"]
    origin, steps = spatial_frame(h)
    check_lps(origin, steps, entry, "Teem")
    if entry["kind"] == "segmentation":
        # Teem keeps the key/value pairs byte for byte (pynrrd would drop the non-ASCII).
        head = raw.read_bytes().split(b"\n\n", 1)[0].decode("utf-8")
        assert '\nSegment1_Name:=Gefäß, "quoted"\n' in head


# -------------------------------------------------------------------------------- slicer-core


@pytest.fixture(scope="module")
def slicer_core():
    slicer = pytest.importorskip("slicer", reason="slicer-core not installed")
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
    factory.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())
    return slicer


def slicer_volume(slicer, path: Path):
    """(samples [k][j][i], IJK-to-RAS 4x4) as Slicer's volume storage node reads them."""
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLScalarVolumeNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node), f"Slicer could not read {path}"
    image = node.GetImageData()
    i, j, k = image.GetDimensions()
    data = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(k, j, i)
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return data, np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def slicer_segments(slicer, path: Path):
    """Per segment: id, name, colour, label value, layer, voxel count, image-to-RAS 4x4."""
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node), f"Slicer could not read {path}"
    seg = node.GetSegmentation()
    out = []
    for n in range(seg.GetNumberOfSegments()):
        sid = seg.GetNthSegmentID(n)
        s = seg.GetSegment(sid)
        rep = s.GetRepresentation("Binary labelmap")
        values = vtk_to_numpy(rep.GetPointData().GetScalars())
        m = vtk.vtkMatrix4x4()
        rep.GetImageToWorldMatrix(m)
        out.append(
            {
                "id": sid,
                "name": s.GetName(),
                "color": tuple(s.GetColor()),
                "label": s.GetLabelValue(),
                "layer": seg.GetLayerIndex(sid),
                "voxels": int((values == s.GetLabelValue()).sum()),
                "matrix": np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)]),
            }
        )
    return out


def ras_matrix(entry):
    """The IJK-to-RAS matrix of a fixture's LPS geometry."""
    m = np.eye(4)
    steps = np.asarray(entry["geometry"]["steps"], dtype=np.float64)
    m[:3, :3] = steps.T
    m[:3, 3] = entry["geometry"]["origin"]
    m[:2, :] *= -1
    return m


@pytest.mark.parametrize("name", FIXTURES)
def test_slicer_core_reads_every_encoding(name, fixtures, slicer_core):
    root, manifest, size = fixtures
    entry = manifest[name]
    if entry["encoding"] == "bzip2":
        pytest.skip("ITK's NrrdIO in slicer-core has no bzip2 (and aborts on a bzip2 segmentation)")
    want = truth(root, entry, size)
    if entry["kind"] != "segmentation":
        data, m = slicer_volume(slicer_core, root / name)
        np.testing.assert_array_equal(data, want.astype(data.dtype))
        assert_close(m, ras_matrix(entry), "Slicer IJK-to-RAS")
        return
    segments = slicer_segments(slicer_core, root / name)
    assert [s["name"] for s in segments] == [s["name"] for s in entry["segments"]]
    for got, seg in zip(segments, entry["segments"]):
        assert got["id"] == seg["id"]
        assert got["label"] == seg["label"] and got["layer"] == seg["layer"]
        np.testing.assert_allclose(got["color"], seg["color"], atol=1e-6)
        assert got["voxels"] == int((want[seg["layer"]] == seg["label"]).sum()), seg["name"]
        assert_close(got["matrix"], ras_matrix(entry), "Slicer segment geometry")


# ------------------------------------------------- 3. Slicer reads what `segkit convert` writes


@pytest.mark.skipif(not FILES, reason="test data folder not found (set SEGKIT_TEST_DATA)")
@pytest.mark.parametrize("name", ["Segmentation.seg.nrrd", "SegmentationOverlapping.seg.nrrd"])
def test_slicer_reads_converted_segmentations_like_the_originals(name, segkit, data, slicer_core, tmp_path):
    src = data / "slicerio/slicerio/data" / name
    out = tmp_path / "out.seg.nrrd"
    segkit("convert", src, out)
    want = slicer_segments(slicer_core, src)
    got = slicer_segments(slicer_core, out)
    assert len(got) == len(want) >= 7
    for g, w in zip(got, want):
        for key in ("id", "name", "label", "layer", "voxels"):
            assert g[key] == w[key], (key, g[key], w[key])
        np.testing.assert_allclose(g["color"], w["color"], atol=1e-6)
        assert_close(g["matrix"], w["matrix"], "segment geometry")


@pytest.mark.skipif(not FILES, reason="test data folder not found (set SEGKIT_TEST_DATA)")
def test_slicer_reads_converted_volumes_like_the_originals(segkit, data, slicer_core, tmp_path):
    for rel in ("slicerio/slicerio/data/CTChest4.nrrd", "pyradiomics/data/prostate_phantom_subvolume.nrrd"):
        src = data / rel
        out = tmp_path / "out.nrrd"
        segkit("convert", src, out)
        want, wm = slicer_volume(slicer_core, src)
        got, gm = slicer_volume(slicer_core, out)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
        assert_close(gm, wm, f"{rel} IJK-to-RAS")
