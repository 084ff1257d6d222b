"""Export: segments written as a -label.nrrd, a .seg.nrrd or a .nii.gz, streamed back as bytes
or written to a path on the engine's machine, then read with pynrrd, nibabel and
SimpleITK: geometry and voxels."""

from pathlib import Path

import grpc
import numpy as np
import pytest

import conformance_lib as cl
from conformance_lib import LATTICE

FORMATS = {
    "LABEL_NRRD": "-label.nrrd",
    "SEG_NRRD": ".seg.nrrd",
    "NIFTI_GZ": ".nii.gz",
}
SPLEEN_COLOR = (0.25, 0.5, 0.75)


@pytest.fixture(scope="module")
def masks():
    """Three segments: liver, spleen overlapping the liver, and kidney apart from both."""
    liver = np.zeros(LATTICE.shape, np.uint8)
    liver[1:4, 2:6, 1:7] = 1
    spleen = np.zeros(LATTICE.shape, np.uint8)
    spleen[2:5, 4:8, 5:10] = 1
    kidney = np.zeros(LATTICE.shape, np.uint8)
    kidney[5, 0:2, 0:3] = 1
    kidney[0, 9, 11] = 1
    return {"liver": liver, "spleen": spleen, "kidney": kidney}


@pytest.fixture(scope="module")
def segments(pb, masks):
    return [
        cl.segment(pb, "liver", masks["liver"], LATTICE, name="Liver"),
        cl.segment(pb, "spleen", masks["spleen"], LATTICE, name="Spleen", encoding="BITS", color=SPLEEN_COLOR),
        cl.segment(pb, "kidney", masks["kidney"], LATTICE, name="Kidney"),
    ]


@pytest.fixture(scope="module")
def expected_labels(masks):
    """The label map: segment n gets label n + 1 (label_value 0); a later segment wins where
    segments overlap."""
    return _labels(masks, {"liver": 1, "spleen": 2, "kidney": 3})


def _labels(masks, values):
    lm = np.zeros(LATTICE.shape, np.int32)
    for sid in ("liver", "spleen", "kidney"):
        lm[masks[sid] != 0] = values[sid]
    return lm


def _export_bytes(stub, pb, req) -> bytes:
    """Concatenates the chunks, checking offsets and total_bytes."""
    data = b""
    total = None
    for chunk in stub.Export(req, timeout=60):
        assert chunk.offset == len(data), (chunk.offset, len(data))
        if chunk.total_bytes:
            assert total in (None, chunk.total_bytes)
            total = chunk.total_bytes
        assert not chunk.path, "bytes streamed back name no path"
        data += chunk.data
    assert data, "no bytes exported"
    assert total == len(data), (total, len(data))
    return data


def _lattice_from_matrix(origin, matrix):
    spacing = np.linalg.norm(matrix, axis=0)
    return np.asarray(origin, float), spacing, matrix / spacing


def _check_geometry(origin, spacing, direction, tol):
    np.testing.assert_allclose(origin, LATTICE.origin, atol=tol)
    np.testing.assert_allclose(spacing, LATTICE.spacing, atol=tol)
    np.testing.assert_allclose(np.ravel(direction), LATTICE.direction, atol=tol)


def _read_nrrd_labelmap(path: Path) -> np.ndarray:
    import nrrd

    data, h = nrrd.read(str(path), index_order="C")
    assert h["type"] in ("short", "int16"), f"Slicer's -label.nrrd is short, got {h['type']}"
    assert h["space"] == "left-posterior-superior"
    assert h["encoding"] == "gzip"
    dirs = np.asarray(h["space directions"], float).T  # columns = axis vectors
    _check_geometry(*_lattice_from_matrix(h["space origin"], dirs), tol=1e-9)
    return data


