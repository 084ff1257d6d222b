"""Just enough of PythonQt (`qt`, `ctk`) and of Slicer's GUI-side Python
(`slicer.ScriptedLoadableModule`, `SegmentEditorEffects`, a scripted effect) to run the
extension's Qt classes headless.

The stand-ins record what the classes do (widgets, properties, signal connections) and
forward the Segment Editor services (`defaultModifierLabelmap`, `sourceVolumeImageData`,
`saveStateForUndo`, `modifySelectedSegmentByLabelmap`, `modifySegmentByLabelmap` with its
`bypassMasking` argument) to a real
`vtkSlicerSegmentEditorLogic`: in Slicer these services are that same C++ logic, so the
effect's edits go through Slicer's own masking here too. What cannot be checked this way
is PythonQt itself (layouts, painting), which needs a Slicer build.
"""

from __future__ import annotations

import sys
import types
from typing import Dict, List


class Widget:
    """A QWidget/QLayout stand-in: properties are attributes, signals are recorded."""

    def __init__(self, *args, **kwargs):
        self._slots: Dict[str, List] = {}
        self._blocked = False
        self.visible = True
        self.enabled = True
        self.text = args[0] if args and isinstance(args[0], str) else ""
        self.children = []

    def connect(self, signal, slot):
        self._slots.setdefault(signal.split("(")[0], []).append(slot)

    def disconnect(self, signal, slot):
        slots = self._slots.get(signal.split("(")[0], [])
        if slot in slots:
            slots.remove(slot)

    def emit(self, name, *args):
        if not self._blocked:
            for slot in self._slots.get(name, []):
                slot(*args)

    def blockSignals(self, blocked):
        old, self._blocked = self._blocked, blocked
        return old

    def addWidget(self, widget, *args):
        self.children.append(widget)

    def addRow(self, *items):
        self.children.extend(items)

    def removeWidget(self, widget):
        if widget in self.children:
            self.children.remove(widget)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None   # setToolTip, setParent, setContentsMargins...


class ValueWidget(Widget):
    """QSpinBox / QDoubleSpinBox / ctkSliderWidget: setting `value` emits valueChanged."""

    def __init__(self, *args):
        super().__init__(*args)
        self._value = 0
        self.minimum, self.maximum = 0, 99

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, v):
        v = min(max(v, self.minimum), self.maximum)
        if v != self._value:
            self._value = v
            self.emit("valueChanged", v)


class RangeWidget(Widget):
    """ctkRangeWidget: a two-handle slider; moving one handle past the other pushes it
    along (as ctkDoubleRangeSlider does); a change emits valuesChanged(min, max)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.minimum, self.maximum = 0.0, 99.0
        self._values = (0.0, 99.0)

    def setValues(self, low, high):
        low = min(max(low, self.minimum), self.maximum)
        high = min(max(high, self.minimum), self.maximum)
        low, high = min(low, high), max(low, high)
        if (low, high) != self._values:
            self._values = (low, high)
            self.emit("valuesChanged", low, high)

    @property
    def minimumValue(self):
        return self._values[0]

    @minimumValue.setter
    def minimumValue(self, v):
        self.setValues(v, max(v, self._values[1]))

    @property
    def maximumValue(self):
        return self._values[1]

    @maximumValue.setter
    def maximumValue(self, v):
        self.setValues(min(v, self._values[0]), v)


class IntSpinBox(ValueWidget):
    @ValueWidget.value.setter
    def value(self, v):
        ValueWidget.value.fset(self, int(v))


class CheckBox(Widget):
    def __init__(self, *args):
        super().__init__(*args)
        self._checked = False

    @property
    def checked(self):
        return self._checked

    @checked.setter
    def checked(self, v):
        if bool(v) != self._checked:
            self._checked = bool(v)
            self.emit("toggled", self._checked)


class ComboBox(Widget):
    def __init__(self, *args):
        super().__init__(*args)
        self.items = []
        self._index = -1

    @property
    def count(self):
        return len(self.items)

    def addItem(self, text, data=None):
        self.items.append((text, data))
        if self._index < 0:
            self.currentIndex = 0

    def clear(self):
        self.items = []
        self.currentIndex = -1

    def findData(self, data):
        for n, (_, d) in enumerate(self.items):
            if d == data:
                return n
        return -1

    def itemData(self, index, role=None):
        return self.items[index][1] if 0 <= index < len(self.items) else None

    def itemText(self, index):
        return self.items[index][0] if 0 <= index < len(self.items) else ""

    def setItemData(self, *args):
        pass

    @property
    def currentIndex(self):
        return self._index

    @currentIndex.setter
    def currentIndex(self, index):
        if index != self._index:
            self._index = index
            self.emit("currentIndexChanged", index)


class NodeComboBox(Widget):
    """qMRMLNodeComboBox: the chosen node, set by the test as a user would pick it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.nodeTypes = []
        self.scene = None
        self._node = None

    def setMRMLScene(self, scene):
        self.scene = scene

    def currentNode(self):
        return self._node

    def setCurrentNode(self, node):
        self._node = node
        self.emit("currentNodeChanged", node)


