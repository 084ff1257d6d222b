"""Fixtures of the engine's load and fault tests.

Each test starts its own engines (`engines`), because the faults kill, restart, starve or
limit them, and the load test reads the peak memory of an engine that did nothing else.

Environment (as in the other suites):
- SEGKIT_BIN: the engine binary (default: the more recently built of target/{debug,release}/segkit).
- SEGKIT_REQUIRE_DATA=1 (scripts/test, CI): a missing binary or data file fails the tests
  instead of skipping them.
- SEGKIT_TEST_DATA: the shared test data (default ../shared/data from the repository).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for _path in (HERE, REPO / "tests" / "conformance", REPO / "slicer-extension" / "SegkitEngine"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import conformance_lib as cl  # noqa: E402
from loadkit import missing  # noqa: E402


@pytest.fixture(scope="session")
def segkit_bin() -> Path:
    path = cl.find_segkit_bin()
    if path is None or not path.is_file():
        missing(f"engine binary {path or 'target/{debug,release}/segkit'} not found: "
                "run `cargo build` or set SEGKIT_BIN")
    return path


@pytest.fixture(scope="session")
def stubs_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("stubs")
    cl.generate_stubs(d)
    return d


@pytest.fixture(scope="session")
def pbs(stubs_dir):
    """The generated modules: `pbs.pb` (messages) and `pbs.grpc` (stubs)."""
    import loadkit

    return loadkit._import_stubs(str(stubs_dir))


@pytest.fixture(scope="session")
def pb(pbs):
    return pbs.pb


@pytest.fixture
def engines(segkit_bin, tmp_path):
    """`engines(*args, **popen)` starts `segkit serve --listen 127.0.0.1:0 ARGS` and answers
    its EngineProcess; every engine still running is stopped after the test."""
    started = []

    def start(*args: str, **popen) -> cl.EngineProcess:
        log = tmp_path / f"engine{len(started)}.log"
        e = cl.start_engine(segkit_bin, log, *args, **popen)
        started.append(e)
        return e

    yield start
    for e in started:
        if e.alive():
            e.stop()
        elif e.proc.stdout:
            e.proc.stdout.close()


@pytest.fixture(scope="session")
def ct_path() -> Path:
    """CTChest4 (3D Slicer's chest CT, 128 x 128 x 34) from the shared test data."""
    d = Path(os.environ.get("SEGKIT_TEST_DATA", REPO.parent / "shared" / "data"))
    p = d / "slicerio" / "slicerio" / "data" / "CTChest4.nrrd"
    if not p.is_file():
        missing(f"{p} not found (set SEGKIT_TEST_DATA)")
    return p
