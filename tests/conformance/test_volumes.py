"""Volumes: UploadVolume, GetVolume, OpenVolume and their content-derived ids."""

import grpc
import numpy as np
import pytest

import conformance_lib as cl
from conformance_lib import LATTICE


def test_upload_in_chunks_answers_an_id_and_the_header(pb, volume, volume_array):
    """An upload in many small chunks answers a volume_id, the header as the engine holds
    it (geometry, scalar type, total bytes), and the value range. (The name is for messages
    only: a volume already held may keep the name it came with.)"""
    assert volume.volume_id
    h = volume.header
    cl.assert_same_lattice(h.geometry, LATTICE)
    assert h.scalar_type == pb.SCALAR_TYPE_INT16
    assert h.total_bytes == volume_array.nbytes
    assert volume.minimum_value == volume_array.min()
    assert volume.maximum_value == volume_array.max()


def test_same_content_gives_the_same_id(stub, pb, volume, volume_array):
    """Uploading the same voxels and geometry again (in other chunks) gives the same id, so
    a client can tell the engine already holds a volume."""
    again = cl.upload(stub, pb, volume_array, LATTICE, chunk_bytes=777, name="another name")
    assert again.volume_id == volume.volume_id
    once = cl.upload(stub, pb, volume_array, LATTICE, chunk_bytes=volume_array.nbytes)
    assert once.volume_id == volume.volume_id


def test_different_geometry_gives_another_id(stub, pb, volume, volume_array):
    """The id covers the geometry: the same voxels elsewhere, with another spacing or
    another direction are other volumes."""
    ids = {volume.volume_id}
    for lat in (
        LATTICE.moved(origin=(-20.0, 35.5, 101.25)),
        LATTICE.moved(spacing=(0.5, 1.25, 2.5)),
        LATTICE.moved(direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)),
    ):
        ids.add(cl.upload(stub, pb, volume_array, lat).volume_id)
    assert len(ids) == 4, ids


def test_different_voxels_or_type_give_another_id(stub, pb, volume, volume_array):
    """The id covers the voxels and their type: one changed voxel, or the same bytes read as
    another type, make another volume."""
    changed = volume_array.copy()
    changed[0, 0, 0] ^= 1
    a = cl.upload(stub, pb, changed, LATTICE).volume_id
    b = cl.upload(stub, pb, volume_array.view(np.uint16), LATTICE).volume_id
    assert len({volume.volume_id, a, b}) == 3


@pytest.mark.parametrize(
    "dtype", ["uint8", "int8", "uint16", "uint32", "int32", "int64", "uint64", "float32", "float64"]
)
def test_every_scalar_type_uploads(stub, pb, dtype):
    """Every ScalarType uploads and reports its value range."""
    arr = (np.arange(np.prod(LATTICE.shape)) % 100).reshape(LATTICE.shape).astype(dtype)
    ref = cl.upload(stub, pb, arr, LATTICE, chunk_bytes=1000)
    assert ref.header.scalar_type == pb.ScalarType.Value(cl.SCALAR_TYPES[np.dtype(dtype)])
    assert ref.header.total_bytes == arr.nbytes
    assert (ref.minimum_value, ref.maximum_value) == (0, 99)


def test_get_volume(stub, pb, volume):
    """GetVolume on a held id answers the same VolumeRef as the upload."""
    got = stub.GetVolume(pb.GetVolumeRequest(volume_id=volume.volume_id), timeout=10)
    assert got.volume_id == volume.volume_id
    cl.assert_same_lattice(got.header.geometry, LATTICE)
    assert got.header.scalar_type == volume.header.scalar_type
    assert got.header.total_bytes == volume.header.total_bytes
    assert (got.minimum_value, got.maximum_value) == (volume.minimum_value, volume.maximum_value)


def test_get_unknown_volume_is_not_found(stub, pb, expect_error):
    """An id the engine does not hold is NOT_FOUND (the client then uploads again)."""
    expect_error(
        lambda: stub.GetVolume(pb.GetVolumeRequest(volume_id="0" * 32), timeout=10),
        grpc.StatusCode.NOT_FOUND,
    )


