"""The client against a real engine: volumes are sent once, an engine restart is
survived without the user noticing, token, gzip, streaming, health and process control.

Each test here starts its own engine (`LocalEngine`) so it can restart or configure it
without disturbing the session's engine.
"""

from __future__ import annotations

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
