"""Cancel latency: how long the engine keeps working after a client cancels an effect.

Issue 7 asks that cancelling a running computation stops it within 100 ms. This starts
`segkit serve` (release binary), opens a 512x512x300 CT by path (make it with
`benches/make_ct300.py OUT`), starts an effect with ApplyEffectStream, cancels the call
after a delay, and measures the time from the
cancel until the engine reports no effect running (`GetEngineInfo.effects_running`, polled
every 2 ms): that is the work the engine still did. One uncancelled run gives the full
compute time for scale.

Effects (`--effect`) and their segments:
- Grow from seeds (default), Watershed: a seed block in the middle of the right half and
  background seeds in two opposite corners, so the working box is the whole volume;
- Fast Marching: the same block as the selected segment's seed, `PercentMax` 30 (a large
  front);
- Fill between slices: a disk of radius 120 voxels, drawn on every 20th axial slice, to be
  interpolated along k.

Usage: .venv/bin/python benches/bench_cancel.py CT_DIR [--repeat 10] [--effect Watershed] [--segkit target/release/segkit]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "conformance"))
import conformance_lib as cl  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("ct", type=Path)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--effect", default="Grow from seeds",
                    help="Grow from seeds, Watershed, Fast Marching or Fill between slices")
    ap.add_argument("--segkit", type=Path, default=REPO / "target" / "release" / "segkit")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="segkit-cancel-"))
    pbs = cl.generate_stubs(tmp / "stubs")
    pb = pbs.pb
    engine = cl.start_engine(a.segkit, tmp / "engine.log")
    try:
        stub = pbs.grpc.EngineStub(cl.open_channel(engine.address))
        ref = stub.OpenVolume(pb.OpenVolumeRequest(path=str(a.ct)), timeout=300)
        lattice = cl.Lattice.from_pb(ref.header.geometry)
        nk, nj, ni = lattice.shape
        inside = np.zeros(lattice.shape, dtype=np.uint8)
        inside[nk // 2 - 2:nk // 2 + 2, nj // 2 - 4:nj // 2 + 4, ni // 4 - 4:ni // 4 + 4] = 1
        # Background seeds in two opposite corners: the working box is the whole volume.
        outside = np.zeros(lattice.shape, dtype=np.uint8)
        outside[1:4, 1:4, 1:4] = 1
        outside[nk - 4:nk - 1, nj - 4:nj - 1, ni - 4:ni - 1] = 1
        segments = [cl.segment(pb, "a", inside, lattice), cl.segment(pb, "b", outside, lattice)]
        parameters = {}
        if a.effect == "Fast Marching":
            segments, parameters = segments[:1], {"PercentMax": "30"}
        elif a.effect == "Fill between slices":
            jj, ii = np.ogrid[:nj, :ni]
            disk = ((jj - nj // 2) ** 2 + (ii - ni // 2) ** 2 <= 120 ** 2).astype(np.uint8)
            drawn = np.zeros(lattice.shape, dtype=np.uint8)
            drawn[5:nk - 5:20] = disk
            segments = [cl.segment(pb, "a", drawn, lattice)]
        req = pb.ApplyEffectRequest(
            effect=a.effect, volume_id=ref.volume_id, selected_segment_id="a",
            segments=segments, parameters=parameters)

        def running():
            return stub.GetEngineInfo(pb.GetEngineInfoRequest(), timeout=10).effects_running

        t = time.monotonic()
        result = stub.ApplyEffect(req, timeout=600)
        full = time.monotonic() - t
        print(f"{a.effect} on {ni}x{nj}x{nk}: {full:.2f} s uncancelled "
              f"(engine compute {result.compute_seconds:.2f} s)")
        latencies = []
        for n in range(a.repeat):
            delay = (0.2 + 0.6 * n / max(1, a.repeat - 1)) * full
            call = stub.ApplyEffectStream(req, timeout=600)
            def drain(call=call):
                try:
                    for _ in call:
                        pass
                except grpc.RpcError:
                    pass   # CANCELLED, as asked

            drained = threading.Thread(target=drain, daemon=True)
            drained.start()
            time.sleep(delay)
            if running() == 0:
                print(f"  run {n}: finished before the cancel at {delay:.2f} s; skipped")
                continue
            t0 = time.monotonic()
            call.cancel()
            while running() > 0:
                time.sleep(0.002)
            latencies.append(time.monotonic() - t0)
            drained.join(timeout=10)
            print(f"  run {n}: cancelled at {delay:.2f} s, engine idle {latencies[-1] * 1000:.0f} ms later")
        if latencies:
            print(f"cancel latency over {len(latencies)} runs: median {statistics.median(latencies) * 1000:.0f} ms, "
                  f"max {max(latencies) * 1000:.0f} ms (target: 100 ms)")
    except grpc.RpcError as e:
        print(f"engine error: {e.code()}: {e.details()}")
        return 1
    finally:
        engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
