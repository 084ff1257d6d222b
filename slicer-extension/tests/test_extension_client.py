"""The client against a real engine: volumes are sent once, an engine restart is
survived without the user noticing, token, gzip, streaming, health and process control.

Each test here starts its own engine (`LocalEngine`) so it can restart or configure it
without disturbing the session's engine.
"""

from __future__ import annotations

import types

import grpc
import numpy as np
import pytest

import slicer_reference as ref

THRESHOLD = {"MinimumThreshold": -1024, "MaximumThreshold": -500}


@pytest.fixture
def own_engine(segkit_bin):
    from segkit_slicer.process import LocalEngine

    engines = []

    def start(**kwargs):
        e = LocalEngine(str(segkit_bin), **kwargs).start()
        e.wait_ready()
        engines.append(e)
        return e

    yield start
    for e in engines:
        e.stop()


def new_world(scene_volume, name):
    scene, volume = scene_volume
    return ref.World(scene, volume, name, segments=(("lungs", "Lungs"),))


def test_second_effect_sends_no_volume_bytes_and_restart_reuploads(own_engine, scene_volume):
    from segkit_slicer.logic import EngineLogic
    from segkit_slicer.process import LocalEngine

    engine = own_engine()
    _, volume = scene_volume
    volume_bytes = ref.image_array(volume.GetImageData()).nbytes
    logic = EngineLogic(engine.address)
    stats = logic.client.stats
    w = new_world(scene_volume, "upload once")

    first = logic.apply("Threshold", THRESHOLD, volume, w.seg, "lungs", w.editor)
    assert (stats.volume_uploads, stats.volume_bytes_sent) == (1, volume_bytes)
    reference_mask = w.mask("lungs").copy()

    # Same volume, other parameters, another segmentation: no voxel bytes.
    logic.apply("Threshold", {"MinimumThreshold": -600, "MaximumThreshold": 100}, volume, w.seg, "lungs", w.editor)
    w2 = new_world(scene_volume, "upload once, second segmentation")
    logic.apply("Threshold", THRESHOLD, volume, w2.seg, "lungs", w2.editor)
    assert (stats.volume_uploads, stats.volume_bytes_sent) == (1, volume_bytes)
    assert np.array_equal(w2.mask("lungs"), reference_mask)

    # The node's modification time moves but its voxels do not: found by content.
    volume.SetName(volume.GetName() + " renamed")
    volume.Modified()
    logic.apply("Threshold", THRESHOLD, volume, w.seg, "lungs", w.editor)
    assert (stats.volume_uploads, stats.volume_bytes_sent) == (1, volume_bytes)

    # Restart the engine on the same port: it has lost the volume, the client notices
    # NOT_FOUND, uploads again and retries, and the result is the same.
    port = engine.port
    engine.stop()
    restarted = own_engine(listen=f"127.0.0.1:{port}")
    assert restarted.port == port
    logic.apply("Threshold", THRESHOLD, volume, w.seg, "lungs", w.editor)
    assert stats.reuploads_after_not_found == 1
    assert (stats.volume_uploads, stats.volume_bytes_sent) == (2, 2 * volume_bytes)
    assert np.array_equal(w.mask("lungs"), reference_mask)
    assert first.modifiers and first.modifiers[0].mask.sum() == reference_mask.sum()
    logic.close()
    assert isinstance(restarted, LocalEngine)


