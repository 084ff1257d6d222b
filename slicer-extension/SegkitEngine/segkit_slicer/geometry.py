"""Lattices and voxel arrays at the edge between Slicer and the engine.

Slicer holds working images as `vtkOrientedImageData`: the voxels of an extent
``[i0..i1, j0..j1, k0..k1]`` (which need not start at 0) and an image-to-world matrix
that maps an index ``(i, j, k, 1)`` of that extent to **RAS** millimetres.

The engine's `Geometry` describes the array itself: its size (i, j, k), the position of
its first voxel, the spacing and the direction cosines (row-major 3x3 whose column *a*
is the unit vector of axis *a*), all in **LPS** millimetres.

Both store voxels in C order of ``[k][j][i]``. Converting is therefore only two things:
shift the origin to the first voxel of the extent, and negate x and y (RAS <-> LPS).
This module is the one place where that happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

# Diagonal that turns RAS into LPS and back (it is its own inverse).
RAS_LPS_FLIP = np.diag([-1.0, -1.0, 1.0])

# Two lattices are the same when every corner voxel is within this distance (mm).
GEOMETRY_TOLERANCE_MM = 1e-3


def ras_to_lps(point: Sequence[float]) -> np.ndarray:
    """A point (or direction) in RAS, in LPS."""
    return RAS_LPS_FLIP @ np.asarray(point, dtype=float)


def lps_to_ras(point: Sequence[float]) -> np.ndarray:
    """A point (or direction) in LPS, in RAS."""
    return RAS_LPS_FLIP @ np.asarray(point, dtype=float)


@dataclass(frozen=True)
class Lattice:
    """A 3-D voxel lattice in LPS: the proto's `Geometry`.

    `origin` is the LPS position of the centre of voxel (0, 0, 0) of the array,
    `direction` is row-major with the unit vector of axis *a* in column *a*.
    """

    size: Tuple[int, int, int]
    origin: Tuple[float, float, float]
    spacing: Tuple[float, float, float]
    direction: Tuple[float, ...]  # 9 values, row-major

    def __post_init__(self):
        if len(self.size) != 3 or any(int(s) <= 0 for s in self.size):
            raise ValueError(f"lattice size must be 3 positive numbers, got {self.size}")
        if len(self.spacing) != 3 or any(not s > 0 for s in self.spacing):
            raise ValueError(f"lattice spacing must be 3 positive numbers, got {self.spacing}")
        if len(self.origin) != 3 or len(self.direction) != 9:
            raise ValueError("lattice origin needs 3 numbers and direction 9")

    @property
    def shape(self) -> Tuple[int, int, int]:
        """The `[k][j][i]` array shape."""
        return (self.size[2], self.size[1], self.size[0])

    @property
    def voxels(self) -> int:
        return self.size[0] * self.size[1] * self.size[2]

    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def index_to_lps(self) -> np.ndarray:
        """4x4 matrix from an array index (i, j, k, 1) to LPS mm."""
        m = np.eye(4)
        m[:3, :3] = self.direction_matrix() * np.asarray(self.spacing)[None, :]
        m[:3, 3] = self.origin
        return m

    def index_to_ras(self) -> np.ndarray:
        """4x4 matrix from an array index (i, j, k, 1) to RAS mm."""
        flip = np.eye(4)
        flip[:3, :3] = RAS_LPS_FLIP
        return flip @ self.index_to_lps()

    def matches(self, other: "Lattice", tolerance_mm: float = GEOMETRY_TOLERANCE_MM) -> bool:
        """Same size, and the first and last voxel of every axis within `tolerance_mm`."""
        if tuple(self.size) != tuple(other.size):
            return False
        a, b = self.index_to_lps(), other.index_to_lps()
        corners = [np.array([0, 0, 0, 1.0])]
        for axis in range(3):
            c = np.array([0, 0, 0, 1.0])
            c[axis] = self.size[axis] - 1
            corners.append(c)
        return all(np.linalg.norm(a @ c - b @ c) <= tolerance_mm for c in corners)

    def to_pb(self):
        """The proto `Geometry`."""
        from .proto.segkit.v1 import engine_pb2

        return engine_pb2.Geometry(
            size=[int(s) for s in self.size],
            origin=[float(x) for x in self.origin],
            spacing=[float(x) for x in self.spacing],
            direction=[float(x) for x in self.direction],
        )

    @classmethod
    def from_pb(cls, g) -> "Lattice":
        """From a proto `Geometry` (checked: 3 sizes, 3 origins, 3 spacings, 9 directions)."""
        if len(g.size) != 3 or len(g.origin) != 3 or len(g.spacing) != 3 or len(g.direction) != 9:
            raise ValueError(
                f"geometry needs 3 sizes, origins and spacings and 9 directions, got "
                f"{len(g.size)}, {len(g.origin)}, {len(g.spacing)}, {len(g.direction)}"
            )
        return cls(
            size=tuple(int(s) for s in g.size),
            origin=tuple(float(x) for x in g.origin),
            spacing=tuple(float(x) for x in g.spacing),
            direction=tuple(float(x) for x in g.direction),
        )


def lattice_from_ijk_to_ras(ijk_to_ras, extent: Sequence[int]) -> Lattice:
    """The lattice of the voxels of `extent` under an IJK->RAS matrix (4x4, numpy or
    vtkMatrix4x4) whose indices are the extent's (so they may start anywhere)."""
    m = matrix_to_numpy(ijk_to_ras)
    first = np.array([extent[0], extent[2], extent[4], 1.0])
    size = (extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1)
    if min(size) <= 0:
        raise ValueError(f"extent {tuple(extent)} is empty")
    axes_ras = m[:3, :3]
    spacing = np.linalg.norm(axes_ras, axis=0)
    if np.any(spacing <= 0):
        raise ValueError(f"IJK to RAS matrix has a zero axis: {axes_ras.tolist()}")
    direction_lps = RAS_LPS_FLIP @ (axes_ras / spacing[None, :])
    origin_lps = RAS_LPS_FLIP @ (m @ first)[:3]
    return Lattice(
        size=tuple(int(s) for s in size),
        origin=tuple(float(x) for x in origin_lps),
        spacing=tuple(float(s) for s in spacing),
        direction=tuple(float(x) for x in direction_lps.reshape(-1)),
    )


