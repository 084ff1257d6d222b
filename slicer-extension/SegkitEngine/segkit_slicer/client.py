"""The gRPC client of the segkit engine contract (`proto/segkit/v1/engine.proto`).

Everything the extension sends to an engine goes through `EngineClient`:

- one channel per engine address, with raised message limits, gzip when the engine is
  not on this machine, and the token as ``authorization: Bearer <token>`` metadata;
- volumes uploaded once, in chunks, and remembered per Slicer node (`VolumeCache`): a
  second effect on the same volume sends no voxel bytes, and when the engine answers
  NOT_FOUND (it restarted, or evicted the volume) the client uploads again by itself;
- every failure raised as `EngineError`, with the method, the gRPC code and the engine's
  message.

Nothing here touches Qt or MRML: the calls are safe on a worker thread.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Hashable, Iterable, Iterator, List, NamedTuple, Optional

import grpc
import numpy as np

from .geometry import Lattice, little_endian_bytes, numpy_dtype, scalar_type_name
from .proto.segkit.v1 import engine_pb2 as pb
from .proto.segkit.v1 import engine_pb2_grpc as pb_grpc

# Messages up to this size are accepted both ways (the engine's own limit for requests
# is in EngineInfo.max_message_bytes; masks are small, so this is a safety margin).
MAX_MESSAGE_BYTES = 1 << 30
# Upload chunk size when the engine does not recommend one.
DEFAULT_CHUNK_BYTES = 4 << 20
# How long a call waits for the channel to connect before giving up.
CONNECT_TIMEOUT_S = 10.0
# Deadline of quick calls (info, effects, health).
QUICK_CALL_TIMEOUT_S = 30.0
# An engine that answered a call this recently is taken to be there: the next effect call
# goes out without a health check first. Each check is one more round trip and, inside
# Slicer, one more wait for the interpreter lock on the worker thread (a third of Apply's
# overhead there, tests/test_extension_gil.py). A connection that died meanwhile (engine
# restarted) fails at once with UNAVAILABLE, and the call is retried after a full check.
ANSWERED_FRESH_S = 10.0

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


class EngineError(RuntimeError):
    """A failed engine call: `method`, the gRPC `code` (a grpc.StatusCode) and `details`."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str):
        self.method = method
        self.code = code
        self.details = details
        super().__init__(f"{method}: {code.name}: {details}")


@dataclass
class TransferStats:
    """What the client sent, for the user and for tests."""

    volume_uploads: int = 0
    volume_bytes_sent: int = 0   # voxel bytes of uploads
    effect_calls: int = 0
    reuploads_after_not_found: int = 0
    health_checks: int = 0           # made before calls (`EngineClient._connect`)
    retries_after_unavailable: int = 0


@dataclass
class SourceVolume:
    """A volume as the client will upload it.

    `node_key` names its origin (a Slicer node ID plus what its voxels were resampled
    onto) and `fingerprint` changes whenever its voxels may have changed (modification
    times); both come from the main thread. `array` is a `[k][j][i]` copy of the voxels
    on `lattice`.
    """

    node_key: Hashable
    fingerprint: Hashable
    array: np.ndarray
    lattice: Lattice
    name: str = ""
    _digest: Optional[str] = field(default=None, repr=False)

    def digest(self) -> str:
        """A hash of the voxels, their type and their lattice (computed once)."""
        if self._digest is None:
            h = hashlib.blake2b(digest_size=20)
            h.update(str(self.array.dtype.str).encode())
            h.update(repr(self.lattice).encode())
            h.update(memoryview(little_endian_bytes(self.array)).cast("B"))
            self._digest = h.hexdigest()
        return self._digest


class DownloadedVolume(NamedTuple):
    """A volume fetched with `EngineClient.download_volume`: its `[k][j][i]` voxels (native
    byte order, the dtype of its ScalarType) and the engine's `VolumeRef`."""

    array: np.ndarray
    ref: object   # pb.VolumeRef

    @property
    def lattice(self) -> Lattice:
        return Lattice.from_pb(self.ref.header.geometry)

    @property
    def name(self) -> str:
        return self.ref.header.name


