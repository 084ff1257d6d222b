"""Unit tests of the conversions at the Slicer <-> engine edge: RAS <-> LPS, extents that
do not start at 0, the proto's bit and run-length mask layouts, and round trips.

The mask layouts are checked against byte strings written out from the proto's comments
(and the engine's own test vector), and against the engine itself decoding what the
client encodes.
"""

from __future__ import annotations

import numpy as np
import pytest

from segkit_slicer import masks
from segkit_slicer.geometry import (
    Lattice,
    ijk_to_ras_for_extent,
    lattice_from_ijk_to_ras,
    lps_to_ras,
    ras_to_lps,
)


def rotation(ax, ay, az):
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def oblique_ijk_to_ras(spacing=(0.5, 0.75, 2.0), origin=(-10.0, 20.0, 30.0)):
    m = np.eye(4)
    m[:3, :3] = rotation(0.3, -0.2, 0.7) * np.asarray(spacing)[None, :]
    m[:3, 3] = origin
    return m


# ---------------------------------------------------------------------------------------
# Geometry

def test_ras_and_lps_negate_x_and_y():
    assert np.allclose(ras_to_lps([1.0, 2.0, 3.0]), [-1.0, -2.0, 3.0])
    assert np.allclose(lps_to_ras(ras_to_lps([4.0, -5.0, 6.0])), [4.0, -5.0, 6.0])


def test_axis_aligned_ras_volume_becomes_negative_lps_directions():
    # CTChest4: IJK->RAS has a positive diagonal, so LPS directions are -1, -1, +1.
    m = np.diag([3.046875953674319, 3.046875953674319, 10.0, 1.0])
    m[:3, 3] = (-193.096, -216.396, -340.25)
    lattice = lattice_from_ijk_to_ras(m, (0, 127, 0, 127, 0, 33))
    assert lattice.size == (128, 128, 34)
    assert lattice.shape == (34, 128, 128)
    assert np.allclose(lattice.origin, (193.096, 216.396, -340.25))
    assert np.allclose(lattice.spacing, (3.046875953674319, 3.046875953674319, 10.0))
    assert np.allclose(lattice.direction_matrix(), np.diag([-1.0, -1.0, 1.0]))


def test_extent_not_starting_at_zero_and_oblique_axes():
    m = oblique_ijk_to_ras()
    extent = (5, 12, 3, 9, 2, 6)
    start = np.array([5, 3, 2])
    lattice = lattice_from_ijk_to_ras(m, extent)
    assert lattice.size == (8, 7, 5)
    # Every voxel of the extent lands where Slicer's matrix puts it.
    index_to_ras = lattice.index_to_ras()
    for ijk in [(5, 3, 2), (12, 9, 6), (7, 4, 5), (12, 3, 2)]:
        expected = m @ np.array([*ijk, 1.0])
        got = index_to_ras @ np.array([*(np.array(ijk) - start), 1.0])
        assert np.allclose(got, expected)
    # Directions are unit columns, in LPS.
    d = lattice.direction_matrix()
    assert np.allclose(np.linalg.norm(d, axis=0), 1.0)
    assert np.allclose(np.diag([-1.0, -1.0, 1.0]) @ d, m[:3, :3] / np.array([0.5, 0.75, 2.0]))
    # And back.
    assert np.allclose(ijk_to_ras_for_extent(lattice, start), m)


def test_lattice_proto_round_trip_and_matching():
    lattice = lattice_from_ijk_to_ras(oblique_ijk_to_ras(), (0, 9, 0, 4, 0, 2))
    back = Lattice.from_pb(lattice.to_pb())
    assert back == lattice
    assert lattice.matches(back)
    shifted = Lattice(lattice.size, tuple(np.add(lattice.origin, (0.01, 0, 0))), lattice.spacing, lattice.direction)
    assert not lattice.matches(shifted)
    assert lattice.matches(shifted, tolerance_mm=0.02)
    other_size = Lattice((10, 5, 4), lattice.origin, lattice.spacing, lattice.direction)
    assert not lattice.matches(other_size)
    with pytest.raises(ValueError):
        Lattice((0, 1, 1), (0, 0, 0), (1, 1, 1), tuple(np.eye(3).reshape(-1)))


def test_vtk_oriented_image_round_trip():
    from segkit_slicer.geometry import image_ijk_to_ras, image_lattice, image_to_array, new_image

    m = oblique_ijk_to_ras()
    lattice = lattice_from_ijk_to_ras(m, (5, 12, 3, 9, 2, 6))
    values = np.arange(np.prod(lattice.shape), dtype=np.int16).reshape(lattice.shape)
    image = new_image(lattice, (5, 3, 2), values)
    assert image.GetExtent() == (5, 12, 3, 9, 2, 6)
    assert np.allclose(image_ijk_to_ras(image), m)
    back, start = image_lattice(image)
    assert start == (5, 3, 2)
    assert back.matches(lattice, tolerance_mm=1e-9)
    assert np.array_equal(image_to_array(image), values)
    # vtk stores i fastest: voxel (i, j, k) = (6, 3, 2) is flat index 1.
    assert image.GetScalarComponentAsDouble(6, 3, 2, 0) == values[0, 0, 1]


