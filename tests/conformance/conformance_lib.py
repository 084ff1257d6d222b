"""Client-side helpers of the conformance suite: stubs, engine process, masks, geometry.

Everything here follows `proto/segkit/v1/engine.proto` and nothing else, so the suite
can check any engine that implements the contract. The mask codecs and the 6-connected
island labelling are written out in numpy so that the expected answers do not come from
the engine under test.
"""

from __future__ import annotations

import glob
import importlib
import os
import selectors
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import grpc
import numpy as np

REPO = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO / "proto"

# ---------------------------------------------------------------------------------------
# Stubs generated at test time (no generated code is committed here)


def generate_stubs(out_dir: Path, proto_dir: Path = PROTO_DIR) -> SimpleNamespace:
    """Compiles every `.proto` under `proto_dir` with grpc_tools into `out_dir` and imports
    `segkit.v1.engine_pb2` and `engine_pb2_grpc`."""
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(
        os.path.relpath(p, proto_dir) for p in glob.glob(str(proto_dir / "**/*.proto"), recursive=True)
    )
    if not protos:
        raise RuntimeError(f"no .proto files under {proto_dir}")
    include = Path(grpc_tools.__file__).parent / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"-I{include}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            *protos,
        ]
    )
    if rc != 0:
        raise RuntimeError(f"grpc_tools.protoc failed ({rc}) on {protos}")
    if str(out_dir) not in sys.path:
        sys.path.insert(0, str(out_dir))
    pb2 = importlib.import_module("segkit.v1.engine_pb2")
    pb2_grpc = importlib.import_module("segkit.v1.engine_pb2_grpc")
    return SimpleNamespace(pb=pb2, grpc=pb2_grpc)


# ---------------------------------------------------------------------------------------
# Channels with a token