class VolumeCache:
    """Which engine volume holds each Slicer volume.

    Looked up first by (node key, fingerprint): no hashing while nothing changed. When a
    node's modification time moved but its voxels did not (a rename, a display change),
    the content digest still finds the uploaded volume.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._by_node: Dict[Hashable, tuple] = {}   # node_key -> (fingerprint, digest, id)
        self._by_digest: Dict[str, str] = {}

    def find(self, source: SourceVolume) -> Optional[str]:
        with self._lock:
            entry = self._by_node.get(source.node_key)
            if entry and entry[0] == source.fingerprint:
                return entry[2]
        digest = source.digest()
        with self._lock:
            volume_id = self._by_digest.get(digest)
            if volume_id is not None:
                self._by_node[source.node_key] = (source.fingerprint, digest, volume_id)
            return volume_id

    def known(self, node_key: Hashable, fingerprint: Hashable) -> bool:
        """Whether this node, unchanged since, was uploaded (no hashing)."""
        with self._lock:
            entry = self._by_node.get(node_key)
            return bool(entry and entry[0] == fingerprint)

    def store(self, source: SourceVolume, volume_id: str) -> None:
        digest = source.digest()
        with self._lock:
            self._by_node[source.node_key] = (source.fingerprint, digest, volume_id)
            self._by_digest[digest] = volume_id

    def forget(self, volume_id: str) -> None:
        with self._lock:
            self._by_node = {k: v for k, v in self._by_node.items() if v[2] != volume_id}
            self._by_digest = {k: v for k, v in self._by_digest.items() if v != volume_id}

    def clear(self) -> None:
        with self._lock:
            self._by_node.clear()
            self._by_digest.clear()


_TLS_SCHEMES = ("https://", "grpcs://")


def uses_tls(address: str) -> bool:
    """True when the address asks for TLS (`https://host:port` or `grpcs://host:port`)."""
    return address.strip().lower().startswith(_TLS_SCHEMES)


def normalize_address(address: str) -> str:
    """`host:port` from what a user may type (`grpc://host:port`, `https://...`, spaces)."""
    a = address.strip()
    for scheme in ("grpc://", "http://") + _TLS_SCHEMES:
        if a.lower().startswith(scheme):
            a = a[len(scheme):]
    a = a.rstrip("/")
    if not a:
        raise ValueError("engine address is empty (expected host:port)")
    return a


def is_loopback(address: str) -> bool:
    host = normalize_address(address).rsplit(":", 1)[0]
    return host in _LOOPBACK_HOSTS


def _tls_credentials(ca_file: Optional[str]):
    """TLS credentials trusting `ca_file` (PEM), or the system's authorities when None."""
    if ca_file is None:
        return grpc.ssl_channel_credentials()
    try:
        with open(ca_file, "rb") as f:
            pem = f.read()
    except OSError as e:
        raise EngineError("connect", grpc.StatusCode.INVALID_ARGUMENT,
                          f"cannot read the engine's CA certificate {ca_file}: {e.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise EngineError("connect", grpc.StatusCode.INVALID_ARGUMENT,
                          f"{ca_file} holds no PEM certificate (SEGKIT_TLS_CA / tls_ca)")
    return grpc.ssl_channel_credentials(root_certificates=pem)