def test_slicer_reference_geometry_string():
    """The serialized reference geometry of the reference's §1.1 example."""
    import slicer

    text = "-0.5;0;0;-10;0;-0.75;0;20;0;0;2;30;0;0;0;1;3;7;2;6;1;5;"
    image = slicer.vtkOrientedImageData()
    assert slicer.vtkSegmentationConverter.DeserializeImageGeometry(text, image, False)
    from segkit_slicer.geometry import image_lattice

    lattice, start = image_lattice(image)
    assert start == (3, 2, 1)
    assert lattice.size == (5, 5, 5)
    assert np.allclose(lattice.spacing, (0.5, 0.75, 2.0))
    assert np.allclose(lattice.direction_matrix(), np.eye(3))  # -RAS x, -RAS y = +LPS
    # First voxel (3, 2, 1): RAS (-10 - 1.5, 20 - 1.5, 30 + 2) -> LPS (11.5, -18.5, 32).
    assert np.allclose(lattice.origin, (11.5, -18.5, 32.0))


def test_geometry_matches_the_nrrd_header(scene_volume, ct_path):
    """Slicer's RAS matrix of CTChest4, converted, is the file's own LPS header."""
    import nrrd
    import vtk

    _, volume = scene_volume
    m = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(m)
    lattice = lattice_from_ijk_to_ras(m, volume.GetImageData().GetExtent())
    header = nrrd.read_header(str(ct_path))
    assert header["space"] == "left-posterior-superior"
    assert np.allclose(lattice.origin, header["space origin"], atol=1e-9)
    axes = lattice.direction_matrix() * np.asarray(lattice.spacing)[None, :]
    assert np.allclose(axes.T, header["space directions"], atol=1e-9)
    assert list(lattice.size) == list(header["sizes"])


# ---------------------------------------------------------------------------------------
# Mask layouts (engine.proto, MaskEncoding)

def test_bits_are_least_significant_first_and_padded():
    values = np.array([1, 0, 1, 1, 0, 0, 0, 0, 1], dtype=np.uint8)
    data = masks.pack_bits(values)
    assert data == bytes([0b00001101, 0b00000001])
    assert np.array_equal(masks.unpack_bits(data, 9), values)
    with pytest.raises(masks.MaskError, match="holds 3 bytes, 9 voxels need 2"):
        masks.unpack_bits(data + b"\x00", 9)


def test_runs_start_with_zeros_and_use_varints():
    # The engine's own test vector: 0 zeros, 200 ones (two bytes), 1 zero.
    assert masks.encode_runs(np.array([1] * 200 + [0])) == bytes([0, 0xC8, 0x01, 1])
    assert masks.encode_runs(np.array([0, 0, 1, 1, 1, 0])) == bytes([2, 3, 1])
    assert masks.encode_runs(np.zeros(5)) == bytes([5])
    assert masks.encode_runs(np.ones(3)) == bytes([0, 3])
    assert np.array_equal(masks.decode_runs(bytes([0, 0xC8, 0x01, 1]), 201), [1] * 200 + [0])
    assert np.array_equal(masks.decode_runs(bytes([2, 3, 1]), 6), [0, 0, 1, 1, 1, 0])


def test_varints():
    numbers = np.array([0, 1, 127, 128, 300, 16383, 16384, 2**32, 2**63 - 1, 2**64 - 1], dtype=np.uint64)
    data = masks.encode_varints(numbers)
    assert masks.encode_varints(np.array([300], dtype=np.uint64)) == b"\xac\x02"
    assert np.array_equal(masks.decode_varints(data), numbers)
    with pytest.raises(masks.MaskError, match="ends inside"):
        masks.decode_varints(b"\x05\x80")
    with pytest.raises(masks.MaskError, match="64 bits"):
        masks.decode_varints(b"\xff" * 10 + b"\x01")
    with pytest.raises(masks.MaskError, match="64 bits"):
        masks.decode_varints(b"\xff" * 9 + b"\x02")
    with pytest.raises(masks.MaskError, match="add up to 7"):
        masks.decode_runs(bytes([2, 5]), 6)