def _read_seg_nrrd(path: Path):
    """Segments of a .seg.nrrd mapped onto the reference lattice: {id: (name, color, mask)}."""
    import nrrd

    data, h = nrrd.read(str(path), index_order="C")
    assert h["space"] == "left-posterior-superior"
    dirs = np.asarray(h["space directions"], float)
    if data.ndim == 4:  # layers: sizes L I J K, space directions none (...) (...) (...)
        assert h["kinds"][0] == "list", h["kinds"]
        data = np.moveaxis(data, -1, 0)
        dirs = dirs[1:]
    else:
        data = data[None]
    matrix = dirs.T
    np.testing.assert_allclose(matrix, LATTICE.matrix(), atol=1e-9)
    offset = np.linalg.solve(matrix, np.asarray(h["space origin"], float) - np.asarray(LATTICE.origin))
    assert np.allclose(offset, np.round(offset), atol=1e-6), f"file grid is not on the reference lattice: {offset}"
    oi, oj, ok = (int(x) for x in np.round(offset))
    _, nk, nj, ni = data.shape
    out = {}
    n = 0
    while f"Segment{n}_ID" in h:
        layer = int(h.get(f"Segment{n}_Layer", n))
        value = int(h.get(f"Segment{n}_LabelValue", 1))
        full = np.zeros(LATTICE.shape, np.uint8)
        full[ok : ok + nk, oj : oj + nj, oi : oi + ni] = data[layer] == value
        color = tuple(float(x) for x in h[f"Segment{n}_Color"].split()) if f"Segment{n}_Color" in h else None
        out[h[f"Segment{n}_ID"]] = (h.get(f"Segment{n}_Name"), color, full)
        n += 1
    return out


def _read_nifti(path: Path) -> np.ndarray:
    import nibabel as nib

    img = nib.load(str(path))
    ras_from_lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps = np.eye(4)
    lps[:3, :3] = LATTICE.matrix()
    lps[:3, 3] = LATTICE.origin
    np.testing.assert_allclose(img.affine, ras_from_lps @ lps, atol=1e-4)  # NIfTI keeps float32
    data = np.asarray(img.dataobj)
    assert np.issubdtype(data.dtype, np.integer), data.dtype
    return data.transpose(2, 1, 0)


def _read_sitk(path: Path, tol: float) -> np.ndarray:
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    _check_geometry(img.GetOrigin(), img.GetSpacing(), img.GetDirection(), tol)
    return sitk.GetArrayFromImage(img)


def _check_file(path: Path, fmt: str, expected_labels, masks, label_values=None):
    if fmt == "LABEL_NRRD":
        np.testing.assert_array_equal(_read_nrrd_labelmap(path), expected_labels)
        np.testing.assert_array_equal(_read_sitk(path, 1e-9), expected_labels)
    elif fmt == "NIFTI_GZ":
        np.testing.assert_array_equal(_read_nifti(path), expected_labels)
        np.testing.assert_array_equal(_read_sitk(path, 1e-4), expected_labels)
    else:
        segs = _read_seg_nrrd(path)
        assert list(segs) == ["liver", "spleen", "kidney"], list(segs)
        for sid, name in (("liver", "Liver"), ("spleen", "Spleen"), ("kidney", "Kidney")):
            got_name, color, mask = segs[sid]
            assert got_name == name
            np.testing.assert_array_equal(mask, masks[sid], err_msg=sid)
        np.testing.assert_allclose(segs["spleen"][1], SPLEEN_COLOR, atol=1e-6)
        if label_values:
            import nrrd

            h = nrrd.read_header(str(path))
            ids = {h[f"Segment{n}_ID"]: n for n in range(len(segs))}
            for sid, value in label_values.items():
                assert int(h[f"Segment{ids[sid]}_LabelValue"]) == value, sid


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_export_to_bytes(stub, pb, volume, segments, masks, expected_labels, tmp_path, fmt):
    """Export with an empty path streams the file's bytes back in order (offsets and
    total_bytes consistent); the file has the volume's geometry (LPS) and the segments'
    voxels: labels by position or label_value, later segments winning overlaps; a
    .seg.nrrd keeps every segment with its id, name and colour, overlaps included."""
    req = pb.ExportRequest(
        volume_id=volume.volume_id, segments=segments, format=pb.ExportFormat.Value(f"EXPORT_FORMAT_{fmt}")
    )
    path = tmp_path / f"export{FORMATS[fmt]}"
    path.write_bytes(_export_bytes(stub, pb, req))
    _check_file(path, fmt, expected_labels, masks)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_export_to_a_path(stub, pb, shared_fs, volume, segments, masks, expected_labels, tmp_path, fmt):
    """Export with a path writes the file on the engine's machine and answers the path in
    its last chunk, with no data."""
    path = tmp_path / f"written{FORMATS[fmt]}"
    req = pb.ExportRequest(
        volume_id=volume.volume_id,
        segments=segments,
        format=pb.ExportFormat.Value(f"EXPORT_FORMAT_{fmt}"),
        path=str(path),
    )
    chunks = list(stub.Export(req, timeout=60))
    assert chunks and chunks[-1].path == str(path), [c.path for c in chunks]
    assert all(not c.data for c in chunks), "nothing is streamed back when writing to a path"
    _check_file(path, fmt, expected_labels, masks)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_export_keeps_label_values(stub, pb, info, request, volume, masks, tmp_path, fmt):
    """A segment's label_value (when not 0) is its label in the exported label map and its
    LabelValue in a .seg.nrrd; the others keep their position + 1."""
    segs = [
        cl.segment(pb, "liver", masks["liver"], LATTICE, name="Liver"),
        cl.segment(pb, "spleen", masks["spleen"], LATTICE, name="Spleen", color=SPLEEN_COLOR, label_value=5),
        cl.segment(pb, "kidney", masks["kidney"], LATTICE, name="Kidney", label_value=7),
    ]
    req = pb.ExportRequest(volume_id=volume.volume_id, segments=segs, format=pb.ExportFormat.Value(f"EXPORT_FORMAT_{fmt}"))
    path = tmp_path / f"labels{FORMATS[fmt]}"
    path.write_bytes(_export_bytes(stub, pb, req))
    values = {"liver": 1, "spleen": 5, "kidney": 7}
    _check_file(path, fmt, _labels(masks, values), masks, label_values=values)


