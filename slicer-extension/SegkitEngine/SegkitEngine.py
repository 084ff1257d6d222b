"""Segkit Engine: where Slicer finds the segkit engine.

The module panel holds the engine address and token, starts and stops a local engine
(`segkit serve`, from PATH or a configured path), and shows the engine's health, polled
with a `qt.QTimer` off the GUI thread. The Segment Editor effect "Segkit" (module
SegmentEditorSegkit) asks `SegkitEngineLogic.shared()` for its connection, so both use
the same engine and the same upload cache.

The engine logic itself (client, conversions, applying results through Slicer's
`modifySegmentByLabelmap`) lives in the Qt-free package `segkit_slicer`.
"""

import logging

import qt
import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleWidget,
)

from segkit_slicer.background import BackgroundCall
from segkit_slicer.dependencies import ensure_dependencies, missing_modules

SETTINGS_ADDRESS = "Segkit/EngineAddress"
SETTINGS_TOKEN = "Segkit/EngineToken"
SETTINGS_BINARY = "Segkit/SegkitPath"
SETTINGS_AUTOSTART = "Segkit/StartLocalEngine"
SETTINGS_RECENT = "Segkit/RecentEngineAddresses"   # newline-separated, most recent first
RECENT_ADDRESSES = 8
DEFAULT_ADDRESS = "127.0.0.1:50051"
HEALTH_POLL_MS = 2000


