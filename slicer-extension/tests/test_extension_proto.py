"""The committed generated stubs are what `scripts/generate_proto.py` makes from
`proto/` today, and they import as part of the package (relative imports)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

EXTENSION = Path(__file__).resolve().parents[1]
STUBS = EXTENSION / "SegkitEngine" / "segkit_slicer" / "proto" / "segkit" / "v1"


def load_generator():
    path = EXTENSION / "scripts" / "generate_proto.py"
    spec = importlib.util.spec_from_file_location("generate_proto", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["generate_proto"] = module
    spec.loader.exec_module(module)
    return module


def test_generated_stubs_match_the_proto():
    generator = load_generator()
    assert generator.differences() == [], (
        "the committed stubs are stale: run .venv/bin/python slicer-extension/scripts/generate_proto.py")
    names = sorted(p.name for p in STUBS.glob("*_pb2*.py"))
    assert names == sorted(generator.generated_names())


def test_stubs_use_package_relative_imports():
    for path in STUBS.glob("*_pb2*.py"):
        text = path.read_text()
        assert not re.search(r"^from segkit\.", text, re.MULTILINE), path.name
        assert not re.search(r"^import segkit", text, re.MULTILINE), path.name
    from segkit_slicer.proto.segkit.v1 import engine_pb2, engine_pb2_grpc

    assert engine_pb2.DESCRIPTOR.package == "segkit.v1"
    assert hasattr(engine_pb2_grpc, "EngineStub")


def test_dependency_versions_follow_the_stubs():
    from segkit_slicer import dependencies

    reqs = dependencies.requirements()
    grpc_version = re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'", (STUBS / "engine_pb2_grpc.py").read_text())
    assert f"grpcio>={grpc_version.group(1)}" in reqs
    assert any(r.startswith("protobuf>=") for r in reqs)
    assert dependencies.missing_modules() == []