def _nrrd_lattice(header) -> cl.Lattice:
    """Lattice of a 3-D pynrrd header, in LPS."""
    dirs = np.array(header["space directions"], dtype=float)  # row a = vector of axis a
    origin = np.array(header["space origin"], dtype=float)
    space = header.get("space", "left-posterior-superior")
    flip = {"left-posterior-superior": np.ones(3), "right-anterior-superior": np.array([-1.0, -1.0, 1.0])}[space]
    dirs = dirs * flip
    origin = origin * flip
    spacing = np.linalg.norm(dirs, axis=1)
    direction = (dirs / spacing[:, None]).T  # columns = unit vectors
    return cl.Lattice(tuple(int(s) for s in header["sizes"]), tuple(origin), tuple(spacing), tuple(direction.ravel()))


@pytest.fixture(scope="module")
def chest_nrrd(data_dir):
    p = data_dir / "slicerio/slicerio/data/CTChest4.nrrd"
    if not p.exists():
        cl.missing(f"{p} not found (set SEGKIT_TEST_DATA)")
    return p


def test_open_volume_by_path(stub, pb, shared_fs, chest_nrrd):
    """OpenVolume on a NRRD file reads it on the engine's machine: the same voxel range and
    geometry (LPS) as pynrrd reads."""
    import nrrd

    data, header = nrrd.read(str(chest_nrrd), index_order="C")
    ref = stub.OpenVolume(pb.OpenVolumeRequest(path=str(chest_nrrd)), timeout=120)
    assert ref.volume_id
    lat = _nrrd_lattice(header)
    cl.assert_same_lattice(ref.header.geometry, lat, tol=1e-6)
    assert ref.header.total_bytes == data.nbytes
    assert ref.header.scalar_type == pb.ScalarType.Value(cl.SCALAR_TYPES[data.dtype.newbyteorder("=")])
    assert (ref.minimum_value, ref.maximum_value) == (data.min(), data.max())
    got = stub.GetVolume(pb.GetVolumeRequest(volume_id=ref.volume_id), timeout=10)
    assert got.volume_id == ref.volume_id


def test_opened_and_uploaded_volumes_share_the_id(stub, pb, shared_fs, chest_nrrd):
    """The id is derived from the content whichever way the volume arrived: uploading the
    voxels of an opened file with the geometry the engine reported gives the same id."""
    import nrrd

    data, _ = nrrd.read(str(chest_nrrd), index_order="C")
    ref = stub.OpenVolume(pb.OpenVolumeRequest(path=str(chest_nrrd)), timeout=120)
    up = cl.upload(stub, pb, data.astype(data.dtype.newbyteorder("<")), cl.Lattice.from_pb(ref.header.geometry))
    assert up.volume_id == ref.volume_id


def test_open_missing_path_is_not_found(stub, pb, shared_fs, tmp_path, expect_error):
    """OpenVolume on a path that does not exist is NOT_FOUND, naming the path."""
    missing = tmp_path / "no-such-volume.nrrd"
    expect_error(
        lambda: stub.OpenVolume(pb.OpenVolumeRequest(path=str(missing)), timeout=30),
        grpc.StatusCode.NOT_FOUND,
        "no-such-volume.nrrd",
    )


def test_open_a_file_that_is_not_a_volume(stub, pb, shared_fs, tmp_path, expect_error):
    """OpenVolume on a file that is no volume is INVALID_ARGUMENT or UNIMPLEMENTED, with a
    message that names the file."""
    notes = tmp_path / "meeting-notes.txt"
    notes.write_text("not a volume\n" * 20)
    expect_error(
        lambda: stub.OpenVolume(pb.OpenVolumeRequest(path=str(notes)), timeout=30),
        (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED),
        "meeting-notes.txt",
    )
    fake = tmp_path / "fake.nrrd"
    fake.write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4\n\n")
    expect_error(
        lambda: stub.OpenVolume(pb.OpenVolumeRequest(path=str(fake)), timeout=30),
        (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED),
        "fake.nrrd",
    )


def test_open_empty_path_is_invalid(stub, pb, expect_error):
    """OpenVolume without a path is INVALID_ARGUMENT."""
    expect_error(lambda: stub.OpenVolume(pb.OpenVolumeRequest(path=""), timeout=10), grpc.StatusCode.INVALID_ARGUMENT)


