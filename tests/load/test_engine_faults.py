"""Faults a desktop engine meets: clients that vanish or cancel, crashes, full disks, restarts.

Each test starts its own engine (`engines`), because the faults kill, limit or restart it.
What is checked, and why:
- a client gone mid-upload: the engine frees the partial volume (its resident memory
  comes back), so abandoned uploads do not pile up;
- a cancelled effect: the work stops (GetEngineInfo.effects_running back to 0 within about
  100 ms), no result is sent, and the same request afterwards gives the usual answer;
- SIGKILL during an export to a path, at random points: the target holds the old file or
  the new one, never a partial file (atomic writes, DESIGN.md); the same for concurrent
  exports to one path;
- a full disk (RLIMIT_FSIZE, and a 256 KiB tmpfs when running as root): a clear gRPC
  error, the old file kept, no temporary file left behind, the engine still serving;
- an engine restart: the extension's client (segkit_slicer.client) notices NOT_FOUND,
  uploads the volume again by itself and gets the same answers.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

import loadkit as lk
from loadkit import missing

cl = lk.cl
HERE = Path(__file__).resolve().parent


def info(stub, pb):
    return stub.GetEngineInfo(pb.GetEngineInfoRequest(), timeout=10)


def temp_files(folder: Path) -> list[str]:
    """The engine's temporary files in `folder` (`.NAME.segkit-PID.tmp`)."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") and ".segkit-" in p.name)


# ---------------------------------------------------------------------------------------
# A client gone in the middle of an upload

# 72 MiB declared, two thirds sent: a leak of one partial volume shows plainly in the RSS.
ABANDONED_SIZE = (384, 384, 256)
ABANDONED_FRACTION = 0.67
ABANDONED_REPEATS = 3
# RSS the engine may keep after the abandoned uploads (allocator reserve, gRPC buffers):
# measured 14-27 MiB over ten in a row, not growing; one kept partial volume is 48 MiB.
RSS_SLACK_MB = 36


def wait_for(condition, timeout_s: float, poll_s: float = 0.02):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    return condition()


def rss_above(pid: int, limit_mb: float):
    """The engine's RSS in MiB when above `limit_mb`, else None."""
    rss = lk.rss_mib(pid)
    return rss if rss > limit_mb else None


def test_client_gone_mid_upload_frees_the_partial_volume(engines, stubs_dir, pbs):
    """A client process killed after sending two thirds of a 72 MiB upload, three times
    over: each time the engine's RSS first grows by the bytes received (it buffers them)
    and then comes back to where it was, and a complete upload still works afterwards."""
    pb = pbs.pb
    engine = engines("--cache-mb", "256")
    stub = pbs.grpc.EngineStub(cl.open_channel(engine.address))
    info(stub, pb)
    pid = engine.proc.pid
    baseline = lk.rss_mib(pid)
    partial_mb = np.prod(ABANDONED_SIZE) * 2 * ABANDONED_FRACTION / (1 << 20)
    for attempt in range(ABANDONED_REPEATS):
        client = subprocess.Popen(
            [sys.executable, str(HERE / "half_upload.py"), engine.address, str(stubs_dir),
             *map(str, ABANDONED_SIZE), str(ABANDONED_FRACTION)],
            stdout=subprocess.PIPE)
        try:
            line = client.stdout.readline().decode()
            assert line.startswith("sent "), f"the uploading client failed: {line!r}"
            holding = wait_for(lambda: rss_above(pid, baseline + 0.5 * partial_mb), 10)
            assert holding, (f"attempt {attempt}: RSS {lk.rss_mib(pid):.0f} MiB never showed the "
                             f"{partial_mb:.0f} MiB received (baseline {baseline:.0f} MiB)")
        finally:
            client.kill()
            client.wait()
            client.stdout.close()
        t = time.monotonic()
        freed = wait_for(lambda: lk.rss_mib(pid) < baseline + RSS_SLACK_MB, 5)
        assert freed, (f"attempt {attempt}: RSS {lk.rss_mib(pid):.0f} MiB 5 s after the client "
                       f"died, baseline {baseline:.0f} MiB: the partial volume was kept")
        print(f"\nabandoned upload {attempt}: engine RSS {baseline:.0f} MiB before, {holding:.0f} MiB "
              f"with {partial_mb:.0f} MiB received, {lk.rss_mib(pid):.0f} MiB "
              f"{1000 * (time.monotonic() - t):.0f} ms after the client was killed")
    assert info(stub, pb).effects_running == 0
    small = np.arange(8 * 8 * 8, dtype=np.int16).reshape(8, 8, 8)
    ref = cl.upload(stub, pb, small, cl.Lattice(size=(8, 8, 8)))
    assert ref.volume_id and ref.maximum_value == small.max()