class SegkitEngine(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Segkit Engine"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["segkit developers"]
        self.parent.helpText = (
            "Connects Slicer to a segkit engine: a segmentation engine that runs Segment Editor "
            "effects outside Slicer. Set the engine address (host:port) and token, or start a "
            "local engine. Then use the <b>Segkit</b> effect in the Segment Editor."
        )
        self.parent.acknowledgementText = "segkit is written in Rust; this module talks to it over gRPC."


# ---------------------------------------------------------------------------------------

class SegkitEngineLogic(ScriptedLoadableModuleLogic):
    """The engine connection shared by the module panel and the Segment Editor effect."""

    _shared = None

    @classmethod
    def shared(cls):
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.localEngine = None
        self._engineLogic = None
        self._engineKey = None
        slicer.app.connect("aboutToQuit()", self.stopLocalEngine)

    # -- settings -------------------------------------------------------------------------

    @staticmethod
    def setting(key, default=""):
        value = qt.QSettings().value(key)
        return default if value is None or value == "" else str(value)

    @staticmethod
    def setSetting(key, value):
        qt.QSettings().setValue(key, value)

    def configuredAddress(self):
        """The address the user set (kept in the settings)."""
        return self.setting(SETTINGS_ADDRESS, DEFAULT_ADDRESS)

    def recentAddresses(self):
        """Engine addresses the user set before, most recent first."""
        return [a for a in self.setting(SETTINGS_RECENT).split("\n") if a.strip()]

    def setConfiguredAddress(self, address):
        """Keeps `address` as the configured one and first in the recent addresses."""
        address = address.strip()
        self.setSetting(SETTINGS_ADDRESS, address)
        if address:
            recent = [address] + [a for a in self.recentAddresses() if a != address]
            self.setSetting(SETTINGS_RECENT, "\n".join(recent[:RECENT_ADDRESSES]))

    def address(self):
        """Where calls go: the local engine while it runs (its port is new on every start and
        is never saved), else the configured address."""
        engine = self.localEngine
        if engine is not None and engine.running and engine.address:
            return engine.address
        return self.configuredAddress()

    def tokenStore(self):
        from segkit_slicer.token_store import TokenStore

        return TokenStore(self.setting, self.setSetting, SETTINGS_TOKEN)

    def token(self):
        """The token, from the system keyring when there is one, else the settings."""
        return self.tokenStore().get()

    def setToken(self, token):
        self.tokenStore().set(token)

    # -- connection -----------------------------------------------------------------------

    def engineLogic(self):
        """An `EngineLogic` for the configured address and token (kept while they do not
        change, so uploaded volumes are remembered). Installs grpcio on first use."""
        if not ensure_dependencies(requester="Segkit"):
            raise RuntimeError("the Python packages grpcio and protobuf are needed to talk to the engine")
        key = (self.address(), self.token())
        if self._engineLogic is None or self._engineKey != key:
            from segkit_slicer.logic import EngineLogic

            if self._engineLogic is not None:
                self._engineLogic.close()
            self._engineLogic = EngineLogic(key[0], token=key[1])
            self._engineKey = key
        return self._engineLogic

    # -- local engine ---------------------------------------------------------------------

    def startLocalEngine(self):
        """Starts `segkit serve --listen 127.0.0.1:0` (the system picks the port); returns
        the LocalEngine. Its address is known once `localEngine.address` is set."""
        from segkit_slicer.process import LocalEngine, find_segkit_binary

        if self.localEngine is not None and self.localEngine.running:
            return self.localEngine
        configured = self.setting(SETTINGS_BINARY)
        binary = find_segkit_binary(configured or None)
        if binary is None:
            where = configured if configured else "PATH"
            raise RuntimeError(f"segkit binary not found ({where}): set its path in the Segkit Engine module")
        self.localEngine = LocalEngine(binary, listen="127.0.0.1:0", token=self.token()).start()
        return self.localEngine

    def autoStartEnabled(self):
        return self.setting(SETTINGS_AUTOSTART, "1") == "1"

    def autoStartLocalEngine(self):
        """When the effect is first used: starts the local engine if the setting asks for
        it (on by default), none runs, and the user has not configured an engine address of
        their own (calls go to the local engine while it runs, which would bypass theirs).
        Answers the local engine while its address is not known yet (the caller waits for
        it off the GUI thread), else None."""
        engine = self.localEngine
        if engine is not None and engine.running:
            return None if engine.address else engine
        if not self.autoStartEnabled() or self.setting(SETTINGS_ADDRESS) not in ("", DEFAULT_ADDRESS):
            return None
        engine = self.startLocalEngine()
        return None if engine.address else engine

    def stopLocalEngine(self):
        if self.localEngine is not None:
            self.localEngine.stop()
            self.localEngine = None


# ---------------------------------------------------------------------------------------

class SegkitEngineWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        self.logic = SegkitEngineLogic.shared()
        self._healthCall = None
        self._startPoll = None

        box = qt.QGroupBox("Engine")
        form = qt.QFormLayout(box)
        self.addressEdit = qt.QLineEdit(self.logic.configuredAddress())
        self.addressEdit.setToolTip("host:port of a running engine (segkit serve --listen host:port)")
        form.addRow("Address:", self.addressEdit)
        self.recentCombo = qt.QComboBox()
        self.recentCombo.setToolTip("Engine addresses used before: pick one to connect to it again")
        self.fillRecentAddresses()
        form.addRow("Recent:", self.recentCombo)
        self.tokenEdit = qt.QLineEdit(self.logic.token() or "")
        self.tokenEdit.setEchoMode(qt.QLineEdit.Password)
        self.tokenEdit.setToolTip("Token the engine was started with (--token); empty for none. "
                                  f"Kept in {self.logic.tokenStore().where}.")
        form.addRow("Token:", self.tokenEdit)
        self.statusLabel = qt.QLabel("not checked yet")
        self.statusLabel.wordWrap = True
        self.connectButton = qt.QPushButton("Connect")
        self.connectButton.setToolTip("Check the engine now (installs the Python packages grpcio and "
                                      "protobuf first if they are missing)")
        status = qt.QHBoxLayout()
        status.addWidget(self.statusLabel, 1)
        status.addWidget(self.connectButton)
        form.addRow("Status:", status)
        self.layout.addWidget(box)

        localBox = qt.QGroupBox("Local engine")
        localForm = qt.QFormLayout(localBox)
        self.binaryEdit = qt.QLineEdit(self.logic.setting(SETTINGS_BINARY))
        self.binaryEdit.setPlaceholderText("segkit on PATH")
        self.binaryEdit.setToolTip("Path of the segkit binary; empty to use the one on PATH")
        localForm.addRow("segkit binary:", self.binaryEdit)
        self.autoStartCheck = qt.QCheckBox("Start it when the Segkit effect is first used")
        self.autoStartCheck.checked = self.logic.autoStartEnabled()
        self.autoStartCheck.setToolTip("Unless an engine address of your own is set above")
        localForm.addRow(self.autoStartCheck)
        buttons = qt.QHBoxLayout()
        self.startButton = qt.QPushButton("Start local engine")
        self.stopButton = qt.QPushButton("Stop")
        buttons.addWidget(self.startButton)
        buttons.addWidget(self.stopButton)
        localForm.addRow(buttons)
        self.layout.addWidget(localBox)
        self.layout.addStretch(1)

        self.addressEdit.connect("editingFinished()", self.onSettingsChanged)
        self.recentCombo.connect("currentIndexChanged(int)", self.onRecentAddressChosen)
        self.tokenEdit.connect("editingFinished()", self.onSettingsChanged)
        self.binaryEdit.connect("editingFinished()", self.onSettingsChanged)
        self.autoStartCheck.connect("toggled(bool)", self.onSettingsChanged)
        self.connectButton.connect("clicked()", self.onConnect)
        self.startButton.connect("clicked()", self.onStart)
        self.stopButton.connect("clicked()", self.onStop)

        self.healthTimer = qt.QTimer()
        self.healthTimer.setInterval(HEALTH_POLL_MS)
        self.healthTimer.connect("timeout()", self.pollHealth)
        self.healthTimer.start()
        self.updateButtons()

    def cleanup(self):
        self.healthTimer.stop()

    def enter(self):
        self.healthTimer.start()

    def exit(self):
        self.healthTimer.stop()

    def onSettingsChanged(self):
        if self.addressEdit.text.strip() != self.logic.setting(SETTINGS_ADDRESS):
            self.logic.setConfiguredAddress(self.addressEdit.text)
            self.fillRecentAddresses()
        if self.tokenEdit.text != (self.logic.token() or ""):
            self.logic.setToken(self.tokenEdit.text)
        self.logic.setSetting(SETTINGS_BINARY, self.binaryEdit.text.strip())
        self.logic.setSetting(SETTINGS_AUTOSTART, "1" if self.autoStartCheck.checked else "0")
        self.statusLabel.text = "checking..."

    def fillRecentAddresses(self):
        wasBlocked = self.recentCombo.blockSignals(True)
        self.recentCombo.clear()
        self.recentCombo.addItem("(choose)", "")
        for address in self.logic.recentAddresses():
            self.recentCombo.addItem(address, address)
        self.recentCombo.currentIndex = 0
        self.recentCombo.blockSignals(wasBlocked)

    def onRecentAddressChosen(self, index):
        address = self.recentCombo.itemData(index)
        if address:
            self.addressEdit.text = address
            self.onSettingsChanged()

    def updateButtons(self):
        running = self.logic.localEngine is not None and self.logic.localEngine.running
        self.startButton.enabled = not running
        self.stopButton.enabled = running

    def onConnect(self):
        self.onSettingsChanged()
        try:
            self.logic.engineLogic()   # asks to install grpcio when it is missing
        except Exception as e:
            slicer.util.errorDisplay(str(e))
            return
        self.pollHealth()

    def onStart(self):
        self.onSettingsChanged()
        try:
            engine = self.logic.startLocalEngine()
        except Exception as e:
            slicer.util.errorDisplay(f"Could not start the engine: {e}")
            return
        self.statusLabel.text = "starting..."
        # Wait for the "listening on" line without blocking the GUI.
        self._startPoll = qt.QTimer()
        self._startPoll.setInterval(100)
        self._startPoll.connect("timeout()", lambda: self._checkStarted(engine))
        self._startPoll.start()
        self.updateButtons()

    def _checkStarted(self, engine):
        if engine.address:
            # The local engine's address is used while it runs; the configured address
            # stays in the settings for the next session.
            self._startPoll.stop()
            self.statusLabel.text = f"local engine at {engine.address}: checking..."
            self.updateButtons()
        elif not engine.running:
            self._startPoll.stop()
            self.updateButtons()
            slicer.util.errorDisplay(f"The engine stopped:\n{engine.stderr_tail()}")

    def onStop(self):
        self.logic.stopLocalEngine()
        self.updateButtons()

    def pollHealth(self):
        """Health check on a worker thread; the previous answer is shown meanwhile."""
        if self._healthCall is not None:
            if not self._healthCall.done:
                return
            try:
                status, detail = self._healthCall.outcome()
                self.statusLabel.text = f"{self.logic.address()}: {status}{detail}"
            except Exception as e:
                self.statusLabel.text = f"{self.logic.address()}: {e}"
            self._healthCall = None
        if missing_modules():
            # Never install from a timer: the user starts that with Connect.
            self.statusLabel.text = "Python packages for gRPC not installed: press Connect"
            return
        try:
            engineLogic = self.logic.engineLogic()
        except Exception as e:
            logging.debug("Segkit: %s", e)
            self.statusLabel.text = str(e)
            return
        client = engineLogic.client

        def check(report):
            status = client.health(timeout_s=1.0)
            detail = ""
            if status == "SERVING":
                info = client.engine_info()
                detail = f" ({info.name} {info.version}, {info.api_version})"
            return status, detail

        self._healthCall = BackgroundCall(check, name="segkit-health").start()
        self.updateButtons()
