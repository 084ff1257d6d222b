"""Running segkit's engine for a team: request logs, TLS files, and the memory and path limits.

(TLS connections are tested with the extension's client in
slicer-extension/tests/test_extension_tls.py.)

These are segkit's own operating features (the README's "Running the engine for a team"),
not part of the proto's contract: each test starts a local `segkit serve` with the flags it
checks, whatever engine the rest of the suite targets.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

import conformance_lib as cl
from conformance_lib import LATTICE

PATIENT = "DOE^JANE 1962-03-14"


def _start(segkit_bin, tmp_path, *flags):
    return cl.start_engine(segkit_bin, tmp_path / "engine.log", *flags)


def _log_lines(proc: cl.EngineProcess, want: int, timeout: float = 10.0) -> list[dict]:
    """The engine's JSON log lines, once at least `want` of them are written."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [json.loads(line) for line in proc.log_text().splitlines() if line.startswith("{")]
        calls = [line for line in lines if line.get("target") == "segkit::call"]
        if len(calls) >= want or time.monotonic() > deadline:
            return calls
        time.sleep(0.05)


def test_json_logs_have_one_line_per_call_and_no_patient_name(pbs, segkit_bin, tmp_path):
    """One JSON object per call with method, volume id, effect, sizes, duration and status;
    the volume's name (here a DICOM patient name) is never written, nor, at the default
    level, an error's message (which may name a file)."""
    pb = pbs.pb
    proc = _start(segkit_bin, tmp_path, "--log-format", "json")
    try:
        stub = pbs.grpc.EngineStub(cl.open_channel(proc.address))
        arr = (np.arange(np.prod(LATTICE.shape)) % 300 - 100).astype(np.int16).reshape(LATTICE.shape)
        ref = cl.upload(stub, pb, arr, LATTICE, name=PATIENT)
        stub.ApplyEffect(pb.ApplyEffectRequest(
            effect="Threshold", volume_id=ref.volume_id,
            parameters={"MinimumThreshold": "0", "MaximumThreshold": "100"}), timeout=60)
        secret_path = tmp_path / PATIENT.replace("^", "_") / "ct.nrrd"
        with pytest.raises(grpc.RpcError) as e:
            stub.OpenVolume(pb.OpenVolumeRequest(path=str(secret_path)), timeout=30)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        calls = _log_lines(proc, 3)
    finally:
        assert proc.stop() == 0
    by_method = {c["method"]: c for c in calls}
    assert set(by_method) >= {"UploadVolume", "ApplyEffect", "OpenVolume"}, calls
    up = by_method["UploadVolume"]
    assert up["status"] == "Ok" and up["volume_id"] == ref.volume_id
    assert up["voxels"] == int(np.prod(LATTICE.shape)) and up["bytes"] == arr.nbytes
    effect = by_method["ApplyEffect"]
    assert effect["effect"] == "Threshold" and effect["volume_id"] == ref.volume_id
    assert effect["status"] == "Ok" and effect["ms"] >= 0
    assert by_method["OpenVolume"]["status"] == "NotFound"
    text = proc.log_text()
    # (Digits of the birth date are not checked: timestamps may contain them.)
    assert "DOE" not in text and "JANE" not in text, text


def test_requests_above_the_working_memory_are_refused(pbs, segkit_bin, tmp_path):
    """A request that describes a huge lattice in a few bytes is refused with
    RESOURCE_EXHAUSTED naming --work-mb, and the engine's memory does not grow."""
    pb = pbs.pb
    proc = _start(segkit_bin, tmp_path, "--work-mb", "256")
    try:
        stub = pbs.grpc.EngineStub(cl.open_channel(proc.address))
        geometry = pb.Geometry(size=[2048, 2048, 2048], origin=[0, 0, 0], spacing=[1, 1, 1],
                               direction=[1, 0, 0, 0, 1, 0, 0, 0, 1])
        empty = pb.Mask(geometry=geometry, encoding=pb.MASK_ENCODING_RUNS)
        seg = pb.SegmentMask(id="s", name="s", visible=True, mask=empty)
        for call in (
            lambda: stub.ApplyEffect(pb.ApplyEffectRequest(effect="Islands", segments=[seg] * 4,
                                                           selected_segment_id="s"), timeout=30),
            lambda: list(stub.Export(pb.ExportRequest(format=pb.EXPORT_FORMAT_LABEL_NRRD,
                                                      segments=[seg]), timeout=30)),
        ):
            with pytest.raises(grpc.RpcError) as e:
                call()
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value.details()
            assert "--work-mb" in e.value.details()
        peak_kb = _vm_hwm_kb(proc.proc.pid)
    finally:
        assert proc.stop() == 0
    assert peak_kb < 200_000, f"the engine's peak memory is {peak_kb} kB after refusing"


def _vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/PID/status")


def test_roots_limit_the_files_clients_may_name(pbs, segkit_bin, tmp_path):
    """With --root, OpenVolume and Export.path work under the root and are
    PERMISSION_DENIED elsewhere, also through `..` and a symbolic link."""
    pb = pbs.pb
    root, private = tmp_path / "studies", tmp_path / "private"
    root.mkdir()
    private.mkdir()
    proc = _start(segkit_bin, tmp_path, "--root", str(root))
    try:
        stub = pbs.grpc.EngineStub(cl.open_channel(proc.address))
        assert stub.GetEngineInfo(pb.GetEngineInfoRequest(), timeout=10).open_by_path
        arr = np.zeros(LATTICE.shape, np.int16)
        ref = cl.upload(stub, pb, arr, LATTICE)
        (root / "elsewhere").symlink_to(private)

        def export(path):
            return list(stub.Export(pb.ExportRequest(volume_id=ref.volume_id, path=str(path),
                                                     format=pb.EXPORT_FORMAT_LABEL_NRRD), timeout=60))

        export(root / "a-label.nrrd")
        assert (root / "a-label.nrrd").is_file()
        shutil.copy(root / "a-label.nrrd", private / "b-label.nrrd")
        stub.OpenVolume(pb.OpenVolumeRequest(path=str(root / "a-label.nrrd")), timeout=60)
        for outside in (private / "c-label.nrrd", root / ".." / "private" / "c-label.nrrd",
                        root / "elsewhere" / "c-label.nrrd"):
            with pytest.raises(grpc.RpcError) as e:
                export(outside)
            assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, e.value.details()
        assert not (private / "c-label.nrrd").exists()
        for outside in (private / "b-label.nrrd", root / "elsewhere" / "b-label.nrrd"):
            with pytest.raises(grpc.RpcError) as e:
                stub.OpenVolume(pb.OpenVolumeRequest(path=str(outside)), timeout=60)
            assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, e.value.details()
            assert "--root" in e.value.details()
    finally:
        assert proc.stop() == 0


def test_bad_tls_files_stop_the_engine_with_a_clear_error(segkit_bin, tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate\n")
    run = subprocess.run([str(segkit_bin), "serve", "--listen", "127.0.0.1:0", "--tls-cert", str(cert),
                          "--tls-key", str(cert)], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert str(cert) in run.stderr and "PEM" in run.stderr, run.stderr
    run = subprocess.run([str(segkit_bin), "serve", "--tls-cert", str(cert)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "--tls-key" in run.stderr, run.stderr
