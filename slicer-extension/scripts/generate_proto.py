#!/usr/bin/env python3
"""Regenerates the Python gRPC stubs of the engine contract inside `segkit_slicer`.

The extension knows the engine only through `proto/segkit/v1/*.proto`. The generated
`*_pb2.py` and `*_pb2_grpc.py` are committed in
`SegkitEngine/segkit_slicer/proto/segkit/v1/`, so Slicer needs no protoc, and this script
recreates them with `grpc_tools.protoc` (PyPI grpcio-tools) from the project's venv:

    .venv/bin/python slicer-extension/scripts/generate_proto.py          # rewrite
    .venv/bin/python slicer-extension/scripts/generate_proto.py --check  # compare only

protoc writes absolute imports (`from segkit.v1 import engine_pb2`), which would look for
a top-level `segkit` package; they are rewritten to package-relative imports
(`from . import engine_pb2`) so the stubs work wherever `segkit_slicer` is installed.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

EXTENSION = Path(__file__).resolve().parents[1]
REPO = EXTENSION.parent
PROTO_ROOT = REPO / "proto"
PACKAGE_PROTO = "segkit/v1"
OUT_ROOT = EXTENSION / "SegkitEngine" / "segkit_slicer" / "proto"

# `from segkit.v1 import engine_pb2 as ...` -> `from . import engine_pb2 as ...`
_ABSOLUTE_IMPORT = re.compile(r"^from segkit\.v1 import (\w+_pb2)", re.MULTILINE)


def proto_files(proto_root: Path = PROTO_ROOT) -> list[str]:
    """The contract's .proto files, relative to `proto_root`, in a stable order."""
    files = sorted((proto_root / PACKAGE_PROTO).glob("*.proto"))
    if not files:
        raise FileNotFoundError(f"no .proto files in {proto_root / PACKAGE_PROTO}")
    return [f.relative_to(proto_root).as_posix() for f in files]


def generated_names(proto_root: Path = PROTO_ROOT) -> list[str]:
    """Base names of the files protoc writes for the contract."""
    names = []
    for rel in proto_files(proto_root):
        stem = Path(rel).stem
        names += [f"{stem}_pb2.py", f"{stem}_pb2_grpc.py"]
    return names


def generate(out_root: Path, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Writes the stubs into `out_root/segkit/v1/` and returns their paths.

    Only the generated files are written; the `__init__.py` files of the package are
    maintained by hand.
    """
    from grpc_tools import protoc
    import grpc_tools

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory(prefix="segkit-protoc-") as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{proto_root}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
            *proto_files(proto_root),
        ]
        status = protoc.main(args)
        if status != 0:
            raise RuntimeError(f"protoc failed with status {status}: {' '.join(args)}")
        out_dir = out_root / PACKAGE_PROTO
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in generated_names(proto_root):
            text = (Path(tmp) / PACKAGE_PROTO / name).read_text(encoding="utf-8")
            text = _ABSOLUTE_IMPORT.sub(r"from . import \1", text)
            target = out_dir / name
            target.write_text(text, encoding="utf-8", newline="\n")
            written.append(target)
        return written


def differences(out_root: Path = OUT_ROOT, proto_root: Path = PROTO_ROOT) -> list[str]:
    """Names of committed stubs that differ from freshly generated ones (or are missing)."""
    with tempfile.TemporaryDirectory(prefix="segkit-proto-check-") as tmp:
        fresh = generate(Path(tmp), proto_root)
        stale = []
        for path in fresh:
            committed = out_root / PACKAGE_PROTO / path.name
            if not committed.is_file() or committed.read_bytes() != path.read_bytes():
                stale.append(path.name)
        return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 when the committed stubs differ from proto/",
    )
    parser.add_argument("--out", type=Path, default=OUT_ROOT, help=f"default: {OUT_ROOT}")
    args = parser.parse_args(argv)
    if args.check:
        stale = differences(args.out)
        if stale:
            print(f"stale generated files: {', '.join(stale)}; run {Path(__file__).name}")
            return 1
        print("generated files match proto/")
        return 0
    for path in generate(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
