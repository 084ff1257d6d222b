"""Segment Editor effect "Segkit": runs the effects of a segkit engine.

The effect lists the engine's effects in a combo box and builds their parameter widgets
from the engine's schema (`segkit_slicer.schema`), so an effect added to the engine
appears here with no Python change. Apply, or a left click in a slice view for effects
that need a point, runs the engine call on a worker thread polled by a `qt.QTimer`; the
result is applied on the main thread with `saveStateForUndo()` and
`modifySelectedSegmentByLabelmap` / `modifySegmentByLabelmap`, so Slicer's editable area,
intensity range, overwrite mode and undo apply unchanged.

Parameters of type SEGMENT are combo boxes of the segmentation's segments (the value is a
segment id, "(none)" is ""), rebuilt when segments are added, removed or renamed. Effects
that make a volume (Mask volume) add it to the scene, show it in the slice views and name
it in the result line.

Auto-complete effects (the engine marks them `preview`: Grow from seeds, Fill between
slices, Watershed, ...) follow Slicer's auto-complete flow: Initialize computes a preview
of every input segment in a "<segmentation> preview" node; with Auto-update on, editing a
seed segment updates it one second later (only the changed voxels go to the engine, which
continues from its previous result); Apply writes the preview into the segments in one undo
step with the user's masking; Cancel drops it and leaves the segments untouched. Every
engine call runs off the GUI thread.

Effects that keep a source intensity range (the engine names its two parameters: Threshold,
Local threshold) show it as Slicer's Threshold does: the range pulses in the selected
segment's colour in every slice view that shows the source while the effect is active
(`segkit_slicer.range_preview`, computed on the displayed slices only), the sliders carry
the volume's unit, "Use for masking" makes the range the editable intensity range and
switches to Paint, and when the effect can choose its range itself (Threshold's automatic
methods) "Set range now" asks the engine for those bounds without changing anything.
The range is one two-handle slider (`ctkRangeWidget`) when the source gives its bounds.

The class stays thin: gathering inputs, calling the engine and applying modifiers is
`segkit_slicer.logic.EngineLogic` (prepare / run / commit) and
`segkit_slicer.preview.PreviewController`, tested without Qt.
"""

import logging
import os

import qt
import slicer
import vtk

from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

from segkit_slicer import schema
from segkit_slicer.background import POLL_MS, BackgroundCall
from segkit_slicer.logic import EditorContext, editor_method, markups_points_ijk
from segkit_slicer.range_preview import RangePreview

AUTO_UPDATE_MS = 1000   # Slicer's auto-complete waits this long after a segment changes
ENGINE_EFFECT = "EngineEffect"   # parameter: the engine effect shown
DEFAULT_ENGINE_EFFECT = "Threshold"
PULSE_MS = 150   # one step of the range preview's pulse
UCUM_HOUNSFIELD = "[hnsf'U]"   # the code DICOM volumes carry for CT values


class EffectContext(EditorContext):
    """The Segment Editor's state as a scripted effect sees it (snapshot at prepare time)."""

    def __init__(self, scriptedEffect):
        self.effect = scriptedEffect
        node = scriptedEffect.parameterSetNode()
        self.segmentation_node = node.GetSegmentationNode()
        self.source_volume_node = editor_method(node, "GetSourceVolumeNode")()
        self.selected_segment_id = node.GetSelectedSegmentID() or ""

    def reference_image(self):
        return self.effect.defaultModifierLabelmap()

    def aligned_source(self):
        return editor_method(self.effect, "sourceVolumeImageData")()

    def save_state_for_undo(self):
        self.effect.saveStateForUndo()

    def editor_node(self):
        return self.effect.parameterSetNode()

    def modify_segment(self, segment_id, modifier_image, mode, selected, bypass_masking=False):
        modes = {
            "Set": slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeSet,
            "Add": slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeAdd,
            "Remove": slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeRemove,
            "RemoveAll": slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeRemoveAll,
        }
        current = self.effect.parameterSetNode().GetSelectedSegmentID()
        if selected and current == segment_id and not bypass_masking:
            self.effect.modifySelectedSegmentByLabelmap(modifier_image, modes[mode])
        else:
            # A new segment, another segment of the result, bypassed masking, or the user
            # selected another segment while the engine worked.
            self.effect.modifySegmentByLabelmap(self.segmentation_node, segment_id, modifier_image,
                                                modes[mode], bool(bypass_masking))

    def volume_added(self, volume_node, output):
        """Shows a volume the effect made: a label map as the slice views' label layer,
        another volume as their background."""
        try:
            if output.label_map:
                slicer.util.setSliceViewerLayers(label=volume_node, fit=False)
            else:
                slicer.util.setSliceViewerLayers(background=volume_node, fit=False)
        except Exception as e:   # no slice views (a test, a custom layout): the node stays
            logging.warning("Segkit: could not show %s: %s", volume_node.GetName(), e)


