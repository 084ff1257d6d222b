"""Binary masks on the wire: cropping to the bounding box, bit packing and run lengths.

The layouts are the contract's (`proto/segkit/v1/engine.proto`, `MaskEncoding`):

- Voxels of the extent are taken in C order of `[k][j][i]` (i fastest).
- ``BITS``: one bit per voxel, least significant bit first in each byte, the last byte
  padded with zero bits.
- ``RUNS``: run lengths as unsigned LEB128 varints, alternating runs of 0 and runs of 1,
  starting with a run of 0 that may be empty; the runs add up to the voxels of the extent.

Everything here is numpy only (no VTK, no gRPC), vectorised so a 512^3 mask encodes in
well under a second. Decoders check the data against the extent and raise `MaskError`
with the reason, as the engine does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

BITS = "bits"
RUNS = "runs"

# (i_min, i_max, j_min, j_max, k_min, k_max), inclusive, in the lattice's own indices.
Extent = Tuple[int, int, int, int, int, int]

# A uint64 needs at most 10 LEB128 bytes.
_MAX_VARINT_BYTES = 10


class MaskError(ValueError):
    """Mask data that does not match its extent or its encoding."""


@dataclass(frozen=True)
class EncodedMask:
    """A mask cropped to `extent` (None = empty mask) and packed as `encoding`."""

    extent: Optional[Extent]
    encoding: str
    data: bytes


def bounding_box(mask: np.ndarray) -> Optional[Extent]:
    """Inclusive (i_min, i_max, j_min, j_max, k_min, k_max) of the non-zero voxels of a
    `[k][j][i]` array, or None when there are none."""
    if mask.ndim != 3:
        raise MaskError(f"a mask must be 3-D ([k][j][i]), got shape {mask.shape}")
    nonzero = mask != 0
    bounds = []
    # Axis 2 is i, axis 1 is j, axis 0 is k: project onto each in that order.
    for axis, others in ((2, (0, 1)), (1, (0, 2)), (0, (1, 2))):
        hits = np.flatnonzero(nonzero.any(axis=others))
        if hits.size == 0:
            return None
        bounds += [int(hits[0]), int(hits[-1])]
    return tuple(bounds)  # type: ignore[return-value]


def crop(mask: np.ndarray, extent: Extent) -> np.ndarray:
    """The `[k][j][i]` sub-array of `mask` inside an inclusive extent."""
    i0, i1, j0, j1, k0, k1 = extent
    return mask[k0 : k1 + 1, j0 : j1 + 1, i0 : i1 + 1]


def extent_shape(extent: Extent) -> Tuple[int, int, int]:
    """The `[k][j][i]` shape of an inclusive extent."""
    i0, i1, j0, j1, k0, k1 = extent
    return (k1 - k0 + 1, j1 - j0 + 1, i1 - i0 + 1)


def check_extent(extent: Extent, shape_kji: Tuple[int, int, int], what: str = "mask") -> None:
    """Raises MaskError unless the extent is ordered and inside a lattice of `shape_kji`."""
    sizes = (shape_kji[2], shape_kji[1], shape_kji[0])
    for axis, name in enumerate("ijk"):
        lo, hi = extent[2 * axis], extent[2 * axis + 1]
        if lo < 0 or lo > hi or hi >= sizes[axis]:
            raise MaskError(
                f"{what}: extent {tuple(extent)} is outside the lattice of "
                f"{sizes} voxels (axis {name})"
            )


def pack_bits(values: np.ndarray) -> bytes:
    """One bit per value (non-zero = 1), least significant bit first."""
    return np.packbits(np.asarray(values).reshape(-1) != 0, bitorder="little").tobytes()


def unpack_bits(data: bytes, count: int) -> np.ndarray:
    """`count` values 0/1 (uint8) from bit-packed `data`."""
    expected = (count + 7) // 8
    if len(data) != expected:
        raise MaskError(
            f"bit-packed data holds {len(data)} bytes, {count} voxels need {expected}"
        )
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
    return bits[:count]


def run_lengths(values: np.ndarray) -> np.ndarray:
    """Alternating run lengths (uint64) of a 0/1 sequence, starting with the run of 0."""
    flat = np.asarray(values).reshape(-1) != 0
    if flat.size == 0:
        return np.zeros(1, dtype=np.uint64)
    # Positions where the value changes, plus both ends.
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(edges).astype(np.uint64)
    if flat[0]:
        runs = np.concatenate((np.zeros(1, dtype=np.uint64), runs))
    return runs


def encode_varints(numbers: np.ndarray) -> bytes:
    """Unsigned LEB128 of each number, concatenated (vectorised)."""
    v = np.asarray(numbers, dtype=np.uint64).reshape(-1)
    if v.size == 0:
        return b""
    shifts = np.arange(_MAX_VARINT_BYTES, dtype=np.uint64) * np.uint64(7)
    groups = (v[:, None] >> shifts[None, :]) & np.uint64(0x7F)
    # Bytes a number needs: 1 + the index of its highest non-zero 7-bit group.
    nonzero = groups != 0
    last_nonzero = _MAX_VARINT_BYTES - 1 - np.argmax(nonzero[:, ::-1], axis=1)
    highest = np.where(nonzero.any(axis=1), last_nonzero, 0)
    used = np.arange(_MAX_VARINT_BYTES)[None, :] <= highest[:, None]
    more = np.arange(_MAX_VARINT_BYTES)[None, :] < highest[:, None]
    out = groups.astype(np.uint8) | np.where(more, 0x80, 0).astype(np.uint8)
    return out[used].tobytes()


def decode_varints(data: bytes) -> np.ndarray:
    """The numbers (uint64) of concatenated unsigned LEB128 varints."""
    b = np.frombuffer(data, dtype=np.uint8)
    if b.size == 0:
        return np.zeros(0, dtype=np.uint64)
    last = (b & 0x80) == 0
    if not last[-1]:
        raise MaskError("run-length data ends inside a number")
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    # The 10th byte of a varint holds bit 63 only.
    too_long = lengths > _MAX_VARINT_BYTES
    overflow = (lengths == _MAX_VARINT_BYTES) & (b[ends] > 1)
    if np.any(too_long | overflow):
        raise MaskError("run length does not fit in 64 bits")
    position = np.arange(b.size) - np.repeat(starts, lengths)
    parts = (b & 0x7F).astype(np.uint64) << (position.astype(np.uint64) * np.uint64(7))
    return np.add.reduceat(parts, starts)


def encode_runs(values: np.ndarray) -> bytes:
    """RUNS encoding of a 0/1 sequence."""
    return encode_varints(run_lengths(values))


def decode_runs(data: bytes, count: int) -> np.ndarray:
    """`count` values 0/1 (uint8) from RUNS-encoded `data`."""
    runs = decode_varints(data)
    total = int(runs.sum(dtype=np.uint64)) if runs.size else 0
    if total != count:
        raise MaskError(f"run lengths add up to {total} voxels, the extent holds {count}")
    values = (np.arange(runs.size) % 2).astype(np.uint8)
    return np.repeat(values, runs.astype(np.int64))


def encode_mask(mask: np.ndarray, encoding: str = RUNS) -> EncodedMask:
    """Crops a `[k][j][i]` mask (non-zero = 1) to its bounding box and packs it.

    `encoding` is ``"runs"``, ``"bits"``, or ``"smallest"`` (whichever is shorter; runs
    on a tie). An all-zero mask has no extent and no data.
    """
    if encoding not in (RUNS, BITS, "smallest"):
        raise ValueError(f"unknown mask encoding {encoding!r}: use 'runs', 'bits' or 'smallest'")
    extent = bounding_box(mask)
    if extent is None:
        return EncodedMask(None, RUNS if encoding == "smallest" else encoding, b"")
    cropped = crop(mask, extent)
    if encoding == BITS:
        return EncodedMask(extent, BITS, pack_bits(cropped))
    runs = encode_runs(cropped)
    if encoding == "smallest":
        bits = pack_bits(cropped)
        if len(bits) < len(runs):
            return EncodedMask(extent, BITS, bits)
    return EncodedMask(extent, RUNS, runs)


def decode_mask(
    extent: Optional[Extent],
    encoding: str,
    data: bytes,
    shape_kji: Tuple[int, int, int],
    what: str = "mask",
) -> np.ndarray:
    """The full `[k][j][i]` uint8 0/1 array of a cropped, packed mask."""
    full = np.zeros(shape_kji, dtype=np.uint8)
    if extent is None:
        if data:
            raise MaskError(f"{what}: {len(data)} bytes of data without an extent")
        return full
    check_extent(extent, shape_kji, what)
    sub_shape = extent_shape(extent)
    count = sub_shape[0] * sub_shape[1] * sub_shape[2]
    try:
        if encoding == BITS:
            values = unpack_bits(data, count)
        elif encoding == RUNS:
            values = decode_runs(data, count)
        else:
            raise MaskError(f"unknown encoding {encoding!r}")
    except MaskError as e:
        raise MaskError(f"{what}: {e}") from None
    i0, i1, j0, j1, k0, k1 = extent
    full[k0 : k1 + 1, j0 : j1 + 1, i0 : i1 + 1] = values.reshape(sub_shape)
    return full