def test_export_takes_the_lattice_from_the_segments(stub, pb, segments, expected_labels, tmp_path):
    """Without a volume_id the segments' geometry is the lattice."""
    req = pb.ExportRequest(segments=segments, format=pb.EXPORT_FORMAT_LABEL_NRRD)
    path = tmp_path / "no-volume-label.nrrd"
    path.write_bytes(_export_bytes(stub, pb, req))
    np.testing.assert_array_equal(_read_nrrd_labelmap(path), expected_labels)


def test_export_unknown_volume_is_not_found(stub, pb, segments, expect_error):
    """Export naming a volume the engine does not hold is NOT_FOUND."""
    req = pb.ExportRequest(volume_id="f" * 32, segments=segments, format=pb.EXPORT_FORMAT_LABEL_NRRD)
    expect_error(lambda: stub.Export(req, timeout=30), grpc.StatusCode.NOT_FOUND)


def test_export_without_format_is_invalid(stub, pb, volume, segments, expect_error):
    """Export with EXPORT_FORMAT_UNSPECIFIED is INVALID_ARGUMENT."""
    req = pb.ExportRequest(volume_id=volume.volume_id, segments=segments)
    expect_error(lambda: stub.Export(req, timeout=30), grpc.StatusCode.INVALID_ARGUMENT)


def test_export_segment_off_the_lattice_is_invalid(stub, pb, volume, masks, expect_error):
    """A segment whose geometry is not the volume's is INVALID_ARGUMENT, naming the segment."""
    off = cl.segment(pb, "moved-seg", masks["liver"], LATTICE.moved(origin=(0.0, 0.0, 0.0)))
    req = pb.ExportRequest(volume_id=volume.volume_id, segments=[off], format=pb.EXPORT_FORMAT_LABEL_NRRD)
    expect_error(lambda: stub.Export(req, timeout=30), grpc.StatusCode.INVALID_ARGUMENT, "moved-seg")


def test_large_export_streams_in_order(stub, pb, tmp_path):
    """An export larger than one chunk arrives as chunks in order that make up the file."""
    lat = cl.Lattice(size=(256, 256, 128), origin=(1.0, 2.0, 3.0), spacing=(0.7, 0.7, 1.5))
    rng = np.random.default_rng(5)
    mask = (rng.random(lat.shape) < 0.5).astype(np.uint8)
    seg = cl.segment(pb, "noise", mask, lat, encoding="BITS")
    req = pb.ExportRequest(segments=[seg], format=pb.EXPORT_FORMAT_LABEL_NRRD)
    path = tmp_path / "noise-label.nrrd"
    path.write_bytes(_export_bytes(stub, pb, req))
    import nrrd

    data, _ = nrrd.read(str(path), index_order="C")
    np.testing.assert_array_equal(data, mask)