class Timer(Widget):
    def __init__(self, *args):
        super().__init__(*args)
        self.active = False

    def setInterval(self, ms):
        self.interval = ms

    def start(self):
        self.active = True

    def stop(self):
        self.active = False

    def fire(self):
        self.emit("timeout")


class Application:
    """QApplication's override-cursor stack."""

    cursors: List[object] = []

    @classmethod
    def setOverrideCursor(cls, cursor):
        cls.cursors.append(cursor)

    @classmethod
    def restoreOverrideCursor(cls):
        if cls.cursors:
            cls.cursors.pop()


class Settings:
    store: Dict[str, object] = {}

    def value(self, key):
        return self.store.get(key)

    def setValue(self, key, value):
        self.store[key] = value


def make_qt_module():
    qt = types.ModuleType("qt")
    for name in ("QLabel", "QPushButton", "QFrame", "QFormLayout", "QHBoxLayout", "QGroupBox", "QIcon",
                 "QLineEdit", "QVBoxLayout"):
        setattr(qt, name, type(name, (Widget,), {}))
    qt.QComboBox = ComboBox
    qt.QSpinBox = IntSpinBox
    qt.QDoubleSpinBox = ValueWidget
    qt.QCheckBox = CheckBox
    qt.QTimer = Timer
    qt.QSettings = Settings
    qt.QApplication = Application
    qt.QCursor = lambda shape: ("cursor", shape)
    Application.cursors = []
    qt.QLineEdit.Password = 2
    qt.Qt = types.SimpleNamespace(ToolTipRole=3, BusyCursor=16)
    return qt


def make_ctk_module():
    ctk = types.ModuleType("ctk")
    ctk.ctkSliderWidget = type("ctkSliderWidget", (ValueWidget,), {})
    ctk.ctkRangeWidget = RangeWidget
    return ctk


class AbstractScriptedSegmentEditorEffect:
    def __init__(self, scriptedEffect):
        self.scriptedEffect = scriptedEffect

    def xyToIjk(self, xy, viewWidget, image, parentTransformNode=None):
        return viewWidget.ijk_for(xy)


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent
        self.layout = Widget()

    def setup(self):
        pass


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        pass


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent


class SliceWidget:
    """qMRMLSliceWidget over a real vtkMRMLSliceLogic (its layers reslice the volumes the
    view shows); it is its own slice view and counts the renders asked for."""

    def __init__(self, slice_logic):
        self._logic = slice_logic
        self.renders = 0

    def sliceLogic(self):
        return self._logic

    def sliceView(self):
        return self

    def scheduleRender(self):
        self.renders += 1

    def className(self):
        return "qMRMLSliceWidget"


class LayoutManager:
    """qSlicerLayoutManager's slice views, by name."""

    def __init__(self, widgets: Dict[str, SliceWidget]):
        self.widgets = widgets

    def sliceViewNames(self):
        return list(self.widgets)

    def sliceWidget(self, name):
        return self.widgets.get(name)


