"""Tokens: an engine started with a token refuses every engine call without it
(UNAUTHENTICATED) and keeps its health service open.

The engine under test is used when SEGKIT_ENGINE_TOKEN says it requires a token;
otherwise a second local engine is started with `--token`."""

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import conformance_lib as cl
from conformance_lib import LATTICE

TOKEN = "conformance-s3cret"


@pytest.fixture(scope="module")
def guarded(engine, tmp_path_factory):
    """(address, token, process or None) of an engine that requires a token."""
    if engine.token:
        yield engine.address, engine.token, None
        return
    binary = cl.find_segkit_bin()
    if binary is None or not binary.exists():
        cl.missing("no local segkit binary to start an engine with --token (or set SEGKIT_ENGINE_TOKEN)")
    proc = cl.start_engine(binary, tmp_path_factory.mktemp("guarded") / "engine.log", "--token", TOKEN)
    yield proc.address, TOKEN, proc
    alive = proc.alive()
    code = proc.stop()
    assert alive and code == 0, f"guarded engine: alive {alive}, exit {code}\n{proc.log_text()[-2000:]}"


def _calls(pbs, channel):
    pb = pbs.pb
    stub = pbs.grpc.EngineStub(channel)
    arr = np.zeros(LATTICE.shape, np.int16)
    return {
        "GetEngineInfo": lambda: stub.GetEngineInfo(pb.GetEngineInfoRequest(), timeout=10),
        "ListEffects": lambda: stub.ListEffects(pb.ListEffectsRequest(), timeout=10),
        "UploadVolume": lambda: stub.UploadVolume(cl.upload_messages(pb, arr, LATTICE), timeout=10),
        "OpenVolume": lambda: stub.OpenVolume(pb.OpenVolumeRequest(path="/etc/hostname"), timeout=10),
        "GetVolume": lambda: stub.GetVolume(pb.GetVolumeRequest(volume_id="00"), timeout=10),
        "ApplyEffect": lambda: stub.ApplyEffect(pb.ApplyEffectRequest(effect="Threshold"), timeout=10),
        "ApplyEffectStream": lambda: list(stub.ApplyEffectStream(pb.ApplyEffectRequest(effect="Threshold"), timeout=10)),
        "Export": lambda: list(stub.Export(pb.ExportRequest(format=1), timeout=10)),
    }


@pytest.mark.parametrize("kind", ["missing", "wrong", "prefix", "extended"])
def test_wrong_or_missing_token_is_unauthenticated(pbs, guarded, kind):
    """Every engine RPC without the token, or with another one (also a prefix or an
    extension of it), is UNAUTHENTICATED, before the request is looked at."""
    address, token, _ = guarded
    given = {"missing": None, "wrong": "wrong-token", "prefix": token[:-1], "extended": token + "x"}[kind]
    channel = cl.open_channel(address, given)
    try:
        for name, call in _calls(pbs, channel).items():
            with pytest.raises(grpc.RpcError) as e:
                call()
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, f"{name}: {e.value.code()} {e.value.details()}"
    finally:
        channel.close()


def test_right_token_is_served(pbs, guarded):
    """With `authorization: Bearer <token>` the engine serves."""
    address, token, _ = guarded
    channel = cl.open_channel(address, token)
    try:
        stub = pbs.grpc.EngineStub(channel)
        assert stub.GetEngineInfo(pbs.pb.GetEngineInfoRequest(), timeout=10).api_version == "segkit.v1"
        ref = cl.upload(stub, pbs.pb, cl.synthetic_volume(), LATTICE)
        assert ref.volume_id
    finally:
        channel.close()


def test_health_is_open_without_token(guarded):
    """The health service answers without a token, so load balancers can probe it."""
    address, _, _ = guarded
    channel = cl.open_channel(address)
    try:
        r = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert r.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        channel.close()


def test_sigterm_stops_a_local_engine_cleanly(segkit_bin, tmp_path):
    """A local `segkit serve` stops on SIGTERM with exit code 0 (graceful shutdown)."""
    proc = cl.start_engine(segkit_bin, tmp_path / "engine.log")
    channel = cl.open_channel(proc.address)
    channel.close()
    assert proc.stop() == 0, proc.log_text()
