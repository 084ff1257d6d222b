"""A call on a worker thread that the GUI polls (with a `qt.QTimer`) instead of waiting.

MONAI Label and NVIDIA AIAA call their servers on Slicer's GUI thread, which freezes the
application for the whole call. Here the engine call runs on a thread; the Qt side starts
a timer, polls `done`, reads `progress` for a status line, and takes the result with
`outcome()` on the main thread, where MRML may be touched. The function given must not
touch VTK or MRML objects.

In Slicer the GUI thread holds Python's interpreter lock while it idles: the worker runs
Python only while the GUI thread runs Python too (the timer's slot hands the lock over),
and each time the worker releases the lock (a socket wait inside gRPC) it waits for the
next slot to get it back. The poll period (`POLL_MS`) is therefore also the worker's
price per wait; the heavy numpy work of a call (encoding the request, decoding the
answer) runs on the GUI thread instead, see `PreparedEffect.encode`.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional, Tuple

# While a call runs the GUI polls it this often. 10 ms, not 100: in Slicer the worker's
# gRPC call waits for the interpreter lock about twice (gRPC's event thread starting, the
# answer arriving), each up to one period (tests/test_extension_gil.py: 1.2-1.3x the time
# of plain Python at 10 ms, 1.5x at 20 ms); a slot that reads a flag 100 times a second,
# only while a call runs, costs the GUI nothing noticeable.
POLL_MS = 10


class BackgroundCall:
    """Runs `function(report)` on a daemon thread; `report(fraction, message)` updates
    `progress` from inside it."""

    def __init__(self, function: Callable, name: str = "segkit-call"):
        self._function = function
        self._lock = threading.Lock()
        self._progress: Tuple[float, str] = (0.0, "")
        self._result = None
        self._error: Optional[BaseException] = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "BackgroundCall":
        self._thread.start()
        return self

    def _report(self, fraction: float, message: str = "") -> None:
        with self._lock:
            self._progress = (float(fraction), message)

    def _run(self) -> None:
        try:
            self._result = self._function(self._report)
        except BaseException as e:  # handed to the main thread by outcome()
            self._error = e
        finally:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def progress(self) -> Tuple[float, str]:
        with self._lock:
            return self._progress

    def wait(self, timeout_s: Optional[float] = None) -> bool:
        return self._done.wait(timeout_s)

    def outcome(self):
        """The function's result, or its exception raised here (call once `done`)."""
        if not self.done:
            raise RuntimeError("the call is still running")
        if self._error is not None:
            raise self._error
        return self._result