class _Auth(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `authorization: Bearer <token>` to every call."""

    def __init__(self, token: str):
        self.header = ("authorization", f"Bearer {token}")

    def _details(self, d):
        md = list(d.metadata or []) + [self.header]
        return d._replace(metadata=md) if hasattr(d, "_replace") else _Details(d, md)

    def intercept_unary_unary(self, cont, d, req):
        return cont(self._details(d), req)

    def intercept_unary_stream(self, cont, d, req):
        return cont(self._details(d), req)

    def intercept_stream_unary(self, cont, d, it):
        return cont(self._details(d), it)

    def intercept_stream_stream(self, cont, d, it):
        return cont(self._details(d), it)


class _Details(grpc.ClientCallDetails):
    def __init__(self, d, metadata):
        self.method = d.method
        self.timeout = d.timeout
        self.metadata = metadata
        self.credentials = d.credentials
        self.wait_for_ready = getattr(d, "wait_for_ready", None)
        self.compression = getattr(d, "compression", None)


CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
]


def open_channel(address: str, token: str | None = None, timeout: float = 20.0) -> grpc.Channel:
    """An insecure channel to `address` (waits until it connects), with the token when given."""
    channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    grpc.channel_ready_future(channel).result(timeout=timeout)
    if token:
        channel = grpc.intercept_channel(channel, _Auth(token))
    return channel


# ---------------------------------------------------------------------------------------
# A local engine process


def missing(message: str):
    """Skips, or fails when SEGKIT_REQUIRE_DATA=1 (scripts/test, CI): a needed binary or
    tool that is absent must not let the suite pass by skipping."""
    import pytest

    if os.environ.get("SEGKIT_REQUIRE_DATA") == "1":
        pytest.fail(f"{message} (SEGKIT_REQUIRE_DATA=1: required here)", pytrace=False)
    pytest.skip(message)


def find_segkit_bin() -> Path | None:
    """SEGKIT_BIN, else the more recently built of target/{release,debug}/segkit (so a
    stale build is not the one tested), else None."""
    env = os.environ.get("SEGKIT_BIN")
    if env:
        return Path(env)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    built = [p for p in (target / "release" / "segkit", target / "debug" / "segkit") if p.is_file()]
    return max(built, key=lambda p: p.stat().st_mtime, default=None)


@dataclass
class EngineProcess:
    """`segkit serve --listen 127.0.0.1:0` started by the suite."""

    proc: subprocess.Popen
    address: str
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (graceful shutdown), then SIGKILL after `timeout`; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


def start_engine(binary: Path, log: Path, *extra: str, timeout: float = 60.0, wrapper=(), **popen) -> EngineProcess:
    """Starts `binary serve --listen 127.0.0.1:0 EXTRA...` and reads the port from the line
    `segkit engine listening on 127.0.0.1:PORT` it prints on stdout. `wrapper` is a command
    that execs the engine (`prlimit --fsize=N`: the process id stays the engine's) and
    `popen` goes to subprocess.Popen (the fault tests use both)."""
    env = dict(os.environ)
    env.pop("SEGKIT_TOKEN", None)  # the engine reads it; only an explicit --token counts here
    logf = open(log, "wb")
    proc = subprocess.Popen(
        [*wrapper, str(binary), "serve", "--listen", "127.0.0.1:0", *extra],
        stdout=subprocess.PIPE,
        stderr=logf,
        env=env,
        **popen,
    )
    logf.close()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    deadline = time.monotonic() + timeout
    prefix = b"segkit engine listening on "
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None and not sel.select(0):
            proc.kill()
            raise RuntimeError(
                f"{binary} serve did not print its address (exit {proc.poll()}): {log.read_text(errors='replace')}"
            )
        if sel.select(min(left, 0.5)):
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                proc.wait(timeout=5)
                raise RuntimeError(f"{binary} serve exited ({proc.returncode}): {log.read_text(errors='replace')}")
            buf += chunk
    sel.close()
    line = buf.split(b"\n", 1)[0].strip()
    if not line.startswith(prefix):
        proc.kill()
        raise RuntimeError(f"unexpected first line from segkit serve: {line!r}")
    return EngineProcess(proc, line[len(prefix) :].decode(), log)


# ---------------------------------------------------------------------------------------
# Geometry


@dataclass(frozen=True)
class Lattice:
    """Size (i, j, k), LPS origin, spacing (i, j, k) and a row-major 3x3 direction whose
    columns are the unit vectors of i, j, k."""

    size: tuple
    origin: tuple = (0.0, 0.0, 0.0)
    spacing: tuple = (1.0, 1.0, 1.0)
    direction: tuple = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    @property
    def shape(self) -> tuple:
        """numpy shape [k][j][i]."""
        return (self.size[2], self.size[1], self.size[0])

    def matrix(self) -> np.ndarray:
        """index (i, j, k) -> LPS offset: direction @ diag(spacing)."""
        return np.array(self.direction, dtype=float).reshape(3, 3) @ np.diag(self.spacing)

    def ijk_to_lps(self, ijk) -> np.ndarray:
        return np.array(self.origin, dtype=float) + self.matrix() @ np.asarray(ijk, dtype=float)

    def to_pb(self, pb):
        return pb.Geometry(
            size=list(self.size),
            origin=list(self.origin),
            spacing=list(self.spacing),
            direction=list(self.direction),
        )

    @staticmethod
    def from_pb(g) -> "Lattice":
        return Lattice(tuple(g.size), tuple(g.origin), tuple(g.spacing), tuple(g.direction))

    def moved(self, **kw) -> "Lattice":
        d = dict(size=self.size, origin=self.origin, spacing=self.spacing, direction=self.direction)
        d.update(kw)
        return Lattice(**d)


def assert_same_lattice(g, lattice: Lattice, tol: float = 1e-9) -> None:
    """A proto Geometry equals `lattice`."""
    assert list(g.size) == list(lattice.size), (list(g.size), lattice.size)
    np.testing.assert_allclose(g.origin, lattice.origin, atol=tol)
    np.testing.assert_allclose(g.spacing, lattice.spacing, atol=tol)
    np.testing.assert_allclose(g.direction, lattice.direction, atol=tol)


# ---------------------------------------------------------------------------------------
# Volumes

SCALAR_TYPES = {
    np.dtype("uint8"): "SCALAR_TYPE_UINT8",
    np.dtype("int8"): "SCALAR_TYPE_INT8",
    np.dtype("uint16"): "SCALAR_TYPE_UINT16",
    np.dtype("int16"): "SCALAR_TYPE_INT16",
    np.dtype("uint32"): "SCALAR_TYPE_UINT32",
    np.dtype("int32"): "SCALAR_TYPE_INT32",
    np.dtype("uint64"): "SCALAR_TYPE_UINT64",
    np.dtype("int64"): "SCALAR_TYPE_INT64",
    np.dtype("float32"): "SCALAR_TYPE_FLOAT32",
    np.dtype("float64"): "SCALAR_TYPE_FLOAT64",
}


def volume_header(pb, array: np.ndarray, lattice: Lattice, name: str = ""):
    assert array.shape == lattice.shape, (array.shape, lattice.shape)
    return pb.VolumeHeader(
        geometry=lattice.to_pb(pb),
        scalar_type=pb.ScalarType.Value(SCALAR_TYPES[array.dtype]),
        total_bytes=array.nbytes,
        name=name,
    )


def upload_messages(pb, array: np.ndarray, lattice: Lattice, chunk_bytes: int = 1 << 22, name: str = ""):
    """The UploadVolume stream: the header, then the little-endian C-order bytes in chunks."""
    yield pb.UploadVolumeRequest(header=volume_header(pb, array, lattice, name))
    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    for offset in range(0, len(data), chunk_bytes):
        yield pb.UploadVolumeRequest(data=data[offset : offset + chunk_bytes], offset=offset)


def upload(stub, pb, array: np.ndarray, lattice: Lattice, chunk_bytes: int = 1 << 22, name: str = "", timeout=120):
    return stub.UploadVolume(upload_messages(pb, array, lattice, chunk_bytes, name), timeout=timeout)


# ---------------------------------------------------------------------------------------
# Masks: BITS and RUNS exactly as the proto describes them


def pack_bits(flat: np.ndarray) -> bytes:
    """One bit per voxel, least significant bit first, last byte zero-padded."""
    return np.packbits(flat.astype(bool), bitorder="little").tobytes()


def unpack_bits(data: bytes, n: int) -> np.ndarray:
    assert len(data) == (n + 7) // 8, f"BITS: {len(data)} bytes for {n} voxels"
    bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
    assert not bits[n:].any(), "BITS: the padding bits of the last byte must be zero"
    return bits[:n]


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_runs(flat: np.ndarray) -> bytes:
    """Alternating 0-runs and 1-runs, starting with a 0-run, as unsigned LEB128."""
    flat = flat.astype(bool)
    if flat.size == 0:
        return b""
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs.insert(0, 0)
    return b"".join(_varint(r) for r in runs)


def decode_runs(data: bytes, n: int) -> np.ndarray:
    """Vectorised LEB128 run decoding; checks the runs add up to `n`."""
    b = np.frombuffer(data, np.uint8)
    if b.size == 0:
        assert n == 0, f"RUNS: no data for {n} voxels"
        return np.zeros(0, np.uint8)
    assert b[-1] < 0x80, "RUNS: the data ends inside a varint"
    ends = np.flatnonzero(b < 0x80)
    starts = np.concatenate([[0], ends[:-1] + 1])
    group = np.repeat(np.arange(ends.size), ends - starts + 1)
    pos = np.arange(b.size) - starts[group]
    assert pos.max() < 10, "RUNS: varint longer than 64 bits"
    vals = (b & 0x7F).astype(np.uint64) << (7 * pos).astype(np.uint64)
    runs = np.add.reduceat(vals, starts).astype(np.int64)
    assert runs.sum() == n, f"RUNS: the runs add up to {runs.sum()} voxels, the extent holds {n}"
    values = (np.arange(runs.size) % 2).astype(np.uint8)
    return np.repeat(values, runs)


def mask_to_pb(pb, mask: np.ndarray, lattice: Lattice, encoding: str = "RUNS", crop: bool = True):
    """A full-lattice 0/1 array ([k][j][i]) as a proto Mask cropped to its bounding box."""
    m = pb.Mask(geometry=lattice.to_pb(pb), encoding=pb.MaskEncoding.Value(f"MASK_ENCODING_{encoding}"))
    nz = np.nonzero(mask)
    if nz[0].size == 0:
        return m
    if crop:
        (k0, k1), (j0, j1), (i0, i1) = [(int(a.min()), int(a.max())) for a in nz]
    else:
        (k0, k1), (j0, j1), (i0, i1) = [(0, s - 1) for s in mask.shape]
    m.extent.CopyFrom(pb.Extent(i_min=i0, i_max=i1, j_min=j0, j_max=j1, k_min=k0, k_max=k1))
    flat = mask[k0 : k1 + 1, j0 : j1 + 1, i0 : i1 + 1].ravel() != 0
    m.data = pack_bits(flat) if encoding == "BITS" else encode_runs(flat)
    return m


def mask_from_pb(pb, m, lattice: Lattice | None = None) -> np.ndarray:
    """Decodes a proto Mask onto its full lattice; checks the lattice when one is given."""
    g = Lattice.from_pb(m.geometry)
    if lattice is not None:
        assert_same_lattice(m.geometry, lattice, tol=1e-6)
    full = np.zeros(g.shape, np.uint8)
    if not m.HasField("extent"):
        assert len(m.data) == 0, "a mask without an extent must be empty"
        return full
    e = m.extent
    assert e.i_min <= e.i_max < g.size[0] and e.j_min <= e.j_max < g.size[1] and e.k_min <= e.k_max < g.size[2], e
    shape = (e.k_max - e.k_min + 1, e.j_max - e.j_min + 1, e.i_max - e.i_min + 1)
    n = shape[0] * shape[1] * shape[2]
    if m.encoding == pb.MASK_ENCODING_BITS:
        values = unpack_bits(m.data, n)
    else:
        assert m.encoding in (pb.MASK_ENCODING_RUNS, pb.MASK_ENCODING_UNSPECIFIED), m.encoding
        values = decode_runs(m.data, n)
    full[e.k_min : e.k_max + 1, e.j_min : e.j_max + 1, e.i_min : e.i_max + 1] = values.reshape(shape)
    return full


def segment(pb, sid: str, mask: np.ndarray, lattice: Lattice, visible: bool = True, name: str | None = None,
            encoding: str = "RUNS", **kw):
    return pb.SegmentMask(
        id=sid, name=name if name is not None else sid, visible=visible, mask=mask_to_pb(pb, mask, lattice, encoding), **kw
    )


# ---------------------------------------------------------------------------------------
# Independent reference: 6-connected islands ranked as Slicer ranks them


def islands6(mask: np.ndarray) -> list[np.ndarray]:
    """The 6-connected islands of a small 0/1 array, largest first, ties in raster order of
    each island's first voxel (i fastest): vtkITKIslandMath's labels 1..N."""
    seen = np.zeros(mask.shape, bool)
    found = []
    nk, nj, ni = mask.shape
    for start in zip(*np.nonzero(mask)):  # np.nonzero is raster order
        if seen[start]:
            continue
        island = np.zeros(mask.shape, np.uint8)
        seen[start] = True
        queue = deque([start])
        while queue:
            k, j, i = queue.popleft()
            island[k, j, i] = 1
            for dk, dj, di in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)):
                q = (k + dk, j + dj, i + di)
                if 0 <= q[0] < nk and 0 <= q[1] < nj and 0 <= q[2] < ni and mask[q] and not seen[q]:
                    seen[q] = True
                    queue.append(q)
        found.append(island)
    order = sorted(range(len(found)), key=lambda n: (-int(found[n].sum()), n))
    return [found[n] for n in order]


# ---------------------------------------------------------------------------------------
# The synthetic volume and segment of the effect cases

# A lattice whose direction is not diagonal, so row-major versus column-major mix-ups show:
# column i = (0, -1, 0) (anterior), column j = (1, 0, 0) (left), column k = (0, 0, 1).
# The spacings along i and k are powers of two, so world <-> index maps are exact there.
LATTICE = Lattice(
    size=(12, 10, 6),
    origin=(-20.0, 35.5, 100.25),
    spacing=(0.5, 1.25, 2.0),
    direction=(0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0),
)


def synthetic_volume() -> np.ndarray:
    """int16 values spanning exactly [-1000, 1000], [k][j][i], holding the bounds the
    cases use (so inclusiveness is tested)."""
    rng = np.random.default_rng(20261129)
    v = rng.integers(-1000, 1001, size=LATTICE.shape, dtype=np.int16)
    v[0, 0, 0], v[-1, -1, -1] = -1000, 1000
    for n, x in enumerate((-500, -300, -200, -10, 0, 300, 400, 700)):
        v[n % LATTICE.shape[0], 5, n] = x
    return v


def islands_segment() -> np.ndarray:
    """A segment with six 6-connected islands of sizes 27, 8, 5, 1, 1, 1 ([k][j][i]):
    - A: 3x3x3 block at k 1..3, j 1..3, i 1..3 (27)
    - B: 2x2x2 block at k 1..2, j 6..7, i 5..6 (8); i = 4 next to it is empty
    - D: a row at k 4, j 8, i 6..10 (5)
    - three single voxels, two of them touching only by an edge."""
    m = np.zeros(LATTICE.shape, np.uint8)
    m[1:4, 1:4, 1:4] = 1
    m[1:3, 6:8, 5:7] = 1
    m[4, 8, 6:11] = 1
    m[5, 0, 0] = 1
    m[5, 1, 1] = 1
    m[5, 9, 11] = 1
    return m