def test_effect_calls_skip_the_health_check_while_the_engine_answers(own_engine, scene_volume):
    """A health check before every call is one more round trip (and, in Slicer, one more
    wait for the interpreter lock): made only when the engine has not answered lately,
    and an engine restarted meanwhile still gets the call."""
    from segkit_slicer import client as client_module
    from segkit_slicer.logic import EngineLogic

    engine = own_engine()
    _, volume = scene_volume
    logic = EngineLogic(engine.address)
    stats = logic.client.stats
    w = new_world(scene_volume, "health checks")
    logic.apply("Threshold", THRESHOLD, volume, w.seg, "lungs", w.editor)
    reference = w.mask("lungs").copy()
    checks = stats.health_checks
    assert checks >= 1
    for _ in range(3):
        logic.apply("Threshold", THRESHOLD, volume, w.seg, "lungs", w.editor)
    assert stats.health_checks == checks and stats.effect_calls == 4

    # Quiet for longer than ANSWERED_FRESH_S: checked again first.
    logic.client._answered_at -= client_module.ANSWERED_FRESH_S
    logic.apply("Threshold", THRESHOLD, volume, w.seg, "lungs", w.editor)
    assert stats.health_checks == checks + 1

    # Restarted on the same port right after an answer: the call is not checked first;
    # if it fails on the dead connection it is checked and made again, and either way the
    # lost volume is uploaded again and the result is the same.
    port = engine.port
    engine.stop()
    own_engine(listen=f"127.0.0.1:{port}")
    logic.apply("Threshold", THRESHOLD, volume, w.seg, "lungs", w.editor)
    assert stats.reuploads_after_not_found == 1
    assert stats.health_checks >= checks + 2   # the re-upload's, at least
    assert stats.retries_after_unavailable <= 1
    assert np.array_equal(w.mask("lungs"), reference)
    logic.close()


def test_changed_voxels_are_uploaded_again(own_engine, scene_volume, ct_path):
    import slicer

    from segkit_slicer.logic import EngineLogic

    engine = own_engine()
    scene = slicer.vtkMRMLScene()
    volume = ref.load_volume(scene, ct_path)   # a private copy: its voxels are edited
    w = ref.World(scene, volume, "changed voxels", segments=(("lungs", "Lungs"),))
    logic = EngineLogic(engine.address)
    logic.apply("Threshold", THRESHOLD, volume, w.seg, "lungs", w.editor)
    before = w.mask("lungs").sum()
    voxels = ref.image_array(volume.GetImageData())
    voxels[:, :, :] = np.where(voxels <= -500, 0, voxels)   # no air left
    volume.GetImageData().Modified()
    volume.Modified()
    logic.apply("Threshold", THRESHOLD, volume, w.seg, "lungs", w.editor)
    assert logic.client.stats.volume_uploads == 2
    assert before > 0 and w.mask("lungs").sum() == 0
    logic.close()


def test_token_is_sent_and_required(own_engine, scene_volume):
    from segkit_slicer.client import EngineClient, EngineError

    engine = own_engine(token="s3cret-token")
    with EngineClient(engine.address) as anonymous:
        assert anonymous.health() == "SERVING"   # health stays open for probes
        with pytest.raises(EngineError) as e:
            anonymous.list_effects()
        assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert "token" in str(e.value)
    with EngineClient(engine.address, token="s3cret-token") as client:
        assert {e.name for e in client.list_effects()} >= {"Threshold", "Islands"}


def test_gzip_and_streaming_give_the_same_answer(engine, scene_volume):
    """Unary and streamed calls, with and without gzip, answer the same modifier."""
    from segkit_slicer.client import EngineClient, SourceVolume
    from segkit_slicer.geometry import image_lattice, image_to_array
    from segkit_slicer.logic import PreparedEffect, _volume_geometry_image, mask_from_pb

    _, volume = scene_volume
    lattice, start = image_lattice(_volume_geometry_image(volume))
    source = SourceVolume(node_key="ct", fingerprint=0, array=image_to_array(volume.GetImageData()),
                          lattice=lattice)
    prepared = PreparedEffect(effect="Threshold", parameters={"MinimumThreshold": "-1024", "MaximumThreshold": "-500"},
                              lattice=lattice, extent_start=start, source=source, segments=[],
                              selected_segment_id="lungs")
    answers, progress = [], []
    for compression, stream in (("none", False), ("gzip", False), ("gzip", True)):
        with EngineClient(engine.address, compression=compression) as client:
            reply = client.apply_effect(prepared.request(), source=source, stream=stream,
                                        on_progress=lambda f, msg: progress.append((f, msg)))
            answers.append(mask_from_pb(reply.modifiers[0].mask, lattice))
    assert answers[0].sum() > 0
    assert all(np.array_equal(answers[0], a) for a in answers[1:])
    assert progress and progress[-1][0] == 1.0


