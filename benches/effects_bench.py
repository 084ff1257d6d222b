"""Runs every effect benchmark (`benches/bench_*.py`) one after the other and prints their
ratio tables: segkit beside Slicer's own implementation (VTK, vtkITK, SimpleITK) on the
same volume, in the same run.

Each benchmark is a standalone script; this only runs them in turn with the same
`--repeat` (and any other arguments it is given) so that one command gives every figure
the README and the closing notes quote.

Usage: .venv/bin/python benches/effects_bench.py [--repeat 3] [--only margin,smoothing]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCHES = Path(__file__).resolve().parent
NOT_RATIO = {"bench_cancel"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated names (bench_<name>.py)")
    args, rest = parser.parse_known_args()
    wanted = {n.strip() for n in args.only.split(",") if n.strip()}
    scripts = sorted(BENCHES.glob("bench_*.py"))
    if wanted:
        scripts = [s for s in scripts if s.stem[len("bench_"):] in wanted]
    else:
        # bench_cancel measures latency, not a ratio, and needs a CT directory: run it alone.
        scripts = [s for s in scripts if s.stem not in NOT_RATIO]
    if not scripts:
        print("no benchmark selected", file=sys.stderr)
        return 2
    failed = []
    for script in scripts:
        print(f"\n=== {script.name}", flush=True)
        started = time.time()
        rc = subprocess.call([sys.executable, str(script), "--repeat", str(args.repeat), *rest])
        print(f"=== {script.name}: exit {rc}, {time.time() - started:.0f} s", flush=True)
        if rc != 0:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