# ---------------------------------------------------------------------------------------
# Cancelling a running effect

CANCEL_SIZE = (192, 192, 96)
CANCEL_REPEATS = 3
# DESIGN / issue 7: cancelling stops the work within 100 ms. One repeat may take longer on
# a loaded two-core CI machine; the median may not.
CANCEL_MEDIAN_S = 0.100
CANCEL_MAX_S = 0.250


def seeded_request(pb, effect: str):
    """`effect` on a 192 x 192 x 96 volume with seeds in opposite corners, so that its
    working box is the whole volume and it runs for a second or more."""
    spec = lk.VolumeSpec(21, CANCEL_SIZE)
    lattice = spec.lattice
    nk, nj, ni = lattice.shape
    inside = spec.ball_masks()[0]
    outside = np.zeros(lattice.shape, np.uint8)
    outside[1:4, 1:4, 1:4] = 1
    outside[nk - 4:nk - 1, nj - 4:nj - 1, ni - 4:ni - 1] = 1
    req = pb.ApplyEffectRequest(effect=effect, selected_segment_id="a",
                                segments=[cl.segment(pb, "a", inside, lattice),
                                          cl.segment(pb, "b", outside, lattice)])
    return spec, req


@pytest.mark.parametrize("effect,streamed", [
    ("Grow from seeds", True),
    ("Grow from seeds", False),
    ("Watershed", True),
])
def test_cancel_mid_effect_stops_the_work_and_applies_nothing(engines, pbs, effect, streamed):
    """Starts the effect, cancels the call while the engine reports it running, and times
    how long the engine keeps working (until effects_running is 0 again). The cancelled
    call ends CANCELLED with no result, and the same request run to the end afterwards
    answers what it answered before the cancels."""
    pb = pbs.pb
    engine = engines()
    stub = pbs.grpc.EngineStub(cl.open_channel(engine.address))
    spec, req = seeded_request(pb, effect)
    req.volume_id = cl.upload(stub, pb, spec.array(), spec.lattice).volume_id
    digest = lambda reply: lk.digest_effect(pb, reply, spec.lattice)

    t = time.monotonic()
    before = digest(stub.ApplyEffect(req, timeout=300))
    full_s = time.monotonic() - t

    latencies = []
    for n in range(CANCEL_REPEATS):
        events = []
        if streamed:
            call = stub.ApplyEffectStream(req, timeout=300)
            drained = threading.Thread(target=lambda: _drain(call, events), daemon=True)
            drained.start()
        else:
            call = stub.ApplyEffect.future(req, timeout=300)
        assert wait_for(lambda: info(stub, pb).effects_running > 0, 10), "the effect never started"
        time.sleep(min(0.3, 0.3 * full_s))
        assert info(stub, pb).effects_running > 0, f"{effect} finished in under 0.3 s: nothing to cancel"
        t0 = time.monotonic()
        call.cancel()
        assert wait_for(lambda: info(stub, pb).effects_running == 0, 5, poll_s=0.002)
        latencies.append(time.monotonic() - t0)
        if streamed:
            drained.join(10)
            assert [e for e in events if e.WhichOneof("event") == "result"] == [], "a cancelled call sent a result"
            assert call.code() == grpc.StatusCode.CANCELLED
        else:
            assert call.cancelled() or call.code() == grpc.StatusCode.CANCELLED
    print(f"\n{effect} ({'stream' if streamed else 'unary'}), {full_s:.2f} s uncancelled: engine idle "
          f"{', '.join(f'{x * 1000:.0f}' for x in latencies)} ms after each cancel")
    assert sorted(latencies)[len(latencies) // 2] <= CANCEL_MEDIAN_S, latencies
    assert max(latencies) <= CANCEL_MAX_S, latencies
    assert digest(stub.ApplyEffect(req, timeout=300)) == before


def _drain(call, events):
    try:
        for e in call:
            events.append(e)
    except grpc.RpcError:
        pass   # CANCELLED, as asked


# ---------------------------------------------------------------------------------------
# SIGKILL during an export to a path

KILLS = 40
# About 0.3 s of writing per export on two cores: kills land before, during and after it.
EXPORT_SIZE = (160, 160, 128)


def export_segments(pb, seed: int, noise: float):
    """Two segments (a ball with scattered voxels, which gzip cannot shrink much, and a
    second ball) on a 160 x 160 x 128 lattice."""
    spec = lk.VolumeSpec(seed, EXPORT_SIZE)
    balls = spec.ball_masks()
    scattered = (np.random.default_rng(seed).random(spec.lattice.shape) < noise).astype(np.uint8)
    return [cl.segment(pb, "a", balls[0] | scattered, spec.lattice, color=[1, 0, 0]),
            cl.segment(pb, "b", balls[1], spec.lattice, color=[0, 1, 0])]


def kill_during_exports(engines, pbs, folder: Path, kills: int, rng: random.Random) -> dict:
    """Writes the old file with a clean export, then `kills` times: starts an engine, sends
    the export of other segments to the same path and SIGKILLs the engine after a random
    delay between 0 and 1.3 times a clean export's duration. After each kill the target is
    read with pynrrd and compared with the old and the new file. Answers the counts."""
    import nrrd

    pb = pbs.pb
    target = folder / "export.seg.nrrd"
    old_segments, new_segments = export_segments(pb, 31, 0.05), export_segments(pb, 32, 0.05)

    def request(segments):
        return pb.ExportRequest(segments=segments, format=pb.EXPORT_FORMAT_SEG_NRRD, path=str(target))

    engine = engines()
    stub = pbs.grpc.EngineStub(cl.open_channel(engine.address))
    list(stub.Export(request(new_segments), timeout=120))
    new_bytes, (new_voxels, _) = target.read_bytes(), nrrd.read(str(target), index_order="C")
    t = time.monotonic()
    list(stub.Export(request(old_segments), timeout=120))
    export_s = time.monotonic() - t
    old_bytes, (old_voxels, _) = target.read_bytes(), nrrd.read(str(target), index_order="C")
    engine.stop()
    assert old_bytes != new_bytes and not np.array_equal(old_voxels, new_voxels)

    counts = {"old": 0, "new": 0, "partial": 0, "temp files left": 0, "export seconds": export_s}
    for n in range(kills):
        target.write_bytes(old_bytes)
        engine = engines()
        stub = pbs.grpc.EngineStub(cl.open_channel(engine.address))
        call = stub.Export(request(new_segments), timeout=120)
        drained = threading.Thread(target=lambda: _drain(call, []), daemon=True)
        drained.start()
        time.sleep(rng.uniform(0, 1.3 * export_s))
        engine.proc.send_signal(signal.SIGKILL)
        engine.proc.wait()
        drained.join(10)
        data = target.read_bytes()
        if data == old_bytes:
            counts["old"] += 1
        elif data == new_bytes:
            counts["new"] += 1
        else:
            counts["partial"] += 1
        # Read as a user's tool would: a partial file fails here or differs in voxels.
        voxels, _ = nrrd.read(str(target), index_order="C")
        assert np.array_equal(voxels, old_voxels) or np.array_equal(voxels, new_voxels), f"kill {n}"
        left = temp_files(folder)
        counts["temp files left"] += len(left)
        for name in left:
            (folder / name).unlink()
    return counts


def test_sigkill_during_export_leaves_the_old_file_or_the_new_one(engines, pbs, tmp_path):
    """40 engines killed with SIGKILL at random points of an export over an existing
    .seg.nrrd: each time the file is byte for byte the old one or the new one, and pynrrd
    reads the voxels of one of them. The kills land before, during and after the write
    (old and new outcomes both occur). A kill cannot clean up: its temporary file is
    counted and removed."""
    counts = kill_during_exports(engines, pbs, tmp_path, KILLS, random.Random(20261206))
    print(f"\n{KILLS} kills during a {counts['export seconds']:.2f} s export: {counts}")
    assert counts["partial"] == 0, counts
    assert counts["old"] > 0 and counts["new"] > 0, f"the kills missed the write: {counts}"


CONCURRENT_EXPORTS = 8


def test_concurrent_exports_to_one_path_leave_one_whole_file(engines, pbs, tmp_path):
    """Eight clients export different segmentations to the same path at the same time
    (two Slicer windows saving the same case): every call succeeds and the file is byte
    for byte one of the eight exports, as if they had been written one after the other."""
    import concurrent.futures

    pb = pbs.pb
    engine = engines()
    stub = pbs.grpc.EngineStub(cl.open_channel(engine.address))
    target = tmp_path / "shared.seg.nrrd"
    requests = [pb.ExportRequest(segments=export_segments(pb, 50 + n, 0.05),
                                 format=pb.EXPORT_FORMAT_SEG_NRRD, path=str(target))
                for n in range(CONCURRENT_EXPORTS)]
    expected = set()
    for req in requests:   # one at a time: what each export writes
        list(stub.Export(req, timeout=120))
        expected.add(target.read_bytes())
    assert len(expected) == CONCURRENT_EXPORTS

    def export(req):
        try:
            list(stub.Export(req, timeout=120))
            return ""
        except grpc.RpcError as e:
            return f"{e.code().name}: {e.details()}"

    with concurrent.futures.ThreadPoolExecutor(CONCURRENT_EXPORTS) as pool:
        errors = [e for e in pool.map(export, requests) if e]
    whole = target.read_bytes() in expected
    assert whole and not errors, (f"file is one of the exports: {whole}; {len(errors)} of "
                                  f"{CONCURRENT_EXPORTS} calls failed, first: {errors[:1]}")
    assert temp_files(tmp_path) == []


# ---------------------------------------------------------------------------------------
# Disk full

FILE_SIZE_LIMIT = 256 << 10


def file_size_limit() -> list[str]:
    """`prlimit --fsize=256K`: the engine's files may not grow past 256 KiB. (prlimit execs
    the engine, so its process id is the engine's.) Started with Python's own SIGXFSZ
    disposition, ignored (Popen restore_signals=False), a write past the limit fails with
    EFBIG, which is what a full disk looks like to the writer."""
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        missing("prlimit (util-linux) not found")
    return [prlimit, f"--fsize={FILE_SIZE_LIMIT}"]


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 256 KiB tmpfs (needs root: CAP_SYS_ADMIN)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the RLIMIT_FSIZE case covers a full disk")
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FILE_SIZE_LIMIT}", "tmpfs", str(mount)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def export_past_the_limit(engine, pbs, folder: Path):
    """Puts a small old .seg.nrrd in `folder`, then exports about 400 KiB of segments over it.
    Answers (the RpcError, the target path, the old bytes)."""
    pb = pbs.pb
    stub = pbs.grpc.EngineStub(cl.open_channel(engine.address))
    target = folder / "full.seg.nrrd"
    small = export_segments(pb, 41, 0.0)
    big = export_segments(pb, 42, 0.3)
    list(stub.Export(pb.ExportRequest(segments=small, format=pb.EXPORT_FORMAT_SEG_NRRD, path=str(target)),
                     timeout=120))
    old = target.read_bytes()
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Export(pb.ExportRequest(segments=big, format=pb.EXPORT_FORMAT_SEG_NRRD, path=str(target)),
                         timeout=120))
    print(f"\ndisk full: {err.value.code().name}: {err.value.details()}")
    info(stub, pb)   # still serving
    return err.value, target, old


