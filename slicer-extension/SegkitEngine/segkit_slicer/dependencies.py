"""Python packages the client needs inside Slicer, installed on demand.

Slicer's Python does not ship grpcio. Following Slicer's guidance, nothing is installed
when the extension loads: the effect and the module call `ensure_dependencies()` the
first time they talk to an engine, and the user confirms the installation.

The minimum versions are read from the committed generated stubs (the gRPC plugin and
protobuf versions protoc wrote into them), so they cannot drift from the code that
needs them.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import List

_STUBS = Path(__file__).parent / "proto" / "segkit" / "v1"


def _generated_version(file_name: str, pattern: str) -> str:
    try:
        text = (_STUBS / file_name).read_text(encoding="utf-8")
    except OSError:
        return ""
    match = re.search(pattern, text)
    return match.group(1) if match else ""


def requirements() -> List[str]:
    """pip requirement strings for the client."""
    grpc_version = _generated_version("engine_pb2_grpc.py", r"GRPC_GENERATED_VERSION = '([\d.]+)'")
    protobuf_version = _generated_version("engine_pb2.py", r"Protobuf Python Version: ([\d.]+)")
    return [
        f"grpcio>={grpc_version}" if grpc_version else "grpcio",
        f"grpcio-health-checking>={grpc_version}" if grpc_version else "grpcio-health-checking",
        f"protobuf>={protobuf_version}" if protobuf_version else "protobuf",
    ]


def missing_modules() -> List[str]:
    """Import names of the client's dependencies that are not installed."""
    return [m for m in ("grpc", "grpc_health", "google.protobuf") if _find(m) is None]


def _find(module: str):
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


def ensure_dependencies(requester: str = "Segkit") -> bool:
    """Installs the client's packages into Slicer's Python when missing (asking the user
    first). Returns True when they are importable afterwards.

    Uses `slicer.pydeps.pip_ensure` (Slicer >= 5.11; also looked up as
    `slicer.packaging`), else `slicer.util.pip_install` after a confirmation dialog.
    """
    if not missing_modules():
        return True
    import slicer

    reqs = requirements()
    ensure = None
    for name in ("pydeps", "packaging"):
        module = getattr(slicer, name, None)
        if module is None:
            try:
                module = importlib.import_module(f"slicer.{name}")
            except ImportError:
                module = None
        if module is not None and hasattr(module, "pip_ensure"):
            ensure = module.pip_ensure
            break
    if ensure is not None:
        from packaging.requirements import Requirement

        ensure([Requirement(r) for r in reqs], requester=requester)
    else:
        if not slicer.util.confirmOkCancelDisplay(
            f"{requester} needs these Python packages to talk to the engine:\n\n"
            + "\n".join(reqs) + "\n\nInstall them now?",
            windowTitle="Install Python packages",
        ):
            return False
        slicer.util.pip_install(reqs)
    importlib.invalidate_caches()
    return not missing_modules()