def test_engine_errors_carry_the_reason(engine):
    from segkit_slicer.client import EngineClient, EngineError
    from segkit_slicer.proto.segkit.v1 import engine_pb2 as pb

    with EngineClient(engine.address) as client:
        with pytest.raises(EngineError) as e:
            client.apply_effect(pb.ApplyEffectRequest(effect="NoSuchEffect"))
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "NoSuchEffect" in e.value.details
        assert not client.has_volume("0" * 16)


def test_unreachable_engine(segkit_bin):
    from segkit_slicer.client import EngineClient, EngineError
    from segkit_slicer.process import LocalEngine

    # Find a free port by starting and stopping an engine on port 0.
    e = LocalEngine(str(segkit_bin)).start()
    address = e.wait_ready()
    e.stop()
    with EngineClient(address, connect_timeout_s=0.5) as client:
        assert client.health(timeout_s=0.5) == "UNREACHABLE"
        with pytest.raises(EngineError) as err:
            client.list_effects()
        assert err.value.code == grpc.StatusCode.UNAVAILABLE
        assert address in str(err.value)


def test_local_engine_reports_a_failed_start(segkit_bin):
    from segkit_slicer.process import EngineStartError, LocalEngine, find_segkit_binary

    bad = LocalEngine(str(segkit_bin), listen="10.255.255.1:1")   # not loopback, no token
    bad.start()
    with pytest.raises(EngineStartError, match="exited with status"):
        bad.wait_ready(timeout_s=20)
    bad.stop()
    assert find_segkit_binary(str(segkit_bin)) == str(segkit_bin)
    assert find_segkit_binary("/nonexistent/segkit") is None


def test_the_binary_is_found_beside_the_extension_and_started_with_slicers_environment(
        segkit_bin, tmp_path, monkeypatch):
    import slicer
    from segkit_slicer import process

    # Not on PATH: the copy shipped beside the extension is found, before PATH.
    shipped = tmp_path / "bin" / "segkit"
    shipped.parent.mkdir()
    shipped.symlink_to(segkit_bin)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert process.find_segkit_binary(None, beside=(tmp_path / "nothing", shipped)) == str(shipped)
    assert process.find_segkit_binary(None, beside=(tmp_path / "nothing",)) is None
    # The default places: <extension>/bin and this repository's target/release.
    assert [p.parts[-2:] for p in process.BESIDE_EXTENSION] == [("bin", "segkit"), ("release", "segkit")]

    # Slicer's startup environment, not the launcher's, reaches the engine.
    startup = {"PATH": "/usr/bin:/bin", "SEGKIT_MARK": "startup"}
    monkeypatch.setattr(slicer.util, "startupEnvironment", lambda: dict(startup), raising=False)
    monkeypatch.setenv("SEGKIT_MARK", "launcher")
    env = process.startup_environment()
    assert env["SEGKIT_MARK"] == "startup"
    engine = process.LocalEngine(str(shipped)).start()
    try:
        engine.wait_ready(timeout_s=30)
        assert engine.address.startswith("127.0.0.1:")
    finally:
        engine.stop()


