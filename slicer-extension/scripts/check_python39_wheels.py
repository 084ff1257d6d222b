#!/usr/bin/env python3
"""Checks that the packages the extension installs inside Slicer resolve to binary wheels for
Python 3.9 (Slicer 5.0-5.8) on Linux, Windows and macOS, as `pip` inside such a Slicer
would need them (no compiler there).

The requirements are the extension's own (`segkit_slicer.dependencies.requirements()`,
read from the committed stubs), so a regenerated stub that needs a newer grpcio or
protobuf than Python 3.9 has fails here, in `scripts/test`, before a user meets it.

    .venv/bin/python slicer-extension/scripts/check_python39_wheels.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

EXTENSION = Path(__file__).resolve().parents[1]
# macOS from 11 (Big Sur): grpcio has no wheel for older macOS since 1.69.
PLATFORMS = ["manylinux2014_x86_64", "win_amd64", "macosx_11_0_x86_64", "macosx_11_0_arm64"]
PYTHON = "3.9"


def main() -> int:
    sys.path.insert(0, str(EXTENSION / "SegkitEngine"))
    from segkit_slicer.dependencies import requirements

    reqs = requirements()
    failed = []
    with tempfile.TemporaryDirectory(prefix="segkit-py39-") as tmp:
        for platform in PLATFORMS:
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                   "--only-binary=:all:", "--python-version", PYTHON, "--implementation", "cp",
                   "--platform", platform, "--dest", str(Path(tmp) / platform), *reqs]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wheels = sorted(p.name for p in (Path(tmp) / platform).glob("*.whl"))
            if proc.returncode != 0:
                failed.append(platform)
                print(f"{platform}: NO Python {PYTHON} wheels for {' '.join(reqs)}\n{proc.stderr.strip()}")
            else:
                print(f"{platform}: {', '.join(wheels)}")
    if failed:
        print(f"the extension's requirements cannot be installed in Slicer's Python {PYTHON} on: "
              f"{', '.join(failed)}")
        return 1
    print(f"the extension's requirements ({', '.join(reqs)}) have Python {PYTHON} wheels everywhere")
    return 0


if __name__ == "__main__":
    sys.exit(main())