@pytest.fixture(params=["RLIMIT_FSIZE", "tmpfs"])
def full_disk(request, engines, tmp_path):
    """(engine, folder) where a 400 KiB export does not fit: the engine under a 256 KiB
    file size limit, or a normal engine writing to a 256 KiB tmpfs."""
    if request.param == "RLIMIT_FSIZE":
        return engines(wrapper=file_size_limit(), restore_signals=False), tmp_path
    return engines(), request.getfixturevalue("small_tmpfs")


def test_disk_full_on_export_keeps_the_old_file_and_no_temporary(full_disk, pbs):
    """The export fails with a gRPC status that says what went wrong; the old file is
    untouched and the temporary file is gone."""
    engine, folder = full_disk
    error, target, old = export_past_the_limit(engine, pbs, folder)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.code()
    details = error.details().lower()
    assert "full.seg.nrrd" in details
    assert "file too large" in details or "no space left" in details, details
    assert target.read_bytes() == old
    assert temp_files(folder) == []
    assert engine.alive()


def test_disk_full_error_names_the_requested_path(full_disk, pbs):
    """The message names the path of the request, which the user knows, not the engine's
    temporary file next to it."""
    engine, folder = full_disk
    error, target, _ = export_past_the_limit(engine, pbs, folder)
    assert ".tmp" not in error.details() and str(target) in error.details(), error.details()