class SegmentEditorEffect(AbstractScriptedSegmentEditorEffect):
    """Runs segkit engine effects in the Segment Editor."""

    def __init__(self, scriptedEffect):
        scriptedEffect.name = "Segkit"
        scriptedEffect.perSegment = True
        scriptedEffect.requireSegments = True
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self.effectInfos = []
        self.listedBy = None      # the EngineLogic that listed effectInfos
        self.spec = None
        self.rows = {}            # parameter name -> (label, widget)
        self.rangeWidget = None   # the intensity range's slider (both ends' row)
        self.call = None          # BackgroundCall in flight
        self.onCallDone = None
        self.sourceRange = None
        self.observedSegmentation = None   # (node, [observer tags])
        self.segmentationEdits = 0  # segment changes seen while active (see resultStamp)
        self.activations = 0        # deactivations so far (see resultStamp)
        self.callActivation = 0
        self.cursorOverridden = False
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_MS)
        self.timer.connect("timeout()", self.pollCall)
        self.preview = None       # PreviewController of the open preview
        self.previewParametersChanged = False
        self.autoUpdateTimer = qt.QTimer()
        self.autoUpdateTimer.setSingleShot(True)
        self.autoUpdateTimer.setInterval(AUTO_UPDATE_MS)
        self.autoUpdateTimer.connect("timeout()", self.onAutoUpdate)
        self.active = False
        self.rangePreview = RangePreview()
        self.pulseTimer = qt.QTimer()
        self.pulseTimer.setInterval(PULSE_MS)
        self.pulseTimer.connect("timeout()", self.rangePreview.pulse)

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

    def icon(self):
        iconPath = os.path.join(os.path.dirname(__file__), "SegmentEditorEffect.png")
        return qt.QIcon(iconPath) if os.path.exists(iconPath) else qt.QIcon()

    def helpText(self):
        return (
            "<html>Runs the effects of a <b>segkit engine</b> (set it up in the Segkit Engine module).<br>"
            "Choose an effect, set its parameters and click Apply; effects that need a point run on a "
            "left click in a slice view. Masking, overwrite and undo work as for Slicer's own effects.</html>"
        )

    # -- options panel ------------------------------------------------------------------------

    def setupOptionsFrame(self):
        self.engineLabel = qt.QLabel("Engine: not connected")
        self.engineLabel.wordWrap = True
        self.scriptedEffect.addOptionsWidget(self.engineLabel)

        row = qt.QHBoxLayout()
        self.effectCombo = qt.QComboBox()
        self.effectCombo.setToolTip("Effects of the engine")
        self.refreshButton = qt.QPushButton("Refresh")
        self.refreshButton.setToolTip("Ask the engine for its effects again")
        row.addWidget(self.effectCombo, 1)
        row.addWidget(self.refreshButton)
        self.scriptedEffect.addLabeledOptionsWidget("Engine effect:", row)

        self.helpLabel = qt.QLabel("")
        self.helpLabel.wordWrap = True
        self.scriptedEffect.addOptionsWidget(self.helpLabel)

        self.parametersFrame = qt.QFrame()
        self.parametersLayout = qt.QFormLayout(self.parametersFrame)
        self.parametersLayout.setContentsMargins(0, 0, 0, 0)
        self.scriptedEffect.addOptionsWidget(self.parametersFrame)

        self.pointLabel = qt.QLabel("Left-click in a slice view to apply.")
        self.pointLabel.visible = False
        self.scriptedEffect.addOptionsWidget(self.pointLabel)

        # Effects that take a point list (Segment from boundary points) read a markups
        # point list's control points when Apply is clicked.
        self.pointListSelector = slicer.qMRMLNodeComboBox()
        self.pointListSelector.nodeTypes = ["vtkMRMLMarkupsFiducialNode"]
        self.pointListSelector.addEnabled = True
        self.pointListSelector.removeEnabled = False
        self.pointListSelector.noneEnabled = True
        self.pointListSelector.setMRMLScene(slicer.mrmlScene)
        self.pointListSelector.setToolTip(
            "The point list whose points the effect uses (for example the structure's extreme "
            "points: most right, left, anterior, posterior, superior and inferior)")
        self.pointListRow = qt.QFrame()
        pointListLayout = qt.QHBoxLayout(self.pointListRow)
        pointListLayout.setContentsMargins(0, 0, 0, 0)
        pointListLayout.addWidget(qt.QLabel("Point list:"))
        pointListLayout.addWidget(self.pointListSelector, 1)
        self.pointListRow.visible = False
        self.scriptedEffect.addOptionsWidget(self.pointListRow)

        # Effects with an intensity range (Threshold): Slicer's Threshold buttons.
        self.autoRangeButton = qt.QPushButton("Set range now")
        self.autoRangeButton.setToolTip(
            "Ask the engine for the bounds of the chosen automatic method and mode, and set the range to them")
        self.useForMaskingButton = qt.QPushButton("Use for masking")
        self.useForMaskingButton.setToolTip(
            "Use this intensity range as the editable intensity range and switch to the Paint effect")
        self.rangeRow = self.addHiddenRow(self.autoRangeButton, self.useForMaskingButton)

        self.initializeButton = qt.QPushButton("Initialize")
        self.initializeButton.setToolTip("Compute a preview of every visible segment from its seeds")
        self.updateButton = qt.QPushButton("Update")
        self.updateButton.setToolTip("Update the preview from the seeds as they are now")
        self.autoUpdateCheckBox = qt.QCheckBox("Auto-update")
        self.autoUpdateCheckBox.checked = True
        self.autoUpdateCheckBox.setToolTip("Update the preview a second after a seed segment changes")
        self.previewRow = self.addHiddenRow((self.initializeButton, 1), self.updateButton,
                                            self.autoUpdateCheckBox)

        buttons = qt.QHBoxLayout()
        self.applyButton = qt.QPushButton("Apply")
        self.applyButton.objectName = self.__class__.__name__ + "Apply"
        self.cancelButton = qt.QPushButton("Cancel")
        self.cancelButton.enabled = False
        buttons.addWidget(self.applyButton, 1)
        buttons.addWidget(self.cancelButton)
        self.scriptedEffect.addOptionsWidget(buttons)

        self.resultLabel = qt.QLabel("")
        self.resultLabel.wordWrap = True
        self.scriptedEffect.addOptionsWidget(self.resultLabel)

        self.effectCombo.connect("currentIndexChanged(int)", self.onEffectSelected)
        self.refreshButton.connect("clicked()", self.refreshEffects)
        self.applyButton.connect("clicked()", self.onApply)
        self.cancelButton.connect("clicked()", self.onCancel)
        self.initializeButton.connect("clicked()", self.onInitialize)
        self.updateButton.connect("clicked()", self.onUpdatePreview)
        self.autoRangeButton.connect("clicked()", self.onAutoRange)
        self.useForMaskingButton.connect("clicked()", self.onUseForMasking)

    def addHiddenRow(self, *widgets):
        """A row of `widgets` (or (widget, stretch) pairs) in the options panel, hidden
        until an effect that uses it is chosen."""
        layout = qt.QHBoxLayout()
        for w in widgets:
            layout.addWidget(*(w if isinstance(w, tuple) else (w,)))
        row = qt.QFrame()
        row.setLayout(layout)
        layout.setContentsMargins(0, 0, 0, 0)
        row.visible = False
        self.scriptedEffect.addOptionsWidget(row)
        return row

    def activate(self):
        self.active = True
        self.observeSegmentation()
        if not self.effectInfos and self.call is None:
            self.refreshEffects()
        self.updateRangePreview()

    def deactivate(self):
        # A call in flight is cancelled and its result dropped (resultStamp changes): it
        # would land over whatever the user does with other effects meanwhile.
        self.activations += 1
        self.active = False
        self.updateRangePreview()
        if self.call is not None:
            self.cancelEngineCall()
        self.observeSegmentation(stop=True)

    def cleanup(self):
        """Slicer calls this before it deletes the effect (scene closed, application
        quitting): the timers and observers hold references to the effect and would keep
        it, and a call in flight, alive."""
        self.activations += 1
        self.active = False
        self.timer.stop()
        self.autoUpdateTimer.stop()
        self.pulseTimer.stop()
        self.timer.disconnect("timeout()", self.pollCall)
        self.autoUpdateTimer.disconnect("timeout()", self.onAutoUpdate)
        self.pulseTimer.disconnect("timeout()", self.rangePreview.pulse)
        self.rangePreview.hide()
        if self.call is not None:
            self.cancelEngineCall()
            self.call = None
        self.restoreCursor()
        if self.preview is not None:
            try:
                self.preview.cancel()
            except Exception as e:
                logging.warning("Segkit: closing the preview failed: %s", e)
            self.preview = None
        self.observeSegmentation(stop=True)

    def setBusyCursor(self):
        """The busy cursor (arrow and hourglass: Slicer stays usable) while the engine
        works, as Slicer's own effects show a wait cursor while they compute."""
        if not self.cursorOverridden:
            qt.QApplication.setOverrideCursor(qt.QCursor(qt.Qt.BusyCursor))
            self.cursorOverridden = True

    def restoreCursor(self):
        if self.cursorOverridden:
            qt.QApplication.restoreOverrideCursor()
            self.cursorOverridden = False

    def resultStamp(self):
        """What a result is computed for: this activation of the effect, the segmentation,
        selected segment and source volume, and the segmentation's edits so far. A result
        whose stamp no longer matches is dropped instead of applied."""
        node = self.scriptedEffect.parameterSetNode()
        if node is None:
            return (self.activations,)
        seg = node.GetSegmentationNode()
        source = self.sourceNode()
        return (self.activations, seg.GetID() if seg is not None else None, node.GetSelectedSegmentID(),
                source.GetID() if source is not None else None, self.segmentationEdits)

    # -- segments of SEGMENT parameters -----------------------------------------------------

    def segmentationNode(self):
        node = self.scriptedEffect.parameterSetNode()
        return node.GetSegmentationNode() if node is not None else None

    def segmentList(self):
        """(id, name) of the segmentation's segments, in order."""
        seg = self.segmentationNode()
        if seg is None:
            return []
        segmentation = seg.GetSegmentation()
        return [(sid, segmentation.GetSegment(sid).GetName()) for sid in segmentation.GetSegmentIDs()]

    def observeSegmentation(self, stop=False):
        """Rebuilds the segment selectors when segments are added, removed or renamed."""
        wanted = None if stop else self.segmentationNode()
        current = self.observedSegmentation[0] if self.observedSegmentation else None
        if current is wanted:
            return
        if self.observedSegmentation:
            node, tags = self.observedSegmentation
            for tag in tags:
                node.RemoveObserver(tag)
            self.observedSegmentation = None
        if wanted is not None:
            events = (slicer.vtkSegmentation.SegmentAdded, slicer.vtkSegmentation.SegmentRemoved,
                      slicer.vtkSegmentation.SegmentModified)
            tags = [wanted.AddObserver(e, self.onSegmentsChanged) for e in events]
            # A segment's voxels changed (painted seeds): the preview's auto-update.
            # Slicer < 5.1 names the event MasterRepresentationModified.
            voxels = getattr(slicer.vtkSegmentation, "SourceRepresentationModified",
                             getattr(slicer.vtkSegmentation, "MasterRepresentationModified", None))
            if voxels is not None:
                tags.append(wanted.AddObserver(voxels, self.onSegmentsChanged))
            self.observedSegmentation = (wanted, tags)

    def onSegmentsChanged(self, *unused):
        self.segmentationEdits += 1
        self.updateSegmentSelectors()
        self.scheduleAutoUpdate()

    def updateSegmentSelectors(self):
        """Fills each SEGMENT parameter's combo box with the current segments (when they
        changed), keeping the stored segment selected; a stored segment that is gone becomes
        "(none)"."""
        if self.spec is None or not self.rows:
            return
        segments = self.segmentList()
        items = schema.segment_items(segments)
        for p in self.spec.parameters:
            if p.kind != schema.SEGMENT:
                continue
            label, w = self.rows[p.name]
            key = self.parameterKey(p.name)
            stored = self.scriptedEffect.parameter(key) if self.scriptedEffect.parameterDefined(key) else p.default
            value = schema.segment_value(stored, segments)
            wasBlocked = w.blockSignals(True)
            if [(w.itemText(n), w.itemData(n)) for n in range(w.count)] != list(items):
                w.clear()
                for title, sid in items:
                    w.addItem(title, sid)
            index = w.findData(value)
            w.currentIndex = index if index >= 0 else 0
            w.blockSignals(wasBlocked)
            if value != stored and self.scriptedEffect.parameterDefined(key):
                self.scriptedEffect.setParameter(key, value)

    def setMRMLDefaults(self):
        # Not "": Slicer stores nothing for an empty value and then logs "Parameter named
        # EngineEffect cannot be found" on first use. An engine without Threshold shows its
        # first effect instead.
        self.scriptedEffect.setParameterDefault(ENGINE_EFFECT, DEFAULT_ENGINE_EFFECT)

    # -- the engine ---------------------------------------------------------------------------

    def engineLogic(self):
        from SegkitEngine import SegkitEngineLogic

        return SegkitEngineLogic.shared().engineLogic()

    def startLocalEngineIfNeeded(self):
        """The local engine being started (see `SegkitEngineLogic.autoStartLocalEngine`),
        or None when calls can go out now."""
        from SegkitEngine import SegkitEngineLogic

        return SegkitEngineLogic.shared().autoStartLocalEngine()

    def listedEngineLogic(self):
        """The engine logic whose effects the panel shows, or None when the engine changed
        since (another address or token): then its effects are listed again off the GUI
        thread (a first call to a new engine can wait for its connection) and the user
        applies again once they are shown."""
        logic = self.engineLogic()
        if logic is self.listedBy:
            return logic
        self.refreshEffects()
        self.resultLabel.text = "The engine changed: listing its effects. Apply again when they are shown."
        return None

    def startCall(self, function, onDone, busyText):
        self.call = BackgroundCall(function).start()
        self.callActivation = self.activations
        self.onCallDone = onDone
        self.resultLabel.text = busyText
        self.updateButtons()
        self.setBusyCursor()
        self.timer.start()

    def pollCall(self):
        call = self.call
        if call is None:
            self.timer.stop()
            return
        if not call.done:
            fraction, message = call.progress
            if message:
                self.resultLabel.text = f"{message} ({fraction:.0%})"
            return
        self.timer.stop()
        self.restoreCursor()
        self.call, onDone = None, self.onCallDone
        self.updateButtons()
        try:
            outcome = call.outcome()
        except Exception as e:
            if self.callActivation != self.activations:
                self.resultLabel.text = "Cancelled: the effect was deactivated while the engine worked."
                return
            logging.error("Segkit: %s", e)
            self.resultLabel.text = f"Failed: {e}"
            if self.preview is not None and self.preview.stale:
                self.resultLabel.text += " (the preview is out of date: Cancel and Initialize again)"
            return
        onDone(outcome)

    def updateButtons(self):
        """Enables the buttons for the state: a call running, a preview open, or neither."""
        busy = self.call is not None
        isPreviewEffect = self.spec is not None and self.spec.preview
        previewOpen = self.preview is not None
        self.refreshButton.enabled = not busy and not previewOpen
        self.effectCombo.enabled = not previewOpen
        self.previewRow.visible = isPreviewEffect
        self.initializeButton.enabled = not busy and not previewOpen
        self.updateButton.enabled = not busy and previewOpen
        self.applyButton.enabled = not busy and (previewOpen or not isPreviewEffect)
        self.cancelButton.enabled = busy or previewOpen

    def cancelEngineCall(self):
        """Asks the engine to stop the call in flight (its outcome still arrives)."""
        try:
            self.engineLogic().client.cancel()
        except Exception as e:
            logging.warning("Segkit: cancel failed: %s", e)

    def onCancel(self):
        if self.call is not None:
            self.cancelEngineCall()
            return
        if self.preview is not None:
            self.cancelPreview()
            self.resultLabel.text = "Preview cancelled; the segments are unchanged."

    # -- auto-complete effects: preview -------------------------------------------------------

    def onInitialize(self):
        if self.call is not None or self.spec is None or not self.spec.preview or self.preview is not None:
            return
        from segkit_slicer.preview import PreviewController

        try:
            logic = self.listedEngineLogic()
            if logic is None:
                return
            context = EffectContext(self.scriptedEffect)
            controller = PreviewController(logic, context, self.spec.name,
                                           self.spec.request_parameters(self.currentValues()))
            prepared = controller.prepare_start()
        except Exception as e:
            slicer.util.errorDisplay(f"{self.spec.title}: {e}")
            return

        def onStarted(result):
            self.preview = controller
            self.previewParametersChanged = False
            self.updateButtons()
            self.showPreview(result)

        self.startCall(lambda report: controller.start(prepared), onStarted,
                       f"{self.spec.title}: computing the preview...")

    def scheduleAutoUpdate(self):
        if self.preview is not None and self.autoUpdateCheckBox.checked:
            self.autoUpdateTimer.start()

    def onAutoUpdate(self):
        if self.preview is None:
            return
        if self.call is not None:
            self.autoUpdateTimer.start()   # try again when the running call is over
            return
        self.onUpdatePreview()

    def onUpdatePreview(self):
        controller = self.preview
        if controller is None or self.call is not None:
            return
        try:
            parameters = None
            if self.previewParametersChanged:
                parameters = self.spec.request_parameters(self.currentValues())
            request = controller.prepare_update(parameters)
        except Exception as e:
            slicer.util.errorDisplay(f"{self.spec.title}: {e}")
            return
        self.previewParametersChanged = False
        if request is None:
            return   # nothing changed since the last preview
        self.startCall(lambda report: controller.update(request), self.showPreview,
                       f"{self.spec.title}: updating the preview...")

    def showPreview(self, result):
        if self.preview is None:
            return
        try:
            self.preview.show(result)
        except Exception as e:
            slicer.util.errorDisplay(f"{self.spec.title}: {e}")
            return
        if result.empty:
            self.resultLabel.text = "Preview: every input segment is empty; paint seeds."
            return
        text = f"Preview of {len(result.segments)} segments in {result.compute_seconds:.2f} s"
        if result.reset:
            text += " (working region set)"
        self.resultLabel.text = text + "; Apply writes it into the segments."

    def applyPreview(self):
        controller = self.preview
        if controller is None or self.call is not None:
            return
        self.autoUpdateTimer.stop()

        def onFetched(result):
            try:
                changed = controller.commit_apply(result)
            except Exception as e:
                slicer.util.errorDisplay(f"{self.spec.title}: {e}")
                return
            finally:
                self.preview = None
                self.updateButtons()
            self.resultLabel.text = f"Applied to {len(changed)} segments."

        self.startCall(lambda report: controller.fetch_apply(), onFetched,
                       f"{self.spec.title}: applying...")

    def cancelPreview(self):
        controller, self.preview = self.preview, None
        self.autoUpdateTimer.stop()
        if controller is not None:
            try:
                controller.cancel()
            except Exception as e:
                logging.warning("Segkit: closing the preview failed: %s", e)
        self.updateButtons()

    def refreshEffects(self):
        if self.call is not None:
            return
        try:
            starting = self.startLocalEngineIfNeeded()
        except Exception as e:
            self.engineLabel.text = f"Engine: could not start a local engine: {e}"
            return
        if starting is not None:
            # Its address comes on its first output line: wait for it off the GUI thread,
            # then list its effects.
            self.engineLabel.text = "Engine: starting a local engine..."
            self.startCall(lambda report: starting.wait_ready(),
                           lambda address: self.refreshEffects(), "Starting a local engine...")
            return
        try:
            logic = self.engineLogic()
        except Exception as e:
            self.engineLabel.text = f"Engine: {e}"
            return
        self.engineLabel.text = f"Engine: {logic.client.address} (asking for its effects...)"
        self.startCall(lambda report: logic.effects(refresh=True),
                       lambda infos: self.onEffectsListed(infos, logic), "")

    def onEffectsListed(self, effectInfos, logic=None):
        self.effectInfos = list(effectInfos)
        self.listedBy = logic
        address = self.engineLogic().client.address
        self.engineLabel.text = f"Engine: {address}, {len(self.effectInfos)} effects"
        wanted = self.scriptedEffect.parameter(ENGINE_EFFECT)
        wasBlocked = self.effectCombo.blockSignals(True)
        self.effectCombo.clear()
        for info in self.effectInfos:
            self.effectCombo.addItem(info.title or info.name, info.name)
        names = [info.name for info in self.effectInfos]
        self.effectCombo.currentIndex = names.index(wanted) if wanted in names else 0
        self.effectCombo.blockSignals(wasBlocked)
        self.onEffectSelected(self.effectCombo.currentIndex)

    # -- parameter widgets from the schema -------------------------------------------------

    def currentInfo(self):
        index = self.effectCombo.currentIndex
        return self.effectInfos[index] if 0 <= index < len(self.effectInfos) else None

    def updateSourceRange(self):
        self.sourceRange, integerSource = None, False
        try:
            image = EffectContext(self.scriptedEffect).aligned_source()
        except Exception:
            image = None
        if image is not None and image.GetPointData() and image.GetPointData().GetScalars():
            lo, hi = image.GetScalarRange()
            self.sourceRange = (float(lo), float(hi))
            integerSource = image.GetScalarType() not in (vtk.VTK_FLOAT, vtk.VTK_DOUBLE)
        return integerSource

    def onEffectSelected(self, index):
        info = self.currentInfo()
        if info is None:
            return
        if self.preview is not None and (self.spec is None or info.name != self.spec.name):
            self.cancelPreview()
        if self.scriptedEffect.parameter(ENGINE_EFFECT) != info.name:
            self.scriptedEffect.setParameter(ENGINE_EFFECT, info.name)
        integerSource = self.updateSourceRange()
        self.spec = schema.effect_spec(info, self.sourceRange, integerSource)
        self.helpLabel.text = self.spec.help + (
            " The result is a new volume in the scene." if self.spec.produces_volume else "")
        self.buildParameterWidgets()
        self.updateGUIFromMRML()

    def sourceVolumeNodeChanged(self):
        self.sourceNotified = True
        self.rebuildForSource()

    def masterVolumeNodeChanged(self):
        # Slicer < 5.1 only calls this; later versions call sourceVolumeNodeChanged and
        # then this one "for backward compatibility", which must not rebuild again.
        if not getattr(self, "sourceNotified", False):
            self.rebuildForSource()

    def rebuildForSource(self):
        """The source's range sets defaults and slider ranges: rebuild the widgets."""
        if self.currentInfo() is not None:
            self.onEffectSelected(self.effectCombo.currentIndex)

    def buildParameterWidgets(self):
        for label, widget in self.rows.values():
            self.parametersLayout.removeWidget(label)
            self.parametersLayout.removeWidget(widget)
            label.setParent(None)
            widget.setParent(None)
        self.rows = {}
        self.rangeWidget = self.makeRangeWidget()
        for p in self.spec.parameters:
            if self.rangeWidget is not None and p.name in self.spec.range_parameters:
                if p.name == self.spec.range_parameters[0]:
                    label = qt.QLabel("Range:")
                    self.parametersLayout.addRow(label, self.rangeWidget)
                # Both ends' rows are the one slider (see widgetValue / setWidgetValue).
                self.rows[p.name] = (label, self.rangeWidget)
                continue
            widget = self.makeWidget(p)
            widget.setToolTip(p.help)
            label = qt.QLabel(p.title + ":")
            label.setToolTip(p.help)
            self.parametersLayout.addRow(label, widget)
            self.rows[p.name] = (label, widget)

    def makeRangeWidget(self):
        """One two-handle slider for an effect's intensity range, as Slicer's Threshold
        shows it, when both ends have a range (the source's); None otherwise."""
        if self.spec.range_parameters is None:
            return None
        lo, hi = (self.spec.parameter(name) for name in self.spec.range_parameters)
        if None in (lo.minimum, lo.maximum, hi.minimum, hi.maximum):
            return None
        import ctk

        w = ctk.ctkRangeWidget()
        w.minimum, w.maximum = min(lo.minimum, hi.minimum), max(lo.maximum, hi.maximum)
        w.singleStep = lo.step or 1.0
        w.decimals = lo.decimals
        unit = lo.unit or (self.sourceUnit() if lo.source_units else "")
        if unit:
            w.suffix = " " + unit
        w.setToolTip(f"{lo.help} {hi.help}")
        w.connect("valuesChanged(double,double)", self.updateMRMLFromGUI)
        return w

    def widgetValue(self, p, w):
        """The value a DOUBLE parameter's widget shows (one end of the range slider)."""
        if w is self.rangeWidget:
            return w.minimumValue if p.name == self.spec.range_parameters[0] else w.maximumValue
        return w.value

    def makeWidget(self, p):
        if p.kind == schema.DOUBLE:
            if p.minimum is not None and p.maximum is not None:
                import ctk

                w = ctk.ctkSliderWidget()
                w.minimum, w.maximum = p.minimum, p.maximum
            else:
                w = qt.QDoubleSpinBox()
                w.minimum, w.maximum = -1e12, 1e12
            w.singleStep = p.step or 1.0
            w.decimals = p.decimals
            unit = p.unit or (self.sourceUnit() if p.source_units else "")
            if unit:
                w.suffix = " " + unit
            w.connect("valueChanged(double)", self.updateMRMLFromGUI)
            return w
        if p.kind == schema.INTEGER:
            w = qt.QSpinBox()
            w.minimum = int(p.minimum) if p.minimum is not None else -(2**31)
            w.maximum = int(min(p.maximum, 2**31 - 1)) if p.maximum is not None else 2**31 - 1
            w.singleStep = int(p.step or 1)
            if p.unit:
                w.suffix = " " + p.unit
            w.connect("valueChanged(int)", self.updateMRMLFromGUI)
            return w
        if p.kind == schema.BOOLEAN:
            w = qt.QCheckBox()
            w.connect("toggled(bool)", self.updateMRMLFromGUI)
            return w
        if p.kind == schema.SEGMENT:
            w = qt.QComboBox()   # filled by updateSegmentSelectors
            w.connect("currentIndexChanged(int)", self.updateMRMLFromGUI)
            return w
        if p.kind == schema.CHOICE:
            w = qt.QComboBox()
            for c in p.choices:
                w.addItem(c.title, c.value)
                if c.help:
                    w.setItemData(w.count - 1, c.help, qt.Qt.ToolTipRole)
            w.connect("currentIndexChanged(int)", self.updateMRMLFromGUI)
            return w
        w = qt.QLineEdit()
        w.connect("editingFinished()", self.updateMRMLFromGUI)
        return w

    def parameterKey(self, name):
        return f"{self.spec.name}.{name}"

    def currentValues(self):
        """Stored parameter values, else the schema's (source-derived) defaults."""
        values = {}
        for p in self.spec.parameters:
            key = self.parameterKey(p.name)
            stored = self.scriptedEffect.parameter(key) if self.scriptedEffect.parameterDefined(key) else ""
            values[p.name] = p.normalize(stored) if stored != "" else p.default
        return values

    def updateGUIFromMRML(self):
        if self.spec is None or not self.rows:
            return
        self.observeSegmentation()
        self.updateSegmentSelectors()
        values = self.currentValues()
        for p in self.spec.parameters:
            label, w = self.rows[p.name]
            if p.kind == schema.SEGMENT:
                continue   # set by updateSegmentSelectors
            wasBlocked = w.blockSignals(True)
            value = values[p.name]
            if w is self.rangeWidget and w is not None:
                if p.name == self.spec.range_parameters[0]:   # both ends at once
                    w.setValues(*(float(values[n]) for n in self.spec.range_parameters))
            elif p.kind == schema.DOUBLE:
                w.value = float(value)
            elif p.kind == schema.INTEGER:
                w.value = int(float(value))
            elif p.kind == schema.BOOLEAN:
                w.checked = value == "1"
            elif p.kind == schema.CHOICE:
                index = w.findData(value)
                w.currentIndex = index if index >= 0 else 0
            else:
                w.text = value
            w.blockSignals(wasBlocked)
        self.updateVisibility(values)
        self.updateRangePreview()

    def updateMRMLFromGUI(self, *unused):
        if self.spec is None:
            return
        values = {}
        for p in self.spec.parameters:
            label, w = self.rows[p.name]
            if p.kind == schema.DOUBLE:
                value = schema.format_number(self.widgetValue(p, w))
            elif p.kind == schema.INTEGER:
                value = str(int(w.value))
            elif p.kind == schema.BOOLEAN:
                value = "1" if w.checked else "0"
            elif p.kind == schema.CHOICE:
                value = w.itemData(w.currentIndex) or p.default
            elif p.kind == schema.SEGMENT:
                value = w.itemData(w.currentIndex) or ""
            else:
                value = w.text
            values[p.name] = value
            self.scriptedEffect.setParameter(self.parameterKey(p.name), value)
        self.updateVisibility(values)
        self.updateRangePreview()
        if self.preview is not None:
            self.previewParametersChanged = True
            self.scheduleAutoUpdate()

    def updateVisibility(self, values):
        for p in self.spec.parameters:
            label, w = self.rows[p.name]
            shown = p.is_visible(values)
            label.visible = shown
            w.visible = shown
        needsPoint = self.spec.needs_point(values)
        self.pointLabel.visible = needsPoint
        self.pointListRow.visible = self.spec.needs_point_list(values)
        self.applyButton.visible = not needsPoint
        hasRange = self.spec.range_parameters is not None
        self.rangeRow.visible = hasRange
        auto = self.spec.auto_range_parameter
        self.autoRangeButton.visible = bool(auto) and values.get(auto) == "1"
        self.updateButtons()

    # -- intensity range: preview, automatic bounds, masking ------------------------------------

    def sourceNode(self):
        node = self.scriptedEffect.parameterSetNode()
        if node is None:
            return None
        return editor_method(node, "GetSourceVolumeNode")()

    def sourceUnit(self):
        """The source volume's value unit for the sliders ("HU" for CT), or ""."""
        source = self.sourceNode()
        units = source.GetVoxelValueUnits() if source is not None and hasattr(source, "GetVoxelValueUnits") else None
        if units is None:
            return ""
        code = units.GetCodeValue() or ""
        return "HU" if code == UCUM_HOUNSFIELD else (code or units.GetCodeMeaning() or "")

    def sliceViews(self):
        """(name, slice logic, the effect's renderer, schedule render) of each slice view."""
        layoutManager = slicer.app.layoutManager()
        if layoutManager is None:
            return []
        views = []
        for name in layoutManager.sliceViewNames():
            widget = layoutManager.sliceWidget(name)
            renderer = self.scriptedEffect.renderer(widget)
            if widget is None or renderer is None:
                continue
            views.append((name, widget.sliceLogic(), renderer, widget.sliceView().scheduleRender))
        return views

    def updateRangePreview(self):
        """Shows the effect's intensity range pulsing in the slice views while the effect is
        active and has one; hides it otherwise."""
        rangeValues = None
        if self.active and self.spec is not None and self.spec.range_parameters is not None:
            rangeValues = self.spec.intensity_range(self.currentValues())
        source = self.sourceNode() if rangeValues is not None else None
        if rangeValues is None or source is None:
            self.pulseTimer.stop()
            self.rangePreview.hide()
            return
        color = (1.0, 1.0, 0.0)
        segmentation = self.segmentationNode()
        selected = self.scriptedEffect.parameterSetNode().GetSelectedSegmentID()
        segment = segmentation.GetSegmentation().GetSegment(selected) if segmentation and selected else None
        if segment is not None:
            color = tuple(segment.GetColor())
        try:
            shown = self.rangePreview.show(self.sliceViews(), source, rangeValues[0], rangeValues[1], color)
        except Exception as e:   # a preview must never stop the effect
            logging.warning("Segkit: range preview failed: %s", e)
            shown = 0
        if shown:
            self.pulseTimer.start()
        else:
            self.pulseTimer.stop()

    def onUseForMasking(self):
        """Slicer's Threshold "Use for masking": the range becomes the editable intensity
        range, and the Paint effect is selected to paint within it."""
        if self.spec is None or self.spec.range_parameters is None:
            return
        rangeValues = self.spec.intensity_range(self.currentValues())
        node = self.scriptedEffect.parameterSetNode()
        if rangeValues is None or node is None:
            return
        editor_method(node, "SetSourceVolumeIntensityMask")(True)
        editor_method(node, "SetSourceVolumeIntensityMaskRange")(*rangeValues)
        self.scriptedEffect.selectEffect("Paint")

    def onAutoRange(self):
        """Asks the engine for the bounds its automatic method would use (a report-only
        call: the segments do not change) and sets the range to them."""
        spec = self.spec
        if self.call is not None or spec is None or not spec.auto_range_parameter:
            return
        try:
            logic = self.listedEngineLogic()
            if logic is None:
                return
            values = self.currentValues()
            values[spec.auto_range_parameter] = "1"
            prepared = logic.prepare_automatic_range(EffectContext(self.scriptedEffect), spec.name,
                                                     spec.request_parameters(values))
        except Exception as e:
            slicer.util.errorDisplay(f"{spec.title}: {e}")
            return

        def onDone(result):
            if self.spec is None or self.spec.name != spec.name:
                return   # another effect was chosen meanwhile
            try:
                bounds = logic.reported_range(spec.name, result)
            except Exception as e:
                slicer.util.errorDisplay(f"{spec.title}: {e}")
                return
            for name, value in zip(spec.range_parameters, bounds):
                self.scriptedEffect.setParameter(self.parameterKey(name), schema.format_number(value))
            self.updateGUIFromMRML()
            self.resultLabel.text = (f"Automatic range: {schema.format_number(bounds[0])} to "
                                     f"{schema.format_number(bounds[1])}")

        self.startCall(lambda report: logic.run(prepared, decode=False), onDone,
                       f"{spec.title}: computing the automatic range...")

    # -- running ------------------------------------------------------------------------------

    def onApply(self):
        if self.spec is not None and self.spec.preview:
            self.applyPreview()
            return
        self.runEngineEffect()

    def runEngineEffect(self, pointIjk=None):
        if self.call is not None or self.spec is None:
            return
        if not self.scriptedEffect.confirmCurrentSegmentVisible():
            return
        try:
            logic = self.listedEngineLogic()
            if logic is None:
                return
            context = EffectContext(self.scriptedEffect)
            values = self.currentValues()
            pointsIjk = None
            if pointIjk is None and self.spec.needs_point_list(values):
                pointsIjk = self.pointListIjk(context)
            # Encoded here and decoded in commit, on this (GUI) thread: in Slicer it holds
            # the interpreter lock, and the worker would wait for it after every numpy call.
            prepared = logic.prepare(context, self.spec.name, self.spec.request_parameters(values),
                                     pointIjk, pointsIjk).encode()
            stamp = self.resultStamp()
        except Exception as e:
            slicer.util.errorDisplay(f"{self.spec.title}: {e}")
            return

        def onDone(result):
            if self.resultStamp() != stamp:
                self.resultLabel.text = ("Result dropped: the segmentation, the selected segment or the source "
                                         "volume changed while the engine worked. Apply again.")
                logging.info("Segkit: %s result dropped (state changed since it was requested)", self.spec.title)
                return
            try:
                logic.commit(context, result)
            except Exception as e:
                slicer.util.errorDisplay(f"{self.spec.title}: {e}")
                return
            reported = ", ".join(f"{k} {schema.format_number(v)}" for k, v in sorted(result.reported.items()))
            text = f"Done in {result.compute_seconds:.2f} s" + (f": {reported}" if reported else "")
            for output in result.volumes:
                node = context.segmentation_node.GetScene().GetNodeByID(output.node_id)
                name = node.GetName() if node is not None else output.name
                kind = "label map" if output.label_map else "volume"
                text += f"; new {kind} \"{name}\" ({output.node_id})"
            self.resultLabel.text = text

        self.startCall(lambda report: logic.run(prepared, on_progress=report, decode=False), onDone,
                       f"{self.spec.title}: running...")

    def pointListIjk(self, context):
        """The chosen point list's defined points as indices of the reference geometry."""
        node = self.pointListSelector.currentNode()
        if node is None:
            raise ValueError("choose a point list (place the structure's boundary points in one)")
        points = markups_points_ijk(node, context.segmentation_node, context.reference_image())
        if not points:
            raise ValueError(f"the point list \"{node.GetName()}\" has no placed point")
        return points

    def processInteractionEvents(self, callerInteractor, eventId, viewWidget):
        if self.spec is None or not self.spec.needs_point(self.currentValues()):
            return False
        if viewWidget.className() != "qMRMLSliceWidget":
            return False
        if eventId != vtk.vtkCommand.LeftButtonPressEvent:
            return False
        if callerInteractor.GetShiftKey() or callerInteractor.GetControlKey() or callerInteractor.GetAltKey():
            return False
        if self.call is not None:
            return True  # one call at a time; swallow the click
        xy = callerInteractor.GetEventPosition()
        segmentationNode = self.scriptedEffect.parameterSetNode().GetSegmentationNode()
        reference = self.scriptedEffect.defaultModifierLabelmap()
        ijk = self.xyToIjk(xy, viewWidget, reference, segmentationNode.GetParentTransformNode())
        self.runEngineEffect(pointIjk=ijk)
        return True
