"""Shared fixtures for the interoperability tests.

These tests run segkit (the release or debug binary) beside reference implementations
(pynrrd, SimpleITK, nibabel, pydicom, dcm2niix, Teem, slicer-core) on the same files.

Environment:
- SEGKIT_BIN: the segkit binary (default: the more recently built of target/release/segkit
  and target/debug/segkit).
- SEGKIT_TEST_DATA: the shared test data folder (default: ../shared/data from the repo root).
  Tests that need it skip with a clear message when it is absent, and fail instead when
  SEGKIT_REQUIRE_DATA=1 (scripts/test, CI).
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _segkit_bin() -> Path:
    env = os.environ.get("SEGKIT_BIN")
    if env:
        return Path(env)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    built = [p for p in (target / "release" / "segkit", target / "debug" / "segkit") if p.is_file()]
    if built:
        return max(built, key=lambda p: p.stat().st_mtime)
    pytest.exit("segkit binary not found: build it (cargo build) or set SEGKIT_BIN", returncode=2)


@pytest.fixture(scope="session")
def segkit_bin() -> Path:
    return _segkit_bin()


@pytest.fixture(scope="session")
def data() -> Path:
    d = Path(os.environ.get("SEGKIT_TEST_DATA", REPO.parent / "shared" / "data"))
    if not d.is_dir():
        msg = f"test data folder {d} not found (set SEGKIT_TEST_DATA)"
        if os.environ.get("SEGKIT_REQUIRE_DATA") == "1":
            pytest.fail(f"{msg}; SEGKIT_REQUIRE_DATA=1: required here", pytrace=False)
        pytest.skip(msg)
    return d


@pytest.fixture(scope="session")
def segkit(segkit_bin):
    """Runs `segkit ARGS...`; returns the CompletedProcess. `check=False` lets a test inspect failures."""

    def run(*args, check=True, timeout=600):
        proc = subprocess.run(
            [str(segkit_bin), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"segkit {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}"
            )
        return proc

    return run


@pytest.fixture(scope="session")
def teem_unu():
    exe = shutil.which("teem-unu") or shutil.which("unu")
    if not exe:
        pytest.skip("Teem's unu not installed (apt-get install teem-apps)")
    return exe
