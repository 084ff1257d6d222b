"""An imitation of how Slicer runs Python, for the extension's worker-thread tests.

Slicer's GUI thread holds Python's interpreter lock (GIL) while its Qt event loop idles:
Python code of other threads runs only while the GUI thread itself runs Python (a slot,
a timer callback), which hands the lock over at Python's switch interval and takes it
back. A worker thread that releases the lock (a blocking socket read, most numpy loops
over large arrays, hashlib) then waits for the next slot to get it back: up to the
timer period each time.

`run_like_slicer` reproduces that without Qt: the main thread sleeps in C while holding
the lock (`ctypes.PyDLL` calls do not release it, like C++ code in Slicer's event loop)
and runs a one-line Python slot every `period` seconds, like the effect's QTimer.
"""

from __future__ import annotations

import ctypes
import threading
import time
from typing import Callable, Tuple, TypeVar

T = TypeVar("T")

# Functions called through PyDLL keep the GIL held for the whole call.
_LIBC = ctypes.PyDLL(None)


def idle_holding_the_lock(seconds: float) -> None:
    """Sleeps in C without releasing the GIL, as Slicer's idle event loop does."""
    _LIBC.usleep(ctypes.c_uint(int(seconds * 1e6)))


def run_like_slicer(fn: Callable[[], T], period: float = 0.1, timeout: float = 600.0) -> Tuple[T, float]:
    """Runs `fn` on a worker thread while this thread behaves like Slicer's GUI thread;
    returns fn's result and the seconds until it finished."""
    box: dict = {}

    def work():
        try:
            box["result"] = fn()
        except BaseException as e:  # re-raised on this thread
            box["error"] = e

    worker = threading.Thread(target=work, name="slicer-host-worker", daemon=True)
    start = time.perf_counter()
    worker.start()
    polls = 0
    while worker.is_alive():  # the slot: a few bytecodes, like the effect's pollCall
        idle_holding_the_lock(period)
        polls += 1
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"the worker did not finish in {timeout} s under the Slicer-like host")
    elapsed = time.perf_counter() - start
    if "error" in box:
        raise box["error"]
    return box["result"], elapsed


def run_plain(fn: Callable[[], T]) -> Tuple[T, float]:
    """Runs `fn` on a worker thread while this thread waits without holding the lock (a
    plain Python program): the reference for `run_like_slicer`."""
    box: dict = {}

    def work():
        try:
            box["result"] = fn()
        except BaseException as e:
            box["error"] = e

    worker = threading.Thread(target=work, name="plain-worker", daemon=True)
    start = time.perf_counter()
    worker.start()
    worker.join()
    elapsed = time.perf_counter() - start
    if "error" in box:
        raise box["error"]
    return box["result"], elapsed
