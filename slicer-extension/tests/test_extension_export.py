"""The Save flow: Slicer's own export of segments to a `-label.nrrd`, and the engine's
Export of the same segments, give the same file contents.

Slicer's side is what "Export to labelmap" + Save do (reference §5.1):
`vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode` with the CT as
reference, then `vtkMRMLVolumeArchetypeStorageNode` writes the labelmap node. The file
is checked with pynrrd (short, LPS, the CT's geometry, labels = segment order + 1, later
segments winning overlaps), then compared with `EngineLogic.export` (engine Export,
EXPORT_FORMAT_LABEL_NRRD). The engine's `.seg.nrrd` is read back by Slicer's
segmentation storage node.
"""

from __future__ import annotations

import nrrd
import numpy as np
import pytest

import slicer_reference as ref


@pytest.fixture(scope="module")
def segmented(scene_volume, expert, logic):
    """A segmentation of CTChest4 made through the engine: lungs (threshold, then keep
    largest island), the expert right lung, and a box overlapping both (last, so it wins
    overlaps in label maps)."""
    _, volume = scene_volume
    w = ref.World(scene_volume[0], volume, "Segmentation",
                  segments=(("lungs", "Lungs"), ("other", "Right lung"), ("box", "Box")))
    w.set_masking(overwrite="None")  # keep overlaps, so export order matters
    w.paint("other", (expert == 5).astype(np.uint8))
    logic.apply("Threshold", {"MinimumThreshold": -1024, "MaximumThreshold": -500}, volume, w.seg,
                "lungs", w.editor)
    logic.apply("Islands", {"Operation": "KEEP_LARGEST_ISLAND", "MinimumSize": 1000}, volume, w.seg,
                "lungs", w.editor)
    box = np.zeros(ref.image_array(volume.GetImageData()).shape, dtype=np.uint8)
    box[10:20, 40:80, 30:90] = 1
    w.paint("box", box)
    return w


def ct_geometry_lps(volume):
    """(space origin, space directions rows) of the CT in LPS, from its IJK->RAS matrix."""
    import vtk

    m = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(m)
    a = np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])
    flip = np.diag([-1.0, -1.0, 1.0])
    return flip @ a[:3, 3], (flip @ a[:3, :3]).T  # NRRD rows = axis vectors


def expected_labels(world) -> np.ndarray:
    out = np.zeros(world.mask("lungs").shape, dtype=np.int16)
    for n, sid in enumerate(world.segment_ids()):
        out[world.mask(sid) != 0] = n + 1  # later segments win
    return out


def slicer_save_label_nrrd(world, volume, path):
    """Export to labelmap node with the CT as reference, then save it as Slicer does."""
    import slicer
    import vtk

    labelmap = slicer.vtkMRMLLabelMapVolumeNode()
    labelmap.SetName(f"{world.seg.GetName()}-label")
    world.scene.AddNode(labelmap)
    ids = vtk.vtkStringArray()
    for sid in world.segment_ids():
        ids.InsertNextValue(sid)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(world.seg, ids, labelmap, volume)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    world.scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.WriteData(labelmap), f"Slicer could not write {path}"


def test_label_nrrd_matches_slicers_save(segmented, scene_volume, logic, tmp_path, parity):
    _, volume = scene_volume
    slicer_path = tmp_path / "Segmentation-label.nrrd"
    engine_path = tmp_path / "engine-label.nrrd"
    slicer_save_label_nrrd(segmented, volume, slicer_path)
    logic.export(segmented.seg, volume, str(engine_path), "label.nrrd")

    origin, directions = ct_geometry_lps(volume)
    expected = expected_labels(segmented)
    files = {}
    for who, path in (("Slicer", slicer_path), ("engine", engine_path)):
        data, header = nrrd.read(str(path), index_order="C")
        files[who] = (data, header)
        assert header["type"] == "short", f"{who}: type {header['type']}"
        assert header["space"] == "left-posterior-superior", who
        assert list(header["sizes"]) == list(volume.GetImageData().GetDimensions()), who
        assert np.allclose(header["space origin"], origin, atol=1e-6), who
        assert np.allclose(header["space directions"], directions, atol=1e-6), who
        assert data.dtype == np.int16
        assert np.array_equal(data, expected), f"{who}: labels differ from the segments"

    (a, ha), (b, hb) = files["engine"], files["Slicer"]
    parity("Save as -label.nrrd (Slicer export vs engine Export)", "all labels",
           int(np.count_nonzero(b)), int(np.count_nonzero(a)), int(np.count_nonzero(a != b)))
    assert np.array_equal(a, b)
    assert set(np.unique(a)) == {0, 1, 2, 3}
    for key in ("sizes", "space origin", "space directions", "kinds"):
        assert np.array_equal(np.asarray(ha[key]), np.asarray(hb[key])) or np.allclose(
            np.asarray(ha[key], dtype=float), np.asarray(hb[key], dtype=float), atol=1e-9), key


def test_seg_nrrd_reads_back_in_slicer(segmented, scene_volume, logic, tmp_path, parity):
    """The engine's .seg.nrrd loads in Slicer with the same segment names and voxels."""
    import slicer

    _, volume = scene_volume
    path = tmp_path / "engine.seg.nrrd"
    logic.export(segmented.seg, volume, str(path))
    loaded = ref.World(segmented.scene, volume, "loaded", segments=())
    storage = slicer.vtkMRMLSegmentationStorageNode()
    segmented.scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(loaded.seg), f"Slicer could not read {path}"
    assert loaded.segment_names() == segmented.segment_names()
    for sid_a, sid_b in zip(loaded.segment_ids(), segmented.segment_ids()):
        a, b = loaded.mask(sid_a), segmented.mask(sid_b)
        differing = int(np.count_nonzero(a != b))
        parity("Save as .seg.nrrd (engine Export, read by Slicer)", sid_b, int(b.sum()), int(a.sum()), differing)
        assert differing == 0


def test_export_format_is_checked(segmented, scene_volume, logic, tmp_path):
    _, volume = scene_volume
    with pytest.raises(ValueError, match="unknown export format"):
        logic.export(segmented.seg, volume, str(tmp_path / "x.png"))


def test_nifti_export_has_the_labels_and_the_ras_affine(segmented, scene_volume, logic, tmp_path):
    """.nii.gz: the same labels, and an affine equal to Slicer's IJK->RAS of the CT."""
    import nibabel
    import vtk

    _, volume = scene_volume
    path = tmp_path / "engine.nii.gz"
    logic.export(segmented.seg, volume, str(path), "nii.gz")
    image = nibabel.load(str(path))
    m = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(m)
    ijk_to_ras = np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])
    assert np.allclose(image.affine, ijk_to_ras, atol=1e-4)   # NIfTI stores float32
    data = np.asarray(image.dataobj).transpose(2, 1, 0)      # nibabel is [i][j][k]
    assert np.array_equal(data, expected_labels(segmented))
