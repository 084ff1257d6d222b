"""Fixtures of the engine conformance suite.

The suite drives `proto/segkit/v1/engine.proto` from a plain grpcio client, so any engine
that implements the contract can be checked against the same cases.

Environment:
- SEGKIT_ENGINE: the engine's address (host:port). When unset, the suite starts the local
  segkit (`SEGKIT_BIN`, else the more recently built of target/{debug,release}/segkit) with
  `serve --listen 127.0.0.1:0` and stops it at the end.
- SEGKIT_ENGINE_TOKEN: the token the engine requires (sent as `authorization: Bearer T`).
- SEGKIT_ENGINE_SHARED_FS: set to 0 when the engine does not see this machine's files
  (skips OpenVolume and Export-to-path cases).
- SEGKIT_TEST_DATA: the shared test data folder (default ../shared/data from the repo).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

import conformance_lib as cl

# ---------------------------------------------------------------------------------------
# Stubs and engine


@pytest.fixture(scope="session")
def pbs(tmp_path_factory):
    """The generated modules: `pbs.pb` (messages) and `pbs.grpc` (stubs)."""
    return cl.generate_stubs(tmp_path_factory.mktemp("stubs"))


@pytest.fixture(scope="session")
def pb(pbs):
    return pbs.pb


@dataclass
class Engine:
    address: str
    token: str | None
    channel: grpc.Channel
    stub: object
    process: cl.EngineProcess | None  # None for an engine given by SEGKIT_ENGINE

    def assert_serving(self, context: str = "") -> None:
        """The engine still answers GetEngineInfo (and, when started here, still runs)."""
        if self.process is not None:
            assert self.process.alive(), f"engine died {context}:\n{self.process.log_text()[-3000:]}"
        from segkit.v1 import engine_pb2

        info = self.stub.GetEngineInfo(engine_pb2.GetEngineInfoRequest(), timeout=10)
        assert info.api_version == "segkit.v1", context


@pytest.fixture(scope="session")
def segkit_bin():
    b = cl.find_segkit_bin()
    if b is None or not b.exists():
        cl.missing("no local segkit binary (cargo build, or set SEGKIT_BIN)")
    return b


@pytest.fixture(scope="session")
def engine(pbs, tmp_path_factory):
    """The engine under test: SEGKIT_ENGINE, or a local `segkit serve` on port 0."""
    token = os.environ.get("SEGKIT_ENGINE_TOKEN") or None
    address = os.environ.get("SEGKIT_ENGINE")
    process = None
    if not address:
        binary = cl.find_segkit_bin()
        if binary is None or not binary.exists():
            pytest.exit("SEGKIT_ENGINE unset and no segkit binary: cargo build, or set SEGKIT_BIN", returncode=2)
        log = tmp_path_factory.mktemp("engine") / "engine.log"
        extra = ["--token", token] if token else []
        process = cl.start_engine(binary, log, *extra)
        address = process.address
    channel = cl.open_channel(address, token)
    eng = Engine(address, token, channel, pbs.grpc.EngineStub(channel), process)
    yield eng
    channel.close()
    if process is not None:
        alive = process.alive()
        code = process.stop()
        assert alive, f"the engine died during the suite:\n{process.log_text()[-3000:]}"
        assert code == 0, f"engine exit code {code} after SIGTERM:\n{process.log_text()[-3000:]}"


@pytest.fixture(scope="session")
def stub(engine):
    return engine.stub


@pytest.fixture(scope="session")
def info(stub, pb):
    return stub.GetEngineInfo(pb.GetEngineInfoRequest(), timeout=10)


@pytest.fixture(scope="session")
def effects(stub, pb):
    """ListEffects as a dict by name."""
    return {e.name: e for e in stub.ListEffects(pb.ListEffectsRequest(), timeout=10).effects}


@pytest.fixture(scope="session")
def shared_fs(info):
    """The engine reads and writes this machine's files (OpenVolume, Export to a path)."""
    if os.environ.get("SEGKIT_ENGINE_SHARED_FS", "1") == "0":
        pytest.skip("SEGKIT_ENGINE_SHARED_FS=0: the engine does not see this machine's files")
    if not info.open_by_path:
        pytest.skip("the engine reports open_by_path = false")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = Path(os.environ.get("SEGKIT_TEST_DATA", cl.REPO.parent / "shared" / "data"))
    if not d.is_dir():
        cl.missing(f"test data folder {d} not found (set SEGKIT_TEST_DATA)")
    return d


@pytest.fixture
def expect_error(engine):
    """`expect_error(call, codes, *words)`: the call fails with one of `codes`, the message
    contains every word (case-insensitive), and the engine still serves afterwards."""

    def check(call, codes, *words):
        if isinstance(codes, grpc.StatusCode):
            codes = (codes,)
        with pytest.raises(grpc.RpcError) as err:
            result = call()
            # Streaming answers fail when iterated.
            if hasattr(result, "__iter__") and not hasattr(result, "ListFields"):
                list(result)
        e = err.value
        assert e.code() in codes, f"expected {[c.name for c in codes]}, got {e.code().name}: {e.details()}"
        details = e.details() or ""
        for w in words:
            assert str(w).lower() in details.lower(), f"message {details!r} does not name {w!r}"
        engine.assert_serving(f"after {e.code().name}: {details}")
        return e

    return check


# ---------------------------------------------------------------------------------------
# The synthetic volume and segment of the effect cases

LATTICE = cl.LATTICE


@pytest.fixture(scope="session")
def volume_array():
    return cl.synthetic_volume()


@pytest.fixture(scope="session")
def volume(stub, pb, volume_array):
    """The synthetic volume uploaded in small chunks; its VolumeRef."""
    return cl.upload(stub, pb, volume_array, LATTICE, chunk_bytes=100, name="synthetic")


@pytest.fixture(scope="session")
def lattice():
    return LATTICE