@pytest.mark.parametrize("density", [0.0, 0.001, 0.3, 0.9, 1.0])
@pytest.mark.parametrize("encoding", ["bits", "runs", "smallest"])
def test_masks_round_trip_cropped_to_their_box(density, encoding):
    rng = np.random.default_rng(int(density * 1000) + len(encoding))
    shape = (7, 11, 13)
    mask = (rng.random(shape) < density).astype(np.uint8)
    encoded = masks.encode_mask(mask, encoding)
    if not mask.any():
        assert encoded.extent is None and encoded.data == b""
    else:
        nz = np.argwhere(mask)
        (k0, j0, i0), (k1, j1, i1) = nz.min(axis=0), nz.max(axis=0)
        assert encoded.extent == (i0, i1, j0, j1, k0, k1)
    back = masks.decode_mask(encoded.extent, encoded.encoding, encoded.data, shape)
    assert back.dtype == np.uint8
    assert np.array_equal(back, mask)


def test_single_voxel_in_a_corner_and_smallest_choice():
    mask = np.zeros((4, 5, 6), dtype=np.uint8)
    mask[3, 4, 5] = 1
    e = masks.encode_mask(mask, "runs")
    assert e.extent == (5, 5, 4, 4, 3, 3) and e.data == bytes([0, 1])
    # A checkerboard packs smaller as bits than as runs.
    board = (np.indices((4, 8, 8)).sum(axis=0) % 2).astype(np.uint8)
    assert masks.encode_mask(board, "smallest").encoding == "bits"
    assert masks.encode_mask(np.ones((4, 8, 8), np.uint8), "smallest").encoding == "runs"


def test_bad_extents_and_data_are_refused():
    with pytest.raises(masks.MaskError, match="outside the lattice"):
        masks.decode_mask((0, 6, 0, 0, 0, 0), "bits", b"\x00", (1, 1, 6))
    with pytest.raises(masks.MaskError, match="without an extent"):
        masks.decode_mask(None, "runs", b"\x01", (1, 1, 1))
    with pytest.raises(masks.MaskError, match="segment 3"):
        masks.decode_mask((0, 1, 0, 0, 0, 0), "runs", b"\x05", (1, 1, 2), what="segment 3")


def test_mask_messages_carry_the_lattice():
    from segkit_slicer.logic import EngineResultError, mask_from_pb, mask_to_pb

    lattice = lattice_from_ijk_to_ras(oblique_ijk_to_ras(), (0, 9, 0, 4, 0, 2))
    mask = np.zeros(lattice.shape, dtype=np.uint8)
    mask[1, 2:4, 3:9] = 1
    m = mask_to_pb(mask, lattice)
    assert (m.extent.i_min, m.extent.i_max, m.extent.j_min, m.extent.j_max, m.extent.k_min, m.extent.k_max) == \
        (3, 8, 2, 3, 1, 1)
    assert np.array_equal(mask_from_pb(m, lattice), mask)
    other = Lattice(lattice.size, tuple(np.add(lattice.origin, 1.0)), lattice.spacing, lattice.direction)
    with pytest.raises(EngineResultError, match="another lattice"):
        mask_from_pb(m, other)


@pytest.mark.parametrize("request_encoding", ["bits", "runs"])
@pytest.mark.parametrize("result_encoding", ["bits", "runs"])
def test_engine_decodes_what_the_client_encodes(engine, request_encoding, result_encoding):
    """Islands REMOVE_SMALL_ISLANDS with MinimumSize 0 keeps every island: the modifier
    the engine answers is the segment the client sent, through both encodings."""
    from segkit_slicer.client import EngineClient
    from segkit_slicer.logic import PreparedEffect, SegmentInput, mask_from_pb
    from segkit_slicer.proto.segkit.v1 import engine_pb2 as pb

    lattice = lattice_from_ijk_to_ras(oblique_ijk_to_ras(), (2, 41, 1, 30, 3, 19))
    rng = np.random.default_rng(7)
    mask = (rng.random(lattice.shape) < 0.35).astype(np.uint8)
    mask[:, :, 0] = 0  # an extent that does not start at the lattice's first voxel
    prepared = PreparedEffect(
        effect="Islands", parameters={"Operation": "REMOVE_SMALL_ISLANDS", "MinimumSize": "0"},
        lattice=lattice, extent_start=(2, 1, 3), source=None,
        segments=[SegmentInput("s", "S", True, mask)], selected_segment_id="s")
    request = prepared.request(encoding=result_encoding)
    encoded = masks.encode_mask(mask, request_encoding)
    request.segments[0].mask.encoding = pb.MASK_ENCODING_BITS if encoded.encoding == "bits" else pb.MASK_ENCODING_RUNS
    request.segments[0].mask.data = encoded.data
    with EngineClient(engine.address) as client:
        reply = client.apply_effect(request)
    (modifier,) = reply.modifiers
    assert modifier.mask.encoding == (pb.MASK_ENCODING_BITS if result_encoding == "bits" else pb.MASK_ENCODING_RUNS)
    assert np.array_equal(mask_from_pb(modifier.mask, lattice), mask)