def test_evicted_volume_is_not_found_then_uploads_again(segkit_bin, pbs, tmp_path):
    """A local engine with a 1 MiB cache evicts the least recently used volume: GetVolume
    on it is NOT_FOUND, and uploading it again gives the same id (an eviction, like a
    restart, loses nothing that matters)."""
    pb = pbs.pb
    proc = cl.start_engine(segkit_bin, tmp_path / "engine.log", "--cache-mb", "1")
    channel = cl.open_channel(proc.address)
    try:
        stub = pbs.grpc.EngineStub(channel)
        lat = cl.Lattice(size=(128, 128, 20))
        a = np.full(lat.shape, 1, np.int16)  # 640 KiB each: two do not fit
        b = np.full(lat.shape, 2, np.int16)
        ida = cl.upload(stub, pb, a, lat).volume_id
        idb = cl.upload(stub, pb, b, lat).volume_id
        assert stub.GetVolume(pb.GetVolumeRequest(volume_id=idb), timeout=10).volume_id == idb
        with pytest.raises(grpc.RpcError) as e:
            stub.GetVolume(pb.GetVolumeRequest(volume_id=ida), timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as e:
            stub.ApplyEffect(pb.ApplyEffectRequest(effect="Threshold", volume_id=ida), timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        assert cl.upload(stub, pb, a, lat).volume_id == ida
        assert stub.GetVolume(pb.GetVolumeRequest(volume_id=ida), timeout=10).volume_id == ida
    finally:
        channel.close()
        assert proc.stop() == 0, proc.log_text()


# ---------------------------------------------------------------------------------------
# DownloadVolume


def _download(stub, pb, volume_id):
    """The DownloadVolume stream, checked: the VolumeRef in the first message only, then the
    bytes in order (each offset = the bytes received so far). Answers (ref, bytes)."""
    chunks = list(stub.DownloadVolume(pb.GetVolumeRequest(volume_id=volume_id), timeout=120))
    assert chunks and chunks[0].HasField("volume"), "the first message carries the VolumeRef"
    ref = chunks[0].volume
    data = bytearray(chunks[0].data)
    assert chunks[0].offset == 0 or not chunks[0].data
    for c in chunks[1:]:
        assert not c.HasField("volume"), "a VolumeRef after the first message"
        assert c.offset == len(data), f"chunk at offset {c.offset}, {len(data)} bytes received so far"
        data += c.data
    return ref, bytes(data)


@pytest.mark.parametrize("dtype, shape", [("int16", None), ("uint8", None), ("float32", None),
                                          ("float64", None), ("int16", (128, 128, 40))])
def test_download_gives_back_the_uploaded_bytes_and_header(stub, pb, volume, volume_array, dtype, shape):
    """Uploading then downloading gives the same little-endian [k][j][i] bytes and the same
    header (geometry, scalar type, total bytes), the same id and value range; a volume of
    more than a megabyte comes in several chunks."""
    lat = LATTICE if shape is None else cl.Lattice(size=shape, origin=(1.5, -2.0, 30.0), spacing=(0.8, 0.8, 2.5))
    if shape is None and dtype == "int16":
        arr, up = volume_array, volume
    else:
        rng = np.random.default_rng(17)
        arr = (rng.random(lat.shape) * 2000 - 1000).astype(dtype)
        up = cl.upload(stub, pb, arr, lat, chunk_bytes=65536)
    ref, data = _download(stub, pb, up.volume_id)
    assert ref.volume_id == up.volume_id
    cl.assert_same_lattice(ref.header.geometry, lat)
    assert ref.header.scalar_type == pb.ScalarType.Value(cl.SCALAR_TYPES[np.dtype(dtype)])
    assert ref.header.total_bytes == arr.nbytes == len(data)
    assert data == np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
    assert (ref.minimum_value, ref.maximum_value) == (arr.min(), arr.max())


def test_download_of_an_unknown_volume_is_not_found(stub, pb, expect_error):
    """DownloadVolume of an id the engine does not hold is NOT_FOUND; without an id,
    INVALID_ARGUMENT."""
    expect_error(lambda: stub.DownloadVolume(pb.GetVolumeRequest(volume_id="f" * 32), timeout=10),
                 grpc.StatusCode.NOT_FOUND, "f" * 32)
    expect_error(lambda: stub.DownloadVolume(pb.GetVolumeRequest(volume_id=""), timeout=10),
                 (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND))
