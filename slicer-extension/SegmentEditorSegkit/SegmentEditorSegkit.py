"""Registers the "Segkit" Segment Editor effect.

A hidden module, as Slicer's scripted effects are registered: once the application has
started, it creates a scripted effect from `SegmentEditorSegkitLib/SegmentEditorEffect.py`
and registers it with the Segment Editor's effect factory.
"""

import os

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule


class SegmentEditorSegkit(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Segment Editor Segkit effect"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations", "SegkitEngine"]
        self.parent.contributors = ["segkit developers"]
        self.parent.hidden = True
        self.parent.helpText = "Adds the Segkit effect (effects run by a segkit engine) to the Segment Editor."
        self.parent.acknowledgementText = ""
        slicer.app.connect("startupCompleted()", self.registerEditorEffect)

    def registerEditorEffect(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as editorEffects

        effect = editorEffects.qSlicerSegmentEditorScriptedEffect(None)
        source = os.path.join(os.path.dirname(__file__), "SegmentEditorSegkitLib", "SegmentEditorEffect.py")
        # setPythonSource takes the class name from the file name and the module from its folder.
        effect.setPythonSource(source.replace("\\", "/"))
        effect.self().register()