@pytest.mark.parametrize("dtype", ["int16", "uint8", "float32", "float64", "int64"])
def test_download_gives_back_the_uploaded_voxels(engine, dtype):
    """DownloadVolume: the same voxels, type and lattice as uploaded, over several chunks."""
    from segkit_slicer.client import EngineClient
    from segkit_slicer.geometry import Lattice

    lattice = Lattice(size=(70, 50, 40), origin=(-3.0, 4.5, 10.0), spacing=(0.7, 0.8, 2.5),
                      direction=(0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    rng = np.random.default_rng(5)
    array = (rng.random(lattice.shape) * 1000 - 300).astype(dtype)
    with EngineClient(engine.address) as client:
        ref = client.upload_volume(array, lattice, name="round trip", chunk_bytes=100_000)
        got = client.download_volume(ref.volume_id)
    assert got.array.dtype == np.dtype(dtype) and got.array.shape == lattice.shape
    assert np.array_equal(got.array, array)
    assert got.lattice.matches(lattice, 1e-9) and got.ref.volume_id == ref.volume_id
    assert got.ref.header.total_bytes == array.nbytes


def test_download_of_an_unknown_volume_is_not_found(engine):
    from segkit_slicer.client import EngineClient, EngineError

    with EngineClient(engine.address) as client:
        with pytest.raises(EngineError) as e:
            client.download_volume("0" * 32)
    assert e.value.code == grpc.StatusCode.NOT_FOUND and e.value.method == "DownloadVolume"
    assert "0" * 32 in e.value.details


def test_download_checks_the_stream(monkeypatch):
    """Chunks out of order, too few or too many bytes, a header whose total does not fit its
    lattice: DATA_LOSS naming the problem, never a wrong array."""
    from segkit_slicer.client import EngineClient, EngineError
    from segkit_slicer.geometry import Lattice
    from segkit_slicer.proto.segkit.v1 import engine_pb2 as pb

    lattice = Lattice(size=(4, 3, 2), origin=(0.0, 0.0, 0.0), spacing=(1.0, 1.0, 1.0),
                      direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    data = np.arange(24, dtype="<i2").tobytes()

    def ref(total=len(data), scalar=pb.SCALAR_TYPE_INT16):
        return pb.VolumeRef(volume_id="v", header=pb.VolumeHeader(
            geometry=lattice.to_pb(), scalar_type=scalar, total_bytes=total))

    cases = [
        ([pb.VolumeChunk(volume=ref()), pb.VolumeChunk(data=data[:10], offset=0),
          pb.VolumeChunk(data=data[10:], offset=10)], None),
        ([pb.VolumeChunk(volume=ref()), pb.VolumeChunk(data=data[10:], offset=10)], "offset 10, expected 0"),
        ([pb.VolumeChunk(volume=ref()), pb.VolumeChunk(data=data[:40], offset=0)], "the header declares 48"),
        ([pb.VolumeChunk(volume=ref()), pb.VolumeChunk(data=data + b"xx", offset=0)], "more than the 48"),
        ([pb.VolumeChunk(volume=ref(total=50))], "total_bytes is 50"),
        ([pb.VolumeChunk(volume=ref(scalar=pb.SCALAR_TYPE_UNSPECIFIED))], "unknown voxel type"),
        ([pb.VolumeChunk(data=data, offset=0)], "no VolumeRef"),
        ([], "without a VolumeRef"),
    ]
    client = EngineClient("127.0.0.1:1")
    monkeypatch.setattr(client, "_connect", lambda: None)
    try:
        for chunks, problem in cases:
            monkeypatch.setattr(client, "_stub", types.SimpleNamespace(
                DownloadVolume=lambda request, metadata=(), chunks=chunks: _Call(chunks)))
            if problem is None:
                got = client.download_volume("v")
                assert np.array_equal(got.array, np.arange(24).reshape(2, 3, 4))
                continue
            with pytest.raises(EngineError) as e:
                client.download_volume("v")
            assert e.value.code == grpc.StatusCode.DATA_LOSS and problem in e.value.details, (problem, e.value)
    finally:
        client.close()


class _Call:
    """A server-streaming call's stand-in: iterable and cancellable."""

    def __init__(self, items):
        self.items = list(items)

    def __iter__(self):
        return iter(self.items)

    def cancel(self):
        return True