def ijk_to_ras_for_extent(lattice: Lattice, extent_start: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """The IJK->RAS matrix of an image whose extent starts at `extent_start` and whose
    voxel `extent_start + a` is the lattice's voxel `a` (the inverse of
    `lattice_from_ijk_to_ras`)."""
    m = lattice.index_to_ras()
    shift = np.eye(4)
    shift[:3, 3] = -np.asarray(extent_start, dtype=float)
    return m @ shift


def matrix_to_numpy(matrix) -> np.ndarray:
    """A 4x4 numpy array from a vtkMatrix4x4 or anything numpy can read."""
    if hasattr(matrix, "GetElement"):
        return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    m = np.asarray(matrix, dtype=float)
    if m.shape != (4, 4):
        raise ValueError(f"expected a 4x4 matrix, got shape {m.shape}")
    return m


def numpy_to_vtk_matrix(m: np.ndarray):
    import vtk

    out = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            out.SetElement(r, c, float(m[r, c]))
    return out


# ---------------------------------------------------------------------------------------
# VTK images

def image_ijk_to_ras(image) -> np.ndarray:
    """The image-to-world (IJK->RAS) matrix of a vtkOrientedImageData or vtkImageData."""
    import vtk

    m = vtk.vtkMatrix4x4()
    if hasattr(image, "GetImageToWorldMatrix"):
        image.GetImageToWorldMatrix(m)
        return matrix_to_numpy(m)
    # Plain vtkImageData: origin, spacing and (VTK >= 9) direction.
    out = np.eye(4)
    direction = np.eye(3)
    if hasattr(image, "GetDirectionMatrix"):
        d = image.GetDirectionMatrix()
        direction = np.array([[d.GetElement(r, c) for c in range(3)] for r in range(3)])
    out[:3, :3] = direction * np.asarray(image.GetSpacing())[None, :]
    out[:3, 3] = image.GetOrigin()
    return out


def is_empty_extent(extent: Sequence[int]) -> bool:
    return extent[0] > extent[1] or extent[2] > extent[3] or extent[4] > extent[5]


def world_points_to_ijk(points_ras, ijk_to_ras) -> List[Tuple[int, int, int]]:
    """The nearest voxel index (i, j, k) of each RAS point, for an image whose IJK->RAS
    matrix is `ijk_to_ras` (halves round up, as `floor(x + 0.5)`)."""
    to_ijk = np.linalg.inv(np.asarray(ijk_to_ras, dtype=float))
    out = []
    for p in points_ras:
        q = to_ijk @ np.array([float(p[0]), float(p[1]), float(p[2]), 1.0])
        out.append(tuple(int(np.floor(q[a] + 0.5)) for a in range(3)))
    return out


def image_lattice(image) -> Tuple[Lattice, Tuple[int, int, int]]:
    """The lattice of an image's extent and where that extent starts."""
    extent = image.GetExtent()
    if is_empty_extent(extent):
        raise ValueError(f"image extent {extent} is empty")
    return (
        lattice_from_ijk_to_ras(image_ijk_to_ras(image), extent),
        (extent[0], extent[2], extent[4]),
    )


def image_to_array(image, copy: bool = True) -> np.ndarray:
    """The voxels of scalar component 0 of an image as a `[k][j][i]` array."""
    from vtk.util import numpy_support

    extent = image.GetExtent()
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    scalars = image.GetPointData().GetScalars()
    if scalars is None:
        raise ValueError("image has no scalars")
    flat = numpy_support.vtk_to_numpy(scalars)
    if flat.ndim == 2:
        flat = flat[:, 0]
    array = flat.reshape(shape)
    return array.copy() if copy else array


def new_image(lattice: Lattice, extent_start: Sequence[int] = (0, 0, 0), array: np.ndarray | None = None,
              vtk_type: int | None = None):
    """A vtkOrientedImageData on `lattice` whose extent starts at `extent_start`, filled
    with `array` (`[k][j][i]`) or zeros (unsigned char unless `vtk_type` says otherwise)."""
    import vtk
    import slicer
    from vtk.util import numpy_support

    image = slicer.vtkOrientedImageData()
    s = extent_start
    image.SetExtent(s[0], s[0] + lattice.size[0] - 1, s[1], s[1] + lattice.size[1] - 1,
                    s[2], s[2] + lattice.size[2] - 1)
    if vtk_type is None:
        vtk_type = (numpy_support.get_vtk_array_type(array.dtype) if array is not None
                    else vtk.VTK_UNSIGNED_CHAR)
    image.AllocateScalars(vtk_type, 1)
    image.SetImageToWorldMatrix(numpy_to_vtk_matrix(ijk_to_ras_for_extent(lattice, extent_start)))
    view = image_to_array(image, copy=False)
    if array is None:
        view[...] = 0
    else:
        if array.shape != view.shape:
            raise ValueError(f"array shape {array.shape} is not the lattice's {view.shape}")
        view[...] = array
    image.GetPointData().GetScalars().Modified()
    image.Modified()
    return image


def copy_array_into_image(image, array: np.ndarray) -> None:
    """Writes a `[k][j][i]` array into an image's scalars (same shape)."""
    view = image_to_array(image, copy=False)
    if array.shape != view.shape:
        raise ValueError(f"array shape {array.shape} does not match the image's {view.shape}")
    view[...] = array
    image.GetPointData().GetScalars().Modified()
    image.Modified()


# numpy dtype -> proto ScalarType name.
_NUMPY_TO_SCALAR = {
    np.dtype(np.uint8): "SCALAR_TYPE_UINT8",
    np.dtype(np.int8): "SCALAR_TYPE_INT8",
    np.dtype(np.uint16): "SCALAR_TYPE_UINT16",
    np.dtype(np.int16): "SCALAR_TYPE_INT16",
    np.dtype(np.uint32): "SCALAR_TYPE_UINT32",
    np.dtype(np.int32): "SCALAR_TYPE_INT32",
    np.dtype(np.uint64): "SCALAR_TYPE_UINT64",
    np.dtype(np.int64): "SCALAR_TYPE_INT64",
    np.dtype(np.float32): "SCALAR_TYPE_FLOAT32",
    np.dtype(np.float64): "SCALAR_TYPE_FLOAT64",
}


def scalar_type_name(dtype) -> str:
    """The proto ScalarType name of a numpy dtype (native or little-endian)."""
    d = np.dtype(dtype)
    key = d.newbyteorder("=") if d.byteorder in (">", "<") else d
    try:
        return _NUMPY_TO_SCALAR[key]
    except KeyError:
        raise ValueError(f"voxel type {d} has no engine scalar type") from None


def numpy_dtype(scalar_type: str) -> np.dtype:
    """The numpy dtype (native byte order) of a proto ScalarType name."""
    for dtype, name in _NUMPY_TO_SCALAR.items():
        if name == scalar_type:
            return dtype
    raise ValueError(f"unknown voxel type {scalar_type}")


def little_endian_bytes(array: np.ndarray) -> np.ndarray:
    """A C-ordered little-endian view (or copy) of `array`, as the contract requires."""
    a = np.ascontiguousarray(array)
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and np.little_endian is False):
        a = a.astype(a.dtype.newbyteorder("<"))
    return a