def test_file_size_limit_does_not_kill_the_engine(engines, pbs, tmp_path):
    """Under `prlimit --fsize` with the default SIGXFSZ action, an export past the limit is
    an error for that call, not the end of the engine."""
    engine = engines(wrapper=file_size_limit())   # restore_signals: SIGXFSZ back to its default
    error, _, _ = export_past_the_limit(engine, pbs, tmp_path)   # fails, and the engine answers after
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    time.sleep(0.2)
    assert engine.alive(), f"the engine died: exit status {engine.proc.returncode}"


# ---------------------------------------------------------------------------------------
# Engine restart, seen from the extension's client


def test_extension_client_reuploads_after_engine_crash_and_restart(segkit_bin, ct_path):
    """The Slicer extension's EngineClient against a real engine that is SIGKILLed and
    started again on the same port: the next effect (streamed) and export calls each get
    NOT_FOUND for the volume id, upload the volume again by themselves (once: the
    later calls find it) and answer exactly what they answered before the crash. The
    first call after the crash is sent while the new engine is still starting: the client
    waits for it instead of failing."""
    import nrrd
    from segkit_slicer.client import EngineClient, SourceVolume
    from segkit_slicer.geometry import Lattice
    from segkit_slicer.logic import mask_to_pb
    from segkit_slicer.proto.segkit.v1 import engine_pb2 as pb
    from segkit_slicer.process import LocalEngine

    voxels, header = nrrd.read(str(ct_path), index_order="C")
    directions = np.asarray(header["space directions"], dtype=float)   # rows: i, j, k
    spacing = tuple(float(x) for x in np.linalg.norm(directions, axis=1))
    lattice = Lattice(size=tuple(int(s) for s in voxels.shape[::-1]),
                      origin=tuple(float(x) for x in header["space origin"]), spacing=spacing,
                      direction=tuple((directions.T / np.array(spacing)).ravel()))
    if header.get("space") == "right-anterior-superior":   # to LPS
        flip = np.diag([-1.0, -1.0, 1.0])
        lattice = Lattice(lattice.size, tuple(flip @ np.array(lattice.origin)), lattice.spacing,
                          tuple((flip @ lattice.direction_matrix()).ravel()))
    source = SourceVolume(node_key="CTChest4", fingerprint=1, array=np.ascontiguousarray(voxels),
                          lattice=lattice, name="CTChest4")
    threshold = pb.ApplyEffectRequest(effect="Threshold", selected_segment_id="lungs",
                                      parameters={"MinimumThreshold": "-1024", "MaximumThreshold": "-500"})
    seeds = np.zeros(lattice.shape, np.uint8)
    seeds[17, 60:64, 30:34] = 1
    export = pb.ExportRequest(format=pb.EXPORT_FORMAT_SEG_NRRD)
    export.segments.add(id="seed", name="seed", visible=True, mask=mask_to_pb(seeds, lattice))

    first = LocalEngine(str(segkit_bin)).start()
    first.wait_ready()
    port = first.port
    client = EngineClient(first.address)
    restarted, starter = None, None
    try:
        effect_before = client.apply_effect(threshold, source)
        export_before = client.export(export, source)
        assert client.stats.volume_uploads == 1

        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        # No health poll first: the client's connect step must itself ride out the dead
        # connection (its first call used to fail at once with UNAVAILABLE "Socket closed",
        # about 1 time in 7).
        restarted = LocalEngine(str(segkit_bin), listen=f"127.0.0.1:{port}")
        starter = threading.Timer(0.5, restarted.start)
        starter.start()
        effect_after = client.apply_effect(threshold, source, stream=True)
        starter.join()
        export_after = client.export(export, source)

        assert client.stats.reuploads_after_not_found == 1
        assert client.stats.volume_uploads == 2
        assert [m.SerializeToString() for m in effect_after.modifiers] == \
               [m.SerializeToString() for m in effect_before.modifiers]
        assert export_after == export_before

        # A graceful restart this time, and an export as the first call: same story.
        restarted.stop()
        restarted = LocalEngine(str(segkit_bin), listen=f"127.0.0.1:{port}").start()
        restarted.wait_ready()
        assert client.export(export, source) == export_before
        assert client.stats.reuploads_after_not_found == 2
        assert client.stats.volume_uploads == 3
    finally:
        client.close()
        first.stop()
        if starter is not None:   # a failure before the timer fired: no engine left behind
            starter.cancel()
            starter.join()
        if restarted is not None:
            restarted.stop()
