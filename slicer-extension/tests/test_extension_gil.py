"""Apply's worker-thread work under an imitation of Slicer's interpreter lock.

In Slicer the GUI thread holds the GIL while it idles, so a worker thread that releases
the lock (socket waits, numpy loops over large arrays) gets it back only when the GUI
thread next runs Python (`slicer_host`). The work Apply hands to its worker thread (the
engine call with 5 segments of 256x256x160 to encode, the answer to decode) must cost
about the same there as in a plain Python program.

Prints the figure; `-s` shows it:
    pytest -s slicer-extension/tests/test_extension_gil.py
"""

from __future__ import annotations

import time

import numpy as np

from slicer_host import run_like_slicer, run_plain

SIZE = (160, 256, 256)  # k, j, i
SEGMENTS = 5

def _period() -> float:
    """The effect's QTimer period while a call runs: how often the worker gets the lock."""
    from segkit_slicer.background import POLL_MS

    return POLL_MS / 1000


def _prepared():
    from segkit_slicer.geometry import lattice_from_ijk_to_ras
    from segkit_slicer.logic import PreparedEffect, SegmentInput

    k, j, i = SIZE
    lattice = lattice_from_ijk_to_ras(np.diag([0.8, 0.8, 1.5, 1.0]), (0, i - 1, 0, j - 1, 0, k - 1))
    zz, yy, xx = np.ogrid[:k, :j, :i]
    segments = []
    for n in range(SEGMENTS):
        # Balls with ragged edges: thousands of runs per slice, as painted segments have.
        cz, cy, cx = 40 + 20 * n, 60 + 30 * n, 70 + 25 * n
        r2 = (zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2
        rng = np.random.default_rng(n)
        mask = ((r2 < 50 ** 2) & (rng.random(SIZE) < 0.9)).astype(np.uint8)
        segments.append(SegmentInput(f"s{n}", f"S{n}", True, mask, (1.0, 0.5, 0.2)))
    return PreparedEffect(
        effect="Islands", parameters={"Operation": "REMOVE_SMALL_ISLANDS", "MinimumSize": "20"},
        lattice=lattice, extent_start=(0, 0, 0), source=None, segments=segments,
        selected_segment_id="s2")


def _apply(logic, prepared, host):
    """Apply as the effect runs it: the request encoded on the GUI thread (this thread),
    the engine call on a worker thread, the answer decoded on the GUI thread (in
    `commit`). Returns the result and the client's own seconds: from encoding to decoded
    masks, less the engine's compute time (which a debug engine would let dominate)."""
    start = time.perf_counter()
    prepared.encode()
    result, _ = host(lambda: logic.run(prepared, decode=False))
    result.decode()
    return result, time.perf_counter() - start - result.compute_seconds


def _worker_does_everything(logic, prepared, host):
    """The former way: encoding and decoding on the worker thread too."""
    prepared.encoded = None
    result, seconds = host(lambda: logic.run(prepared))
    return result, seconds - result.compute_seconds


def test_apply_costs_the_same_under_slicers_interpreter_lock(logic):
    prepared = _prepared()
    period = _period()
    like_slicer = lambda fn: run_like_slicer(fn, period=period)  # noqa: E731
    like_slicer_100ms = lambda fn: run_like_slicer(fn, period=0.1)  # noqa: E731
    expected, _ = _apply(logic, prepared, run_plain)  # warm: connection, effect list
    times = {"plain": [], "slicer": [], "slicer, all on the worker": []}
    for _ in range(3):
        for name, host in (("plain", run_plain), ("slicer", like_slicer)):
            result, seconds = _apply(logic, prepared, host)
            times[name].append(seconds)
            assert len(result.modifiers) == len(expected.modifiers)
            for a, b in zip(result.modifiers, expected.modifiers):
                assert np.array_equal(a.mask, b.mask)
    result, seconds = _worker_does_everything(logic, prepared, like_slicer_100ms)
    times["slicer, all on the worker"].append(seconds)
    assert np.array_equal(result.modifiers[0].mask, expected.modifiers[0].mask)
    med = {k: float(np.median(v)) for k, v in times.items()}
    p, h, before = med["plain"], med["slicer"], med["slicer, all on the worker"]
    print(f"\nApply's client time ({SEGMENTS} segments of {SIZE[2]}x{SIZE[1]}x{SIZE[0]}, Islands; "
          f"engine compute excluded): plain Python {p:.2f} s; under a Slicer-like host (GIL held "
          f"while idle, a slot every {period * 1000:.0f} ms) {h:.2f} s = {h / p:.2f}x; before "
          f"(encoding and decoding on the worker thread, a slot every 100 ms) {before:.2f} s = "
          f"{before / p:.1f}x")
    # The target is 1.5x (1.2-1.3x measured on a 2-core machine); a shared CI
    # machine gets a margin (the former way is 30-90x).
    assert h / p < 2.0, f"{h:.2f} s under the Slicer-like host against {p:.2f} s in plain Python"