class EngineClient:
    """A connection to one engine.

    `compression` is ``"gzip"``, ``"none"`` or ``"auto"`` (gzip unless the engine is on
    this machine, where compressing costs more time than it saves).

    An address starting with ``https://`` (or ``grpcs://``) connects with TLS, checking the
    engine's certificate against the system's authorities, or against the PEM file
    `tls_ca` (default: the ``SEGKIT_TLS_CA`` environment variable) for a lab's own
    certificate authority or a self-signed engine.
    """

    def __init__(
        self,
        address: str,
        token: Optional[str] = None,
        compression: str = "auto",
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        tls_ca: Optional[str] = None,
    ):
        self.tls = uses_tls(address)
        self.address = normalize_address(address)
        self.token = token or None
        if compression == "auto":
            compression = "none" if is_loopback(self.address) else "gzip"
        if compression not in ("gzip", "none"):
            raise ValueError(f"compression must be 'gzip', 'none' or 'auto', got {compression!r}")
        self.compression = compression
        self.connect_timeout_s = connect_timeout_s
        self.stats = TransferStats()
        self.volumes = VolumeCache()
        self._info: Optional[pb.EngineInfo] = None
        self._active: List[grpc.Future] = []
        self._active_lock = threading.Lock()
        self._answered_at: Optional[float] = None   # monotonic time of the last answer
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # Notice a dead engine on an idle connection.
            ("grpc.keepalive_time_ms", 60_000),
        ]
        channel_compression = grpc.Compression.Gzip if compression == "gzip" else grpc.Compression.NoCompression
        if self.tls:
            self._channel = grpc.secure_channel(
                self.address,
                _tls_credentials(tls_ca or os.environ.get("SEGKIT_TLS_CA") or None),
                options=options,
                compression=channel_compression,
            )
        else:
            self._channel = grpc.insecure_channel(
                self.address, options=options, compression=channel_compression)
        self._stub = pb_grpc.EngineStub(self._channel)
        from grpc_health.v1 import health_pb2_grpc

        self._health = health_pb2_grpc.HealthStub(self._channel)

    # -- plumbing ----------------------------------------------------------------------

    def close(self) -> None:
        self.cancel()
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _metadata(self):
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def _answered(self) -> None:
        self._answered_at = time.monotonic()

    def _answered_lately(self) -> bool:
        at = self._answered_at
        return at is not None and time.monotonic() - at < ANSWERED_FRESH_S

    def _connect(self) -> None:
        """Waits (up to `connect_timeout_s`) until the engine answers its health check.

        A tiny call with wait_for_ready rides out a channel that is still backing off
        after an engine restart; it also avoids gRPC's connectivity-polling thread."""
        from grpc_health.v1 import health_pb2

        self.stats.health_checks += 1
        deadline = time.monotonic() + self.connect_timeout_s
        while True:
            left = deadline - time.monotonic()
            try:
                reply = self._health.Check(health_pb2.HealthCheckRequest(service=""),
                                           timeout=max(left, 0.01), wait_for_ready=True)
                break
            except grpc.RpcError as e:
                code = e.code() if hasattr(e, "code") else None
                if code == grpc.StatusCode.UNIMPLEMENTED:
                    return  # an engine without the health service: go on and call it
                # After an engine restart the first call can fail at once on the dead
                # connection ("Socket closed"): try again on a new one until the deadline.
                if code == grpc.StatusCode.UNAVAILABLE and deadline - time.monotonic() > 0.05:
                    time.sleep(0.05)
                    continue
                if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, None):
                    raise EngineError(
                        "connect", grpc.StatusCode.UNAVAILABLE,
                        f"no engine answers at {self.address} (waited {self.connect_timeout_s:g} s): "
                        "start it (segkit serve) or check the address") from None
                raise _engine_error("Health.Check", e) from None
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            raise EngineError("connect", grpc.StatusCode.UNAVAILABLE,
                              f"the engine at {self.address} is {status}")
        self._answered()

    def _call(self, method: str, fn: Callable, *args, **kwargs):
        self._connect()
        try:
            reply = fn(*args, metadata=self._metadata(), **kwargs)
        except grpc.RpcError as e:
            raise _engine_error(method, e) from None
        self._answered()
        return reply

    def cancel(self) -> None:
        """Cancels the effect calls in flight (from any thread)."""
        with self._active_lock:
            active, self._active = self._active, []
        for call in active:
            call.cancel()

    # -- engine information -------------------------------------------------------------

    def health(self, timeout_s: float = 2.0) -> str:
        """The standard health service's status of the engine ("SERVING", "NOT_SERVING",
        ...), or "UNREACHABLE". Never raises and does not wait for a connection, so a
        status line can poll it."""
        from grpc_health.v1 import health_pb2

        try:
            reply = self._health.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, None):
                return "UNREACHABLE"
            return code.name
        if reply.status == health_pb2.HealthCheckResponse.SERVING:
            self._answered()
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def engine_info(self, refresh: bool = False) -> pb.EngineInfo:
        if self._info is None or refresh:
            self._info = self._call("GetEngineInfo", self._stub.GetEngineInfo,
                                    pb.GetEngineInfoRequest(), timeout=QUICK_CALL_TIMEOUT_S)
        return self._info

    def list_effects(self) -> List[pb.EffectInfo]:
        reply = self._call("ListEffects", self._stub.ListEffects, pb.ListEffectsRequest(),
                           timeout=QUICK_CALL_TIMEOUT_S)
        return list(reply.effects)

    # -- volumes --------------------------------------------------------------------------

    def upload_volume(self, array: np.ndarray, lattice: Lattice, name: str = "",
                      chunk_bytes: Optional[int] = None) -> pb.VolumeRef:
        """Uploads `[k][j][i]` voxels on `lattice`: a header, then chunks in order."""
        if tuple(array.shape) != lattice.shape:
            raise ValueError(f"volume array shape {array.shape} is not the lattice's {lattice.shape}")
        data = little_endian_bytes(array)
        raw = memoryview(data).cast("B")
        if chunk_bytes is None:
            recommended = self.engine_info().upload_chunk_bytes
            chunk_bytes = int(recommended) if recommended else DEFAULT_CHUNK_BYTES
        header = pb.VolumeHeader(
            geometry=lattice.to_pb(),
            scalar_type=pb.ScalarType.Value(scalar_type_name(data.dtype)),
            total_bytes=raw.nbytes,
            name=name,
        )
        stats = self.stats

        def messages() -> Iterator[pb.UploadVolumeRequest]:
            yield pb.UploadVolumeRequest(header=header)
            for offset in range(0, raw.nbytes, chunk_bytes):
                chunk = raw[offset:offset + chunk_bytes].tobytes()
                stats.volume_bytes_sent += len(chunk)
                yield pb.UploadVolumeRequest(data=chunk, offset=offset)

        reply = self._call("UploadVolume", self._stub.UploadVolume, messages())
        self.stats.volume_uploads += 1
        return reply

    def has_volume(self, volume_id: str) -> bool:
        """Whether the engine still holds a volume."""
        try:
            self._call("GetVolume", self._stub.GetVolume, pb.GetVolumeRequest(volume_id=volume_id),
                       timeout=QUICK_CALL_TIMEOUT_S)
            return True
        except EngineError as e:
            if e.code == grpc.StatusCode.NOT_FOUND:
                return False
            raise

    def download_volume(self, volume_id: str) -> DownloadedVolume:
        """The voxels and `VolumeRef` of a volume the engine holds (one an effect made,
        `ApplyEffectResponse.volumes`). The stream is checked against its first message:
        chunks in order without gaps, exactly `header.total_bytes` bytes, which must be the
        lattice's voxel count times the size of `header.scalar_type`. An id the engine no
        longer holds raises EngineError NOT_FOUND; `cancel()` stops the download."""
        method = "DownloadVolume"
        self._connect()
        call = self._stub.DownloadVolume(pb.GetVolumeRequest(volume_id=volume_id),
                                         metadata=self._metadata())
        self._track(call)
        try:
            ref, dtype, data, received = None, None, None, 0
            for chunk in call:
                if ref is None:
                    if not chunk.HasField("volume"):
                        raise EngineError(method, grpc.StatusCode.DATA_LOSS,
                                          f"volume {volume_id}: the first message carries no VolumeRef")
                    ref = chunk.volume
                    dtype, data = _download_buffer(method, volume_id, ref)
                elif chunk.HasField("volume"):
                    raise EngineError(method, grpc.StatusCode.DATA_LOSS,
                                      f"volume {volume_id}: a second VolumeRef after the first message")
                if not chunk.data:
                    continue
                if chunk.offset != received:
                    raise EngineError(method, grpc.StatusCode.DATA_LOSS,
                                      f"volume {volume_id}: chunk at offset {chunk.offset}, expected {received}")
                end = received + len(chunk.data)
                if end > len(data):
                    raise EngineError(method, grpc.StatusCode.DATA_LOSS,
                                      f"volume {volume_id}: {end} bytes received, more than the "
                                      f"{len(data)} the header declares")
                data[received:end] = chunk.data
                received = end
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED:
                raise EngineError(method, grpc.StatusCode.CANCELLED, "cancelled by the user") from None
            raise _engine_error(method, e) from None
        finally:
            self._untrack(call)
        if ref is None:
            raise EngineError(method, grpc.StatusCode.DATA_LOSS,
                              f"volume {volume_id}: the stream ended without a VolumeRef")
        if received != len(data):
            raise EngineError(method, grpc.StatusCode.DATA_LOSS,
                              f"volume {volume_id}: {received} bytes received, the header declares {len(data)}")
        lattice = Lattice.from_pb(ref.header.geometry)
        array = np.frombuffer(data, dtype=dtype.newbyteorder("<")).reshape(lattice.shape)
        return DownloadedVolume(array.astype(dtype, copy=False), ref)

    def volume_id(self, source: SourceVolume, force_upload: bool = False) -> str:
        """The engine's id of `source`, uploading it unless this client already did."""
        if not force_upload:
            known = self.volumes.find(source)
            if known is not None:
                return known
        ref = self.upload_volume(source.array, source.lattice, source.name)
        self.volumes.store(source, ref.volume_id)
        return ref.volume_id

    def _with_volume(self, source: Optional[SourceVolume], call: Callable[[str], object]):
        """Runs `call(volume_id)`; when the engine no longer knows the volume, uploads it
        again and retries once."""
        if source is None:
            return call("")
        volume_id = self.volume_id(source)
        try:
            return call(volume_id)
        except EngineError as e:
            if e.code != grpc.StatusCode.NOT_FOUND:
                raise
            self.volumes.forget(volume_id)
            self.stats.reuploads_after_not_found += 1
            return call(self.volume_id(source, force_upload=True))

    # -- effects ----------------------------------------------------------------------------

    def apply_effect(
        self,
        request: pb.ApplyEffectRequest,
        source: Optional[SourceVolume] = None,
        stream: bool = False,
        on_progress: Optional[Callable[[float, str], None]] = None,
        timeout_s: Optional[float] = None,
    ) -> pb.ApplyEffectResponse:
        """Runs an effect. `request.volume_id` is filled from `source` (uploaded when
        needed). With `stream`, progress events go to `on_progress(fraction, message)`.
        `cancel()` from another thread stops the call (EngineError CANCELLED)."""

        def run(volume_id: str) -> pb.ApplyEffectResponse:
            req = pb.ApplyEffectRequest()
            req.CopyFrom(request)
            req.volume_id = volume_id
            self.stats.effect_calls += 1
            if stream:
                return self._apply_stream(req, on_progress, timeout_s)
            return self._apply_unary(req, timeout_s)

        return self._with_volume(source, run)

    def _track(self, call) -> None:
        with self._active_lock:
            self._active.append(call)

    def _untrack(self, call) -> None:
        with self._active_lock:
            if call in self._active:
                self._active.remove(call)

    def _apply_unary(self, req, timeout_s):
        return self._cancellable("ApplyEffect", self._stub.ApplyEffect, req, timeout_s)

    def _cancellable(self, method: str, stub_method, req, timeout_s):
        """A unary call that `cancel()` stops from another thread. Without a health check
        first when the engine answered lately (`ANSWERED_FRESH_S`); if the connection died
        since, the call fails at once (UNAVAILABLE) and is made again after the check. The
        calls made this way compute from their request alone, so a second try is safe."""
        checked = not self._answered_lately()
        if checked:
            self._connect()
        try:
            return self._cancellable_once(method, stub_method, req, timeout_s)
        except EngineError as e:
            if checked or e.code != grpc.StatusCode.UNAVAILABLE:
                raise
        self._answered_at = None
        self.stats.retries_after_unavailable += 1
        self._connect()
        return self._cancellable_once(method, stub_method, req, timeout_s)

    def _cancellable_once(self, method: str, stub_method, req, timeout_s):
        future = stub_method.future(req, metadata=self._metadata(), timeout=timeout_s)
        self._track(future)
        try:
            reply = future.result()
        except grpc.FutureCancelledError:
            raise EngineError(method, grpc.StatusCode.CANCELLED, "cancelled by the user") from None
        except grpc.RpcError as e:
            raise _engine_error(method, e) from None
        finally:
            self._untrack(future)
        self._answered()
        return reply

    # -- preview sessions (auto-complete effects) -------------------------------------------

    def start_preview(self, request: pb.StartPreviewRequest, source: Optional[SourceVolume] = None,
                      timeout_s: Optional[float] = None) -> pb.PreviewResponse:
        """Starts a preview session (Slicer's Initialize); `request.volume_id` is filled
        from `source`. `cancel()` stops it (EngineError CANCELLED; no session stays open)."""

        def run(volume_id: str) -> pb.PreviewResponse:
            req = pb.StartPreviewRequest()
            req.CopyFrom(request)
            req.volume_id = volume_id
            self.stats.effect_calls += 1
            return self._cancellable("StartPreview", self._stub.StartPreview, req, timeout_s)

        return self._with_volume(source, run)

    def update_preview(self, request: pb.UpdatePreviewRequest,
                       timeout_s: Optional[float] = None) -> pb.PreviewResponse:
        """Sends seed edits and changed parameters; answers the new preview. `cancel()`
        stops the computation (the session stays open)."""
        self.stats.effect_calls += 1
        return self._cancellable("UpdatePreview", self._stub.UpdatePreview, request, timeout_s)

    def apply_preview(self, session_id: str) -> pb.ApplyEffectResponse:
        """The modifiers that write the last preview into the segments; closes the session."""
        return self._cancellable("ApplyPreview", self._stub.ApplyPreview,
                                 pb.PreviewSessionRequest(session_id=session_id), None)

    def cancel_preview(self, session_id: str) -> None:
        """Closes the session (and stops its running update); never fails on a closed one."""
        self._call("CancelPreview", self._stub.CancelPreview,
                   pb.PreviewSessionRequest(session_id=session_id), timeout=QUICK_CALL_TIMEOUT_S)

    def _apply_stream(self, req, on_progress, timeout_s):
        self._connect()
        call = self._stub.ApplyEffectStream(req, metadata=self._metadata(), timeout=timeout_s)
        self._track(call)
        try:
            for event in call:
                which = event.WhichOneof("event")
                if which == "progress" and on_progress is not None:
                    on_progress(event.progress.fraction, event.progress.message)
                elif which == "result":
                    return event.result
            raise EngineError("ApplyEffectStream", grpc.StatusCode.INTERNAL,
                              "the stream ended without a result")
        except grpc.RpcError as e:
            raise _engine_error("ApplyEffectStream", e) from None
        finally:
            self._untrack(call)

    # -- export ---------------------------------------------------------------------------------

    def export(self, request: pb.ExportRequest, source: Optional[SourceVolume] = None) -> bytes:
        """The exported file's bytes (`request.path` must be empty). `source` gives the
        reference lattice and is uploaded when needed."""
        if request.path:
            raise ValueError("export streams the file back: leave request.path empty")

        def run(volume_id: str) -> bytes:
            req = pb.ExportRequest()
            req.CopyFrom(request)
            req.volume_id = volume_id
            return b"".join(self._export_chunks(req))

        return self._with_volume(source, run)

    def _export_chunks(self, req) -> Iterable[bytes]:
        self._connect()
        try:
            expected = 0
            for chunk in self._stub.Export(req, metadata=self._metadata()):
                if chunk.offset != expected:
                    raise EngineError("Export", grpc.StatusCode.DATA_LOSS,
                                      f"chunk at offset {chunk.offset}, expected {expected}")
                expected += len(chunk.data)
                yield chunk.data
        except grpc.RpcError as e:
            raise _engine_error("Export", e) from None


def _download_buffer(method: str, volume_id: str, ref):
    """The dtype and a zeroed buffer of the size a VolumeRef's header declares, checked
    against its lattice and scalar type."""
    header = ref.header
    try:
        dtype = numpy_dtype(pb.ScalarType.Name(header.scalar_type))
        lattice = Lattice.from_pb(header.geometry)
    except ValueError as e:
        raise EngineError(method, grpc.StatusCode.DATA_LOSS, f"volume {volume_id}: {e}") from None
    expected = lattice.voxels * dtype.itemsize
    if header.total_bytes != expected:
        raise EngineError(method, grpc.StatusCode.DATA_LOSS,
                          f"volume {volume_id}: total_bytes is {header.total_bytes} but "
                          f"{lattice.size} voxels of {dtype} need {expected}")
    return dtype, bytearray(expected)


def _engine_error(method: str, e: grpc.RpcError) -> EngineError:
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = e.details() if hasattr(e, "details") else str(e)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        details = f"{details} (set the engine token in the Segkit Engine module)"
    return EngineError(method, code, details or "")
