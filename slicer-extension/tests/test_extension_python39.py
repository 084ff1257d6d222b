"""The extension runs in Slicer 5.0-5.8's Python 3.9, while the tests run under the machine's
newer Python: its code must not use what 3.9 lacks. Syntax is checked with the parser's
3.9 grammar; annotations with `X | Y` are only allowed where `from __future__ import
annotations` keeps them from being evaluated (3.9 cannot evaluate them); and the standard
library calls that appeared after 3.9 and that are easy to reach for are refused. The
requirements' wheels for 3.9 are checked by `scripts/check_python39_wheels.py` in
`scripts/test`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

EXTENSION = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    p for folder in ("SegkitEngine", "SegmentEditorSegkit") for p in (EXTENSION / folder).rglob("*.py")
)


def test_sources_are_found():
    names = {p.name for p in SOURCES}
    assert {"SegkitEngine.py", "SegmentEditorEffect.py", "logic.py", "engine_pb2.py"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(EXTENSION)))
def test_parses_as_python_39(path):
    ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 9))


def _annotations(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                if a is not None and a.annotation is not None:
                    yield a.annotation
            if node.returns is not None:
                yield node.returns
        elif isinstance(node, ast.AnnAssign):
            yield node.annotation


def _uses_union_operator(annotation):
    return any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) for n in ast.walk(annotation))


def _postponed(tree):
    return any(
        isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
        for n in tree.body
    )


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(EXTENSION)))
def test_no_evaluated_union_annotations_or_newer_calls(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    if not _postponed(tree):
        bad = [ast.unparse(a) for a in _annotations(tree) if _uses_union_operator(a)]
        assert not bad, f"{path.name}: `X | Y` annotations need `from __future__ import annotations` on 3.9: {bad}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            keywords = {k.arg for k in node.keywords}
            name = ast.unparse(node.func)
            assert not (name == "zip" and "strict" in keywords), f"{path.name}: zip(strict=) is 3.10+"
            assert not (name.endswith("dataclass") and keywords & {"slots", "kw_only"}), (
                f"{path.name}: dataclass(slots=/kw_only=) is 3.10+")
            assert name not in ("itertools.pairwise", "pairwise", "aiter", "anext"), f"{path.name}: {name} is 3.10+"
