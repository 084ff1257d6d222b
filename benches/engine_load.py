"""The engine under load, and SIGKILL during exports: the hardening issue's figures.

Load: starts `segkit serve --cache-mb N`, runs every distinct request of the plan once from
a lone client (the reference), then CLIENTS client processes each send REQUESTS requests
drawn at random from uploads, effects (Threshold, Islands, Margin, Smoothing, Flood
filling, Grow from seeds) and exports (label NRRD, .seg.nrrd, NIfTI) over the volumes of
--sizes, and compares every result with the reference (a difference is a mixed-up
result). Prints p50/p99 latency overall and per request kind, re-uploads after NOT_FOUND,
and the engine's peak resident memory (VmHWM of /proc/PID/status) next to --cache-mb.

Kills (--kills N): N engines SIGKILLed at random points of an export over an existing
.seg.nrrd; prints how often the file was the old one, the new one, or partial (must be 0).

The same code runs small in the test suite (tests/load). Usage:

    .venv/bin/python benches/engine_load.py [--clients 16] [--requests 100]
        [--sizes 128x128x128,160x160x128,192x192x128,256x256x128] [--cache-mb 24] [--work-mb N]
        [--kills 0] [--segkit target/release/segkit]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "load"))
import loadkit as lk  # noqa: E402

cl = lk.cl


def parse_sizes(text: str) -> list[tuple]:
    return [tuple(int(n) for n in s.split("x")) for s in text.split(",")]


def run_load(a, tmp: Path) -> int:
    specs = [lk.VolumeSpec(100 + n, size) for n, size in enumerate(parse_sizes(a.sizes))]
    paths = lk.save_volumes(specs, tmp / "volumes")
    arrays = [np.load(p) for p in paths]
    volume_mb = sum(x.nbytes for x in arrays) / (1 << 20)
    limits = ["--cache-mb", str(a.cache_mb)] + (["--work-mb", str(a.work_mb)] if a.work_mb else [])
    engine = cl.start_engine(a.segkit, tmp / "engine.log", *limits)
    try:
        pbs = lk._import_stubs(str(tmp / "stubs"))
        t = time.monotonic()
        reference = lk.reference_run(engine.address, pbs, specs, arrays)
        print(f"reference: {len(reference)} distinct requests from one client in {time.monotonic() - t:.1f} s "
              f"({len(set(reference.values()))} distinct answers)")
        report = lk.load_run(engine.address, tmp / "stubs", specs, paths, reference, a.clients, a.requests)
        peak = lk.peak_rss_mib(engine.proc.pid)
        print(f"{a.clients} clients x {a.requests} requests over {len(specs)} volumes "
              f"({', '.join('x'.join(map(str, s.size)) for s in specs)}; {volume_mb:.0f} MiB of int16)")
        print(report.summary())
        print(f"engine peak RSS (VmHWM) {peak:.0f} MiB with --cache-mb {a.cache_mb} "
              f"({peak / a.cache_mb:.1f}x the cache); RSS now {lk.rss_mib(engine.proc.pid):.0f} MiB")
        if a.work_mb:
            # The README's plan: cache + work + previews (as large as the cache) + ~100 MB.
            cap = 2 * a.cache_mb + a.work_mb + 100
            print(f"memory plan cache + work + previews + 100 = {cap} MiB: peak is "
                  f"{100 * peak / cap:.0f}% of it")
        for o in report.failed[:5]:
            print(f"  failed: client {o.client} {o.key}: {o.error}")
        for o in report.mixed_up[:5]:
            print(f"  MIXED UP: client {o.client} {o.key}")
        return 1 if report.failed or report.mixed_up else 0
    finally:
        engine.stop()


def run_kills(a, tmp: Path) -> int:
    sys.path.insert(0, str(REPO / "tests" / "load"))
    import test_engine_faults as faults

    pbs = lk._import_stubs(str(tmp / "stubs"))
    started = []

    def engines(*args, **popen):
        e = cl.start_engine(a.segkit, tmp / f"kill-engine{len(started)}.log", *args, **popen)
        started.append(e)
        return e

    folder = tmp / "kills"
    folder.mkdir()
    try:
        counts = faults.kill_during_exports(engines, pbs, folder, a.kills, random.Random(a.seed))
    finally:
        for e in started:
            if e.alive():
                e.stop()
    print(f"{a.kills} SIGKILLs during a {counts['export seconds']:.2f} s .seg.nrrd export: old file "
          f"{counts['old']}, new file {counts['new']}, partial {counts['partial']}; "
          f"killed mid-write (temporary file left) {counts['temp files left']}")
    return 1 if counts["partial"] else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=100, help="requests per client")
    ap.add_argument("--sizes", default="128x128x128,160x160x128,192x192x128,256x256x128",
                    help="volume sizes i x j x k, comma-separated")
    ap.add_argument("--cache-mb", type=int, default=24)
    ap.add_argument("--work-mb", type=int, default=0, help="the engine's --work-mb (default: its own)")
    ap.add_argument("--kills", type=int, default=0, help="also SIGKILL this many engines during exports")
    ap.add_argument("--no-load", action="store_true", help="only the kills")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--segkit", type=Path, default=REPO / "target" / "release" / "segkit")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="segkit-load-"))
    try:
        cl.generate_stubs(tmp / "stubs")
        status = 0 if a.no_load else run_load(a, tmp)
        if a.kills:
            status |= run_kills(a, tmp)
        return status
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