class ScriptedEffect:
    """A scripted effect's services over a real vtkSlicerSegmentEditorLogic."""

    def __init__(self, editor_logic, segmentation_node):
        self.logic = editor_logic
        self.segmentation_node = segmentation_node
        self.parameters: Dict[str, str] = {}
        self.options: List = []
        self.undo_states = 0
        self.calls: List[tuple] = []   # (service, segment id, mode, bypassMasking)
        self.missing_parameters: List[str] = []   # read before being defined

    # parameters (Slicer prefixes them with the effect name; not needed here)
    def parameter(self, name):
        # Slicer logs "Parameter named <name> cannot be found" for an undefined parameter.
        if name not in self.parameters:
            self.missing_parameters.append(name)
        return self.parameters.get(name, "")

    def parameterDefined(self, name):
        return name in self.parameters

    def setParameter(self, name, value):
        self.parameters[name] = str(value)

    def setParameterDefault(self, name, value):
        # Slicer stores no attribute for an empty value: the parameter stays undefined.
        if str(value) != "":
            self.parameters.setdefault(name, str(value))

    def addOptionsWidget(self, widget):
        self.options.append(widget)

    # The effect's own renderer in a view (qSlicerSegmentEditorAbstractEffect::renderer).
    def renderer(self, view_widget):
        import vtk

        renderers = self.__dict__.setdefault("renderers", {})
        if view_widget not in renderers:
            renderers[view_widget] = vtk.vtkRenderer()
        return renderers[view_widget]

    selected_effect = None

    def selectEffect(self, name):
        self.selected_effect = name

    def addLabeledOptionsWidget(self, label, widget):
        self.options.append(widget)

    def parameterSetNode(self):
        return self.logic.GetSegmentEditorNode()

    def defaultModifierLabelmap(self):
        assert self.logic.ResetModifierLabelmapToDefault()
        return self.logic.GetModifierLabelmap()

    def sourceVolumeImageData(self):
        assert self.logic.UpdateAlignedSourceVolume()
        return self.logic.GetAlignedSourceVolume()

    def saveStateForUndo(self):
        self.undo_states += 1
        self.logic.SaveStateForUndo()

    # qSlicerSegmentEditorAbstractEffect::ConfirmationResult: NotConfirmed 0 (the user
    # declined to show the hidden segment), ConfirmedWithoutDialog 1, ConfirmedWithDialog 2.
    confirmation = 1
    confirmations = 0   # times asked

    def confirmCurrentSegmentVisible(self):
        self.confirmations += 1
        return self.confirmation

    def modifySelectedSegmentByLabelmap(self, image, mode):
        segment_id = self.parameterSetNode().GetSelectedSegmentID()
        self.calls.append(("modifySelectedSegmentByLabelmap", segment_id, mode, False))
        self.logic.ModifySegmentByLabelmap(self.segmentation_node, segment_id, image, mode, True, False)

    def modifySegmentByLabelmap(self, segmentation_node, segment_id, image, mode, bypassMasking=False):
        # qSlicerSegmentEditorAbstractEffect::modifySegmentByLabelmap(segmentationNode,
        # segmentID, modifierLabelmap, modificationMode, bypassMasking=false): the logic's
        # ModifySegmentByLabelmap with the effect's perSegment flag.
        self.calls.append(("modifySegmentByLabelmap", segment_id, mode, bool(bypassMasking)))
        self.logic.ModifySegmentByLabelmap(segmentation_node, segment_id, image, mode, True, bool(bypassMasking))


# What the effect asked the slice views to show (setSliceViewerLayers keyword arguments).
shown: List[dict] = []


def install(monkeypatch, slicer_module):
    """Puts the stand-ins in sys.modules and on the `slicer` module for one test."""
    monkeypatch.setitem(sys.modules, "qt", make_qt_module())
    monkeypatch.setitem(sys.modules, "ctk", make_ctk_module())
    effects = types.ModuleType("SegmentEditorEffects")
    effects.AbstractScriptedSegmentEditorEffect = AbstractScriptedSegmentEditorEffect
    monkeypatch.setitem(sys.modules, "SegmentEditorEffects", effects)
    slm = types.ModuleType("slicer.ScriptedLoadableModule")
    slm.ScriptedLoadableModule = ScriptedLoadableModule
    slm.ScriptedLoadableModuleWidget = ScriptedLoadableModuleWidget
    slm.ScriptedLoadableModuleLogic = ScriptedLoadableModuleLogic
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", slm)
    logic = slicer_module.vtkSlicerSegmentEditorLogic
    monkeypatch.setattr(slicer_module, "qSlicerSegmentEditorAbstractEffect", types.SimpleNamespace(
        ModificationModeSet=logic.ModificationModeSet, ModificationModeAdd=logic.ModificationModeAdd,
        ModificationModeRemove=logic.ModificationModeRemove,
        ModificationModeRemoveAll=logic.ModificationModeRemoveAll), raising=False)
    monkeypatch.setattr(slicer_module, "app", Widget(), raising=False)
    monkeypatch.setattr(slicer_module, "qMRMLNodeComboBox", NodeComboBox, raising=False)
    monkeypatch.setattr(slicer_module, "mrmlScene", getattr(slicer_module, "mrmlScene", None), raising=False)
    errors: List[str] = []
    monkeypatch.setattr(slicer_module.util, "errorDisplay", lambda text, *a, **k: errors.append(text))
    # No slice views here: record what the effect asks them to show.
    shown.clear()
    monkeypatch.setattr(slicer_module.util, "setSliceViewerLayers",
                        lambda **kwargs: shown.append(kwargs), raising=False)
    Settings.store = {}
    return errors
