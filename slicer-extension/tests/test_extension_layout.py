"""The extension is laid out as Slicer expects, and the client package stays Qt-free.

- every file of `segkit_slicer` is installed by SegkitEngine/CMakeLists.txt (a file
  missing there would be missing in Slicer only);
- every module of `segkit_slicer` imports with Qt, ctk, Slicer and VTK unavailable, and
  grpcio is only imported by the client (so Slicer can load the extension before grpcio
  is installed);
- the effect and its hidden registration module follow Slicer's scripted-effect pattern.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXTENSION = Path(__file__).resolve().parents[1]
PACKAGE_MODULES = ["segkit_slicer", "segkit_slicer.masks", "segkit_slicer.geometry", "segkit_slicer.schema",
                   "segkit_slicer.logic", "segkit_slicer.background", "segkit_slicer.process",
                   "segkit_slicer.dependencies"]


def cmake_listed(module_dir: Path) -> set[str]:
    text = (module_dir / "CMakeLists.txt").read_text()
    name = re.search(r"set\(MODULE_NAME (\w+)\)", text).group(1)
    listed = re.findall(r"^\s+([\w/${}.-]+\.(?:py|png))\s*$", text, re.MULTILINE)
    return {entry.replace("${MODULE_NAME}", name) for entry in listed}


@pytest.mark.parametrize("module", ["SegkitEngine", "SegmentEditorSegkit"])
def test_cmake_installs_every_file(module):
    module_dir = EXTENSION / module
    listed = cmake_listed(module_dir)
    present = {p.relative_to(module_dir).as_posix() for p in module_dir.rglob("*.py")}
    present |= {p.relative_to(module_dir).as_posix() for p in module_dir.rglob("*.png")}
    assert listed == present, f"in CMakeLists.txt but missing: {listed - present}; not listed: {present - listed}"
    top = (EXTENSION / "CMakeLists.txt").read_text()
    assert f"add_subdirectory({module})" in top
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_DESCRIPTION", "EXTENSION_DEPENDS"):
        assert key in top
    assert "find_package(Slicer REQUIRED)" in top


def test_package_imports_without_qt_slicer_vtk_or_grpc():
    blocked = ["qt", "ctk", "slicer", "vtk", "vtkmodules", "grpc", "google.protobuf", "grpc_health"]
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        f"import importlib\n"
        f"for m in {PACKAGE_MODULES!r}: importlib.import_module(m)\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=EXTENSION / "SegkitEngine",
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_scripted_effect_pattern():
    lib = EXTENSION / "SegmentEditorSegkit" / "SegmentEditorSegkitLib"
    effect = ast.parse((lib / "SegmentEditorEffect.py").read_text())
    classes = {c.name: c for c in effect.body if isinstance(c, ast.ClassDef)}
    # setPythonSource derives the class name from the file name.
    assert "SegmentEditorEffect" in classes
    methods = {f.name for f in classes["SegmentEditorEffect"].body if isinstance(f, ast.FunctionDef)}
    required = {"clone", "icon", "helpText", "setupOptionsFrame", "setMRMLDefaults", "updateGUIFromMRML",
                "updateMRMLFromGUI", "processInteractionEvents", "activate", "deactivate"}
    assert required <= methods, required - methods
    hidden = (EXTENSION / "SegmentEditorSegkit" / "SegmentEditorSegkit.py").read_text()
    assert "self.parent.hidden = True" in hidden
    assert 'slicer.app.connect("startupCompleted()", self.registerEditorEffect)' in hidden
    assert "setPythonSource" in hidden and ".register()" in hidden
    for path in [lib / "SegmentEditorEffect.py", EXTENSION / "SegkitEngine" / "SegkitEngine.py"]:
        compile(path.read_text(), str(path), "exec")
