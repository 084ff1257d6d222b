"""Fixtures of the extension's headless tests.

Environment:
- SEGKIT_BIN: the engine binary (default: the more recently built of the repository's
  target/release/segkit and target/debug/segkit, so a stale build is not tested). Tests
  that need the engine skip with a message when it is missing.
- SEGKIT_TEST_DATA: the shared test data (default: ../shared/data from the repository);
  tests that need it skip with a message when it is absent.
- SEGKIT_REQUIRE_DATA=1 (set by scripts/test, so in CI): a missing engine binary or data
  file fails the tests instead: a skipped parity test is a missing test.

The session starts one engine (`segkit serve --listen 127.0.0.1:0`), reads its port from
the line it prints, and stops it at the end. Parity results are collected with the
`parity` fixture and printed as a table at the end of the run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

EXTENSION = Path(__file__).resolve().parents[1]
REPO = EXTENSION.parent

# The client package as Slicer installs it (next to SegkitEngine.py), and the helpers
# here; set here, not in an ini file, so any pytest invocation (the repository's
# pytest.ini, or `pytest slicer-extension`) finds them.
for _path in (EXTENSION / "SegkitEngine", Path(__file__).resolve().parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

PARITY_ROWS: list[tuple] = []


def missing(message: str):
    """Skips, or fails when SEGKIT_REQUIRE_DATA=1 (scripts/test, CI)."""
    if os.environ.get("SEGKIT_REQUIRE_DATA") == "1":
        pytest.fail(f"{message} (SEGKIT_REQUIRE_DATA=1: required here)", pytrace=False)
    pytest.skip(message)


def segkit_binary() -> Path:
    env = os.environ.get("SEGKIT_BIN")
    if env:
        return Path(env)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    built = [p for p in (target / "release" / "segkit", target / "debug" / "segkit") if p.is_file()]
    return max(built, key=lambda p: p.stat().st_mtime, default=target / "debug" / "segkit")


@pytest.fixture(scope="session")
def segkit_bin() -> Path:
    path = segkit_binary()
    if not path.is_file():
        missing(f"engine binary {path} not found: run `cargo build` or set SEGKIT_BIN")
    return path


@pytest.fixture(scope="session")
def engine(segkit_bin):
    """A running engine for the whole session; yields its LocalEngine."""
    from segkit_slicer.process import LocalEngine

    local = LocalEngine(str(segkit_bin)).start()
    try:
        local.wait_ready()
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = Path(os.environ.get("SEGKIT_TEST_DATA", REPO.parent / "shared" / "data"))
    if not d.is_dir():
        missing(f"test data folder {d} not found (set SEGKIT_TEST_DATA)")
    return d


@pytest.fixture(scope="session")
def ct_path(data_dir) -> Path:
    p = data_dir / "slicerio" / "slicerio" / "data" / "CTChest4.nrrd"
    if not p.is_file():
        missing(f"{p} not found in the test data")
    return p


@pytest.fixture(scope="session")
def lung_seg_path(data_dir) -> Path:
    p = data_dir / "slicerio" / "slicerio" / "data" / "Segmentation.seg.nrrd"
    if not p.is_file():
        missing(f"{p} not found in the test data")
    return p


@pytest.fixture(scope="session")
def ct_1mm_path(data_dir, tmp_path_factory) -> Path:
    """`ts/example_ct.nii.gz` (3 mm, 122 x 101 x 112) resampled to 1 mm voxels with linear
    interpolation by SimpleITK: a 366 x 303 x 336 int16 CT of 37 M voxels, written as NRRD,
    the volume the issue's parity checks and benchmarks use at full size."""
    import SimpleITK as sitk

    src = data_dir / "ts" / "example_ct.nii.gz"
    if not src.is_file():
        missing(f"{src} not found in the test data")
    image = sitk.ReadImage(str(src))
    size = [int(round(n * s)) for n, s in zip(image.GetSize(), image.GetSpacing())]
    resampled = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
                              (1.0, 1.0, 1.0), image.GetDirection(), -1024, sitk.sitkInt16)
    out = tmp_path_factory.mktemp("ct1mm") / "example_ct_1mm.nrrd"
    sitk.WriteImage(resampled, str(out), useCompression=False)
    return out


@pytest.fixture(scope="session")
def scene_volume_1mm(ct_1mm_path):
    """A MRML scene holding the 1 mm CT, read as Slicer reads volumes."""
    import slicer
    import slicer_reference as ref

    scene = slicer.vtkMRMLScene()
    volume = ref.load_volume(scene, ct_1mm_path)
    return scene, volume


@pytest.fixture(scope="session", autouse=True)
def _segmentation_converters():
    """slicer-core needs the converter rules registered before AddEmptySegment."""
    try:
        import slicer
    except ImportError:
        return
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
    factory.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())


@pytest.fixture(scope="session")
def scene_volume(ct_path):
    """A MRML scene holding CTChest4, read as Slicer reads volumes."""
    import slicer
    import slicer_reference as ref

    scene = slicer.vtkMRMLScene()
    volume = ref.load_volume(scene, ct_path)
    return scene, volume


@pytest.fixture(scope="session")
def expert(lung_seg_path, scene_volume):
    """The expert labels of `Segmentation.seg.nrrd` ([k][j][i]) on CTChest4's lattice
    (5 = right lung, 6 = left lung)."""
    import nrrd

    labels, header = nrrd.read(str(lung_seg_path), index_order="C")
    _, volume = scene_volume
    dims = volume.GetImageData().GetDimensions()
    assert labels.shape == (dims[2], dims[1], dims[0]), "expert labels are not on the CT lattice"
    offset = header.get("Segmentation_ReferenceImageExtentOffset", "0 0 0")
    assert [int(x) for x in str(offset).split()] == [0, 0, 0]
    return labels


@pytest.fixture(scope="session")
def logic(engine):
    """An EngineLogic connected to the session's engine."""
    from segkit_slicer.logic import EngineLogic

    engine_logic = EngineLogic(engine.address)
    yield engine_logic
    engine_logic.close()


@pytest.fixture(scope="session")
def parity():
    """Records a parity row: (case, segment, voxels in Slicer's result, voxels in the
    engine's, voxels that differ)."""

    def record(case: str, segment: str, slicer_voxels: int, engine_voxels: int, differing: int):
        PARITY_ROWS.append((case, segment, slicer_voxels, engine_voxels, differing))

    return record


def pytest_terminal_summary(terminalreporter):
    if not PARITY_ROWS:
        return
    tr = terminalreporter
    tr.section("parity: EngineLogic + segkit engine vs Slicer's own classes")
    header = ("case", "segment", "Slicer voxels", "engine voxels", "differing")
    widths = [max(len(str(r[i])) for r in PARITY_ROWS + [header]) for i in range(5)]
    line = lambda r: "| " + " | ".join(str(v).ljust(widths[i]) for i, v in enumerate(r)) + " |"
    tr.write_line(line(header))
    tr.write_line("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in PARITY_ROWS:
        tr.write_line(line(r))


# ---------------------------------------------------------------------------------------
# Exit without finalising native libraries.
#
# After the Fill between slices parity tests (which all pass) the interpreter crashes with
# SIGSEGV while it tears down slicer-core / VTK / ITK objects at exit, turning a green run
# into exit code 139. The cause is not found yet (the filter alone exits cleanly). Until it
# is, the run ends with os._exit and pytest's own exit status, after every report is out.

_EXIT_STATUS = {}


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if "status" in _EXIT_STATUS:
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS["status"])
